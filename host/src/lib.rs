//! A proxy-wasm ABI 0.2.1 host on wasmtime that runs a plugin `.wasm` the way Envoy does.
//!
//! - [`Host`]: the compiled module (compiled once, pre-linked) plus the state its VMs share
//!   (shared data with CAS, shared queues, metrics), like one Envoy `vm_id` across workers.
//! - [`Vm`]: one instance (one Envoy worker): root context 1, started and configured like Envoy
//!   (`_initialize`, `proxy_on_context_create(1, 0)`, `proxy_on_vm_start`, `proxy_on_configure`).
//! - [`Vm::request`] sends an HTTP request through the plugin and returns an [`Outcome`].
//!
//! Envoy semantics modelled: deferred `send_local_response`/`continue_stream` (applied after the
//! callback returns), local replies pass through the plugin's own `proxy_on_response_headers` and
//! `proxy_on_response_body`, callouts (`proxy_http_call`) answered by the test, a trap fails the stream
//! with `503 wasm_fail_stream` and fails the VM (fail closed). Header maps and bodies are there when
//! Envoy's are (its `request_headers_`/`response_headers_` pointers): the stream context is created
//! before its request headers exist, a headers callback that returns Continue (or a
//! `proxy_continue_stream`) drops them, `proxy_on_log` reads the access log's copies (absent maps answer
//! NotFound there, BadArgument elsewhere), a body is readable only in its body callback. Bodies arrive as
//! Envoy delivers HTTP/1.1 bodies: the data, then an empty chunk that ends the stream; a body that waited
//! behind stopped headers comes in one chunk. `tests/tests/probe.rs` checks all of this, call by
//! call, against real Envoy.
//!
//! ```
//! use agent_iam_host::{Host, Outcome};
//! // A plugin that answers every request with 403 from proxy_on_request_headers.
//! let wasm = wat::parse_str(r#"
//!   (module
//!     (import "env" "proxy_send_local_response"
//!       (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 16) "denied")
//!     (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
//!     (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
//!       (drop (call $reply (i32.const 403) (i32.const 16) (i32.const 6)
//!                          (i32.const 16) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
//!       (i32.const 0)))
//! "#).unwrap();
//! let host = Host::from_bytes(&wasm).unwrap();
//! let mut vm = host.vm().start().unwrap();
//! let outcome = vm.request().method("GET").path("/x").authority("api.example").send();
//! assert_eq!(outcome.status(), Some(403));
//! assert!(!outcome.is_allowed());
//! assert!(matches!(&outcome, Outcome::LocalResponse { body, details, .. }
//!     if body.as_slice() == b"denied" && details == "denied"));
//! vm.assert_healthy();
//! ```

use std::path::PathBuf;

/// The repository root (where `Cargo.toml`, `envoy/` and `target/` are), as this crate was built from.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The plugin `.wasm` the tests and tools of the repository run: `$AGENT_IAM_WASM` if set, else the release
/// build in `target/wasm32-wasip1/release/agent_iam.wasm` (built by `make wasm`).
pub fn plugin_wasm_path() -> PathBuf {
    match std::env::var_os("AGENT_IAM_WASM") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/wasm32-wasip1/release/agent_iam.wasm"),
    }
}

mod abi;
pub mod envoy_foreign;
mod state;
mod wasi;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use wasmtime::{Engine, Instance, InstancePre, Linker, Module, Store, TypedFunc, WasmParams, WasmResults};

pub use abi::{deserialize_pairs, serialize_pairs};
pub use state::ForeignFunction;
use state::{CallResponse, Deferred, LocalReply, Pairs, Phase, ROOT_CONTEXT, Shared, Stream, VmState, WasmClock, lock};

/// Envoy's details string for a stream failed by the wasm filter (trap, failed VM, reset).
pub const FAIL_STREAM_DETAILS: &str = "wasm_fail_stream";

/// Envoy's details string for a stream reset with `proxy_close_stream`.
pub const CLOSE_STREAM_DETAILS: &str = "wasm_close_stream";

/// The proxy-wasm status codes the Rust SDK (0.2.5) can decode.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Not found.
    NotFound = 1,
    /// Bad argument.
    BadArgument = 2,
    /// Serialization failure.
    SerializationFailure = 3,
    /// Parse failure.
    ParseFailure = 4,
    /// Empty (shared queue).
    Empty = 7,
    /// CAS mismatch (shared data).
    CasMismatch = 8,
    /// Internal failure.
    InternalFailure = 10,
}

/// Log levels of `proxy_log` (trace 0 .. critical 5).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace = 0,
    /// 1
    Debug = 1,
    /// 2
    Info = 2,
    /// 3
    Warn = 3,
    /// 4
    Error = 4,
    /// 5
    Critical = 5,
}

impl LogLevel {
    /// Decode a `proxy_log` level.
    pub fn from_u32(v: u32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// One captured log line: `proxy_log`, stdout (info), stderr (error), or the host (`[host] `
/// prefix: traps, unsupported calls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Level.
    pub level: LogLevel,
    /// Message.
    pub message: String,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.level, self.message)
    }
}

/// A pending `proxy_http_call`, to be answered with [`Vm::respond`] or [`Vm::fail`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callout {
    /// Token returned to the plugin.
    pub token: u32,
    /// The context that was effective when the call was made (Envoy attaches the call to the
    /// root context; the SDK remembers the stream).
    pub context_id: u32,
    /// Upstream cluster name.
    pub cluster: String,
    /// Request headers (lowercased names, pseudo-headers included).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: Vec<(String, String)>,
    /// Timeout given by the plugin.
    pub timeout: Duration,
}

impl Callout {
    /// First value of a request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// A request stopped by the plugin (Pause) that waits for `proxy_continue_stream`, a local reply,
/// or the test ([`Vm::abort`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    context_id: u32,
}

impl PendingRequest {
    /// The stream's context id.
    pub fn context_id(&self) -> u32 {
        self.context_id
    }
}

/// What happened to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded upstream, with these request headers (pseudo-headers included).
    Continued {
        /// The request headers as forwarded upstream.
        request_headers: Vec<(String, String)>,
        /// The request body as forwarded upstream.
        forwarded_body: Vec<u8>,
        /// The upstream's response as it left the plugin for the client: status, headers (without
        /// `:status`) and body, after `proxy_on_response_headers` and `proxy_on_response_body`.
        response: (u16, Vec<(String, String)>, Vec<u8>),
    },
    /// Answered locally (`proxy_send_local_response`, or 503 `wasm_fail_stream` after a trap or
    /// on a failed VM; status 0 = the stream was reset: `wasm_close_stream` by `proxy_close_stream`,
    /// `downstream_reset` by [`Vm::abort`]).
    LocalResponse {
        /// HTTP status.
        status: u16,
        /// Response headers, without `:status`, after the plugin's `proxy_on_response_headers`.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
        /// Response code details given by the plugin.
        details: String,
    },
    /// Stopped by the plugin; see [`Vm::resume`].
    Paused(PendingRequest),
}

impl Outcome {
    /// The local response status (`None` unless [`Outcome::LocalResponse`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::LocalResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// First value of a header: a local response header, or a forwarded request header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let headers = match self {
            Outcome::LocalResponse { headers, .. } => headers,
            Outcome::Continued { request_headers, .. } => request_headers,
            Outcome::Paused(_) => return None,
        };
        headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// All values of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        let headers = match self {
            Outcome::LocalResponse { headers, .. } => headers,
            Outcome::Continued { request_headers, .. } => request_headers,
            Outcome::Paused(_) => return Vec::new(),
        };
        headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The local response body as JSON (`Value::Null` when not JSON or not a local response).
    pub fn body_json(&self) -> serde_json::Value {
        match self {
            Outcome::LocalResponse { body, .. } => serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        }
    }

    /// The request was forwarded upstream.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Outcome::Continued { .. })
    }

    /// The pending request, if paused.
    pub fn pending(&self) -> Option<&PendingRequest> {
        match self {
            Outcome::Paused(p) => Some(p),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host
// ---------------------------------------------------------------------------------------------

/// A compiled plugin plus the state shared by its VMs.
pub struct Host {
    engine: Engine,
    pre: InstancePre<VmState>,
    shared: Arc<Shared>,
    metered: bool,
}

/// Fuel given to a metered VM: more than any test or benchmark can spend.
const FUEL: u64 = u64::MAX / 2;

impl Host {
    /// Compile a `.wasm` file.
    pub fn from_file(p: impl AsRef<Path>) -> Result<Host> {
        let p = p.as_ref();
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Host::from_bytes(&bytes).with_context(|| format!("loading {}", p.display()))
    }

    /// Compile a module (binary wasm). Fails on imports Envoy does not provide.
    pub fn from_bytes(b: &[u8]) -> Result<Host> {
        Host::build(b, false)
    }

    /// Like [`Host::from_file`], but every VM counts the wasm instructions it executes (wasmtime fuel: one
    /// unit per operator), readable with [`Vm::fuel_consumed`]. Deterministic, unlike time, and slower:
    /// for benchmarks that want a figure no other process on the machine can disturb.
    pub fn metered_from_file(p: impl AsRef<Path>) -> Result<Host> {
        let p = p.as_ref();
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Host::build(&bytes, true).with_context(|| format!("loading {}", p.display()))
    }

    /// [`Host::metered_from_file`] for a module in memory.
    pub fn metered_from_bytes(b: &[u8]) -> Result<Host> {
        Host::build(b, true)
    }

    fn build(b: &[u8], metered: bool) -> Result<Host> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(metered);
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("configuring wasmtime")?;
        let module = Module::new(&engine, b).map_err(anyhow::Error::from).context("compiling the wasm module")?;
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker)?;
        wasi::link(&mut linker)?;
        let env: HashSet<&str> = abi::provided().iter().copied().collect();
        let wasi_names: HashSet<&str> = wasi::provided().iter().copied().collect();
        let mut unknown = Vec::new();
        for import in module.imports() {
            let known = match import.module() {
                "env" => env.contains(import.name()),
                m if wasi::MODULES.contains(&m) => wasi_names.contains(import.name()),
                _ => false,
            };
            if !known {
                unknown.push(format!("{}.{}", import.module(), import.name()));
            }
        }
        if !unknown.is_empty() {
            bail!("the module imports functions Envoy does not provide: {}", unknown.join(", "));
        }
        let pre = linker.instantiate_pre(&module).map_err(anyhow::Error::from).context("linking the wasm module")?;
        let host = Host { engine, pre, shared: Arc::new(Shared::default()), metered };
        // The foreign functions Envoy 1.40 registers that agent-iam uses.
        host.register_foreign_function("verify_signature", envoy_foreign::verify_signature);
        host.register_foreign_function("clear_route_cache", envoy_foreign::clear_route_cache);
        Ok(host)
    }

    /// Remove a foreign function, as on a host that lacks it (later VMs and calls get NotFound).
    pub fn unregister_foreign_function(&self, name: &str) {
        lock(&self.shared.foreign).remove(name);
    }

    /// Start building a VM (an Envoy worker).
    pub fn vm(&self) -> VmBuilder<'_> {
        VmBuilder {
            host: self,
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            time: None,
            clusters: None,
            properties: HashMap::new(),
            log_level: LogLevel::Trace,
            clock_wasm: false,
            headers_stop_iteration: false,
        }
    }

    /// Register a foreign function for `proxy_call_foreign_function` (unknown names: NotFound).
    pub fn register_foreign_function(
        &self,
        name: &str,
        f: impl Fn(&[u8]) -> std::result::Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) {
        lock(&self.shared.foreign).insert(name.to_string(), Arc::new(f));
    }

    /// Current value of a counter or gauge (counters first), shared by all VMs of this host.
    pub fn metric(&self, name: &str) -> Option<i64> {
        metric_value(&self.shared, name)
    }

    /// All counters and gauges with their values, sorted by name.
    pub fn metrics(&self) -> Vec<(String, i64)> {
        let m = lock(&self.shared.metrics);
        let mut v: Vec<(String, i64)> = m
            .all
            .iter()
            .filter(|x| x.kind != state::MetricKind::Histogram)
            .map(|x| (x.name.clone(), x.value))
            .collect();
        v.sort();
        v
    }

    /// Shared data value (and cas) for a key.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        lock(&self.shared.data).map.get(key).cloned()
    }
}

fn metric_value(shared: &Shared, name: &str) -> Option<i64> {
    lock(&shared.metrics).value(name)
}

/// Builds a [`Vm`]: `host.vm().plugin_config(b"{}").start()?`.
pub struct VmBuilder<'h> {
    host: &'h Host,
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    time: Option<SystemTime>,
    clusters: Option<HashSet<String>>,
    properties: HashMap<String, Vec<u8>>,
    log_level: LogLevel,
    clock_wasm: bool,
    headers_stop_iteration: bool,
}

impl<'h> VmBuilder<'h> {
    /// `vm_config.configuration` (read in `proxy_on_vm_start`).
    pub fn vm_config(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.vm_config = bytes.as_ref().to_vec();
        self
    }

    /// The plugin `configuration` (read in `proxy_on_configure`).
    pub fn plugin_config(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.plugin_config = bytes.as_ref().to_vec();
        self
    }

    /// Virtual clock start (default: the real time now).
    pub fn time(mut self, t: SystemTime) -> Self {
        self.time = Some(t);
        self
    }

    /// Clusters that exist for `proxy_http_call` (default: every cluster exists). Calls to
    /// others get BadArgument, like Envoy.
    pub fn clusters<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.clusters = Some(names.into_iter().map(|s| s.as_ref().to_string()).collect());
        self
    }

    /// A VM-wide property (e.g. `plugin_name`, `node.id`), readable from every context.
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Self {
        self.properties.insert(path.to_string(), value.as_ref().to_vec());
        self
    }

    /// The level `proxy_get_log_level` reports (default trace; all logs are captured anyway).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Keep the time spent inside the module's own code ([`Vm::wasm_time`]), apart from the host's work on its
    /// behalf: what "time inside the .wasm" means. Costs two clock reads per callback and per host call.
    pub fn clock_wasm(mut self, on: bool) -> Self {
        self.clock_wasm = on;
        self
    }

    /// Envoy's `allow_on_headers_stop_iteration` (Wasm `PluginConfig`, Envoy 1.35 and later): a plugin that stops
    /// on request headers is given the body while the headers wait; a body callback that continues lets the
    /// headers and the body go on, and a resumed request's buffered body goes on without the plugin seeing it
    /// again. Off (the default), Envoy stops everything and hands the plugin the body only once it resumes.
    pub fn headers_stop_iteration(mut self, on: bool) -> Self {
        self.headers_stop_iteration = on;
        self
    }

    /// Instantiate, initialize, start and configure. Errors (with the VM logs) when the module
    /// traps, `proxy_on_vm_start` or `proxy_on_configure` returns false.
    pub fn start(self) -> Result<Vm> {
        let host = self.host;
        let vm_serial = {
            let mut n = lock(&host.shared.next_vm);
            *n += 1;
            *n
        };
        let now = self.time.unwrap_or_else(SystemTime::now);
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(vm_serial);
            h.finish() | 1
        };
        let mut vm_properties = self.properties;
        vm_properties.entry("plugin_root_id".into()).or_default();
        vm_properties.entry("plugin_vm_id".into()).or_default();
        let state = VmState {
            shared: host.shared.clone(),
            wasm_clock: self.clock_wasm.then(WasmClock::default),
            headers_stop_iteration: self.headers_stop_iteration,
            failing: Vec::new(),
            vm_serial,
            memory: None,
            alloc: None,
            logs: Vec::new(),
            log_level: self.log_level,
            now,
            monotonic: Duration::from_secs(1),
            tick_period_ms: 0,
            vm_config: self.vm_config,
            plugin_config: self.plugin_config,
            plugin_config_access: false,
            effective: ROOT_CONTEXT,
            streams: HashMap::new(),
            callouts: Default::default(),
            next_token: 0,
            call_response: None,
            status: (0, String::new()),
            deferred: Vec::new(),
            clusters: self.clusters,
            metric_ids: Default::default(),
            scratch: HashMap::new(),
            vm_properties,
            rng: seed,
        };
        let mut store = Store::new(&host.engine, state);
        if host.metered {
            store.set_fuel(FUEL).map_err(anyhow::Error::from).context("fuelling the VM")?;
        }
        if self.clock_wasm {
            store.call_hook(|mut c, hook| {
                if let Some(clock) = c.data_mut().wasm_clock.as_mut() {
                    clock.hook(hook);
                }
                Ok(())
            });
        }
        let instance =
            host.pre.instantiate(&mut store).map_err(anyhow::Error::from).context("instantiating the module")?;
        let memory = instance.get_memory(&mut store, "memory");
        let alloc = instance
            // proxy-wasm-cpp-host prefers `malloc` when the module exports both.
            .get_typed_func::<i32, i32>(&mut store, "malloc")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate"))
            .ok();
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc;
        let mut vm = Vm {
            store,
            instance,
            failed: None,
            next_context: ROOT_CONTEXT + 1,
            finished: HashMap::new(),
            fuel_by_export: HashMap::new(),
            last_filter_state: HashMap::new(),
            exports: HashMap::new(),
        };

        let init = if vm.has_export("_initialize") { "_initialize" } else { "_start" };
        if vm.has_export(init) {
            vm.call::<(), ()>(init, ROOT_CONTEXT, ());
        }
        vm.store.data_mut().plugin_config_access = true;
        vm.call::<(i32, i32), ()>("proxy_on_context_create", ROOT_CONTEXT, (ROOT_CONTEXT as i32, 0));
        vm.store.data_mut().plugin_config_access = false;
        let size = vm.store.data().vm_config.len() as i32;
        let started = vm.call::<(i32, i32), i32>("proxy_on_vm_start", ROOT_CONTEXT, (ROOT_CONTEXT as i32, size));
        vm.after_call();
        if vm.failed.is_some() || started == Some(0) {
            bail!("proxy_on_vm_start failed; VM logs:\n{}", vm.logs_text());
        }
        let config = vm.store.data().plugin_config.clone();
        if !vm.configure(&config) {
            bail!("proxy_on_configure rejected the plugin configuration; VM logs:\n{}", vm.logs_text());
        }
        Ok(vm)
    }
}

// ---------------------------------------------------------------------------------------------
// Vm
// ---------------------------------------------------------------------------------------------

/// One VM (one Envoy worker thread's instance of the plugin).
pub struct Vm {
    store: Store<VmState>,
    instance: Instance,
    failed: Option<String>,
    next_context: u32,
    finished: HashMap<u32, Outcome>,
    /// Metered hosts: instructions spent per export (callback), since start or the last reset.
    fuel_by_export: HashMap<String, u64>,
    /// Filter state the plugin wrote on the stream that finished last.
    last_filter_state: HashMap<String, Vec<u8>>,
    /// Callbacks resolved and type-checked on first use (`None`: not exported, or not with that signature), as
    /// Envoy resolves them once per module rather than once per call.
    exports: HashMap<&'static str, Option<Box<dyn std::any::Any + Send + Sync>>>,
}

impl Vm {
    /// Reconfigure (hot reload): `proxy_on_configure(1, size)`; false = rejected (or trapped).
    pub fn configure(&mut self, plugin_config: &[u8]) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let s = self.store.data_mut();
        s.plugin_config = plugin_config.to_vec();
        s.plugin_config_access = true;
        let r = self.call::<(i32, i32), i32>(
            "proxy_on_configure",
            ROOT_CONTEXT,
            (ROOT_CONTEXT as i32, plugin_config.len() as i32),
        );
        self.store.data_mut().plugin_config_access = false;
        self.after_call();
        self.failed.is_none() && r.unwrap_or(1) != 0
    }

    /// Build a request to send through the plugin.
    pub fn request(&mut self) -> RequestBuilder<'_> {
        RequestBuilder {
            vm: self,
            req: RequestSpec {
                method: "GET".into(),
                path: "/".into(),
                authority: "localhost".into(),
                scheme: "https".into(),
                headers: Vec::new(),
                properties: HashMap::new(),
                body: Vec::new(),
                body_chunks: Vec::new(),
                upstream_status: 200,
                upstream_headers: Vec::new(),
                upstream_body: Vec::new(),
                upstream_chunks: Vec::new(),
            },
        }
    }

    /// Callouts made with `proxy_http_call` and not answered yet, oldest first.
    pub fn pending_callouts(&self) -> Vec<Callout> {
        self.store.data().callouts.values().cloned().collect()
    }

    /// Answer a callout: `proxy_on_http_call_response(1, token, headers, body_size, 0)` with the
    /// response readable (HttpCallResponseHeaders/Body) during the callback only.
    ///
    /// Panics when no callout with this token is pending (a test bug).
    pub fn respond(&mut self, token: u32, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.take_callout(token);
        let mut h: Pairs = vec![(":status".into(), status.to_string())];
        for (k, v) in headers {
            abi::header_add(&mut h, k, v);
        }
        let n = h.len() as i32;
        abi::set_call_response(self.store.data_mut(), Some(CallResponse { headers: h, body: body.to_vec() }));
        self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            ROOT_CONTEXT,
            (ROOT_CONTEXT as i32, token as i32, n, body.len() as i32, 0),
        );
        abi::set_call_response(self.store.data_mut(), None);
        self.after_call();
    }

    /// Fail a callout like Envoy's `onHttpCallFailure` (reset): 0 headers, 0 body, and
    /// `proxy_get_status` reports (11, "reset") during the callback.
    pub fn fail(&mut self, token: u32) {
        self.take_callout(token);
        self.store.data_mut().status = (11, "reset".into());
        self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            ROOT_CONTEXT,
            (ROOT_CONTEXT as i32, token as i32, 0, 0, 0),
        );
        self.store.data_mut().status = (0, String::new());
        self.after_call();
    }

    fn take_callout(&mut self, token: u32) {
        if self.store.data_mut().callouts.remove(&token).is_none() {
            panic!("no pending callout with token {token}");
        }
    }

    /// `proxy_on_tick(1)` if the plugin set a tick period.
    pub fn tick(&mut self) {
        if self.store.data().tick_period_ms == 0 {
            return;
        }
        self.call::<i32, ()>("proxy_on_tick", ROOT_CONTEXT, ROOT_CONTEXT as i32);
        self.after_call();
    }

    /// The tick period the plugin set (zero = none).
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.store.data().tick_period_ms as u64)
    }

    /// Deliver `proxy_on_queue_ready` for shared queues this VM registered that have items.
    pub fn dispatch_queues(&mut self) {
        let serial = self.store.data().vm_serial;
        let ready: Vec<(u32, u32)> = {
            let q = lock(&self.store.data().shared.queues);
            q.queues
                .iter()
                .filter(|(_, queue)| queue.owner.0 == serial && !queue.items.is_empty())
                .map(|(token, queue)| (queue.owner.1, *token))
                .collect()
        };
        for (ctx, token) in ready {
            self.call::<(i32, i32), ()>("proxy_on_queue_ready", ctx, (ctx as i32, token as i32));
            self.after_call();
        }
    }

    /// Move the virtual clock forward (wall clock and monotonic clock).
    pub fn advance_clock(&mut self, d: Duration) {
        let s = self.store.data_mut();
        s.now += d;
        s.monotonic += d;
    }

    /// Set the virtual wall clock (the monotonic clock is unaffected).
    pub fn set_time(&mut self, t: SystemTime) {
        self.store.data_mut().now = t;
    }

    /// The virtual wall clock.
    pub fn now(&self) -> SystemTime {
        self.store.data().now
    }

    /// Time spent inside the module's own code so far, and the host calls it made, on a VM built with
    /// [`VmBuilder::clock_wasm`]. The host's work on the module's behalf (its header maps, clocks, logs) is not
    /// counted; the clock reads at each crossing are, about half of each.
    pub fn wasm_time(&self) -> Option<(Duration, u64)> {
        self.store.data().wasm_clock.as_ref().map(|c| (c.inside, c.host_calls))
    }

    /// Wasm instructions (fuel units) this VM has executed so far, on a [`Host::metered_from_file`] host.
    pub fn fuel_consumed(&self) -> Option<u64> {
        self.store.get_fuel().ok().map(|left| FUEL.saturating_sub(left))
    }

    /// On a metered host: instructions spent in each export (`proxy_on_request_headers`, ...) since the VM
    /// started or [`Vm::reset_fuel_by_export`], largest first: where a request's instructions go.
    pub fn fuel_by_export(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.fuel_by_export.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The filter state (`proxy_set_property`) the plugin wrote on the stream that finished last, by key as
    /// written; Envoy keeps each as `wasm.<key>`, read in access logs with `%FILTER_STATE(wasm.<key>:PLAIN)%`.
    pub fn last_filter_state(&self) -> &HashMap<String, Vec<u8>> {
        &self.last_filter_state
    }

    /// Clears [`Vm::fuel_by_export`].
    pub fn reset_fuel_by_export(&mut self) {
        self.fuel_by_export.clear();
    }

    /// Captured logs.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Take (and clear) the captured logs.
    pub fn take_logs(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    /// Logs as text, one entry per line.
    pub fn logs_text(&self) -> String {
        self.logs().iter().map(|l| format!("{l}\n")).collect()
    }

    /// From now on the host answers this call (`proxy_get_current_time_nanoseconds`,
    /// `proxy_get_header_map_pairs`, `proxy_replace_header_map_value` or `proxy_remove_header_map_value`) with
    /// InternalFailure: fault injection for what a plugin does when Envoy refuses a call.
    pub fn fail_host_call(&mut self, name: &'static str) {
        const INJECTABLE: [&str; 4] = [
            "proxy_get_current_time_nanoseconds",
            "proxy_get_header_map_pairs",
            "proxy_replace_header_map_value",
            "proxy_remove_header_map_value",
        ];
        assert!(INJECTABLE.contains(&name), "{name} cannot be made to fail (only {INJECTABLE:?})");
        self.store.data_mut().failing.push(name);
    }

    /// Every host call answers normally again (undoes [`Vm::fail_host_call`]).
    pub fn restore_host_calls(&mut self) {
        self.store.data_mut().failing.clear();
    }

    /// The size of the module's linear memory, in bytes (it only grows).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory.map_or(0, |m| m.data_size(&self.store))
    }

    /// Current value of a counter or gauge (shared by the host's VMs).
    pub fn metric(&self, name: &str) -> Option<i64> {
        metric_value(&self.store.data().shared, name)
    }

    /// Samples recorded for a histogram.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        let m = lock(&self.store.data().shared.metrics);
        m.by_name
            .get(&(name.to_string(), state::MetricKind::Histogram))
            .and_then(|i| m.all.get(*i))
            .map(|h| h.samples.clone())
            .unwrap_or_default()
    }

    /// The trap that failed this VM, if any. A failed VM answers every request with 503.
    pub fn trap(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Panics (with the logs) if the VM trapped or logged at critical level.
    #[track_caller]
    pub fn assert_healthy(&self) {
        let critical = self.logs().iter().any(|l| l.level == LogLevel::Critical);
        if self.failed.is_some() || critical {
            panic!("VM is not healthy (trap: {:?}); logs:\n{}", self.failed, self.logs_text());
        }
    }

    /// The outcome of a paused request: the final outcome if the plugin has since continued or
    /// answered it, otherwise `Outcome::Paused` again.
    pub fn resume(&mut self, pending: PendingRequest) -> Outcome {
        match self.finished.remove(&pending.context_id) {
            Some(o) => o,
            None if self.store.data().streams.contains_key(&pending.context_id) => Outcome::Paused(pending),
            None => panic!("unknown request context {}", pending.context_id),
        }
    }

    /// End a paused request from the test side (downstream reset): on_log/on_done/on_delete run,
    /// the outcome is a `LocalResponse` with status 0.
    pub fn abort(&mut self, pending: PendingRequest) -> Outcome {
        if let Some(o) = self.finished.remove(&pending.context_id) {
            return o;
        }
        let ctx = pending.context_id;
        if self.store.data().streams.contains_key(&ctx) {
            let outcome = Outcome::LocalResponse {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
                details: "downstream_reset".into(),
            };
            self.finish(ctx, outcome);
        }
        self.finished.remove(&ctx).unwrap_or(Outcome::Paused(pending))
    }

    // -----------------------------------------------------------------------------------------
    // Guest calls
    // -----------------------------------------------------------------------------------------

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Looks up the export `name` with this signature, once; an export of another signature fails the VM.
    fn resolve<P, R>(&mut self, name: &'static str)
    where
        P: WasmParams + 'static,
        R: WasmResults + 'static,
    {
        if self.exports.contains_key(name) {
            return;
        }
        let f = match self.instance.get_typed_func::<P, R>(&mut self.store, name) {
            Ok(f) => Some(Box::new(f) as Box<dyn std::any::Any + Send + Sync>),
            Err(_) if self.has_export(name) => {
                // proxy-wasm-cpp-host refuses a module whose callback has the wrong signature.
                let msg = format!("bad function signature for {name}");
                self.store.data_mut().host_log(LogLevel::Critical, msg.clone());
                self.failed = Some(msg);
                None
            }
            Err(_) => None,
        };
        self.exports.insert(name, f);
    }

    /// Call an export with `ctx` as the active and effective context. `None` when the export is
    /// missing or the call trapped (then the VM is failed and a critical log recorded).
    fn call<P, R>(&mut self, name: &'static str, ctx: u32, params: P) -> Option<R>
    where
        P: WasmParams + 'static,
        R: WasmResults + 'static,
    {
        if self.failed.is_some() {
            return None;
        }
        self.resolve::<P, R>(name);
        // Borrowed in place: cloning a `TypedFunc` clones its registered type, which costs more than the call.
        let f = self.exports.get(name)?.as_ref()?.downcast_ref::<TypedFunc<P, R>>()?;
        self.store.data_mut().effective = ctx;
        let fuel_before = self.store.get_fuel().ok();
        let r = f.call(&mut self.store, params).map_err(|e| anyhow!("{:#}", anyhow::Error::from(e)));
        if let (Some(before), Ok(after)) = (fuel_before, self.store.get_fuel()) {
            *self.fuel_by_export.entry(name.to_owned()).or_default() += before.saturating_sub(after);
        }
        self.store.data_mut().effective = ROOT_CONTEXT;
        match r {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = format!("wasm trap in {name}: {e}");
                self.store.data_mut().host_log(LogLevel::Critical, msg.clone());
                self.failed = Some(msg);
                None
            }
        }
    }

    /// Apply deferred actions after a top-level call (Envoy's `DeferAfterCallActions`) and
    /// drive the streams they unblock.
    fn after_call(&mut self) {
        loop {
            let deferred = std::mem::take(&mut self.store.data_mut().deferred);
            let mut touched = Vec::new();
            for d in deferred {
                let ctx = match &d {
                    Deferred::LocalReply(c, _) | Deferred::Continue(c, _) | Deferred::Close(c, _) => *c,
                };
                let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { continue };
                match d {
                    Deferred::LocalReply(_, r) if st.local_reply.is_none() && !st.in_local_reply => {
                        st.local_reply = Some(r);
                    }
                    Deferred::Continue(_, 0) => st.continue_request = true,
                    Deferred::Continue(_, 1) => st.continue_response = true,
                    Deferred::Close(_, 0 | 1) => st.reset = true,
                    _ => {}
                }
                touched.push(ctx);
            }
            if self.failed.is_some() {
                // Fail closed: every open stream gets 503.
                touched = self.store.data().streams.keys().copied().collect();
            }
            if touched.is_empty() {
                return;
            }
            let mut any = false;
            for ctx in touched {
                let paused = matches!(
                    self.store.data().streams.get(&ctx).map(|s| s.phase),
                    Some(Phase::PausedRequest | Phase::PausedResponse)
                );
                if paused || (self.failed.is_some() && self.store.data().streams.contains_key(&ctx)) {
                    self.drive(ctx);
                    any = true;
                }
            }
            if !any && self.store.data().deferred.is_empty() {
                return;
            }
            if self.store.data().deferred.is_empty() && self.failed.is_none() {
                return;
            }
        }
    }

    fn fail_outcome() -> Outcome {
        Outcome::LocalResponse {
            status: 503,
            headers: vec![("content-length".into(), "0".into())],
            body: Vec::new(),
            details: FAIL_STREAM_DETAILS.into(),
        }
    }

    /// Advance a stream as far as it goes (see module docs for the model).
    fn drive(&mut self, ctx: u32) {
        loop {
            if self.failed.is_some() {
                self.finish(ctx, Self::fail_outcome());
                return;
            }
            let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return };
            if st.reset {
                st.reset = false;
                let o = Outcome::LocalResponse {
                    status: 0,
                    headers: Vec::new(),
                    body: Vec::new(),
                    details: CLOSE_STREAM_DETAILS.into(),
                };
                self.finish(ctx, o);
                return;
            }
            match st.phase {
                Phase::RequestHeaders | Phase::PausedRequest => {
                    if let Some(reply) = st.local_reply.take() {
                        self.local_reply(ctx, reply);
                        return;
                    }
                    let go = st.continue_request || (st.phase == Phase::RequestHeaders && st.last_continue);
                    st.continue_request = false;
                    if !go {
                        st.phase = Phase::PausedRequest;
                        if !self.store.data().headers_stop_iteration {
                            return;
                        }
                        // The body while the headers wait: a chunk the plugin continues on resumes the request.
                        let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return };
                        if st.pending_request_body.is_empty() {
                            return;
                        }
                        let split = std::mem::take(&mut st.request_chunks);
                        let chunks =
                            body_chunks(std::mem::take(&mut st.pending_request_body), Phase::RequestHeaders, &split);
                        let stopped = self.deliver_body(ctx, true, chunks);
                        if !stopped && let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
                            st.phase = Phase::RequestHeaders;
                            st.last_continue = true;
                        }
                        continue;
                    }
                    if !st.pending_request_body.is_empty() {
                        let split = std::mem::take(&mut st.request_chunks);
                        let chunks = body_chunks(std::mem::take(&mut st.pending_request_body), st.phase, &split);
                        st.phase = Phase::RequestHeaders;
                        let stopped = self.deliver_body(ctx, true, chunks);
                        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
                            // The body went through: the request goes on. Otherwise it waits for a continue.
                            st.phase = if stopped { Phase::PausedRequest } else { Phase::RequestHeaders };
                            st.last_continue = !stopped;
                        }
                        continue;
                    }
                    // Forward upstream; the upstream answers.
                    let held = std::mem::take(&mut st.held_request_body);
                    st.forwarded_body.extend_from_slice(&held);
                    st.forwarded = Some(st.request_headers.clone());
                    st.request_access = false;
                    let mut h: Pairs = vec![(":status".into(), st.upstream_status.to_string())];
                    for (k, v) in st.upstream_headers.clone() {
                        abi::header_add(&mut h, &k, &v);
                    }
                    st.response_headers = h;
                    st.response_access = true;
                    st.phase = Phase::ResponseHeaders;
                    let n = st.response_headers.len() as i32;
                    let eos = st.pending_response_body.is_empty() as i32;
                    let r = self.call::<(i32, i32, i32), i32>("proxy_on_response_headers", ctx, (ctx as i32, n, eos));
                    if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
                        st.last_continue = r.unwrap_or(0) == 0;
                    }
                    self.absorb_deferred();
                    if let Some(st) = self.store.data_mut().streams.get_mut(&ctx)
                        && st.last_continue
                        && st.local_reply.is_none()
                    {
                        // Envoy drops its response headers pointer when the callback returns Continue.
                        st.response_access = false;
                    }
                }
                Phase::ResponseHeaders | Phase::PausedResponse => {
                    if let Some(reply) = st.local_reply.take() {
                        // A local reply while encoding: the response is replaced.
                        let o = reply_outcome(&reply, local_reply_headers(&reply), reply.body.clone());
                        self.finish(ctx, o);
                        return;
                    }
                    let go = st.continue_response || (st.phase == Phase::ResponseHeaders && st.last_continue);
                    st.continue_response = false;
                    if !go {
                        st.phase = Phase::PausedResponse;
                        return;
                    }
                    if !st.pending_response_body.is_empty() {
                        let split = std::mem::take(&mut st.response_chunks);
                        let chunks = body_chunks(std::mem::take(&mut st.pending_response_body), st.phase, &split);
                        st.phase = Phase::ResponseHeaders;
                        let stopped = self.deliver_body(ctx, false, chunks);
                        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
                            st.phase = if stopped { Phase::PausedResponse } else { Phase::ResponseHeaders };
                            st.last_continue = !stopped;
                        }
                        continue;
                    }
                    let held = std::mem::take(&mut st.held_response_body);
                    st.downstream_body.extend_from_slice(&held);
                    let status = st
                        .response_headers
                        .iter()
                        .find(|(k, _)| k == ":status")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(st.upstream_status);
                    let headers = st.response_headers.iter().filter(|(k, _)| k != ":status").cloned().collect();
                    let o = Outcome::Continued {
                        request_headers: st.forwarded.clone().unwrap_or_default(),
                        forwarded_body: st.forwarded_body.clone(),
                        response: (status, headers, st.downstream_body.clone()),
                    };
                    self.finish(ctx, o);
                    return;
                }
                Phase::Done => return,
            }
        }
    }

    /// Give a body to the plugin, chunk by chunk (`proxy_on_request_body`/`proxy_on_response_body`), the
    /// buffer readable and writable during each call only. Data the plugin stops on (StopIterationAndBuffer
    /// and the other Stop actions) is buffered and given again, with the next chunk, in the next call; data it
    /// lets through goes on (upstream, or downstream). True when the stream stopped: the plugin stopped on
    /// the last chunk, sent a local reply, reset the stream or trapped.
    fn deliver_body(&mut self, ctx: u32, request: bool, chunks: Vec<(Vec<u8>, bool)>) -> bool {
        let callback = if request { "proxy_on_request_body" } else { "proxy_on_response_body" };
        let mut buffered: Vec<u8> = Vec::new();
        let mut stopped = false;
        for (data, eos) in chunks {
            buffered.extend_from_slice(&data);
            let s = self.store.data_mut();
            let Some(st) = s.streams.get_mut(&ctx) else { return true };
            let len = buffered.len() as i32;
            // Envoy's decodeData/encodeData read the buffer, which leaves it in the context's scratch buffer.
            s.scratch.insert(ctx, buffered.clone());
            if request {
                st.request_body = std::mem::take(&mut buffered);
                st.request_body_live = true;
            } else {
                st.response_body = std::mem::take(&mut buffered);
                st.response_body_live = true;
            }
            let r = self.call::<(i32, i32, i32), i32>(callback, ctx, (ctx as i32, len, eos as i32));
            let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return true };
            let body = if request {
                st.request_body_live = false;
                std::mem::take(&mut st.request_body)
            } else {
                st.response_body_live = false;
                std::mem::take(&mut st.response_body)
            };
            stopped = r.unwrap_or(0) != 0;
            if stopped {
                buffered = body;
            } else if request {
                st.forwarded_body.extend_from_slice(&body);
            } else {
                st.downstream_body.extend_from_slice(&body);
            }
            self.absorb_deferred();
            if self.failed.is_some() {
                return true;
            }
            let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return true };
            if st.local_reply.is_some() || st.reset {
                stopped = true;
                break;
            }
        }
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
            if request {
                st.held_request_body = buffered;
            } else {
                st.held_response_body = buffered;
            }
        }
        stopped
    }

    /// Move deferred actions for streams being driven right now into their flags; others are
    /// handled by `after_call`.
    fn absorb_deferred(&mut self) {
        let s = self.store.data_mut();
        let deferred = std::mem::take(&mut s.deferred);
        let mut rest = Vec::new();
        for d in deferred {
            let ctx = match &d {
                Deferred::LocalReply(c, _) | Deferred::Continue(c, _) | Deferred::Close(c, _) => *c,
            };
            match s.streams.get_mut(&ctx) {
                Some(st) if matches!(st.phase, Phase::RequestHeaders | Phase::ResponseHeaders) => match d {
                    Deferred::LocalReply(_, r) if st.local_reply.is_none() && !st.in_local_reply => {
                        st.local_reply = Some(r);
                    }
                    Deferred::Continue(_, 0) => st.continue_request = true,
                    Deferred::Continue(_, 1) => st.continue_response = true,
                    Deferred::Close(_, 0 | 1) => st.reset = true,
                    _ => {}
                },
                _ => rest.push(d),
            }
        }
        s.deferred = rest;
    }

    /// Send a local reply through the plugin's own encoder path (Envoy runs the filter chain's
    /// `encodeHeaders`/`encodeData`, so `proxy_on_response_headers` and `proxy_on_response_body` see the
    /// local reply), then finish. The request headers stay as they were: a reply sent from the request
    /// headers callback stops it (Envoy keeps its request headers pointer).
    fn local_reply(&mut self, ctx: u32, reply: LocalReply) {
        let headers = local_reply_headers(&reply);
        let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return };
        st.response_headers = headers;
        st.response_access = true;
        st.in_local_reply = true;
        st.phase = Phase::ResponseHeaders;
        let n = st.response_headers.len() as i32;
        let eos = reply.body.is_empty() as i32;
        let r = self.call::<(i32, i32, i32), i32>("proxy_on_response_headers", ctx, (ctx as i32, n, eos));
        self.absorb_deferred();
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx)
            && r.unwrap_or(0) == 0
        {
            st.response_access = false;
        }
        if self.failed.is_none() && !reply.body.is_empty() {
            // The body in one chunk that ends the stream.
            self.deliver_body(ctx, false, vec![(reply.body.clone(), true)]);
        }
        if self.failed.is_some() {
            self.finish(ctx, Self::fail_outcome());
            return;
        }
        let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return };
        let headers = st.response_headers.clone();
        let mut body = std::mem::take(&mut st.downstream_body);
        body.extend_from_slice(&std::mem::take(&mut st.held_response_body));
        self.finish(ctx, reply_outcome(&reply, headers, body));
    }

    /// on_log (with the access log's view of the headers), on_done, on_delete (skipped on a failed VM, as
    /// Envoy does), store the outcome.
    fn finish(&mut self, ctx: u32, outcome: Outcome) {
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
            if st.phase == Phase::Done {
                return;
            }
            st.phase = Phase::Done;
            st.in_log = true;
        } else {
            return;
        }
        self.finished.insert(ctx, outcome);
        self.call::<i32, ()>("proxy_on_log", ctx, ctx as i32);
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
            st.in_log = false;
        }
        self.call::<i32, i32>("proxy_on_done", ctx, ctx as i32);
        self.call::<i32, ()>("proxy_on_delete", ctx, ctx as i32);
        let s = self.store.data_mut();
        if let Some(st) = s.streams.remove(&ctx) {
            self.last_filter_state = st.filter_state;
        }
        s.scratch.remove(&ctx);
        // Drop actions aimed at the finished stream.
        s.deferred.retain(|d| {
            !matches!(d, Deferred::LocalReply(c, _) | Deferred::Continue(c, _) | Deferred::Close(c, _) if *c == ctx)
        });
    }

    fn send(&mut self, req: RequestSpec) -> Outcome {
        let ctx = self.next_context;
        self.next_context += 1;
        let mut headers: Pairs = Vec::new();
        abi::header_add(&mut headers, ":authority", &req.authority);
        abi::header_add(&mut headers, ":path", &req.path);
        abi::header_add(&mut headers, ":method", &req.method);
        abi::header_add(&mut headers, ":scheme", &req.scheme);
        for (k, v) in &req.headers {
            abi::header_add(&mut headers, k, v);
        }
        let now = self.store.data().now;
        let end_of_stream = req.body.is_empty();
        self.store.data_mut().streams.insert(
            ctx,
            Stream {
                request_headers: headers,
                response_headers: Vec::new(),
                request_body: Vec::new(),
                request_body_live: false,
                response_body: Vec::new(),
                response_body_live: false,
                pending_request_body: req.body,
                request_chunks: req.body_chunks,
                response_chunks: req.upstream_chunks,
                held_request_body: Vec::new(),
                pending_response_body: req.upstream_body,
                held_response_body: Vec::new(),
                forwarded_body: Vec::new(),
                downstream_body: Vec::new(),
                // Envoy creates the context before it hands the headers over.
                request_access: false,
                response_access: false,
                in_log: false,
                properties: req.properties,
                filter_state: HashMap::new(),
                phase: Phase::RequestHeaders,
                last_continue: true,
                local_reply: None,
                continue_request: false,
                continue_response: false,
                reset: false,
                in_local_reply: false,
                forwarded: None,
                upstream_status: req.upstream_status,
                upstream_headers: req.upstream_headers,
                request_time: now,
            },
        );
        if self.failed.is_some() {
            self.finish(ctx, Self::fail_outcome());
            return self.finished.remove(&ctx).unwrap_or_else(Self::fail_outcome);
        }
        self.call::<(i32, i32), ()>("proxy_on_context_create", ctx, (ctx as i32, ROOT_CONTEXT as i32));
        let Some(st) = self.store.data_mut().streams.get_mut(&ctx) else { return Self::fail_outcome() };
        st.request_access = true;
        let n = st.request_headers.len() as i32;
        let r =
            self.call::<(i32, i32, i32), i32>("proxy_on_request_headers", ctx, (ctx as i32, n, end_of_stream as i32));
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx) {
            st.last_continue = r.unwrap_or(0) == 0;
        }
        self.absorb_deferred();
        if let Some(st) = self.store.data_mut().streams.get_mut(&ctx)
            && st.last_continue
            && st.local_reply.is_none()
        {
            // Envoy drops its request headers pointer when the callback returns Continue (a local reply
            // sent from the callback makes it StopAllIterationAndWatermark, and the headers stay).
            st.request_access = false;
        }
        self.drive(ctx);
        self.after_call();
        match self.finished.remove(&ctx) {
            Some(o) => o,
            None => Outcome::Paused(PendingRequest { context_id: ctx }),
        }
    }
}

/// How a body reaches the plugin: in one chunk that ends the stream when it waited (the headers were
/// stopped, Envoy buffered it), else as HTTP/1.1 delivers it: the data, then an empty end of stream.
/// `split`: chunk sizes a test asked for (the rest of the body is one more chunk), as a client that sends
/// its body in pieces delivers it.
fn body_chunks(body: Vec<u8>, phase: Phase, split: &[usize]) -> Vec<(Vec<u8>, bool)> {
    if matches!(phase, Phase::PausedRequest | Phase::PausedResponse) {
        return vec![(body, true)];
    }
    let mut chunks = Vec::new();
    let mut rest = body.as_slice();
    for &size in split {
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        if !chunk.is_empty() {
            chunks.push((chunk.to_vec(), false));
        }
        rest = after;
    }
    if !rest.is_empty() {
        chunks.push((rest.to_vec(), false));
    }
    chunks.push((Vec::new(), true));
    chunks
}

fn local_reply_headers(reply: &LocalReply) -> Pairs {
    let mut h: Pairs = vec![(":status".into(), reply.status.to_string())];
    for (k, v) in &reply.headers {
        abi::header_add(&mut h, k, v);
    }
    if !reply.body.is_empty() {
        abi::header_replace(&mut h, "content-length", &reply.body.len().to_string());
        if !h.iter().any(|(k, _)| k == "content-type") {
            abi::header_add(&mut h, "content-type", "text/plain");
        }
    }
    h
}

fn reply_outcome(reply: &LocalReply, headers: Pairs, body: Vec<u8>) -> Outcome {
    let status =
        headers.iter().find(|(k, _)| k == ":status").and_then(|(_, v)| v.parse().ok()).unwrap_or(reply.status as u16);
    Outcome::LocalResponse {
        status,
        headers: headers.into_iter().filter(|(k, _)| k != ":status").collect(),
        body,
        details: reply.details.clone(),
    }
}

/// The request a [`RequestBuilder`] describes.
struct RequestSpec {
    method: String,
    path: String,
    authority: String,
    scheme: String,
    headers: Vec<(String, String)>,
    properties: HashMap<String, Vec<u8>>,
    body: Vec<u8>,
    body_chunks: Vec<usize>,
    upstream_status: u16,
    upstream_headers: Vec<(String, String)>,
    upstream_body: Vec<u8>,
    upstream_chunks: Vec<usize>,
}

/// Builds and sends one request: `vm.request().path("/x").header("authorization", "Bearer ..").send()`.
pub struct RequestBuilder<'a> {
    vm: &'a mut Vm,
    req: RequestSpec,
}

impl RequestBuilder<'_> {
    /// `:method` (default GET).
    pub fn method(mut self, m: &str) -> Self {
        self.req.method = m.into();
        self
    }

    /// `:path` (default `/`).
    pub fn path(mut self, p: &str) -> Self {
        self.req.path = p.into();
        self
    }

    /// `:authority` (default `localhost`).
    pub fn authority(mut self, a: &str) -> Self {
        self.req.authority = a.into();
        self
    }

    /// `:scheme` (default `https`).
    pub fn scheme(mut self, s: &str) -> Self {
        self.req.scheme = s.into();
        self
    }

    /// A request header (repeatable; repeated names give several entries). Names are lowercased.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.req.headers.push((k.to_ascii_lowercase(), v.into()));
        self
    }

    /// A stream property by dot-joined path, returned raw by `proxy_get_property`.
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Self {
        self.req.properties.insert(path.into(), value.as_ref().to_vec());
        self
    }

    /// A request body: `proxy_on_request_headers` gets end_of_stream=false, and `proxy_on_request_body` the
    /// body as Envoy gives an HTTP/1.1 body: the data, then an empty chunk that ends the stream; or, when the
    /// request headers were stopped, the whole body in one chunk once the request continues.
    pub fn body(mut self, b: impl AsRef<[u8]>) -> Self {
        self.req.body = b.as_ref().to_vec();
        self
    }

    /// The request body in chunks of these sizes (the rest is one more chunk), then the empty chunk that ends
    /// the stream: a client that sends its body in pieces.
    pub fn body_chunks(mut self, sizes: &[usize]) -> Self {
        self.req.body_chunks = sizes.to_vec();
        self
    }

    /// The upstream response body in chunks of these sizes (an event stream arriving event by event, or split
    /// anywhere).
    pub fn upstream_body_chunks(mut self, sizes: &[usize]) -> Self {
        self.req.upstream_chunks = sizes.to_vec();
        self
    }

    /// The simulated upstream response (default 200, no headers), as the plugin sees it (Envoy's router
    /// adds `x-envoy-upstream-service-time`; give it here if the plugin should see it).
    pub fn upstream_response(mut self, status: u16, headers: &[(&str, &str)]) -> Self {
        self.req.upstream_status = status;
        self.req.upstream_headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    /// The simulated upstream response body (default none), given to `proxy_on_response_body` like a
    /// request body.
    pub fn upstream_body(mut self, b: impl AsRef<[u8]>) -> Self {
        self.req.upstream_body = b.as_ref().to_vec();
        self
    }

    /// Send it through the plugin.
    pub fn send(self) -> Outcome {
        let RequestBuilder { vm, req } = self;
        vm.send(req)
    }
}
