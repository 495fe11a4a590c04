//! Iceberg column statistics of a Parquet file floe wrote or adds: sizes, value, null and NaN counts
//! and lower/upper bounds by field id, from the file's footer (and, for NaNs, from the written
//! batches, since Parquet keeps no NaN count). The rules are those of iceberg-rust's own Parquet
//! writer, so a file written by floe's parallel writer carries the statistics a single-threaded
//! write would.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, Float64Array};
use arrow::datatypes::DataType;
use iceberg::spec::{Datum, PrimitiveType, Schema, Type};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::error::{Error, Result};

/// Statistics of one written file, by Iceberg field id.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct WrittenFileStats {
    pub column_sizes: HashMap<i32, u64>,
    pub value_counts: HashMap<i32, u64>,
    pub null_value_counts: HashMap<i32, u64>,
    pub lower_bounds: HashMap<i32, Datum>,
    pub upper_bounds: HashMap<i32, Datum>,
}

impl WrittenFileStats {
    /// The statistics of every leaf column of `metadata` whose Parquet field id is a field of
    /// `schema`: compressed sizes, value counts, null counts, and the bounds of every row group (a
    /// row group without a bound leaves the column without one rather than with one that does not
    /// cover it).
    pub fn of(schema: &Schema, metadata: &ParquetMetaData) -> Result<Self> {
        let mut stats = WrittenFileStats::default();
        let (mut no_lower, mut no_upper): (Vec<i32>, Vec<i32>) = (Vec::new(), Vec::new());
        for row_group in metadata.row_groups() {
            for chunk in row_group.columns() {
                let descr = chunk.column_descr();
                let info = descr.self_type().get_basic_info();
                if !info.has_id() {
                    continue;
                }
                let id = info.id();
                let Some(field) = schema.field_by_id(id) else {
                    continue; // as Java: a column the schema does not know has no statistics
                };
                *stats.column_sizes.entry(id).or_insert(0) += chunk.compressed_size().max(0) as u64;
                *stats.value_counts.entry(id).or_insert(0) += chunk.num_values().max(0) as u64;
                let Type::Primitive(ptype) = field.field_type.as_ref() else {
                    continue;
                };
                let Some(st) = chunk.statistics() else {
                    no_lower.push(id);
                    no_upper.push(id);
                    continue;
                };
                if let Some(nulls) = st.null_count_opt() {
                    *stats.null_value_counts.entry(id).or_insert(0) += nulls;
                }
                // Parquet truncates long minimums to a prefix and long maximums to an incremented
                // prefix: both still bound every value, so inexact bounds are kept as bounds.
                // (iceberg-rust's writer skips them, leaving an upper bound below values it wrote.)
                let all_null = st.null_count_opt() == Some(chunk.num_values().max(0) as u64);
                if all_null {
                    continue; // no value to bound, and no bound to change
                }
                match parquet_bound(ptype, st, true)? {
                    Some(lo) => merge_bound(&mut stats.lower_bounds, id, lo, true),
                    None => no_lower.push(id),
                }
                match parquet_bound(ptype, st, false)? {
                    Some(hi) => merge_bound(&mut stats.upper_bounds, id, hi, false),
                    None => no_upper.push(id),
                }
            }
        }
        for id in no_lower {
            stats.lower_bounds.remove(&id);
        }
        for id in no_upper {
            stats.upper_bounds.remove(&id);
        }
        Ok(stats)
    }
}

/// Keep the smaller (`lowest`) or the larger of a bound and `value`.
pub(crate) fn merge_bound(bounds: &mut HashMap<i32, Datum>, id: i32, value: Datum, lowest: bool) {
    match bounds.get(&id) {
        Some(old) if (lowest && *old <= value) || (!lowest && *old >= value) => {}
        _ => {
            bounds.insert(id, value);
        }
    }
}

/// A column chunk's minimum (`min`) or maximum as an Iceberg value of `ptype`, or `None` when the
/// chunk has none or its physical type does not carry `ptype` (no bound is allowed).
pub(crate) fn parquet_bound(ptype: &PrimitiveType, st: &Statistics, min: bool) -> Result<Option<Datum>> {
    use PrimitiveType as P;
    fn pick<T>(lo: Option<T>, hi: Option<T>, min: bool) -> Option<T> {
        if min {
            lo
        } else {
            hi
        }
    }
    let decimal = |v: i128| Datum::try_from_bytes(&v.to_be_bytes(), ptype.clone());
    Ok(match (ptype, st) {
        (P::Boolean, Statistics::Boolean(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::bool(*v)),
        (P::Int, Statistics::Int32(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::int(*v)),
        (P::Date, Statistics::Int32(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::date(*v)),
        (P::Long, Statistics::Int64(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::long(*v)),
        (P::Long, Statistics::Int32(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::long(i64::from(*v)))
        }
        (P::Time, Statistics::Int64(s)) => match pick(s.min_opt(), s.max_opt(), min) {
            Some(v) => Some(Datum::time_micros(*v)?),
            None => None,
        },
        (P::Timestamp, Statistics::Int64(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::timestamp_micros(*v))
        }
        (P::Timestamptz, Statistics::Int64(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::timestamptz_micros(*v))
        }
        (P::TimestampNs, Statistics::Int64(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::timestamp_nanos(*v))
        }
        (P::TimestamptzNs, Statistics::Int64(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::timestamptz_nanos(*v))
        }
        (P::Float, Statistics::Float(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::float(*v)),
        (P::Double, Statistics::Double(s)) => pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::double(*v)),
        (P::Double, Statistics::Float(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::double(f64::from(*v)))
        }
        (P::String, Statistics::ByteArray(s)) => match pick(s.min_opt(), s.max_opt(), min) {
            Some(v) => {
                Some(Datum::string(std::str::from_utf8(v.data()).map_err(|e| {
                    Error::invalid(format!("a string bound is not UTF-8: {e}"))
                })?))
            }
            None => None,
        },
        (P::Binary, Statistics::ByteArray(s)) => {
            pick(s.min_opt(), s.max_opt(), min).map(|v| Datum::binary(v.data().to_vec()))
        }
        (P::Decimal { .. }, Statistics::Int32(s)) => pick(s.min_opt(), s.max_opt(), min)
            .map(|v| decimal(i128::from(*v)))
            .transpose()?,
        (P::Decimal { .. }, Statistics::Int64(s)) => pick(s.min_opt(), s.max_opt(), min)
            .map(|v| decimal(i128::from(*v)))
            .transpose()?,
        (P::Decimal { .. }, Statistics::ByteArray(_) | Statistics::FixedLenByteArray(_)) => {
            match pick(st.min_bytes_opt(), st.max_bytes_opt(), min) {
                Some(bytes) if !bytes.is_empty() && bytes.len() <= 16 => {
                    // Big-endian two's complement, sign-extended to 16 bytes.
                    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
                    let mut wide = [fill; 16];
                    wide[16 - bytes.len()..].copy_from_slice(bytes);
                    Some(decimal(i128::from_be_bytes(wide))?)
                }
                _ => None,
            }
        }
        (P::Uuid, Statistics::FixedLenByteArray(_)) => {
            match pick(st.min_bytes_opt(), st.max_bytes_opt(), min) {
                Some(bytes) => <[u8; 16]>::try_from(bytes)
                    .ok()
                    .map(|b| Datum::uuid(uuid::Uuid::from_bytes(b))),
                None => None,
            }
        }
        (P::Fixed(len), Statistics::FixedLenByteArray(_)) => {
            match pick(st.min_bytes_opt(), st.max_bytes_opt(), min) {
                Some(bytes) if bytes.len() as u64 == *len => Some(Datum::fixed(bytes.to_vec())),
                _ => None,
            }
        }
        _ => None,
    })
}

/// Add the NaN values of `batch`'s floating-point columns (nested ones too) to `counts`, by the
/// field ids the batch's schema carries (`PARQUET:field_id`). Every floating-point field gets an
/// entry, zero included, as iceberg-rust's writer records.
pub(crate) fn count_nans(
    columns: &[ArrayRef],
    fields: &arrow::datatypes::Fields,
    counts: &mut HashMap<i32, u64>,
) {
    for (array, field) in columns.iter().zip(fields.iter()) {
        count_column(array, field, counts);
    }
}

fn field_id(field: &arrow::datatypes::Field) -> Option<i32> {
    field
        .metadata()
        .get(parquet::arrow::PARQUET_FIELD_ID_META_KEY)
        .and_then(|v| v.parse().ok())
}

fn count_column(array: &ArrayRef, field: &arrow::datatypes::Field, counts: &mut HashMap<i32, u64>) {
    let nans = |n: usize, counts: &mut HashMap<i32, u64>| {
        if let Some(id) = field_id(field) {
            *counts.entry(id).or_insert(0) += n as u64;
        }
    };
    match array.data_type() {
        DataType::Float32 => {
            let a = array.as_any().downcast_ref::<Float32Array>().expect("float32");
            nans(a.iter().flatten().filter(|v| v.is_nan()).count(), counts);
        }
        DataType::Float64 => {
            let a = array.as_any().downcast_ref::<Float64Array>().expect("float64");
            nans(a.iter().flatten().filter(|v| v.is_nan()).count(), counts);
        }
        DataType::Struct(children) => {
            let s = array.as_struct();
            for (child, f) in s.columns().iter().zip(children.iter()) {
                count_column(child, f, counts);
            }
        }
        DataType::List(element) => {
            let l = array.as_list::<i32>();
            let offsets = l.value_offsets();
            let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
            count_column(&l.values().slice(start, end - start), element, counts);
        }
        DataType::LargeList(element) => {
            let l = array.as_list::<i64>();
            let offsets = l.value_offsets();
            let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
            count_column(&l.values().slice(start, end - start), element, counts);
        }
        DataType::Map(entries, _) => {
            let m = array.as_map();
            let offsets = m.value_offsets();
            let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
            if let DataType::Struct(kv) = entries.data_type() {
                let keys = m.keys().slice(start, end - start);
                let values = m.values().slice(start, end - start);
                count_column(&keys, &kv[0], counts);
                count_column(&values, &kv[1], counts);
            }
        }
        _ => {}
    }
}
