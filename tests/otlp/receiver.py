"""An OTLP/gRPC logs receiver for the tests: what Envoy's OpenTelemetry access logger sends, one JSON line per record.

    receiver.py [--port PORT] [--out FILE]

Listens on 127.0.0.1:PORT (0, the default: a free port) for opentelemetry.proto.collector.logs.v1.LogsService/Export
and prints `listening <port>` on stdout once it does. Every log record received is then written, as it arrives, as one
JSON object on one line to FILE (default: stdout), flushed after each line:

    {"body": <the record's body: its string_value as is, another AnyValue as JSON>,
     "attributes": {key: value, ...},
     "log_name": <the resource attribute log_name Envoy adds (OpenTelemetryAccessLogConfig.log_name), or null>,
     "scope": {"name": ..., "version": ...},
     "resource": {key: value, ...},
     "time_unix_nano": ..., "severity_text": ...}

Stops on SIGTERM or SIGINT: the server stops taking calls, the ones under way finish, the file is closed, exit 0.
Needs the packages of tests/otlp/requirements.txt (`make otlp-tools`); used by tests/src/otlp.rs.
"""

import argparse
import base64
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


def any_value(v):
    """An OTLP AnyValue as plain JSON (bytes as base64)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return key_values(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, kind)


def key_values(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Receiver(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_logs in request.resource_logs:
            resource = key_values(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                scope = {"name": scope_logs.scope.name, "version": scope_logs.scope.version}
                for record in scope_logs.log_records:
                    line = {
                        "body": any_value(record.body),
                        "attributes": key_values(record.attributes),
                        "log_name": resource.get("log_name"),
                        "scope": scope,
                        "resource": resource,
                        "time_unix_nano": record.time_unix_nano,
                        "severity_text": record.severity_text,
                    }
                    lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        with self.lock:
            for line in lines:
                self.out.write(line)
            self.out.flush()
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--out", help="file for the records, one JSON line each (default: stdout)")
    args = parser.parse_args()

    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Receiver(out), server)
    try:
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    except RuntimeError as e:
        port, error = 0, e
    else:
        error = None
    if port == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}: {error or 'bind failed'}", file=sys.stderr, flush=True)
        return 1
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening {port}", flush=True)
    while not stop.wait(0.2):
        pass
    # Calls under way get a second to finish; their records are written before the file is closed.
    server.stop(grace=1).wait()
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
