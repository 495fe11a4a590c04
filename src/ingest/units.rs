//! Work units: how an extraction is split so that units run in parallel and a failed one is retried
//! alone. A unit is a range of a timestamp or date column (whole days), a range of an integer key, a
//! hash bucket of a column, one input file, or a byte range of one large CSV that starts at a
//! record boundary. Ranges are packed from a histogram of the source (for an integer key, one the
//! database's statistics estimate where it keeps them: `statistics_histogram`), so empty ranges get
//! no unit and a skewed day or key gets a unit of its own.

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

/// `auto`: about this many rows per unit. A unit has a fixed cost (its data files, its ledger
/// records, its source query: about 5 ms of floe's CPU, measured on 2 cores), which at 50,000 rows
/// (the extraction design this follows) was a seventh of the unit's own work and made 100 units of a
/// 5 M-row table cost a fifth more than one; at 250,000 rows it is a few percent.
pub const ROWS_PER_UNIT: u64 = 250_000;
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

/// What a database knows of an integer key without reading its rows: its least and greatest values
/// when an index answers them at the cost of two index probes, and the statistics its last `ANALYZE`
/// sampled (Postgres's `pg_stats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct KeyStatistics {
    /// The key has an index that reads its least and greatest values.
    pub indexed: bool,
    /// Its least and greatest non-NULL values now (from the index; `None` with an index: no row has
    /// one).
    pub range: Option<(i64, i64)>,
    /// The database has statistics of the key (it was analyzed).
    pub analyzed: bool,
    /// Bounds that split the values not among `common` into buckets of equal rows (ascending;
    /// Postgres's `histogram_bounds`).
    pub bounds: Vec<i64>,
    /// The most common values, each with the fraction of rows that hold it.
    pub common: Vec<(i64, f64)>,
    /// The fraction of rows whose key is NULL.
    pub null_fraction: f64,
    /// The rows the table holds now as the database counts them as they are written (Postgres's
    /// `n_live_tup`), which may be more than its statistics saw.
    pub live_rows: Option<u64>,
}

/// An estimated histogram of an integer key from its [`KeyStatistics`] and the source's estimated
/// `rows`, in the shape [`pack_histogram`] packs: ascending `(lo, hi, rows)` stretches `lo <= key <
/// hi`, empty ones absent. Rows are taken as spread evenly within each histogram bucket; each common
/// value is a stretch of its own (so a skewed key gets a unit of its own); keys beyond what the
/// statistics saw, up to the index's greatest (and down to its least) value, hold the rows added
/// since (the live rows over `rows`; at the statistics' density when the database does not count
/// more), spread evenly; with an index but no statistics the range is split evenly. `None` when the statistics say nothing (no index and no statistics: the caller
/// reads the key instead); `Some` of nothing when the index says no row has a key.
///
/// Whatever the estimate, the units cover every row exactly once: [`ranges`] uses only the stretches'
/// lower bounds, as the bounds between contiguous units that are open at both ends.
pub(crate) fn statistics_histogram(stats: &KeyStatistics, rows: u64) -> Option<Vec<(i64, i64, u64)>> {
    // Half-open stretches of i128, so that `greatest + 1` never overflows.
    let rows = rows as f64;
    let common_fraction: f64 = stats.common.iter().map(|(_, f)| f).sum();
    let mut spread: Vec<(i128, i128, f64)> = Vec::new();
    let b = &stats.bounds;
    let bucket_fraction = (1.0 - stats.null_fraction - common_fraction).max(0.0);
    match b.len() {
        0 => {}
        1 => spread.push((b[0] as i128, b[0] as i128 + 1, rows * bucket_fraction)),
        k => {
            let each = rows * bucket_fraction / (k - 1) as f64;
            for i in 0..k - 1 {
                let hi = if i + 2 == k {
                    b[i + 1] as i128 + 1
                } else {
                    b[i + 1] as i128
                };
                if hi > b[i] as i128 {
                    spread.push((b[i] as i128, hi, each));
                }
            }
        }
    }
    let common: Vec<(i128, f64)> = stats.common.iter().map(|(v, f)| (*v as i128, rows * f)).collect();
    let seen = spread
        .iter()
        .map(|s| (s.0, s.1))
        .chain(common.iter().map(|(v, _)| (*v, v + 1)))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    match (seen, stats.range) {
        (None, None) => return stats.indexed.then(Vec::new),
        (None, Some((least, greatest))) => spread.push((
            least as i128,
            greatest as i128 + 1,
            rows * (1.0 - stats.null_fraction),
        )),
        (Some(_), None) if stats.indexed => return Some(Vec::new()),
        (Some(_), None) => {}
        (Some((lo, hi)), Some((least, greatest))) => {
            // Keys beyond the statistics, at their density; keys the statistics saw that are gone,
            // dropped.
            let (least, end) = (least as i128, greatest as i128 + 1);
            let below = (lo.min(end) - least).max(0);
            let above = (end - hi.max(least)).max(0);
            let added = stats.live_rows.map_or(0.0, |live| (live as f64 - rows).max(0.0));
            let density = if added > 0.0 {
                added / (below + above).max(1) as f64
            } else {
                rows * (1.0 - stats.null_fraction) / (hi - lo) as f64
            };
            spread = clamp(&spread, least, end);
            if below > 0 {
                spread.insert(0, (least, least + below, density * below as f64));
            }
            if above > 0 {
                spread.push((end - above, end, density * above as f64));
            }
        }
    }
    let common: Vec<(i128, f64)> = match stats.range {
        Some((least, greatest)) => common
            .into_iter()
            .filter(|(v, _)| *v >= least as i128 && *v <= greatest as i128)
            .collect(),
        None => common,
    };
    // Finer stretches than the buckets, so that packing has room to even out units.
    let total: f64 = spread.iter().map(|s| s.2).sum::<f64>() + common.iter().map(|c| c.1).sum::<f64>();
    let finest = (total / 2000.0).max(1.0);
    let mut points: Vec<i128> = Vec::new();
    for (lo, hi, w) in &spread {
        let pieces = ((w / finest).ceil() as i128).clamp(1, (hi - lo).max(1)).min(1000);
        points.extend((0..=pieces).map(|i| lo + (hi - lo) * i / pieces));
    }
    points.extend(common.iter().flat_map(|(v, _)| [*v, v + 1]));
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut s = 0;
    for w in points.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        while s < spread.len() && spread[s].1 <= lo {
            s += 1;
        }
        let mut n = 0.0;
        for (slo, shi, sw) in spread[s..].iter().take_while(|x| x.0 < hi) {
            let overlap = (hi.min(*shi) - lo.max(*slo)).max(0);
            n += sw * overlap as f64 / (shi - slo) as f64;
        }
        n += common
            .iter()
            .filter(|(v, _)| *v == lo && hi == v + 1)
            .map(|c| c.1)
            .sum::<f64>();
        let n = n.round() as u64;
        if n > 0 && lo <= i64::MAX as i128 {
            out.push((lo as i64, hi.min(i64::MAX as i128) as i64, n));
        }
    }
    Some(out)
}

/// `spread`'s stretches cut to `[least, end)`.
fn clamp(spread: &[(i128, i128, f64)], least: i128, end: i128) -> Vec<(i128, i128, f64)> {
    spread
        .iter()
        .filter_map(|&(lo, hi, w)| {
            let (l, h) = (lo.max(least), hi.min(end));
            (l < h).then(|| (l, h, w * (h - l) as f64 / (hi - lo) as f64))
        })
        .collect()
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
        assert_eq!(UnitCount::Auto.resolve(50_000_000), 100);
        assert_eq!(UnitCount::Auto.resolve(5_000_000), 20);
        assert_eq!(UnitCount::Auto.resolve(2_000_000), 10);
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

    /// Rows of `histogram` whose key is in `lo..hi`.
    fn rows_in(histogram: &[(i64, i64, u64)], lo: i64, hi: i64) -> u64 {
        histogram
            .iter()
            .filter(|p| p.0 >= lo && p.0 < hi)
            .map(|p| p.2)
            .sum()
    }

    #[test]
    fn estimates_a_key_from_its_statistics() {
        // A uniform key 1..=100,000 as ANALYZE sees it: 101 equal-frequency bounds.
        let uniform = KeyStatistics {
            indexed: true,
            range: Some((1, 100_000)),
            analyzed: true,
            bounds: (0..=100).map(|i| 1 + i * 99_999 / 100).collect(),
            ..Default::default()
        };
        let h = statistics_histogram(&uniform, 100_000).unwrap();
        let total: u64 = h.iter().map(|p| p.2).sum();
        assert!((99_000..=101_000).contains(&total), "{total}");
        for w in h.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].0, "ascending, disjoint: {w:?}");
        }
        let packed = pack_histogram(&h, 10);
        assert_eq!(packed.len(), 10);
        for p in &packed {
            assert!((9_000..=11_000).contains(&p.2), "even units: {packed:?}");
        }

        // Skew: one value holds 40% of the rows; it is a stretch, and then a unit, of its own.
        let skewed = KeyStatistics {
            range: Some((0, 1_000)),
            common: vec![(500, 0.4)],
            null_fraction: 0.1,
            bounds: (0..=100).map(|i| i * 10).collect(),
            ..uniform.clone()
        };
        let h = statistics_histogram(&skewed, 1_000_000).unwrap();
        assert!(rows_in(&h, 500, 501) >= 400_000, "{h:?}");
        let packed = pack_histogram(&h, 10);
        assert!(packed.iter().any(|p| p.0 == 500 && p.1 == 501), "{packed:?}");

        // Stale statistics: the index says keys now run to 200,000; the rows beyond what ANALYZE saw
        // are counted at its density and spread over units of their own.
        let stale = KeyStatistics {
            range: Some((1, 200_000)),
            ..uniform.clone()
        };
        let h = statistics_histogram(&stale, 100_000).unwrap();
        let beyond = rows_in(&h, 100_001, i64::MAX);
        assert!((90_000..=110_000).contains(&beyond), "{beyond}");
        let packed = pack_histogram(&h, 10);
        assert!(packed.iter().filter(|p| p.0 > 100_000).count() >= 4, "{packed:?}");
        // Where the database counts the rows added since, they size the stretches beyond: 50,000
        // rows added on keys 100,001..=200,000 and 1,000 on keys -99..=0.
        let counted = KeyStatistics {
            range: Some((-99, 200_000)),
            live_rows: Some(150_100),
            ..uniform.clone()
        };
        let h = statistics_histogram(&counted, 100_000).unwrap();
        let above = rows_in(&h, 100_001, i64::MAX);
        assert!((49_000..=51_000).contains(&above), "{above}");
        let below = rows_in(&h, i64::MIN, 1);
        assert!((49..=51).contains(&below), "{below}");
        // Keys that were deleted since: none estimated below the index's least value.
        let shrunk = KeyStatistics {
            range: Some((50_001, 100_000)),
            ..uniform.clone()
        };
        let h = statistics_histogram(&shrunk, 100_000).unwrap();
        assert_eq!(rows_in(&h, i64::MIN, 50_001), 0);
        assert!(h.first().unwrap().0 >= 50_001);

        // No statistics: the index's range split evenly; neither: nothing known.
        let bare = KeyStatistics {
            indexed: true,
            range: Some((-1_000, 8_999)),
            ..Default::default()
        };
        let packed = pack_histogram(&statistics_histogram(&bare, 10_000).unwrap(), 10);
        let lows: Vec<i64> = packed.iter().map(|p| p.0).collect();
        assert_eq!(lows, (0..10).map(|i| -1_000 + i * 1_000).collect::<Vec<_>>());
        assert_eq!(statistics_histogram(&KeyStatistics::default(), 10), None);
        // An index that finds no key: no stretch (every row is a NULL's, in the first unit).
        let empty = KeyStatistics {
            range: None,
            ..uniform.clone()
        };
        assert_eq!(statistics_histogram(&empty, 10), Some(vec![]));

        // Extremes of i64 do not overflow; a key at i64::MAX still has its stretch.
        let extreme = KeyStatistics {
            indexed: true,
            range: Some((i64::MIN, i64::MAX)),
            analyzed: true,
            common: vec![(i64::MAX, 0.5), (i64::MIN, 0.5)],
            ..Default::default()
        };
        let h = statistics_histogram(&extreme, 1_000).unwrap();
        assert_eq!(h.first().unwrap().0, i64::MIN);
        assert_eq!(h.last().unwrap().0, i64::MAX);
    }
}
