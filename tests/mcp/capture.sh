#!/usr/bin/env bash
# Capture the exact HTTP wire between the SDK client and the SDK server (no Envoy) through tests/mcp/wiretap.py.
#
#   tests/mcp/capture.sh OUT_DIR PROTOCOL ACTIONS_JSON [server flags...]
#   e.g. tests/mcp/capture.sh /tmp/wire/modern 2026-07-28 '[{"op":"list_tools"}]'
#        tests/mcp/capture.sh /tmp/wire/legacy 2025-11-25 '[{"op":"list_tools"}]' --json-response
#
# Writes OUT_DIR/wire.jsonl (one exchange a line, see wiretap.py), client.jsonl (client.py's lines) and the stderr
# of each process. Needs `make mcp-tools`. Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 protocol=$2 actions=$3
shift 3
py=.venv/bin/python
mkdir -p "$out"
rm -f "$out"/wire.jsonl "$out"/client.jsonl
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_ready() { for _ in $(seq 100); do grep -q '^READY ' "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no READY in $1" >&2; exit 1; }

$py tests/mcp/server.py 0 "$@" >"$out/server.out" 2>"$out/server.err" &
pids+=($!)
wait_ready "$out/server.out"
server_port=$(sed -n 's#^READY http://127.0.0.1:\([0-9]*\)/.*#\1#p' "$out/server.out")

python3 tests/mcp/wiretap.py 0 "127.0.0.1:$server_port" --log "$out/wire.jsonl" >"$out/tap.out" 2>"$out/tap.err" &
pids+=($!)
wait_ready "$out/tap.out"
tap_url=$(awk '/^READY /{print $2}' "$out/tap.out")/mcp

$py tests/mcp/client.py "$tap_url" --protocol "$protocol" --token "${MCP_TOKEN:-test-token}" \
	--header 'x-agent-iam-agent: spiffe://trading.example/agent/trader' \
	--actions "$actions" >"$out/client.jsonl" 2>"$out/client.err"
sleep 0.3   # the tap logs an exchange once its response has ended
echo "$out: $(wc -l <"$out/wire.jsonl") exchanges"
