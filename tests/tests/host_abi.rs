//! The proxy-wasm host against small WAT plugins: each test would fail if the host got the ABI
//! or Envoy's semantics wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_iam_host::{Host, LogLevel, Outcome, Status};

/// Imports, memory, a bump allocator and helpers shared by the test modules.
///
/// Scratch: 0x100 value for `$rec`, 0x200/0x204 returned ptr/size, 0x208 returned cas/token/id,
/// 0x210 returned u64. Test strings live at 0x1000+.
fn module(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove_header (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 0x10000))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 15)) (i32.const -16))))
    (local.get $p))
  ;; Record an i32 in shared data under the key at ($kp, $kl): the test reads it back.
  (func $rec (param $kp i32) (param $kl i32) (param $v i32)
    (i32.store (i32.const 0x100) (local.get $v))
    (drop (call $set_shared (local.get $kp) (local.get $kl) (i32.const 0x100) (i32.const 4) (i32.const 0))))
  ;; Record bytes in shared data.
  (func $rec_bytes (param $kp i32) (param $kl i32) (param $p i32) (param $l i32)
    (drop (call $set_shared (local.get $kp) (local.get $kl) (local.get $p) (local.get $l) (i32.const 0))))
  {body}
)"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad WAT: {e}\n{text}"))
}

fn rec(host: &Host, key: &str) -> Option<u32> {
    host.shared_data(key).map(|(v, _)| u32::from_le_bytes(v[..4].try_into().unwrap()))
}

fn rec_bytes(host: &Host, key: &str) -> Option<Vec<u8>> {
    host.shared_data(key).map(|(v, _)| v)
}

#[test]
fn unknown_import_is_named_in_the_error() {
    let wasm = wat::parse_str(
        r#"(module (import "env" "proxy_does_not_exist" (func (param i32) (result i32)))
                   (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32))))"#,
    )
    .unwrap();
    let err = Host::from_bytes(&wasm).err().expect("must fail").to_string();
    assert!(err.contains("env.proxy_does_not_exist"), "{err}");
    assert!(err.contains("wasi_snapshot_preview1.path_unlink_file"), "{err}");
}

#[test]
fn lifecycle_order_and_configuration_buffers() {
    // Records the order of root callbacks and the sizes/contents of both configurations.
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "order") (data (i32.const 0x1010) "vmcfg") (data (i32.const 0x1020) "plugincfg")
  (global $step (mut i32) (i32.const 0))
  (func $mark (param $what i32)
    (global.set $step (i32.add (i32.mul (global.get $step) (i32.const 10)) (local.get $what)))
    (call $rec (i32.const 0x1000) (i32.const 5) (global.get $step)))
  (func (export "_initialize") (call $mark (i32.const 1)))
  (func (export "proxy_on_context_create") (param i32 i32) (if (i32.eq (local.get 0) (i32.const 1)) (then (call $mark (i32.const 2)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (call $mark (i32.const 3))
    (drop (call $get_buffer (i32.const 6) (i32.const 0) (local.get 1) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1010) (i32.const 5) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $mark (i32.const 4))
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (local.get 1) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1020) (i32.const 9) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (i32.const 1))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let vm = host.vm().vm_config(b"VM").plugin_config(br#"{"a":1}"#).start().unwrap();
    assert_eq!(rec(&host, "order"), Some(1234));
    assert_eq!(rec_bytes(&host, "vmcfg").unwrap(), b"VM");
    assert_eq!(rec_bytes(&host, "plugincfg").unwrap(), br#"{"a":1}"#);
    vm.assert_healthy();
}

#[test]
fn rejected_configuration_fails_start_with_logs() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "bad config: nope")
  (global $n (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 4) (i32.const 0x1000) (i32.const 16)))
    ;; accept only a 2-byte configuration
    (i32.eq (local.get 1) (i32.const 2)))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let err = host.vm().plugin_config(b"xyz").start().err().expect("rejected").to_string();
    assert!(err.contains("bad config: nope"), "{err}");
    let mut vm = host.vm().plugin_config(b"ok").start().unwrap();
    assert!(!vm.configure(b"abc"));
    assert!(vm.configure(b"{}"));
}

#[test]
fn local_response_is_deferred_and_passes_through_response_headers() {
    // on_request_headers: send 401 with a header, then keep running (adds a request header and
    // returns Continue). on_response_headers: adds x-seen to the (local) response.
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "unauthorized") (data (i32.const 0x1020) "x-after") (data (i32.const 0x1030) "1")
  (data (i32.const 0x1040) "X-Seen") (data (i32.const 0x1050) "yes")
  (data (i32.const 0x1060) "\01\00\00\00\0c\00\00\00\10\00\00\00content-type\00application/json\00")
  (data (i32.const 0x1100) "{\"error\":\"nope\"}")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $reply (i32.const 401) (i32.const 0x1000) (i32.const 12) (i32.const 0x1100) (i32.const 16)
                       (i32.const 0x1060) (i32.const 46) (i32.const -1)))
    ;; Still inside the callback: the request headers are still there and writable.
    (call $rec (i32.const 0x1020) (i32.const 7)
      (call $add_header (i32.const 0) (i32.const 0x1020) (i32.const 7) (i32.const 0x1030) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 0x1040) (i32.const 6) (i32.const 0x1050) (i32.const 3)))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    let o = vm.request().path("/secret").send();
    assert_eq!(o.status(), Some(401), "{o:?}");
    assert!(!o.is_allowed());
    assert_eq!(o.header("x-seen"), Some("yes"), "local reply went through on_response_headers");
    assert_eq!(o.header("content-type"), Some("application/json"));
    assert_eq!(o.header("content-length"), Some("16"));
    assert_eq!(o.body_json()["error"], "nope");
    assert!(matches!(&o, Outcome::LocalResponse { details, .. } if details == "unauthorized"));
    assert_eq!(rec(&host, "x-after"), Some(Status::Ok as u32));
    vm.assert_healthy();
}

#[test]
fn header_map_round_trip_lowercases_and_replaces() {
    // get pairs -> set pairs (identity), add X-Added, replace :path, remove x-drop, read the
    // first authorization value.
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "X-Added") (data (i32.const 0x1010) "v1")
  (data (i32.const 0x1020) ":path") (data (i32.const 0x1030) "/rewritten")
  (data (i32.const 0x1040) "x-drop") (data (i32.const 0x1050) "Authorization")
  (data (i32.const 0x1060) "auth") (data (i32.const 0x1070) "missing") (data (i32.const 0x1080) "pairs")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get_pairs (i32.const 0) (i32.const 0x200) (i32.const 0x204)))
    (call $rec (i32.const 0x1080) (i32.const 5) (i32.load (i32.load (i32.const 0x200))))
    (drop (call $set_pairs (i32.const 0) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204))))
    (drop (call $add_header (i32.const 0) (i32.const 0x1000) (i32.const 7) (i32.const 0x1010) (i32.const 2)))
    (drop (call $replace_header (i32.const 0) (i32.const 0x1020) (i32.const 5) (i32.const 0x1030) (i32.const 10)))
    (drop (call $remove_header (i32.const 0) (i32.const 0x1040) (i32.const 6)))
    (drop (call $get_header (i32.const 0) (i32.const 0x1050) (i32.const 13) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1060) (i32.const 4) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (call $rec (i32.const 0x1070) (i32.const 7)
      (call $get_header (i32.const 0) (i32.const 0x1070) (i32.const 7) (i32.const 0x200) (i32.const 0x204)))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    let o = vm
        .request()
        .method("POST")
        .path("/orig")
        .authority("api.example")
        .header("authorization", "Bearer first")
        .header("authorization", "Bearer second")
        .header("x-drop", "a")
        .header("X-Drop", "b")
        .send();
    let Outcome::Continued { request_headers, .. } = &o else { panic!("{o:?}") };
    assert_eq!(rec(&host, "pairs"), Some(8), "4 pseudo + 2 authorization + 2 x-drop");
    assert_eq!(o.header(":path"), Some("/rewritten"));
    assert_eq!(o.header(":method"), Some("POST"));
    assert_eq!(o.header(":authority"), Some("api.example"));
    assert_eq!(o.header("x-added"), Some("v1"));
    assert!(request_headers.iter().all(|(k, _)| k != "x-drop" && k != "X-Added"));
    assert_eq!(o.header_all("authorization"), vec!["Bearer first", "Bearer second"]);
    assert_eq!(rec_bytes(&host, "auth").unwrap(), b"Bearer first");
    assert_eq!(rec(&host, "missing"), Some(Status::NotFound as u32));
    // Pseudo-headers stay first.
    assert!(request_headers[..4].iter().all(|(k, _)| k.starts_with(':')), "{request_headers:?}");
}

#[test]
fn request_headers_are_not_accessible_in_response_phase() {
    // Envoy nulls the request header map once the request continued: get_value -> BadArgument,
    // get_pairs -> Ok and empty.
    let wasm = module(
        r#"
  (data (i32.const 0x1000) ":path") (data (i32.const 0x1010) "value") (data (i32.const 0x1020) "pairs")
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $rec (i32.const 0x1010) (i32.const 5)
      (call $get_header (i32.const 0) (i32.const 0x1000) (i32.const 5) (i32.const 0x200) (i32.const 0x204)))
    (drop (call $get_pairs (i32.const 0) (i32.const 0x200) (i32.const 0x204)))
    (call $rec (i32.const 0x1020) (i32.const 5) (i32.load (i32.const 0x204)))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    assert!(vm.request().send().is_allowed());
    assert_eq!(rec(&host, "value"), Some(Status::BadArgument as u32));
    assert_eq!(rec(&host, "pairs"), Some(0));
}

#[test]
fn properties_by_path_and_set_property() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "connection\00uri_san_peer_certificate")
  (data (i32.const 0x1040) "san") (data (i32.const 0x1050) "nope\00x") (data (i32.const 0x1060) "missing")
  (data (i32.const 0x1070) "request\00path") (data (i32.const 0x1080) "path")
  ;; A one-segment name: Envoy keeps it as filter state `wasm.my_state` and finds it by its first segment.
  (data (i32.const 0x1090) "my_state") (data (i32.const 0x10a0) "state") (data (i32.const 0x10b0) "root_set")
  (data (i32.const 0x10c0) "plugin_name") (data (i32.const 0x10d0) "name")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $rec (i32.const 0x10b0) (i32.const 8)
      (call $set_property (i32.const 0x1090) (i32.const 8) (i32.const 0x1040) (i32.const 3)))
    (drop (call $get_property (i32.const 0x10c0) (i32.const 11) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x10d0) (i32.const 4) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get_property (i32.const 0x1000) (i32.const 35) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1040) (i32.const 3) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (call $rec (i32.const 0x1060) (i32.const 7)
      (call $get_property (i32.const 0x1050) (i32.const 6) (i32.const 0x200) (i32.const 0x204)))
    (drop (call $get_property (i32.const 0x1070) (i32.const 12) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1080) (i32.const 4) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (drop (call $set_property (i32.const 0x1090) (i32.const 8) (i32.const 0x1080) (i32.const 4)))
    (drop (call $get_property (i32.const 0x1090) (i32.const 8) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x10a0) (i32.const 5) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().property("plugin_name", "agent-iam").start().unwrap();
    assert_eq!(rec(&host, "root_set"), Some(Status::NotFound as u32), "no stream info in root");
    assert_eq!(rec_bytes(&host, "name").unwrap(), b"agent-iam");
    let o =
        vm.request().path("/p?q=1").property("connection.uri_san_peer_certificate", "spiffe://example/agent").send();
    assert!(o.is_allowed());
    assert_eq!(rec_bytes(&host, "san").unwrap(), b"spiffe://example/agent");
    assert_eq!(rec(&host, "missing"), Some(Status::NotFound as u32));
    assert_eq!(rec_bytes(&host, "path").unwrap(), b"/p?q=1");
    assert_eq!(rec_bytes(&host, "state").unwrap(), b"path");
}

#[test]
fn shared_data_cas_across_two_vms() {
    // Request 1 on a VM: read "k" and keep its cas. Request 2: write "k" with the kept cas and
    // record the status.
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "k") (data (i32.const 0x1010) "status") (data (i32.const 0x1020) "vv")
  (global $n (mut i32) (i32.const 0))
  (global $cas (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eq (global.get $n) (i32.const 1))
      (then
        (drop (call $get_shared (i32.const 0x1000) (i32.const 1) (i32.const 0x200) (i32.const 0x204) (i32.const 0x208)))
        (global.set $cas (i32.load (i32.const 0x208))))
      (else
        (call $rec (i32.const 0x1010) (i32.const 6)
          (call $set_shared (i32.const 0x1000) (i32.const 1) (i32.const 0x1020) (i32.const 2) (global.get $cas)))))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut a = host.vm().start().unwrap();
    let mut b = host.vm().start().unwrap();
    // Seed "k" from VM a's second request path? Use b: its first request only reads.
    // Set k directly via a's requests: first write happens with cas 0 (always succeeds).
    a.request().send(); // a: reads (NotFound, cas 0)
    a.request().send(); // a: writes with cas 0 -> Ok
    assert_eq!(rec(&host, "status"), Some(Status::Ok as u32));
    let (_, cas1) = host.shared_data("k").unwrap();
    b.request().send(); // b: reads k, keeps cas1
    let mut c = host.vm().start().unwrap();
    c.request().send(); // c: reads k (cas1)
    c.request().send(); // c: writes with cas1 -> Ok, cas changes
    assert_eq!(rec(&host, "status"), Some(Status::Ok as u32));
    assert_ne!(host.shared_data("k").unwrap().1, cas1);
    b.request().send(); // b: writes with stale cas1 -> CasMismatch
    assert_eq!(rec(&host, "status"), Some(Status::CasMismatch as u32));
    assert_eq!(host.shared_data("k").unwrap().0, b"vv");
}

const CALLOUT: &str = r#"
  (data (i32.const 0x1000) "idp")
  ;; headers: :method GET, :path /token, :authority idp
  (data (i32.const 0x1010) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\03\00\00\00:method\00GET\00:path\00/token\00:authority\00idp\00")
  (data (i32.const 0x1100) "hello") (data (i32.const 0x1110) "call") (data (i32.const 0x1120) "x-r")
  (data (i32.const 0x1130) "x-from-callout") (data (i32.const 0x1140) "body") (data (i32.const 0x1150) "denied")
  (data (i32.const 0x1160) "eff") (data (i32.const 0x1170) "headers")
  (global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $st i32)
    (global.set $ctx (local.get 0))
    (local.set $st (call $http_call (i32.const 0x1000) (i32.const 3) (i32.const 0x1010) (i32.const 72)
        (i32.const 0x1100) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 0x208)))
    (call $rec (i32.const 0x1110) (i32.const 4) (local.get $st))
    (if (local.get $st)
      (then (drop (call $reply (i32.const 500) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param $nh i32) (param $body i32) (param $nt i32)
    (call $rec (i32.const 0x1170) (i32.const 7) (local.get $nh))
    (call $rec (i32.const 0x1160) (i32.const 3) (call $set_effective (global.get $ctx)))
    (if (i32.eqz (local.get $nh))
      (then
        (drop (call $reply (i32.const 403) (i32.const 0x1150) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (drop (call $get_buffer (i32.const 4) (i32.const 0) (local.get $body) (i32.const 0x200) (i32.const 0x204)))
    (call $rec_bytes (i32.const 0x1140) (i32.const 4) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))
    (drop (call $get_header (i32.const 6) (i32.const 0x1120) (i32.const 3) (i32.const 0x200) (i32.const 0x204)))
    (drop (call $add_header (i32.const 0) (i32.const 0x1130) (i32.const 14) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204))))
    (drop (call $continue (i32.const 0))))
"#;

#[test]
fn http_callout_then_continue_from_the_response() {
    let host = Host::from_bytes(&module(CALLOUT)).unwrap();
    let mut vm = host.vm().clusters(["idp"]).start().unwrap();
    let o = vm.request().path("/api").send();
    let Outcome::Paused(pending) = o else { panic!("{o:?}") };
    assert_eq!(rec(&host, "call"), Some(0));
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1);
    let c = &callouts[0];
    assert_eq!((c.cluster.as_str(), c.body.as_slice()), ("idp", &b"hello"[..]));
    assert_eq!(c.header(":path"), Some("/token"));
    assert_eq!(c.timeout, Duration::from_millis(5000));
    assert_eq!(c.context_id, pending.context_id());
    // Still paused until the response arrives.
    let pending = match vm.resume(pending) {
        Outcome::Paused(p) => p,
        other => panic!("{other:?}"),
    };
    vm.respond(c.token, 200, &[("X-R", "granted")], b"{\"ok\":true}");
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(rec(&host, "eff"), Some(0));
    assert_eq!(rec(&host, "headers"), Some(2), ":status + x-r");
    assert_eq!(rec_bytes(&host, "body").unwrap(), b"{\"ok\":true}");
    let o = vm.resume(pending);
    assert!(o.is_allowed(), "{o:?}");
    assert_eq!(o.header("x-from-callout"), Some("granted"));
    vm.assert_healthy();
}

#[test]
fn failed_callout_and_unknown_cluster() {
    let host = Host::from_bytes(&module(CALLOUT)).unwrap();
    let mut vm = host.vm().clusters(["idp"]).start().unwrap();
    let pending = vm.request().send().pending().cloned().unwrap();
    let token = vm.pending_callouts()[0].token;
    vm.fail(token);
    assert_eq!(rec(&host, "headers"), Some(0));
    let o = vm.resume(pending);
    assert_eq!(o.status(), Some(403), "{o:?}");

    let mut other = host.vm().clusters(["not-idp"]).start().unwrap();
    let o = other.request().send();
    assert_eq!(rec(&host, "call"), Some(Status::BadArgument as u32));
    assert_eq!(o.status(), Some(500));
    assert!(other.pending_callouts().is_empty());
}

#[test]
fn metrics_are_shared_and_follow_envoy_rules() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "requests") (data (i32.const 0x1010) "id") (data (i32.const 0x1020) "zero")
  (data (i32.const 0x1030) "value")
  (global $id (mut i32) (i32.const 0))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $define_metric (i32.const 0) (i32.const 0x1000) (i32.const 8) (i32.const 0x208)))
    (global.set $id (i32.load (i32.const 0x208)))
    (call $rec (i32.const 0x1010) (i32.const 2) (global.get $id))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $inc_metric (global.get $id) (i64.const 1)))
    (call $rec (i32.const 0x1020) (i32.const 4) (call $inc_metric (global.get $id) (i64.const 0)))
    (drop (call $get_metric (global.get $id) (i32.const 0x210)))
    (call $rec (i32.const 0x1030) (i32.const 5) (i32.wrap_i64 (i64.load (i32.const 0x210))))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut a = host.vm().start().unwrap();
    let id_a = rec(&host, "id");
    let mut b = host.vm().start().unwrap();
    assert_eq!(rec(&host, "id"), id_a, "same name and type -> same id");
    assert_eq!(a.metric("requests"), Some(0));
    a.request().send();
    b.request().send();
    b.request().send();
    assert_eq!(a.metric("requests"), Some(3));
    assert_eq!(host.metric("requests"), Some(3));
    assert_eq!(rec(&host, "value"), Some(3));
    assert_eq!(rec(&host, "zero"), Some(Status::BadArgument as u32), "counter += 0 is refused");
    assert_eq!(a.metric("nope"), None);
}

#[test]
fn virtual_clock_and_ticks() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "now") (data (i32.const 0x1010) "ticks")
  (global $ticks (mut i32) (i32.const 0))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 1000)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
    (call $rec (i32.const 0x1010) (i32.const 5) (global.get $ticks))
    (drop (call $now (i32.const 0x210)))
    (call $rec_bytes (i32.const 0x1000) (i32.const 3) (i32.const 0x210) (i32.const 8)))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut vm = host.vm().time(t0).start().unwrap();
    assert_eq!(vm.tick_period(), Duration::from_secs(1));
    let now = |host: &Host| u64::from_le_bytes(rec_bytes(host, "now").unwrap().try_into().unwrap());
    vm.tick();
    assert_eq!(now(&host), 1_700_000_000 * 1_000_000_000);
    vm.advance_clock(Duration::from_millis(1500));
    vm.tick();
    assert_eq!(now(&host), 1_700_000_001_500_000_000);
    vm.set_time(UNIX_EPOCH + Duration::from_secs(5));
    vm.tick();
    assert_eq!(now(&host), 5_000_000_000);
    assert_eq!(rec(&host, "ticks"), Some(3));
    assert!(vm.now() < SystemTime::now());
}

#[test]
fn trap_fails_the_stream_and_the_vm_closed() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "about to trap")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 0x1000) (i32.const 13)))
    unreachable)
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    let o = vm.request().send();
    assert_eq!(o.status(), Some(503));
    assert!(matches!(&o, Outcome::LocalResponse { details, .. } if details == "wasm_fail_stream"));
    assert!(vm.trap().unwrap().contains("proxy_on_request_headers"));
    assert!(vm.logs().iter().any(|l| l.level == LogLevel::Critical));
    assert!(vm.logs().iter().any(|l| l.level == LogLevel::Info && l.message == "about to trap"));
    // The VM stays failed: every later request is refused without running the plugin.
    let before = vm.logs().len();
    assert_eq!(vm.request().send().status(), Some(503));
    assert_eq!(vm.logs().len(), before);
    let healthy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.assert_healthy()));
    assert!(healthy.is_err());
}

#[test]
fn bad_guest_pointer_traps_instead_of_panicking() {
    let wasm = module(
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const -16) (i32.const 64)))
    (i32.const 0))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    assert_eq!(vm.request().send().status(), Some(503));
    assert!(vm.trap().unwrap().contains("invalid memory access"), "{:?}", vm.trap());
}

#[test]
fn stdout_and_stderr_are_captured_and_foreign_functions_behave_like_envoys() {
    let wasm = module(
        r#"
  (data (i32.const 0x1000) "hello stdout\n") (data (i32.const 0x1020) "verify_signature") (data (i32.const 0x1040) "ff")
  (data (i32.const 0x1050) "oops")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.store (i32.const 0x300) (i32.const 0x1000)) (i32.store (i32.const 0x304) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0x300) (i32.const 1) (i32.const 0x308)))
    (i32.store (i32.const 0x300) (i32.const 0x1050)) (i32.store (i32.const 0x304) (i32.const 4))
    (drop (call $fd_write (i32.const 2) (i32.const 0x300) (i32.const 1) (i32.const 0x308)))
    (call $rec (i32.const 0x1040) (i32.const 2)
      (call $foreign (i32.const 0x1020) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 0x200) (i32.const 0x204)))
    (i32.const 1))
"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let vm = host.vm().start().unwrap();
    assert!(vm.logs().iter().any(|l| l.level == LogLevel::Info && l.message == "hello stdout"), "{}", vm.logs_text());
    assert!(vm.logs().iter().any(|l| l.level == LogLevel::Error && l.message == "oops"));
    // Envoy's verify_signature is there by default and refuses empty arguments as Envoy does.
    assert_eq!(rec(&host, "ff"), Some(Status::BadArgument as u32));

    // A host without the function answers NotFound.
    host.unregister_foreign_function("verify_signature");
    let _vm2 = host.vm().start().unwrap();
    assert_eq!(rec(&host, "ff"), Some(Status::NotFound as u32));

    // A registered foreign function is called and its result copied into the guest.
    host.register_foreign_function("verify_signature", |args| Ok(args.to_vec()));
    let _vm3 = host.vm().start().unwrap();
    assert_eq!(rec(&host, "ff"), Some(Status::Ok as u32));
}

#[test]
fn paused_request_can_be_aborted_by_the_test() {
    let host = Host::from_bytes(&module(CALLOUT)).unwrap();
    let mut vm = host.vm().start().unwrap();
    let pending = vm.request().send().pending().cloned().unwrap();
    let o = vm.abort(pending);
    assert_eq!(o.status(), Some(0));
    // The callout answer arrives after the stream is gone: effective context is unknown.
    let token = vm.pending_callouts()[0].token;
    vm.respond(token, 200, &[], b"");
    assert_eq!(rec(&host, "eff"), Some(Status::BadArgument as u32));
}

/// Smoke test against a real proxy-wasm Rust SDK module when one is named by `PROXY_WASM_MODULE`.
#[test]
fn real_sdk_module_smoke() {
    let Ok(path) = std::env::var("PROXY_WASM_MODULE") else { return };
    let host = Host::from_file(path).unwrap();
    let mut vm = host.vm().plugin_config(b"{}").start().unwrap();
    let _ = vm.request().send();
    vm.assert_healthy();
}

#[test]
fn a_metered_host_counts_instructions_per_callback_deterministically() {
    let wasm = wat::parse_str(agent_iam_tests::modules::BASELINE_WAT).unwrap();
    let host = Host::metered_from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    let mut per_request = Vec::new();
    for _ in 0..3 {
        let before = vm.fuel_consumed().unwrap();
        assert!(vm.request().path("/x").send().is_allowed());
        per_request.push(vm.fuel_consumed().unwrap() - before);
    }
    assert!(per_request[0] > 0);
    assert_eq!(per_request[1], per_request[2], "the same request costs the same instructions");
    assert!(vm.fuel_by_export().iter().any(|(name, n)| name == "proxy_on_request_headers" && *n > 0));
    // An unmetered host reports nothing.
    let plain = Host::from_bytes(&wasm).unwrap();
    assert_eq!(plain.vm().start().unwrap().fuel_consumed(), None);
}

#[test]
fn a_clocked_vm_keeps_the_time_inside_the_module_and_counts_its_host_calls() {
    // Two host calls per request, in a callback that also computes for a while.
    let wasm = module(
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (drop (call $now (i32.const 0x100)))
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000))))
    (drop (call $now (i32.const 0x100)))
    (i32.const 0))"#,
    );
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().clock_wasm(true).start().unwrap();
    let (inside_before, calls_before) = vm.wasm_time().unwrap();
    for _ in 0..3 {
        assert!(vm.request().path("/x").send().is_allowed());
    }
    let (inside, calls) = vm.wasm_time().unwrap();
    assert_eq!(calls - calls_before, 6, "every host call is counted, and nothing else");
    assert!(inside > inside_before, "the spin loop ran inside the module");
    // Without the clock there is nothing to read.
    assert_eq!(host.vm().start().unwrap().wasm_time(), None);
}

#[test]
fn a_callback_with_the_wrong_signature_fails_the_vm() {
    let wasm = module(r#"(func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0))"#);
    let host = Host::from_bytes(&wasm).unwrap();
    let mut vm = host.vm().start().unwrap();
    let _ = vm.request().path("/x").send();
    let trap = vm.trap().map(str::to_owned).unwrap_or_default();
    assert!(trap.contains("bad function signature for proxy_on_request_headers"), "{trap:?}");
}
