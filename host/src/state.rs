//! Host-side state: what one VM sees (`VmState`, the wasmtime store data) and what the VMs of one
//! [`Host`](super::Host) share (`Shared`: shared data, shared queues, metrics).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Memory, TypedFunc};

use super::{Callout, LogEntry, LogLevel, Status};

/// A header map as Envoy keeps it: ordered pairs, lowercase names, repeated names allowed.
pub(crate) type Pairs = Vec<(String, String)>;

/// A host-provided foreign function (`proxy_call_foreign_function`).
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Root context id, as Envoy numbers it for the first (and here only) plugin of a VM.
pub(crate) const ROOT_CONTEXT: u32 = 1;

/// The VM context (proxy-wasm-cpp-host's context 0): a valid effective context that is neither the root nor
/// a stream.
pub(crate) const VM_CONTEXT: u32 = 0;

/// Lock a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Shared between VMs
// ---------------------------------------------------------------------------------------------

/// State shared by all VMs of one host (Envoy shares these across worker threads of one vm_id).
#[derive(Default)]
pub(crate) struct Shared {
    pub data: Mutex<SharedData>,
    pub queues: Mutex<SharedQueues>,
    pub metrics: Mutex<Metrics>,
    pub foreign: Mutex<HashMap<String, ForeignFunction>>,
    pub next_vm: Mutex<u32>,
}

pub(crate) struct SharedData {
    pub map: HashMap<String, (Vec<u8>, u32)>,
    pub next_cas: u32,
}

impl Default for SharedData {
    fn default() -> Self {
        SharedData { map: HashMap::new(), next_cas: 1 }
    }
}

impl SharedData {
    /// proxy-wasm-cpp-host `SharedData::set`: a non-zero `cas` must match the current one if the
    /// key exists; a missing key is always written. Every write gets a fresh non-zero cas.
    pub fn set(&mut self, key: String, value: Vec<u8>, cas: u32) -> Status {
        let next = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        if let Some(entry) = self.map.get_mut(&key) {
            if cas != 0 && cas != entry.1 {
                return Status::CasMismatch;
            }
            *entry = (value, next);
        } else {
            self.map.insert(key, (value, next));
        }
        Status::Ok
    }
}

#[derive(Default)]
pub(crate) struct SharedQueues {
    pub by_name: HashMap<String, u32>,
    pub queues: HashMap<u32, SharedQueue>,
    pub next_token: u32,
}

pub(crate) struct SharedQueue {
    pub items: VecDeque<Vec<u8>>,
    /// (vm serial, context id) that registered the queue and receives `proxy_on_queue_ready`.
    pub owner: (u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub fn from_u32(v: u32) -> Option<MetricKind> {
        match v {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

pub(crate) struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Counter (never negative) or gauge value.
    pub value: i64,
    /// Recorded histogram samples.
    pub samples: Vec<u64>,
}

/// The metrics of one host, by name and type: like Envoy's stats store, shared by every VM. The ids that name
/// them are per VM (see [`MetricIds`]).
#[derive(Default)]
pub(crate) struct Metrics {
    pub by_name: HashMap<(String, MetricKind), usize>,
    pub all: Vec<Metric>,
}

impl Metrics {
    /// The metric of this name and type, created on first use.
    pub fn index(&mut self, name: &str, kind: MetricKind) -> usize {
        if let Some(i) = self.by_name.get(&(name.to_string(), kind)) {
            return *i;
        }
        self.all.push(Metric { name: name.to_string(), kind, value: 0, samples: Vec::new() });
        let i = self.all.len() - 1;
        self.by_name.insert((name.to_string(), kind), i);
        i
    }

    /// A counter's or gauge's value (counters first).
    pub fn value(&self, name: &str) -> Option<i64> {
        [MetricKind::Counter, MetricKind::Gauge]
            .iter()
            .find_map(|k| self.by_name.get(&(name.to_string(), *k)))
            .and_then(|i| self.all.get(*i))
            .map(|m| m.value)
    }
}

/// One VM's metric ids, like Envoy's `Wasm` (`nextCounterMetricId` and friends): every `proxy_define_metric`
/// gets a new id, even for a name already defined; the type is in the low two bits (`kMetricTypeMask = 3`),
/// and ids of each type step by 4 from the type's value.
#[derive(Default)]
pub(crate) struct MetricIds {
    pub ids: HashMap<u32, usize>,
    pub next: [u32; 3],
}

impl MetricIds {
    pub fn define(&mut self, kind: MetricKind, index: usize) -> u32 {
        let k = kind as usize;
        if self.next[k] == 0 {
            self.next[k] = kind as u32;
        }
        self.next[k] = self.next[k].wrapping_add(4);
        let id = self.next[k];
        self.ids.insert(id, index);
        id
    }
}

// ---------------------------------------------------------------------------------------------
// Per VM
// ---------------------------------------------------------------------------------------------

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `proxy_on_request_headers` is running or has just returned.
    RequestHeaders,
    /// The request was stopped (Pause) and waits for `proxy_continue_stream` or a local reply.
    PausedRequest,
    /// `proxy_on_response_headers` is running or has just returned.
    ResponseHeaders,
    /// The response was stopped (Pause).
    PausedResponse,
    /// Finished (on_log/on_done/on_delete ran or are running).
    Done,
}

#[derive(Clone, Debug)]
pub(crate) struct LocalReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Pairs,
}

/// One HTTP stream (an Envoy `Context` with decoder/encoder callbacks).
///
/// `request_access` and `response_access` are Envoy's `request_headers_`/`response_headers_` pointers: set
/// when the headers callback starts, cleared when it returns Continue, and (both request flags) by
/// `proxy_continue_stream`. The bodies are readable only inside their body callbacks.
pub(crate) struct Stream {
    pub request_headers: Pairs,
    pub response_headers: Pairs,
    /// The request body buffer, during `proxy_on_request_body` only (`request_body_live`).
    pub request_body: Vec<u8>,
    pub request_body_live: bool,
    /// The response body buffer, during `proxy_on_response_body` only (`response_body_live`).
    pub response_body: Vec<u8>,
    pub response_body_live: bool,
    /// Request body not yet given to the plugin (it waits while the request headers are stopped).
    pub pending_request_body: Vec<u8>,
    /// Chunk sizes the request body is delivered in (empty: one chunk).
    pub request_chunks: Vec<usize>,
    /// Chunk sizes the response body is delivered in.
    pub response_chunks: Vec<usize>,
    /// Request body the plugin stopped on (StopIterationAndBuffer on the last chunk), sent on continue.
    pub held_request_body: Vec<u8>,
    /// Response body not yet given to the plugin.
    pub pending_response_body: Vec<u8>,
    pub held_response_body: Vec<u8>,
    /// The request body as sent upstream.
    pub forwarded_body: Vec<u8>,
    /// The response body as sent downstream (after `proxy_on_response_body`).
    pub downstream_body: Vec<u8>,
    /// Request headers are readable/writable (Envoy's `request_headers_`).
    pub request_access: bool,
    /// Response headers are readable/writable (Envoy's `response_headers_`).
    pub response_access: bool,
    /// `proxy_on_log` is running: reads see the access log's headers, absent maps answer NotFound.
    pub in_log: bool,
    /// Properties given by the test (`connection.uri_san_peer_certificate`, ...), dot-joined.
    pub properties: HashMap<String, Vec<u8>>,
    /// Properties written by the plugin with `proxy_set_property` (Envoy filter state `wasm.<path>`), keyed
    /// by the raw path (NUL separators kept).
    pub filter_state: HashMap<String, Vec<u8>>,
    pub phase: Phase,
    /// The action the last headers callback returned (true = Continue).
    pub last_continue: bool,
    /// Deferred actions applied after the callback returned.
    pub local_reply: Option<LocalReply>,
    pub continue_request: bool,
    pub continue_response: bool,
    pub reset: bool,
    /// A local reply is being sent through on_response_headers (a second one is ignored).
    pub in_local_reply: bool,
    pub forwarded: Option<Pairs>,
    pub upstream_status: u16,
    pub upstream_headers: Pairs,
    pub request_time: SystemTime,
}

/// The HTTP callout response visible during `proxy_on_http_call_response`.
pub(crate) struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
}

/// A host call deferred until the callback returns (Envoy's `addAfterVmCallAction`).
#[derive(Debug)]
pub(crate) enum Deferred {
    LocalReply(u32, LocalReply),
    Continue(u32, u32),
    Close(u32, u32),
}

/// The wasmtime store data of one VM.
pub(crate) struct VmState {
    pub shared: Arc<Shared>,
    /// Host calls made to fail with InternalFailure ([`super::Vm::fail_host_call`]): fault injection.
    pub failing: Vec<&'static str>,
    /// Time spent executing the module's own code, when the VM was built with [`super::VmBuilder::clock_wasm`].
    pub wasm_clock: Option<WasmClock>,
    /// [`super::VmBuilder::headers_stop_iteration`].
    pub headers_stop_iteration: bool,
    pub vm_serial: u32,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<i32, i32>>,
    pub logs: Vec<LogEntry>,
    pub log_level: LogLevel,
    pub now: SystemTime,
    pub monotonic: Duration,
    pub tick_period_ms: u32,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    /// The plugin configuration is readable (root on_context_create and on_configure).
    pub plugin_config_access: bool,
    pub effective: u32,
    pub streams: HashMap<u32, Stream>,
    pub callouts: BTreeMap<u32, Callout>,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
    /// Root status for `proxy_get_status` (set while a failed callout is reported).
    pub status: (u32, String),
    pub deferred: Vec<Deferred>,
    /// Known upstream clusters for `proxy_http_call`; `None` = every cluster exists.
    pub clusters: Option<HashSet<String>>,
    /// This VM's metric ids (the metrics themselves are shared).
    pub metric_ids: MetricIds,
    /// Envoy's per-context scratch buffer (`Context::buffer_`): the last buffer the context read, which is
    /// what the CallData buffer (8) answers outside `proxy_on_foreign_function`.
    pub scratch: HashMap<u32, Vec<u8>>,
    /// VM-wide properties (`plugin_name`, `node.id`, ...) given by the test.
    pub vm_properties: HashMap<String, Vec<u8>>,
    pub rng: u64,
}

impl VmState {
    pub fn now_nanos(&self) -> u64 {
        self.now.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    }

    pub fn host_log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.logs.push(LogEntry { level, message: format!("[host] {}", message.into()) });
    }

    /// The stream of the effective context, if it is a stream (not the root context).
    pub fn stream(&self) -> Option<&Stream> {
        self.streams.get(&self.effective)
    }

    pub fn stream_mut(&mut self) -> Option<&mut Stream> {
        self.streams.get_mut(&self.effective)
    }

    pub fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Time spent inside the module, kept by a wasmtime call hook: the clock runs from entering wasm (a callback, or a
/// host call returning) to leaving it (a host call, or the callback returning). The hook's own clock reads sit on
/// the boundaries, so about half of each lands on the wasm side: the figure is an upper bound.
#[derive(Debug, Default)]
pub(crate) struct WasmClock {
    /// When the module was last entered, while it runs.
    pub entered: Option<std::time::Instant>,
    /// Time inside the module so far.
    pub inside: Duration,
    /// Host calls made by the module so far.
    pub host_calls: u64,
}

impl WasmClock {
    pub fn hook(&mut self, hook: wasmtime::CallHook) {
        use wasmtime::CallHook;
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => self.entered = Some(std::time::Instant::now()),
            CallHook::ReturningFromWasm | CallHook::CallingHost => {
                if let Some(t) = self.entered.take() {
                    self.inside += t.elapsed();
                }
                if matches!(hook, CallHook::CallingHost) {
                    self.host_calls += 1;
                }
            }
        }
    }
}
