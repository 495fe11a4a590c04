//! Sizes and durations as people write them on a command line or in a config file: `10MB`, `1GiB`,
//! `500KB`, a number of bytes; `5d`, `12h`, `30m`, `45s`, `250ms`.

use std::time::Duration;

use crate::error::{Error, Result};

/// Parse a size: `10MB`, `1GB`, `500KB`, `2GiB`, or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| Error::invalid(format!("invalid size {text:?}: expected e.g. 10MB or 1GB")))?;
    let factor: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(Error::invalid(format!(
                "invalid size unit in {text:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            )))
        }
    };
    Ok((value * factor).round() as u64)
}

/// Parse a duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d` (`5d`, `12h`, `0s`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::invalid(format!(
            "invalid duration {text:?}: expected e.g. 5d, 12h, 30m, 45s or 250ms"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(n.checked_mul(ms).ok_or_else(bad)?))
}

/// Parse a point in time: an RFC 3339 time, or a duration meaning that long before `now_ms`.
/// Returns milliseconds since the epoch.
pub fn parse_time_or_age(text: &str, now_ms: i64) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.timestamp_millis());
    }
    let age = parse_duration(text).map_err(|_| {
        Error::invalid(format!(
            "invalid time {text:?}: expected an age (5d, 12h) or an RFC 3339 time (2024-03-01T00:00:00Z)"
        ))
    })?;
    Ok(now_ms.saturating_sub(age.as_millis().min(i64::MAX as u128) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("128").unwrap(), 128);
        assert!(parse_size("10XB").is_err());
        assert_eq!(parse_duration("5d").unwrap(), Duration::from_secs(5 * 86_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "5", "d", "-1d", "1.5h", "3 weeks"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_time_or_age("1d", 86_400_000 * 3).unwrap(), 86_400_000 * 2);
        assert_eq!(parse_time_or_age("1970-01-02T00:00:00Z", 0).unwrap(), 86_400_000);
        assert!(parse_time_or_age("yesterday", 0).is_err());
    }
}
