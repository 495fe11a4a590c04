//! The watermark of an incremental (`--mode upsert --since COL`) ingest: the greatest value of the
//! `--since` column the table's last incremental run read, kept in that run's snapshot summary as
//! `floe.watermark.<COL>` (so it lands in the same commit as the rows). A value is an integer, a
//! date or a timestamp, held as an `i64` in its column's unit (the value, days or microseconds since
//! the epoch) and stored as text that reads back exactly: `42`, `2024-03-01`,
//! `2024-03-01T12:00:00.000001Z` (a timestamp with time zone, in UTC) or
//! `2024-03-01T12:00:00.000001` (without). The [`Lookback`] is how far before it each run reads again.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::source::SourceColumn;
use crate::error::{Error, Result};
use crate::table::Table;

/// The snapshot summary property holding the watermark of `column`.
pub fn property(column: &str) -> String {
    format!("floe.watermark.{column}")
}

/// How far before the watermark each run reads again, so that a row committed late at the source
/// (its `--since` value set by a transaction that committed after an earlier run read) is still
/// read: safe, because the upsert of a row the table already holds changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookback {
    /// A span of time, for a date or timestamp column: `15m`, `2h`, `1d`.
    Time(Duration),
    /// A number of values, for an integer column: `1000`.
    Values(u64),
}

impl Lookback {
    /// Parse a duration (`15m`, `2h`, `1d`, `30s`) or a plain number of values (`1000`).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Lookback::Values(n));
        }
        crate::units::parse_duration(t).map(Lookback::Time).map_err(|_| {
            Error::invalid(format!(
                "invalid --lookback {text:?}: a duration (15m, 2h, 1d) for a date or timestamp column, or a \
                 number of values (1000) for an integer column"
            ))
        })
    }
}

impl std::fmt::Display for Lookback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookback::Time(d) => write!(f, "{}s", d.as_secs_f64()),
            Lookback::Values(n) => write!(f, "{n}"),
        }
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn epoch() -> NaiveDate {
    DateTime::UNIX_EPOCH.date_naive()
}

/// What a `--since` column holds, and so how its values are stored, compared and looked back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// An integer (a version, a sequence): the value.
    Integer,
    /// A date: days since 1970-01-01.
    Date,
    /// A timestamp: microseconds since the epoch; `utc` for a timestamp with time zone.
    Timestamp { utc: bool },
}

impl MarkKind {
    /// The kind of `column`, or why it cannot be a `--since` column.
    pub(crate) fn of(column: &SourceColumn) -> Result<Self> {
        match &column.arrow {
            DataType::Int32 | DataType::Int64 => Ok(MarkKind::Integer),
            DataType::Date32 => Ok(MarkKind::Date),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Ok(MarkKind::Timestamp { utc: tz.is_some() }),
            _ => Err(Error::invalid(format!(
                "--since {}: needs an integer, date or timestamp column; it is {}",
                column.name, column.source_type
            ))),
        }
    }

    /// The stored text of `value`.
    pub(crate) fn format(self, value: i64) -> String {
        match self {
            MarkKind::Integer => value.to_string(),
            MarkKind::Date => epoch()
                .checked_add_signed(chrono::TimeDelta::days(value))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| value.to_string()),
            MarkKind::Timestamp { utc } => match DateTime::from_timestamp_micros(value) {
                Some(t) if utc => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                Some(t) => t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                None => value.to_string(),
            },
        }
    }

    /// The value whose stored text is `text`.
    pub(crate) fn parse(self, text: &str) -> Result<i64> {
        let parsed = match self {
            MarkKind::Integer => text.parse::<i64>().ok(),
            MarkKind::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.signed_duration_since(epoch()).num_days()),
            MarkKind::Timestamp { utc: true } => DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_micros()),
            MarkKind::Timestamp { utc: false } => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp_micros()),
        };
        parsed.ok_or_else(|| {
            Error::invalid(format!(
                "the table's watermark {text:?} is not a {} (did the --since column change type?)",
                self.describe()
            ))
        })
    }

    fn describe(self) -> &'static str {
        match self {
            MarkKind::Integer => "integer",
            MarkKind::Date => "date",
            MarkKind::Timestamp { .. } => "timestamp",
        }
    }

    /// Whether `lookback` fits this kind: a duration for dates and timestamps, a number of values
    /// for integers (zero fits both).
    pub(crate) fn check(self, column: &str, lookback: &Lookback) -> Result<()> {
        match (self, lookback) {
            (MarkKind::Integer, Lookback::Values(_))
            | (MarkKind::Date | MarkKind::Timestamp { .. }, Lookback::Time(_))
            | (_, Lookback::Values(0)) => Ok(()),
            (MarkKind::Integer, Lookback::Time(_)) => Err(Error::invalid(format!(
                "--lookback: {column} is an integer column: give a number of values (1000), not a duration"
            ))),
            (_, Lookback::Values(_)) => Err(Error::invalid(format!(
                "--lookback: {column} is a {}: give a duration (15m, 2h, 1d), not a number",
                self.describe()
            ))),
        }
    }

    /// `value` less `lookback` (a date goes back whole days, at least the span).
    pub(crate) fn minus(self, value: i64, lookback: &Lookback) -> i64 {
        match (self, lookback) {
            (_, Lookback::Values(n)) => value.saturating_sub(i64::try_from(*n).unwrap_or(i64::MAX)),
            (MarkKind::Timestamp { .. }, Lookback::Time(d)) => {
                value.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            }
            (MarkKind::Date, Lookback::Time(d)) => {
                let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
                value.saturating_sub(
                    micros.div_euclid(MICROS_PER_DAY) + i64::from(micros % MICROS_PER_DAY != 0),
                )
            }
            (MarkKind::Integer, Lookback::Time(_)) => value,
        }
    }

    /// The lowest value of the kind that a source holds in practice (0001-01-01 for dates and
    /// timestamps): what `{since}` in a deletes query stands for on a first run.
    pub(crate) fn lowest(self) -> i64 {
        const YEAR_ONE_DAYS: i64 = -719_162;
        match self {
            MarkKind::Integer => i64::MIN,
            MarkKind::Date => YEAR_ONE_DAYS,
            MarkKind::Timestamp { .. } => YEAR_ONE_DAYS * MICROS_PER_DAY,
        }
    }
}

/// The greatest non-NULL value of `array` (an integer, date or microsecond timestamp column).
pub(crate) fn greatest(array: &dyn Array) -> Result<Option<i64>> {
    use arrow::compute::max;
    Ok(match array.data_type() {
        DataType::Int32 => max(array.as_primitive::<Int32Type>()).map(i64::from),
        DataType::Int64 => max(array.as_primitive::<Int64Type>()),
        DataType::Date32 => max(array.as_primitive::<Date32Type>()).map(i64::from),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            max(array.as_primitive::<TimestampMicrosecondType>())
        }
        other => return Err(Error::internal(format!("a watermark of type {other}"))),
    })
}

/// The watermark of `column` the table recorded last on `main`: the newest snapshot, walking back
/// from `main`'s head, whose summary carries it (other writers may have committed since), as
/// (snapshot id, text).
pub fn recorded(table: &Table, column: &str) -> Option<(i64, String)> {
    let key = property(column);
    let mut cur = table.metadata().current_snapshot().map(|s| s.snapshot_id());
    while let Some(id) = cur {
        let snapshot = table.metadata().snapshot_by_id(id)?;
        if let Some(text) = snapshot.summary().additional_properties.get(&key) {
            return Some((id, text.clone()));
        }
        cur = snapshot.parent_snapshot_id();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_text() {
        for (kind, value, text) in [
            (MarkKind::Integer, -42, "-42"),
            (MarkKind::Date, 19_784, "2024-03-02"),
            (MarkKind::Date, -719_162, "0001-01-01"),
            (
                MarkKind::Timestamp { utc: true },
                1_709_380_800_000_001,
                "2024-03-02T12:00:00.000001Z",
            ),
            (
                MarkKind::Timestamp { utc: false },
                1_709_380_800_123_456,
                "2024-03-02T12:00:00.123456",
            ),
        ] {
            assert_eq!(kind.format(value), text);
            assert_eq!(kind.parse(text).unwrap(), value);
        }
        assert!(MarkKind::Integer.parse("2024-03-02").is_err());
    }

    #[test]
    fn lookbacks_fit_their_kinds() {
        let minutes = Lookback::parse("15m").unwrap();
        assert_eq!(minutes, Lookback::Time(Duration::from_secs(900)));
        assert_eq!(Lookback::parse("1000").unwrap(), Lookback::Values(1000));
        assert!(Lookback::parse("soon").is_err());
        let ts = MarkKind::Timestamp { utc: true };
        assert_eq!(ts.minus(1_000_000_000, &minutes), 100_000_000);
        assert_eq!(
            MarkKind::Date.minus(10, &minutes),
            9,
            "a part of a day goes back a whole one"
        );
        assert_eq!(MarkKind::Date.minus(10, &Lookback::parse("2d").unwrap()), 8);
        assert_eq!(MarkKind::Integer.minus(10, &Lookback::Values(3)), 7);
        assert!(ts.check("updated_at", &Lookback::Values(5)).is_err());
        assert!(ts.check("updated_at", &Lookback::Values(0)).is_ok());
        assert!(MarkKind::Integer.check("version", &minutes).is_err());
    }
}
