//! `agent-iam-loadgen`: HTTP/1.1 load on 127.0.0.1 over keep-alive connections, at a fixed rate (open loop,
//! latency from each request's intended send time: no coordinated omission) or as fast as the server
//! answers (closed loop). The engine is [`agent_iam_bench::loadgen`]; `make bench-envoy` uses it in process.
//! Prints the report as JSON: rate, completed and incomplete requests, statuses, p50/p90/p99/p999/max in µs.
//!
//! ```text
//! agent-iam-loadgen --port 10000 --rate 5000 --seconds 10 --connections 16 --path /quotes/ACME \
//!     [--header 'authorization: Bearer ...'] [--tokens FILE]   # FILE: one token a line, one per request
//! agent-iam-loadgen --port 10000 --closed --seconds 10         # closed loop: the maximum throughput
//! ```

use agent_iam_bench::loadgen::{self, Plan};
use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Parser};
use std::time::Duration;

/// HTTP/1.1 load on 127.0.0.1 at a fixed rate (open loop) or as fast as the server answers (closed loop);
/// prints p50/p90/p99/p99.9/max as JSON.
#[derive(Parser)]
#[command(name = "agent-iam-loadgen", version)]
#[command(group(ArgGroup::new("mode").required(true).args(["rate", "closed"])))]
struct Cli {
    /// Port on 127.0.0.1 to load.
    #[arg(long, value_name = "P")]
    port: u16,
    /// Requests per second, sent at fixed intervals (open loop; latency from each intended send time).
    #[arg(long, value_name = "R", value_parser = positive)]
    rate: Option<f64>,
    /// Closed loop: each connection sends its next request when the last one is answered (maximum throughput).
    #[arg(long)]
    closed: bool,
    /// Duration of the run, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = positive)]
    seconds: f64,
    /// Keep-alive connections.
    #[arg(long, value_name = "N", default_value_t = 16)]
    connections: usize,
    /// Request path.
    #[arg(long, value_name = "P", default_value = "/")]
    path: String,
    /// A header sent with every request (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// One token a line, sent in turn as `authorization: Bearer <token>`, one per request.
    #[arg(long, value_name = "FILE")]
    tokens: Option<String>,
}

/// A finite number above zero.
fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err("must be a positive number".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_header(header: &str) -> Result<(String, String), String> {
    let (name, value) = header.split_once(':').ok_or("takes `name: value`")?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("agent-iam-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Cli { port, rate, closed: _, seconds, connections, path, headers, tokens } = cli;
    let fixed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let requests = match tokens {
        None => vec![loadgen::get_request(&path, &fixed)],
        Some(file) => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            let requests: Vec<Vec<u8>> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|token| {
                    let bearer = format!("Bearer {token}");
                    let mut with_token = fixed.clone();
                    with_token.push(("authorization", &bearer));
                    loadgen::get_request(&path, &with_token)
                })
                .collect();
            if requests.is_empty() {
                bail!("no tokens in {file}");
            }
            requests
        }
    };
    let plan = Plan { port, connections, rate, duration: Duration::from_secs_f64(seconds), limit: None };
    let report = loadgen::run(&plan, &requests)?;
    let mut json = report.json();
    json["sent"] = report.sent.into();
    json["distinct_requests"] = requests.len().into();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
