//! `agent-iam token`: generate a signing key, mint a test token with `agent_iam::mint`.

use crate::Usage;
use agent_iam::b64;
use agent_iam::mint::SigningKey;
use agent_iam::policy::cases;
use agent_iam::token::Algorithm;
use rsa::traits::PrivateKeyParts;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// `token` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Generates a signing key and prints {"private_jwk": ..., "jwks": {"keys": [public JWK]}}: the private
    /// JWK for `token mint --key`, the JWKS for an issuer's `jwks` in the plugin configuration.
    Keygen(Keygen),
    /// Signs a test token and prints it (compact JWS). Claims come from --claims, then the flags.
    Mint(Box<Mint>),
}

/// Options of `token keygen`.
#[derive(clap::Args)]
pub struct Keygen {
    /// ES256, ES384, EdDSA, RS256/384/512, PS256/384/512 or HS256/384/512.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// The key id (`kid`).
    #[arg(long)]
    kid: Option<String>,
    /// Also write the private JWK to this file.
    #[arg(long, value_name = "FILE")]
    private: Option<PathBuf>,
    /// Also write the public JWKS to this file.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

/// Options of `token mint`.
#[derive(clap::Args)]
pub struct Mint {
    /// The signing key: a private JWK, the output of `token keygen`, or a PEM private key (PKCS#8, SEC1 EC,
    /// PKCS#1 RSA).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The algorithm (default: the JWK's `alg`, else ES256/ES384/EdDSA by key type, RS256, HS256).
    #[arg(long)]
    alg: Option<String>,
    /// The header's `kid` (default: the JWK's `kid`).
    #[arg(long)]
    kid: Option<String>,
    /// The header's `typ` (default JWT), e.g. at+jwt.
    #[arg(long)]
    typ: Option<String>,
    /// A JSON object of claims to start from; the flags below override its members.
    #[arg(long, value_name = "FILE")]
    claims: Option<PathBuf>,
    /// `iss`.
    #[arg(long)]
    iss: Option<String>,
    /// `sub`: the subject (the agent, or the person it acts for).
    #[arg(long)]
    sub: Option<String>,
    /// `aud` (repeatable: more than one makes an array).
    #[arg(long)]
    aud: Vec<String>,
    /// `scope` (space-separated scopes).
    #[arg(long)]
    scope: Option<String>,
    /// `jti`.
    #[arg(long)]
    jti: Option<String>,
    /// `roles` (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The delegation chain (RFC 8693 `act`), current actor first, repeatable: `--act A --act B` makes
    /// {"act": {"sub": A, "act": {"sub": B}}}: A acts for B, who acts for `sub`.
    #[arg(long, value_name = "SUB")]
    act: Vec<String>,
    /// `may_act`: who may act for the subject (RFC 8693), {"sub": SUB}.
    #[arg(long, value_name = "SUB")]
    may_act: Option<String>,
    /// `cnf` {"x5t#S256": ...}: binds the token to a client certificate (RFC 8705), base64url SHA-256.
    #[arg(long, value_name = "THUMBPRINT")]
    cnf_x5t: Option<String>,
    /// Any claim, NAME=JSON (a value that is not JSON is taken as a string), repeatable.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    extra: Vec<String>,
    /// `iat`: Unix seconds or RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    iat: Option<String>,
    /// `nbf`: Unix seconds or RFC 3339 (default: none).
    #[arg(long, value_name = "TIME")]
    nbf: Option<String>,
    /// `exp`: Unix seconds or RFC 3339 (default: iat + --ttl).
    #[arg(long, value_name = "TIME")]
    exp: Option<String>,
    /// Lifetime in seconds when --exp is not given.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

/// Runs a `token` subcommand.
pub fn run(c: Command) -> Result<bool, Usage> {
    match c {
        Command::Keygen(k) => keygen(k),
        Command::Mint(m) => mint(*m).map(|t| {
            println!("{t}");
            true
        }),
    }
}

fn algorithm(name: &str) -> Result<Algorithm, Usage> {
    Algorithm::from_name(name).ok_or_else(|| Usage(format!("unknown algorithm {name}")))
}

fn keygen(k: Keygen) -> Result<bool, Usage> {
    let alg = algorithm(&k.alg)?;
    let key = loop {
        let mut seed = [0u8; 32];
        getrandom(&mut seed)?;
        if let Some(key) = SigningKey::from_seed(alg, seed) {
            break key;
        }
    };
    let private = private_jwk(&key, k.kid.as_deref());
    let public = key.public_jwk(k.kid.as_deref());
    let jwks = if public.is_null() { json!({"keys": []}) } else { json!({"keys": [public]}) };
    let write = |p: &Path, v: &Value| {
        std::fs::write(p, format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()))
            .map_err(|e| Usage(format!("{}: {e}", p.display())))
    };
    if let Some(p) = &k.private {
        write(p, &private)?;
    }
    if let Some(p) = &k.jwks {
        write(p, &jwks)?;
    }
    let out = json!({"private_jwk": private, "jwks": jwks});
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(true)
}

fn getrandom(buf: &mut [u8]) -> Result<(), Usage> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Usage(format!("/dev/urandom: {e}")))
}

/// The private JWK of a key (RFC 7517/7518/8037), with `alg` and `kid`.
pub fn private_jwk(key: &SigningKey, kid: Option<&str>) -> Value {
    let mut jwk = match key.public_jwk(kid) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let d = match key {
        SigningKey::Es256(sk) => b64::encode(sk.to_bytes().as_slice()),
        SigningKey::Es384(sk) => b64::encode(sk.to_bytes().as_slice()),
        SigningKey::Ed25519(kp) => b64::encode(&kp.sk.seed()[..]),
        SigningKey::Rsa { key, .. } => {
            let primes = key.primes();
            let n = |b: &rsa::BigUint| b64::encode(&b.to_bytes_be());
            if let [p, q] = primes {
                jwk.insert("p".into(), n(p).into());
                jwk.insert("q".into(), n(q).into());
            }
            if let (Some(dp), Some(dq)) = (key.dp(), key.dq()) {
                jwk.insert("dp".into(), n(dp).into());
                jwk.insert("dq".into(), n(dq).into());
            }
            if let Some(qi) = key.crt_coefficient() {
                jwk.insert("qi".into(), n(&qi).into());
            }
            n(key.d())
        }
        SigningKey::Hmac { .. } => {
            jwk.insert("kty".into(), "oct".into());
            jwk.insert("alg".into(), key.alg().name().into());
            if let Some(kid) = kid {
                jwk.insert("kid".into(), kid.into());
            }
            jwk.insert("k".into(), b64::encode(key.hmac_secret().unwrap_or_default()).into());
            return Value::Object(jwk);
        }
    };
    jwk.insert("d".into(), d.into());
    jwk.remove("use");
    jwk.insert("alg".into(), key.alg().name().into());
    Value::Object(jwk)
}

fn mint(m: Mint) -> Result<String, Usage> {
    let text = std::fs::read_to_string(&m.key).map_err(|e| Usage(format!("--key {}: {e}", m.key.display())))?;
    let alg = m.alg.as_deref().map(algorithm).transpose()?;
    let (key, jwk_kid) =
        crate::keys::signing_key(&text, alg).map_err(|e| Usage(format!("--key {}: {e}", m.key.display())))?;
    let mut claims = match &m.claims {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Usage(format!("--claims {}: {e}", p.display())))?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(o)) => o,
                Ok(_) => return Err(Usage(format!("--claims {}: must be a JSON object", p.display()))),
                Err(e) => return Err(Usage(format!("--claims {}: {e}", p.display()))),
            }
        }
        None => Map::new(),
    };
    let time = |flag: &str, t: &str| -> Result<i64, Usage> {
        t.parse::<i64>().or_else(|_| cases::parse_time(t)).map_err(|e| Usage(format!("--{flag} {t}: {e}")))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let iat = match &m.iat {
        Some(t) => time("iat", t)?,
        None => claims.get("iat").and_then(Value::as_i64).unwrap_or(now),
    };
    claims.insert("iat".into(), iat.into());
    match &m.exp {
        Some(t) => {
            claims.insert("exp".into(), time("exp", t)?.into());
        }
        None if !claims.contains_key("exp") => {
            claims.insert("exp".into(), (iat + m.ttl).into());
        }
        None => {}
    }
    if let Some(t) = &m.nbf {
        claims.insert("nbf".into(), time("nbf", t)?.into());
    }
    let mut set = |name: &str, v: Option<Value>| {
        if let Some(v) = v {
            claims.insert(name.into(), v);
        }
    };
    set("iss", m.iss.map(Value::from));
    set("sub", m.sub.map(Value::from));
    set(
        "aud",
        match m.aud.len() {
            0 => None,
            1 => Some(m.aud[0].clone().into()),
            _ => Some(m.aud.clone().into()),
        },
    );
    set("scope", m.scope.map(Value::from));
    set("jti", m.jti.map(Value::from));
    set("roles", (!m.roles.is_empty()).then(|| m.roles.clone().into()));
    set("may_act", m.may_act.map(|s| json!({ "sub": s })));
    set("cnf", m.cnf_x5t.map(|t| json!({ "x5t#S256": t })));
    let act = m.act.iter().rev().fold(None, |inner: Option<Value>, actor| {
        let mut o = json!({ "sub": actor });
        if let Some(inner) = inner {
            o["act"] = inner;
        }
        Some(o)
    });
    set("act", act);
    for c in &m.extra {
        let (name, value) = c.split_once('=').ok_or_else(|| Usage(format!("--claim {c}: expected NAME=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        claims.insert(name.to_owned(), value);
    }
    let kid = m.kid.or(jwk_kid);
    let mut header = json!({"alg": key.alg().name(), "typ": m.typ.as_deref().unwrap_or("JWT")});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    Ok(key.sign_jwt_with_header(&header, &Value::Object(claims)))
}
