//! Encoding records as CSV lines, NDJSON lines and Arrow batches (for Parquet).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::events::{Record, EVENT_TYPE, USER_AGENT};
use crate::error::Result;

/// The input fields, in file order.
pub const FIELDS: [&str; 9] = [
    "event_id",
    "user_id",
    "event_time",
    "event_type",
    "url",
    "referrer",
    "ip",
    "user_agent",
    "revenue",
];

/// Schema of generated Parquet files: the nine input fields, all nullable Utf8.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(
        FIELDS
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn csv_header(out: &mut Vec<u8>) {
    out.extend_from_slice(FIELDS.join(",").as_bytes());
    out.push(b'\n');
}

fn csv_field(out: &mut Vec<u8>, value: &[u8], force: bool) {
    let needs = value.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if needs || (force && !value.is_empty()) {
        out.push(b'"');
        for &b in value {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

/// One CSV record (RFC 4180, `\n` line ends). A malformed record has the wrong field count or
/// bytes that are not UTF-8, but always stays one record (quotes balanced).
pub(crate) fn csv_record(out: &mut Vec<u8>, r: &Record) {
    let fields: Vec<&[u8]> = r
        .fields
        .iter()
        .map(|f| f.as_deref().unwrap_or("").as_bytes())
        .collect();
    let mut n = fields.len();
    let mut extra: Option<&[u8]> = None;
    let mut bad_utf8 = false;
    match r.malformed.map(|m| m % 5) {
        None => {}
        Some(0) => n -= 1,                 // a field missing
        Some(1) => extra = Some(b"extra"), // one field too many
        Some(2) => n = 4,                  // cut short
        Some(3) => bad_utf8 = true,        // not UTF-8
        Some(_) => {
            out.extend_from_slice(b"this line is not an event record\n");
            return;
        }
    }
    for (i, value) in fields.iter().take(n).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if bad_utf8 && i == USER_AGENT {
            // Latin-1 bytes where UTF-8 is expected.
            out.extend_from_slice(b"Mozilla/5.0 (Caf\xe9 \xff\xfe Browser)");
            continue;
        }
        csv_field(out, value, r.force_quote & (1 << i) != 0);
    }
    if let Some(e) = extra {
        out.push(b',');
        out.extend_from_slice(e);
    }
    out.push(b'\n');
}

/// One NDJSON line: an object with the nine fields in order (`null` for absent values). A malformed
/// record is a line that is not valid JSON.
pub(crate) fn ndjson_record(out: &mut Vec<u8>, r: &Record) -> Result<()> {
    let start = out.len();
    out.push(b'{');
    for (i, (name, value)) in FIELDS.iter().zip(r.fields.iter()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        match value {
            Some(v) => serde_json::to_writer(&mut *out, v)?,
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    if let Some(m) = r.malformed {
        let line = out.split_off(start);
        match m % 4 {
            0 => {
                // Truncated mid-object (cut after a char boundary, before the closing brace).
                let cut = 1 + (usize::from(m) * 7919) % (line.len() - 2);
                let text = String::from_utf8_lossy(&line);
                let mut cut = cut.min(text.len() - 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.extend_from_slice(&text.as_bytes()[..cut]);
            }
            1 => {
                // Missing value.
                let id = r.fields[0].as_deref().unwrap_or("");
                out.extend_from_slice(b"{\"event_id\":");
                serde_json::to_writer(&mut *out, id)?;
                out.extend_from_slice(b",\"user_id\":,\"event_type\":");
                serde_json::to_writer(&mut *out, r.fields[EVENT_TYPE].as_deref().unwrap_or(""))?;
                out.push(b'}');
            }
            2 => {
                // Trailing comma.
                out.extend_from_slice(&line[..line.len() - 1]);
                out.extend_from_slice(b",}");
            }
            _ => out.extend_from_slice(b"event_id=broken; not json"),
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Accumulates records into Arrow batches of all-Utf8 nullable columns.
pub(crate) struct BatchBuilder {
    columns: Vec<StringBuilder>,
    rows: usize,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self {
            columns: (0..FIELDS.len()).map(|_| StringBuilder::new()).collect(),
            rows: 0,
        }
    }

    pub fn push(&mut self, r: &Record) {
        for (b, v) in self.columns.iter_mut().zip(r.fields.iter()) {
            b.append_option(v.as_deref());
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        Ok(RecordBatch::try_new(events_schema(), arrays)?)
    }
}
