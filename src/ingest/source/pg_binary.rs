//! Decoding Postgres's binary `COPY ... TO STDOUT (FORMAT binary)` stream into Arrow record batches,
//! for the column types `source::map_type` maps (each cast in the `SELECT` to the one Postgres type
//! whose wire form is read here). The binary form costs the server no text formatting and floe no
//! text parsing: integers, floats, dates and timestamps arrive as fixed-width big-endian values,
//! numerics as base-10000 digits, text and bytes as they are stored.
//!
//! Format (PostgreSQL documentation, "COPY", "Binary Format"): an 11-byte signature, a 32-bit flags
//! word, a 32-bit header extension length and the extension; then tuples, each a 16-bit field count
//! and per field a 32-bit length (-1 for NULL) and that many bytes; a field count of -1 ends the data.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use bytes::{Buf, BytesMut};

use crate::error::{Error, ErrorKind, Result};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The Postgres type a column is cast to for the binary stream, from its Arrow type.
pub(crate) fn wire_cast(arrow: &DataType) -> Result<&'static str> {
    Ok(match arrow {
        DataType::Int32 => "int4",
        DataType::Int64 => "int8",
        DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        DataType::Decimal128(..) => "numeric",
        DataType::Utf8 => "text",
        DataType::Boolean => "bool",
        DataType::Date32 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Binary => "bytea",
        other => return Err(Error::internal(format!("no binary COPY form for {other}"))),
    })
}

/// One column's builder.
enum Column {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal { builder: Decimal128Builder, scale: i8 },
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Bytes(BinaryBuilder),
}

impl Column {
    fn new(t: &DataType) -> Result<Column> {
        Ok(match t {
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float32 => Column::Float32(Float32Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Decimal128(p, s) => Column::Decimal {
                builder: Decimal128Builder::new().with_precision_and_scale(*p, *s)?,
                scale: *s,
            },
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Date32 => Column::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new(), tz.clone())
            }
            DataType::Binary => Column::Bytes(BinaryBuilder::new()),
            other => return Err(Error::internal(format!("no binary COPY form for {other}"))),
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Decimal { builder, .. } => builder.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b, _) => b.append_null(),
            Column::Bytes(b) => b.append_null(),
        }
    }

    /// Append the wire value `v`.
    fn append(&mut self, v: &[u8]) -> std::result::Result<(), String> {
        match self {
            Column::Int32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Column::Int64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Column::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Column::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Column::Decimal { builder, scale } => builder.append_value(numeric(v, *scale)?),
            Column::Text(b) => {
                b.append_value(std::str::from_utf8(v).map_err(|e| format!("text is not UTF-8: {e}"))?)
            }
            Column::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Column::Date(b) => {
                let days = i32::from_be_bytes(fixed(v)?);
                if days == i32::MAX || days == i32::MIN {
                    return Err("an infinite date has no Iceberg value".into());
                }
                b.append_value(days.checked_add(PG_EPOCH_DAYS).ok_or("a date out of range")?)
            }
            Column::Timestamp(b, _) => {
                let micros = i64::from_be_bytes(fixed(v)?);
                if micros == i64::MAX || micros == i64::MIN {
                    return Err("an infinite timestamp has no Iceberg value".into());
                }
                b.append_value(
                    micros
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or("a timestamp out of range")?,
                )
            }
            Column::Bytes(b) => b.append_value(v),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Decimal { builder, .. } => Arc::new(builder.finish()),
            Column::Text(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Column::Bytes(b) => Arc::new(b.finish()),
        }
    }
}

/// A fixed-width wire value as its `N` bytes, or why it is not one.
fn fixed<const N: usize>(v: &[u8]) -> std::result::Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("a {N}-byte value arrived as {} bytes", v.len()))
}

/// A Postgres `numeric` in binary form (digit count, weight, sign, display scale, then base-10000
/// digits, all 16-bit big-endian) as an integer scaled by `10^scale`. The column is declared
/// `numeric(p, scale)`, so no digit lies below the scale; a NaN or infinity is an error.
fn numeric(v: &[u8], scale: i8) -> std::result::Result<i128, String> {
    if v.len() < 8 {
        return Err("a numeric shorter than its header".into());
    }
    let word = |i: usize| u16::from_be_bytes([v[2 * i], v[2 * i + 1]]);
    let ndigits = word(0) as usize;
    let weight = word(1) as i16 as i32;
    let sign = word(2);
    if v.len() != 8 + 2 * ndigits {
        return Err("a numeric whose length does not match its digits".into());
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN has no Iceberg decimal value".into()),
        _ => return Err("an infinite numeric has no Iceberg decimal value".into()),
    }
    let overflow = || "a numeric beyond 38 digits".to_string();
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let digit = word(4 + i) as i128;
        // This digit's power of ten in the scaled integer.
        let exp = 4 * (weight - i as i32) + scale as i32;
        let term = if exp >= 0 {
            10i128
                .checked_pow(exp as u32)
                .and_then(|p| digit.checked_mul(p))
                .ok_or_else(overflow)?
        } else {
            // Only trailing zeros of the last group lie below the scale.
            let p = 10i128.checked_pow((-exp) as u32).ok_or_else(overflow)?;
            if digit % p != 0 {
                return Err(format!("a numeric with more than {scale} decimal places"));
            }
            digit / p
        };
        acc = acc.checked_add(term).ok_or_else(overflow)?;
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

/// Turns the bytes of a binary COPY, as they arrive in chunks of any size, into record batches of
/// `schema` with up to `batch_rows` rows.
pub(crate) struct BinaryCopyDecoder {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Rows in the builders (the batch being filled).
    rows: usize,
    batch_rows: usize,
    pending: BytesMut,
    header_read: bool,
    ended: bool,
}

impl BinaryCopyDecoder {
    pub(crate) fn new(schema: SchemaRef, batch_rows: usize) -> Result<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            schema,
            columns,
            rows: 0,
            batch_rows,
            pending: BytesMut::new(),
            header_read: false,
            ended: false,
        })
    }

    fn bad(what: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Data,
            format!("cannot decode the source's binary COPY: {what}"),
        )
    }

    /// Take `chunk`; returns the batches it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<RecordBatch>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        if !self.header_read {
            if self.pending.len() < SIGNATURE.len() + 8 {
                return Ok(out);
            }
            if &self.pending[..SIGNATURE.len()] != SIGNATURE {
                return Err(Self::bad("no PGCOPY signature"));
            }
            let ext = u32::from_be_bytes(self.pending[15..19].try_into().unwrap()) as usize;
            if self.pending.len() < 19 + ext {
                return Ok(out);
            }
            self.pending.advance(19 + ext);
            self.header_read = true;
        }
        let width = self.columns.len();
        loop {
            if self.ended {
                if !self.pending.is_empty() {
                    return Err(Self::bad("bytes after the end of the data"));
                }
                break;
            }
            // Is a whole tuple here? Walk its field lengths first.
            let buf = &self.pending[..];
            if buf.len() < 2 {
                break;
            }
            let fields = i16::from_be_bytes([buf[0], buf[1]]);
            if fields == -1 {
                self.pending.advance(2);
                self.ended = true;
                continue;
            }
            if fields as usize != width {
                return Err(Self::bad(format!("a row of {fields} fields, expected {width}")));
            }
            let mut at = 2;
            let mut whole = true;
            for _ in 0..width {
                if buf.len() < at + 4 {
                    whole = false;
                    break;
                }
                let len = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
                at += 4 + len.max(0) as usize;
                if buf.len() < at {
                    whole = false;
                    break;
                }
            }
            if !whole {
                break;
            }
            let mut at = 2;
            for (i, column) in self.columns.iter_mut().enumerate() {
                let len = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
                at += 4;
                if len < 0 {
                    column.append_null();
                } else {
                    let v = &buf[at..at + len as usize];
                    at += len as usize;
                    column
                        .append(v)
                        .map_err(|e| Self::bad(format!("column {:?}: {e}", self.schema.field(i).name())))?;
                }
            }
            self.pending.advance(at);
            self.rows += 1;
            if self.rows >= self.batch_rows {
                out.push(self.flush_batch()?);
            }
        }
        Ok(out)
    }

    fn flush_batch(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    /// The stream ended: the last batch, if any rows are left; an error when the data was cut off.
    pub(crate) fn finish(mut self) -> Result<Option<RecordBatch>> {
        if !self.ended {
            return Err(Self::bad("the stream ended before its end marker"));
        }
        if self.rows > 0 {
            return Ok(Some(self.flush_batch()?));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Field, Schema};

    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_scale_exactly() {
        // 1234.5 at scale 2 → 123450
        assert_eq!(numeric(&numeric_bytes(0, 0, 1, &[1234, 5000]), 2), Ok(123_450));
        // -0.07 at scale 2
        assert_eq!(numeric(&numeric_bytes(-1, 0x4000, 2, &[700]), 2), Ok(-7));
        // 12345678 (two groups, weight 1) at scale 0
        assert_eq!(numeric(&numeric_bytes(1, 0, 0, &[1234, 5678]), 0), Ok(12_345_678));
        // zero: no digits
        assert_eq!(numeric(&numeric_bytes(0, 0, 2, &[]), 2), Ok(0));
        assert!(numeric(&numeric_bytes(0, 0xC000, 0, &[]), 2).is_err());
        assert!(
            numeric(&numeric_bytes(-1, 0, 4, &[1234]), 2).is_err(),
            "more places than the scale"
        );
        assert!(
            numeric(&numeric_bytes(10, 0, 0, &[1]), 0).is_err(),
            "beyond 38 digits"
        );
    }

    fn field(v: Option<&[u8]>) -> Vec<u8> {
        match v {
            None => (-1i32).to_be_bytes().to_vec(),
            Some(v) => {
                let mut out = (v.len() as i32).to_be_bytes().to_vec();
                out.extend_from_slice(v);
                out
            }
        }
    }

    #[test]
    fn a_stream_cut_anywhere_decodes_the_same() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let mut stream = SIGNATURE.to_vec();
        stream.extend_from_slice(&0u32.to_be_bytes());
        stream.extend_from_slice(&0u32.to_be_bytes());
        for i in 0..5i64 {
            stream.extend_from_slice(&6i16.to_be_bytes());
            stream.extend(field(Some(&i.to_be_bytes())));
            let name = format!("n{i}");
            stream.extend(field((i != 2).then_some(name.as_bytes())));
            stream.extend(field(Some(&numeric_bytes(0, 0, 2, &[i as u16, 2500]))));
            stream.extend(field(Some(&(i * 1_000_000).to_be_bytes())));
            stream.extend(field(Some(&(i as i32).to_be_bytes())));
            stream.extend(field(Some(&[(i % 2) as u8])));
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        for cut in [1, 3, 7, 19, 20, 33, stream.len()] {
            let mut d = BinaryCopyDecoder::new(schema.clone(), 2).unwrap();
            let mut batches = Vec::new();
            for chunk in stream.chunks(cut) {
                batches.extend(d.push(chunk).unwrap());
            }
            batches.extend(d.finish().unwrap());
            assert_eq!(
                batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                5,
                "cut {cut}"
            );
            let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
            assert_eq!(all.column(1).null_count(), 1);
            assert_eq!(all.column(2).as_primitive::<Decimal128Type>().value(3), 325);
            let at = all
                .column(3)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            assert_eq!(at.value(1), PG_EPOCH_MICROS + 1_000_000);
            assert_eq!(
                all.column(4)
                    .as_primitive::<arrow::datatypes::Date32Type>()
                    .value(0),
                PG_EPOCH_DAYS
            );
            assert!(all.column(5).as_boolean().value(1));
        }
        // Cut off before the end marker: an error, not a short result.
        let mut d = BinaryCopyDecoder::new(schema.clone(), 2).unwrap();
        d.push(&stream[..stream.len() - 2]).unwrap();
        assert!(d.finish().is_err());
    }
}
