#!/usr/bin/env python3
"""Write the agent-iam .wasm as an OCI image layout that Istio and Envoy Gateway can pull.

    python3 deploy/oci/build_layout.py --wasm target/wasm32-wasip1/release/agent_iam.wasm \
        --out target/oci/agent-iam [--variant oci|compat] [--tag 0.1.0] [--revision SHA] [--source URL]

The output is a directory in the OCI image layout format (`oci-layout`, `index.json`, `blobs/sha256/...`)
holding one image manifest, tagged with the plugin version (`org.opencontainers.image.ref.name`). Push it
with your own tools, e.g. `oras cp --from-oci-layout target/oci/agent-iam:0.1.0 REGISTRY/agent-iam:0.1.0`
or `skopeo copy oci:target/oci/agent-iam:0.1.0 docker://REGISTRY/agent-iam:0.1.0` (docs/deployment.md).

Two formats, both understood by Istio's and Envoy Gateway's image fetchers (the solo-io "Wasm image
specification" they implement):

- `oci` (default): the Wasm OCI artifact. Exactly two layers: the runtime configuration
  (`application/vnd.module.wasm.config.v1+json`, `runtime-config.json`) and the module itself
  (`application/vnd.module.wasm.content.layer.v1+wasm`, the raw .wasm bytes). The fetchers insist on two
  layers, so the runtime configuration is a layer as well as the manifest's config.
- `compat`: an ordinary OCI image with one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding
  `plugin.wasm` and `runtime-config.json`, and the manifest annotation `module.wasm.image/variant: compat`.
  For registries or tools that only take container images.

The output depends only on the inputs: JSON is written with sorted keys and no spaces, the tar entries
have fixed owners, modes and times, gzip has no name or time, and `org.opencontainers.image.created` is
set only from SOURCE_DATE_EPOCH. The same .wasm and metadata give the same digests. Python standard
library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
WASM_CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ROOT_ID = "agent-iam"
REPO_ROOT = Path(__file__).resolve().parents[2]


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_toml(path):
    try:
        import tomllib  # Python 3.11+

        with open(path, "rb") as f:
            return tomllib.load(f)
    except ModuleNotFoundError:  # pragma: no cover - older Pythons: the few keys we need, by pattern
        text = Path(path).read_text(encoding="utf-8")
        table, out = None, {}
        for line in text.splitlines():
            m = re.match(r"^\[([^\]]+)\]\s*$", line)
            if m:
                table = out.setdefault(m.group(1), {})
                continue
            m = re.match(r'^(\w+)\s*=\s*"([^"]*)"', line)
            if m and table is not None:
                table[m.group(1)] = m.group(2)
            elif table is not None and re.match(r"^(\w+)\.workspace\s*=\s*true", line):
                table[line.split(".")[0]] = {"workspace": True}
        for name, t in list(out.items()):
            if "." in name:
                outer, inner = name.split(".", 1)
                out.setdefault(outer, {})[inner] = t
        return out


def package_metadata(root):
    """name, version, description and license of the plugin crate (workspace values resolved)."""
    package = read_toml(root / "plugin" / "Cargo.toml").get("package", {})
    workspace = read_toml(root / "Cargo.toml").get("workspace", {}).get("package", {})

    def field(key):
        value = package.get(key)
        if isinstance(value, dict) and value.get("workspace"):
            value = workspace.get(key)
        return value

    return {key: field(key) for key in ("name", "version", "description", "license")}


def git(root, *args):
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def deterministic_tar_gz(files):
    """A gzip-compressed tar of `files` ([(name, bytes)]) with fixed metadata, and the uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=9, mtime=0) as gz:
        gz.write(tar_bytes)
    return compressed.getvalue(), tar_bytes


class Layout:
    def __init__(self, out):
        self.out = out
        self.blobs = out / "blobs" / "sha256"

    def prepare(self):
        if self.out.exists():
            entries = {p.name for p in self.out.iterdir()}
            if entries and "oci-layout" not in entries:
                sys.exit(f"build_layout: {self.out} exists and is not an OCI layout; refusing to overwrite it")
            shutil.rmtree(self.out)
        self.blobs.mkdir(parents=True)

    def blob(self, media_type, data, annotations=None):
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        descriptor = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def main():
    meta = package_metadata(REPO_ROOT)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, type=Path, help="the plugin module (.wasm)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (replaced if it is a layout)")
    parser.add_argument("--variant", choices=["oci", "compat"], default="oci")
    parser.add_argument("--tag", default=meta["version"], help="ref name in index.json (default: crate version)")
    parser.add_argument("--version", default=meta["version"], help="image version annotation (default: crate version)")
    parser.add_argument("--revision", default=None, help="source revision (default: git HEAD, if any)")
    parser.add_argument("--source", default=None, help="source repository URL (default: git remote origin, if any)")
    args = parser.parse_args()

    wasm = args.wasm.read_bytes()
    if wasm[:4] != b"\0asm" or wasm[4:8] != b"\x01\0\0\0":
        sys.exit(f"build_layout: {args.wasm} is not a WebAssembly module (no \\0asm version 1 header)")

    revision = args.revision if args.revision is not None else git(REPO_ROOT, "rev-parse", "HEAD")
    source = args.source if args.source is not None else git(REPO_ROOT, "config", "--get", "remote.origin.url")
    annotations = {
        "org.opencontainers.image.title": meta["name"],
        "org.opencontainers.image.description": meta["description"],
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.licenses": meta["license"],
    }
    if revision:
        annotations["org.opencontainers.image.revision"] = revision
    if source:
        annotations["org.opencontainers.image.source"] = source
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        created = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        annotations["org.opencontainers.image.created"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {k: v for k, v in annotations.items() if v}

    # The runtime configuration of the Wasm image specification: target runtime, ABI, root ids.
    runtime_config = canonical_json(
        {"type": "envoy_proxy", "abi_version": "proxy_abi_version_0_2_1", "config": {"root_ids": [ROOT_ID]}}
    )

    layout = Layout(args.out)
    layout.prepare()
    if args.variant == "oci":
        config = layout.blob(WASM_CONFIG_MEDIA_TYPE, runtime_config)
        layers = [
            layout.blob(
                WASM_CONFIG_MEDIA_TYPE, runtime_config, {"org.opencontainers.image.title": "runtime-config.json"}
            ),
            layout.blob(WASM_LAYER_MEDIA_TYPE, wasm, {"org.opencontainers.image.title": "plugin.wasm"}),
        ]
        manifest_annotations = dict(annotations)
    else:
        layer_bytes, tar_bytes = deterministic_tar_gz([("plugin.wasm", wasm), ("runtime-config.json", runtime_config)])
        image_config = {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {"Labels": annotations},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]},
        }
        config = layout.blob(IMAGE_CONFIG_MEDIA_TYPE, canonical_json(image_config))
        layers = [layout.blob(TAR_GZIP_LAYER_MEDIA_TYPE, layer_bytes)]
        manifest_annotations = dict(annotations, **{"module.wasm.image/variant": "compat"})

    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config,
        "layers": layers,
        "annotations": manifest_annotations,
    }
    manifest_descriptor = layout.blob(
        MANIFEST_MEDIA_TYPE, canonical_json(manifest), {"org.opencontainers.image.ref.name": args.tag}
    )
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [manifest_descriptor]}
    (args.out / "index.json").write_bytes(canonical_json(index))
    (args.out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    print(f"{args.out}: {args.variant} image {manifest_descriptor['digest']} tag {args.tag} ({len(wasm)} byte module)")


if __name__ == "__main__":
    main()
