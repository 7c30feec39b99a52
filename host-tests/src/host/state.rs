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

/// Metric ids encode the type in the low two bits, like Envoy (`kMetricTypeMask = 3`).
#[derive(Default)]
pub(crate) struct Metrics {
    pub ids: HashMap<(String, MetricKind), u32>,
    pub by_id: BTreeMap<u32, Metric>,
    pub next: u32,
}

impl Metrics {
    pub fn define(&mut self, name: &str, kind: MetricKind) -> u32 {
        if let Some(id) = self.ids.get(&(name.to_string(), kind)) {
            return *id;
        }
        self.next += 1;
        let id = (self.next << 2) | kind as u32;
        self.ids.insert((name.to_string(), kind), id);
        self.by_id.insert(id, Metric { name: name.to_string(), kind, value: 0, samples: Vec::new() });
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
pub(crate) struct Stream {
    pub request_headers: Pairs,
    pub response_headers: Pairs,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// Request headers are readable/writable (during on_request_headers, while paused, on_log).
    pub request_access: bool,
    /// Response headers are readable/writable.
    pub response_access: bool,
    /// Properties given by the test (`connection.uri_san_peer_certificate`, ...), dot-joined.
    pub properties: HashMap<String, Vec<u8>>,
    /// Properties written by the plugin with `proxy_set_property` (Envoy filter state).
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
