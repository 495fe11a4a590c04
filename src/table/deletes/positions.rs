//! Reading position delete files: the row positions they delete from one data file, as a bitmap.
//! Columns are found by name (`file_path`, `pos`) and else by place, as every writer here puts them
//! first; the path column may be any string representation. A file that names several data files
//! (another writer's partition-scoped deletes) contributes only its rows for the data file asked
//! about.

use arrow::array::{Array, AsArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use roaring::RoaringTreemap;

use super::index::referenced_data_file;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectStorage;
use crate::table::entries::LiveFile;

/// The positions of `data_path` that the position delete files `deletes` remove.
pub(crate) async fn deleted_positions(
    storage: &ObjectStorage,
    data_path: &str,
    deletes: &[LiveFile],
) -> Result<RoaringTreemap> {
    let mut out = RoaringTreemap::new();
    for d in deletes {
        let scoped = referenced_data_file(&d.file).is_some_and(|p| p == data_path);
        read_positions(storage, d, (!scoped).then_some(data_path), &mut out).await?;
    }
    Ok(out)
}

/// Add the positions of delete file `delete` to `out`: all of them, or only those of `only` when the
/// file may name several data files.
async fn read_positions(
    storage: &ObjectStorage,
    delete: &LiveFile,
    only: Option<&str>,
    out: &mut RoaringTreemap,
) -> Result<()> {
    let path = delete.path();
    let broken = |why: String| {
        Error::new(
            ErrorKind::Data,
            format!("position delete file {path} cannot be read: {why}"),
        )
    };
    let (store, location) = storage.resolve(path)?;
    let reader = ParquetObjectReader::new(store, location).with_file_size(delete.file.file_size_in_bytes());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| broken(e.to_string()))?;
    let names: Vec<&str> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let place = |name: &str, fallback: usize| names.iter().position(|n| *n == name).unwrap_or(fallback);
    let (path_col, pos_col) = (place("file_path", 0), place("pos", 1));
    if names.len() < 2 {
        return Err(broken(format!(
            "it has {} column(s), not file_path and pos",
            names.len()
        )));
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), [path_col, pos_col]);
    let (path_at, pos_at) = if path_col < pos_col { (0, 1) } else { (1, 0) };
    let mut batches = builder
        .with_projection(mask)
        .build()
        .map_err(|e| broken(e.to_string()))?;
    while let Some(batch) = batches.try_next().await.map_err(|e| broken(e.to_string()))? {
        let positions = cast(batch.column(pos_at), &DataType::Int64)
            .map_err(|e| broken(format!("pos is not a long: {e}")))?;
        let positions: &Int64Array = positions.as_primitive();
        let paths = match only {
            Some(_) => Some(
                cast(batch.column(path_at), &DataType::Utf8)
                    .map_err(|e| broken(format!("file_path is not a string: {e}")))?,
            ),
            None => None,
        };
        let paths: Option<&StringArray> = paths.as_ref().map(|p| p.as_string());
        for i in 0..positions.len() {
            if positions.is_null(i) || positions.value(i) < 0 {
                return Err(broken(format!("row {i} has no valid pos")));
            }
            if let (Some(want), Some(paths)) = (only, paths) {
                if paths.is_null(i) || paths.value(i) != want {
                    continue;
                }
            }
            out.insert(positions.value(i) as u64);
        }
    }
    Ok(())
}
