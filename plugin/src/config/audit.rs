//! The `audit` section: which decisions become audit events, what they record, and the checkpoint key.

use super::{ConfigError, err};
use crate::audit::{CheckpointKey, Events, Settings};
use serde::Deserialize;

/// The audit trail as written.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditDocument {
    /// `all` (default: every decision, but for rules with `audit: false`) or `denials` (refusals and dry-run
    /// refusals only).
    #[serde(default)]
    pub events: Option<String>,
    /// Token claims recorded in every event (`unmapped.claims`), besides the identity (agent, subject, chain,
    /// issuer, `jti`, `client_id`), e.g. `["department"]`.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Signed checkpoints: without a key the events still form a hash chain, which detects deletion and
    /// reordering by anyone who cannot recompute SHA-256, that is, no one; with a key, rewriting the chain
    /// needs the key.
    #[serde(default)]
    pub checkpoint: Option<CheckpointDocument>,
    /// `metadata.product.vendor_name` of the events (default `agent-iam`).
    #[serde(default)]
    pub vendor: Option<String>,
}

/// Checkpoint signing as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointDocument {
    /// The HMAC-SHA256 key, base64url without padding, at least 32 bytes (256 bits).
    pub key: String,
    /// Its id, written as `kid` in checkpoints (for verifiers holding several keys).
    #[serde(default)]
    pub key_id: Option<String>,
    /// A checkpoint at least every this many events (default 100).
    #[serde(default)]
    pub every_events: Option<u64>,
    /// And at the first event this many seconds after the last checkpoint (default 10).
    #[serde(default)]
    pub every_seconds: Option<u64>,
}

/// Validated audit settings.
pub fn settings(doc: &AuditDocument) -> Result<Settings, ConfigError> {
    let events = match doc.events.as_deref() {
        None | Some("all") => Events::All,
        Some("denials") => Events::Denials,
        Some(_) => return Err(err("audit.events", "must be \"all\" or \"denials\"")),
    };
    for (i, claim) in doc.claims.iter().enumerate() {
        if claim.is_empty()
            || claim.len() > 64
            || !claim.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(err(
                format!("audit.claims[{i}]"),
                "must be a top-level claim name of letters, digits, '-', '_'",
            ));
        }
        if doc.claims[..i].contains(claim) {
            return Err(err(format!("audit.claims[{i}]"), format!("\"{claim}\" is listed twice")));
        }
    }
    let checkpoint = match &doc.checkpoint {
        None => None,
        Some(c) => {
            let key = crate::b64::decode(c.key.as_bytes())
                .map_err(|_| err("audit.checkpoint.key", "must be base64url without padding"))?;
            if key.len() < 32 {
                return Err(err("audit.checkpoint.key", "must be at least 32 bytes (43 base64url characters)"));
            }
            if let Some(kid) = &c.key_id
                && (kid.is_empty()
                    || kid.len() > 64
                    || !kid.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
            {
                return Err(err("audit.checkpoint.key_id", "must be 1 to 64 visible ASCII characters, no quotes"));
            }
            let every_events = c.every_events.unwrap_or(100);
            if !(1..=1_000_000).contains(&every_events) {
                return Err(err("audit.checkpoint.every_events", "must be from 1 to 1000000"));
            }
            let every_seconds = c.every_seconds.unwrap_or(10);
            if !(1..=86_400).contains(&every_seconds) {
                return Err(err("audit.checkpoint.every_seconds", "must be from 1 to 86400"));
            }
            Some(CheckpointKey { key, key_id: c.key_id.clone(), every_events, every_seconds })
        }
    };
    let vendor = doc.vendor.clone().unwrap_or_else(|| "agent-iam".to_owned());
    if vendor.is_empty() || vendor.len() > 128 {
        return Err(err("audit.vendor", "must be 1 to 128 characters"));
    }
    Ok(Settings { events, claims: doc.claims.clone(), checkpoint, vendor })
}
