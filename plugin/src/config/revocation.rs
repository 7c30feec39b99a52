//! The `revocation` section: revocations written in the configuration, a revocation list fetched through an
//! Envoy cluster, and a Shared Signals (SSF) receiver that polls a transmitter or takes pushed events.

use super::{ConfigError, err};
use crate::revocation::document::{self, SelectorDocument};
use crate::revocation::sources::{DEFAULT_STATE_KEY, Endpoint, ListSource, OnStale, Poll, Push, Receiver, Sources};
use crate::revocation::ssf::{IssSubAs, Mapping};
use crate::revocation::state::Limits;
use crate::revocation::{Closed, Kind, RevocationSet, Scope};
use crate::token::statement::StatementVerifier;
use crate::token::{Algorithm, KeySet};
use serde::Deserialize;
use std::rc::Rc;

/// Continuous revocation as written.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevocationDocument {
    /// Revocations in force as long as this configuration is: each names facts a token must all match
    /// (`jti`, `agent`, `subject`, `trust_domain`, `client_id`, `issuer`), optionally `in` (`chain`, the
    /// default, or `current`), `issued_before` (a cut-off) and `expires`.
    #[serde(default)]
    pub selectors: Vec<SelectorDocument>,
    /// A signed revocation list fetched through an Envoy cluster.
    #[serde(default)]
    pub list: Option<ListDocument>,
    /// A Shared Signals (SSF 1.0 / CAEP) receiver.
    #[serde(default)]
    pub ssf: Option<SsfDocument>,
    /// The shared-data key of the state the workers share (default `agent_iam.revocation`); plugins with
    /// different sources in one Envoy need different keys.
    #[serde(default)]
    pub state_key: Option<String>,
    /// Most revocations learnt from events held at once (default 100000); more are refused, never dropped.
    #[serde(default)]
    pub max_revocations: Option<usize>,
}

/// The revocation list source as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ListDocument {
    /// Envoy cluster to call.
    pub cluster: String,
    /// Path of the list.
    pub path: String,
    /// `:authority` of the call (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Call timeout, milliseconds (default 2000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Seconds between fetches (default 60).
    #[serde(default)]
    pub refresh_seconds: Option<u32>,
    /// A list not fetched for this long is stale (default 3600).
    #[serde(default)]
    pub max_stale_seconds: Option<u32>,
    /// `keep` (default: the last good list still applies) or `deny` (tokens of the covered issuers are
    /// refused with 503 while the list is stale, and before the first one arrives).
    #[serde(default)]
    pub on_stale: Option<String>,
    /// The issuers a stale list closes under `on_stale: deny` (default: every issuer).
    #[serde(default)]
    pub covers: Vec<String>,
    /// Largest accepted list, bytes (default 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// The list's signer: its `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The signer's public keys (JWKS).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Allowed signature algorithms (asymmetric only).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Accept an unsigned list (plain JSON). Only where the cluster itself is trusted (mTLS to a local
    /// service); never the default.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// The SSF receiver as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SsfDocument {
    /// The transmitter's issuer: every event's `iss`.
    pub issuer: String,
    /// This receiver's audiences: every event's `aud` must name one.
    pub audiences: Vec<String>,
    /// The transmitter's public keys (JWKS).
    pub jwks: serde_json::Value,
    /// Allowed signature algorithms (default RS256 and ES256; asymmetric only).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Tolerated clock difference, seconds (default 60).
    #[serde(default)]
    pub clock_skew_seconds: Option<u32>,
    /// Events issued longer ago are refused (default 86400).
    #[serde(default)]
    pub max_event_age_seconds: Option<u32>,
    /// How long a revocation lasts after its cut-off (default 86400): at least the longest lifetime of the
    /// tokens it revokes.
    #[serde(default)]
    pub revocation_lifetime_seconds: Option<u32>,
    /// What event subjects name.
    #[serde(default)]
    pub subjects: SubjectsDocument,
    /// Poll the transmitter (RFC 8936).
    #[serde(default)]
    pub poll: Option<PollDocument>,
    /// Take pushed events (RFC 8935).
    #[serde(default)]
    pub push: Option<PushDocument>,
}

/// What event subjects name, as written.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SubjectsDocument {
    /// An `iss_sub` subject revokes tokens with that subject (`subject`), tokens where it acts as an agent
    /// (`agent`), or both (`both`, default).
    #[serde(default)]
    pub iss_sub: Option<String>,
    /// What an `opaque` id names: `agent`, `subject`, `client_id` or `jti` (default: opaque subjects are
    /// acknowledged and revoke nothing).
    #[serde(default)]
    pub opaque: Option<String>,
    /// Where an agent named by an event is looked for: `chain` (default) or `current`.
    #[serde(default)]
    pub agents_in: Option<Scope>,
}

/// Polling as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PollDocument {
    /// Envoy cluster of the transmitter.
    pub cluster: String,
    /// The poll endpoint's path.
    pub path: String,
    /// `:authority` (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Call timeout, milliseconds (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Milliseconds between polls (default 2000).
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// `maxEvents` per poll (default 100).
    #[serde(default)]
    pub max_events: Option<u32>,
    /// The `authorization` header value sent with each poll.
    #[serde(default)]
    pub authorization: Option<String>,
    /// Largest accepted answer, bytes (default 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Push as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PushDocument {
    /// The path events are pushed to (routed by Envoy to any cluster: the plugin answers).
    pub path: String,
    /// The exact `authorization` header value the transmitter sends (SSF `authorization_header`).
    pub authorization: String,
    /// Largest accepted event, bytes (default 65536).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

fn visible(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[allow(clippy::too_many_arguments)]
fn endpoint(
    at: &str,
    cluster: &str,
    path: &str,
    authority: Option<&str>,
    timeout_ms: u64,
    max_bytes: usize,
) -> Result<Endpoint, ConfigError> {
    let here = |f: &str| format!("{at}.{f}");
    if !visible(cluster, 256) {
        return Err(err(here("cluster"), "must be an Envoy cluster name (visible ASCII)"));
    }
    if !path.starts_with('/') || !visible(path, 2048) {
        return Err(err(here("path"), "must be an origin-form path starting with '/'"));
    }
    let authority = authority.unwrap_or(cluster).to_owned();
    if crate::request::canonical_host(&authority).is_err() {
        return Err(err(here("authority"), "must be a host name, optionally with a port"));
    }
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(err(here("timeout_ms"), "must be between 1 and 60000"));
    }
    if !(1024..=16 << 20).contains(&max_bytes) {
        return Err(err(here("max_bytes"), "must be between 1024 and 16777216"));
    }
    Ok(Endpoint { cluster: cluster.to_owned(), path: path.to_owned(), authority, timeout_ms, max_bytes })
}

/// Asymmetric algorithms from their names (statements are verified with public keys only).
fn algorithms(at: &str, names: &[String], default: &[Algorithm]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Ok(default.to_vec());
    }
    names
        .iter()
        .enumerate()
        .map(|(j, name)| match Algorithm::from_name(name) {
            Some(a) if !a.is_hmac() => Ok(a),
            Some(_) => Err(err(format!("{at}[{j}]"), "must be an asymmetric algorithm (RS, PS, ES or EdDSA)")),
            None => Err(err(format!("{at}[{j}]"), format!("unsupported algorithm \"{name}\""))),
        })
        .collect()
}

fn keys(at: &str, jwks: &serde_json::Value) -> Result<KeySet, ConfigError> {
    let keys = KeySet::from_value(jwks)
        .map_err(|e| err(if e.path.is_empty() { at.to_owned() } else { format!("{at}.{}", e.path) }, e.message))?;
    if keys.is_empty() {
        return Err(err(at, "must hold at least one public key"));
    }
    Ok(keys)
}

/// The revocations written in the configuration, and the validated sources of shared ones.
pub fn settings(doc: &RevocationDocument) -> Result<(Rc<RevocationSet>, Option<Rc<Sources>>), ConfigError> {
    let selectors = document::selectors(&doc.selectors, "revocation.selectors").map_err(|(path, m)| err(path, m))?;
    let inline = Rc::new(RevocationSet::new(selectors, Closed::None));
    let state_key = doc.state_key.clone().unwrap_or_else(|| DEFAULT_STATE_KEY.to_owned());
    if !visible(&state_key, 128) {
        return Err(err("revocation.state_key", "must be 1 to 128 visible ASCII characters"));
    }
    let max_entries = doc.max_revocations.unwrap_or(100_000);
    if !(1..=1_000_000).contains(&max_entries) {
        return Err(err("revocation.max_revocations", "must be from 1 to 1000000"));
    }
    let list = doc.list.as_ref().map(list_source).transpose()?;
    let ssf = doc.ssf.as_ref().map(receiver).transpose()?;
    if list.is_none() && ssf.is_none() {
        return Ok((inline, None));
    }
    let limits = Limits { max_entries, max_seen: max_entries };
    Ok((inline, Some(Rc::new(Sources { state_key, limits, list, ssf }))))
}

/// Sources for a shared state with no list and no receiver (anomaly quarantines write into it), under the
/// configured key.
pub fn shared_only(doc: Option<&RevocationDocument>) -> Sources {
    let state_key = doc.and_then(|d| d.state_key.clone()).unwrap_or_else(|| DEFAULT_STATE_KEY.to_owned());
    let max_entries = doc.and_then(|d| d.max_revocations).unwrap_or(100_000);
    Sources { state_key, limits: Limits { max_entries, max_seen: max_entries }, list: None, ssf: None }
}

fn list_source(d: &ListDocument) -> Result<ListSource, ConfigError> {
    let at = |f: &str| format!("revocation.list.{f}");
    let endpoint = endpoint(
        "revocation.list",
        &d.cluster,
        &d.path,
        d.authority.as_deref(),
        d.timeout_ms.unwrap_or(2000),
        d.max_bytes.unwrap_or(1 << 20),
    )?;
    let refresh = d.refresh_seconds.unwrap_or(60);
    if !(1..=86_400).contains(&refresh) {
        return Err(err(at("refresh_seconds"), "must be from 1 to 86400"));
    }
    let max_stale = d.max_stale_seconds.unwrap_or(3600);
    if max_stale < refresh {
        return Err(err(
            at("max_stale_seconds"),
            "must be at least refresh_seconds, or the list goes stale between fetches",
        ));
    }
    let on_stale = match d.on_stale.as_deref() {
        None | Some("keep") => OnStale::Keep,
        Some("deny") => OnStale::Deny,
        Some(_) => return Err(err(at("on_stale"), "must be \"keep\" or \"deny\"")),
    };
    for (i, issuer) in d.covers.iter().enumerate() {
        if issuer.is_empty() {
            return Err(err(format!("revocation.list.covers[{i}]"), "must not be empty"));
        }
    }
    let verifier = match (&d.jwks, d.allow_unsigned) {
        (None, false) => return Err(err(at("jwks"), "is required: the list must be signed (or set allow_unsigned)")),
        (None, true) => {
            if d.issuer.is_some() || !d.algorithms.is_empty() {
                return Err(err(at("issuer"), "applies only to a signed list (give jwks)"));
            }
            None
        }
        (Some(jwks), _) => {
            let issuer = d
                .issuer
                .clone()
                .filter(|i| !i.is_empty())
                .ok_or_else(|| err(at("issuer"), "is required for a signed list"))?;
            Some(StatementVerifier {
                issuer,
                audiences: Vec::new(),
                algorithms: algorithms(&at("algorithms"), &d.algorithms, &[Algorithm::ES256, Algorithm::RS256])?,
                keys: keys(&at("jwks"), jwks)?,
                typ: "revocation-list+jwt",
                clock_skew: i64::from(super::DEFAULT_CLOCK_SKEW_SECONDS),
                max_age: i64::from(max_stale),
                max_bytes: endpoint.max_bytes,
            })
        }
    };
    Ok(ListSource {
        endpoint,
        refresh: i64::from(refresh),
        max_stale: i64::from(max_stale),
        on_stale,
        covers: d.covers.clone(),
        verifier,
        allow_unsigned: d.allow_unsigned,
    })
}

fn receiver(d: &SsfDocument) -> Result<Receiver, ConfigError> {
    let at = |f: &str| format!("revocation.ssf.{f}");
    if d.issuer.is_empty() {
        return Err(err(at("issuer"), "must not be empty"));
    }
    if d.audiences.is_empty() || d.audiences.iter().any(String::is_empty) {
        return Err(err(at("audiences"), "must list at least one non-empty audience"));
    }
    let clock_skew = d.clock_skew_seconds.unwrap_or(60);
    if clock_skew > 600 {
        return Err(err(at("clock_skew_seconds"), "must be at most 600"));
    }
    let max_age = d.max_event_age_seconds.unwrap_or(86_400);
    if !(60..=30 * 86_400).contains(&max_age) {
        return Err(err(at("max_event_age_seconds"), "must be from 60 to 2592000"));
    }
    let lifetime = d.revocation_lifetime_seconds.unwrap_or(86_400);
    if !(60..=366 * 86_400).contains(&lifetime) {
        return Err(err(at("revocation_lifetime_seconds"), "must be from 60 to 31622400"));
    }
    let iss_sub = match d.subjects.iss_sub.as_deref() {
        None | Some("both") => IssSubAs::Both,
        Some("subject") => IssSubAs::Subject,
        Some("agent") => IssSubAs::Agent,
        Some(_) => return Err(err(at("subjects.iss_sub"), "must be \"subject\", \"agent\" or \"both\"")),
    };
    let opaque = match d.subjects.opaque.as_deref() {
        None => None,
        Some("agent") => Some(Kind::Agent),
        Some("subject") => Some(Kind::Subject),
        Some("client_id") => Some(Kind::ClientId),
        Some("jti") => Some(Kind::Jti),
        Some(_) => return Err(err(at("subjects.opaque"), "must be \"agent\", \"subject\", \"client_id\" or \"jti\"")),
    };
    let verifier = StatementVerifier {
        issuer: d.issuer.clone(),
        audiences: d.audiences.clone(),
        algorithms: algorithms(&at("algorithms"), &d.algorithms, &[Algorithm::RS256, Algorithm::ES256])?,
        keys: keys(&at("jwks"), &d.jwks)?,
        typ: "secevent+jwt",
        clock_skew: i64::from(clock_skew),
        max_age: i64::from(max_age),
        max_bytes: 64 * 1024,
    };
    let mapping = Mapping {
        iss_sub,
        opaque,
        scope: d.subjects.agents_in.unwrap_or_default(),
        lifetime: i64::from(lifetime),
        clock_skew: i64::from(clock_skew),
    };
    let poll = match &d.poll {
        None => None,
        Some(p) => {
            let endpoint = endpoint(
                "revocation.ssf.poll",
                &p.cluster,
                &p.path,
                p.authority.as_deref(),
                p.timeout_ms.unwrap_or(5000),
                p.max_bytes.unwrap_or(1 << 20),
            )?;
            let interval_ms = p.interval_ms.unwrap_or(2000);
            if !(250..=3_600_000).contains(&interval_ms) {
                return Err(err(at("poll.interval_ms"), "must be from 250 to 3600000"));
            }
            let max_events = p.max_events.unwrap_or(100);
            if !(1..=10_000).contains(&max_events) {
                return Err(err(at("poll.max_events"), "must be from 1 to 10000"));
            }
            if let Some(a) = &p.authorization
                && (a.is_empty() || a.len() > 4096 || a.bytes().any(|b| !(0x20..0x7f).contains(&b)))
            {
                return Err(err(at("poll.authorization"), "must be 1 to 4096 printable ASCII characters"));
            }
            Some(Poll { endpoint, interval_ms, max_events, authorization: p.authorization.clone() })
        }
    };
    let push = match &d.push {
        None => None,
        Some(p) => {
            if !p.path.starts_with('/') || !visible(&p.path, 2048) || p.path.contains('?') {
                return Err(err(at("push.path"), "must be a path starting with '/', without a query"));
            }
            if p.authorization.len() < 16
                || p.authorization.len() > 4096
                || p.authorization.bytes().any(|b| !(0x20..0x7f).contains(&b))
            {
                return Err(err(at("push.authorization"), "must be 16 to 4096 printable ASCII characters (a secret)"));
            }
            let max_bytes = p.max_bytes.unwrap_or(64 * 1024);
            if !(1024..=1 << 20).contains(&max_bytes) {
                return Err(err(at("push.max_bytes"), "must be between 1024 and 1048576"));
            }
            Some(Push { path: p.path.clone(), authorization: p.authorization.clone(), max_bytes })
        }
    };
    if poll.is_none() && push.is_none() {
        return Err(err(at("poll"), "a receiver needs poll, push or both"));
    }
    Ok(Receiver { verifier, mapping, poll, push })
}
