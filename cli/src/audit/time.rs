//! Times of `audit query`: events carry `time` in ms since the epoch; people write RFC 3339 or "the last 24h".

use jiff::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

pub const AFTER_HELP: &str = "Times: --since and --until take RFC 3339 (2026-12-01T00:00:00Z, \
2026-12-01T09:00:00+01:00) or a duration back from now: 7d, 24h, 30m, 10s. --since is inclusive, --until \
exclusive. The table shows times in UTC.";

/// `T` as ms since the epoch: RFC 3339, or now minus a duration `<n>d|h|m|s`.
pub fn parse(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic)
        && let Ok(n) = text[..text.len() - 1].parse::<u32>()
    {
        let ms = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1_000,
            _ => return Err(format!("{text}: a duration is <n>d, <n>h, <n>m or <n>s")),
        };
        return Ok(now_ms - i64::from(n) * ms);
    }
    text.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{text}: neither RFC 3339 (2026-12-01T00:00:00Z) nor a duration (7d, 24h, 30m): {e}"))
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 in UTC, with milliseconds only when there are some.
pub fn format(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_durations() {
        assert_eq!(parse("1970-01-02T00:00:00Z", 0), Ok(86_400_000));
        assert_eq!(parse("1970-01-01T01:00:00+01:00", 0), Ok(0));
        assert_eq!(parse("7d", 7 * 86_400_000), Ok(0));
        assert_eq!(parse("30m", 3_600_000), Ok(1_800_000));
        assert!(parse("7y", 0).is_err());
        assert!(parse("yesterday", 0).is_err());
        assert_eq!(format(1_796_083_200_000), "2026-12-01T00:00:00Z");
        assert_eq!(format(1_796_083_200_123), "2026-12-01T00:00:00.123Z");
    }
}
