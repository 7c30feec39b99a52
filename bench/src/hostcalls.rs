//! Modules that price one proxy-wasm crossing in real Envoy (`agent-iam-envoy-hostcalls`, part of
//! `make bench-envoy`).
//!
//! Each module is the smallest filter Envoy accepts (it exports only `proxy_on_context_create` and
//! `proxy_on_request_headers` among the per-request callbacks) whose request-headers callback makes one host
//! call [`REPEAT`] times, or runs a fixed amount of plain Wasm code. Envoy's CPU time per request with the
//! module, less that with [`Probe::Floor`], divided by the repetitions, is what one call costs Envoy: V8's
//! transition into C++ and back, the host function's own work, and any call Envoy makes back into the module
//! (`proxy_on_memory_allocate` for the calls that return data). [`Probe::AllCallbacks`] is the same floor
//! with every per-request callback the Rust SDK exports (what `EMPTY_FILTER_WAT` is): the difference prices
//! the callbacks Envoy makes only because a module exports them.

/// Repetitions of the call per request: enough that the call, not the noise of one request, is measured.
pub const REPEAT: u32 = 20;

/// Iterations of [`Probe::Compute`]'s loop; each is [`COMPUTE_INSTRUCTIONS_PER_ITERATION`] Wasm instructions.
pub const COMPUTE_ITERATIONS: u32 = 2_000;
/// The instructions of one iteration of [`Probe::Compute`]'s loop body (counted in the WAT below).
pub const COMPUTE_INSTRUCTIONS_PER_ITERATION: u32 = 20;

/// One measured module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing but `Continue`: the floor every other probe is measured against.
    Floor,
    /// The floor plus every other per-request callback the Rust SDK exports (body, response headers and body,
    /// log, done, delete), each returning at once.
    AllCallbacks,
    /// `proxy_get_current_time_nanoseconds`.
    CurrentTime,
    /// `proxy_get_log_level`.
    LogLevel,
    /// `proxy_log` at trace level, which Envoy's default level (info) drops.
    LogFiltered,
    /// `proxy_get_header_map_pairs` of the request headers: Envoy serialises the map into memory it asks the
    /// module for (`proxy_on_memory_allocate`).
    HeaderMapPairs,
    /// `proxy_get_header_map_value("authorization")`.
    HeaderValue,
    /// `proxy_replace_header_map_value("x-agent-iam-agent", ...)`: what setting an identity header costs.
    ReplaceHeader,
    /// Four headers the request does not have, each added with `proxy_add_header_map_value`: what forwarding
    /// an identity (agent, subject, issuer, rule) costs when the plugin knows the names are absent.
    AddFourNewHeaders,
    /// The same four headers set with `proxy_replace_header_map_value` (the Rust SDK's `set_map_value`).
    ReplaceFourNewHeaders,
    /// `proxy_remove_header_map_value` of a header the request does not have.
    RemoveAbsentHeader,
    /// `proxy_get_property(["xds", "route_name"])`.
    PropertyRouteName,
    /// `proxy_get_property(["connection", "uri_san_peer_certificate"])` on a plain-text connection.
    PropertyPeer,
    /// `proxy_set_property("agent_iam.decision", "allow")`: a filter state value.
    SetProperty,
    /// `proxy_increment_metric` of a counter defined at configuration.
    IncrementMetric,
    /// No call: a loop of [`COMPUTE_ITERATIONS`] × [`COMPUTE_INSTRUCTIONS_PER_ITERATION`] Wasm instructions
    /// (loads, stores, arithmetic, a branch), the price of the module's own code per instruction in V8.
    Compute,
}

impl Probe {
    pub const ALL: [Probe; 16] = [
        Probe::Floor,
        Probe::AllCallbacks,
        Probe::CurrentTime,
        Probe::LogLevel,
        Probe::LogFiltered,
        Probe::HeaderMapPairs,
        Probe::HeaderValue,
        Probe::ReplaceHeader,
        Probe::AddFourNewHeaders,
        Probe::ReplaceFourNewHeaders,
        Probe::RemoveAbsentHeader,
        Probe::PropertyRouteName,
        Probe::PropertyPeer,
        Probe::SetProperty,
        Probe::IncrementMetric,
        Probe::Compute,
    ];

    /// Key in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Probe::Floor => "floor",
            Probe::AllCallbacks => "all_sdk_callbacks",
            Probe::CurrentTime => "get_current_time",
            Probe::LogLevel => "get_log_level",
            Probe::LogFiltered => "log_below_level",
            Probe::HeaderMapPairs => "get_header_map_pairs",
            Probe::HeaderValue => "get_header_map_value",
            Probe::ReplaceHeader => "replace_header_map_value",
            Probe::AddFourNewHeaders => "add_header_map_value_4_new",
            Probe::ReplaceFourNewHeaders => "replace_header_map_value_4_new",
            Probe::RemoveAbsentHeader => "remove_header_map_value_absent",
            Probe::PropertyRouteName => "get_property_route_name",
            Probe::PropertyPeer => "get_property_peer_uri_san",
            Probe::SetProperty => "set_property",
            Probe::IncrementMetric => "increment_metric",
            Probe::Compute => "wasm_instructions",
        }
    }

    /// How many of the priced thing one request does: calls, callbacks, or Wasm instructions.
    pub fn units(self) -> u32 {
        match self {
            Probe::Floor => 1,
            // Request body, response headers, response body, log, done, delete.
            Probe::AllCallbacks => 6,
            Probe::Compute => COMPUTE_ITERATIONS * COMPUTE_INSTRUCTIONS_PER_ITERATION,
            Probe::AddFourNewHeaders | Probe::ReplaceFourNewHeaders => 4,
            _ => REPEAT,
        }
    }

    /// The one call the request-headers callback repeats (`None`: no call).
    fn call(self) -> Option<&'static str> {
        Some(match self {
            Probe::Floor | Probe::AllCallbacks | Probe::Compute => return None,
            Probe::CurrentTime => "(drop (call $time (i32.const 4096)))",
            Probe::LogLevel => "(drop (call $log_level (i32.const 4096)))",
            Probe::LogFiltered => "(drop (call $log (i32.const 0) (i32.const 256) (i32.const 17)))",
            Probe::HeaderMapPairs => "(drop (call $pairs (i32.const 0) (i32.const 4096) (i32.const 4104)))",
            Probe::HeaderValue => {
                "(drop (call $get_value (i32.const 0) (i32.const 0) (i32.const 13) (i32.const 4096) (i32.const 4104)))"
            }
            Probe::ReplaceHeader => {
                "(drop (call $replace (i32.const 0) (i32.const 256) (i32.const 17) (i32.const 512) (i32.const 37)))"
            }
            // Written by `four_new_headers`.
            Probe::AddFourNewHeaders | Probe::ReplaceFourNewHeaders => return None,
            Probe::RemoveAbsentHeader => "(drop (call $remove (i32.const 0) (i32.const 768) (i32.const 13)))",
            Probe::PropertyRouteName => {
                "(drop (call $get_property (i32.const 1024) (i32.const 14) (i32.const 4096) (i32.const 4104)))"
            }
            Probe::PropertyPeer => {
                "(drop (call $get_property (i32.const 1280) (i32.const 35) (i32.const 4096) (i32.const 4104)))"
            }
            Probe::SetProperty => {
                "(drop (call $set_property (i32.const 1536) (i32.const 18) (i32.const 1792) (i32.const 5)))"
            }
            Probe::IncrementMetric => "(drop (call $increment (global.get $metric) (i64.const 1)))",
        })
    }

    /// The four distinct new headers (`x-agent-iam-probe-1` to `-4`, 32 bytes apart from 2560), each set once
    /// per request with `call` (`$add` or `$replace`): a second add of the same name would make a second header.
    fn four_new_headers(call: &str) -> String {
        (0..4)
            .map(|i| {
                format!(
                    "(drop (call {call} (i32.const 0) (i32.const {}) (i32.const 19) (i32.const 512) (i32.const 37)))\n",
                    2560 + 32 * i
                )
            })
            .collect()
    }

    /// The module's text.
    pub fn wat(self) -> String {
        let body = match (self, self.call()) {
            (Probe::AddFourNewHeaders, None) => Probe::four_new_headers("$add"),
            (Probe::ReplaceFourNewHeaders, None) => Probe::four_new_headers("$replace"),
            (_, Some(call)) => call.repeat(REPEAT as usize),
            // 20 instructions per iteration: 3 (load) + 6 (mul, add) + 3 (store) + 4 (counter) + 4 (branch).
            (Probe::Compute, None) => format!(
                "(local.set $i (i32.const {COMPUTE_ITERATIONS}))
                 (loop $l
                   (local.set $x (i32.load (i32.const 2048)))
                   (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
                   (i32.store (i32.const 2048) (local.get $x))
                   (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                   (br_if $l (i32.ne (local.get $i) (i32.const 0))))"
            ),
            _ => String::new(),
        };
        let extra_callbacks = if self == Probe::AllCallbacks {
            r#"(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))"#
        } else {
            ""
        };
        format!(
            r#"(module
  (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $log_level (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (memory (export "memory") 2)
  (global $metric (mut i32) (i32.const 0))
  (data (i32.const 0) "authorization")
  (data (i32.const 256) "x-agent-iam-agent")
  (data (i32.const 512) "spiffe://trading.example/agent/trader")
  (data (i32.const 768) "x-not-present")
  (data (i32.const 1024) "xds\00route_name")
  (data (i32.const 1280) "connection\00uri_san_peer_certificate")
  (data (i32.const 1536) "agent_iam.decision")
  (data (i32.const 1792) "allow")
  (data (i32.const 2304) "probe_counter")
  (data (i32.const 2560) "x-agent-iam-probe-1")
  (data (i32.const 2592) "x-agent-iam-probe-2")
  (data (i32.const 2624) "x-agent-iam-probe-3")
  (data (i32.const 2656) "x-agent-iam-probe-4")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  ;; Everything the host copies in lands at 64 KiB, overwritten by the next call.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 65536))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 2304) (i32.const 13) (i32.const 4096)))
    (global.set $metric (i32.load (i32.const 4096)))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $x i32)
    {body}
    (i32.const 0))
  {extra_callbacks})"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_is_a_valid_module() {
        for probe in Probe::ALL {
            wat::parse_str(probe.wat()).unwrap_or_else(|e| panic!("{}: {e}", probe.key()));
        }
    }

    #[test]
    fn the_data_lengths_match_the_calls() {
        // The lengths passed in the calls above, against the strings they point at.
        for (text, len) in [
            ("authorization", 13),
            ("x-agent-iam-agent", 17),
            ("spiffe://trading.example/agent/trader", 37),
            ("x-not-present", 13),
            ("xds\0route_name", 14),
            ("connection\0uri_san_peer_certificate", 35),
            ("agent_iam.decision", 18),
            ("allow", 5),
            ("probe_counter", 13),
            ("x-agent-iam-probe-1", 19),
        ] {
            assert_eq!(text.len(), len, "{text:?}");
        }
    }
}
