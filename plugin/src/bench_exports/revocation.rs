//! Exports for the revocation benchmark (`bench/src/bin/revocation_bench.rs`): what the revocation check costs
//! inside the `.wasm` (issue 20, item 5).
//!
//! - `agent_iam_bench_revocation_load(ptr, len) -> i32`: takes a JSON document `{"config": {...plugin
//!   configuration...}, "time": seconds, "claims": {...}, "token": "JWT", "revoked_token": "JWT", "headers":
//!   [[name, value]], "small": N, "selectors": [...selector documents...], "variants": [{"claims": {...},
//!   "kind": "jti"}]}` (a buffer from `proxy_on_memory_allocate`, freed here). Indexes the first `small`
//!   selectors and all of them as two [`RevocationSet`]s, extracts the [`TokenFacts`] of the token of
//!   `claims`, and builds two engines from `config` as the gateway does ([`crate::config::parse`]): one without
//!   revocations, one with every selector installed as the shared set ([`Engine::set_revocations`]); each
//!   decides the request of `headers` with `token` once (which verifies it and fills the cache). Before
//!   answering it checks that nothing measures nothing: the token is clean under both sets, every variant is
//!   refused by both sets with its kind, both engines allow `token`, and only the one with revocations refuses
//!   `revoked_token` (401, `revoked`). Returns 0, or a negative error code.
//! - `agent_iam_bench_revocation_run(phase, iterations) -> u32`: runs one phase `iterations` times; see the
//!   `PHASE_*` constants. Phases answer how many iterations found the token clean (or allowed); [`PHASE_REFUSALS`]
//!   answers how many refusals of the variants it saw.

use super::{ERR_ARGUMENT, ERR_CONFIG, ERR_DOCUMENT, ERR_TOKEN, leak_headers};
use crate::engine::{Engine, Verdict};
use crate::policy::cases::token_from_claims;
use crate::request::Header;
use crate::revocation::document::{SelectorDocument, selectors};
use crate::revocation::{Closed, Refusal, RevocationSet, TokenFacts};
use crate::token::{PureRust, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

/// [`RevocationSet::check`] of the token's facts with the first `small` selectors (10).
pub const PHASE_CHECK_SMALL: u32 = 0;
/// [`RevocationSet::check`] of the token's facts with every selector (10,000).
pub const PHASE_CHECK_LARGE: u32 = 1;
/// [`Engine::decide`] of the request with the cached token, no revocations configured.
pub const PHASE_DECIDE_PLAIN: u32 = 2;
/// [`Engine::decide`] of the same request with every selector installed as the shared set: the token's memo
/// (clean under this set's generation) applies.
pub const PHASE_DECIDE_REVOCATIONS: u32 = 3;
/// [`TokenFacts::of`] the token: what the first check of a token computes once (cached with it).
pub const PHASE_FACTS: u32 = 4;
/// Every variant checked against both sets: answers the refusals of the right kind (not timed: a check).
pub const PHASE_REFUSALS: u32 = 5;
/// Nothing: the loop alone, the floor under the other phases' figures.
pub const PHASE_LOOP: u32 = 6;

/// The selectors are refused, or the token is not clean under them.
const ERR_SELECTORS: i32 = -10;
/// A variant is not refused with its kind.
const ERR_VARIANT: i32 = -11;
/// An engine does not decide as expected (allow the token; refuse the revoked token only with revocations).
const ERR_DECIDE: i32 = -12;

#[derive(Deserialize)]
struct Document {
    config: Value,
    time: i64,
    claims: Map<String, Value>,
    token: String,
    revoked_token: String,
    headers: Vec<(String, String)>,
    small: usize,
    selectors: Vec<SelectorDocument>,
    variants: Vec<Variant>,
}

#[derive(Deserialize)]
struct Variant {
    claims: Map<String, Value>,
    kind: String,
}

struct Bench {
    now: i64,
    token: VerifiedToken,
    facts: TokenFacts,
    small: RevocationSet,
    large: RevocationSet,
    variants: Vec<(TokenFacts, String)>,
    plain: Engine,
    revoking: Engine,
    headers: Vec<Header<'static>>,
}

thread_local! {
    static REVOCATION: RefCell<Option<Bench>> = const { RefCell::new(None) };
}

/// Whether `verdict` forwards the request.
fn allowed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Allow { dry_run: None, .. })
}

fn load(bytes: &[u8]) -> Result<Bench, i32> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|_| ERR_DOCUMENT)?;
    let now = doc.time;
    let all = selectors(&doc.selectors, "selectors").map_err(|_| ERR_SELECTORS)?;
    if doc.small == 0 || doc.small > all.len() {
        return Err(ERR_ARGUMENT);
    }
    let small = RevocationSet::new(all.iter().take(doc.small).cloned().collect(), Closed::None);
    let large = RevocationSet::new(all.clone(), Closed::None);
    let token = token_from_claims(doc.claims).map_err(|_| ERR_TOKEN)?;
    let facts = TokenFacts::of(&token);
    if small.check(&facts, now).is_some() || large.check(&facts, now).is_some() {
        return Err(ERR_SELECTORS);
    }
    let mut variants = Vec::with_capacity(doc.variants.len());
    for v in doc.variants {
        let facts = TokenFacts::of(&token_from_claims(v.claims).map_err(|_| ERR_TOKEN)?);
        for set in [&small, &large] {
            match set.check(&facts, now) {
                Some(Refusal::Revoked(kind)) if kind.label() == v.kind => {}
                _ => return Err(ERR_VARIANT),
            }
        }
        variants.push((facts, v.kind));
    }

    let config = serde_json::to_vec(&doc.config).map_err(|_| ERR_DOCUMENT)?;
    let plain = crate::config::parse(&config).map_err(|_| ERR_CONFIG)?;
    let revoking = crate::config::parse(&config).map_err(|_| ERR_CONFIG)?;
    revoking.set_revocations(Rc::new(RevocationSet::new(all, Closed::None)));
    let with = |token: &str| {
        let mut pairs = doc.headers.clone();
        pairs.push(("authorization".into(), format!("Bearer {token}")));
        leak_headers(pairs)
    };
    let headers = with(&doc.token);
    let revoked_headers = with(&doc.revoked_token);
    let refused_as_revoked = |v: &Verdict| matches!(v, Verdict::Deny(d) if d.status == 401 && d.reason == "revoked");
    if !allowed(&plain.decide(&headers, now, &PureRust))
        || !allowed(&revoking.decide(&headers, now, &PureRust))
        || !allowed(&plain.decide(&revoked_headers, now, &PureRust))
        || !refused_as_revoked(&revoking.decide(&revoked_headers, now, &PureRust))
        // Cached now: refused again from the cache.
        || !refused_as_revoked(&revoking.decide(&revoked_headers, now, &PureRust))
    {
        return Err(ERR_DECIDE);
    }
    Ok(Bench { now, token, facts, small, large, variants, plain, revoking, headers })
}

/// Loads the revocation benchmark's sets, token and engines; see the module documentation.
///
/// # Safety
///
/// As [`super::agent_iam_bench_load`]: `ptr` must be a buffer of `len` bytes from this module's
/// `proxy_on_memory_allocate(len)`, not used by the caller afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn agent_iam_bench_revocation_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller's contract is `load_into`'s.
    unsafe { super::load_into(ptr, len, &REVOCATION, load, |_| 0) }
}

/// Runs `phase` `iterations` times; see the `PHASE_*` constants (0 before a successful load, or for an unknown
/// phase).
#[unsafe(no_mangle)]
pub extern "C" fn agent_iam_bench_revocation_run(phase: u32, iterations: u32) -> u32 {
    REVOCATION.with(|b| {
        let Ok(guard) = b.try_borrow() else { return 0 };
        let Some(r) = guard.as_ref() else { return 0 };
        let mut count = 0u32;
        for _ in 0..iterations {
            count = count.wrapping_add(match phase {
                PHASE_CHECK_SMALL => u32::from(r.small.check(black_box(&r.facts), black_box(r.now)).is_none()),
                PHASE_CHECK_LARGE => u32::from(r.large.check(black_box(&r.facts), black_box(r.now)).is_none()),
                PHASE_DECIDE_PLAIN => u32::from(allowed(&r.plain.decide(&r.headers, r.now, &PureRust))),
                PHASE_DECIDE_REVOCATIONS => u32::from(allowed(&r.revoking.decide(&r.headers, r.now, &PureRust))),
                PHASE_FACTS => u32::from(!TokenFacts::of(black_box(&r.token)).agent().is_empty()),
                PHASE_REFUSALS => {
                    let refused = |set: &RevocationSet| {
                        r.variants
                            .iter()
                            .filter(|(facts, kind)| {
                                matches!(set.check(facts, r.now), Some(Refusal::Revoked(k)) if k.label() == kind)
                            })
                            .count() as u32
                    };
                    refused(&r.small) + refused(&r.large)
                }
                PHASE_LOOP => black_box(1),
                _ => return 0,
            });
        }
        count
    })
}
