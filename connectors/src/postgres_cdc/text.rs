//! PostgreSQL's text output of values (what pgoutput sends and what the snapshot selects as
//! `::text`), parsed under the session settings of [`super::types::SESSION_OPTIONS`]: ISO dates,
//! UTC offsets, ISO-8601 intervals, hex bytea, one-dimensional array literals.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

pub(super) fn float(text: &str) -> Result<f64, std::num::ParseFloatError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => text.parse(),
    }
}

pub(super) fn hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?;
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `text` without a trailing ` BC`, and whether it had one (year 1 BC is year 0).
fn era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    }
}

fn bc_year(year: i32, bc: bool) -> i32 {
    if bc { 1 - year } else { year }
}

pub(super) fn date(text: &str) -> Result<NaiveDate, String> {
    let (t, bc) = era(text);
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|e| e.to_string())?;
    if !bc {
        return Ok(d);
    }
    use chrono::Datelike;
    d.with_year(bc_year(d.year(), true))
        .ok_or_else(|| "year out of range".to_owned())
}

pub(super) fn timestamp(text: &str) -> Result<NaiveDateTime, String> {
    let (t, bc) = era(text);
    let ts = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").map_err(|e| e.to_string())?;
    if !bc {
        return Ok(ts);
    }
    use chrono::Datelike;
    ts.with_year(bc_year(ts.year(), true))
        .ok_or_else(|| "year out of range".to_owned())
}

/// Microseconds of the day of `hh:mm:ss[.ffffff]` (`24:00:00` is the day's end).
pub(super) fn time_micros(text: &str) -> Option<i64> {
    if text == "24:00:00" {
        return Some(86_400_000_000);
    }
    let t = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    Some(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000))
}

/// Debezium's `ZonedTimestamp` text: ISO-8601 in UTC with `Z`, the fraction without trailing
/// zeros.
pub(super) fn zoned_timestamp(text: &str) -> Result<String, String> {
    if text == "infinity" || text == "-infinity" {
        return Ok(text.to_owned());
    }
    let (t, bc) = era(text);
    // The session's zone is UTC: PostgreSQL writes `+00`.
    let local = t
        .strip_suffix("+00")
        .ok_or_else(|| "not in UTC (the session's TimeZone is UTC)".to_owned())?;
    let ts = timestamp(&if bc {
        format!("{local} BC")
    } else {
        local.to_owned()
    })?;
    Ok(format!(
        "{}{}Z",
        ts.format("%Y-%m-%dT%H:%M:%S"),
        fraction(ts.nanosecond())
    ))
}

fn fraction(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!("{nanos:09}");
    format!(".{}", digits.trim_end_matches('0'))
}

/// Debezium's `ZonedTime` text: the time in UTC with `Z`.
pub(super) fn zoned_time(text: &str) -> Option<String> {
    let split = text.rfind(['+', '-'])?;
    let (time, zone) = text.split_at(split);
    let micros = time_micros(time)?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let mut parts = zone[1..].split(':').map(|p| p.parse::<i64>().ok());
    let hours = parts.next()??;
    let minutes = parts.next().flatten().unwrap_or(0);
    let seconds = parts.next().flatten().unwrap_or(0);
    let offset = sign * (hours * 3600 + minutes * 60 + seconds) * 1_000_000;
    let utc = (micros - offset).rem_euclid(86_400_000_000);
    let t = NaiveTime::from_num_seconds_from_midnight_opt(
        (utc / 1_000_000) as u32,
        ((utc % 1_000_000) * 1000) as u32,
    )?;
    Some(format!(
        "{}{}Z",
        t.format("%H:%M:%S"),
        fraction(t.nanosecond())
    ))
}

/// Debezium's `MicroDuration` of an ISO-8601 interval (`IntervalStyle=iso_8601`): months of
/// 30.4375 days (365.25 / 12), as Debezium counts them.
pub(super) fn interval_micros(text: &str) -> Option<i64> {
    let body = text.strip_prefix('P')?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let mut micros = 0f64;
    for (part, units) in [(date, "YMWD"), (time, "HMS")] {
        let mut rest = part;
        while !rest.is_empty() {
            let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
            let n: f64 = rest[..end].parse().ok()?;
            let unit = rest[end..].chars().next()?;
            if !units.contains(unit) {
                return None;
            }
            let day = 86_400e6;
            micros += n * match (units, unit) {
                ("YMWD", 'Y') => 12.0 * 30.4375 * day,
                ("YMWD", 'M') => 30.4375 * day,
                ("YMWD", 'W') => 7.0 * day,
                ("YMWD", _) => day,
                (_, 'H') => 3600e6,
                (_, 'M') => 60e6,
                _ => 1e6,
            };
            rest = &rest[end + 1..];
        }
    }
    Some(micros.round() as i64)
}

/// The items of a one-dimensional array's text (`{a,"b c",NULL}`); `None` for NULL items.
pub(super) fn array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let item = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '\\' => s.push(chars.next()?),
                    '"' => break,
                    c => s.push(c),
                }
            }
            Some(s)
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '"' {
                    return None;
                }
                s.push(c);
                chars.next();
            }
            (s != "NULL").then_some(s)
        };
        items.push(item);
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}
