//! Writing position delete files in the form every reader here accepts (PyIceberg, DuckDB's iceberg
//! extension, iceberg-rust, Java): Parquet with exactly the columns `file_path` (field id
//! 2147483546, Utf8) and `pos` (2147483545, Int64), no `row` column, rows sorted by `pos`; one file per
//! data file, next to it, with the data file's partition tuple and spec id, `referenced_data_file`
//! set, and equal, untruncated lower and upper bounds on `file_path` (PyIceberg finds a delete
//! file's data file from them, Java from either).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use iceberg::metadata_columns::{RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS};
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use roaring::RoaringTreemap;

use crate::error::{Error, Result};
use crate::table::encoding::Codec;
use crate::table::entries::LiveFile;
use crate::table::Table;

/// Positions written per Arrow batch.
const BATCH_ROWS: usize = 64 * 1024;

fn schema() -> Arc<Schema> {
    let id = |id: i32| HashMap::from([("PARQUET:field_id".to_string(), id.to_string())]);
    Arc::new(Schema::new(vec![
        Field::new("file_path", DataType::Utf8, false).with_metadata(id(RESERVED_FIELD_ID_DELETE_FILE_PATH)),
        Field::new("pos", DataType::Int64, false).with_metadata(id(RESERVED_FIELD_ID_DELETE_FILE_POS)),
    ]))
}

/// Where the delete file of `data_path` goes: beside it, named so that it sorts apart.
fn location_beside(data_path: &str) -> String {
    let dir = data_path.rsplit_once('/').map(|(d, _)| d).unwrap_or(data_path);
    format!("{dir}/{}-deletes.parquet", uuid::Uuid::now_v7())
}

/// Write one position delete file of `data` deleting `positions` (not empty), and describe it for
/// the manifests. The file is not committed: the caller records it as written.
pub(crate) async fn write_position_deletes(
    table: &Table,
    data: &LiveFile,
    positions: &RoaringTreemap,
) -> Result<DataFile> {
    let (Some(min), Some(max)) = (positions.min(), positions.max()) else {
        return Err(Error::internal(format!(
            "a position delete file of {} with no position",
            data.path()
        )));
    };
    let data_path = data.path().to_string();
    let schema = schema();
    let properties = WriterProperties::builder()
        .set_compression(Codec::of_table(table)?.compression())
        .build();
    let mut buffer = Vec::new();
    {
        let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties))?;
        let mut iter = positions.iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<i64> = iter.by_ref().take(BATCH_ROWS).map(|p| p as i64).collect();
            let paths: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                data_path.as_str(),
                chunk.len(),
            )));
            let pos: ArrayRef = Arc::new(Int64Array::from(chunk));
            writer.write(&RecordBatch::try_new(schema.clone(), vec![paths, pos])?)?;
        }
        writer.close()?;
    }
    let location = location_beside(&data_path);
    let size = buffer.len() as u64;
    table.storage().write(&location, buffer.into()).await?;
    let count = positions.len();
    let bounds = |pos: u64| {
        HashMap::from([
            (RESERVED_FIELD_ID_DELETE_FILE_PATH, Datum::string(&data_path)),
            (RESERVED_FIELD_ID_DELETE_FILE_POS, Datum::long(pos as i64)),
        ])
    };
    DataFileBuilder::default()
        .content(DataContentType::PositionDeletes)
        .file_path(location.clone())
        .file_format(DataFileFormat::Parquet)
        .partition(data.file.partition().clone())
        .partition_spec_id(data.spec_id)
        .record_count(count)
        .file_size_in_bytes(size)
        .referenced_data_file(Some(data_path.clone()))
        .value_counts(HashMap::from([
            (RESERVED_FIELD_ID_DELETE_FILE_PATH, count),
            (RESERVED_FIELD_ID_DELETE_FILE_POS, count),
        ]))
        .null_value_counts(HashMap::from([
            (RESERVED_FIELD_ID_DELETE_FILE_PATH, 0),
            (RESERVED_FIELD_ID_DELETE_FILE_POS, 0),
        ]))
        .lower_bounds(bounds(min))
        .upper_bounds(bounds(max))
        .build()
        .map_err(|e| Error::internal(format!("describing delete file {location}: {e}")))
}
