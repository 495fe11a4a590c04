//! Work units: how an extraction is split so that units run in parallel and a failed one is retried
//! alone. A unit is a range of a timestamp or date column (whole days), a range of an integer key, a
//! hash bucket of a column, one input file, or a byte range of one large CSV that starts at a
//! record boundary. Ranges are packed from a histogram of the source, so empty ranges get no unit and
//! a skewed day gets a unit of its own.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a source is split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionBy {
    /// Whole days of a timestamp or date column: `date(COL)`.
    Date(String),
    /// Ranges of an integer key: `id(COL)`.
    Id(String),
    /// Hash buckets of a column: `hash(COL)`.
    Hash(String),
    /// One unit per input file: `file`.
    File,
    /// Byte ranges of one large CSV file: `bytes`.
    Bytes,
    /// One unit for everything.
    Single,
}

impl PartitionBy {
    /// Parse `date(COL)`, `id(COL)`, `hash(COL)`, `file` or `bytes`.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        let arg = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
        };
        if let Some(c) = arg("date(") {
            return Ok(PartitionBy::Date(c));
        }
        if let Some(c) = arg("id(") {
            return Ok(PartitionBy::Id(c));
        }
        if let Some(c) = arg("hash(") {
            return Ok(PartitionBy::Hash(c));
        }
        match t {
            "file" => Ok(PartitionBy::File),
            "bytes" => Ok(PartitionBy::Bytes),
            "none" => Ok(PartitionBy::Single),
            _ => Err(Error::invalid(format!(
                "invalid --partition-by {text:?}: expected date(COL), id(COL), hash(COL), file or bytes"
            ))),
        }
    }
}

impl std::fmt::Display for PartitionBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionBy::Date(c) => write!(f, "date({c})"),
            PartitionBy::Id(c) => write!(f, "id({c})"),
            PartitionBy::Hash(c) => write!(f, "hash({c})"),
            PartitionBy::File => f.write_str("file"),
            PartitionBy::Bytes => f.write_str("bytes"),
            PartitionBy::Single => f.write_str("none"),
        }
    }
}

/// How many units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitCount {
    /// This many (fewer when the source has fewer non-empty ranges).
    Exactly(usize),
    /// About [`ROWS_PER_UNIT`] rows each, between [`MIN_AUTO_UNITS`] and [`MAX_AUTO_UNITS`] units.
    Auto,
}

impl UnitCount {
    /// Parse `N` or `auto`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "auto" => Ok(UnitCount::Auto),
            n => match n.parse::<usize>() {
                Ok(0) | Err(_) => Err(Error::invalid(format!(
                    "invalid --units {text:?}: expected a positive number or auto"
                ))),
                Ok(n) => Ok(UnitCount::Exactly(n)),
            },
        }
    }

    /// The number of units for `estimated_rows` rows.
    pub fn resolve(&self, estimated_rows: u64) -> usize {
        match self {
            UnitCount::Exactly(n) => *n,
            UnitCount::Auto => {
                (estimated_rows.div_ceil(ROWS_PER_UNIT) as usize).clamp(MIN_AUTO_UNITS, MAX_AUTO_UNITS)
            }
        }
    }
}

/// `auto`: about this many rows per unit (the sizing of the extraction design this follows).
pub const ROWS_PER_UNIT: u64 = 50_000;
/// `auto`: at least this many units.
pub const MIN_AUTO_UNITS: usize = 10;
/// `auto`: at most this many units.
pub const MAX_AUTO_UNITS: usize = 100;

/// What one unit reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Bounds {
    /// Everything.
    All,
    /// `lo <= COL < hi`, as the source's own literals (days as `YYYY-MM-DD`, ids as integers). The
    /// first unit has no lower bound and the last no upper bound, so that together the units cover
    /// every value, whatever the histogram saw.
    Range {
        /// The column.
        column: String,
        /// Inclusive lower bound.
        lo: Option<String>,
        /// Exclusive upper bound.
        hi: Option<String>,
        /// Also the rows where the column is NULL (the first unit takes them).
        nulls: bool,
        /// The bounds are dates (else integers).
        dates: bool,
    },
    /// Rows whose hash of COL falls in bucket `bucket` of `buckets` (NULLs go to bucket 0).
    Hash {
        /// The column.
        column: String,
        /// This bucket.
        bucket: u32,
        /// Of this many.
        buckets: u32,
    },
    /// One whole file.
    File {
        /// Its URI.
        uri: String,
    },
    /// Bytes `start..end` of a CSV file (`start` at a record boundary), header line from the file's
    /// first line.
    ByteRange {
        /// Its URI.
        uri: String,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
}

/// One work unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Its number in the plan, from 0.
    pub index: usize,
    /// What it reads.
    pub bounds: Bounds,
    /// Rows the plan expects in it.
    pub estimated_rows: u64,
}

impl Unit {
    /// `kind bounds` for the plan's printout.
    pub fn describe(&self) -> String {
        match &self.bounds {
            Bounds::All => "all rows".to_string(),
            Bounds::Range {
                column,
                lo,
                hi,
                nulls,
                dates,
            } => format!(
                "{} {}{column}{}{}",
                if *dates { "date" } else { "id" },
                lo.as_ref().map(|l| format!("{l} <= ")).unwrap_or_default(),
                hi.as_ref().map(|h| format!(" < {h}")).unwrap_or_default(),
                if *nulls { " (and NULLs)" } else { "" }
            ),
            Bounds::Hash {
                column,
                bucket,
                buckets,
            } => format!("hash({column}) mod {buckets} = {bucket}"),
            Bounds::File { uri } => format!("file {uri}"),
            Bounds::ByteRange { uri, start, end } => format!("bytes {start}..{end} of {uri}"),
        }
    }
}

/// Contiguous ranges over `column` from packed histogram bins: bin k covers `[lo_k, lo_{k+1})`, the
/// first is open below (and takes the NULLs), the last open above.
pub(crate) fn ranges<T: ToString>(column: &str, packed: &[(T, T, u64)], dates: bool) -> Vec<(Bounds, u64)> {
    let n = packed.len();
    (0..n)
        .map(|k| {
            let bounds = Bounds::Range {
                column: column.to_string(),
                lo: (k > 0).then(|| packed[k].0.to_string()),
                hi: (k + 1 < n).then(|| packed[k + 1].0.to_string()),
                nulls: k == 0,
                dates,
            };
            (bounds, packed[k].2)
        })
        .collect()
}

/// Pack a histogram (ascending `(bucket lower bound, bucket upper bound, rows)`, empty buckets
/// absent) into `units` contiguous ranges of about equal rows (fewer only when there are fewer buckets). A bucket is never split: one
/// heavier than a fair share becomes a unit of its own, and the other buckets share the remaining
/// units (so one skewed day does not swallow the units the other days should have had).
pub(crate) fn pack_histogram<T: Clone>(histogram: &[(T, T, u64)], units: usize) -> Vec<(T, T, u64)> {
    if histogram.is_empty() || units == 0 {
        return Vec::new();
    }
    let mut heavy = vec![false; histogram.len()];
    let target = loop {
        let rest_rows: u64 = histogram
            .iter()
            .zip(&heavy)
            .filter(|(_, h)| !**h)
            .map(|((_, _, n), _)| n)
            .sum();
        let heavy_units = heavy.iter().filter(|h| **h).count();
        let rest_units = units.saturating_sub(heavy_units).max(1) as u64;
        let target = rest_rows.div_ceil(rest_units).max(1);
        let (mut changed, mut heavy_count) = (false, heavy_units);
        for (i, (_, _, n)) in histogram.iter().enumerate() {
            if !heavy[i] && *n >= target && heavy_count + 1 < units {
                heavy[i] = true;
                heavy_count += 1;
                changed = true;
            }
        }
        if !changed {
            break target;
        }
    };
    // Greedy: a unit takes buckets while it stays within its share, so there are at least as many
    // units as asked for; then the lightest neighbouring pair is merged until there are no more.
    let mut out: Vec<((T, T, u64), bool)> = Vec::new();
    for ((lo, hi, n), is_heavy) in histogram.iter().zip(&heavy) {
        match out.last_mut() {
            Some(((_, chi, cn), false)) if !*is_heavy && *cn + n <= target => {
                *chi = hi.clone();
                *cn += n;
            }
            _ => out.push(((lo.clone(), hi.clone(), *n), *is_heavy)),
        }
    }
    while out.len() > units {
        let lightest = (0..out.len() - 1)
            .filter(|&i| !out[i].1 && !out[i + 1].1)
            .min_by_key(|&i| out[i].0 .2 + out[i + 1].0 .2);
        let Some(i) = lightest else { break };
        let ((_, hi, n), _) = out.remove(i + 1);
        out[i].0 .1 = hi;
        out[i].0 .2 += n;
    }
    out.into_iter().map(|(unit, _)| unit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sizes() {
        assert_eq!(
            PartitionBy::parse("date(created_at)").unwrap(),
            PartitionBy::Date("created_at".into())
        );
        assert_eq!(
            PartitionBy::parse(" id(id) ").unwrap(),
            PartitionBy::Id("id".into())
        );
        assert!(PartitionBy::parse("date()").is_err());
        assert!(PartitionBy::parse("range(x)").is_err());
        assert_eq!(UnitCount::parse("auto").unwrap().resolve(1_000), 10);
        assert_eq!(UnitCount::Auto.resolve(5_000_000), 100);
        assert_eq!(UnitCount::Auto.resolve(2_000_000), 40);
        assert!(UnitCount::parse("0").is_err());
    }

    #[test]
    fn packs_skewed_histograms() {
        // A skewed bucket stays whole; empty stretches are simply absent.
        let h = vec![(0, 1, 10), (1, 2, 10), (5, 6, 1000), (9, 10, 10), (10, 11, 10)];
        let packed = pack_histogram(&h, 4);
        assert_eq!(packed.iter().map(|p| p.2).sum::<u64>(), 1040);
        assert!(packed.iter().any(|p| p.2 == 1000));
        assert!(packed.len() <= 4);
        assert_eq!(packed.first().unwrap().0, 0);
        assert_eq!(packed.last().unwrap().1, 11);

        // Half the rows on one day, the rest spread over 26 days, 10 units wanted: the heavy day is
        // one unit, and the other days still get about nine.
        let mut h: Vec<(i32, i32, u64)> = (0..27).map(|d| (d, d + 1, 100)).collect();
        h[3].2 = 2600;
        let packed = pack_histogram(&h, 10);
        assert_eq!(packed.iter().map(|p| p.2).sum::<u64>(), 26 * 100 + 2600);
        assert!(packed.iter().any(|p| p.2 == 2600));
        assert!((9..=12).contains(&packed.len()), "{packed:?}");
        for w in packed.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous: {packed:?}");
        }
    }
}
