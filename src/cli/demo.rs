//! `floe demo`: the whole story on the embedded default. Generates a clickstream, runs the pipeline
//! on both engines, diffs every stage's outputs, publishes when equal, answers analytics questions
//! with DuckDB SQL, and reports what it did and where the tables are. A second run is a new run.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use floe::pipeline::{DataFusionEngine, DuckDbEngine, RunOptions};
use floe::{Floe, Namespace, Result};

use super::output::sql::QueryFormat;
use super::output::{self, Format};

/// The analytics questions, shipped with the binary.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "Revenue and conversion by country and day",
        include_str!("../../fixtures/queries/revenue_and_conversion_by_country_and_day.sql"),
    ),
    (
        "The funnel page_view → add_to_cart → purchase",
        include_str!("../../fixtures/queries/funnel.sql"),
    ),
    (
        "Landing pages with the highest bounce rate",
        include_str!("../../fixtures/queries/landing_pages_by_bounce_rate.sql"),
    ),
    (
        "Input records rejected, by reason",
        include_str!("../../fixtures/queries/rejects_by_reason.sql"),
    ),
];

pub async fn run(floe: &Floe, events: u64, seed: u64) -> Result<bool> {
    let started = Instant::now();
    let out = &mut output::stdout();
    let input = format!(
        "{}/../demo-input/events-{events}-seed-{seed}",
        floe.warehouse().uri()
    );
    let input = floe::storage::Warehouse::parse(&input)?.uri();
    let storage = floe.storage();
    if storage
        .list(&format!("{input}/"))
        .await
        .map(|f| f.is_empty())
        .unwrap_or(true)
    {
        writeln!(
            out,
            "1. generating {events} clickstream events (seed {seed}) into {input}"
        )?;
        let mut options = floe::generate::GenerateOptions::new(events, seed);
        options.files = 4;
        let bar = indicatif::ProgressBar::new(events);
        bar.set_style(
            indicatif::ProgressStyle::with_template("   [{bar:40}] {pos}/{len} events ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let progress = |n: u64| bar.set_position(n);
        floe::generate::generate(storage, &input, &options, Some(&progress)).await?;
        bar.finish_and_clear();
    } else {
        writeln!(out, "1. reusing the generated input in {input}")?;
    }
    writeln!(
        out,
        "2. running the pipeline on DuckDB and DataFusion, each into its own branch"
    )?;
    let engines: Vec<Arc<dyn floe::pipeline::Engine>> = vec![
        Arc::new(DuckDbEngine::default()),
        Arc::new(DataFusionEngine::default()),
    ];
    let options = RunOptions {
        progress: Some(output::pipeline::stage_progress()),
        ..RunOptions::new(Namespace::parse("clickstream")?, Some(input.clone()), engines)
    };
    let report = floe::pipeline::run(floe, &options).await?;
    writeln!(out, "3. comparing the engines' outputs, table by table")?;
    output::pipeline::run(out, &report, Format::Table)?;
    let equal = report.equivalence.as_ref().is_some_and(|e| e.equal);
    writeln!(
        out,
        "4. answering questions with DuckDB SQL over the published tables"
    )?;
    for (title, sql) in QUERIES {
        writeln!(out, "\n-- {title}")?;
        let result = floe::query::sql(floe, sql).await?;
        output::sql::query(out, &result, QueryFormat::Table, None)?;
    }
    writeln!(
        out,
        "\nrun {} finished in {:.0} s",
        report.run_id,
        started.elapsed().as_secs_f64()
    )?;
    writeln!(out, "catalog    {}", floe.settings().catalog_url_redacted())?;
    writeln!(out, "warehouse  {}", floe.warehouse().uri())?;
    writeln!(out, "tables     clickstream.{{raw_events, rejected_events, clean_events, enriched_events, session_events, sessions, daily_metrics, geoip}}")?;
    writeln!(
        out,
        "verdict    {}",
        if equal {
            "both engines produced the same tables; main is published"
        } else {
            "the engines DIFFER; nothing was published"
        }
    )?;
    writeln!(out, "next       floe sql \"SELECT * FROM clickstream.daily_metrics LIMIT 10\"   |   floe runs   |   floe snapshots clickstream.sessions")?;
    Ok(equal)
}
