//! DPoP at the resource (RFC 9449 §7): the credential's scheme against its issuer's mode, and for a `DPoP`
//! presentation the proof checked against the request, bound to the token's key (`cnf.jkt`), under the
//! gateway's nonces, and recorded in the replay cache every worker shares.
//!
//! With delegation the proof key must be the one the token binds in its top-level `cnf`, which is the
//! presenter's, the current actor's: keys named inside `act` are never consulted, so an earlier actor's key
//! cannot present the token.

use super::{Admitted, Engine, Failure, RouteSelector};
use crate::bytes::fixed_time_eq;
use crate::policy::path::Segments;
use crate::request::{Connection, Headers};
use crate::shared_data::SharedStore;
use crate::token::CryptoBackend;
use crate::token::dpop::nonce::{NonceKey, NonceRules};
use crate::token::dpop::proof::{self, Expected};
use crate::token::dpop::replay::{Refusal, ReplayCache};
use crate::token::dpop::{DpopError, DpopMode, ProofKeys, ProofRules, htu};
use std::cell::RefCell;
use std::rc::Rc;

/// Where the replay cache lives, once the filter gives it ([`Engine::set_shared_store`]).
#[derive(Default)]
pub(super) struct StoreSlot(RefCell<Option<Rc<dyn SharedStore>>>);

impl std::fmt::Debug for StoreSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let installed = self.0.try_borrow().map(|s| s.is_some()).unwrap_or(true);
        f.debug_tuple("StoreSlot").field(&installed).finish()
    }
}

impl StoreSlot {
    fn get(&self) -> Option<Rc<dyn SharedStore>> {
        self.0.try_borrow().ok()?.clone()
    }
}

impl Clone for StoreSlot {
    fn clone(&self) -> StoreSlot {
        StoreSlot(RefCell::new(self.get()))
    }
}

/// How the request presented its credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    /// No credential was found.
    #[default]
    None,
    /// `Authorization: Bearer`, or a configured source (a header of its own, a query parameter).
    Bearer,
    /// `Authorization: DPoP`.
    Dpop,
}

/// The `dpop` section of a configuration, validated.
#[derive(Debug)]
pub struct DpopSettings {
    /// How proofs are checked.
    pub rules: ProofRules,
    /// The gateway's external origin, normalised: proofs' `htu` is this and the request's path.
    pub origin: String,
    /// Other origins for some routes, first match wins.
    pub routes: Vec<OriginRoute>,
    /// The shared replay cache's shape.
    pub replay: ReplayCache,
    /// Server nonces, when required.
    pub nonce: Option<NonceRules>,
    /// The configured nonce secret; without one the filter installs a secret shared by the workers.
    pub nonce_secret: Option<NonceKey>,
    /// Whether some issuer takes `Bearer` (challenges offer it).
    pub bearer_accepted: bool,
}

/// An origin for the requests of some routes, selected as MCP endpoints are.
#[derive(Debug, Clone)]
pub struct OriginRoute {
    /// The requests it is for.
    pub select: RouteSelector,
    /// The origin, normalised.
    pub origin: String,
}

impl DpopSettings {
    /// The external origin of a request (its canonical path, Envoy route and tag).
    fn origin_for(&self, path: &str, conn: &Connection<'_>) -> &str {
        if self.routes.is_empty() {
            return &self.origin;
        }
        let segments = Segments::new(path);
        self.routes.iter().find(|r| r.select.selects(&segments, conn)).map_or(&self.origin, |r| &r.origin)
    }
}

/// A `DPoP` presentation of a verified, bound token: the request and the token's binding.
pub struct Presentation<'a> {
    /// The request's headers (its `DPoP` headers are read).
    pub headers: &'a Headers<'a>,
    /// `:method` as sent.
    pub method: &'a str,
    /// `:path` as sent (the query is dropped here).
    pub raw_path: &'a str,
    /// The canonical path, for choosing the origin.
    pub path: &'a str,
    /// Envoy's route and tag, for choosing the origin.
    pub conn: Connection<'a>,
    /// The token's `cnf.jkt`.
    pub bound_key: &'a str,
    /// SHA-256 of the token.
    pub token_sha256: &'a [u8; 32],
}

/// Where an accepted proof is recorded against replays.
#[derive(Clone, Copy)]
pub enum Recording<'s> {
    /// In this store (none: the store is unavailable, and the proof is refused with 503).
    In(Option<&'s dyn SharedStore>),
    /// Nowhere: the request was decided before and its proof recorded then.
    AlreadyDone,
}

impl DpopSettings {
    /// Every check of a proof presented with a bound token (RFC 9449 §4.3, §7.1): one `DPoP` header, the proof
    /// itself against the request at its configured origin, its key against `cnf.jkt`, the nonce, and the
    /// replay cache. Answers a fresh nonce for the response when the proof's is accepted but no longer the
    /// current one; a refusal carries the nonce to hand out, if any.
    pub fn check(
        &self,
        p: &Presentation<'_>,
        keys: &ProofKeys,
        nonce_key: Option<&NonceKey>,
        recording: Recording<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Option<String>, (DpopError, Option<String>)> {
        let refuse = |error: DpopError| (error, None);
        let mut proofs = p.headers.iter().filter(|(name, _)| *name == "dpop").map(|&(_, value)| value);
        let proof = match (proofs.next(), proofs.next()) {
            (None, _) => return Err(refuse(DpopError::MissingProof)),
            (Some(_), Some(_)) => return Err(refuse(DpopError::RepeatedProof)),
            (Some(proof), None) => proof,
        };
        let path_only = p.raw_path.split(['?', '#']).next().unwrap_or(p.raw_path);
        let Some(path) = htu::normalise_path(path_only) else { return Err(refuse(DpopError::WrongUri)) };
        let expected_htu = format!("{}{path}", self.origin_for(p.path, &p.conn));
        let expected = Expected { method: p.method, htu: &expected_htu, token_sha256: p.token_sha256, now };
        let checked = proof::check(proof, &expected, &self.rules, keys, crypto).map_err(refuse)?;
        if !fixed_time_eq(checked.header.jkt.as_bytes(), p.bound_key.as_bytes()) {
            return Err(refuse(DpopError::KeyMismatch));
        }
        let mut fresh_nonce = None;
        if let Some(rules) = self.nonce {
            let key = nonce_key.ok_or(refuse(DpopError::Unavailable))?;
            let current = rules.issue(key, now);
            let error = match &checked.nonce {
                None => Some(DpopError::NonceMissing),
                Some(nonce) if !rules.accepts(key, nonce, now) => Some(DpopError::NonceInvalid),
                // Accepted, but from an earlier period: the response brings the current one (§8.2).
                Some(nonce) if current.as_deref() != Some(nonce.as_str()) => {
                    fresh_nonce = current.clone();
                    None
                }
                Some(_) => None,
            };
            if let Some(error) = error {
                return Err((error, current));
            }
        }
        let store = match recording {
            Recording::AlreadyDone => return Ok(fresh_nonce),
            Recording::In(store) => store.ok_or(refuse(DpopError::Unavailable))?,
        };
        let expires = checked.iat.saturating_add(self.rules.window());
        match self.replay.record(store, &checked.id, checked.iat, expires, now) {
            Ok(()) => Ok(fresh_nonce),
            Err(Refusal::Replayed) => Err(refuse(DpopError::Replayed)),
            Err(Refusal::TooOld) => Err(refuse(DpopError::OlderThanReplayCache)),
            Err(Refusal::Unavailable(_)) => Err(refuse(DpopError::Unavailable)),
        }
    }
}

/// The request facts a proof is checked against.
pub(super) struct ProofRequest<'a> {
    pub(super) scheme: Scheme,
    /// `:method` as sent.
    pub(super) method: &'a str,
    /// `:path` as sent (the query is dropped here).
    pub(super) raw_path: &'a str,
    /// The canonical path, for choosing the origin.
    pub(super) path: &'a str,
    pub(super) conn: Connection<'a>,
}

impl Engine {
    /// Gives the engine the store its replay cache lives in (proxy-wasm shared data in the filter). Without
    /// one, every DPoP presentation is refused with 503.
    pub fn set_shared_store(&self, store: Rc<dyn SharedStore>) {
        if let Ok(mut slot) = self.shared_store.0.try_borrow_mut() {
            *slot = Some(store);
        }
    }

    /// Gives the engine the secret its nonces are made with, when the configuration names none (the filter
    /// keeps one in shared data, so that every worker makes and accepts the same nonces).
    pub fn set_nonce_key(&self, key: NonceKey) {
        if let Ok(mut slot) = self.nonce_key.try_borrow_mut() {
            *slot = Some(key);
        }
    }

    /// Whether the configuration has DPoP nonces without a secret of its own, so the filter must install one.
    pub fn needs_nonce_key(&self) -> bool {
        self.settings.dpop.as_ref().is_some_and(|d| d.nonce.is_some() && d.nonce_secret.is_none())
    }

    /// Whether the configuration checks DPoP proofs (the filter then installs the replay cache's store).
    pub fn checks_dpop(&self) -> bool {
        self.settings.dpop.is_some()
    }

    /// The nonce key in use: the configured one, else the one the filter installed.
    fn nonce_key(&self) -> Option<NonceKey> {
        let dpop = self.settings.dpop.as_ref()?;
        dpop.nonce_secret.clone().or_else(|| self.nonce_key.try_borrow().ok()?.clone())
    }

    /// RFC 9449 §7 for a verified token: the scheme it came with against its issuer's mode and its binding,
    /// and for `DPoP` every check of the proof. `record`: the proof is recorded in the replay cache (false when
    /// the request was decided before and its proof recorded then). Answers a fresh nonce for the response
    /// when the proof's is accepted but no longer the current one.
    pub(super) fn check_dpop(
        &self,
        admitted: &Admitted,
        request: &ProofRequest<'_>,
        headers: &Headers<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
        record: bool,
    ) -> Result<Option<String>, Failure> {
        let refuse = |error: DpopError| Failure::Dpop { error, nonce: None };
        let bound = admitted.bound_key.as_deref();
        match request.scheme {
            Scheme::Dpop => {}
            // §7.2: a bound token is never accepted as a bearer token, whatever the issuer's mode.
            _ if bound.is_some() => return Err(refuse(DpopError::BoundTokenAsBearer)),
            _ if admitted.dpop == DpopMode::Required => return Err(refuse(DpopError::DpopRequired)),
            _ => return Ok(None),
        }
        let (Some(dpop), true) = (self.settings.dpop.as_ref(), admitted.dpop.accepts_dpop()) else {
            return Err(refuse(DpopError::DpopNotAccepted));
        };
        let bound_key = bound.ok_or(refuse(DpopError::TokenNotBound))?;
        let token_sha256 = admitted.token_sha256.as_ref().ok_or(refuse(DpopError::TokenNotBound))?;
        let presentation = Presentation {
            headers,
            method: request.method,
            raw_path: request.raw_path,
            path: request.path,
            conn: request.conn,
            bound_key,
            token_sha256,
        };
        let store = self.shared_store.get();
        let recording = if record { Recording::In(store.as_deref()) } else { Recording::AlreadyDone };
        dpop.check(&presentation, &self.proof_keys, self.nonce_key().as_ref(), recording, now, crypto)
            .map_err(|(error, nonce)| Failure::Dpop { error, nonce })
    }
}
