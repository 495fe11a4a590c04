//! Arrow rows, as `floe scan`, `floe sql` and `floe demo` print them: a table for people, CSV with a
//! header or a JSON array for programs.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use floe::Result;

use super::{grid, Format};

/// `batches` (of `schema`) in `format`.
pub fn write(out: &mut impl Write, schema: &Schema, batches: &[RecordBatch], format: Format) -> Result<()> {
    match format {
        Format::Table => {
            let mut g = grid(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>(),
            );
            let options = FormatOptions::default().with_display_error(true);
            for b in batches {
                let cells = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..b.num_rows() {
                    g.add_row(cells.iter().map(|c| c.value(row).to_string()).collect::<Vec<_>>());
                }
            }
            writeln!(out, "{g}")?;
        }
        Format::Csv => {
            // arrow's CSV writer keeps only the text of an I/O error: each batch is written to memory
            // first, so that a broken pipe stays an I/O error of `out`.
            let empty = [RecordBatch::new_empty(schema.clone().into())];
            let batches = if batches.is_empty() { &empty[..] } else { batches };
            for (i, b) in batches.iter().enumerate() {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(i == 0)
                    .build(Vec::new());
                w.write(b)?;
                out.write_all(&w.into_inner())?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
    }
    Ok(())
}
