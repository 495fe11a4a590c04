//! Sorting the rows of one write by the table's default sort order before they reach its data files,
//! in bounded memory and on every core. Each sort field becomes a key column appended to the
//! (already conformed) batches: the source column, through the field's transform. The batches are
//! dealt to one partition per core (in turn, skipping a partition whose queue is full while it
//! spills). DataFusion's external sort (`SortExec`, partitions kept apart) orders each partition by
//! the keys on a task of its own, spilling sorted runs to temporary files when the partitions
//! together hold more than [`SORT_MEMORY`] bytes of batches, and a streaming merge (what
//! `SortPreservingMergeExec` runs) merges the sorted partitions into one stream; the keys are dropped
//! again on the way out. The writer then writes the sorted stream into files one after another, so
//! the files of one write hold disjoint ranges of the first sort column.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow::compute::SortOptions;
use arrow::datatypes::{Field, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryPool, TrackConsumersPool, UnboundedMemoryPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::common::spawn_buffered;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use iceberg::spec::{NullOrder, SortDirection, SortOrder};
use iceberg::transform::{create_transform_function, BoxedTransformFunction};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use tokio::sync::mpsc;

use super::Table;
use crate::error::{Error, Result};

/// The bytes of batches one sorted write keeps in memory, over all its partitions (each may hold an
/// equal share); beyond it, sorted runs spill to the operating system's temporary directory. The
/// merge of the runs reads one batch of each at a time.
pub(crate) const SORT_MEMORY: usize = 256 * 1024 * 1024;

/// The least share of [`SORT_MEMORY`] a partition of the sort gets (so at most 8 partitions): a
/// partition that spilled merges its runs reading one batch of each at once, in what the others'
/// shares leave, so a share must hold several batches.
const PARTITION_MEMORY_FLOOR: usize = 32 * 1024 * 1024;

/// Rows per sorted output batch.
const SORTED_BATCH_ROWS: usize = 32 * 1024;

/// Batches waiting to enter each partition of the sort, and sorted batches waiting for the writer.
const QUEUED_BATCHES: usize = 2;

/// What each partition's sort sets aside to merge its runs when it spills: DataFusion's default
/// (10 MiB), or less under a small budget.
const MERGE_RESERVATION: usize = 10 * 1024 * 1024;

/// One sort key: where its source column is in a batch (a path of child indices through structs) and
/// the transform applied to it.
struct SortKey {
    path: Vec<usize>,
    transform: BoxedTransformFunction,
}

/// Rows being sorted: batches go in with [`Sorter::push`], come out sorted from [`Sorter::finish`].
pub(crate) struct Sorter {
    keys: Vec<SortKey>,
    /// With the keys appended.
    keyed: ArrowSchemaRef,
    /// One per partition of the sort; each batch goes to the next one with room.
    inputs: Vec<mpsc::Sender<std::result::Result<RecordBatch, DataFusionError>>>,
    /// The partition the next batch goes to when it has room.
    next_input: usize,
    output: mpsc::Receiver<Result<RecordBatch>>,
    /// The sort of the partitions (before their merge), for its metrics.
    #[cfg_attr(not(test), allow(dead_code))]
    sort: Arc<SortExec>,
}

impl Sorter {
    /// A sorter for writes of `table` (batches conformed to `schema`, the table's Arrow schema), or
    /// `None` when the table is unsorted: its rows are written in the order they come.
    pub(crate) fn for_table(table: &Table, schema: &ArrowSchemaRef) -> Result<Option<Self>> {
        let order = table.metadata().default_sort_order();
        if order.is_unsorted() {
            return Ok(None);
        }
        let partitions = crate::resources::cores().min(SORT_MEMORY / PARTITION_MEMORY_FLOOR);
        Self::new(order, schema, SORT_MEMORY, partitions).map(Some)
    }

    /// A sorter by `order` on `partitions` partitions that keep at most `memory` bytes of batches
    /// between them before spilling.
    fn new(order: &SortOrder, schema: &ArrowSchemaRef, memory: usize, partitions: usize) -> Result<Self> {
        let partitions = partitions.max(1);
        let mut keys = Vec::with_capacity(order.fields.len());
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        let mut exprs = Vec::with_capacity(order.fields.len());
        for (i, f) in order.fields.iter().enumerate() {
            let path = column_path(schema, f.source_id).ok_or_else(|| {
                Error::internal(format!(
                    "the sort order's field {} is not a column of the table",
                    f.source_id
                ))
            })?;
            let transform = create_transform_function(&f.transform)?;
            let source_type = column_at(schema, &path);
            let probe = transform.transform(arrow::array::new_empty_array(&source_type))?;
            let name = format!("__floe_sort_key_{i}");
            exprs.push(PhysicalSortExpr::new(
                Arc::new(Column::new(&name, fields.len())),
                SortOptions {
                    descending: f.direction == SortDirection::Descending,
                    nulls_first: f.null_order == NullOrder::First,
                },
            ));
            fields.push(Arc::new(Field::new(name, probe.data_type().clone(), true)));
            keys.push(SortKey { path, transform });
        }
        let keyed: ArrowSchemaRef = Arc::new(ArrowSchema::new(fields));
        let ordering = LexOrdering::new(exprs).ok_or_else(|| Error::internal("a sort order without keys"))?;

        let mut inputs = Vec::with_capacity(partitions);
        let mut sources: Vec<Arc<dyn PartitionStream>> = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            let (input, rows) = mpsc::channel(QUEUED_BATCHES);
            inputs.push(input);
            sources.push(Arc::new(OnePartition {
                schema: keyed.clone(),
                rows: Mutex::new(Some(rows)),
            }));
        }
        let unsorted = StreamingTableExec::try_new(
            keyed.clone(),
            sources,
            None,
            Vec::<LexOrdering>::new(),
            false,
            None,
        )?;
        let sort =
            Arc::new(SortExec::new(ordering.clone(), Arc::new(unsorted)).with_preserve_partitioning(true));
        // Each partition's sort may buffer an equal share of what the merge reservations leave
        // (the fair pool); a greedy pool would let the first partitions take it all, and a later
        // one fail with nothing of its own to spill.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(memory),
            NonZeroUsize::new(5).expect("five is not zero"),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
            )
            .build_arc()?;
        let config = SessionConfig::new()
            .with_batch_size(SORTED_BATCH_ROWS)
            .with_sort_spill_reservation_bytes((memory / (4 * partitions)).min(MERGE_RESERVATION));
        let context = Arc::new(
            TaskContext::default()
                .with_session_config(config)
                .with_runtime(runtime),
        );
        let mut sorted = merged(&sort, &ordering, context)?;
        let (sorted_tx, output) = mpsc::channel(QUEUED_BATCHES);
        let width = schema.fields().len();
        let unkeyed = schema.clone();
        tokio::spawn(async move {
            while let Some(batch) = sorted.next().await {
                let batch = batch.map_err(Error::from).and_then(|b| {
                    Ok(RecordBatch::try_new(
                        unkeyed.clone(),
                        b.columns()[..width].to_vec(),
                    )?)
                });
                let failed = batch.is_err();
                if sorted_tx.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Self {
            keys,
            keyed,
            inputs,
            next_input: 0,
            output,
            sort,
        })
    }

    /// Add a batch (conformed to the table's schema) to the rows being sorted.
    pub(crate) async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let mut columns = batch.columns().to_vec();
        for key in &self.keys {
            let source = child_at(&batch, &key.path);
            columns.push(key.transform.transform(source)?);
        }
        let keyed = RecordBatch::try_new(self.keyed.clone(), columns)?;
        // The batch goes to the first partition with room, looking from the one after the last
        // batch's: a partition busy sorting a run and spilling it does not hold up the others, which
        // then reach their own spills meanwhile instead of one after another.
        let n = self.inputs.len();
        let looked_at: Vec<usize> = (0..n).map(|i| (self.next_input + i) % n).collect();
        let room = looked_at.iter().map(|&i| Box::pin(self.inputs[i].reserve()));
        let (reserved, which, _) = futures::future::select_all(room).await;
        if let Ok(permit) = reserved {
            permit.send(Ok(keyed));
            self.next_input = (looked_at[which] + 1) % n;
            return Ok(());
        }
        // The sort stopped: its error is the first thing it sends out.
        match self.output.recv().await {
            Some(Err(e)) => Err(e),
            _ => Err(Error::internal("the sort of a write stopped")),
        }
    }

    /// Every row pushed, sorted, in batches of the table's schema.
    pub(crate) fn finish(self) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
        drop(self.inputs);
        receiver_stream(self.output)
    }
}

/// The sorted partitions of `sort` merged into one stream, each partition sorted on a task of its
/// own. The merge (what `SortPreservingMergeExec` does) holds one batch of each partition and the
/// batch it builds, outside the sort's memory pool: the partitions that spilled merge their runs
/// with whatever that pool has left, and would leave the merge above them none.
fn merged(
    sort: &Arc<SortExec>,
    ordering: &LexOrdering,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let partitions = sort.properties().output_partitioning().partition_count();
    if partitions == 1 {
        return Ok(sort.execute(0, context)?);
    }
    let streams = (0..partitions)
        .map(|p| Ok(spawn_buffered(sort.execute(p, context.clone())?, 1)))
        .collect::<Result<Vec<_>>>()?;
    let unbounded: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
    Ok(StreamingMergeBuilder::new()
        .with_streams(streams)
        .with_schema(sort.schema())
        .with_expressions(ordering)
        .with_metrics(BaselineMetrics::new(&ExecutionPlanMetricsSet::new(), 0))
        .with_batch_size(SORTED_BATCH_ROWS)
        .with_reservation(MemoryConsumer::new("floe sorted write merge").register(&unbounded))
        .build()?)
}

/// The rows dealt to one partition of a sorter, as that partition of its sort's input.
#[derive(Debug)]
struct OnePartition {
    schema: ArrowSchemaRef,
    rows: Mutex<Option<mpsc::Receiver<std::result::Result<RecordBatch, DataFusionError>>>>,
}

impl PartitionStream for OnePartition {
    fn schema(&self) -> &ArrowSchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = self.rows.lock().expect("sort input").take();
        let stream = match rows {
            Some(rows) => receiver_stream(rows),
            None => futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "a partition of a sort's input was read twice".into(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// What `receiver` receives, as a stream.
fn receiver_stream<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed()
}

/// The path of child indices to the column with Iceberg field id `id` (through structs), if any.
fn column_path(schema: &ArrowSchema, id: i32) -> Option<Vec<usize>> {
    fn find(fields: &arrow::datatypes::Fields, id: i32, path: &mut Vec<usize>) -> bool {
        for (i, f) in fields.iter().enumerate() {
            path.push(i);
            let own = f
                .metadata()
                .get(PARQUET_FIELD_ID_META_KEY)
                .and_then(|v| v.parse::<i32>().ok());
            if own == Some(id) {
                return true;
            }
            if let arrow::datatypes::DataType::Struct(children) = f.data_type() {
                if find(children, id, path) {
                    return true;
                }
            }
            path.pop();
        }
        false
    }
    let mut path = Vec::new();
    find(schema.fields(), id, &mut path).then_some(path)
}

/// The type of the column at `path`.
fn column_at(schema: &ArrowSchema, path: &[usize]) -> arrow::datatypes::DataType {
    let mut field = schema.field(path[0]);
    for &i in &path[1..] {
        let arrow::datatypes::DataType::Struct(children) = field.data_type() else {
            unreachable!("a path found by column_path goes through structs");
        };
        field = &children[i];
    }
    field.data_type().clone()
}

/// The column at `path` in `batch` (a null struct makes its fields null, as a reader sees them).
fn child_at(batch: &RecordBatch, path: &[usize]) -> ArrayRef {
    let mut column = batch.column(path[0]).clone();
    for &i in &path[1..] {
        let parent = column
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("a path found by column_path goes through structs");
        let child = parent.column(i).clone();
        column = match parent.nulls() {
            Some(nulls) if parent.null_count() > 0 => {
                let combined = arrow::buffer::NullBuffer::union(Some(nulls), child.nulls());
                arrow::array::make_array(
                    child
                        .to_data()
                        .into_builder()
                        .nulls(combined)
                        .build()
                        .expect("the same data with more nulls"),
                )
            }
            _ => child,
        };
    }
    column
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use datafusion::physical_plan::metrics::MetricValue;
    use iceberg::spec::{SortField, Transform};
    use std::collections::HashMap;

    fn schema() -> ArrowSchemaRef {
        let id = |n: i32| HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), n.to_string())]);
        Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false).with_metadata(id(1)),
            Field::new("name", DataType::Utf8, true).with_metadata(id(2)),
        ]))
    }

    fn order(fields: Vec<(i32, SortDirection, NullOrder)>) -> SortOrder {
        SortOrder {
            order_id: 1,
            fields: fields
                .into_iter()
                .map(|(source_id, direction, null_order)| SortField {
                    source_id,
                    transform: Transform::Identity,
                    direction,
                    null_order,
                })
                .collect(),
        }
    }

    /// Rows `ids` in a scrambled order, named `n{id % 7}` (every 5th null).
    fn scrambled(ids: std::ops::Range<i64>, batch_rows: usize) -> Vec<RecordBatch> {
        let n = ids.end - ids.start;
        let ids: Vec<i64> = (0..n).map(|i| ids.start + (i * 7919) % n).collect();
        ids.chunks(batch_rows)
            .map(|chunk| {
                let names: Vec<Option<String>> = chunk
                    .iter()
                    .map(|i| (i % 5 != 0).then(|| format!("n{}", i % 7)))
                    .collect();
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from(chunk.to_vec())),
                        Arc::new(StringArray::from(names)),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// The batches sorted on `partitions` partitions, and how many times each partition spilled.
    async fn sort(
        order: &SortOrder,
        batches: Vec<RecordBatch>,
        memory: usize,
        partitions: usize,
    ) -> (Vec<RecordBatch>, Vec<usize>) {
        let mut sorter = Sorter::new(order, &schema(), memory, partitions).unwrap();
        for b in batches {
            sorter.push(b).await.unwrap();
        }
        let plan = sorter.sort.clone();
        let sorted = futures::TryStreamExt::try_collect(sorter.finish()).await.unwrap();
        let mut spilled = vec![0; partitions];
        for metric in plan.metrics().unwrap().iter() {
            if let (MetricValue::SpillCount(count), Some(p)) = (metric.value(), metric.partition()) {
                spilled[p] += count.value();
            }
        }
        (sorted, spilled)
    }

    fn column<T: Clone + 'static>(
        batches: &[RecordBatch],
        i: usize,
        get: impl Fn(&dyn Array, usize) -> T,
    ) -> Vec<T> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column(i).clone();
                (0..c.len()).map(|r| get(c.as_ref(), r)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_write_far_larger_than_the_memory_bound_sorts_by_spilling() {
        // About 9 MB of rows through a 4 MiB budget: it cannot finish without spilling.
        let ids = 0..400_000i64;
        let by_id_desc = order(vec![(1, SortDirection::Descending, NullOrder::Last)]);
        let (sorted, spilled) = sort(&by_id_desc, scrambled(ids.clone(), 8192), 4 * 1024 * 1024, 1).await;
        assert!(spilled[0] > 0, "the sort kept everything in memory");
        assert_eq!(
            sorted[0].schema(),
            schema(),
            "the keys are dropped on the way out"
        );
        let got = column(&sorted, 0, |a, r| {
            a.as_any().downcast_ref::<Int64Array>().unwrap().value(r)
        });
        assert_eq!(got, ids.rev().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn nulls_go_where_the_order_says_and_later_fields_break_ties() {
        let name = |a: &dyn Array, r: usize| {
            let s = a.as_any().downcast_ref::<StringArray>().unwrap();
            s.is_valid(r).then(|| s.value(r).to_string())
        };
        let id = |a: &dyn Array, r: usize| a.as_any().downcast_ref::<Int64Array>().unwrap().value(r);
        let nulls_first = order(vec![
            (2, SortDirection::Ascending, NullOrder::First),
            (1, SortDirection::Descending, NullOrder::Last),
        ]);
        let (sorted, spilled) = sort(&nulls_first, scrambled(0..100, 7), SORT_MEMORY, 3).await;
        assert_eq!(spilled, [0, 0, 0], "a small write sorts in memory");
        let names = column(&sorted, 1, name);
        let ids = column(&sorted, 0, id);
        let mut expected: Vec<(Option<String>, i64)> = (0..100)
            .map(|i| ((i % 5 != 0).then(|| format!("n{}", i % 7)), i))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        assert_eq!(names.into_iter().zip(ids).collect::<Vec<_>>(), expected);

        let nulls_last = order(vec![(2, SortDirection::Descending, NullOrder::Last)]);
        let (sorted, _) = sort(&nulls_last, scrambled(0..100, 7), SORT_MEMORY, 3).await;
        let names = column(&sorted, 1, name);
        assert_eq!(names.iter().filter(|n| n.is_none()).count(), 20);
        assert!(names[80..].iter().all(Option::is_none), "{names:?}");
        assert!(names[..80].windows(2).all(|w| w[0] >= w[1]), "{names:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn partitions_sorted_on_their_own_tasks_merge_into_one_order_and_each_spills_within_its_share() {
        // About 27 MB of rows dealt to 4 partitions sharing a 32 MiB budget (a share of 6 MiB once
        // the merge reservations are set aside, and sorting a batch reserves about twice its size):
        // each must spill.
        let ids = 0..1_200_000i64;
        let by_id = order(vec![(1, SortDirection::Ascending, NullOrder::First)]);
        let (sorted, spilled) = sort(&by_id, scrambled(ids.clone(), 4096), 32 * 1024 * 1024, 4).await;
        assert!(
            spilled.iter().all(|&n| n > 0),
            "spills per partition: {spilled:?}"
        );
        assert_eq!(sorted[0].schema(), schema());
        let got = column(&sorted, 0, |a, r| {
            a.as_any().downcast_ref::<Int64Array>().unwrap().value(r)
        });
        assert_eq!(got, ids.collect::<Vec<_>>());
    }
}
