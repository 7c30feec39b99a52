//! `agent-iam audit verify` and `audit query` on logs built here: chains hashed and sealed with sha2/hmac as
//! the plugin writes them, then tampered with in the ways an attacker (or a lost file) would.

use agent_iam::b64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &[u8] = b"an audit checkpoint key, 32 byte";
const OTHER_KEY: &[u8] = b"another key that is not the one!";
/// 2026-12-01T00:00:00Z.
const DEC_1: i64 = 1_796_083_200_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agent-iam-audit-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    path.to_string_lossy().into_owned()
}

fn key_file(dir: &Path, name: &str, key: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", b64::encode(key))).unwrap();
    path.to_string_lossy().into_owned()
}

fn agent_iam(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-iam")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn hash(line: &str) -> String {
    b64::encode(blake3::hash(line.as_bytes()).as_bytes())
}

fn mac(key: &[u8], sealed: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(sealed.as_bytes());
    b64::encode(&m.finalize().into_bytes())
}

/// Writes one chain's events as the plugin does.
struct Chain {
    id: String,
    seq: u64,
    prev: Option<String>,
    previous_chain: Option<String>,
}

impl Chain {
    fn new(id: &str) -> Chain {
        Chain { id: id.into(), seq: 0, prev: None, previous_chain: None }
    }

    /// The chain that follows `older` (same VM, new configuration), whose last line was `last`.
    fn after(id: &str, older: &Chain, last: &str) -> Chain {
        let pc = format!(r#"{{"id":"{}","seq":{},"hash":"{}"}}"#, older.id, older.seq - 1, hash(last));
        Chain { previous_chain: Some(pc), ..Chain::new(id) }
    }

    /// An event: `members` are the OCSF members before `unmapped`, `unmapped` its members before `chain`
    /// (each ending with a comma); `seal` makes it a checkpoint with this key and kid.
    fn event(&mut self, members: &str, unmapped: &str, seal: Option<(&[u8], Option<&str>)>) -> String {
        let prev = self.prev.as_ref().map_or("null".to_owned(), |p| format!("\"{p}\""));
        let mut chain = format!(r#""id":"{}","seq":{},"prev":{prev}"#, self.id, self.seq);
        if let (0, Some(pc)) = (self.seq, &self.previous_chain) {
            chain.push_str(&format!(r#","previous_chain":{pc}"#));
        }
        if let Some((_, Some(kid))) = seal {
            chain.push_str(&format!(r#","kid":"{kid}""#));
        }
        let mut line = format!(r#"{{{members}"unmapped":{{{unmapped}"chain":{{{chain}}}}}}}"#);
        if let Some((key, _)) = seal {
            let m = mac(key, &line);
            line.truncate(line.len() - 3);
            line.push_str(&format!(r#","mac":"{m}"}}}}}}"#));
        }
        self.prev = Some(hash(&line));
        self.seq += 1;
        line
    }
}

/// A plain event of an allowed GET at `DEC_1 + seq` seconds.
fn simple(chain: &mut Chain, seal: Option<(&[u8], Option<&str>)>) -> String {
    let members = format!(
        r#""time":{},"action_id":1,"actor":{{"app_uid":"agent-a"}},"http_request":{{"url":{{"path":"/orders/{}"}}}},"#,
        DEC_1 + chain.seq as i64 * 1000,
        chain.seq
    );
    chain.event(&members, r#""decision":"allow","#, seal)
}

/// Seq 0..=9 with checkpoints (kid k1) at seq 3 and 7.
fn sealed_chain(id: &str, key: &[u8]) -> Vec<String> {
    let mut c = Chain::new(id);
    (0..10).map(|i| simple(&mut c, [3, 7].contains(&i).then_some((key, Some("k1"))))).collect()
}

fn verify(dir: &Path, files: &[&str], extra: &[&str]) -> (i32, String, String) {
    let key = format!("k1={}", key_file(dir, "k1.key", KEY));
    let mut args = vec!["audit", "verify", "--key", &key];
    args.extend_from_slice(extra);
    args.extend_from_slice(files);
    agent_iam(&args)
}

fn json_report(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_valid_chain_with_checkpoints_verifies() {
    let dir = scratch("valid");
    let log = write(&dir, "a.log", &sealed_chain("c1", KEY));
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK: 1 chain(s), 10 event(s), no problem"), "{out}");
    assert!(out.contains("2 event(s) after the last checkpoint (seq 7) not sealed"), "{out}");
    let (code, out, err) = verify(&dir, &[&log], &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json_report(&out);
    assert_eq!(r["ok"], true);
    let c = &r["chains"][0];
    assert_eq!((c["id"].as_str(), c["events"].as_u64()), (Some("c1"), Some(10)));
    assert_eq!((c["first_seq"].as_u64(), c["last_seq"].as_u64()), (Some(0), Some(9)));
    assert_eq!((c["checkpoints"].as_u64(), c["checkpoints_verified"].as_u64()), (Some(2), Some(2)));
    assert_eq!((c["last_checkpoint_seq"].as_u64(), c["unsealed"].as_u64()), (Some(7), Some(2)));
}

#[test]
fn without_a_key_macs_are_not_checked_and_that_is_no_problem() {
    let dir = scratch("nokey");
    let log = write(&dir, "a.log", &sealed_chain("c1", OTHER_KEY));
    let (code, out, err) = agent_iam(&["audit", "verify", &log]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checkpoint MACs not checked: no --key given"), "{out}");
    let (_, out, _) = agent_iam(&["audit", "verify", "--json", &log]);
    assert_eq!(json_report(&out)["chains"][0]["checkpoints_verified"], Value::Null);
}

#[test]
fn an_edited_event_breaks_the_next_link_and_rehashing_fails_at_the_checkpoint() {
    let dir = scratch("edit");
    let original = sealed_chain("c1", KEY);
    let mut lines = original.clone();
    lines[2] = lines[2].replace("/orders/2", "/orders/X");
    let log = write(&dir, "edited.log", &lines);
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("broken link: the prev of seq 3 (line 4 of "), "{out}");
    assert!(out.contains("is not the hash of seq 2 (line 3 of "), "{out}");
    // Without the key, the forger can fix every later prev, but not the checkpoint that seals them.
    for i in 3..lines.len() {
        let fixed = lines[i].replace(&hash(&original[i - 1]), &hash(&lines[i - 1]));
        lines[i] = fixed;
    }
    let log = write(&dir, "rehashed.log", &lines);
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("broken link"), "{out}");
    assert!(out.contains("checkpoint at seq 3 (line 4 of "), "{out}");
    assert!(out.contains("the MAC does not verify (kid k1)"), "{out}");
}

#[test]
fn a_deleted_event_is_a_gap() {
    let dir = scratch("delete");
    let mut lines = sealed_chain("c1", KEY);
    lines.remove(5);
    let log = write(&dir, "a.log", &lines);
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("chain c1: seq 5 missing"), "{out}");
    lines.drain(5..7);
    let log = write(&dir, "b.log", &lines);
    let (_, out, _) = verify(&dir, &[&log], &[]);
    assert!(out.contains("chain c1: seq 5..7 missing"), "{out}");
}

#[test]
fn swapped_events_are_out_of_order() {
    let dir = scratch("swap");
    let mut lines = sealed_chain("c1", KEY);
    lines.swap(4, 5);
    let log = write(&dir, "a.log", &lines);
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("seq 4 (line 6 of "), "{out}");
    assert!(out.contains("out of order: it comes after seq 5 (line 5 of "), "{out}");
    // The lines themselves are intact: no link is broken.
    assert!(!out.contains("broken link"), "{out}");

    // A line written twice (or a file given twice) repeats seqs.
    let mut lines = sealed_chain("c1", KEY);
    lines.insert(6, lines[5].clone());
    let log = write(&dir, "b.log", &lines);
    let (code, out, _) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 5 repeated: line 6 of ") && out.contains("and line 7 of "), "{out}");
    let (code, out, _) = verify(&dir, &[&log, &log], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(12 repeated events in all)"), "{out}");
}

#[test]
fn a_truncated_older_chain_is_caught_by_its_successor() {
    let dir = scratch("truncated");
    let mut old = Chain::new("old");
    let old_lines: Vec<String> = (0..6).map(|i| simple(&mut old, (i == 5).then_some((KEY, Some("k1"))))).collect();
    let mut new = Chain::after("new", &old, &old_lines[5]);
    let new_lines: Vec<String> = (0..3).map(|i| simple(&mut new, (i == 2).then_some((KEY, Some("k1"))))).collect();
    let b = write(&dir, "b.log", &new_lines);
    let a = write(&dir, "a.log", &old_lines);
    let (code, out, err) = verify(&dir, &[&a, &b], &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json_report(&out);
    assert_eq!(r["chains"][0]["id"], "new");
    assert_eq!(r["chains"][0]["previous_chain"]["linked"], true);

    let a = write(&dir, "a-truncated.log", &old_lines[..4]);
    let (code, out, err) = verify(&dir, &[&a, &b], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("chain new: names old ending at seq 5, but old's last event is seq 3"), "{out}");

    let mut edited = old_lines.clone();
    edited[5] = edited[5].replace("/orders/5", "/orders/6");
    let a = write(&dir, "a-edited.log", &edited);
    let (code, out, _) = verify(&dir, &[&a, &b], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("but the hash of old's seq 5 (line 6 of "), "{out}");

    // Only the newer file: the older chain was rotated away, a note unless --complete.
    let (code, out, _) = verify(&dir, &[&b], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("follows chain old (not in these files)"), "{out}");
    let (code, out, _) = verify(&dir, &[&b], &["--complete"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_forged_mac_a_wrong_key_and_a_missing_kid_fail() {
    let dir = scratch("mac");
    let mut lines = sealed_chain("c1", KEY);
    let forged = b64::encode(&[7; 32]);
    let (head, _) = lines[7].rsplit_once(r#","mac":""#).unwrap();
    lines[7] = format!(r#"{head},"mac":"{forged}"}}}}}}"#);
    let log = write(&dir, "forged.log", &lines);
    let (code, out, err) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("checkpoint at seq 7 (line 8 of "), "{out}");
    assert!(!out.contains("checkpoint at seq 3"), "{out}");

    let log = write(&dir, "other.log", &sealed_chain("c1", OTHER_KEY));
    let (code, out, _) = verify(&dir, &[&log], &["--json"]);
    assert_eq!(code, 1, "{out}");
    let r = json_report(&out);
    assert_eq!(r["chains"][0]["checkpoints_verified"], 0);
    assert_eq!(r["problems"].as_array().unwrap().len(), 2, "{out}");

    // Two keys, neither for kid k1: no key to check with is a problem; a single key serves any kid.
    let k2 = format!("k2={}", key_file(&dir, "k2.key", KEY));
    let k3 = format!("k3={}", key_file(&dir, "k3.key", OTHER_KEY));
    let log = write(&dir, "good.log", &sealed_chain("c1", KEY));
    let (code, out, _) = agent_iam(&["audit", "verify", "--key", &k2, "--key", &k3, &log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint at seq 3 (line 4 of ") && out.contains("no key (kid k1)"), "{out}");
    let (code, out, _) = agent_iam(&["audit", "verify", "--key", &k2, &log]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn interleaved_chains_and_placeholders_verify() {
    let dir = scratch("interleaved");
    let (one, two) = (sealed_chain("w1", KEY), sealed_chain("w0", KEY));
    let mut lines = Vec::new();
    for (a, b) in one.iter().zip(&two) {
        lines.extend([a.clone(), "-".into(), b.clone(), String::new()]);
    }
    let (first, rest) = lines.split_at(17);
    let (a, b) = (write(&dir, "a.log", first), write(&dir, "b.log", rest));
    let (code, out, err) = verify(&dir, &[&a, &b], &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = json_report(&out);
    assert_eq!(r["skipped_lines"], 20);
    assert_eq!(r["chains"][0]["id"], "w0");
    assert_eq!(r["chains"][1]["checkpoints_verified"], 2);
    // Files in the wrong order: every chain runs backwards across the boundary.
    let (code, out, _) = verify(&dir, &[&b, &a], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("out of order"), "{out}");
}

#[test]
fn malformed_lines_heads_and_prev_are_reported() {
    let dir = scratch("malformed");
    let mut lines = sealed_chain("c1", KEY);
    lines.insert(2, "[1,2]".into());
    lines.insert(3, r#"{"time":1,"unmapped":{"chain":{"id":"c9"}}}"#.into());
    let log = write(&dir, "a.log", &lines);
    let (code, out, _) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3 of ") && out.contains("a.log: not a JSON object"), "{out}");
    assert!(out.contains("a.log: malformed chain: seq is not an integer >= 0"), "{out}");

    let headless = sealed_chain("c1", KEY)[4..].to_vec();
    let log = write(&dir, "headless.log", &headless);
    let (code, out, _) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("starts at seq 4: its head (seq 0..3) is not in these files"), "{out}");
    let (code, out, _) = verify(&dir, &[&log], &["--complete"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not start at seq 0"), "{out}");

    let mut c = Chain::new("c1");
    c.prev = Some(hash("nothing"));
    let log = write(&dir, "prev.log", &[simple(&mut c, None)]);
    let (code, out, _) = verify(&dir, &[&log], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prev is not null at seq 0"), "{out}");

    let (code, _, err) = verify(&dir, &[&dir.join("absent.log").to_string_lossy()], &[]);
    assert_eq!(code, 2, "{err}");
}

/// Three events of different agents, subjects, resources, rules, decisions and statuses.
fn query_log(dir: &Path) -> (String, Vec<String>) {
    let mut c = Chain::new("q");
    let lines = vec![
        c.event(
            &format!(
                r#""time":{DEC_1},"action_id":1,"actor":{{"app_uid":"agent-a","user":{{"uid":"alice"}}}},"api":{{"operation":"GET"}},"http_request":{{"url":{{"path":"/orders/42"}}}},"http_response":{{"code":200}},"resources":[{{"type":"path_parameter","uid":"42","name":"order-42"}}],"policy":{{"uid":"read-orders"}},"#
            ),
            r#""decision":"allow","#,
            None,
        ),
        c.event(
            &format!(
                r#""time":{},"action_id":2,"actor":{{"app_uid":"agent-b","user":{{"uid":"bob"}}}},"api":{{"operation":"POST"}},"http_request":{{"url":{{"path":"/orders"}}}},"http_response":{{"code":403}},"#,
                DEC_1 + 3_600_000
            ),
            r#""act_chain":["agent-c"],"#,
            None,
        ),
        c.event(
            &format!(
                r#""time":{},"action_id":1,"actor":{{"app_uid":"agent-a","user":{{"uid":"bob"}}}},"http_response":{{"code":200}},"policy":{{"uid":"write-orders"}},"#,
                DEC_1 + 2 * 86_400_000
            ),
            r#""decision":"dry_run","#,
            Some((KEY, None)),
        ),
    ];
    let mut file = lines.clone();
    file.insert(1, "-".into());
    file.insert(2, "not json".into());
    (write(dir, "q.log", &file), lines)
}

fn query(log: &str, filters: &[&str]) -> (i32, String, String) {
    let mut args = vec!["audit", "query", "--json", log];
    args.extend_from_slice(filters);
    agent_iam(&args)
}

#[test]
fn query_filters_select_events_and_json_prints_them_unchanged() {
    let dir = scratch("query");
    let (log, lines) = query_log(&dir);
    let expect = |filters: &[&str], want: &[usize]| {
        let (code, out, err) = query(&log, filters);
        let wanted: String = want.iter().map(|&i| format!("{}\n", lines[i])).collect();
        assert_eq!(out, wanted, "{filters:?}: {err}");
        assert_eq!(code, if want.is_empty() { 1 } else { 0 }, "{filters:?}");
        assert!(err.contains("skipped 1 line(s) that are not JSON objects"), "{err}");
    };
    expect(&[], &[0, 1, 2]);
    expect(&["--agent", "agent-a"], &[0, 2]);
    expect(&["--agent", "agent-c"], &[1]);
    expect(&["--subject", "bob"], &[1, 2]);
    expect(&["--resource", "42"], &[0]);
    expect(&["--resource", "order-42"], &[0]);
    expect(&["--resource", "path_parameter:42"], &[0]);
    expect(&["--resource", "43"], &[]);
    expect(&["--rule", "write-orders"], &[2]);
    expect(&["--decision", "allow"], &[0]);
    expect(&["--decision", "deny"], &[1]);
    expect(&["--decision", "dry_run"], &[2]);
    expect(&["--status", "403"], &[1]);
    expect(&["--status", "200", "--subject", "bob"], &[2]);
    expect(&["--since", "2026-12-01T00:30:00Z"], &[1, 2]);
    expect(&["--until", "2026-12-01T01:00:00Z"], &[0]);
    expect(&["--since", "2026-12-01T01:00:00+01:00", "--until", "2026-12-02T00:00:00Z"], &[0, 1]);

    let (code, out, err) = agent_iam(&["audit", "query", &log, "--agent", "agent-a"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].starts_with("TIME") && rows[0].ends_with("RULE"), "{out}");
    for cell in
        ["2026-12-01T00:00:00Z", "allow", "200", "alice", "GET", "/orders/42", "path_parameter:42", "read-orders"]
    {
        assert!(rows[1].contains(cell), "{cell}: {out}");
    }
    assert!(rows[2].contains("dry_run"), "{out}");

    let (code, _, err) = query(&log, &["--since", "last tuesday"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = query(&log, &["--decision", "maybe"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn query_since_a_relative_time() {
    let dir = scratch("relative");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut c = Chain::new("r");
    let at = |c: &mut Chain, t: i64| c.event(&format!(r#""time":{t},"action_id":1,"#), "", None);
    let lines = vec![at(&mut c, now - 2 * 86_400_000), at(&mut c, now - 3_600_000), at(&mut c, now - 60_000)];
    let log = write(&dir, "r.log", &lines);
    let (_, out, _) = query(&log, &["--since", "1d"]);
    assert_eq!(out, format!("{}\n{}\n", lines[1], lines[2]));
    let (_, out, _) = query(&log, &["--since", "30m"]);
    assert_eq!(out, format!("{}\n", lines[2]));
    let (_, out, _) = query(&log, &["--since", "3d", "--until", "24h"]);
    assert_eq!(out, format!("{}\n", lines[0]));
}

/// The plugin's own producer (`agent_iam::audit`) and this verifier agree: what the plugin writes verifies,
/// and an edit of it does not.
#[test]
fn the_plugins_own_events_verify_and_an_edit_is_caught() {
    use agent_iam::audit::{self, Chain as PluginChain, CheckpointKey, Events, Facts, Outcome, RequestFacts, Settings};
    let settings = Settings {
        events: Events::All,
        claims: Vec::new(),
        checkpoint: Some(CheckpointKey {
            key: KEY.to_vec(),
            key_id: Some("k1".into()),
            every_events: 3,
            every_seconds: 3600,
        }),
        vendor: "agent-iam".into(),
    };
    let mut chain = PluginChain::new("plugin-chain".into(), None);
    let lines: Vec<String> = (0..8u64)
        .map(|i| {
            let facts = Facts {
                time_ms: DEC_1 as u64 + i,
                outcome: if i % 2 == 0 {
                    Outcome::Allowed { rule: "records" }
                } else {
                    Outcome::Denied { status: 403, reason: "no_rule_allows", rule: None }
                },
                request: RequestFacts { method: "GET", path: "/patients/42/records", ..Default::default() },
                token: None,
                mcp: None,
                policy_version: None,
                labels: &[],
                parameters: &[("patient_id", "42")],
                claims: &[],
                vendor: "agent-iam",
                node: None,
                revoked_by: None,
                anomalies: &[],
            };
            audit::line(&settings, &mut chain, &facts)
        })
        .collect();
    let dir = scratch("plugin-lines");
    let key = key_file(&dir, "key", KEY);
    let log = write(&dir, "audit.ndjson", &lines);
    let (code, out, err) = agent_iam(&["audit", "verify", &log, "--key", &format!("k1={key}")]);
    assert_eq!(code, 0, "{out}{err}");
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("/patients/42/records", "/patients/43/records");
    let log = write(&dir, "edited.ndjson", &edited);
    let (code, out, err) = agent_iam(&["audit", "verify", &log, "--key", &format!("k1={key}")]);
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, _) =
        agent_iam(&["audit", "query", &write(&dir, "q.ndjson", &lines), "--resource", "42", "--decision", "deny"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("no_rule_allows") || l.contains("deny")).count(), 4, "{out}");
}
