//! RFC 3339 timestamps to and from UTC microseconds since the Unix epoch.
//!
//! The calendar (valid dates, day counts) and the formatting are chrono's. The parser's byte
//! scanning stays hand-written: it sits on the processor's hot path (one call per record), is
//! faster than `DateTime::parse_from_rfc3339` (BENCHMARKS.md, session 8) and accepts exactly what
//! the seeds' producers write (chrono also takes leap seconds and more than 9 fraction digits).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, SecondsFormat};

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not of the form YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM)")]
    Shape,
    #[error("date out of range")]
    Date,
    #[error("time of day out of range")]
    Time,
    #[error("more than 9 fractional digits")]
    Fraction,
    #[error("UTC offset out of range")]
    Offset,
}

/// Days since 1970-01-01 of a date, or `None` when there is no such date (month 13, 30 February).
fn days_since_epoch(year: i64, month: u32, day: u32) -> Option<i64> {
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(i64::from(date.to_epoch_days()))
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimestampError> {
    let part = b.get(at..at + n).ok_or(TimestampError::Shape)?;
    part.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(TimestampError::Shape)
        }
    })
}

fn expect(b: &[u8], at: usize, what: &[u8]) -> Result<(), TimestampError> {
    match b.get(at) {
        Some(c) if what.contains(c) => Ok(()),
        _ => Err(TimestampError::Shape),
    }
}

/// Parses an RFC 3339 timestamp with 0 to 9 fractional digits and any offset into UTC microseconds.
/// Digits beyond the microsecond are truncated, as Spark does.
pub fn parse_rfc3339_micros(s: &str) -> Result<i64, TimestampError> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    expect(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b"Tt ")?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b":")?;
    let second = digits(b, 17, 2)?;
    let days = days_since_epoch(i64::from(year), month, day).ok_or(TimestampError::Date)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TimestampError::Time);
    }

    let mut at = 19;
    let mut micros = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 6 {
                micros = micros * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return Err(TimestampError::Shape);
        }
        if n > 9 {
            return Err(TimestampError::Fraction);
        }
        for _ in n..6 {
            micros *= 10;
        }
    }

    let offset_seconds = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let oh = digits(b, at + 1, 2)?;
            expect(b, at + 3, b":")?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimestampError::Offset);
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(TimestampError::Shape),
    };

    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    Ok(seconds * MICROS_PER_SECOND + micros)
}

/// Writes UTC microseconds the way Python's `datetime.isoformat()` does for an aware UTC value:
/// `2025-11-07T07:30:38.730729+00:00`, and without the fraction when the microseconds are 0.
pub fn write_python_isoformat(out: &mut String, micros: i64) {
    let format = if micros.rem_euclid(MICROS_PER_SECOND) == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    match DateTime::from_timestamp_micros(micros) {
        Some(t) => out.push_str(&t.to_rfc3339_opts(format, false)),
        // Beyond chrono's ±262,000 years: no timestamp this pipeline parses or makes.
        None => {
            let _ = write!(out, "{micros} µs since the epoch");
        }
    }
}

/// `YYYYmmdd_HHMMSS` in UTC, the time part of the seed's output file names.
pub fn compact_utc(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y%m%d_%H%M%S").to_string(),
        None => micros.to_string(),
    }
}

/// The current wall-clock time in UTC microseconds.
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(micros: i64) -> String {
        let mut s = String::new();
        write_python_isoformat(&mut s, micros);
        s
    }

    const T0: i64 = 1_762_500_638_730_729; // 2025-11-07T07:30:38.730729Z

    #[test]
    fn accepted_forms_normalise_to_utc_micros() {
        let cases: &[(&str, i64)] = &[
            ("2025-11-07T07:30:38.730729+00:00", T0),
            ("2025-11-07T07:30:38.730729Z", T0),
            ("2025-11-07t07:30:38.730729z", T0),
            ("2025-11-07 07:30:38.730729+00:00", T0),
            ("2025-11-07T07:30:38+00:00", T0 - 730_729),
            ("2025-11-07T07:30:38.7Z", T0 - 30_729),
            ("2025-11-07T07:30:38.730Z", T0 - 729),
            ("2025-11-07T07:30:38.730729999Z", T0),
            ("2025-11-07T07:30:38.7307291Z", T0),
            ("2025-11-07T13:00:38.730729+05:30", T0),
            ("2025-11-06T23:30:38.730729-08:00", T0),
            ("2025-11-07T07:30:38.730729-00:00", T0),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999999Z", -1),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
            ("2000-02-29T12:00:00Z", 951_825_600_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339_micros(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn refused_forms_say_why() {
        use TimestampError::*;
        let cases: &[(&str, TimestampError)] = &[
            ("", Shape),
            ("yesterday", Shape),
            ("2025-11-07", Shape),
            ("2025-11-07T07:30:38", Shape),
            ("2025-11-07T07:30:38.Z", Shape),
            ("2025-11-07T07:30:38.123+0000", Shape),
            ("2025-11-07T07:30:38Z ", Shape),
            ("2025/11/07T07:30:38Z", Shape),
            ("1762500638", Shape),
            ("2025-13-07T07:30:38Z", Date),
            ("2025-02-29T07:30:38Z", Date),
            ("2025-11-00T07:30:38Z", Date),
            ("2025-11-07T24:00:00Z", Time),
            ("2025-11-07T07:60:00Z", Time),
            ("2025-11-07T07:30:38.1234567890Z", Fraction),
            ("2025-11-07T07:30:38+24:00", Offset),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339_micros(text), Err(*want), "{text:?}");
        }
    }

    #[test]
    fn python_isoformat_round_trips() {
        for micros in [
            T0,
            T0 - 730_729,
            0,
            -1,
            1_709_164_800_000_001,
            4_102_444_799_999_999,
        ] {
            let text = iso(micros);
            assert_eq!(parse_rfc3339_micros(&text), Ok(micros), "{text}");
        }
        assert_eq!(iso(T0), "2025-11-07T07:30:38.730729+00:00");
        assert_eq!(iso(T0 - 730_729), "2025-11-07T07:30:38+00:00");
        assert_eq!(iso(T0 - 730_000), "2025-11-07T07:30:38.000729+00:00");
    }

    #[test]
    fn compact_name_time_is_utc() {
        assert_eq!(compact_utc(T0), "20251107_073038");
    }
}
