//! The synthetic GeoIP reference table that ships as `fixtures/geoip.csv`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// One inclusive IPv4 range of the fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoRange {
    /// First address of the range, as an unsigned 32-bit integer.
    pub start: u32,
    /// Last address of the range (inclusive).
    pub end: u32,
    /// Two uppercase letters.
    pub country_code: &'static str,
}

/// The fixture's text: header `ip_start,ip_end,country_code`, then one range per line.
pub fn geoip_csv() -> &'static str {
    include_str!("../../fixtures/geoip.csv")
}

/// Schema of the `geoip` reference table: `ip_start` Int64, `ip_end` Int64, `country_code` Utf8
/// (all non-nullable).
pub fn geoip_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ip_start", DataType::Int64, false),
        Field::new("ip_end", DataType::Int64, false),
        Field::new("country_code", DataType::Utf8, false),
    ]))
}

/// The fixture as one Arrow batch (see [`geoip_schema`]).
pub fn geoip_batch() -> Result<RecordBatch> {
    let ranges = geoip_ranges();
    let starts = Int64Array::from_iter_values(ranges.iter().map(|r| i64::from(r.start)));
    let ends = Int64Array::from_iter_values(ranges.iter().map(|r| i64::from(r.end)));
    let codes = StringArray::from_iter_values(ranges.iter().map(|r| r.country_code));
    Ok(RecordBatch::try_new(
        geoip_schema(),
        vec![Arc::new(starts), Arc::new(ends), Arc::new(codes)],
    )?)
}

/// The fixture's ranges, sorted by `start`, parsed once.
pub fn geoip_ranges() -> &'static [GeoRange] {
    static RANGES: OnceLock<Vec<GeoRange>> = OnceLock::new();
    RANGES.get_or_init(|| parse(geoip_csv()).expect("fixtures/geoip.csv is valid"))
}

/// The country whose range contains `addr`, if any (callers map `None` to `ZZ`).
pub fn geoip_lookup(addr: u32) -> Option<&'static str> {
    let ranges = geoip_ranges();
    let i = ranges.partition_point(|r| r.start <= addr);
    if i == 0 {
        return None;
    }
    let r = &ranges[i - 1];
    (addr <= r.end).then_some(r.country_code)
}

fn parse(text: &'static str) -> Result<Vec<GeoRange>> {
    let mut lines = text.lines();
    if lines.next() != Some("ip_start,ip_end,country_code") {
        return Err(Error::invalid("geoip.csv: unexpected header"));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let bad = || Error::invalid(format!("geoip.csv line {}: {line:?}", i + 2));
        let mut parts = line.split(',');
        let (Some(s), Some(e), Some(c), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let start: u32 = s.parse().map_err(|_| bad())?;
        let end: u32 = e.parse().map_err(|_| bad())?;
        if end < start || c.len() != 2 {
            return Err(bad());
        }
        out.push(GeoRange {
            start,
            end,
            country_code: c,
        });
    }
    Ok(out)
}

/// What the generator needs from the fixture: countries in popularity order (largest address space
/// first) with their ranges, and the gaps that map to no country.
pub(crate) struct GeoTables {
    pub countries: Vec<Vec<GeoRange>>,
    pub gaps: Vec<(u32, u32)>,
}

pub(crate) fn geo_tables() -> &'static GeoTables {
    static TABLES: OnceLock<GeoTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let ranges = geoip_ranges();
        let mut by_code: BTreeMap<&'static str, Vec<GeoRange>> = BTreeMap::new();
        for r in ranges {
            by_code.entry(r.country_code).or_default().push(*r);
        }
        let mut countries: Vec<Vec<GeoRange>> = by_code.into_values().collect();
        let size = |v: &Vec<GeoRange>| v.iter().map(|r| u64::from(r.end - r.start) + 1).sum::<u64>();
        // Stable sort: ties keep the code order of the BTreeMap.
        countries.sort_by_key(|v| std::cmp::Reverse(size(v)));
        let mut gaps = Vec::new();
        let mut next: u64 = 1 << 24; // skip 0.0.0.0/8
        for r in ranges {
            if u64::from(r.start) > next {
                gaps.push((next as u32, r.start - 1));
            }
            next = next.max(u64::from(r.end) + 1);
        }
        GeoTables { countries, gaps }
    })
}
