//! Everything before policy: the request canonicalised (method, path, host, method overrides), its one
//! credential found, and the token verified (through the cache).

use super::{Admitted, Engine, Failure, Scheme, TokenSource};
use crate::percent::{self, Plus};
use crate::request::mcp::McpRequest;
use crate::request::{
    self, Connection, Headers, MethodOverride, Request, RequestError, Seen, single_text, single_value,
};
use crate::token::claims::bound_key;
use crate::token::dpop::DpopMode;
use crate::token::{CryptoBackend, TokenError};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::ops::Range;
use std::rc::Rc;

impl Engine {
    /// Verifies a token, answering from the cache when these exact bytes verified before and are still valid.
    fn verify(
        &self,
        token: &[u8],
        headers: &Headers<'_>,
        now: i64,
        crypto: &dyn CryptoBackend,
    ) -> Result<Rc<Admitted>, TokenError> {
        if let Some(hit) = self.cache.try_borrow_mut().ok().and_then(|mut c| c.get(token, now)) {
            return Ok(hit);
        }
        let single = |name: &str| single_value(headers, name);
        let verified = self.verifier.verify_with(token, now, crypto, &single)?;
        let valid_until = verified.valid_until;
        let dpop = self
            .verifier
            .issuers()
            .iter()
            .find(|i| std::sync::Arc::ptr_eq(&i.issuer, &verified.issuer))
            .map_or(DpopMode::Off, |i| i.dpop);
        let bound_key = bound_key(&verified.claims)?.map(String::into_boxed_str);
        // Only a bound token can meet a proof, whose `ath` is checked against this.
        let token_sha256 = bound_key.as_ref().map(|_| Sha256::digest(token).into());
        let admitted = Rc::new(Admitted {
            identity: self.identity(&verified),
            token: verified,
            facts: OnceCell::new(),
            clean: Cell::new(0),
            dpop,
            bound_key,
            token_sha256,
        });
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.insert(token, admitted.clone(), now, valid_until);
        }
        Ok(admitted)
    }

    /// The token of a request, from the configured sources: `Ok(None)` when there is none, an error when
    /// there is more than one. Query parameter names are compared decoded (`access%5Ftoken` is
    /// `access_token`), and a query token is decoded as the upstream would read it.
    fn credential<'h>(
        &self,
        headers: &'h Headers<'h>,
        query: Option<&'h str>,
    ) -> Result<Option<Credential<'h>>, Failure> {
        let mut found: Option<Credential<'h>> = None;
        // `Authorization: DPoP <token>` (RFC 9449 §7.1) counts when some issuer takes DPoP; never in another
        // header (§7.1 excludes `Proxy-Authorization`).
        let dpop = self.settings.dpop.is_some();
        let mut count = 0usize;
        for source in &self.settings.token_sources {
            match source {
                TokenSource::Header { name, prefix } => {
                    for &(_, value) in headers.iter().filter(|(n, _)| *n == name.as_str()) {
                        count += 1;
                        let after = |p: &str| {
                            value
                                .split_at_checked(p.len())
                                .filter(|(scheme, rest)| scheme.eq_ignore_ascii_case(p.as_bytes()) && !rest.is_empty())
                                .map(|(_, rest)| rest)
                        };
                        let token = match prefix {
                            Some(p) => after(p).map(|t| (t, Scheme::Bearer)),
                            None => Some(value).filter(|v| !v.is_empty()).map(|t| (t, Scheme::Bearer)),
                        };
                        let token = token.or_else(|| {
                            (dpop && name == "authorization")
                                .then(|| after("DPoP "))
                                .flatten()
                                .map(|t| (t, Scheme::Dpop))
                        });
                        if found.is_none() {
                            found = token.map(|(t, scheme)| (Cow::Borrowed(t), scheme));
                        }
                    }
                }
                TokenSource::Query { name } => {
                    for pair in percent::query_pairs(query.unwrap_or("")) {
                        let decoded = pair.decoded_name().ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                        if decoded != name.as_str() {
                            continue;
                        }
                        count += 1;
                        let value = percent::decode(pair.value, Plus::Space)
                            .ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                        if found.is_none() && !value.is_empty() {
                            let token = match value {
                                Cow::Borrowed(v) => Cow::Borrowed(v.as_bytes()),
                                Cow::Owned(v) => Cow::Owned(v.into_bytes()),
                            };
                            found = Some((token, Scheme::Bearer));
                        }
                    }
                }
            }
        }
        match count {
            0 | 1 => Ok(found),
            _ => Err(Failure::TwoCredentials),
        }
    }

    /// The method a request asks the upstream to run instead of its own, as `settings.method_override`
    /// says: refused, ignored (the filter strips it), or returned to be evaluated too. Every query parameter
    /// name must decode, so that no spelling of `_method` goes unseen.
    fn method_override(&self, headers: &Headers<'_>, query: Option<&str>) -> Result<Option<String>, Failure> {
        let refuse = || Failure::BadRequest(RequestError::MethodOverride);
        let mut values: Vec<Cow<'_, str>> = Vec::new();
        for &(name, value) in headers {
            if request::is_method_override_header(name) {
                values.push(Cow::Borrowed(std::str::from_utf8(value).map_err(|_| refuse())?));
            }
        }
        if let Some(query) = query.filter(|q| request::may_carry_method_override(q)) {
            for pair in percent::query_pairs(query) {
                let name = pair.decoded_name().ok_or(Failure::BadRequest(RequestError::InvalidQuery))?;
                if request::is_method_override_parameter(&name) {
                    values.push(
                        percent::decode(pair.value, Plus::Space)
                            .ok_or(Failure::BadRequest(RequestError::InvalidQuery))?,
                    );
                }
            }
        }
        if values.is_empty() {
            return Ok(None);
        }
        match self.settings.method_override {
            MethodOverride::Reject => Err(refuse()),
            MethodOverride::Strip => Ok(None),
            MethodOverride::Evaluate => {
                // One method, however many places name it; anything else cannot be evaluated.
                let mut wanted: Option<String> = None;
                for value in &values {
                    let method = request::canonical_method(request::trim_ows(value)).map_err(|_| refuse())?;
                    match &wanted {
                        Some(w) if **w != *method => return Err(refuse()),
                        Some(_) => {}
                        None => wanted = Some(method.into_owned()),
                    }
                }
                Ok(wanted)
            }
        }
    }

    /// Canonicalises the request and verifies its token: everything before policy.
    /// `scheme` is set to how the credential was presented as soon as it is found, for the challenge of a
    /// refusal.
    pub(super) fn prepare<'h>(
        &self,
        headers: &'h Headers<'h>,
        now: i64,
        crypto: &dyn CryptoBackend,
        scheme: &mut Scheme,
    ) -> Result<Prepared<'h>, Failure> {
        let pseudo = Pseudo::of(headers);
        let raw_method = pseudo.method.ok_or(Failure::BadRequest(RequestError::MissingMethod))?;
        let method = request::canonical_method(raw_method).map_err(Failure::BadRequest)?;
        let raw_path = pseudo.path.ok_or(Failure::BadRequest(RequestError::MissingPath))?;
        let canonical =
            request::canonical_path_with(raw_path, self.settings.path_parameters).map_err(Failure::BadRequest)?;
        let method_override = self.method_override(headers, canonical.query)?;
        let (token, presented) = self.credential(headers, canonical.query)?.ok_or(Failure::NoToken)?;
        *scheme = presented;
        let verified = self.verify(&token, headers, now, crypto).map_err(|error| match error {
            TokenError::KeysUnavailable | TokenError::UnknownKey => match self.verifier.remote_issuer_of(&token) {
                Some(issuer) => Failure::RemoteKeys { issuer, error },
                None => Failure::Token(error),
            },
            _ => Failure::Token(error),
        })?;
        self.check_revocation(&verified, now)?;
        let host = match pseudo.authority {
            Some(h) => Some(request::canonical_host(h).map_err(Failure::BadRequest)?),
            None => None,
        };
        Ok(Prepared {
            raw_method,
            method_changed: *method != *raw_method,
            method,
            method_override,
            raw_path,
            path: canonical.path,
            with_parameters: canonical.with_parameters,
            query: canonical.query,
            host,
            verified,
        })
    }
}

/// A request's token and how it was presented.
type Credential<'h> = (Cow<'h, [u8]>, Scheme);

/// A canonical request with a verified token.
pub(super) struct Prepared<'h> {
    /// `:method` as sent.
    pub(super) raw_method: &'h str,
    pub(super) method: Cow<'h, str>,
    /// Whether the client spelled the method otherwise (`get`): the canonical one is forwarded.
    pub(super) method_changed: bool,
    /// The method an override asks for, under `method_override: evaluate`.
    pub(super) method_override: Option<String>,
    pub(super) raw_path: &'h str,
    /// The path rules decide on.
    pub(super) path: Cow<'h, str>,
    /// The path to forward instead, under `path_parameters: keep`.
    pub(super) with_parameters: Option<String>,
    pub(super) query: Option<&'h str>,
    pub(super) host: Option<Cow<'h, str>>,
    pub(super) verified: Rc<Admitted>,
}

/// A [`Prepared`] request owning its parts: what the decision on a body takes from the decision on its
/// headers, so that it does not canonicalise the same headers again (a twentieth of the decision on a
/// `tools/call`). The texts share one buffer: one allocation rather than six.
#[derive(Debug)]
pub(super) struct Detached {
    text: String,
    raw_method: Range<usize>,
    method: Range<usize>,
    raw_path: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    host: Option<Range<usize>>,
    method_override: Option<String>,
    with_parameters: Option<String>,
    verified: Rc<Admitted>,
}

impl Detached {
    pub(super) fn of(p: &Prepared<'_>) -> Detached {
        let parts = [p.raw_method, &p.method, p.raw_path, &p.path, p.query.unwrap_or_default()];
        let host = p.host.as_deref();
        let mut text = String::with_capacity(parts.iter().map(|t| t.len()).sum::<usize>() + host.map_or(0, str::len));
        let mut put = |part: &str| {
            text.push_str(part);
            text.len() - part.len()..text.len()
        };
        let [raw_method, method, raw_path, path, query] = parts.map(&mut put);
        let host = host.map(&mut put);
        Detached {
            raw_method,
            method,
            raw_path,
            path,
            query: p.query.map(|_| query),
            host,
            text,
            method_override: p.method_override.clone(),
            with_parameters: p.with_parameters.clone(),
            verified: p.verified.clone(),
        }
    }

    /// The request as it was prepared.
    pub(super) fn prepared(&self) -> Prepared<'_> {
        let part = |range: &Range<usize>| self.text.get(range.clone()).unwrap_or_default();
        Prepared {
            raw_method: part(&self.raw_method),
            method_changed: part(&self.method) != part(&self.raw_method),
            method: Cow::Borrowed(part(&self.method)),
            method_override: self.method_override.clone(),
            raw_path: part(&self.raw_path),
            path: Cow::Borrowed(part(&self.path)),
            with_parameters: self.with_parameters.clone(),
            query: self.query.as_ref().map(part),
            host: self.host.as_ref().map(|h| Cow::Borrowed(part(h))),
            verified: self.verified.clone(),
        }
    }
}

impl<'h> Prepared<'h> {
    pub(super) fn view<'a>(
        &'a self,
        headers: &'a Headers<'a>,
        conn: Connection<'a>,
        now: i64,
        mcp: Option<&'a McpRequest>,
    ) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            query: self.query,
            host: self.host.as_deref(),
            headers,
            now,
            peer: conn.peer,
            route: conn.route,
            route_tag: conn.route_tag,
            mcp,
            hypothetical: false,
        }
    }
}

/// The pseudo-headers a decision reads, each only if it appears exactly once and is text: one pass over the
/// headers instead of one per name.
#[derive(Default)]
pub(super) struct Pseudo<'h> {
    pub(super) method: Option<&'h str>,
    pub(super) path: Option<&'h str>,
    pub(super) authority: Option<&'h str>,
}

impl<'h> Pseudo<'h> {
    pub(super) fn of(headers: &'h Headers<'h>) -> Pseudo<'h> {
        let (mut method, mut path, mut authority) = (Seen::Absent, Seen::Absent, Seen::Absent);
        for &(name, value) in headers {
            match name {
                ":method" => method.add(value),
                ":path" => path.add(value),
                ":authority" => authority.add(value),
                _ => {}
            }
        }
        // Absent, repeated or not text: none.
        let text = |seen| match seen {
            Seen::Once(v) => std::str::from_utf8(v).ok(),
            Seen::Absent | Seen::Repeated => None,
        };
        Pseudo { method: text(method), path: text(path), authority: text(authority) }
    }
}

pub(super) fn request_id(headers: &Headers<'_>) -> String {
    single_text(headers, "x-request-id")
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
        .to_owned()
}
