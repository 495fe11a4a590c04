//! The upsert benchmark's report from its repetitions: medians of every figure and ratios paired
//! within each repetition.

use super::*;

/// The figures of `variant` in every run, in repetition order.
pub(super) fn series(runs: &[UpsertRun], variant: &str, figure: impl Fn(&UpsertTiming) -> f64) -> Vec<f64> {
    runs.iter()
        .map(|r| {
            r.upserts
                .iter()
                .find(|u| u.variant == variant)
                .map_or(f64::NAN, &figure)
        })
        .collect()
}

/// The seconds of `reader`'s scans of `state` in every run, in repetition order.
pub(super) fn scan_series(runs: &[UpsertRun], reader: &str, state: &str) -> Vec<f64> {
    runs.iter()
        .map(|r| {
            r.scans
                .iter()
                .find(|s| s.reader == reader && s.state == state)
                .map_or(f64::NAN, |s| s.seconds)
        })
        .collect()
}

/// The report: medians over the repetitions and ratios paired within them.
pub(super) fn summarize(
    floe: &Floe,
    setup: &Setup<'_>,
    data_files: usize,
    peer_skipped: Option<String>,
    outcomes: Vec<RunOutcome>,
) -> UpsertBenchReport {
    let pyiceberg_version = outcomes.iter().find_map(|o| o.pyiceberg_version.clone());
    let peer_scans = outcomes.iter().find_map(|o| o.peer_scans.as_ref());
    let duckdb_version = peer_scans.and_then(|p| p.duckdb_version.clone());
    let readers_skipped = peer_scans.map(|p| p.errors.clone()).unwrap_or_default();
    let runs: Vec<UpsertRun> = outcomes.into_iter().map(|o| o.run).collect();
    let first = runs.first();
    let variants = [MERGE_ON_READ, COPY_ON_WRITE, PYICEBERG]
        .into_iter()
        .filter_map(|v| {
            let one = first?.upserts.iter().find(|u| u.variant == v)?;
            Some(UpsertVariant {
                variant: v.to_string(),
                seconds: Summary::of(&series(&runs, v, |u| u.seconds)),
                bytes_written: Summary::of(&series(&runs, v, |u| u.bytes_written as f64)),
                snapshots: one.snapshots,
                data_files_added: one.data_files_added,
                delete_files_added: one.delete_files_added,
                rows_updated: one.rows_updated,
                rows_inserted: one.rows_inserted,
            })
        })
        .collect();
    let seconds = |v| series(&runs, v, |u| u.seconds);
    let bytes = |v| series(&runs, v, |u| u.bytes_written as f64);
    let with_peer = |r: Ratio| (r.n > 0).then_some(r);
    let mut scans = Vec::new();
    let mut scan_ratios = Vec::new();
    for reader in ["floe", "pyiceberg", "duckdb"] {
        let Some(first) = first else { break };
        let mut any = false;
        for state in STATES {
            if let Some(s) = first
                .scans
                .iter()
                .find(|s| s.reader == reader && s.state == state)
            {
                any = true;
                scans.push(ScanFigures {
                    reader: reader.into(),
                    state: state.into(),
                    rows: s.rows,
                    seconds: Summary::of(&scan_series(&runs, reader, state)),
                });
            }
        }
        if any {
            let before = scan_series(&runs, reader, "before");
            scan_ratios.push(ScanRatios {
                reader: reader.into(),
                after_over_before: Ratio::paired(&scan_series(&runs, reader, "after"), &before),
                compacted_over_before: Ratio::paired(&scan_series(&runs, reader, "compacted"), &before),
            });
        }
    }
    let same_rows = runs
        .iter()
        .map(|r| r.differing.as_ref().map(Vec::is_empty))
        .collect::<Option<Vec<bool>>>()
        .map(|v| v.iter().all(|x| *x));
    UpsertBenchReport {
        machine: Machine::describe(floe),
        finished_at: chrono::Utc::now().to_rfc3339(),
        rows: setup.options.rows.max(INSERT_PER),
        data_files,
        updated_rows: setup.input.updated,
        inserted_rows: setup.input.inserted,
        codec: setup.codec.clone(),
        repetitions: runs.len(),
        scan_runs: setup.options.scan_runs.max(1),
        pyiceberg_version,
        duckdb_version,
        peer_skipped,
        readers_skipped,
        variants,
        merge_on_read_speedup_over_pyiceberg: with_peer(Ratio::paired(
            &seconds(PYICEBERG),
            &seconds(MERGE_ON_READ),
        )),
        merge_on_read_speedup_over_copy_on_write: Ratio::paired(
            &seconds(COPY_ON_WRITE),
            &seconds(MERGE_ON_READ),
        ),
        copy_on_write_speedup_over_pyiceberg: with_peer(Ratio::paired(
            &seconds(PYICEBERG),
            &seconds(COPY_ON_WRITE),
        )),
        merge_on_read_bytes_over_copy_on_write: Ratio::paired(&bytes(MERGE_ON_READ), &bytes(COPY_ON_WRITE)),
        compact_seconds: Summary::of(&runs.iter().map(|r| r.compact_seconds).collect::<Vec<_>>()),
        files_compacted: first.map_or(0, |r| r.files_compacted),
        delete_files_removed: first.map_or(0, |r| r.delete_files_removed),
        scans,
        scan_ratios,
        same_rows,
        targets: Vec::new(),
        runs,
    }
}
