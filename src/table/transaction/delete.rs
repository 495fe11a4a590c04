//! Delete: remove the rows matching a filter, copy-on-write. Files whose every row matches are
//! dropped (a `delete` snapshot); files with some matching rows are rewritten without them (an
//! `overwrite` snapshot). A filter that matches nothing commits no snapshot, as in Iceberg Java.
//! Validation is the overwrite's (see [`super::overwrite`]).

use std::sync::Arc;

use iceberg::spec::Operation;

use super::copy_on_write::copy_on_write;
use super::overwrite::RowChange;
use super::producer::branch_head;
use super::DeleteOptions;
use crate::error::Result;
use crate::table::filter::RowFilter;
use crate::table::Table;

/// Plan deleting the rows matching `filter` on the branch head of `read`.
pub(crate) async fn plan(read: &Table, filter: RowFilter, options: &DeleteOptions) -> Result<RowChange> {
    filter.compile(&read.arrow_schema()?)?;
    let write = &options.write;
    let head = branch_head(read.metadata(), &write.branch).cloned();
    let cow = copy_on_write(read, head.as_ref(), &filter, write.target_file_size).await?;
    let operation = if cow.rewritten.is_empty() {
        Operation::Delete
    } else {
        Operation::Overwrite
    };
    Ok(RowChange {
        operation,
        filter: Some(filter),
        read_snapshot: head.map(|s| s.snapshot_id()),
        read_set: Arc::new(cow.read_set),
        removed: cow.removed,
        added: cow.rewritten,
        isolation: options.isolation,
        write: write.clone(),
    })
}
