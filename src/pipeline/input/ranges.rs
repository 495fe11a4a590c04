//! Byte ranges of a large CSV input that start at record boundaries, so that its records decode on
//! every core. One sequential pass over the bytes finds the record ends ([`RecordEnds`], with the
//! splitter's rule that only `\n` ends a record, [`super::csv`]); the pass also counts the records
//! before each range, so every range numbers its records (`source_line`) as a one-range read does,
//! and parses the header once for all ranges.

use futures::TryStreamExt;

use super::csv::{CsvRecord, CsvSplitter};
use super::{csv_header, read_chunks, read_error, InputFile, BOM};
use crate::error::Result;
use crate::storage::ObjectStorage;
use crate::table::csv_ranges::{RecordEnds, Terminators};

/// One range: bytes `start..end`, the data records before it, and the file's header mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CsvRange {
    pub start: u64,
    pub end: u64,
    pub records_before: i64,
    pub header: Option<[usize; 9]>,
}

/// Up to `parts` ranges of `file` (CSV, at least `min_bytes` long), each starting at a record
/// boundary after the header; `None` when the file is too small to split or has fewer records.
pub(super) async fn csv_ranges(
    storage: &ObjectStorage,
    file: &InputFile,
    parts: usize,
    min_bytes: u64,
) -> Result<Option<Vec<CsvRange>>> {
    if parts < 2 || file.size < min_bytes {
        return Ok(None);
    }
    let (store, path) = storage.resolve(&file.uri)?;
    let mut bytes = read_chunks(store, path, None, file.size).await?;
    let target = file.size / parts as u64;
    let mut scanner = RecordEnds::new(Terminators::Newline);
    // (offset after the terminator, records ended before it, the header included)
    let mut cuts: Vec<(u64, i64)> = Vec::new();
    let mut records = 0i64;
    let mut header_bytes: Vec<u8> = Vec::new();
    let mut header_end: Option<u64> = None;
    let mut offset = 0u64;
    while let Some(chunk) = bytes.try_next().await.map_err(|e| read_error(e, &file.uri))? {
        if header_end.is_none() {
            header_bytes.extend_from_slice(&chunk);
        }
        scanner.feed(&chunk, offset, &mut |end| {
            let end = end.offset;
            records += 1;
            if header_end.is_none() {
                header_end = Some(end);
            } else if end < file.size
                && end >= cuts.last().map_or(0, |c| c.0) + target
                && cuts.len() + 1 < parts
            {
                cuts.push((end, records));
            }
        });
        offset += chunk.len() as u64;
    }
    let Some(header_end) = header_end else {
        return Ok(None);
    };
    if cuts.is_empty() {
        return Ok(None);
    }
    // The header, parsed as the one-range read parses it (after a byte order mark).
    header_bytes.truncate(header_end as usize);
    let text = header_bytes.strip_prefix(BOM).unwrap_or(&header_bytes);
    let mut splitter = CsvSplitter::default();
    let mut header = None;
    let mut first = |r: CsvRecord<'_>| {
        if header.is_none() {
            header = Some(csv_header(&r, &file.uri)?);
        }
        Ok(())
    };
    splitter.feed(text, &mut first)?;
    splitter.finish(&mut first)?;
    let mut ranges = vec![CsvRange {
        start: 0,
        end: cuts[0].0,
        records_before: 0,
        header: None,
    }];
    for (i, (start, before)) in cuts.iter().enumerate() {
        ranges.push(CsvRange {
            start: *start,
            end: cuts.get(i + 1).map_or(file.size.max(offset), |c| c.0),
            records_before: before - 1, // the header is no data record
            header,
        });
    }
    Ok(Some(ranges))
}
