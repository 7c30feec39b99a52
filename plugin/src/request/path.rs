//! The canonical path: traversal resolved, slashes merged, ambiguous encodings refused, segment parameters
//! handled as configured.

use super::RequestError;
use crate::percent;
use std::borrow::Cow;

/// What a request path's segment parameters (`/admin;x=1/users`, RFC 3986 §3.3) mean to the gateway.
/// Tomcat, Spring and Jetty drop `;...` from every segment before routing, so `/admin;x=1/users` is their
/// `/admin/users`: a rule on `/admin/**` must see it as that, or refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refuse any segment with parameters (400 `path_parameters`). The default.
    #[default]
    Reject,
    /// Decide on the segments without their parameters, and forward exactly that path.
    Strip,
    /// Decide on the segments without their parameters, and forward the path with them, for upstreams that
    /// use matrix parameters.
    Keep,
}

/// A canonical request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The path rules decide on: canonical, without segment parameters, without the query.
    pub path: Cow<'a, str>,
    /// Under [`PathParameters::Keep`], when the path has parameters: the same canonical path with them, which
    /// is what is forwarded.
    pub with_parameters: Option<String>,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
}

/// The canonical path (without the query) and the raw query string, refusing segment parameters (see
/// [`canonical_path_with`]).
pub fn canonical_path(raw: &str) -> Result<(Cow<'_, str>, Option<&str>), RequestError> {
    canonical_path_with(raw, PathParameters::Reject).map(|c| (c.path, c.query))
}

/// The canonical path and the raw query string.
///
/// Steps: split off the query; refuse fragments, backslashes, controls and non-ASCII; decode percent-encoded
/// unreserved characters and upper-case the hex of the rest; refuse `%2F`, `%5C`, `%00`, `%23`, `%3B`;
/// handle segment parameters as `parameters` says (a dot segment with parameters, `..;x`, and a segment that
/// is nothing but parameters, `/;x`, are refused in every mode); merge slashes; resolve `.` and `..` (never
/// above the root).
pub fn canonical_path_with(raw: &str, parameters: PathParameters) -> Result<CanonicalPath<'_>, RequestError> {
    // One pass for both: `str` pattern searches cost more to set up than a path takes to scan.
    let (mut question, mut fragment) = (None, false);
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'?' if question.is_none() => question = Some(i),
            b'#' => fragment = true,
            _ => {}
        }
    }
    let (path, query) = match question.and_then(|q| raw.split_at_checked(q)) {
        Some((p, q)) => (p, q.strip_prefix('?')),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(RequestError::MissingPath);
    }
    if fragment {
        return Err(RequestError::AmbiguousPath);
    }
    if query.is_some_and(|q| q.bytes().any(|b| !(0x21..0x7f).contains(&b))) {
        return Err(RequestError::InvalidPath);
    }
    if is_canonical(path) {
        return Ok(CanonicalPath { path: Cow::Borrowed(path), with_parameters: None, query });
    }
    let decoded = decode_path(path.as_bytes())?;
    let mut has_parameters = false;
    for segment in decoded.split('/') {
        let Some((name, _)) = segment.split_once(';') else { continue };
        // `..;x` is a literal segment to us but `..` to servers that strip parameters, and `;x` alone is an
        // empty segment to them: read differently by different parsers, so refused whatever the mode.
        if matches!(name, "" | "." | "..") {
            return Err(RequestError::AmbiguousPath);
        }
        has_parameters = true;
    }
    if !has_parameters {
        return Ok(CanonicalPath { path: Cow::Owned(remove_dot_segments(&decoded)), with_parameters: None, query });
    }
    if parameters == PathParameters::Reject {
        return Err(RequestError::PathParameters);
    }
    // No segment with parameters is empty or a dot segment, so both forms resolve the same segments.
    let stripped: Vec<&str> = decoded.split('/').map(|s| s.split_once(';').map_or(s, |(name, _)| name)).collect();
    let path = remove_dot_segments(&stripped.join("/"));
    let with_parameters = (parameters == PathParameters::Keep).then(|| remove_dot_segments(&decoded));
    Ok(CanonicalPath { path: Cow::Owned(path), with_parameters, query })
}

/// The common case, checked in one pass: visible ASCII without `%`, `\\` or `;`, no empty segment, no segment
/// starting with `.` (so no dot segment). Such a path is its own canonical form.
fn is_canonical(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() == Some(&b'/')
        && b.iter().all(|&c| (0x21..0x7f).contains(&c) && c != b'%' && c != b'\\' && c != b';')
        && !b.windows(2).any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

fn decode_path(path: &[u8]) -> Result<String, RequestError> {
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'\\' => return Err(RequestError::AmbiguousPath),
            b'%' => {
                let byte = percent::escape_at(path, i).ok_or(RequestError::InvalidPath)?;
                let (hi, lo) = (byte >> 4, byte & 15);
                match byte {
                    // `%3B` is a segment-parameter delimiter to servers that decode before they split.
                    b'/' | b'\\' | 0 | b'#' | b';' => return Err(RequestError::AmbiguousPath),
                    _ if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => out.push(char::from(byte)),
                    _ => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(hi)]));
                        out.push(char::from(HEX[usize::from(lo)]));
                    }
                }
                i += 3;
            }
            0x21..=0x7e => {
                out.push(char::from(b));
                i += 1;
            }
            _ => return Err(RequestError::InvalidPath),
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 over `/`-separated segments, with empty segments (repeated slashes) merged away.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.len() > 1 && (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."));
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    out
}
