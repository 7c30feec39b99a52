//! `agent-iam playground`: when the playground was built (`make playground-build`) before `agent-iam`, it serves
//! the page and the engine's `.wasm` on 127.0.0.1 with their content types, GET only, and nothing but the embedded
//! files; when it was not, it exits 2 telling to build it first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The playground `agent-iam` embedded when it was built (build.rs): `$AGENT_IAM_EMBED_PLAYGROUND`, else the
/// repository's `target/playground/`.
fn built() -> bool {
    let dir = std::env::var_os("AGENT_IAM_EMBED_PLAYGROUND")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/playground"), PathBuf::from);
    dir.join("index.html").is_file()
}

/// `agent-iam playground`, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `agent-iam playground` and reads the port from the URL it prints.
fn start() -> (Server, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-iam"))
        .arg("playground")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("agent-iam playground printed no URL within 30 s");
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    (server, port)
}

/// One HTTP/1.1 request as written; the status, the headers (names lowercase) and the body.
fn request(port: u16, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

fn get(port: u16, target: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    request(port, &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn serves_the_page_and_the_wasm_with_their_content_types_or_says_to_build_it() {
    if !built() {
        let out = Command::new(env!("CARGO_BIN_EXE_agent-iam")).arg("playground").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("make playground-build"), "{stderr}");
        return;
    }
    let (_server, port) = start();

    let (status, headers, body) = get(port, "/");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("id=\"decision\"") && html.contains("app.js"), "{html}");
    assert_eq!(header(&headers, "content-length"), Some(body.len().to_string().as_str()));

    let (status, headers, body) = get(port, "/pkg/agent_iam_playground_bg.wasm");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert!(body.starts_with(b"\0asm"), "not a wasm module");

    for (target, content_type) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/pkg/agent_iam_playground.js", "text/javascript; charset=utf-8"),
        ("/app.js?v=2", "text/javascript; charset=utf-8"),
    ] {
        let (status, headers, _) = get(port, target);
        assert_eq!((status, header(&headers, "content-type")), (200, Some(content_type)), "{target}");
    }

    // Nothing outside the embedded files, however it is spelt.
    for target in [
        "/../Cargo.toml",
        "/pkg/../index.html",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "//etc/passwd",
        "/pkg/",
        "/no-such-file",
        "http://127.0.0.1/index.html",
    ] {
        let (status, _, _) = get(port, target);
        assert_eq!(status, 404, "{target}");
    }

    // GET only.
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let (status, headers, _) =
            request(port, &format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!((status, header(&headers, "allow")), (405, Some("GET")), "{method}");
    }
    let (status, _, _) = request(port, "GET /\r\n\r\n");
    assert_eq!(status, 400);
}
