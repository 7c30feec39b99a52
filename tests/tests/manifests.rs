//! The Kubernetes manifests in `deploy/` and the OCI image layout of `deploy/oci/build_layout.py`.
//!
//! Each manifest is read as the Kubernetes API server reads it: by `kubectl` (`annotate --local`, offline),
//! whose YAML library (sigs.k8s.io/yaml, go-yaml v2) reads YAML 1.1, where a plain `y` key is the boolean
//! `true` and `on` a boolean. Every YAML file we ship and every YAML block of the docs must read the same in
//! YAML 1.1 as in YAML 1.2. The manifests are validated against the published CRD schemas, vendored in
//! `deploy/crds/` with their validator (`.venv`, `make crd-tools`), and the fields we rely on are checked
//! (Istio `WasmPlugin` extensions.istio.io/v1alpha1, `ServiceEntry`/`DestinationRule` networking.istio.io/v1,
//! Envoy Gateway `EnvoyExtensionPolicy` gateway.envoyproxy.io/v1alpha1). Then the crucial check: each
//! embedded plugin configuration (Istio's `pluginConfig`, Envoy Gateway's `config`), as Kubernetes stores it
//! and the control plane hands it over as JSON, is configured into the real `.wasm` in the wasmtime host and
//! must be accepted; with the placeholder keys swapped for test keys, tokens go through it and get the
//! decisions the policy says.
//!
//! Needs the plugin (`make wasm`), kubectl (`$KUBECTL`, else on the PATH), the validator's Python packages
//! (`make crd-tools`: `$CRD_PYTHON`, else `.venv/bin/python`) and python3 (for the layout script). A missing
//! tool fails the tests; none is skipped.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use agent_iam_host::{Outcome, Vm};
use agent_iam_tests::HOST;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_900_000_000;
const RESEARCH: &str = "spiffe://trading.example/agent/research";
const TRADER: &str = "spiffe://trading.example/agent/trader";
const ALICE: &str = "user:alice@trading.example";
const STS: &str = "https://sts.trading.example";

/// The key that stands in for the SPIRE bundle's JWT key.
static SPIRE_KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [7; 32]).unwrap());
/// The key that stands in for the token service's.
static STS_KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_seed(Algorithm::ES256, [8; 32]).unwrap());

// ---------------------------------------------------------------------------------------------
// Reading manifests as Kubernetes does
// ---------------------------------------------------------------------------------------------

fn deploy(rel: &str) -> PathBuf {
    agent_iam_host::workspace_root().join("deploy").join(rel)
}

/// The annotation `kubectl annotate` is made to add (it prints nothing without a change); removed again.
const READ_ANNOTATION: &str = "agent-iam.invalid/read-by-kubectl";

fn kubectl() -> OsString {
    std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into())
}

/// Every object of the YAML file at `path`, as the Kubernetes API server stores it (JSON), read by kubectl
/// offline: `kubectl annotate --local -f FILE k=v -o json` parses with sigs.k8s.io/yaml (YAML 1.1), as the
/// API server and `kubectl apply` do. kubectl prints one JSON object per document (older versions a `List`
/// of them); a `List` is flattened. Err: what kubectl said about a file it could not read.
fn kubectl_read(path: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl())
        .args(["annotate", "--local", "-o", "json", "-f"])
        .arg(path)
        .arg(format!("{READ_ANNOTATION}=1"))
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({:?}): {e}\nthe manifest tests read YAML as Kubernetes does, with \
                 `kubectl annotate --local` (no cluster needed): install kubectl, or set KUBECTL to its path",
                kubectl()
            )
        });
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut objects = Vec::new();
    for v in serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>() {
        let v = v.map_err(|e| format!("kubectl printed something that is not JSON: {e}"))?;
        if v["kind"] == "List" && v["items"].is_array() {
            objects.extend(v["items"].as_array().unwrap().iter().cloned());
        } else {
            objects.push(v);
        }
    }
    for o in &mut objects {
        let metadata = o["metadata"].as_object_mut().ok_or("kubectl printed an object without metadata")?;
        let annotations = metadata.get_mut("annotations").and_then(Value::as_object_mut);
        let annotations = annotations.ok_or("kubectl printed an object without the annotation it was asked for")?;
        annotations.remove(READ_ANNOTATION).ok_or("kubectl did not add the annotation")?;
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    Ok(objects)
}

/// Every YAML document of a file in `deploy/`, as the Kubernetes API server stores it.
fn documents(rel: &str) -> Vec<Value> {
    let path = deploy(rel);
    kubectl_read(&path).unwrap_or_else(|e| panic!("kubectl cannot read {}: {e}", path.display()))
}

/// Every YAML document of `text` as a YAML 1.2 (core schema) parser reads it: serde_norway.
fn yaml12_documents(text: &str) -> Result<Vec<Value>, String> {
    serde_norway::Deserializer::from_str(text).map(|doc| Value::deserialize(doc).map_err(|e| e.to_string())).collect()
}

/// The one document of `kind` in `docs`, checked to carry exactly `api_version`.
fn only<'a>(docs: &'a [Value], api_version: &str, kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    assert_eq!(found[0]["apiVersion"], api_version, "{kind}: apiVersion");
    assert!(found[0]["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{kind}: metadata.name");
    found[0]
}

/// The object's keys are all among `allowed` (field names as the published CRD spells them).
#[track_caller]
fn assert_keys_within(what: &str, v: &Value, allowed: &[&str]) {
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: expected an object, got {v}"));
    let unknown: Vec<&String> = obj.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "{what}: fields the CRD does not have: {unknown:?} (allowed: {allowed:?})");
}

#[track_caller]
fn assert_str(v: &Value, want: &str) {
    assert_eq!(v.as_str(), Some(want), "got {v}");
}

/// Fields of the Istio `WasmPlugin` spec (extensions/v1alpha1/wasm.proto, JSON names).
const WASM_PLUGIN_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
];

/// What every agent-iam `WasmPlugin` must say, whatever it is attached to.
fn check_wasm_plugin(p: &Value) {
    assert_str(&p["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_str(&p["kind"], "WasmPlugin");
    let spec = &p["spec"];
    assert_keys_within("WasmPlugin.spec", spec, WASM_PLUGIN_FIELDS);
    assert_str(&spec["phase"], "AUTHN");
    assert_str(&spec["failStrategy"], "FAIL_CLOSE");
    assert_str(&spec["pluginName"], "agent-iam");
    assert!(spec["pluginConfig"].is_object(), "pluginConfig must be an object (a google.protobuf.Struct)");
    assert!(
        spec.get("selector").is_none() || spec.get("targetRefs").is_none(),
        "a WasmPlugin has selector or targetRefs, not both"
    );
    if let Some(policy) = spec.get("imagePullPolicy") {
        assert!(["IfNotPresent", "Always"].contains(&policy.as_str().unwrap_or("")), "imagePullPolicy {policy}");
    }
    if let Some(sha) = spec.get("sha256") {
        let sha = sha.as_str().unwrap_or("");
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    check_placeholder_keys("pluginConfig", &spec["pluginConfig"]);
}

/// Every inline key in a configuration is the placeholder of `envoy/demo.yaml`, which nobody holds the
/// private key of: the manifests never ship a key that could verify a token.
fn check_placeholder_keys(what: &str, config: &Value) {
    let placeholder: Value = serde_json::from_str(agent_iam_tests::demo::PLACEHOLDER_JWKS).unwrap();
    let placeholder = &placeholder["keys"][0];
    let mut inline = 0;
    for (i, issuer) in config["issuers"].as_array().expect("issuers").iter().enumerate() {
        for key in issuer["jwks"]["keys"].as_array().into_iter().flatten() {
            inline += 1;
            for member in ["kty", "crv", "x", "y"] {
                assert_eq!(
                    key[member], placeholder[member],
                    "{what}: issuers[{i}] key {member} is not the placeholder"
                );
            }
        }
    }
    assert!(inline > 0, "{what}: expected at least one inline (placeholder) key");
}

/// `config` with the keys of issuer `index` replaced by `key` (kid kept, `use` kept).
fn with_key(config: &Value, index: usize, key: &SigningKey) -> Value {
    let mut config = config.clone();
    let keys = config["issuers"][index]["jwks"]["keys"].as_array_mut().expect("inline keys");
    assert_eq!(keys.len(), 1);
    let mut jwk = key.public_jwk(keys[0]["kid"].as_str());
    if let Some(usage) = keys[0].get("use") {
        jwk["use"] = usage.clone();
    }
    keys[0] = jwk;
    config
}

// ---------------------------------------------------------------------------------------------
// Running configurations through the plugin
// ---------------------------------------------------------------------------------------------

/// A VM configured with `config` as JSON, as Istio and Envoy Gateway hand it over; `clusters` exist.
fn start(config: &Value, clusters: &[&str]) -> anyhow::Result<Vm> {
    HOST.vm()
        .plugin_config(serde_json::to_vec(config).unwrap())
        .clusters(clusters.iter().copied())
        .time(UNIX_EPOCH + Duration::from_secs(NOW))
        .start()
}

fn svid(sub: &str, aud: &str) -> String {
    SPIRE_KEY.sign_jwt(Some("spire-placeholder"), &json!({"sub": sub, "aud": aud, "iat": NOW - 10, "exp": NOW + 300}))
}

/// A token-exchange token from the token service: `ALICE` with `actor` acting for her.
fn exchanged(actor: &str, at_jwt: bool, scope: &str) -> String {
    let mut claims = json!({"iss": STS, "aud": "trading-api", "sub": ALICE, "act": {"sub": actor},
                            "scope": scope, "iat": NOW - 10, "exp": NOW + 300});
    if at_jwt {
        claims["client_id"] = json!("trading-agents");
        claims["jti"] = json!("b3f1c2d4");
    }
    let typ = if at_jwt { "at+jwt" } else { "JWT" };
    STS_KEY.sign_jwt_with_header(&json!({"alg": "ES256", "typ": typ, "kid": "sts-placeholder"}), &claims)
}

fn send(vm: &mut Vm, method: &str, path: &str, token: &str) -> Outcome {
    vm.request()
        .method(method)
        .path(path)
        .authority("api.trading.example")
        .header("authorization", &format!("Bearer {token}"))
        .send()
}

#[track_caller]
fn assert_allowed(o: &Outcome, rule: &str, agent: &str, subject: &str) {
    assert!(o.is_allowed(), "expected the request to be forwarded: {o:#?}");
    assert_eq!(o.header("x-agent-iam-rule"), Some(rule), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-agent"), Some(agent), "{o:#?}");
    assert_eq!(o.header("x-agent-iam-subject"), Some(subject), "{o:#?}");
}

#[track_caller]
fn assert_denied(o: &Outcome, status: u16, rule: Option<&str>) {
    assert_eq!(o.status(), Some(status), "{o:#?}");
    if let Some(rule) = rule {
        assert_eq!(o.body_json()["rule"], rule, "{o:#?}");
    }
}

/// The configuration as written (placeholder keys) is accepted, and a typo in it is rejected with its
/// path: the plugin really validates what the manifest embeds.
fn assert_accepted_as_written(config: &Value, clusters: &[&str]) {
    let vm =
        start(config, clusters).unwrap_or_else(|e| panic!("the plugin rejected the manifest's configuration: {e:#}"));
    let issuers = config["issuers"].as_array().unwrap().len();
    let rules = config["policy"]["rules"].as_array().unwrap().len();
    let version = config["policy"]["version"].as_str().unwrap();
    let accepted = format!("configuration accepted ({issuers} issuer(s), {rules} rule(s), policy version {version})");
    assert!(vm.logs_text().contains(&accepted), "expected {accepted:?} in\n{}", vm.logs_text());
    assert!(!vm.logs_text().contains("policy warning"), "policy warnings:\n{}", vm.logs_text());
    vm.assert_healthy();

    let mut typo = config.clone();
    let issuer = typo["issuers"][0].as_object_mut().unwrap();
    let audiences = issuer.remove("audiences").unwrap();
    issuer.insert("audience".into(), audiences);
    let err = start(&typo, clusters).err().expect("a configuration with a typo must be rejected");
    assert!(format!("{err:#}").contains("issuers[0].audience"), "{err:#}");
}

// ---------------------------------------------------------------------------------------------
// Istio
// ---------------------------------------------------------------------------------------------

#[test]
fn istio_sidecar_wasmplugin_has_the_fields_we_rely_on() {
    let docs = documents("istio/wasmplugin.yaml");
    assert_eq!(docs.len(), 3, "WasmPlugin, ServiceEntry, DestinationRule");
    let plugin = only(&docs, "extensions.istio.io/v1alpha1", "WasmPlugin");
    check_wasm_plugin(plugin);
    let spec = &plugin["spec"];
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"), "url {}", spec["url"]);
    assert_keys_within("selector", &spec["selector"], &["matchLabels"]);
    assert_str(&spec["selector"]["matchLabels"]["app"], "trading-api");
    assert!(spec["selector"]["matchLabels"].as_object().unwrap().values().all(Value::is_string));
    let matches = spec["match"].as_array().expect("match is a list");
    assert_eq!(matches.len(), 1);
    assert_keys_within("match[0]", &matches[0], &["mode", "ports"]);
    assert_str(&matches[0]["mode"], "SERVER");
    assert_keys_within("match[0].ports[0]", &matches[0]["ports"][0], &["number"]);
    assert_eq!(matches[0]["ports"][0]["number"], 8080);

    // remote_jwks names the cluster Istio makes of the ServiceEntry's host and port, with TLS originated.
    let remote = &spec["pluginConfig"]["issuers"][0]["remote_jwks"];
    let cluster = remote["cluster"].as_str().expect("the SPIFFE issuer fetches its keys");
    let entry = only(&docs, "networking.istio.io/v1", "ServiceEntry");
    let host = entry["spec"]["hosts"][0].as_str().unwrap();
    let port = &entry["spec"]["ports"][0]["number"];
    assert_eq!(cluster, format!("outbound|{port}||{host}"));
    assert_str(&remote["authority"], host);
    assert_str(&entry["spec"]["location"], "MESH_EXTERNAL");
    assert_str(&entry["spec"]["resolution"], "DNS");
    let rule = only(&docs, "networking.istio.io/v1", "DestinationRule");
    assert_str(&rule["spec"]["host"], host);
    let settings = &rule["spec"]["trafficPolicy"]["portLevelSettings"][0];
    assert_eq!(&settings["port"]["number"], port);
    assert_str(&settings["tls"]["mode"], "SIMPLE");
    assert_str(&settings["tls"]["sni"], host);
    for doc in &docs {
        assert_str(&doc["metadata"]["namespace"], "trading");
    }
}

#[test]
fn istio_sidecar_plugin_config_is_accepted_and_decides_as_written() {
    let docs = documents("istio/wasmplugin.yaml");
    let config = only(&docs, "extensions.istio.io/v1alpha1", "WasmPlugin")["spec"]["pluginConfig"].clone();
    let cluster = config["issuers"][0]["remote_jwks"]["cluster"].as_str().unwrap().to_string();
    assert_accepted_as_written(&config, &[&cluster]);

    // The token service's placeholder swapped for a test key; the SPIFFE keys come through the cluster.
    let mut vm = start(&with_key(&config, 1, &STS_KEY), &[&cluster]).unwrap_or_else(|e| panic!("{e:#}"));
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1, "{callouts:#?}");
    let fetch = &callouts[0];
    assert_eq!(fetch.cluster, "outbound|443||spire-oidc.trading.example");
    assert_eq!(fetch.header(":path"), Some("/keys"));
    assert_eq!(fetch.header(":authority"), Some("spire-oidc.trading.example"));
    let bundle = json!({"keys": [SPIRE_KEY.public_jwk(Some("spire-placeholder"))]});
    vm.respond(fetch.token, 200, &[("content-type", "application/json")], bundle.to_string().as_bytes());

    let o = send(&mut vm, "GET", "/quotes/ACME", &svid(RESEARCH, "trading-api"));
    assert_allowed(&o, "agents-read-quotes", RESEARCH, RESEARCH);
    // Delegation: the trader acting for Alice, through the token service.
    let o = send(&mut vm, "POST", "/orders", &exchanged(TRADER, true, "orders:write"));
    assert_allowed(&o, "trader-orders-for-a-person", TRADER, ALICE);
    assert_eq!(o.header("x-agent-iam-chain"), Some(TRADER));
    // Without the scope, no rule allows; on its own authority, the deny rule answers; admin is denied.
    assert_denied(&send(&mut vm, "POST", "/orders", &exchanged(TRADER, true, "quotes:read")), 403, None);
    assert_denied(&send(&mut vm, "POST", "/orders", &svid(TRADER, "trading-api")), 403, Some("no-undelegated-orders"));
    assert_denied(&send(&mut vm, "GET", "/admin/users", &svid(TRADER, "trading-api")), 403, Some("no-admin"));
    // The at+jwt profile is enforced: a plain JWT from the token service is refused.
    assert_denied(&send(&mut vm, "POST", "/orders", &exchanged(TRADER, false, "orders:write")), 401, None);
    // Wrong audience, and a key that is not the bundle's.
    assert_denied(&send(&mut vm, "GET", "/quotes/ACME", &svid(RESEARCH, "other-api")), 401, None);
    assert_denied(
        &send(
            &mut vm,
            "GET",
            "/quotes/ACME",
            &STS_KEY.sign_jwt(
                Some("spire-placeholder"),
                &json!({"sub": RESEARCH, "aud": "trading-api", "iat": NOW - 10, "exp": NOW + 300}),
            ),
        ),
        401,
        None,
    );
    vm.assert_healthy();
}

#[test]
fn istio_gateway_wasmplugin_attaches_by_target_ref_and_its_config_is_accepted() {
    let docs = documents("istio/wasmplugin-gateway.yaml");
    assert_eq!(docs.len(), 1);
    let plugin = only(&docs, "extensions.istio.io/v1alpha1", "WasmPlugin");
    check_wasm_plugin(plugin);
    let spec = &plugin["spec"];
    assert!(spec.get("selector").is_none());
    let refs = spec["targetRefs"].as_array().expect("targetRefs is a list");
    assert_eq!(refs.len(), 1);
    assert_keys_within("targetRefs[0]", &refs[0], &["group", "kind", "name", "namespace"]);
    assert_str(&refs[0]["group"], "gateway.networking.k8s.io");
    assert_str(&refs[0]["kind"], "Gateway");
    let url = spec["url"].as_str().unwrap();
    assert!(url.starts_with("file:///") && url.ends_with(".wasm"), "url {url}");

    let config = spec["pluginConfig"].clone();
    assert_accepted_as_written(&config, &[]);
    let mut vm = start(&with_key(&config, 0, &SPIRE_KEY), &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let o = send(&mut vm, "GET", "/quotes/ACME", &svid(RESEARCH, "trading-edge"));
    assert_allowed(&o, "agents-read-quotes", RESEARCH, RESEARCH);
    assert_denied(&send(&mut vm, "GET", "/admin/users", &svid(RESEARCH, "trading-edge")), 403, Some("no-admin"));
    assert_denied(&send(&mut vm, "POST", "/orders", &svid(TRADER, "trading-edge")), 403, None);
    // An agent of another trust domain cannot be vouched for by this bundle.
    assert_denied(
        &send(&mut vm, "GET", "/quotes/ACME", &svid("spiffe://evil.example/agent/x", "trading-edge")),
        401,
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Envoy Gateway
// ---------------------------------------------------------------------------------------------

#[test]
fn envoy_gateway_extension_policy_has_the_fields_we_rely_on_and_its_config_is_accepted() {
    let docs = documents("envoy-gateway/envoyextensionpolicy.yaml");
    assert_eq!(docs.len(), 1);
    let policy = only(&docs, "gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy");
    let spec = &policy["spec"];
    // api/v1alpha1/envoyextensionypolicy_types.go: PolicyTargetReferences inline, then the extensions.
    assert_keys_within(
        "EnvoyExtensionPolicy.spec",
        spec,
        &["targetRef", "targetRefs", "targetSelectors", "mergeType", "wasm", "extProc", "lua", "dynamicModule"],
    );
    let refs = spec["targetRefs"].as_array().expect("targetRefs is a list");
    assert_eq!(refs.len(), 1);
    assert_keys_within("targetRefs[0]", &refs[0], &["group", "kind", "name", "sectionName"]);
    assert_str(&refs[0]["group"], "gateway.networking.k8s.io");
    assert_str(&refs[0]["kind"], "HTTPRoute");
    assert_str(&refs[0]["name"], "trading-api");

    let wasm = spec["wasm"].as_array().expect("wasm is a list");
    assert_eq!(wasm.len(), 1);
    let wasm = &wasm[0];
    assert_keys_within("wasm[0]", wasm, &["name", "rootID", "code", "config", "failOpen", "env"]);
    assert_str(&wasm["rootID"], "agent-iam");
    assert_eq!(wasm["failOpen"], false, "failOpen must be written out as false");
    let code = &wasm["code"];
    assert_keys_within("wasm[0].code", code, &["type", "http", "image", "pullPolicy"]);
    assert_str(&code["type"], "Image");
    assert!(code.get("http").is_none(), "type Image has image and no http");
    assert_keys_within("wasm[0].code.image", &code["image"], &["url", "sha256", "pullSecretRef", "tls"]);
    let url = code["image"]["url"].as_str().unwrap();
    assert!(!url.contains("://"), "Envoy Gateway image urls have no scheme: {url}");
    let (repository, tag) = url.rsplit_once(':').expect("registry/repository:tag");
    assert!(repository.contains('/') && tag == env!("CARGO_PKG_VERSION"), "url {url}");
    assert!(["IfNotPresent", "Always"].contains(&code["pullPolicy"].as_str().unwrap()));

    let config = wasm["config"].clone();
    check_placeholder_keys("config", &config);
    assert_accepted_as_written(&config, &[]);

    let config = with_key(&with_key(&config, 0, &SPIRE_KEY), 1, &STS_KEY);
    let mut vm = start(&config, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_allowed(
        &send(&mut vm, "GET", "/quotes/ACME", &svid(RESEARCH, "trading-api")),
        "agents-read-quotes",
        RESEARCH,
        RESEARCH,
    );
    let o = send(&mut vm, "POST", "/orders", &exchanged(TRADER, false, "orders:write"));
    assert_allowed(&o, "trader-orders-for-a-person", TRADER, ALICE);
    assert_denied(&send(&mut vm, "POST", "/orders", &svid(TRADER, "trading-api")), 403, None);
    assert_denied(&send(&mut vm, "POST", "/orders", &exchanged(RESEARCH, false, "orders:write")), 403, None);
    assert_denied(&send(&mut vm, "GET", "/admin/users", &exchanged(TRADER, false, "")), 403, Some("no-admin"));
}

#[test]
fn kubernetes_manifests_stay_out_of_envoy_dir() {
    // tests/tests/e2e.rs validates every envoy/*.yaml with `envoy --mode validate`; manifests live in deploy/.
    let root = agent_iam_host::workspace_root();
    for entry in std::fs::read_dir(root.join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("kind: WasmPlugin") && !text.contains("kind: EnvoyExtensionPolicy"),
                "{} is a Kubernetes manifest: put it under deploy/",
                path.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// YAML 1.1 (Kubernetes) against YAML 1.2, in every YAML file we ship and every YAML block of the docs
// ---------------------------------------------------------------------------------------------

/// A YAML text we ship: a file, or a ```yaml block of a Markdown file (`name` says where).
struct YamlSource {
    name: String,
    text: String,
}

/// Every YAML file under `dir`, recursively, except under `skip` (paths relative to the workspace).
fn yaml_files(dir: &Path, skip: &[&str], out: &mut Vec<YamlSource>) {
    let root = agent_iam_host::workspace_root();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if skip.contains(&rel.as_str()) {
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, skip, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(YamlSource { name: rel, text: std::fs::read_to_string(&path).unwrap() });
        }
    }
}

/// The ```yaml blocks of a Markdown file, fence indentation removed.
fn yaml_blocks(rel: &str, out: &mut Vec<YamlSource>) {
    let text = std::fs::read_to_string(agent_iam_host::workspace_root().join(rel)).unwrap();
    let mut open: Option<(usize, usize, String)> = None; // (line, fence indentation, text)
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        let indent = line.len() - fence.len();
        match &mut open {
            None => {
                let info = fence.strip_prefix("```").map(str::trim);
                if info.is_some_and(|i| i.split_whitespace().next().is_some_and(|l| l == "yaml" || l == "yml")) {
                    open = Some((n + 1, indent, String::new()));
                }
            }
            Some((start, _, block)) if fence.starts_with("```") => {
                out.push(YamlSource { name: format!("{rel}:{start} (```yaml block)"), text: std::mem::take(block) });
                open = None;
            }
            Some((_, strip, block)) => {
                let strip = (*strip).min(line.len() - line.trim_start_matches(' ').len());
                block.push_str(&line[strip..]);
                block.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{rel}: a ```yaml block is not closed");
}

/// Every YAML text we ship: the manifests (not the vendored CRDs), the Envoy configurations, and the
/// ```yaml blocks of the docs and the README.
fn shipped_yaml() -> Vec<YamlSource> {
    let root = agent_iam_host::workspace_root();
    let mut out = Vec::new();
    yaml_files(&root.join("deploy"), &["deploy/crds"], &mut out);
    yaml_files(&root.join("envoy"), &[], &mut out);
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned())
        .collect();
    docs.sort();
    docs.push("README.md".into());
    for rel in &docs {
        yaml_blocks(rel, &mut out);
    }
    out
}

/// The documents of a YAML stream (split at `---` lines), those with content only.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
            if let Some(rest) = line.strip_prefix("--- ") {
                docs.last_mut().unwrap().push_str(rest);
                docs.last_mut().unwrap().push('\n');
            }
        } else {
            docs.last_mut().unwrap().push_str(line);
            docs.last_mut().unwrap().push('\n');
        }
    }
    docs.retain(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

/// Where the YAML 1.2 reading `a` and Kubernetes' YAML 1.1 reading `b` differ (numbers compare by value:
/// Kubernetes stores 1.0 as 1).
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => differences(va, vb, &format!("{path}.{k}"), out),
                    (Some(va), None) => {
                        out.push(format!("{path}.{k}: YAML 1.2 reads {va}, Kubernetes (YAML 1.1) has no such key"))
                    }
                    (None, Some(vb)) => {
                        out.push(format!("{path}.{k}: Kubernetes (YAML 1.1) reads {vb}, YAML 1.2 has no such key"))
                    }
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(format!("{path}: YAML 1.2 reads {a}, Kubernetes (YAML 1.1) reads {b}")),
    }
}

/// How the YAML 1.1 reading of `text` by Kubernetes differs from its YAML 1.2 reading; empty if it does
/// not. Each document is wrapped in an object kubectl accepts (any YAML is some object's field), and read
/// by kubectl; `dir` holds the wrapped file.
fn yaml11_surprises(text: &str, dir: &Path) -> Vec<String> {
    let docs = split_documents(text);
    let mut wrapped = String::new();
    for (i, doc) in docs.iter().enumerate() {
        wrapped.push_str(&format!(
            "---\napiVersion: agent-iam.invalid/v1\nkind: YamlDocument\nmetadata:\n  name: doc-{i}\nvalue:\n"
        ));
        for line in doc.lines() {
            wrapped.push_str(&format!("  {line}\n"));
        }
    }
    let file = dir.join("wrapped.yaml");
    std::fs::write(&file, &wrapped).unwrap();
    let yaml11 = match kubectl_read(&file) {
        Ok(objects) => objects,
        Err(e) => return vec![format!("Kubernetes (YAML 1.1) cannot read it: {e}")],
    };
    assert_eq!(yaml11.len(), docs.len(), "kubectl read {} documents of {}", yaml11.len(), docs.len());
    let mut out = Vec::new();
    for (i, (doc, k8s)) in docs.iter().zip(&yaml11).enumerate() {
        assert_eq!(k8s["metadata"]["name"], format!("doc-{i}"));
        match yaml12_documents(doc) {
            Ok(d) if d.len() == 1 => differences(&d[0], &k8s["value"], &format!("document {i}: "), &mut out),
            Ok(d) => out.push(format!("document {i}: YAML 1.2 reads {} documents in it", d.len())),
            Err(e) => out.push(format!("document {i}: YAML 1.2 cannot read it: {e}")),
        }
    }
    out
}

#[test]
fn every_shipped_yaml_reads_the_same_in_kubernetes_yaml_1_1_as_in_yaml_1_2() {
    let dir = work_dir("yaml11");
    let sources = shipped_yaml();
    // The manifests, the Envoy configurations, and the blocks of README.md and docs/deployment.md at least.
    assert!(sources.iter().any(|s| s.name == "deploy/istio/wasmplugin.yaml"));
    assert!(sources.iter().any(|s| s.name == "envoy/demo.yaml"));
    assert!(sources.iter().filter(|s| s.name.starts_with("README.md:")).count() >= 2);
    assert!(sources.iter().filter(|s| s.name.starts_with("docs/deployment.md:")).count() >= 4);
    let mut failures = Vec::new();
    for source in &sources {
        for d in yaml11_surprises(&source.text, &dir) {
            failures.push(format!("{}: {d}", source.name));
        }
    }
    assert!(
        failures.is_empty(),
        "Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): plain y, n, yes, no, on, off are booleans there (also as \
         keys: `y:` becomes the key \"true\"), 0777 is octal. Quote them:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_yaml_1_1_check_catches_booleans_octals_and_boolean_keys() {
    let dir = work_dir("yaml11-catches");
    let text = "switch: on\nmode: 0777\nn: 1\nlist: [yes, 'no', \"off\"]\nquoted: 'on'\n\"y\": fine\n---\n# none\n";
    let found = yaml11_surprises(text, &dir);
    let paths: Vec<&str> = found.iter().map(|d| d.split(':').nth(1).unwrap().trim()).collect();
    assert_eq!(paths, [".list[0]", ".mode", ".n", ".switch", ".false"], "{found:#?}");
    assert!(yaml11_surprises("a: 'on'\nb: 1.0\nc: \"0777\"\n\"n\": x\nd: 1:20\n", &dir).is_empty());
}

/// The regression of issue 15: an EC key's `y` written plain is the key "true" to Kubernetes, and the plugin
/// rejects the configuration Kubernetes delivers; YAML 1.2 (what these tests read before) did not see it.
#[test]
fn an_unquoted_jwk_y_reaches_the_plugin_as_key_true_and_is_rejected() {
    let dir = work_dir("yaml11-jwk");
    let text = std::fs::read_to_string(deploy("istio/wasmplugin-gateway.yaml")).unwrap();
    assert_eq!(text.matches("\"y\": ").count(), 1, "the manifest quotes its key's y");
    let broken = text.replace("\"y\": ", "y: ");
    let file = dir.join("wasmplugin-gateway.yaml");
    std::fs::write(&file, &broken).unwrap();

    let yaml12 = yaml12_documents(&broken).unwrap();
    let key12 = &yaml12[0]["spec"]["pluginConfig"]["issuers"][0]["jwks"]["keys"][0];
    assert!(key12.get("y").is_some(), "YAML 1.2 reads the key y: {key12}");
    let k8s = kubectl_read(&file).unwrap();
    let config = &k8s[0]["spec"]["pluginConfig"];
    let key = &config["issuers"][0]["jwks"]["keys"][0];
    assert!(key.get("y").is_none(), "{key}");
    assert_eq!(key["true"], key12["y"], "Kubernetes stores the key `y` as \"true\": {key}");
    let err = start(config, &[]).err().expect("the plugin must reject a key without y");
    assert!(format!("{err:#}").contains("jwks.keys[0].y"), "{err:#}");
    assert!(!yaml11_surprises(&broken, &dir).is_empty(), "the YAML 1.1 check must catch it");
}

#[test]
fn kubectl_reads_a_multi_document_manifest_in_order_and_without_its_annotation() {
    let docs = documents("istio/wasmplugin.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["WasmPlugin", "ServiceEntry", "DestinationRule"]);
    assert!(docs.iter().all(|d| d["metadata"].get("annotations").is_none()), "{docs:#?}");
    let text = std::fs::read_to_string(deploy("istio/wasmplugin.yaml")).unwrap();
    assert_eq!(yaml12_documents(&text).unwrap(), docs, "the manifest reads the same in YAML 1.1 and 1.2");
}

// ---------------------------------------------------------------------------------------------
// The published CRD schemas (deploy/crds/, vendored with their validator)
// ---------------------------------------------------------------------------------------------

/// The Python with the validator's packages: `$CRD_PYTHON`, else `.venv/bin/python` (`make crd-tools`).
fn crd_python() -> PathBuf {
    match std::env::var_os("CRD_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => agent_iam_host::workspace_root().join(".venv/bin/python"),
    }
}

/// Runs `deploy/crds/validate.py` on `manifests`: (success, output). Panics if it cannot run at all.
fn validate_crds(manifests: &[PathBuf]) -> (bool, String) {
    let python = crd_python();
    let hint = "install its packages with `make crd-tools` (deploy/crds/requirements.txt into .venv), or set \
                CRD_PYTHON to a python that has them";
    assert!(python.exists(), "{} not found: {hint}", python.display());
    let out = Command::new(&python)
        .arg(deploy("crds/validate.py"))
        .arg("--crds")
        .arg(deploy("crds"))
        .args(manifests)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; {hint}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "the CRD validator cannot run:\n{stderr}\n{hint}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.ends_with(" problems"), "the validator did not finish:\n{stdout}\n{stderr}");
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn manifest_files() -> Vec<PathBuf> {
    ["istio/wasmplugin.yaml", "istio/wasmplugin-gateway.yaml", "envoy-gateway/envoyextensionpolicy.yaml"]
        .iter()
        .map(|rel| deploy(rel))
        .collect()
}

/// Manifests in deploy/ of kinds whose CRD is not vendored in deploy/crds/ (and cannot be fetched here), with
/// the one kind each holds. They are left out of the CRD validation, and checked only as YAML: Kubernetes'
/// YAML 1.1 reading (every test of shipped YAML above covers them) and the fields the audit trail relies on
/// (`audit_log_manifests_print_the_plugin_event_verbatim`). Each says so in its header comment.
const WITHOUT_VENDORED_CRD: &[(&str, &str, &str)] = &[
    // The audit trail (issue 19): Envoy's access loggers configured by the control plane.
    ("istio/telemetry-audit.yaml", "telemetry.istio.io/v1", "Telemetry"),
    ("istio/mesh-audit-providers.yaml", "install.istio.io/v1alpha1", "IstioOperator"),
    ("envoy-gateway/envoyproxy-audit.yaml", "gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
];

#[test]
fn every_manifest_validates_against_the_istio_and_envoy_gateway_crds() {
    // Every manifest of deploy/ is listed here (the vendored CRDs aside), or among those without a vendored CRD.
    let mut all = Vec::new();
    yaml_files(&agent_iam_host::workspace_root().join("deploy"), &["deploy/crds"], &mut all);
    let mut listed: Vec<String> = manifest_files()
        .iter()
        .map(|p| p.strip_prefix(agent_iam_host::workspace_root()).unwrap().to_string_lossy().into_owned())
        .chain(WITHOUT_VENDORED_CRD.iter().map(|(rel, ..)| format!("deploy/{rel}")))
        .collect();
    listed.sort();
    let mut all: Vec<String> = all.into_iter().map(|s| s.name).collect();
    all.sort();
    assert_eq!(all, listed, "a manifest in deploy/ is not validated here");

    let documents: usize = manifest_files().iter().map(|p| kubectl_read(p).unwrap().len()).sum();
    let (ok, out) = validate_crds(&manifest_files());
    assert!(ok, "the manifests do not validate against the CRDs:\n{out}");
    assert!(out.contains(&format!("\n{documents} documents, 0 problems")), "{out}");
    for schema in [
        "wasmplugins.extensions.istio.io v1alpha1",
        "serviceentries.networking.istio.io v1",
        "destinationrules.networking.istio.io v1",
        "envoyextensionpolicies.gateway.envoyproxy.io v1alpha1",
    ] {
        assert!(out.contains(&format!("schema: {schema} from ")), "not checked against {schema}:\n{out}");
    }
    assert!(!out.contains("NOT EVALUATED"), "CEL rules the validator could not evaluate:\n{out}");
}

/// The audit trail's manifests (Istio Telemetry and mesh providers, Envoy Gateway EnvoyProxy), read as Kubernetes
/// reads them: each log format prints the plugin's event verbatim (PLAIN; one per line in files, the body of an
/// OTLP record without a newline), only for requests that have one, with the field names of Istio 1.30 and
/// Envoy Gateway 1.9. No CRD schema checks them (none is vendored).
#[test]
fn audit_log_manifests_print_the_plugin_event_verbatim() {
    const EVENT: &str = "%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%";
    const HAS_EVENT: &str = "'wasm.agent_iam.audit' in filter_state";
    for (rel, api_version, kind) in WITHOUT_VENDORED_CRD {
        let docs = documents(rel);
        assert_eq!(docs.len(), 1, "{rel}");
        only(&docs, api_version, kind);
    }

    let telemetry = &documents("istio/telemetry-audit.yaml")[0]["spec"];
    assert_keys_within("Telemetry.spec", telemetry, &["selector", "targetRefs", "accessLogging"]);
    let logging = &telemetry["accessLogging"][0];
    assert_keys_within("accessLogging[0]", logging, &["match", "providers", "disabled", "filter"]);
    assert_eq!(logging["filter"]["expression"], HAS_EVENT);
    let selected: Vec<&str> =
        logging["providers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();

    let providers = &documents("istio/mesh-audit-providers.yaml")[0]["spec"]["meshConfig"]["extensionProviders"];
    let providers = providers.as_array().unwrap();
    let names: Vec<&str> = providers.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, selected, "the Telemetry selects the providers the mesh config defines");
    let file = &providers[0]["envoyFileAccessLog"];
    assert_keys_within("envoyFileAccessLog", file, &["path", "logFormat", "omitEmptyValues"]);
    assert_eq!(file["logFormat"], json!({"text": format!("{EVENT}\n")}));
    let otel = &providers[1]["envoyOtelAls"];
    assert_keys_within("envoyOtelAls", otel, &["service", "port", "logName", "logFormat"]);
    assert_eq!(otel["logFormat"]["text"], EVENT);
    assert_eq!(otel["logFormat"]["labels"]["ocsf.class_uid"], "6003");
    assert!(otel["port"].is_u64() && otel["service"].is_string(), "{otel}");

    let proxy = &documents("envoy-gateway/envoyproxy-audit.yaml")[0]["spec"];
    let settings = proxy["telemetry"]["accessLog"]["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 2);
    for s in settings {
        assert_keys_within("accessLog.settings[]", s, &["format", "matches", "sinks", "type"]);
        assert_eq!(s["matches"], json!([HAS_EVENT]));
    }
    assert_eq!(settings[0]["format"], json!({"type": "Text", "text": format!("{EVENT}\n")}));
    assert_eq!(settings[0]["sinks"], json!([{"type": "File", "file": {"path": "/dev/stdout"}}]));
    // No type: Envoy Gateway takes text as the OTLP body and json as its attributes.
    assert_keys_within("settings[1].format", &settings[1]["format"], &["text", "json"]);
    assert_eq!(settings[1]["format"]["text"], EVENT);
    assert_eq!(settings[1]["format"]["json"]["ocsf.class_uid"], "6003");
    let sink = &settings[1]["sinks"][0];
    assert_eq!(sink["type"], "OpenTelemetry");
    assert_keys_within("openTelemetry", &sink["openTelemetry"], &["backendRefs", "resourceAttributes", "headers"]);
    assert!(sink["openTelemetry"]["backendRefs"][0]["port"].is_u64(), "{sink}");
}

#[test]
fn the_crd_validator_reports_an_unknown_field_and_an_unquoted_y() {
    let dir = work_dir("crds");
    let gateway = std::fs::read_to_string(deploy("istio/wasmplugin-gateway.yaml")).unwrap();
    let unknown = dir.join("unknown-field.yaml");
    std::fs::write(&unknown, gateway.replacen("\nspec:\n", "\nspec:\n  pluginConfigs: {}\n", 1)).unwrap();
    let policy = std::fs::read_to_string(deploy("envoy-gateway/envoyextensionpolicy.yaml")).unwrap();
    let plain_y = dir.join("plain-y.yaml");
    std::fs::write(&plain_y, policy.replacen("\"y\": ", "y: ", 1)).unwrap();

    let (ok, out) = validate_crds(&[unknown, plain_y]);
    assert!(!ok, "{out}");
    assert!(out.contains("\n2 documents, 2 problems"), "{out}");
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 2, "{out}");
    assert!(problems[0].contains("unknown-field.yaml") && problems[0].contains("'pluginConfigs'"), "{out}");
    assert!(problems[1].contains("plain-y.yaml") && problems[1].contains("map key 'y'"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// OCI image layout
// ---------------------------------------------------------------------------------------------

const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const SOURCE: &str = "https://git.example.com/agent-iam.git";

/// A small valid module: the header and one custom section naming it.
fn fixture_wasm(marker: u8) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let name = b"agent-iam-fixture";
    m.extend([0, (name.len() + 2) as u8, name.len() as u8]);
    m.extend(name);
    m.push(marker);
    m
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("manifests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the layout script; Err(stderr) if it fails.
fn build_layout(wasm: &Path, out: &Path, variant: &str, epoch: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("python3");
    cmd.arg(deploy("oci/build_layout.py"))
        .args(["--wasm".as_ref(), wasm.as_os_str(), "--out".as_ref(), out.as_os_str()])
        .args(["--variant", variant, "--revision", REVISION, "--source", SOURCE])
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    let out = cmd.output().map_err(|e| format!("python3: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A validated OCI layout: every descriptor's blob exists with its size and digest, and no other blob.
struct Layout {
    dir: PathBuf,
    manifest_digest: String,
    manifest: Value,
    used: BTreeSet<String>,
}

impl Layout {
    fn open(dir: &Path) -> Layout {
        assert_eq!(read_json(&dir.join("oci-layout")), json!({"imageLayoutVersion": "1.0.0"}));
        let index = read_json(&dir.join("index.json"));
        assert_eq!(index["schemaVersion"], 2);
        assert_str(&index["mediaType"], "application/vnd.oci.image.index.v1+json");
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        let descriptor = &manifests[0];
        assert_str(&descriptor["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_str(&descriptor["annotations"]["org.opencontainers.image.ref.name"], env!("CARGO_PKG_VERSION"));
        let mut layout = Layout {
            dir: dir.to_path_buf(),
            manifest_digest: String::new(),
            manifest: Value::Null,
            used: BTreeSet::new(),
        };
        layout.manifest = serde_json::from_slice(&layout.blob(descriptor)).unwrap();
        layout.manifest_digest = descriptor["digest"].as_str().unwrap().to_string();
        let m = &layout.manifest;
        assert_eq!(m["schemaVersion"], 2);
        assert_str(&m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        let a = &m["annotations"];
        assert_str(&a["org.opencontainers.image.title"], "agent-iam");
        assert_str(&a["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
        assert_str(&a["org.opencontainers.image.revision"], REVISION);
        assert_str(&a["org.opencontainers.image.source"], SOURCE);
        assert_str(&a["org.opencontainers.image.licenses"], env!("CARGO_PKG_LICENSE"));
        assert!(a["org.opencontainers.image.description"].as_str().is_some_and(|d| !d.is_empty()));
        layout
    }

    /// The blob a descriptor points at, checked against its digest and size.
    fn blob(&mut self, descriptor: &Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().expect("digest");
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let bytes = std::fs::read(self.dir.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("{digest}: {e}"));
        assert_eq!(format!("{:x}", Sha256::digest(&bytes)), hex, "blob content does not match its digest");
        assert_eq!(descriptor["size"], bytes.len(), "size of {digest}");
        self.used.insert(hex.to_string());
        bytes
    }

    fn assert_no_stray_blobs(&self) {
        let present: BTreeSet<String> = std::fs::read_dir(self.dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(present, self.used, "blobs no descriptor points at");
    }
}

fn runtime_config_ok(bytes: &[u8]) {
    let rc: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(rc["type"], "envoy_proxy");
    assert_eq!(rc["config"]["root_ids"], json!(["agent-iam"]));
}

/// Every file of a directory tree, relative path and content.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn oci_artifact_layout_is_what_istio_pulls_and_is_reproducible() {
    let dir = work_dir("oci");
    let wasm = dir.join("plugin.wasm");
    std::fs::write(&wasm, fixture_wasm(1)).unwrap();
    build_layout(&wasm, &dir.join("a"), "oci", None).unwrap();
    build_layout(&wasm, &dir.join("b"), "oci", None).unwrap();
    assert_eq!(tree(&dir.join("a")), tree(&dir.join("b")), "same input, different output");

    let mut layout = Layout::open(&dir.join("a"));
    let manifest = layout.manifest.clone();
    assert_str(&manifest["config"]["mediaType"], "application/vnd.module.wasm.config.v1+json");
    runtime_config_ok(&layout.blob(&manifest["config"]));
    assert!(manifest["annotations"].get("module.wasm.image/variant").is_none());
    assert!(
        manifest["annotations"].get("org.opencontainers.image.created").is_none(),
        "no time without SOURCE_DATE_EPOCH"
    );
    // Istio's and Envoy Gateway's fetchers take the *oci* variant only with exactly two layers.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_str(&layers[0]["mediaType"], "application/vnd.module.wasm.config.v1+json");
    runtime_config_ok(&layout.blob(&layers[0]));
    assert_str(&layers[1]["mediaType"], "application/vnd.module.wasm.content.layer.v1+wasm");
    assert_str(&layers[1]["annotations"]["org.opencontainers.image.title"], "plugin.wasm");
    assert_eq!(layout.blob(&layers[1]), fixture_wasm(1), "the layer is the module, byte for byte");
    layout.assert_no_stray_blobs();

    // Another module, another digest; a time only from SOURCE_DATE_EPOCH; rebuilding over a layout replaces it.
    std::fs::write(&wasm, fixture_wasm(2)).unwrap();
    build_layout(&wasm, &dir.join("a"), "oci", Some("1700000000")).unwrap();
    let mut changed = Layout::open(&dir.join("a"));
    assert_ne!(changed.manifest_digest, layout.manifest_digest);
    assert_str(&changed.manifest["annotations"]["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
    let layers = changed.manifest["layers"].clone();
    assert_eq!(changed.blob(&layers[1]), fixture_wasm(2));
    changed.blob(&layers[0]);
    let config = changed.manifest["config"].clone();
    changed.blob(&config);
    changed.assert_no_stray_blobs();

    // Not a module, or a directory that is not a layout: refused, nothing overwritten.
    std::fs::write(dir.join("not.wasm"), b"PK\x03\x04").unwrap();
    let err = build_layout(&dir.join("not.wasm"), &dir.join("c"), "oci", None).unwrap_err();
    assert!(err.contains("not a WebAssembly module"), "{err}");
    let err = build_layout(&wasm, &dir, "oci", None).unwrap_err();
    assert!(err.contains("not an OCI layout"), "{err}");
    assert!(dir.join("plugin.wasm").exists());
}

#[test]
fn oci_compat_layout_is_a_plain_image_with_plugin_wasm() {
    let dir = work_dir("compat");
    let wasm = dir.join("plugin.wasm");
    std::fs::write(&wasm, fixture_wasm(3)).unwrap();
    build_layout(&wasm, &dir.join("a"), "compat", None).unwrap();
    build_layout(&wasm, &dir.join("b"), "compat", None).unwrap();
    assert_eq!(tree(&dir.join("a")), tree(&dir.join("b")), "same input, different output");

    let mut layout = Layout::open(&dir.join("a"));
    let manifest = layout.manifest.clone();
    assert_str(&manifest["annotations"]["module.wasm.image/variant"], "compat");
    assert_str(&manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let image_config: Value = serde_json::from_slice(&layout.blob(&manifest["config"])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "the compat variant has exactly one layer");
    assert_str(&layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer = layout.blob(&layers[0]);
    assert_eq!(&layer[..2], b"\x1f\x8b", "gzip");
    layout.assert_no_stray_blobs();

    // The layer's files and the config's diff id, read back with python3's tarfile and gzip.
    let layer_path = dir.join("a/blobs/sha256").join(&layers[0]["digest"].as_str().unwrap()[7..]);
    let script = "import gzip, hashlib, io, sys, tarfile\n\
                  raw = gzip.open(sys.argv[1]).read()\n\
                  t = tarfile.open(fileobj=io.BytesIO(raw))\n\
                  print(hashlib.sha256(raw).hexdigest())\n\
                  for m in t.getmembers(): print(m.name, m.size, oct(m.mode), m.mtime, m.uid, m.gid)\n\
                  print(t.extractfile('plugin.wasm').read().hex())";
    let out = Command::new("python3").args(["-c", script]).arg(&layer_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(image_config["rootfs"]["diff_ids"], json!([format!("sha256:{}", lines[0])]));
    assert_eq!(lines[1], format!("plugin.wasm {} 0o644 0 0 0", fixture_wasm(3).len()));
    assert!(lines[2].starts_with("runtime-config.json "), "{out}");
    let hex: String = fixture_wasm(3).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[3], hex);
}
