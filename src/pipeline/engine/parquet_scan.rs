//! A DataFusion table over a snapshot's Parquet files whose position-deleted rows are skipped by
//! DataFusion's own Parquet scan: each file with deletes carries a `ParquetAccessPlan` (a row
//! selection per row group, fully deleted row groups skipped), so the multi-partition file scan,
//! its projection and its row-group reading stay as they are for plain files. Used by the
//! DataFusion engine when a snapshot has position deletes; plain snapshots use a `ListingTable`.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::ExecutionPlan;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
use roaring::RoaringTreemap;

use crate::error::{Error, Result};
use crate::storage::ObjectStorage;
use crate::table::plain_files::PlainFiles;

/// The table: its files (with their access plans) grouped for `partitions` scan partitions.
#[derive(Debug)]
pub(crate) struct ParquetWithDeletes {
    schema: ArrowSchemaRef,
    store_url: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    partitions: usize,
}

/// Where a file is inside its object store (`file:///a/b` → `a/b`, `s3://bucket/k` → `k`), and the
/// store's URL.
fn locate(uri: &str) -> Result<(ObjectStoreUrl, String)> {
    let url = url::Url::parse(uri).map_err(|e| Error::internal(format!("data file URI {uri}: {e}")))?;
    let store = ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or_default()
    ))?;
    Ok((store, url.path().trim_start_matches('/').to_string()))
}

/// Per row group of a file with `row_counts` rows each, the rows not in `deleted`.
fn access_plan(row_counts: &[i64], deleted: &RoaringTreemap) -> ParquetAccessPlan {
    let sorted: Vec<u64> = deleted.iter().collect();
    let mut groups = Vec::with_capacity(row_counts.len());
    let mut start = 0u64;
    for &n in row_counts {
        let n = n.max(0) as u64;
        let end = start + n;
        let (from, to) = (
            sorted.partition_point(|p| *p < start),
            sorted.partition_point(|p| *p < end),
        );
        let in_group = &sorted[from..to];
        let gone = in_group.len() as u64;
        let access = if gone == 0 {
            RowGroupAccess::Scan
        } else if gone == n {
            RowGroupAccess::Skip
        } else {
            let mut selectors = Vec::new();
            let mut cursor = start;
            for &p in in_group {
                if p > cursor {
                    selectors.push(RowSelector::select((p - cursor) as usize));
                }
                selectors.push(RowSelector::skip(1));
                cursor = p + 1;
            }
            if end > cursor {
                selectors.push(RowSelector::select((end - cursor) as usize));
            }
            RowGroupAccess::Selection(RowSelection::from(selectors))
        };
        groups.push(access);
        start = end;
    }
    ParquetAccessPlan::new(groups)
}

impl ParquetWithDeletes {
    /// The files of `plain`, each with deletes given an access plan from its footer's row groups.
    pub(crate) async fn try_new(
        storage: &ObjectStorage,
        plain: &PlainFiles,
        partitions: usize,
    ) -> Result<Self> {
        let mut files = Vec::with_capacity(plain.files.len());
        let mut store_url = None;
        for (uri, size) in &plain.files {
            let (url, path) = locate(uri)?;
            if store_url.get_or_insert_with(|| url.clone()) != &url {
                return Err(Error::internal(format!(
                    "{uri} is on another object store than the table's other files"
                )));
            }
            let mut file = PartitionedFile::new(path, *size);
            if let Some(deleted) = plain.deleted.get(uri) {
                let (store, location) = storage.resolve(uri)?;
                let mut reader = ParquetObjectReader::new(store, location).with_file_size(*size);
                let metadata = reader
                    .get_metadata(None)
                    .await
                    .map_err(|e| Error::wrap(crate::error::ErrorKind::Data, format!("footer of {uri}"), e))?;
                let counts: Vec<i64> = metadata.row_groups().iter().map(|g| g.num_rows()).collect();
                file = file.with_extensions(Arc::new(access_plan(&counts, deleted)));
            }
            files.push(file);
        }
        let store_url = store_url.unwrap_or_else(ObjectStoreUrl::local_filesystem);
        Ok(Self {
            schema: plain.schema.clone(),
            store_url,
            files,
            partitions: partitions.max(1),
        })
    }
}

#[async_trait]
impl TableProvider for ParquetWithDeletes {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> ArrowSchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); self.partitions.min(self.files.len().max(1))];
        let n = groups.len();
        for (i, f) in self.files.iter().enumerate() {
            groups[i % n].push(f.clone());
        }
        let source = Arc::new(ParquetSource::new(self.schema.clone()));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_plan_skips_exactly_the_deleted_rows() {
        let deleted: RoaringTreemap = [0u64, 1, 5, 10, 11, 12, 13, 14].into_iter().collect();
        let plan = access_plan(&[5, 5, 5], &deleted);
        // Group 0: rows 0..5, 0 and 1 deleted; group 1: 5..10, 5 deleted; group 2: 10..15, all deleted.
        let groups = plan.inner();
        match &groups[0] {
            RowGroupAccess::Selection(s) => assert_eq!(s.row_count(), 3),
            other => panic!("{other:?}"),
        }
        match &groups[1] {
            RowGroupAccess::Selection(s) => assert_eq!(s.row_count(), 4),
            other => panic!("{other:?}"),
        }
        assert!(matches!(groups[2], RowGroupAccess::Skip));
        assert!(matches!(
            access_plan(&[3], &RoaringTreemap::new()).inner()[0],
            RowGroupAccess::Scan
        ));
    }
}
