//! Spark-style durations: `"30 seconds"`, `"500 ms"`, `"1 minute"`, `"2m"`, `"0"`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {0:?} as a duration: expected a number and a unit, such as \"30 seconds\", \"500 ms\" or \"1 minute\"")]
pub struct DurationError(pub String);

/// Parses a duration the way Spark's `Trigger.ProcessingTime` and `withWatermark` accept them
/// (number, optional space, unit; `interval` prefix allowed). A bare number is milliseconds, as in Spark.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    let t = text.trim();
    let t = t
        .strip_prefix("interval ")
        .or_else(|| t.strip_prefix("INTERVAL "))
        .unwrap_or(t)
        .trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| err())?;
    let unit_ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return Err(err()),
    };
    let ms = value * unit_ms;
    if !ms.is_finite() || ms > 1e15 {
        return Err(err());
    }
    Ok(Duration::from_micros((ms * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_forms_parse() {
        let cases: &[(&str, u64)] = &[
            ("30 seconds", 30_000),
            ("30seconds", 30_000),
            ("1 second", 1_000),
            ("500 ms", 500),
            ("500", 500),
            ("0", 0),
            ("0 seconds", 0),
            ("1 minute", 60_000),
            ("5 minutes", 300_000),
            ("2m", 120_000),
            ("1.5 s", 1_500),
            ("interval 10 seconds", 10_000),
            ("  1 HOUR ", 3_600_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_text() {
        for text in [
            "",
            "seconds",
            "ten seconds",
            "30 fortnights",
            "-5 s",
            "1e400 s",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }
}
