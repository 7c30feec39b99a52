//! The protected headers this thread accepted most recently, by their base64url text.
//!
//! An issuer's tokens carry one header byte for byte (the same `alg`, `kid` and `typ`), and what a header
//! means is a function of those bytes alone. A token whose header segment is one of the few kept here takes
//! the answer read then, instead of decoding and parsing its header again. The comparison is of the whole
//! segment, so a header that differs anywhere is read afresh.
//!
//! Only accepted headers are kept, and only those whose `kid` and `typ` are slices of the decoded bytes (no
//! escapes); anything else is read every time. A few are kept, not one, so that tokens of several issuers
//! interleaved on one worker (the multi-vendor case) all find theirs. Per thread: each Envoy worker runs its
//! own VM, and nothing here is shared or locked.

use super::{Algorithm, JoseHeader, TokenError};
use std::borrow::Cow;
use std::cell::RefCell;

/// How many headers are kept; the oldest gives way.
const KEPT: usize = 4;

/// Longest header segment kept (real ones are 36 to 100 characters).
pub(super) const MAX_B64: usize = 128;

/// Longest decoded header kept.
pub(super) const MAX_BYTES: usize = MAX_B64 / 4 * 3;

/// Where a member's value is in the decoded header.
type Span = Option<(usize, usize)>;

#[derive(Clone, Copy)]
struct Kept {
    b64: [u8; MAX_B64],
    /// 0: an empty place (a header segment is never empty).
    b64_len: usize,
    decoded: [u8; MAX_BYTES],
    decoded_len: usize,
    alg: Algorithm,
    kid: Span,
    typ: Span,
}

impl Kept {
    const EMPTY: Kept = Kept {
        b64: [0; MAX_B64],
        b64_len: 0,
        decoded: [0; MAX_BYTES],
        decoded_len: 0,
        alg: Algorithm::ES256,
        kid: None,
        typ: None,
    };

    fn is(&self, b64: &[u8]) -> bool {
        self.b64.get(..self.b64_len) == Some(b64)
    }
}

struct Recent {
    kept: [Kept; KEPT],
    /// The place the next header takes.
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent { kept: [Kept::EMPTY; KEPT], next: 0 }) };
}

/// A header recalled by [`recall`]: its decoded bytes are at the front of the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recalled {
    len: usize,
    alg: Algorithm,
    kid: Span,
    typ: Span,
}

impl Recalled {
    /// The header, borrowing from the buffer [`recall`] copied it into.
    pub(super) fn view(self, decoded: &[u8]) -> Result<JoseHeader<'_>, TokenError> {
        // An accepted header is UTF-8 with its members at character boundaries, and only accepted ones are
        // kept; were that ever not so, the token is refused rather than the header believed.
        let unreadable = TokenError::Malformed("header is not a JSON object");
        let text = decoded.get(..self.len).and_then(|d| std::str::from_utf8(d).ok()).ok_or(unreadable)?;
        let member = |at: Span| match at {
            None => Ok(None),
            Some((start, end)) => text.get(start..end).map(|s| Some(Cow::Borrowed(s))).ok_or(unreadable),
        };
        Ok(JoseHeader { alg: self.alg, kid: member(self.kid)?, typ: member(self.typ)? })
    }
}

/// If `b64` is the segment of a kept header, that header, its decoded bytes copied into `out`.
pub(super) fn recall(b64: &[u8], out: &mut [u8]) -> Option<Recalled> {
    RECENT
        .try_with(|recent| {
            let recent = recent.try_borrow().ok()?;
            let kept = recent.kept.iter().find(|kept| kept.is(b64))?;
            let decoded = kept.decoded.get(..kept.decoded_len)?;
            out.get_mut(..decoded.len())?.copy_from_slice(decoded);
            Some(Recalled { len: decoded.len(), alg: kept.alg, kid: kept.kid, typ: kept.typ })
        })
        .ok()?
}

/// Keeps `header`, accepted from `decoded`, the decoding of `b64`, when it fits and its members are slices of
/// `decoded`.
pub(super) fn remember(b64: &[u8], decoded: &[u8], header: &JoseHeader<'_>) {
    let span = |member: &Option<Cow<'_, str>>| match member {
        None => Some(None),
        Some(Cow::Borrowed(s)) => {
            let start = (s.as_ptr() as usize).checked_sub(decoded.as_ptr() as usize)?;
            (start + s.len() <= decoded.len()).then_some(Some((start, start + s.len())))
        }
        Some(Cow::Owned(_)) => None,
    };
    let (Some(kid), Some(typ)) = (span(&header.kid), span(&header.typ)) else {
        return;
    };
    let _ = RECENT.try_with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return;
        };
        let at = recent.next;
        let Some(kept) = recent.kept.get_mut(at) else {
            return;
        };
        let (Some(b64_to), Some(decoded_to)) = (kept.b64.get_mut(..b64.len()), kept.decoded.get_mut(..decoded.len()))
        else {
            return;
        };
        b64_to.copy_from_slice(b64);
        decoded_to.copy_from_slice(decoded);
        kept.b64_len = b64.len();
        kept.decoded_len = decoded.len();
        kept.alg = header.alg;
        kept.kid = kid;
        kept.typ = typ;
        recent.next = (at + 1) % KEPT;
    });
}
