//! Which delete files apply to which data file, by Iceberg's rules (Java's `DeleteFileIndex`): a
//! position delete file applies to a data file of the same partition whose data sequence number is
//! at most its own; when it names one data file (its `referenced_data_file`, or equal lower and upper
//! bounds on `file_path`), only to that one. An equality delete file applies to a data file of the
//! same partition (any partition when its spec is unpartitioned) with a strictly smaller sequence
//! number. Deletion vectors (Iceberg v3) are found, to be refused by name.
//!
//! iceberg-rust 0.10.1's own index hands every position delete file of a partition to every data
//! file in it; floe's readers use this index instead.

use std::collections::HashMap;

use iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_PATH;
use iceberg::spec::{DataContentType, DataFile, PrimitiveLiteral, Struct};

use crate::error::{Error, ErrorKind, Result};
use crate::table::entries::{LiveFile, SnapshotFiles};

/// The delete files of one snapshot, indexed for lookups by data file.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteIndex {
    /// Position deletes that name one data file, by its path.
    by_path: HashMap<String, Vec<LiveFile>>,
    /// Position deletes that may name several data files, by spec and partition.
    by_partition: HashMap<(i32, Struct), Vec<LiveFile>>,
    /// Equality deletes, by spec and partition.
    equality: HashMap<(i32, Struct), Vec<LiveFile>>,
    /// Equality deletes of an unpartitioned spec: they apply to every partition.
    global_equality: Vec<LiveFile>,
    /// Deletion vectors (Puffin): floe reads v2 tables only.
    vectors: Vec<LiveFile>,
}

/// The deletes that apply to one data file.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileDeletes {
    pub(crate) positions: Vec<LiveFile>,
    pub(crate) equality: Vec<LiveFile>,
}

/// The data file a position delete file names, when it names exactly one: its
/// `referenced_data_file`, else equal lower and upper bounds on `file_path`.
pub(crate) fn referenced_data_file(delete: &DataFile) -> Option<String> {
    if delete.content_type() != DataContentType::PositionDeletes {
        return None;
    }
    if let Some(path) = delete.referenced_data_file() {
        return Some(path);
    }
    let bound = |bounds: &HashMap<i32, iceberg::spec::Datum>| match bounds
        .get(&RESERVED_FIELD_ID_DELETE_FILE_PATH)
        .map(|d| d.literal())
    {
        Some(PrimitiveLiteral::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (bound(delete.lower_bounds()), bound(delete.upper_bounds())) {
        (Some(lo), Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

impl DeleteIndex {
    /// Index the delete files of `files`.
    pub(crate) fn of(files: &SnapshotFiles) -> DeleteIndex {
        let mut index = DeleteIndex::default();
        for d in &files.deletes {
            if d.is_deletion_vector() {
                index.vectors.push(d.clone());
                continue;
            }
            let key = (d.spec_id, d.file.partition().clone());
            match d.file.content_type() {
                DataContentType::PositionDeletes => match referenced_data_file(&d.file) {
                    Some(path) => index.by_path.entry(path).or_default().push(d.clone()),
                    None => index.by_partition.entry(key).or_default().push(d.clone()),
                },
                DataContentType::EqualityDeletes if d.file.partition().fields().is_empty() => {
                    index.global_equality.push(d.clone())
                }
                DataContentType::EqualityDeletes => index.equality.entry(key).or_default().push(d.clone()),
                DataContentType::Data => {}
            }
        }
        index
    }

    /// Whether some equality delete file is live.
    pub(crate) fn has_equality_deletes(&self) -> bool {
        !self.equality.is_empty() || !self.global_equality.is_empty()
    }

    /// Whether some position delete file names several data files (other writers' partition-scoped
    /// deletes).
    pub(crate) fn has_partition_scoped_deletes(&self) -> bool {
        !self.by_partition.is_empty()
    }

    /// Refuse a table with deletion vectors, naming one.
    pub(crate) fn refuse_deletion_vectors(&self, table: &str) -> Result<()> {
        match self.vectors.first() {
            None => Ok(()),
            Some(v) => Err(Error::new(
                ErrorKind::Data,
                format!(
                    "table {table} has Iceberg v3 deletion vectors ({}); floe reads and writes v2 position \
                     deletes only",
                    v.path()
                ),
            )),
        }
    }

    /// The delete files that apply to `data`.
    pub(crate) fn for_data_file(&self, data: &LiveFile) -> FileDeletes {
        let seq = data.sequence_number;
        let key = (data.spec_id, data.file.partition().clone());
        let mut out = FileDeletes::default();
        let applies = |d: &&LiveFile| d.sequence_number >= seq;
        if let Some(ds) = self.by_path.get(data.path()) {
            out.positions.extend(ds.iter().filter(applies).cloned());
        }
        if let Some(ds) = self.by_partition.get(&key) {
            out.positions.extend(ds.iter().filter(applies).cloned());
        }
        let applies_eq = |d: &&LiveFile| d.sequence_number > seq;
        if let Some(ds) = self.equality.get(&key) {
            out.equality.extend(ds.iter().filter(applies_eq).cloned());
        }
        out.equality
            .extend(self.global_equality.iter().filter(applies_eq).cloned());
        out
    }

    /// The position delete files that name exactly `path` (floe's own kind: one per data file).
    pub(crate) fn file_scoped(&self, path: &str) -> &[LiveFile] {
        self.by_path.get(path).map(Vec::as_slice).unwrap_or_default()
    }
}
