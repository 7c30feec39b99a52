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
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("agent-iam-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut port, mut rate, mut closed, mut seconds, mut connections) = (None, None, false, 10.0, 16);
    let (mut path, mut headers, mut tokens) = ("/".to_owned(), Vec::new(), None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = Some(value()?.parse::<u16>().context("--port")?),
            "--rate" => rate = Some(value()?.parse::<f64>().context("--rate")?),
            "--closed" => closed = true,
            "--seconds" => seconds = value()?.parse::<f64>().context("--seconds")?,
            "--connections" => connections = value()?.parse::<usize>().context("--connections")?,
            "--path" => path = value()?,
            "--header" => {
                let header = value()?;
                let (name, v) = header.split_once(':').context("--header takes `name: value`")?;
                headers.push((name.trim().to_owned(), v.trim().to_owned()));
            }
            "--tokens" => tokens = Some(value()?),
            "--help" | "-h" => {
                println!(
                    "agent-iam-loadgen --port P (--rate R | --closed) [--seconds S] [--connections N] [--path P] \
                     [--header 'name: value'] [--tokens FILE]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let port = port.context("--port is required")?;
    if closed == rate.is_some() {
        bail!("give either --rate R (open loop) or --closed");
    }
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
    let plan = Plan { port, connections, rate, duration: Duration::from_secs_f64(seconds) };
    let report = loadgen::run(&plan, &requests)?;
    let mut json = report.json();
    json["sent"] = report.sent.into();
    json["distinct_requests"] = requests.len().into();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
