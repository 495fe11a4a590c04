//! What the table commands print: a commit's outcome (`append`, `overwrite`, `delete`, `add-files`),
//! `show`, `snapshots`, `changes` and `diff`. Snapshot, ref and file columns carry the names of the
//! library's views ([`floe::table::inspect`]), as `floe sql`'s metadata tables do.

use std::collections::BTreeMap;
use std::io::Write;

use floe::table::inspect::{FileInfo, MetadataRow, RefInfo, SnapshotInfo, TableSummary};
use floe::{CommitResult, Result, SnapshotChanges};

use super::{grid, write_csv_record, write_json, Format};

/// One line: the snapshot a write committed and its counts, or that it committed nothing.
pub fn commit(out: &mut impl Write, r: &CommitResult) -> Result<()> {
    let summary = r
        .snapshot_id
        .and_then(|id| r.table.metadata().snapshot_by_id(id))
        .map(|s| s.summary().clone());
    match (r.snapshot_id, summary) {
        (Some(id), Some(s)) => {
            let p = &s.additional_properties;
            let get = |k: &str| p.get(k).cloned().unwrap_or_else(|| "0".into());
            writeln!(
                out,
                "committed snapshot {id} to {} ({}): +{} rows in {} files, -{} rows in {} files, {} rows total",
                r.table.name(),
                s.operation.as_str(),
                get("added-records"),
                get("added-data-files"),
                get("deleted-records"),
                get("deleted-data-files"),
                get("total-records"),
            )?;
        }
        _ => writeln!(
            out,
            "nothing to commit to {}: the change holds no rows and matches none; no snapshot was created",
            r.table.name()
        )?,
    }
    Ok(())
}

/// What a row-level change (upsert, merge) did, or would do on a dry run: one line for people, one
/// record for programs.
pub fn row_changes(out: &mut impl Write, r: &CommitResult, dry_run: bool, format: Format) -> Result<()> {
    let c = &r.rows;
    let header = [
        "table",
        "snapshot_id",
        "dry_run",
        "inserted",
        "updated",
        "deleted",
        "unchanged",
        "files_rewritten",
        "delete_files_added",
    ];
    let snapshot = r.snapshot_id.map(|s| s.to_string()).unwrap_or_default();
    let values = [
        r.table.name().to_string(),
        snapshot.clone(),
        dry_run.to_string(),
        c.inserted.to_string(),
        c.updated.to_string(),
        c.deleted.to_string(),
        c.unchanged.to_string(),
        c.files_rewritten.to_string(),
        c.delete_files_added.to_string(),
    ];
    match format {
        Format::Json => {
            let mut object = serde_json::to_value(c)?;
            object["table"] = r.table.name().to_string().into();
            object["snapshot_id"] = r.snapshot_id.into();
            object["dry_run"] = dry_run.into();
            write_json(out, &object)
        }
        Format::Csv => {
            write_csv_record(out, &header)?;
            write_csv_record(out, &values)
        }
        Format::Table => {
            let what = format!(
                "{} inserted, {} updated, {} deleted, {} unchanged; {} delete files written, {} files rewritten",
                c.inserted, c.updated, c.deleted, c.unchanged, c.delete_files_added, c.files_rewritten
            );
            match (dry_run, r.snapshot_id) {
                (true, _) => writeln!(
                    out,
                    "dry run on {}: would commit {what}; nothing was committed",
                    r.table.name()
                )?,
                (false, Some(id)) => writeln!(out, "committed snapshot {id} to {}: {what}", r.table.name())?,
                (false, None) => writeln!(out, "nothing to commit to {}: {what}", r.table.name())?,
            }
            Ok(())
        }
    }
}

/// The names of a view's columns: the header of its table and CSV.
fn columns<R: MetadataRow>() -> Vec<String> {
    R::arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn file_cells(f: &FileInfo) -> Vec<String> {
    vec![
        f.path.clone(),
        f.partition.clone(),
        f.record_count.to_string(),
        f.file_size_in_bytes.to_string(),
        f.spec_id.to_string(),
    ]
}

/// A schema: every field (nested ones by dotted path) with its id, type, whether it is required
/// and its doc, then the identifier fields.
pub fn schema(out: &mut impl Write, schema: &iceberg::spec::Schema) -> Result<()> {
    fn rows(fields: &[iceberg::spec::NestedFieldRef], prefix: &str, g: &mut super::Grid) {
        for f in fields {
            let path = format!("{prefix}{}", f.name);
            g.add_row(vec![
                f.id.to_string(),
                path.clone(),
                floe::table::schema_text::type_text(&f.field_type),
                f.required.to_string(),
                f.doc.clone().unwrap_or_default(),
            ]);
            let nested = match f.field_type.as_ref() {
                iceberg::spec::Type::Struct(s) => s.fields().to_vec(),
                iceberg::spec::Type::List(l) => vec![l.element_field.clone()],
                iceberg::spec::Type::Map(m) => vec![m.key_field.clone(), m.value_field.clone()],
                iceberg::spec::Type::Primitive(_) => Vec::new(),
            };
            rows(&nested, &format!("{path}."), g);
        }
    }
    let mut g = grid(vec!["id", "column", "type", "required", "doc"]);
    rows(schema.as_struct().fields(), "", &mut g);
    writeln!(out, "{g}")?;
    let ids: Vec<&str> = schema
        .identifier_field_ids()
        .filter_map(|id| schema.name_by_field_id(id))
        .collect();
    writeln!(
        out,
        "identifier fields: {}",
        if ids.is_empty() {
            "(none)".to_string()
        } else {
            ids.join(", ")
        }
    )?;
    Ok(())
}

/// A partition spec: its id (marked when it is the default), then one row per field with its
/// source column, transform and field id.
pub fn partition_spec(
    out: &mut impl Write,
    spec: &iceberg::spec::PartitionSpec,
    schema: &iceberg::spec::Schema,
    default: bool,
) -> Result<()> {
    let mark = if default { " (default)" } else { "" };
    if spec.is_unpartitioned() {
        writeln!(out, "spec {}{mark}: unpartitioned", spec.spec_id())?;
        return Ok(());
    }
    let mut g = grid(vec!["partition field", "source", "transform", "field id"]);
    for f in spec.fields() {
        let source = schema
            .name_by_field_id(f.source_id)
            .map(str::to_string)
            .unwrap_or_else(|| format!("(dropped column {})", f.source_id));
        g.add_row(vec![
            f.name.clone(),
            source,
            f.transform.to_string(),
            f.field_id.to_string(),
        ]);
    }
    writeln!(out, "spec {}{mark}\n{g}", spec.spec_id())?;
    Ok(())
}

/// `floe show`: the table's facts, then its schema, partition spec, sort order, properties, refs and
/// files.
pub fn show(out: &mut impl Write, s: &TableSummary, format: Format) -> Result<()> {
    if format == Format::Json {
        // Through a JSON value: its keys sorted, as this output has always had them.
        return write_json(out, &serde_json::to_value(s)?);
    }
    writeln!(out, "table      {}", s.table)?;
    writeln!(out, "location   {}", s.location)?;
    writeln!(out, "metadata   {}", s.metadata_location)?;
    let snapshot = s.snapshot.map(|id| id.to_string());
    writeln!(out, "snapshot   {}", snapshot.as_deref().unwrap_or("(none)"))?;
    writeln!(out, "rows       {}", s.rows)?;
    writeln!(out, "files      {} ({} bytes)", s.files.len(), s.bytes)?;
    writeln!(out, "schema")?;
    schema(out, &s.schema)?;
    // One spec that partitions nothing: no section, as before specs could change.
    if s.partition_specs.len() > 1 || !s.partition_spec.is_unpartitioned() {
        writeln!(out, "partition specs")?;
        for spec in &s.partition_specs {
            partition_spec(out, spec, &s.schema, spec.spec_id() == s.partition_spec.spec_id())?;
        }
    }
    writeln!(out, "sort order: {}", s.sort_order)?;
    if !s.properties.is_empty() {
        let mut g = grid(vec!["property", "value"]);
        for (k, v) in &s.properties {
            g.add_row(vec![k, v]);
        }
        writeln!(out, "properties\n{g}")?;
    }
    let mut g = grid(columns::<RefInfo>());
    for r in &s.refs {
        g.add_row(vec![
            r.name.clone(),
            r.kind.to_string(),
            r.snapshot_id.to_string(),
        ]);
    }
    writeln!(out, "refs\n{g}")?;
    let mut g = grid(columns::<FileInfo>());
    for f in &s.files {
        g.add_row(file_cells(f));
    }
    writeln!(out, "files\n{g}")?;
    Ok(())
}

/// `floe snapshots`: one row per snapshot, oldest first.
pub fn snapshots(out: &mut impl Write, rows: &[SnapshotInfo], format: Format) -> Result<()> {
    let summary = |r: &SnapshotInfo| -> Vec<String> {
        let mut pairs: Vec<String> = r.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs
    };
    let cells = |r: &SnapshotInfo, summary: String, refs: String| {
        vec![
            r.snapshot_id.to_string(),
            r.parent_id.map(|p| p.to_string()).unwrap_or_default(),
            r.committed_at.to_rfc3339(),
            r.operation.clone(),
            summary,
            refs,
        ]
    };
    match format {
        // Through a JSON value: its keys sorted, as this output has always had them.
        Format::Json => write_json(out, &serde_json::to_value(rows)?)?,
        Format::Csv => {
            write_csv_record(out, &columns::<SnapshotInfo>())?;
            for r in rows {
                write_csv_record(out, &cells(r, summary(r).join(";"), r.refs.join(";")))?;
            }
        }
        Format::Table => {
            let mut g = grid(columns::<SnapshotInfo>());
            for r in rows {
                g.add_row(cells(r, summary(r).join("\n"), r.refs.join(", ")));
            }
            writeln!(out, "{g}")?;
        }
    }
    Ok(())
}

/// `floe changes`: the counts, then the files added and removed.
pub fn changes(out: &mut impl Write, c: &SnapshotChanges, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, c);
    }
    let id = |s: Option<i64>| s.map(|s| s.to_string()).unwrap_or_else(|| "(empty)".into());
    writeln!(
        out,
        "{} -> {}: +{} rows in {} files, -{} rows in {} files, -{} rows by {} delete files added ({} removed)",
        id(c.from_snapshot),
        id(c.to_snapshot),
        c.added_rows,
        c.added_files.len(),
        c.removed_rows,
        c.removed_files.len(),
        c.deleted_rows,
        c.added_delete_files.len(),
        c.removed_delete_files.len()
    )?;
    let mut g = grid([vec!["change".to_string()], columns::<FileInfo>()].concat());
    for (change, files) in [("added", &c.added_files), ("removed", &c.removed_files)] {
        for f in files {
            g.add_row([vec![change.to_string()], file_cells(f)].concat());
        }
    }
    writeln!(out, "{g}")?;
    Ok(())
}

/// `floe diff`: the verdict, what decided it, and a sample of differing rows.
pub fn diff(out: &mut impl Write, r: &floe::diff::DiffReport, format: Format) -> Result<()> {
    if format == Format::Json {
        return write_json(out, r);
    }
    let verdict = if r.equal { "EQUAL" } else { "DIFFERENT" };
    writeln!(
        out,
        "{} vs {}: {verdict} (decided by {:?})",
        r.left, r.right, r.decided_by
    )?;
    writeln!(out, "rows: {} vs {}", r.left_rows, r.right_rows)?;
    for d in r.schema_differences.iter().chain(&r.statistics_differences) {
        writeln!(out, "  {d}")?;
    }
    if r.decided_by == floe::diff::DecidedBy::Rows {
        writeln!(
            out,
            "buckets: {} compared, {} differed; rows: +{} added, -{} removed, ~{} changed",
            r.buckets, r.differing_buckets, r.added, r.removed, r.changed
        )?;
    }
    if !r.samples.is_empty() {
        let mut g = grid(vec!["kind", "left", "right", "changed columns"]);
        let show = |m: &Option<BTreeMap<String, String>>| {
            m.as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        for s in &r.samples {
            g.add_row(vec![
                s.kind.clone(),
                show(&s.left),
                show(&s.right),
                s.changed_columns.join(", "),
            ]);
        }
        writeln!(out, "sample of differing rows\n{g}")?;
    }
    Ok(())
}
