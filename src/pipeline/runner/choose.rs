//! `--engine auto`: which engine a run takes for its input size and the free memory, and why.

use crate::catalog::{Namespace, TableName};
use crate::error::{ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::pipeline::input::resolve_inputs;
use crate::pipeline::tables;

/// Which engine `--engine auto` takes for `input_bytes` of input with `available_memory` bytes free,
/// and why. From `floe bench` on this project's 2-core machine (3 repetitions, SQLite + local disk):
/// DataFusion was faster end to end at 10 MB (0.63 s vs 0.85 s) and at 1 GB of CSV (58 s vs 72 s),
/// a tie at 100 MB; it wins cleanse and enrich, DuckDB wins sessionize (17 s vs 21 s at 1 GB), and
/// both peak at about 2.1 GB at 1 GB. DuckDB is kept for inputs beyond a quarter of the free memory,
/// outside the measured range, where its out-of-core window and sort operators are the safer bet.
///
/// With a cluster configured, an input beyond a quarter of the free memory goes to `ballista`
/// instead of DuckDB: past what one machine should take, the cluster's machines add cores and memory.
pub fn choose_engine(input_bytes: u64, available_memory: u64, cluster: bool) -> (&'static str, String) {
    let mb = |b: u64| b as f64 / 1e6;
    if cluster && input_bytes.saturating_mul(4) > available_memory {
        return (
            "ballista",
            format!(
                "input {:.0} MB exceeds a quarter of the {:.0} MB available and a cluster is configured",
                mb(input_bytes),
                mb(available_memory)
            ),
        );
    }
    if input_bytes.saturating_mul(4) <= available_memory {
        (
            "datafusion",
            format!(
                "input {:.0} MB is under a quarter of the {:.0} MB available; DataFusion measured faster end to end \
                 from 10 MB to 1 GB (floe bench)",
                mb(input_bytes),
                mb(available_memory)
            ),
        )
    } else {
        (
            "duckdb",
            format!(
                "input {:.0} MB exceeds a quarter of the {:.0} MB available; DuckDB spills out of core",
                mb(input_bytes),
                mb(available_memory)
            ),
        )
    }
}

/// The bytes a run would read: the input files, or else the `raw_events` table at `main`.
pub async fn input_bytes(floe: &Floe, ns: &Namespace, input: Option<&str>) -> Result<u64> {
    if let Some(input) = input {
        return Ok(resolve_inputs(floe.storage(), input)
            .await?
            .iter()
            .map(|f| f.size)
            .sum());
    }
    let name = TableName::new(ns.clone(), tables::RAW_EVENTS)?;
    Ok(match floe.load_table(&name).await {
        Ok(t) => t
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-files-size").cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    })
}

/// Free memory as the kernel estimates it (`MemAvailable`).
pub fn available_memory() -> u64 {
    crate::resources::meminfo_bytes("MemAvailable").unwrap_or(4 << 30)
}

/// The engines an `--engine` value names: `duckdb`, `datafusion`, `ballista` (on the configured
/// cluster), a comma-separated list of them (each on its own branch, then all checked for
/// equivalence against the first), `both` (`duckdb,datafusion`), or `auto` (one, by
/// [`choose_engine`], or `ballista` when a cluster is configured and the input exceeds what one
/// machine should take); with the reason of an `auto` choice.
pub async fn engines_named(
    floe: &Floe,
    name: &str,
    ns: &Namespace,
    input: Option<&str>,
) -> Result<(Vec<std::sync::Arc<dyn crate::pipeline::Engine>>, Option<String>)> {
    let one = |n: &str| crate::pipeline::engine::engine_named(n, floe.settings(), None);
    Ok(match name.trim() {
        "both" => (vec![one("duckdb")?, one("datafusion")?], None),
        "auto" => {
            let bytes = input_bytes(floe, ns, input).await?;
            let (choice, reason) =
                choose_engine(bytes, available_memory(), floe.settings().cluster.is_some());
            (vec![one(choice)?], Some(format!("auto: {choice}: {reason}")))
        }
        list => {
            let names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
            let mut seen = std::collections::HashSet::new();
            if names.iter().any(|n| !seen.insert(*n)) {
                return Err(crate::error::Error::invalid(format!(
                    "engine {list:?} names an engine twice"
                )));
            }
            (names.into_iter().map(one).collect::<Result<Vec<_>>>()?, None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::choose_engine;

    #[test]
    fn auto_takes_the_cluster_only_past_what_one_machine_should_take() {
        let gb = 1_000_000_000u64;
        // A quarter of the free memory or less: DataFusion, cluster or not.
        assert_eq!(choose_engine(gb, 8 * gb, false).0, "datafusion");
        assert_eq!(choose_engine(gb, 8 * gb, true).0, "datafusion");
        assert_eq!(choose_engine(2 * gb, 8 * gb, true).0, "datafusion");
        // Beyond it: DuckDB out of core on one machine, the cluster when there is one.
        assert_eq!(choose_engine(3 * gb, 8 * gb, false).0, "duckdb");
        let (engine, reason) = choose_engine(3 * gb, 8 * gb, true);
        assert_eq!(engine, "ballista");
        assert!(
            reason.contains("cluster is configured") && reason.contains("3000 MB"),
            "{reason}"
        );
    }
}
