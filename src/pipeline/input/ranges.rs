//! Byte ranges of a large CSV input that start at record boundaries, so that its records decode on
//! every core. One sequential pass over the bytes follows the splitter's quoting rules
//! ([`super::csv`]) without building fields, so a quoted field holding line breaks, a `"` inside an
//! unquoted field and CRLF line ends are boundaries exactly where the splitter ends records; the pass
//! also counts the records before each range, so every range numbers its records (`source_line`)
//! as a one-range read does, and parses the header once for all ranges.

use futures::TryStreamExt;

use super::csv::{CsvRecord, CsvSplitter};
use super::{csv_header, read_chunks, read_error, InputFile, BOM};
use crate::error::Result;
use crate::storage::ObjectStorage;

/// Where the splitter is, as far as record ends go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    StartField,
    Unquoted,
    Quoted,
    AfterQuote,
}

/// Finds the offsets just after every record terminator (`\n` outside a quoted field).
struct RecordEnds {
    state: Scan,
}

impl RecordEnds {
    fn feed(&mut self, chunk: &[u8], base: u64, on_end: &mut dyn FnMut(u64)) {
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                Scan::Quoted => match memchr::memchr(b'"', &chunk[i..]) {
                    Some(n) => {
                        i += n + 1;
                        self.state = Scan::AfterQuote;
                    }
                    None => i = chunk.len(),
                },
                Scan::Unquoted => match memchr::memchr2(b',', b'\n', &chunk[i..]) {
                    Some(n) => {
                        if chunk[i + n] == b'\n' {
                            on_end(base + (i + n + 1) as u64);
                        }
                        self.state = Scan::StartField;
                        i += n + 1;
                    }
                    None => i = chunk.len(),
                },
                Scan::StartField | Scan::AfterQuote => {
                    let b = chunk[i];
                    i += 1;
                    self.state = match b {
                        b'"' => Scan::Quoted, // opens a field, or doubles a quote in one
                        b',' => Scan::StartField,
                        b'\n' => {
                            on_end(base + i as u64);
                            Scan::StartField
                        }
                        // A `"` inside an unquoted field, and a lone `\r`, are data.
                        _ => Scan::Unquoted,
                    };
                }
            }
        }
    }
}

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
    let mut scanner = RecordEnds {
        state: Scan::StartField,
    };
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
