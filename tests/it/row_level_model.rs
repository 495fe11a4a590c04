//! The row-level model test (issue 25): seeded random sequences of upserts, merges, deletes,
//! compactions and expiries, every row-level change in every mode (copy-on-write, merge-on-read,
//! auto), on a partitioned (`day(ts)`) and an unpartitioned table, run step by step against an
//! in-memory model of the rows. After every step floe's scan, PyIceberg 0.12 and DuckDB 1.4.4's own
//! iceberg extension (`iceberg_scan` of the current metadata file) read exactly the model's rows,
//! whole rows, and each change reports the row counts the model predicts. Fixed seeds and a bounded
//! number of steps keep it within the suite's budget.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use floe::maintenance::{CompactOptions, CompactReport, ExpireOptions};
use floe::{
    At, MergeClause, RowCounts, RowFilter, RowLevelMode, RowLevelOptions, TableName, UpsertOptions,
    WhenMatched, WhenNotMatched, WriteOptions,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::both_backends;
use crate::interop::{duckdb_scan, floe_rows, pyiceberg_read};
use crate::support::*;

/// One sequence per seed, on each table.
const SEEDS: [u64; 2] = [25, 4_044];
const MODES: [RowLevelMode; 3] = [
    RowLevelMode::CopyOnWrite,
    RowLevelMode::MergeOnRead,
    RowLevelMode::Auto,
];
/// Keys are drawn from `0..KEYS`; the table starts with `0..40`.
const KEYS: i64 = 56;
const DAY_US: i64 = 86_400_000_000;
/// 2024-01-01T00:00:00Z.
const START_US: i64 = 1_704_067_200_000_000;
/// Rows spread over this many days (partitions of the `day(ts)` table).
const DAYS: i64 = 4;

/// A row's values but its key (`id`).
#[derive(Clone, Debug, PartialEq)]
struct Row {
    user_id: Option<String>,
    /// Microseconds since the epoch, whole seconds.
    ts: i64,
    amount: f64,
}

/// The rows a table should hold, by key.
type Model = BTreeMap<i64, Row>;

fn random_row(rng: &mut ChaCha8Rng) -> Row {
    Row {
        user_id: (!rng.gen_bool(0.15)).then(|| format!("u{}", rng.gen_range(0..5))),
        ts: START_US + rng.gen_range(0..DAYS) * DAY_US + rng.gen_range(0..86_400) * 1_000_000,
        // Quarters: sums stay exact.
        amount: rng.gen_range(0..400) as f64 * 0.25,
    }
}

/// `rows` in the events schema, with an `_op` column (a CDC feed's operation) when `ops` is given.
fn batch(rows: &[(i64, Row)], ops: Option<&[&str]>) -> RecordBatch {
    let mut fields: Vec<Field> = events_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(k, _)| *k))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|(_, r)| r.user_id.as_deref()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, r)| r.ts))
                .with_timezone("+00:00"),
        ),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, r)| r.amount))),
    ];
    if let Some(ops) = ops {
        fields.push(Field::new("_op", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter_values(ops.iter().copied())));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// `rows` as one or two batches (the split drawn from `rng`).
fn batches(rng: &mut ChaCha8Rng, rows: &[(i64, Row)], ops: Option<&[&str]>) -> Vec<RecordBatch> {
    let at = rng.gen_range(0..rows.len());
    if at == 0 {
        return vec![batch(rows, ops)];
    }
    vec![
        batch(&rows[..at], ops.map(|o| &o[..at])),
        batch(&rows[at..], ops.map(|o| &o[at..])),
    ]
}

/// `n` distinct keys of `0..KEYS`, in a random order.
fn keys(rng: &mut ChaCha8Rng, n: usize) -> Vec<i64> {
    rand::seq::index::sample(rng, KEYS as usize, n)
        .into_iter()
        .map(|k| k as i64)
        .collect()
}

/// A predicate over rows, as SQL and as the model evaluates it.
#[derive(Clone, Debug)]
enum Predicate {
    /// `id % m = r`
    IdModulo(i64, i64),
    /// `id >= lo AND id < hi`
    IdRange(i64, i64),
    /// `amount < x`
    AmountBelow(f64),
    /// `user_id = 'uN'`, or `user_id IS NULL`
    User(Option<u8>),
    /// `ts` before the start of day `d`.
    Before(i64),
}

impl Predicate {
    fn random(rng: &mut ChaCha8Rng) -> Self {
        match rng.gen_range(0..5) {
            0 => {
                let m = rng.gen_range(3..8);
                Predicate::IdModulo(m, rng.gen_range(0..m))
            }
            1 => {
                let lo = rng.gen_range(0..KEYS);
                Predicate::IdRange(lo, lo + rng.gen_range(1..16))
            }
            2 => Predicate::AmountBelow(rng.gen_range(1..40) as f64 * 0.5),
            3 => Predicate::User(rng.gen_bool(0.75).then(|| rng.gen_range(0..5))),
            _ => Predicate::Before(rng.gen_range(1..DAYS)),
        }
    }

    /// The SQL, its columns qualified with `q` (`""` or `"t."`).
    fn sql(&self, q: &str) -> String {
        match self {
            Predicate::IdModulo(m, r) => format!("{q}id % {m} = {r}"),
            Predicate::IdRange(lo, hi) => format!("{q}id >= {lo} AND {q}id < {hi}"),
            Predicate::AmountBelow(x) => format!("{q}amount < {x:?}"),
            Predicate::User(Some(u)) => format!("{q}user_id = 'u{u}'"),
            Predicate::User(None) => format!("{q}user_id IS NULL"),
            Predicate::Before(d) => {
                let day = chrono::DateTime::from_timestamp_micros(START_US + d * DAY_US).unwrap();
                format!("{q}ts < '{}'", day.format("%Y-%m-%dT%H:%M:%SZ"))
            }
        }
    }

    /// Whether it holds for a row (NULL does not).
    fn holds(&self, id: i64, row: &Row) -> bool {
        match self {
            Predicate::IdModulo(m, r) => id % m == *r,
            Predicate::IdRange(lo, hi) => (*lo..*hi).contains(&id),
            Predicate::AmountBelow(x) => row.amount < *x,
            Predicate::User(Some(u)) => row.user_id.as_deref() == Some(format!("u{u}").as_str()),
            Predicate::User(None) => row.user_id.is_none(),
            Predicate::Before(d) => row.ts < START_US + d * DAY_US,
        }
    }
}

/// One step of a sequence.
#[derive(Clone, Copy, Debug)]
enum Step {
    Upsert(RowLevelMode),
    Merge(RowLevelMode),
    Delete(RowLevelMode),
    Compact,
    Expire,
}

/// A sequence's steps: each row-level change once in each mode, a compaction and an expiry, in the
/// order `rng` draws.
fn steps(rng: &mut ChaCha8Rng) -> Vec<Step> {
    let mut steps: Vec<Step> = MODES
        .iter()
        .flat_map(|m| [Step::Upsert(*m), Step::Merge(*m), Step::Delete(*m)])
        .chain([Step::Compact, Step::Expire])
        .collect();
    steps.shuffle(rng);
    steps
}

/// The row counts a change reports: (inserted, updated, deleted, unchanged).
type Counts = (u64, u64, u64, u64);

fn counts(rows: &RowCounts) -> Counts {
    (rows.inserted, rows.updated, rows.deleted, rows.unchanged)
}

/// A row-level change's options in `mode`; in `auto`, a threshold drawn from `rng`.
fn row_options(rng: &mut ChaCha8Rng, mode: RowLevelMode) -> RowLevelOptions {
    RowLevelOptions {
        row_mode: Some(mode),
        delete_ratio_threshold: (mode == RowLevelMode::Auto).then(|| *[0.1, 0.3, 0.6].choose(rng).unwrap()),
        ..Default::default()
    }
}

/// A model test of one table: its model and what happened.
struct Run<'a> {
    ctx: &'a Ctx,
    table: TableName,
    rng: ChaCha8Rng,
    model: Model,
    /// What each step did, for failure messages.
    log: Vec<String>,
    /// Files compaction rewrote, over the run.
    compacted: usize,
    /// Whether compaction only folds deletes (else it also merges small files): the first seed of
    /// each table merges, the second folds, so both variants run.
    fold_only: bool,
}

impl Run<'_> {
    /// Upsert random keys (some in the table, some not; some tombstones, some rows as they are).
    async fn upsert(&mut self, mode: RowLevelMode) {
        let rng = &mut self.rng;
        let n = rng.gen_range(4..=12);
        let when_matched = match rng.gen_range(0..4) {
            0 => WhenMatched::UpdateAll,
            1 => WhenMatched::UpdateChanged,
            2 => WhenMatched::UpdateIf("s.amount > t.amount".into()),
            _ => WhenMatched::Ignore,
        };
        let when_not_matched = if rng.gen_bool(0.8) {
            WhenNotMatched::Insert
        } else {
            WhenNotMatched::Ignore
        };
        let mut next = self.model.clone();
        let mut want: Counts = (0, 0, 0, 0);
        let (mut rows, mut ops) = (Vec::new(), Vec::new());
        for k in keys(rng, n) {
            let old = self.model.get(&k);
            let tombstone = rng.gen_bool(0.2);
            let row = match old {
                Some(o) if !tombstone && rng.gen_bool(0.4) => o.clone(),
                _ => random_row(rng),
            };
            match old {
                Some(_) if tombstone => {
                    next.remove(&k);
                    want.2 += 1;
                }
                None if tombstone => {}
                Some(o) => {
                    let replace = match &when_matched {
                        WhenMatched::UpdateAll => true,
                        WhenMatched::UpdateChanged => row != *o,
                        WhenMatched::UpdateIf(_) => row.amount > o.amount,
                        WhenMatched::Ignore => false,
                    };
                    if replace {
                        next.insert(k, row.clone());
                        want.1 += 1;
                    } else {
                        want.3 += 1;
                    }
                }
                None if when_not_matched == WhenNotMatched::Insert => {
                    next.insert(k, row.clone());
                    want.0 += 1;
                }
                None => {}
            }
            rows.push((k, row));
            ops.push(if tombstone { "d" } else { "u" });
        }
        let source = batches(rng, &rows, Some(&ops));
        let options = UpsertOptions {
            rows: row_options(rng, mode),
            key: vec!["id".into()],
            when_matched: when_matched.clone(),
            when_not_matched: when_not_matched.clone(),
            delete_where: Some("_op = 'd'".into()),
            ..Default::default()
        };
        self.log.push(format!(
            "upsert {mode:?} (threshold {:?}) {when_matched:?} {when_not_matched:?} of {:?}",
            options.rows.delete_ratio_threshold,
            rows.iter()
                .zip(&ops)
                .map(|((k, _), op)| format!("{k}{op}"))
                .collect::<Vec<_>>()
        ));
        let r = self
            .ctx
            .floe
            .upsert(&self.table, stream(source), &options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.trail()));
        assert_eq!(counts(&r.rows), want, "{}: {:?}", self.trail(), r.rows);
        self.model = next;
    }

    /// Merge random source rows: matched rows deleted below an amount, else updated (all columns, or
    /// the amounts added); unmatched ones inserted (maybe only with a user); sometimes target rows
    /// no source row matched deleted where a predicate holds.
    async fn merge(&mut self, mode: RowLevelMode) {
        let rng = &mut self.rng;
        let n = rng.gen_range(4..=12);
        let rows: Vec<(i64, Row)> = keys(rng, n).into_iter().map(|k| (k, random_row(rng))).collect();
        let delete_below = rng.gen_range(0..4) as f64 * 10.0;
        let add_amounts = rng.gen_bool(0.5);
        let insert_if = rng.gen_bool(0.3).then_some("s.user_id IS NOT NULL");
        let by_source = rng.gen_bool(0.5).then(|| Predicate::random(rng));
        let mut next = self.model.clone();
        let mut want: Counts = (0, 0, 0, 0);
        for (k, s) in &rows {
            match self.model.get(k) {
                Some(_) if s.amount < delete_below => {
                    next.remove(k);
                    want.2 += 1;
                }
                Some(t) => {
                    let new = if add_amounts {
                        Row {
                            amount: t.amount + s.amount,
                            ..t.clone()
                        }
                    } else {
                        s.clone()
                    };
                    next.insert(*k, new);
                    want.1 += 1;
                }
                None if insert_if.is_none() || s.user_id.is_some() => {
                    next.insert(*k, s.clone());
                    want.0 += 1;
                }
                None => {}
            }
        }
        if let Some(p) = &by_source {
            for (k, t) in &self.model {
                if !rows.iter().any(|(s, _)| s == k) && p.holds(*k, t) {
                    next.remove(k);
                    want.2 += 1;
                }
            }
        }
        let options = row_options(rng, mode);
        let source = batches(rng, &rows, None);
        self.log.push(format!(
            "merge {mode:?} (threshold {:?}) of {:?}: delete below {delete_below}, add amounts {add_amounts}, \
             insert if {insert_if:?}, by source {:?}",
            options.delete_ratio_threshold,
            rows.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            by_source.as_ref().map(|p| p.sql("t."))
        ));
        let mut merge = self
            .ctx
            .floe
            .merge(&self.table, source)
            .on("t.id = s.id")
            .when_matched_delete(Some(&format!("s.amount < {delete_below:?}")));
        merge = if add_amounts {
            merge.when(MergeClause::parse("matched then update set amount = t.amount + s.amount").unwrap())
        } else {
            merge.when_matched_update_all(None)
        };
        merge = merge.when_not_matched_insert_all(insert_if);
        if let Some(p) = &by_source {
            merge = merge.when_not_matched_by_source_delete(Some(&p.sql("t.")));
        }
        let r = merge
            .options(options)
            .commit()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.trail()));
        assert_eq!(counts(&r.rows), want, "{}: {:?}", self.trail(), r.rows);
        self.model = next;
    }

    /// Delete the rows a random predicate holds for.
    async fn delete(&mut self, mode: RowLevelMode) {
        let predicate = Predicate::random(&mut self.rng);
        let options = row_options(&mut self.rng, mode);
        let before = self.model.len();
        self.model.retain(|k, r| !predicate.holds(*k, r));
        let want = (0, 0, (before - self.model.len()) as u64, 0);
        self.log.push(format!(
            "delete {mode:?} (threshold {:?}) where {}",
            options.delete_ratio_threshold,
            predicate.sql("")
        ));
        let r = self
            .ctx
            .floe
            .delete(&self.table, RowFilter::sql(predicate.sql("")), &options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.trail()));
        assert_eq!(counts(&r.rows), want, "{}: {:?}", self.trail(), r.rows);
    }

    /// Compact: either merge each partition's small files (two make a group) and fold deletes, or
    /// only fold the deletes of files whose deleted fraction reaches the threshold.
    async fn compact(&mut self) {
        let fold_only = self.fold_only;
        let threshold = *[0.05, 0.1, 0.2].choose(&mut self.rng).unwrap();
        let options = if fold_only {
            CompactOptions {
                min_file_size: Some(1),
                delete_ratio_threshold: Some(threshold),
                ..Default::default()
            }
        } else {
            CompactOptions {
                min_input_files: 2,
                delete_ratio_threshold: Some(threshold),
                ..Default::default()
            }
        };
        self.log
            .push(format!("compact (fold only {fold_only}, threshold {threshold})"));
        let report: CompactReport = self
            .ctx
            .floe
            .compact(&self.table, &options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.trail()));
        if fold_only {
            assert_eq!(
                report.files_with_deletes_folded,
                report.files_rewritten,
                "{}: {report:?}",
                self.trail()
            );
        }
        self.log.push(format!(
            "  rewrote {} file(s), {} folding deletes, removed {} delete file(s)",
            report.files_rewritten, report.files_with_deletes_folded, report.delete_files_removed
        ));
        self.compacted += report.files_rewritten;
    }

    /// Expire every snapshot but the last few.
    async fn expire(&mut self) {
        let retain = self.rng.gen_range(1..=3);
        self.log.push(format!("expire, retaining {retain}"));
        self.ctx
            .floe
            .expire_snapshots(
                &self.table,
                &ExpireOptions {
                    older_than_ms: Some(chrono::Utc::now().timestamp_millis() + 1000),
                    retain_last: Some(retain),
                    dry_run: false,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.trail()));
    }

    /// The steps so far, for a failure message.
    fn trail(&self) -> String {
        format!("{}:\n  {}", self.table, self.log.join("\n  "))
    }

    /// floe, PyIceberg and DuckDB each read exactly the model's rows.
    async fn every_reader_reads_the_model(&self) {
        let ours = rows_read(&floe_rows(self.ctx, &self.table, At::Current).await);
        self.assert_reads("floe", &ours);
        let location = self
            .ctx
            .floe
            .load_table(&self.table)
            .await
            .unwrap()
            .metadata_location()
            .to_string();
        // The two readers are Python processes: run them side by side.
        let (pyiceberg, duckdb) = tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let pyiceberg = s.spawn(|| pyiceberg_read(self.ctx, self.table.name()));
                let duckdb = duckdb_scan(self.ctx, &location);
                (pyiceberg.join().unwrap(), duckdb)
            })
        });
        for (reader, read) in [("PyIceberg", pyiceberg), ("DuckDB", duckdb)] {
            if let Some(read) = read {
                self.assert_reads(reader, &rows_read(read["rows"].as_array().unwrap()));
            }
        }
    }

    fn assert_reads(&self, reader: &str, read: &Model) {
        if *read == self.model {
            return;
        }
        let mut wrong = Vec::new();
        for (k, want) in &self.model {
            match read.get(k) {
                None => wrong.push(format!("{k} missing (want {want:?})")),
                Some(got) if got != want => wrong.push(format!("{k}: {got:?}, want {want:?}")),
                Some(_) => {}
            }
        }
        for (k, got) in read {
            if !self.model.contains_key(k) {
                wrong.push(format!("{k} should not be there ({got:?})"));
            }
        }
        panic!(
            "{reader} reads rows other than the model's after {}\n{}",
            self.trail(),
            wrong.join("\n")
        );
    }
}

/// Rows in the readers' JSON shape, by key (a key read twice fails).
fn rows_read(rows: &[Value]) -> Model {
    let mut out = Model::new();
    for r in rows {
        let id = r["id"].as_i64().unwrap();
        let ts = chrono::DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("ts of {r}: {e}"))
            .timestamp_micros();
        let row = Row {
            user_id: r["user_id"].as_str().map(str::to_string),
            ts,
            amount: r["amount"].as_f64().unwrap(),
        };
        if let Some(first) = out.insert(id, row) {
            panic!("id {id} read twice: {first:?} and {r}");
        }
    }
    out
}

/// Run the sequence of `seed` on a new table partitioned by `partition`, checking every reader
/// after every step; returns the files its compaction rewrote.
async fn run_sequence(ctx: &Ctx, name: &str, partition: &[&str], seed: u64, fold_only: bool) -> usize {
    let table = ctx.table(name);
    ctx.create_events_table(&table, partition).await;
    let mut run = Run {
        ctx,
        table,
        rng: ChaCha8Rng::seed_from_u64(seed),
        model: Model::new(),
        log: vec![format!("seed {seed}")],
        compacted: 0,
        fold_only,
    };
    // Two appends, so that partitions start with several files for compaction to merge.
    for keys in [0..20, 20..40] {
        let rows: Vec<(i64, Row)> = keys.map(|k| (k, random_row(&mut run.rng))).collect();
        ctx.floe
            .append(
                &run.table,
                stream(vec![batch(&rows, None)]),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        run.model.extend(rows);
    }
    let steps = steps(&mut run.rng);
    for step in steps {
        match step {
            Step::Upsert(mode) => run.upsert(mode).await,
            Step::Merge(mode) => run.merge(mode).await,
            Step::Delete(mode) => run.delete(mode).await,
            Step::Compact => run.compact().await,
            Step::Expire => run.expire().await,
        }
        run.every_reader_reads_the_model().await;
    }
    eprintln!("{}", run.trail());
    run.compacted
}

/// Both seeds' sequences on a new table of each seed partitioned by `partition`; at least one
/// compaction must rewrite something.
async fn run_sequences(ctx: &Ctx, kind: &str, partition: &[&str]) {
    let started = std::time::Instant::now();
    let mut compacted = 0;
    for (i, seed) in SEEDS.into_iter().enumerate() {
        compacted += run_sequence(ctx, &format!("{kind}_{seed}"), partition, seed, i == 1).await;
    }
    assert!(compacted > 0, "{kind}: no compaction rewrote anything");
    eprintln!(
        "row-level model test, {kind} table on {:?}: {:.1} s",
        ctx.backend,
        started.elapsed().as_secs_f64()
    );
}

// One test per table shape, so the suite runs the two shapes side by side (together they were the
// suite's longest test, 2 minutes on S3).
both_backends!(
    random_row_level_changes_read_back_as_the_model_in_every_reader_on_an_unpartitioned_table,
    |ctx: Ctx| async move { run_sequences(&ctx, "flat", &[]).await }
);

both_backends!(
    random_row_level_changes_read_back_as_the_model_in_every_reader_on_a_day_partitioned_table,
    |ctx: Ctx| async move { run_sequences(&ctx, "daily", &["day(ts)"]).await }
);
