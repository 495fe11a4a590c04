//! Append: add data files as a new snapshot. An append never conflicts: whatever landed meanwhile
//! stays, and each attempt builds its manifests and manifest list from that attempt's base, so a
//! retry can never carry a stale manifest list forward. Files written with a schema that is no
//! longer current still land when every field they wrote still exists with a type their values
//! promote to (readers read files by field id); otherwise the append is a `Conflict`.

use iceberg::spec::{DataFile, Operation, SchemaRef, Type};

use super::producer::{produce, SnapshotChange, Staged};
use super::WriteOptions;
use crate::error::{Error, Result};
use crate::table::schema_update::tree::{promotes, type_name};
use crate::table::Table;

/// Data files to add.
#[derive(Clone, Debug)]
pub(crate) struct Append {
    pub(crate) files: Vec<DataFile>,
    /// The transaction wrote the files (and deletes them if it certainly does not land); files a
    /// caller added (`add_files`) are never deleted.
    pub(crate) owned: bool,
    /// Commit a snapshot even with no file (a record in the history, such as an equivalence
    /// verdict); an append of nothing is otherwise no change at all.
    pub(crate) keep_empty: bool,
    pub(crate) write: WriteOptions,
    /// The schema the files were written with, when known.
    pub(crate) schema: Option<SchemaRef>,
    /// The partition spec the files were written with (their partition tuples follow it), when it
    /// may not be the base's default: a spec change that lands first leaves them in their own
    /// spec's manifest.
    pub(crate) spec_id: Option<i32>,
}

impl Append {
    pub(crate) fn new(files: Vec<DataFile>, write: &WriteOptions) -> Self {
        Self {
            files,
            owned: true,
            keep_empty: false,
            write: write.clone(),
            schema: None,
            spec_id: None,
        }
    }

    /// The files were written for `table` as it was: its current schema and default partition spec.
    pub(crate) fn written_with(mut self, table: &Table) -> Self {
        self.schema = Some(table.schema().clone());
        self.spec_id = Some(table.metadata().default_partition_spec_id());
        self
    }

    /// The files' partition tuples follow `table`'s default partition spec.
    pub(crate) fn with_spec(mut self, table: &Table) -> Self {
        self.spec_id = Some(table.metadata().default_partition_spec_id());
        self
    }

    /// The head the append expects, and the files' fit to the base's current schema.
    pub(crate) fn validate(&self, base: &Table) -> Result<()> {
        self.write.check_expected_head(base)?;
        match &self.schema {
            Some(written) if !self.files.is_empty() => still_fits(written, base),
            _ => Ok(()),
        }
    }

    /// Files someone else wrote, added as they are.
    pub(crate) fn adopted(files: Vec<DataFile>, write: &WriteOptions) -> Self {
        Self {
            owned: false,
            ..Self::new(files, write)
        }
    }

    /// A snapshot that adds nothing.
    pub(crate) fn marker(write: &WriteOptions) -> Self {
        Self {
            keep_empty: true,
            ..Self::new(Vec::new(), write)
        }
    }

    pub(crate) async fn apply(&self, base: &Table, written: &mut Vec<String>) -> Result<Option<Staged>> {
        if self.files.is_empty() && !self.keep_empty {
            return Ok(None);
        }
        let spec_id = self
            .spec_id
            .unwrap_or_else(|| base.metadata().default_partition_spec_id());
        let change = SnapshotChange::data(Operation::Append, (self.files.clone(), spec_id), Vec::new());
        produce(base, change, &self.write, written).await.map(Some)
    }
}

/// Whether files written with `written` can still be read through `base`'s current schema: each
/// field they wrote is still there (by id) with the same kind of type, a primitive one its values
/// promote to.
fn still_fits(written: &SchemaRef, base: &Table) -> Result<()> {
    let current = base.schema();
    if current.schema_id() == written.schema_id() {
        return Ok(());
    }
    for (id, field) in written.field_id_to_fields() {
        let name = written.name_by_field_id(*id).unwrap_or(&field.name);
        let refuse = |why: String| {
            Err(Error::conflict(
                None,
                format!(
                    "this append wrote column {name:?} (field id {id}) with schema {}, and a concurrent schema \
                     change (now schema {}) {why}",
                    written.schema_id(),
                    current.schema_id()
                ),
            ))
        };
        let Some(now) = current.field_by_id(*id) else {
            return refuse("dropped it".into());
        };
        let fits = match (field.field_type.as_ref(), now.field_type.as_ref()) {
            (Type::Primitive(a), Type::Primitive(b)) => promotes(a, b),
            (Type::Struct(_), Type::Struct(_))
            | (Type::List(_), Type::List(_))
            | (Type::Map(_), Type::Map(_)) => true,
            _ => false,
        };
        if !fits {
            return refuse(format!(
                "changed its type from {} to {}",
                type_name(&field.field_type),
                type_name(&now.field_type)
            ));
        }
    }
    Ok(())
}
