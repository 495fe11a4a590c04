//! Printing, one file per command group: [`table`] (commits, show, snapshots, changes, diff),
//! [`rows`] (Arrow rows: scan, sql), [`sql`], [`pipeline`] (run, runs, verify), [`maintain`],
//! [`ingest`] and [`bench`]. One style of table for people (comfy-table's box) and CSV and JSON for
//! programs. Every printer writes to an `impl Write` and returns its errors; the commands write to
//! [`stdout`], whose broken pipe (`floe snapshots | head`: the reader went away) `main` turns into a
//! quiet exit 0, while a broken pipe anywhere else (a database connection) stays an error.

pub mod bench;
pub mod ingest;
pub mod maintain;
pub mod pipeline;
pub mod rows;
pub mod sql;
pub mod table;

use std::io::Write;
use std::{fmt, io};

use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Row, Table as Grid};
use floe::Result;
use serde::Serialize;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table, for people.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON.
    Json,
}

/// A table for people, with `header`: the one style every command prints.
fn grid(header: impl Into<Row>) -> Grid {
    let mut g = Grid::new();
    g.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    g
}

/// `value` as pretty JSON, on its own line.
fn write_json(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A CSV record of `fields`, on its own line.
fn write_csv_record<S: AsRef<str>>(out: &mut impl Write, fields: &[S]) -> Result<()> {
    let record: Vec<String> = fields.iter().map(|f| csv_field(f.as_ref())).collect();
    writeln!(out, "{}", record.join(","))?;
    Ok(())
}

/// Standard output, for the commands to print to.
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

/// Standard output whose broken pipe is marked as such (see [`stdout_was_closed`]).
pub struct Stdout(io::Stdout);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

/// The cause of a broken pipe on standard output.
#[derive(Debug)]
struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

fn mark_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

/// Whether `e` is standard output's broken pipe: the reader went away (`floe snapshots | head`).
pub fn stdout_was_closed(e: &floe::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let marked = c
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<StdoutClosed>());
        if marked {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> io::Error {
        mark_closed(io::Error::from(io::ErrorKind::BrokenPipe))
    }

    #[test]
    fn only_a_broken_pipe_on_standard_output_counts_as_the_reader_gone() {
        assert!(stdout_was_closed(&floe::Error::from(closed())));
        // As arrow's JSON writer returns it.
        let through_arrow = arrow::error::ArrowError::from(closed());
        assert!(stdout_was_closed(&floe::Error::from(through_arrow)));
        // A broken pipe elsewhere (a database connection) stays an error.
        let elsewhere = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(!stdout_was_closed(&floe::Error::from(elsewhere)));
        assert_eq!(
            mark_closed(io::Error::from(io::ErrorKind::WriteZero)).kind(),
            io::ErrorKind::WriteZero
        );
    }
}
