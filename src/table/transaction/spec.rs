//! The partition-spec action: a [`SpecUpdate`] checked on the default spec the transaction read,
//! then applied at commit to the base's default spec as its new default (a new spec, no snapshot).
//! Like Java's `UpdatePartitionSpec` (whose REST commit asserts the default spec id), a spec change
//! that landed since the read makes this one a `Conflict`; schema changes in between are fine as
//! long as every source column still exists. Data files already written keep their spec.

use super::producer::Staged;
use crate::error::{Error, Result};
use crate::table::spec_update::SpecUpdate;
use crate::table::Table;

/// A partition-spec update and the default spec it was planned on.
#[derive(Clone, Debug)]
pub(crate) struct SpecChange {
    update: SpecUpdate,
    read_spec_id: i32,
    read_schema_id: i32,
}

impl SpecChange {
    /// Plan `update` on `read`'s default spec: a broken rule is refused now, before anything is
    /// committed.
    pub(crate) fn plan(read: &Table, update: SpecUpdate) -> Result<Self> {
        let metadata = read.metadata();
        let spec = update.apply(
            metadata.default_partition_spec(),
            read.schema(),
            metadata.format_version(),
        )?;
        // Bind it now too: what the metadata builder refuses is refused before the commit.
        read.metadata_builder().add_default_partition_spec(spec)?;
        Ok(Self {
            update,
            read_spec_id: metadata.default_partition_spec_id(),
            read_schema_id: read.schema().schema_id(),
        })
    }

    /// A `Conflict` when another partition-spec change landed since the read.
    pub(crate) fn validate(&self, base: &Table) -> Result<()> {
        let now = base.metadata().default_partition_spec_id();
        if now == self.read_spec_id {
            return Ok(());
        }
        Err(Error::conflict(
            None,
            format!(
                "a concurrent partition spec change made spec {now} the default (this change was planned on \
                 spec {}); reload the table and try again",
                self.read_spec_id
            ),
        ))
    }

    /// The update applied to `view`'s default spec, as the new default spec.
    pub(crate) fn apply(&self, view: &Table) -> Result<Staged> {
        let metadata = view.metadata();
        let spec = self
            .update
            .apply(
                metadata.default_partition_spec(),
                view.schema(),
                metadata.format_version(),
            )
            .map_err(|e| {
                if view.schema().schema_id() == self.read_schema_id {
                    e
                } else {
                    Error::conflict(
                        None,
                        format!(
                            "the schema changed concurrently (now schema {}) and this partition spec change no \
                             longer applies: {}",
                            view.schema().schema_id(),
                            e.message()
                        ),
                    )
                }
            })?;
        Staged::metadata_only(
            view.metadata_builder()
                .add_default_partition_spec(spec)?
                .build()?,
        )
    }
}
