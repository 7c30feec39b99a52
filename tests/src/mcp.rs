//! MCP through the gateway with real components: the MCP test server of `tests/mcp/server.py` (the official MCP
//! Python SDK, installed by `make mcp-tools`) behind Envoy with the plugin on `envoy/mcp.yaml`, driven by the
//! SDK's own client (`tests/mcp/client.py`). Shared by `make demo` (its MCP part) and `tests/tests/e2e_mcp.rs`.
//!
//! Everything binds 127.0.0.1 only; the server process is stopped when its guard is dropped (and gets SIGKILL
//! if the thread that started it ends first, like Envoy in [`testbed::Envoy`]).

use crate::demo::{self, DemoKeys, ED25519_KID, ES256_KID, ISSUER, Ports, RESEARCH, TRADER};
use crate::python::{PythonProcess, Stop, Venv};
use crate::testbed::{self, Envoy};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The MCP endpoint's canonical URI in `envoy/mcp.yaml`: tokens must name it in `aud`.
pub const RESOURCE: &str = "https://gw.trading.example/mcp";
/// Where the plugin serves the endpoint's RFC 9728 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
/// The metadata URL 401s point at (`resource_metadata`).
pub const METADATA_URL: &str = "https://gw.trading.example/.well-known/oauth-protected-resource/mcp";
/// An agent outside the trading domain: it may list, and sees nothing to use.
pub const OUTSIDER: &str = "spiffe://partner.example/agent/bot";
/// The trader's account (its tokens' `account_id` claim).
pub const TRADER_ACCOUNT: &str = "acc-1";
/// The protocol generations the SDK speaks: the stateless one, and the initialize handshake with a session.
pub const PROTOCOLS: [&str; 2] = ["2026-07-28", "2025-11-25"];
/// The generation the demo speaks: the stateless one (the tests run the demo's scenario in both).
pub const DEMO_PROTOCOL: &str = "2026-07-28";
/// The tools of `tests/mcp/server.py`, in its order.
pub const SERVER_TOOLS: [&str; 4] = ["get_quote", "search_quotes", "place_order", "delete_account"];

/// The MCP template shipped in the repository: `envoy/mcp.yaml`.
pub fn template_path() -> PathBuf {
    agent_iam_host::workspace_root().join("envoy/mcp.yaml")
}

/// The Python with the MCP SDK.
const VENV: Venv = Venv { env_var: "MCP_PYTHON", make_target: "mcp-tools", what: "the MCP Python SDK is" };

/// The Python with the MCP SDK: `$MCP_PYTHON`, else `.venv/bin/python` in the workspace (`make mcp-tools`).
pub fn python() -> PathBuf {
    VENV.python()
}

fn script(name: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("tests/mcp").join(name)
}

/// The MCP test server (`tests/mcp/server.py`), stopped on drop.
pub struct McpServer {
    process: PythonProcess,
    port: u16,
}

impl McpServer {
    /// Starts `tests/mcp/server.py` on a free port with `flags` (e.g. `--json-response`), its stderr in
    /// `work_dir/mcp-server.log`, and waits for its `READY` line.
    pub fn start(work_dir: &Path, flags: &[&str]) -> Result<McpServer> {
        VENV.check()?;
        std::fs::create_dir_all(work_dir)?;
        let log_path = work_dir.join("mcp-server.log");
        let mut command = VENV.command(&script("server.py"));
        command.arg("0").args(flags);
        let (process, port) =
            PythonProcess::spawn(command, &log_path, Stop::Kill, "the MCP server", "READY", |line| {
                line.strip_prefix("READY http://127.0.0.1:")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|p| p.parse().ok())
            })?;
        Ok(McpServer { process, port })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its MCP endpoint, directly (not through the gateway).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The last `n` lines of its log (stderr).
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}

/// `envoy/mcp.yaml` with the generated JWKS, these ports (`upstream`: the MCP server's) and the `.wasm`.
pub fn render_config(jwks: &Value, ports: Ports, wasm: &Path) -> Result<String> {
    let template = std::fs::read_to_string(template_path()).context("reading envoy/mcp.yaml")?;
    demo::render_config(&template, jwks, ports, wasm).context("envoy/mcp.yaml")
}

/// A running MCP gateway: the MCP test server, and Envoy with the plugin on `envoy/mcp.yaml` in front of it.
/// Stopped on drop (Envoy first).
pub struct McpGateway {
    /// Envoy.
    pub envoy: Envoy,
    /// The MCP server behind it.
    pub server: McpServer,
    /// The ports in use (`upstream` is the server's).
    pub ports: Ports,
}

impl McpGateway {
    /// Starts the server and Envoy with these keys on free ports; files go to `work_dir`. Like every Envoy of
    /// the test bed, the gateway lives as long as the thread that started it.
    pub fn start(keys: &DemoKeys, work_dir: &Path) -> Result<McpGateway> {
        McpGateway::start_with(keys, work_dir, false)
    }

    /// [`McpGateway::start`], with `hold_headers`: the plugin's `mcp.hold_headers` and the Wasm filter's
    /// `allow_on_headers_stop_iteration`, so that the headers of an MCP request wait for the decision on its body.
    pub fn start_with(keys: &DemoKeys, work_dir: &Path, hold_headers: bool) -> Result<McpGateway> {
        let wasm = agent_iam_host::plugin_wasm_path();
        if !wasm.exists() {
            bail!("{} not found (run `make wasm`)", wasm.display());
        }
        let server = McpServer::start(work_dir, &[])?;
        let ports = Ports { upstream: server.port(), ..Ports::free()? };
        let mut config = render_config(&keys.jwks(), ports, &wasm)?;
        if hold_headers {
            config = demo::replace_once(
                &config,
                "failure_policy: FAIL_CLOSED\n",
                "failure_policy: FAIL_CLOSED\n                allow_on_headers_stop_iteration: true\n",
            )?;
            config = demo::replace_once(&config, "\"mcp\": {\n", "\"mcp\": {\"hold_headers\": true,\n")?;
        }
        let envoy = Envoy::start(&testbed::envoy_binary(), &config, ports.admin, work_dir)?;
        Ok(McpGateway { envoy, server, ports })
    }

    /// The MCP endpoint through the gateway.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.ports.listener)
    }
}

/// Tokens for the MCP endpoint, minted by the demo issuer.
#[derive(Clone)]
pub struct McpTokens {
    /// The trading agent, `account_id` [`TRADER_ACCOUNT`] (ES256).
    pub trader: String,
    /// The research agent (EdDSA).
    pub research: String,
    /// An agent of another domain ([`OUTSIDER`]).
    pub outsider: String,
    /// The trading agent with a token for the REST API (`aud` `trading-api`), not for the MCP resource.
    pub other_audience: String,
}

impl McpTokens {
    /// Mints every token; `now` in seconds since the epoch, valid for `ttl` seconds.
    pub fn mint(keys: &DemoKeys, now: i64, ttl: i64) -> McpTokens {
        let claims = |sub: &str, aud: &str| json!({"iss": ISSUER, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl, "account_id": TRADER_ACCOUNT});
        McpTokens {
            trader: keys.es256.sign_jwt(Some(ES256_KID), &claims(TRADER, RESOURCE)),
            research: keys.ed25519.sign_jwt(Some(ED25519_KID), &claims(RESEARCH, RESOURCE)),
            outsider: keys.es256.sign_jwt(Some(ES256_KID), &claims(OUTSIDER, RESOURCE)),
            other_audience: keys.es256.sign_jwt(Some(ES256_KID), &claims(TRADER, demo::AUDIENCE)),
        }
    }
}

/// What one run of the SDK's client reported.
#[derive(Debug, Clone)]
pub struct ClientRun {
    /// One line per action, the `connect` line first (without the summary).
    pub lines: Vec<Value>,
    /// The summary line: `requests`, `status_counts`, `unauthorized`, every `http` exchange.
    pub summary: Value,
    /// The client's stderr.
    pub stderr: String,
}

impl ClientRun {
    /// The line of action `i` (0: the first scripted action; the connect line is [`ClientRun::connect`]).
    pub fn action(&self, i: usize) -> &Value {
        self.lines.get(i + 1).unwrap_or(&Value::Null)
    }

    /// The connect line.
    pub fn connect(&self) -> &Value {
        self.lines.first().unwrap_or(&Value::Null)
    }

    /// Everything, for assertion messages.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.lines.iter().map(Value::to_string).collect();
        format!("{}\nsummary: {}\nstderr: {}", lines.join("\n"), self.summary, self.stderr)
    }
}

/// Runs `tests/mcp/client.py` against `url` with `protocol`, `token` and the scripted `actions` (a JSON
/// array, see the script's header), and collects its lines. Fails if it does not end within a minute.
pub fn run_client(url: &str, protocol: &str, token: Option<&str>, actions: &Value) -> Result<ClientRun> {
    run_client_with(url, protocol, token, &[], actions)
}

/// [`run_client`] with extra `Name: value` headers on every HTTP request the client sends.
pub fn run_client_with(
    url: &str,
    protocol: &str,
    token: Option<&str>,
    headers: &[&str],
    actions: &Value,
) -> Result<ClientRun> {
    VENV.check()?;
    let mut command = VENV.command(&script("client.py"));
    command.arg(url).args(["--protocol", protocol, "--timeout", "20"]);
    for header in headers {
        command.arg("--header").arg(header);
    }
    command.arg("--actions").arg(actions.to_string());
    // The token goes through the environment, not the command line.
    command.env_remove("MCP_TOKEN");
    if let Some(token) = token {
        command.env("MCP_TOKEN", token);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", python().display()))?;
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().context("no stdout")?));
    let stderr = read_all(Box::new(child.stderr.take().context("no stderr")?));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the MCP client did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("the MCP client exited with {status}:\n{stdout}\n{stderr}");
    }
    let mut lines = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        lines.push(serde_json::from_str::<Value>(line).with_context(|| format!("not JSON from the client: {line}"))?);
    }
    let summary = match lines.pop() {
        Some(s) if s["op"] == "summary" => s,
        _ => bail!("no summary line from the MCP client:\n{stdout}\n{stderr}"),
    };
    Ok(ClientRun { lines, summary, stderr })
}

/// The names listed in a list action's result (`tools`, `prompts`, `resources` or `resourceTemplates`).
pub fn listed(line: &Value) -> Vec<String> {
    let result = &line["result"];
    ["tools", "prompts", "resources", "resourceTemplates"]
        .iter()
        .find_map(|k| result[*k].as_array())
        .map(|a| a.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The HTTP statuses of the requests an action sent: its POSTs of JSON-RPC requests. The handshake generation's
/// `notifications/initialized`, GET event stream and closing DELETE run beside the first and last actions and
/// are left out.
pub fn statuses(line: &Value) -> Vec<u64> {
    let own = |e: &&Value| {
        let method = e["mcp_method"].as_str().or(e["body_method"].as_str()).unwrap_or("");
        e["method"] == "POST" && !method.starts_with("notifications/")
    };
    line["http"]
        .as_array()
        .map(|a| a.iter().filter(own).filter_map(|e| e["status"].as_u64()).collect())
        .unwrap_or_default()
}

/// The JSON-RPC error code the client surfaced, if the action failed with one.
pub fn error_code(line: &Value) -> Option<i64> {
    line["error"]["code"].as_i64()
}

/// What a step of the MCP scenario must come to.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A list answered 200 with exactly these names.
    Listed(&'static [&'static str]),
    /// A result (the call went through to the server).
    Result,
    /// Refused by the gateway: one HTTP exchange, 403, JSON-RPC error -31001.
    Refused,
}

/// One action of the MCP scenario.
pub struct McpStep {
    /// What the step shows.
    pub title: &'static str,
    /// The client action (see `tests/mcp/client.py`).
    pub action: Value,
    /// What must happen.
    pub expect: Expect,
}

/// One client session of the scenario: an agent, its token, its actions.
pub struct McpSession {
    /// Who, for the printout.
    pub who: &'static str,
    /// The bearer token.
    pub token: String,
    /// The actions, in order, in one client session.
    pub steps: Vec<McpStep>,
}

fn tool(name: &str, arguments: Value) -> Value {
    json!({"op": "call_tool", "name": name, "arguments": arguments})
}

/// The demo's MCP scenario: the research agent lists the tools (sees only its own), asks for a quote, is refused
/// an order; the trader orders for its own account, is refused another account's and an account deletion.
pub fn scenario(t: &McpTokens) -> Vec<McpSession> {
    let order = |account: &str| tool("place_order", json!({"account_id": account, "symbol": "ACME", "amount": 100}));
    vec![
        McpSession {
            who: "research agent, EdDSA",
            token: t.research.clone(),
            steps: vec![
                McpStep {
                    title: "Research agent lists the tools",
                    action: json!({"op": "list_tools"}),
                    expect: Expect::Listed(&["get_quote", "search_quotes"]),
                },
                McpStep {
                    title: "Research agent asks for a quote",
                    action: tool("get_quote", json!({"symbol": "ACME"})),
                    expect: Expect::Result,
                },
                McpStep {
                    title: "Research agent tries to place an order",
                    action: order(TRADER_ACCOUNT),
                    expect: Expect::Refused,
                },
            ],
        },
        McpSession {
            who: "trading agent, ES256, account_id acc-1",
            token: t.trader.clone(),
            steps: vec![
                McpStep {
                    title: "Trading agent lists the tools",
                    action: json!({"op": "list_tools"}),
                    expect: Expect::Listed(&["get_quote", "search_quotes", "place_order"]),
                },
                McpStep {
                    title: "Trading agent places an order for its own account",
                    action: order(TRADER_ACCOUNT),
                    expect: Expect::Result,
                },
                McpStep {
                    title: "Trading agent places an order for another account",
                    action: order("acc-2"),
                    expect: Expect::Refused,
                },
                McpStep {
                    title: "Trading agent tries to delete an account",
                    action: tool("delete_account", json!({"account_id": TRADER_ACCOUNT})),
                    expect: Expect::Refused,
                },
            ],
        },
    ]
}

/// What one step of the MCP scenario produced.
pub struct McpStepResult {
    /// The client's line for the action.
    pub line: Value,
    /// Whether the gateway let it through (a list or a result).
    pub allowed: bool,
    /// Whether it came to what the step expected.
    pub as_expected: bool,
}

/// Whether a client line is what `expect` asks for.
pub fn meets(line: &Value, expect: &Expect) -> bool {
    match expect {
        Expect::Listed(names) => line["ok"] == true && statuses(line) == [200] && listed(line) == *names,
        Expect::Result => line["ok"] == true && line["result"]["isError"] != true,
        Expect::Refused => line["ok"] == false && error_code(line) == Some(-31001) && statuses(line) == [403],
    }
}

/// Runs the scenario through the gateway at `url` with `protocol`, numbering the steps from `first`, printing
/// each action and what the client surfaced to `out`.
pub fn run_scenario(
    url: &str,
    protocol: &str,
    sessions: &[McpSession],
    first: usize,
    out: &mut dyn Write,
) -> Result<Vec<McpStepResult>> {
    let results = run_sessions(url, protocol, sessions)?;
    print_steps(sessions, &results, first, out)?;
    Ok(results)
}

/// Runs the scenario through the gateway at `url` with `protocol`, one client session per [`McpSession`]; one
/// result per step, in order.
pub fn run_sessions(url: &str, protocol: &str, sessions: &[McpSession]) -> Result<Vec<McpStepResult>> {
    let mut results = Vec::new();
    for session in sessions {
        let actions: Vec<Value> = session.steps.iter().map(|s| s.action.clone()).collect();
        let run = run_client(url, protocol, Some(&session.token), &Value::Array(actions))?;
        if run.connect()["ok"] != true {
            bail!("the MCP client could not connect:\n{}", run.dump());
        }
        for (i, step) in session.steps.iter().enumerate() {
            let line = run.action(i).clone();
            let as_expected = meets(&line, &step.expect);
            let allowed = line["ok"] == true;
            results.push(McpStepResult { line, allowed, as_expected });
        }
    }
    Ok(results)
}

/// Prints the steps of `sessions` and their `results` (from [`run_sessions`]) in the demo's style, numbered
/// from `first`.
pub fn print_steps(
    sessions: &[McpSession],
    results: &[McpStepResult],
    first: usize,
    out: &mut dyn Write,
) -> Result<()> {
    let steps = sessions.iter().flat_map(|s| s.steps.iter().map(move |step| (s.who, step)));
    for (n, ((who, step), result)) in steps.zip(results).enumerate() {
        writeln!(out, "{:>2}. {}", first + n, step.title)?;
        writeln!(out, "    {}  [token: {who}]", describe_action(&step.action))?;
        let mark = if result.as_expected { "" } else { "   <-- UNEXPECTED" };
        writeln!(out, "    => {}{mark}", describe(&result.line))?;
    }
    Ok(())
}

/// The action as the JSON-RPC method and what it names.
fn describe_action(action: &Value) -> String {
    let op = action["op"].as_str().unwrap_or("?");
    match op {
        "call_tool" => format!("tools/call {} {}", action["name"].as_str().unwrap_or("?"), action["arguments"]),
        "get_prompt" => format!("prompts/get {}", action["name"].as_str().unwrap_or("?")),
        "read_resource" => format!("resources/read {}", action["uri"].as_str().unwrap_or("?")),
        "list_resource_templates" => "resources/templates/list".to_owned(),
        other => other.strip_prefix("list_").map_or_else(|| other.to_owned(), |kind| format!("{kind}/list")),
    }
}

/// One line: what the client surfaced.
pub fn describe(line: &Value) -> String {
    let status = statuses(line).last().map_or_else(|| "-".to_owned(), u64::to_string);
    if line["ok"] == true {
        let result = &line["result"];
        if result.get("tools").is_some() {
            let names = listed(line);
            let hidden: Vec<&str> = SERVER_TOOLS.iter().copied().filter(|t| !names.iter().any(|n| n == t)).collect();
            return format!("{status} listed {} (filtered out: {})", names.join(", "), hidden.join(", "));
        }
        if let Some(names) = ["prompts", "resources", "resourceTemplates"].iter().find(|k| result.get(**k).is_some()) {
            return format!("{status} {names}: {}", listed(line).join(", "));
        }
        let mut content = result["structuredContent"].clone();
        let agent = content["forwarded"]["agent"].as_str().map(str::to_owned);
        if let Some(o) = content.as_object_mut() {
            o.remove("forwarded");
        }
        match agent {
            Some(agent) => format!("{status} result {content}; the server saw x-agent-iam-agent: {agent}"),
            None => format!("{status} result {content}"),
        }
    } else {
        let e = &line["error"];
        let data = &e["data"];
        // The gateway's explanation, as in the REST part's refusals.
        let why = data["error_description"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
        format!("{status} JSON-RPC error {}: {}{why}", e["code"], e["message"].as_str().unwrap_or(""))
    }
}
