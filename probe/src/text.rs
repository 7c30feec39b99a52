//! Rendering values for the log lines, normalised so that two runs (or two hosts) print the same thing for the
//! same behaviour. Nothing here panics: every slice access is checked.

use std::fmt::Write as _;

/// Longest rendering of one value; longer ones are cut and marked with their full length.
const MAX_VALUE: usize = 600;

/// proxy-wasm status by name.
pub fn status(s: u32) -> String {
    let name = match s {
        0 => "ok",
        1 => "not_found",
        2 => "bad_argument",
        3 => "serialization_failure",
        4 => "parse_failure",
        5 => "bad_expression",
        6 => "invalid_memory_access",
        7 => "empty",
        8 => "cas_mismatch",
        9 => "result_mismatch",
        10 => "internal_failure",
        11 => "broken_connection",
        12 => "unimplemented",
        n => return format!("status{n}"),
    };
    name.to_string()
}

/// Bytes as text: printable ASCII as is (but `|`, `\`, `;` and `=` escaped, they separate fields), the rest as
/// `\xNN`; cut at [`MAX_VALUE`].
pub fn bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "\"\"".to_string();
    }
    let mut out = String::new();
    for &c in b {
        if out.len() >= MAX_VALUE {
            let _ = write!(out, "...({} bytes)", b.len());
            break;
        }
        if (0x20..0x7f).contains(&c) && !matches!(c, b'|' | b'\\' | b';' | b'=') {
            out.push(char::from(c));
        } else {
            let _ = write!(out, "\\x{c:02x}");
        }
    }
    out
}

/// Serialize header pairs the proxy-wasm way: count, (key size, value size) per pair, then `key\0value\0`.
pub fn serialize_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn word(b: &[u8], at: usize) -> Option<usize> {
    let end = at.checked_add(4)?;
    let w: [u8; 4] = b.get(at..end)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(w)).ok()
}

/// Parse serialized pairs; `None` when malformed.
pub fn parse_pairs(b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let n = word(b, 0)?;
    let mut p = n.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::new();
    for i in 0..n {
        let at = i.checked_mul(8)?.checked_add(4)?;
        let kl = word(b, at)?;
        let vl = word(b, at.checked_add(4)?)?;
        let k = b.get(p..p.checked_add(kl)?)?.to_vec();
        p = p.checked_add(kl)?.checked_add(1)?;
        let v = b.get(p..p.checked_add(vl)?)?.to_vec();
        p = p.checked_add(vl)?.checked_add(1)?;
        out.push((k, v));
    }
    Some(out)
}

/// A header value, normalised where Envoy generates it per request.
pub fn header_value(name: &[u8], value: &[u8]) -> String {
    match name {
        b"x-request-id" => uuid_like(value),
        b"x-envoy-upstream-service-time" => "<ms>".to_string(),
        _ => bytes(value),
    }
}

fn uuid_like(v: &[u8]) -> String {
    if v.len() == 36 { "<uuid>".to_string() } else { bytes(v) }
}

/// Headers Envoy adds after the filter chain (the HTTP connection manager's `date`, `server` and
/// `connection`, the router's `x-envoy-expected-rq-timeout-ms`): only the access log (`proxy_on_log`) sees
/// them, they depend on Envoy's configuration, not on the host ABI, and are left out.
const ADDED_AFTER_FILTERS: [&[u8]; 4] = [b"date", b"server", b"connection", b"x-envoy-expected-rq-timeout-ms"];

/// Serialized pairs as `name=value;name=value`, normalised; `malformed(<len>)` when they do not parse.
pub fn pairs(b: &[u8]) -> String {
    match parse_pairs(b) {
        Some(p) if p.is_empty() => "[]".to_string(),
        Some(p) => {
            let items: Vec<String> = p
                .iter()
                .filter(|(k, _)| !ADDED_AFTER_FILTERS.contains(&k.as_slice()))
                .map(|(k, v)| format!("{}={}", bytes(k), header_value(k, v)))
                .collect();
            let mut s = items.join(";");
            if s.len() > MAX_VALUE.saturating_mul(2) {
                s = format!("{}...({} pairs)", s.get(..MAX_VALUE).unwrap_or(""), p.len());
            }
            s
        }
        None => format!("malformed({} bytes)", b.len()),
    }
}

/// A property value, normalised by path (dot-joined for display).
pub fn property(path: &str, v: &[u8]) -> String {
    match path {
        "request.id" => uuid_like(v),
        "request.time" | "request.duration" | "response.duration" if v.len() == 8 => "<int64>".to_string(),
        "source.address" | "destination.address" | "upstream.address" => without_port(v),
        "source.port" | "destination.port" | "upstream.port" if v.len() == 8 => "<port>".to_string(),
        _ => bytes(v),
    }
}

fn without_port(v: &[u8]) -> String {
    match v.iter().rposition(|c| *c == b':') {
        Some(i) => format!("{}:<port>", bytes(v.get(..i).unwrap_or(&[]))),
        None => bytes(v),
    }
}

/// A wall-clock time in nanoseconds: `plausible` between 2020 and 2100, else the number.
pub fn time(ns: u64) -> String {
    const Y2020: u64 = 1_577_836_800_000_000_000;
    const Y2100: u64 = 4_102_444_800_000_000_000;
    if (Y2020..Y2100).contains(&ns) { "plausible".to_string() } else { ns.to_string() }
}
