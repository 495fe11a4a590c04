//! A streaming RFC 4180 record splitter that keeps every record's raw bytes.
//!
//! `csv_core` is not used: it skips blank lines and cannot tell an unterminated quoted field at the
//! end of the input from a closed one, and the pipeline rules need both (a blank line is a record of
//! one empty field; an unterminated quote is one malformed record). The parsing rules:
//!
//! - a record ends at `\n` or `\r\n` outside quotes (the terminator is not part of the raw text); a
//!   lone `\r` followed by anything else is data; a `\r` that ends the input is a terminator;
//! - a field that starts with `"` is quoted: it runs to the next `"` not followed by `"` (a doubled
//!   `""` is one `"`), and may hold `,`, `\r` and `\n`;
//! - lenient like most readers: a `"` inside an unquoted field is data, and bytes after a closing
//!   quote are appended to the field (`"ab"c` is `abc`);
//! - the input's last record needs no terminator; a quoted field still open at the end of the input
//!   makes its record incomplete (its raw text runs to the end, less one final line terminator).

use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a field (after a comma or at the start of a record).
    StartField,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a `"` inside a quoted field: a closing quote, or the first of a doubled one.
    AfterQuote,
}

/// One record as split: its raw bytes (without terminator) and its fields.
pub(super) struct CsvRecord<'a> {
    /// The record's bytes as they are in the input, without the line terminator.
    pub raw: &'a [u8],
    data: &'a [u8],
    ends: &'a [usize],
    /// False when a quoted field was still open at the end of the input.
    pub complete: bool,
}

impl CsvRecord<'_> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` (unquoted, doubled quotes collapsed).
    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// Splits input fed in arbitrary chunks into records.
#[derive(Debug)]
pub(super) struct CsvSplitter {
    state: State,
    /// A `\r` outside quotes was the last byte seen: a terminator if `\n` follows, else data.
    cr_pending: bool,
    raw: Vec<u8>,
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for CsvSplitter {
    fn default() -> Self {
        Self {
            state: State::StartField,
            cr_pending: false,
            raw: Vec::new(),
            data: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl CsvSplitter {
    /// Feed the next chunk; `emit` is called for every record completed in it.
    pub fn feed(&mut self, input: &[u8], emit: &mut dyn FnMut(CsvRecord<'_>) -> Result<()>) -> Result<()> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if self.cr_pending {
                self.cr_pending = false;
                if b == b'\n' {
                    self.raw.pop(); // the `\r` already in `raw` belongs to the terminator
                    i += 1;
                    self.end_record(true, emit)?;
                    continue;
                }
                // A lone `\r` is data; `b` is processed below in the unquoted field it continues.
                self.data.push(b'\r');
                self.state = State::Unquoted;
            }
            match self.state {
                State::Quoted => {
                    let rest = &input[i..];
                    match rest.iter().position(|&c| c == b'"') {
                        Some(n) => {
                            self.raw.extend_from_slice(&rest[..=n]);
                            self.data.extend_from_slice(&rest[..n]);
                            self.state = State::AfterQuote;
                            i += n + 1;
                        }
                        None => {
                            self.raw.extend_from_slice(rest);
                            self.data.extend_from_slice(rest);
                            i = input.len();
                        }
                    }
                }
                state => match b {
                    b',' => {
                        self.raw.push(b);
                        self.ends.push(self.data.len());
                        self.state = State::StartField;
                        i += 1;
                    }
                    b'\n' => {
                        i += 1;
                        self.end_record(true, emit)?;
                    }
                    b'\r' => {
                        self.raw.push(b);
                        self.cr_pending = true;
                        i += 1;
                    }
                    b'"' if state == State::StartField => {
                        self.raw.push(b);
                        self.state = State::Quoted;
                        i += 1;
                    }
                    b'"' if state == State::AfterQuote => {
                        self.raw.push(b);
                        self.data.push(b'"');
                        self.state = State::Quoted;
                        i += 1;
                    }
                    _ => {
                        let rest = &input[i..];
                        let n = rest
                            .iter()
                            .position(|&c| matches!(c, b',' | b'\n' | b'\r'))
                            .unwrap_or(rest.len());
                        self.raw.extend_from_slice(&rest[..n]);
                        self.data.extend_from_slice(&rest[..n]);
                        self.state = State::Unquoted;
                        i += n;
                    }
                },
            }
        }
        Ok(())
    }

    /// End of input: emit the last record if there is one.
    pub fn finish(&mut self, emit: &mut dyn FnMut(CsvRecord<'_>) -> Result<()>) -> Result<()> {
        if self.cr_pending {
            self.cr_pending = false;
            self.raw.pop();
            self.end_record(true, emit)
        } else if self.state == State::Quoted {
            // Unterminated quote: one record to the end; the newline ending the file is not part of it.
            if self.raw.last() == Some(&b'\n') {
                self.raw.pop();
                if self.raw.last() == Some(&b'\r') {
                    self.raw.pop();
                }
            }
            self.end_record(false, emit)
        } else if !self.raw.is_empty() {
            self.end_record(true, emit)
        } else {
            Ok(())
        }
    }

    fn end_record(
        &mut self,
        complete: bool,
        emit: &mut dyn FnMut(CsvRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        self.ends.push(self.data.len());
        let result = emit(CsvRecord {
            raw: &self.raw,
            data: &self.data,
            ends: &self.ends,
            complete,
        });
        self.raw.clear();
        self.data.clear();
        self.ends.clear();
        self.state = State::StartField;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (raw text, fields, complete) of every record of `input` fed in chunks of `chunk` bytes.
    fn split(input: &[u8], chunk: usize) -> Vec<(Vec<u8>, Vec<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        let mut s = CsvSplitter::default();
        let mut emit = |r: CsvRecord<'_>| {
            out.push((
                r.raw.to_vec(),
                (0..r.len()).map(|i| r.field(i).to_vec()).collect(),
                r.complete,
            ));
            Ok(())
        };
        for piece in input.chunks(chunk) {
            s.feed(piece, &mut emit).unwrap();
        }
        s.finish(&mut emit).unwrap();
        out
    }

    fn rec(raw: &str, fields: &[&str], complete: bool) -> (Vec<u8>, Vec<Vec<u8>>, bool) {
        (
            raw.as_bytes().to_vec(),
            fields.iter().map(|f| f.as_bytes().to_vec()).collect(),
            complete,
        )
    }

    #[test]
    fn splits_records_at_every_chunk_size() {
        let input = b"a,b\r\n\"x,\"\"y\"\"\r\nz\",\n\n c ,\"\"\rd,\"q\"w\r\n\r\n\"open\n";
        let expected = vec![
            rec("a,b", &["a", "b"], true),
            rec("\"x,\"\"y\"\"\r\nz\",", &["x,\"y\"\r\nz", ""], true),
            rec("", &[""], true),
            rec(" c ,\"\"\rd,\"q\"w", &[" c ", "\rd", "qw"], true),
            rec("", &[""], true),
            rec("\"open", &["open\n"], false),
        ];
        for chunk in [1, 2, 3, 5, 1000] {
            assert_eq!(split(input, chunk), expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn end_of_input() {
        assert_eq!(split(b"", 4), vec![]);
        assert_eq!(split(b"a\n", 4), vec![rec("a", &["a"], true)]);
        assert_eq!(split(b"a", 4), vec![rec("a", &["a"], true)]);
        assert_eq!(split(b"a\r", 1), vec![rec("a", &["a"], true)]);
        assert_eq!(
            split(b"a\n\n", 1),
            vec![rec("a", &["a"], true), rec("", &[""], true)]
        );
        assert_eq!(split(b"a,", 1), vec![rec("a,", &["a", ""], true)]);
        assert_eq!(split(b"\"a\r\n", 1), vec![rec("\"a", &["a\r\n"], false)]);
    }
}
