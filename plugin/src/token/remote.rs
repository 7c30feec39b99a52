//! Remote key sets: when to fetch an issuer's JWKS, what to do with the answer, and how long the last good
//! set may be used. Pure state, no proxy-wasm: the filter asks [`RemoteJwks::due`] on every tick, performs
//! the HTTP call through an Envoy cluster, and feeds back [`RemoteJwks::on_response`] or
//! [`RemoteJwks::on_failure`].
//!
//! Rules: fetch at start; refresh after `Cache-Control: max-age` bounded to `[min_refresh, max_refresh]`
//! (`refresh` without one); retry failures with exponential backoff from 1 s up to `min_refresh`; a token
//! with an unknown `kid` may trigger a refetch at most once per `unknown_kid_interval`; a bad answer never
//! replaces the last good set, which stays usable for `max_stale` after it was fetched.

use super::KeySet;
use std::fmt;

/// Validated remote key-set settings of one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwksConfig {
    /// Envoy cluster the call goes to.
    pub cluster: String,
    /// Request path of the JWKS.
    pub path: String,
    /// `:authority` of the call.
    pub authority: String,
    /// Call timeout, milliseconds.
    pub timeout_ms: u64,
    /// Refresh period without `max-age`, seconds.
    pub refresh: i64,
    /// Lower bound on the refresh period (and the backoff ceiling), seconds.
    pub min_refresh: i64,
    /// Upper bound on the refresh period, seconds.
    pub max_refresh: i64,
    /// Least time between two refetches triggered by unknown `kid`s, seconds.
    pub unknown_kid_interval: i64,
    /// How long after its fetch the last good set may still be used, seconds.
    pub max_stale: i64,
    /// Largest accepted response body, bytes.
    pub max_bytes: usize,
    /// How long a request waits for a key set before it is answered 503, milliseconds.
    pub wait_timeout_ms: u64,
}

/// Why a fetch did not produce keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No answer: the cluster is unknown, down, or the call timed out.
    NoResponse,
    /// An HTTP status other than 200.
    Status(u16),
    /// A body over the size cap.
    TooLarge(usize),
    /// Not a valid JWKS, or one without usable keys.
    Invalid(String),
}

impl FetchError {
    /// Stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::NoResponse => "no_response",
            FetchError::Status(_) => "bad_status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NoResponse => f.write_str("no response (cluster unavailable or timeout)"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::TooLarge(n) => write!(f, "response body of {n} bytes is over the limit"),
            FetchError::Invalid(why) => write!(f, "not a usable JWKS: {why}"),
        }
    }
}

/// The fetch state of one issuer's key set.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    config: RemoteJwksConfig,
    keys: Option<KeySet>,
    fetched_at: i64,
    next_fetch: i64,
    in_flight: bool,
    failures: u32,
    last_kid_refetch: Option<i64>,
}

impl RemoteJwks {
    /// A key set not fetched yet; the first fetch is due at once.
    pub fn new(config: RemoteJwksConfig, now: i64) -> RemoteJwks {
        RemoteJwks {
            config,
            keys: None,
            fetched_at: 0,
            next_fetch: now,
            in_flight: false,
            failures: 0,
            last_kid_refetch: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RemoteJwksConfig {
        &self.config
    }

    /// Whether a fetch should start now.
    pub fn due(&self, now: i64) -> bool {
        !self.in_flight && now >= self.next_fetch
    }

    /// A fetch was dispatched.
    pub fn started(&mut self) {
        self.in_flight = true;
    }

    /// A copy of this state for another root context: its own fetches start afresh (the call in flight
    /// belongs to the root context that made it).
    pub fn adopt(&self) -> RemoteJwks {
        RemoteJwks { in_flight: false, ..self.clone() }
    }

    /// Whether a fetch is under way.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Handles an HTTP answer: on success the new keys replace the old ones and are returned.
    pub fn on_response(
        &mut self,
        now: i64,
        status: u16,
        cache_control: Option<&str>,
        body: &[u8],
    ) -> Result<&KeySet, FetchError> {
        self.in_flight = false;
        let parsed = if status != 200 {
            Err(FetchError::Status(status))
        } else if body.len() > self.config.max_bytes {
            Err(FetchError::TooLarge(body.len()))
        } else {
            match KeySet::from_bytes(body) {
                Ok(keys) if keys.is_empty() => Err(FetchError::Invalid("no keys".into())),
                Ok(keys) => Ok(keys),
                Err(e) => Err(FetchError::Invalid(e.to_string())),
            }
        };
        match parsed {
            Err(e) => {
                self.backoff(now);
                Err(e)
            }
            Ok(keys) => {
                let period = max_age(cache_control).unwrap_or(self.config.refresh);
                self.next_fetch = now + period.clamp(self.config.min_refresh, self.config.max_refresh);
                self.failures = 0;
                self.fetched_at = now;
                Ok(self.keys.insert(keys))
            }
        }
    }

    /// Handles a call that produced no answer.
    pub fn on_failure(&mut self, now: i64) {
        self.in_flight = false;
        self.backoff(now);
    }

    fn backoff(&mut self, now: i64) {
        let delay = 1i64.checked_shl(self.failures.min(20)).unwrap_or(i64::MAX).min(self.config.min_refresh.max(1));
        self.failures = self.failures.saturating_add(1);
        self.next_fetch = now + delay;
    }

    /// A token named a `kid` this set lacks: refetch now unless one was triggered less than
    /// `unknown_kid_interval` ago. Returns whether a refetch is (or already was) scheduled for now.
    pub fn unknown_kid(&mut self, now: i64) -> bool {
        if self.in_flight || self.next_fetch <= now {
            return true;
        }
        if self.last_kid_refetch.is_some_and(|t| now - t < self.config.unknown_kid_interval) {
            return false;
        }
        self.last_kid_refetch = Some(now);
        self.next_fetch = now;
        true
    }

    /// The keys, if there are some no older than `max_stale`.
    pub fn usable_keys(&self, now: i64) -> Option<&KeySet> {
        self.keys.as_ref().filter(|_| now - self.fetched_at <= self.config.max_stale)
    }

    /// Seconds since the last successful fetch.
    pub fn age(&self, now: i64) -> Option<i64> {
        self.keys.as_ref().map(|_| now - self.fetched_at)
    }

    /// Consecutive failed fetches.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` count as 0 (bounded by the caller).
fn max_age(value: Option<&str>) -> Option<i64> {
    let mut out = None;
    for directive in value?.split(',') {
        let d = directive.trim();
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(0);
        }
        if let Some((name, v)) = d.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            out = v.trim().trim_matches('"').parse::<u32>().ok().map(i64::from);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn config() -> RemoteJwksConfig {
        RemoteJwksConfig {
            cluster: "idp".into(),
            path: "/jwks".into(),
            authority: "idp.example".into(),
            timeout_ms: 1000,
            refresh: 300,
            min_refresh: 30,
            max_refresh: 3600,
            unknown_kid_interval: 60,
            max_stale: 900,
            max_bytes: 4096,
            wait_timeout_ms: 2000,
        }
    }

    #[test]
    fn fetches_at_start_and_refreshes_by_max_age_within_bounds() {
        let mut r = RemoteJwks::new(config(), 1000);
        assert!(r.due(1000));
        r.started();
        assert!(!r.due(1000));
        assert!(r.on_response(1000, 200, Some("public, max-age=120"), JWKS.as_bytes()).is_ok());
        assert!(!r.due(1119) && r.due(1120));
        r.started();
        assert!(r.on_response(1120, 200, Some("max-age=5"), JWKS.as_bytes()).is_ok());
        assert!(!r.due(1149) && r.due(1150), "bounded below by min_refresh");
        r.started();
        assert!(r.on_response(1150, 200, Some("max-age=999999"), JWKS.as_bytes()).is_ok());
        assert!(!r.due(1150 + 3599) && r.due(1150 + 3600), "bounded above by max_refresh");
        r.started();
        assert!(r.on_response(5000, 200, None, JWKS.as_bytes()).is_ok());
        assert!(r.due(5300), "refresh without max-age");
        assert_eq!(r.age(5010), Some(10));
    }

    #[test]
    fn failures_back_off_and_keep_the_last_good_set_until_stale() {
        let mut r = RemoteJwks::new(config(), 0);
        r.started();
        assert!(r.on_response(0, 200, None, JWKS.as_bytes()).is_ok());
        for (i, (status, body)) in
            [(503u16, JWKS), (200, "{"), (200, r#"{"keys": []}"#), (200, r#"{"keys": [{"kty": "oct"}]}"#)]
                .into_iter()
                .enumerate()
        {
            let now = 300 + i as i64 * 100;
            r.started();
            assert!(r.on_response(now, status, None, body.as_bytes()).is_err());
            assert!(r.usable_keys(now).is_some(), "the last good set is kept");
        }
        assert_eq!(r.failures(), 4);
        r.started();
        assert_eq!(r.on_response(700, 200, None, &[b' '; 5000]).err(), Some(FetchError::TooLarge(5000)));
        assert!(r.usable_keys(900).is_some() && r.usable_keys(901).is_none(), "stale after max_stale");
        // Backoff: 1, 2, 4, ... capped at min_refresh.
        let mut b = RemoteJwks::new(config(), 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            b.started();
            b.on_failure(now);
            let next = (now..now + 100).find(|t| b.due(*t)).unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(b.usable_keys(now).is_none());
    }

    #[test]
    fn unknown_kid_refetches_at_most_once_per_interval() {
        let mut r = RemoteJwks::new(config(), 0);
        r.started();
        assert!(r.on_response(0, 200, None, JWKS.as_bytes()).is_ok());
        assert!(!r.due(10));
        assert!(r.unknown_kid(10));
        assert!(r.due(10));
        r.started();
        assert!(r.unknown_kid(11), "a fetch is under way");
        assert!(r.on_response(12, 200, None, JWKS.as_bytes()).is_ok());
        assert!(!r.unknown_kid(40), "within the interval of the last triggered refetch");
        assert!(!r.due(40));
        assert!(r.unknown_kid(70));
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age(Some("max-age=60")), Some(60));
        assert_eq!(max_age(Some("public, MAX-AGE = 60 , must-revalidate")), Some(60));
        assert_eq!(max_age(Some("no-store")), Some(0));
        assert_eq!(max_age(Some("max-age=-1")), None);
        assert_eq!(max_age(Some("private")), None);
        assert_eq!(max_age(None), None);
    }
}
