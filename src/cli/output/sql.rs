//! What `floe sql` prints: the query's rows (see [`super::rows`]), or, with `--format parquet`, a
//! Parquet file and one line saying so.

use std::io::Write;
use std::path::Path;

use clap::ValueEnum;
use floe::query::QueryResult;
use floe::{Error, ErrorKind, Result};

use super::{rows, Format};

/// Output format of `floe sql`: the rows formats, or a Parquet file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// Aligned table, for people.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON.
    Json,
    /// A Parquet file (needs --out).
    Parquet,
}

/// A query's result in `format`; a Parquet file is written to `file`.
pub fn query(out: &mut impl Write, r: &QueryResult, format: QueryFormat, file: Option<&Path>) -> Result<()> {
    let rows_format = match format {
        QueryFormat::Table => Format::Table,
        QueryFormat::Csv => Format::Csv,
        QueryFormat::Json => Format::Json,
        QueryFormat::Parquet => {
            let path =
                file.ok_or_else(|| Error::new(ErrorKind::InvalidInput, "--format parquet needs --out FILE"))?;
            let mut w =
                parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, r.schema.clone(), None)?;
            for b in &r.batches {
                w.write(b)?;
            }
            w.close()?;
            let count: usize = r.batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "wrote {count} rows to {}", path.display())?;
            return Ok(());
        }
    };
    rows::write(out, &r.schema, &r.batches, rows_format)
}
