//! `agent-iam playground`: serves the policy playground (the page and the engine's `.wasm`, embedded when
//! `agent-iam` was built, see build.rs) on 127.0.0.1 with a small HTTP/1.1 server: GET only, each answer's
//! content type from its file name, and only the embedded files — a request names one of them exactly or gets
//! 404, so nothing of the file system is ever reachable.

use crate::Usage;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

include!(concat!(env!("OUT_DIR"), "/playground.rs"));

/// Where the embedded playground was read from when `agent-iam` was built.
pub const EMBEDDED_FROM: &str = env!("AGENT_IAM_PLAYGROUND_FROM");

/// Options of `playground`.
#[derive(clap::Args)]
pub struct Args {
    /// The port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    port: Option<u16>,
}

/// Whether a playground was embedded at build time.
pub fn embedded() -> bool {
    !FILES.is_empty()
}

/// The message when none was.
pub fn not_built() -> String {
    format!(
        "the playground is not built into this agent-iam ({EMBEDDED_FROM} had no index.html when it was built): run \
         `make playground-build` first, then build agent-iam again (`make install`, or `cargo build -p agent-iam-cli`); \
         or run `make playground` in the repository"
    )
}

/// Serves the playground until the process is stopped (Ctrl-C).
pub fn run(args: Args) -> Result<bool, Usage> {
    if !embedded() {
        return Err(Usage(not_built()));
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port.unwrap_or(0)))
        .map_err(|e| Usage(format!("binding 127.0.0.1:{}: {e}", args.port.unwrap_or(0))))?;
    let port = listener.local_addr().map_err(|e| Usage(e.to_string()))?.port();
    println!("agent-iam playground: http://127.0.0.1:{port}/ (Ctrl-C to stop)");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
            Err(e) => eprintln!("agent-iam playground: accepting a connection: {e}"),
        }
    }
    Ok(true)
}

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// Answers one request on the connection, then closes it.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take((MAX_HEAD + 1 - head.len()) as u64).read_until(b'\n', &mut line)?;
        head.extend_from_slice(&line);
        if n == 0 || line == b"\r\n" || line == b"\n" || head.len() > MAX_HEAD {
            break;
        }
    }
    let mut stream = stream;
    if head.len() > MAX_HEAD {
        return respond(
            &mut stream,
            431,
            "Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            b"too large\n",
            &[],
        );
    }
    let text = String::from_utf8_lossy(&head);
    let request_line = text.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(&mut stream, 400, "Bad Request", "text/plain; charset=utf-8", b"bad request\n", &[]);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return respond(&mut stream, 400, "Bad Request", "text/plain; charset=utf-8", b"bad request\n", &[]);
    }
    if method != "GET" {
        let allow = [("Allow", "GET")];
        return respond(&mut stream, 405, "Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n", &allow);
    }
    match resolve(target) {
        Some((name, body)) => respond(&mut stream, 200, "OK", content_type(name), body, &[]),
        None => respond(&mut stream, 404, "Not Found", "text/plain; charset=utf-8", b"not found\n", &[]),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// The embedded file a request target names: `/` is `index.html`; the query is ignored; anything else must be
/// exactly `/` + an embedded file's path (no percent-decoding, no dot segments), else `None`.
pub fn resolve(target: &str) -> Option<(&'static str, &'static [u8])> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let rel = path.strip_prefix('/')?;
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.split('/').any(|s| s.is_empty() || s == "." || s == "..") || rel.contains(['\\', '%']) {
        return None;
    }
    FILES.iter().find(|(name, _)| *name == rel).map(|(name, body)| (*name, *body))
}

/// The content type of a file, from its name.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("pkg/agent_iam_playground.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("pkg/agent_iam_playground_bg.wasm"), "application/wasm");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn only_exact_names_of_embedded_files_resolve() {
        for target in [
            "",
            "index.html",
            "/..",
            "/../Cargo.toml",
            "/pkg/../index.html",
            "/./index.html",
            "//index.html",
            "/%2e%2e/Cargo.toml",
            "/pkg/",
            "/pkg\\..\\index.html",
            "/no-such-file",
        ] {
            assert!(resolve(target).is_none(), "{target}");
        }
        if embedded() {
            assert_eq!(resolve("/").map(|(n, _)| n), Some("index.html"));
            assert_eq!(resolve("/?s=1").map(|(n, _)| n), Some("index.html"));
            assert_eq!(resolve("/index.html#s=x").map(|(n, _)| n), Some("index.html"));
            assert!(resolve("/app.js").is_some());
        } else {
            assert!(resolve("/").is_none());
            assert!(not_built().contains("make playground-build"));
        }
    }
}
