//! `Floe::add_files`: existing Parquet files committed as one append snapshot, with statistics read
//! from their footers equal to what floe's own writer records; files that do not fit, are missing,
//! or sit on another store are clear errors that commit nothing.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use floe::{ErrorKind, WriteOptions};

use crate::both_backends;
use crate::support::*;

/// The statistics of a data file that add_files must reproduce.
fn stats(f: &iceberg::spec::DataFile) -> String {
    let sorted = |m: &std::collections::HashMap<i32, u64>| {
        let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort();
        v
    };
    let bounds = |m: &std::collections::HashMap<i32, iceberg::spec::Datum>| {
        let mut v: Vec<_> = m.iter().map(|(k, d)| (*k, d.to_string())).collect();
        v.sort();
        v
    };
    format!(
        "records={} size={} columns={:?} values={:?} nulls={:?} lower={:?} upper={:?} partition={:?}",
        f.record_count(),
        f.file_size_in_bytes(),
        sorted(f.column_sizes()),
        sorted(f.value_counts()),
        sorted(f.null_value_counts()),
        bounds(f.lower_bounds()),
        bounds(f.upper_bounds()),
        f.partition(),
    )
}

both_backends!(
    add_files_commits_existing_files_with_their_statistics,
    |ctx: Ctx| async move {
        // floe's own writer makes the files (in a scratch table of the same schema and partitioning).
        let scratch = ctx.table("scratch");
        ctx.create_events_table(&scratch, &["day(ts)"]).await;
        let written = ctx
            .floe
            .append(&scratch, stream(vec![events(0..40)]), &WriteOptions::default())
            .await
            .unwrap();
        let files = written
            .table
            .live_data_files(written.table.current_snapshot())
            .await
            .unwrap();
        assert!(files.len() > 1, "several partitions, several files");
        let uris: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();

        let t = ctx.table("added");
        ctx.create_events_table(&t, &["day(ts)"]).await;
        let r = ctx
            .floe
            .add_files(&t, &uris, &WriteOptions::default())
            .await
            .unwrap();
        let snapshot = r.table.current_snapshot().unwrap().clone();
        assert_eq!(snapshot.summary().operation.as_str(), "append");
        assert_eq!(
            snapshot.summary().additional_properties["added-data-files"],
            files.len().to_string()
        );
        let mut want: Vec<String> = files.iter().map(stats).collect();
        let mut got: Vec<String> = r
            .table
            .live_data_files(Some(&snapshot))
            .await
            .unwrap()
            .iter()
            .map(stats)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "statistics from the footers equal the writer's");
        assert_eq!(
            ids(&ctx.floe, &t, floe::At::Current).await,
            (0..40).collect::<Vec<_>>()
        );
        if let Some(read) = crate::interop::pyiceberg_read(&ctx, t.name()) {
            assert_eq!(read["rows"].as_array().unwrap().len(), 40, "PyIceberg reads them");
        }

        // Each bad file is a clear error, and nothing is committed.
        let before = ctx.floe.load_table(&t).await.unwrap();
        let no_ids = format!("{}/data/no-field-ids.parquet", before.location());
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        ctx.floe.storage().write(&no_ids, buf.into()).await.unwrap();
        let missing = format!("{}/data/missing.parquet", before.location());
        let elsewhere = if before.location().starts_with("s3://") {
            "file:///tmp/elsewhere.parquet".to_string()
        } else {
            "s3://another-bucket/elsewhere.parquet".to_string()
        };
        for (bad, says) in [
            (vec![no_ids.clone()], "field id"),
            (vec![missing.clone()], "missing.parquet"),
            (vec![elsewhere.clone()], "elsewhere.parquet"),
            // Already in the table.
            (vec![uris[0].clone()], "already"),
        ] {
            let err = ctx
                .floe
                .add_files(&t, &bad, &WriteOptions::default())
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(says),
                "{bad:?}: {err} (kind {:?})",
                err.kind()
            );
            assert_ne!(err.kind(), ErrorKind::Internal, "{err}");
            let after = ctx.floe.load_table(&t).await.unwrap();
            assert_eq!(after.metadata_location(), before.metadata_location(), "{bad:?}");
        }
    }
);
