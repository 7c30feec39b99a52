//! `audit query`: the events that match every filter, as a table or as the lines read.

use super::QueryArgs;
use super::lines::Logs;
use super::report::table;
use super::time;
use crate::Usage;
use serde_json::Value;
use std::io::Write;

/// A decision, as `--decision` names it and as the table prints it.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    Allow,
    Deny,
    #[value(name = "dry_run")]
    DryRun,
}

/// The filters, with times resolved once (a relative `--since` means now when the command started).
struct Filters<'a> {
    args: &'a QueryArgs,
    since: Option<i64>,
    until: Option<i64>,
}

pub fn run(args: &QueryArgs) -> Result<bool, Usage> {
    let now = time::now_ms();
    let resolve = |flag: &str, t: &Option<String>| {
        t.as_deref().map(|t| time::parse(t, now).map_err(|e| Usage(format!("{flag} {e}")))).transpose()
    };
    let filters = Filters { args, since: resolve("--since", &args.since)?, until: resolve("--until", &args.until)? };
    let logs = Logs::open(&args.files)?;
    let (mut matched, mut malformed) = (0u64, 0u64);
    let mut rows = vec![
        ["TIME", "DECISION", "STATUS", "AGENT", "SUBJECT", "OPERATION", "PATH", "RESOURCES", "RULE"].map(str::to_owned),
    ];
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    logs.for_each(|_, bytes| {
        let Ok(event @ Value::Object(_)) = serde_json::from_slice::<Value>(bytes) else {
            malformed += 1;
            return;
        };
        if !filters.matches(&event) {
            return;
        }
        matched += 1;
        if args.json {
            // The line exactly as read: it stays verifiable, and a later `audit verify` can hash it.
            if let Err(e) = out.write_all(bytes).and_then(|()| out.write_all(b"\n")) {
                write_error.get_or_insert(e);
            }
        } else {
            rows.push(row(&event));
        }
    })?;
    if !args.json && matched > 0 {
        let _ = out.write_all(table(&rows).as_bytes());
    }
    if let Some(e) = write_error.take() {
        return Err(Usage(format!("writing the output: {e}")));
    }
    let _ = out.flush();
    if malformed > 0 {
        eprintln!("agent-iam: skipped {malformed} line(s) that are not JSON objects");
    }
    if matched == 0 {
        eprintln!("agent-iam: no event matched");
    }
    Ok(matched > 0)
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str)
}

fn decision(event: &Value) -> Option<&str> {
    if let Some(d) = str_at(event, &["unmapped", "decision"]) {
        return Some(d);
    }
    match event.get("action_id").and_then(Value::as_u64) {
        Some(1) => Some("allow"),
        Some(2) => Some("deny"),
        _ => None,
    }
}

impl Filters<'_> {
    fn matches(&self, event: &Value) -> bool {
        let a = self.args;
        let eq = |path: &[&str], want: &Option<String>| want.as_ref().is_none_or(|w| str_at(event, path) == Some(w));
        let time = event.get("time").and_then(Value::as_i64);
        eq(&["actor", "user", "uid"], &a.subject)
            && eq(&["policy", "uid"], &a.rule)
            && a.agent.as_ref().is_none_or(|agent| agents(event).any(|x| x == agent))
            && a.resource.as_ref().is_none_or(|r| resources(event).any(|res| matches_resource(res, r)))
            && a.decision.is_none_or(|d| decision(event) == Some(decision_name(d)))
            && a.status.is_none_or(|s| event.pointer("/http_response/code").and_then(Value::as_u64) == Some(s.into()))
            && self.since.is_none_or(|since| time.is_some_and(|t| t >= since))
            && self.until.is_none_or(|until| time.is_some_and(|t| t < until))
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::DryRun => "dry_run",
    }
}

/// The acting agent and every agent of its delegation chain. A chain element is an id, or an object with
/// one (`uid`, or `sub` as in an RFC 8693 `act` claim), so that either spelling of the producer matches.
fn agents(event: &Value) -> impl Iterator<Item = &str> {
    let chain = event.pointer("/unmapped/act_chain").and_then(Value::as_array).into_iter().flatten();
    let chain = chain.filter_map(|e| e.as_str().or_else(|| str_at(e, &["uid"])).or_else(|| str_at(e, &["sub"])));
    str_at(event, &["actor", "app_uid"]).into_iter().chain(chain)
}

fn resources(event: &Value) -> impl Iterator<Item = &Value> {
    event.get("resources").and_then(Value::as_array).into_iter().flatten()
}

/// `uid` or `name` equal to the text, or `type:uid`, the form the table prints, so a cell can be pasted back.
fn matches_resource(res: &Value, text: &str) -> bool {
    let field = |k: &str| res.get(k).and_then(Value::as_str);
    field("uid") == Some(text)
        || field("name") == Some(text)
        || text.split_once(':').is_some_and(|(t, u)| field("type") == Some(t) && field("uid") == Some(u))
}

fn row(event: &Value) -> [String; 9] {
    let s = |path: &[&str]| str_at(event, path).unwrap_or("-").to_owned();
    let resources: Vec<String> = resources(event)
        .map(|r| {
            let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?");
            format!("{}:{}", f("type"), f("uid"))
        })
        .collect();
    [
        event.get("time").and_then(Value::as_i64).map_or("-".into(), time::format),
        decision(event).unwrap_or("-").to_owned(),
        event.pointer("/http_response/code").map_or("-".into(), Value::to_string),
        s(&["actor", "app_uid"]),
        s(&["actor", "user", "uid"]),
        s(&["api", "operation"]),
        s(&["http_request", "url", "path"]),
        if resources.is_empty() { "-".into() } else { resources.join(",") },
        s(&["policy", "uid"]),
    ]
}
