//! Where the records of a CSV file end, found by one pass over its bytes that follows RFC 4180
//! quoting without building fields, so that byte ranges of a large file can start at record
//! boundaries and decode on every core: a quoted field holding line breaks, a doubled quote, a `"`
//! inside an unquoted field and CRLF line ends are boundaries exactly where a CSV parser ends
//! records. `floe append`'s CSV reader ([`super::files`]) and the pipeline's ingest stage share it.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use tokio::sync::mpsc;

use crate::error::Result;

/// Which bytes end a record outside a quoted field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Terminators {
    /// `\n` only; a lone `\r` is data (the pipeline's splitter).
    Newline,
    /// `\n`, `\r` and `\r\n` (the `csv-core` parser under arrow's CSV reader).
    CrOrNewline,
}

/// One record end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordEnd {
    /// The offset just after the terminator.
    pub offset: u64,
    /// The terminator is `\n` (a range may start here), not a lone `\r`.
    pub newline: bool,
    /// Nothing but the terminator since the previous end: a blank line, which `csv-core` skips.
    pub blank: bool,
}

/// Where the scanner is, as far as record ends go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    StartField,
    Unquoted,
    Quoted,
    AfterQuote,
}

/// Finds every record end of a CSV byte stream fed to it in chunks.
pub(crate) struct RecordEnds {
    state: Scan,
    terminators: Terminators,
    in_record: bool,
}

impl RecordEnds {
    /// A scanner at the start of a record.
    pub(crate) fn new(terminators: Terminators) -> Self {
        Self {
            state: Scan::StartField,
            terminators,
            in_record: false,
        }
    }

    /// Feed the next `chunk`, which starts at offset `base` of the stream.
    pub(crate) fn feed(&mut self, chunk: &[u8], base: u64, on_end: &mut dyn FnMut(RecordEnd)) {
        let cr_ends = self.terminators == Terminators::CrOrNewline;
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
                Scan::Unquoted => {
                    let found = if cr_ends {
                        memchr::memchr3(b',', b'\n', b'\r', &chunk[i..])
                    } else {
                        memchr::memchr2(b',', b'\n', &chunk[i..])
                    };
                    match found {
                        Some(n) => {
                            let b = chunk[i + n];
                            i += n + 1;
                            if b != b',' {
                                self.end(base + i as u64, b == b'\n', on_end);
                            }
                            self.state = Scan::StartField;
                        }
                        None => i = chunk.len(),
                    }
                }
                Scan::StartField | Scan::AfterQuote => {
                    let b = chunk[i];
                    i += 1;
                    self.state = match b {
                        b'\n' => {
                            self.end(base + i as u64, true, on_end);
                            Scan::StartField
                        }
                        b'\r' if cr_ends => {
                            self.end(base + i as u64, false, on_end);
                            Scan::StartField
                        }
                        b'"' => {
                            self.in_record = true;
                            Scan::Quoted // opens a field, or doubles a quote in one
                        }
                        b',' => {
                            self.in_record = true;
                            Scan::StartField
                        }
                        // A `"` inside an unquoted field is data, and so is a lone `\r` where it
                        // ends no record.
                        _ => {
                            self.in_record = true;
                            Scan::Unquoted
                        }
                    };
                }
            }
        }
    }

    fn end(&mut self, offset: u64, newline: bool, on_end: &mut dyn FnMut(RecordEnd)) {
        on_end(RecordEnd {
            offset,
            newline,
            blank: !self.in_record,
        });
        self.in_record = false;
    }
}

/// A place a byte range of a CSV file may start: just after a `\n` that ends a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub offset: u64,
    /// The records (as `csv-core` counts them: blank lines skipped, a header included) before it.
    pub records_before: u64,
}

/// Cuts of a CSV file of `size` bytes, read as `bytes`, into up to `parts` ranges of about equal
/// size, sent on `cuts` as the scan passes them, so that a range can start decoding while the scan
/// goes on. The first record (the header) is never split from the file's start. Ends with the scan.
pub(crate) async fn scan_cuts(
    mut bytes: BoxStream<'static, Result<Bytes>>,
    size: u64,
    parts: usize,
    cuts: mpsc::UnboundedSender<Result<Cut>>,
) {
    let target = size / parts.max(1) as u64;
    let mut scanner = RecordEnds::new(Terminators::CrOrNewline);
    let mut records = 0u64;
    let mut last_cut = 0u64;
    let mut made = 0usize;
    let mut offset = 0u64;
    loop {
        let chunk = match bytes.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return,
            Err(e) => {
                let _ = cuts.send(Err(e));
                return;
            }
        };
        if made + 1 >= parts || cuts.is_closed() {
            return; // every cut is made: the rest of the file is the last range
        }
        scanner.feed(&chunk, offset, &mut |end| {
            if !end.blank {
                records += 1;
            }
            if end.newline
                && records > 1
                && end.offset < size
                && end.offset >= last_cut + target
                && made + 1 < parts
            {
                last_cut = end.offset;
                made += 1;
                let _ = cuts.send(Ok(Cut {
                    offset: end.offset,
                    records_before: records,
                }));
            }
        });
        offset += chunk.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(text: &[u8], terminators: Terminators, chunk: usize) -> Vec<RecordEnd> {
        let mut scanner = RecordEnds::new(terminators);
        let mut out = Vec::new();
        for (i, piece) in text.chunks(chunk).enumerate() {
            scanner.feed(piece, (i * chunk) as u64, &mut |e| out.push(e));
        }
        out
    }

    /// Record ends as csv-core finds them, for the same bytes: the parser arrow's reader uses.
    fn csv_core_records(text: &[u8]) -> u64 {
        let mut reader = csv_core::Reader::new();
        let (mut out, mut ends) = (vec![0u8; 1 << 16], vec![0usize; 1024]);
        let (mut input, mut records) = (text, 0u64);
        loop {
            let (result, read, _, _) = reader.read_record(input, &mut out, &mut ends);
            input = &input[read..];
            match result {
                csv_core::ReadRecordResult::Record => records += 1,
                csv_core::ReadRecordResult::End => return records,
                csv_core::ReadRecordResult::InputEmpty if input.is_empty() => {
                    // the end of the input, told as an empty read
                    let (result, _, _, _) = reader.read_record(&[], &mut out, &mut ends);
                    if result == csv_core::ReadRecordResult::Record {
                        records += 1;
                    }
                    return records;
                }
                _ => {}
            }
        }
    }

    const TRICKY: &[u8] = b"id,text,n\r\n\
        1,\"a quoted\nline break\",3\r\n\
        2,\"doubled \"\"quotes\"\", and a comma\",4\n\
        \n\
        3,unquoted \"inside\",5\r\n\
        \r\n\
        4,\"crlf\r\ninside\",6\n\
        5,lone\rcr,7\n\
        6,\"\",8\n";

    #[test]
    fn newline_ends_are_where_csv_core_ends_records() {
        for chunk in [1, 2, 3, 7, 64, TRICKY.len()] {
            let found = ends(TRICKY, Terminators::CrOrNewline, chunk);
            // Every non-blank end counted up to a `\n` end equals csv-core's records in that prefix.
            let mut records = 0;
            for end in &found {
                if !end.blank {
                    records += 1;
                }
                if end.newline {
                    let prefix = &TRICKY[..end.offset as usize];
                    assert_eq!(csv_core_records(prefix), records, "prefix up to {}", end.offset);
                    // And the rest parses as whole records: the prefix ended on a boundary.
                    let rest = &TRICKY[end.offset as usize..];
                    assert_eq!(
                        csv_core_records(prefix) + csv_core_records(rest),
                        csv_core_records(TRICKY),
                        "split at {}",
                        end.offset
                    );
                }
            }
        }
    }

    #[test]
    fn quoted_line_breaks_end_no_record() {
        let found = ends(TRICKY, Terminators::CrOrNewline, 5);
        let inside_quotes = TRICKY
            .windows(b"line break".len())
            .position(|w| w == b"line break")
            .unwrap() as u64;
        assert!(found.iter().all(|e| e.offset != inside_quotes));
        // The pipeline's terminators: a lone `\r` is data, so one end fewer than with csv-core's.
        let newline_only = ends(TRICKY, Terminators::Newline, 5);
        assert!(newline_only.iter().all(|e| e.newline));
        assert_eq!(newline_only.len(), found.iter().filter(|e| e.newline).count());
    }
}
