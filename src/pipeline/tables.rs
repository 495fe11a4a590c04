//! The pipeline's tables: their Arrow schemas and partition specs, and the stages that write them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::catalog::{Namespace, TableName};
use crate::error::{ErrorKind, Result};
use crate::lakehouse::Floe;
use crate::table::{PartitionField, TableDefinition};

/// `raw_events`.
pub const RAW_EVENTS: &str = "raw_events";
/// `rejected_events`.
pub const REJECTED_EVENTS: &str = "rejected_events";
/// `clean_events`.
pub const CLEAN_EVENTS: &str = "clean_events";
/// `enriched_events`.
pub const ENRICHED_EVENTS: &str = "enriched_events";
/// `session_events`.
pub const SESSION_EVENTS: &str = "session_events";
/// `sessions`.
pub const SESSIONS: &str = "sessions";
/// `daily_metrics`.
pub const DAILY_METRICS: &str = "daily_metrics";
/// `geoip`.
pub const GEOIP: &str = "geoip";

/// The column of an output whose sum over all rows the stage's input fixes: every session event is
/// in exactly one session (`sessions.event_count` sums to the events read), and every session in
/// exactly one row of `daily_metrics` (`daily_metrics.sessions` sums to the sessions read).
pub(crate) fn checked_column(table: &str) -> Option<&'static str> {
    match table {
        SESSIONS => Some("event_count"),
        DAILY_METRICS => Some("sessions"),
        _ => None,
    }
}

/// The column of an output whose values the runner counts: the reasons of `rejected_events`.
pub(crate) fn tallied_column(table: &str) -> Option<&'static str> {
    (table == REJECTED_EVENTS).then_some("reason")
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn clean_fields() -> Vec<Field> {
    vec![
        text("event_id", false),
        text("user_id", false),
        Field::new("event_time", ts(), false),
        text("event_type", false),
        text("url", true),
        text("referrer", true),
        text("ip", true),
        text("user_agent", true),
        Field::new("revenue", DataType::Decimal128(12, 2), true),
        text("source_file", false),
        Field::new("source_line", DataType::Int64, false),
    ]
}

/// The schema of a pipeline table.
pub fn schema(table: &str) -> SchemaRef {
    let fields = match table {
        RAW_EVENTS => return crate::pipeline::input::raw_schema(),
        REJECTED_EVENTS => return crate::pipeline::input::rejects_schema(),
        CLEAN_EVENTS => clean_fields(),
        ENRICHED_EVENTS => {
            let mut f = clean_fields();
            f.push(text("country_code", false));
            f
        }
        SESSION_EVENTS => {
            let mut f = clean_fields();
            f.push(text("country_code", false));
            f.push(text("session_id", false));
            f
        }
        SESSIONS => vec![
            text("session_id", false),
            text("user_id", false),
            Field::new("session_start", ts(), false),
            Field::new("session_end", ts(), false),
            Field::new("duration_us", DataType::Int64, false),
            Field::new("event_count", DataType::Int64, false),
            Field::new("page_views", DataType::Int64, false),
            Field::new("purchases", DataType::Int64, false),
            Field::new("revenue", DataType::Decimal128(18, 2), false),
            text("country_code", false),
            text("landing_url", true),
            text("exit_url", true),
            Field::new("is_bounce", DataType::Boolean, false),
        ],
        DAILY_METRICS => vec![
            Field::new("day", DataType::Date32, false),
            text("country_code", false),
            Field::new("sessions", DataType::Int64, false),
            Field::new("users", DataType::Int64, false),
            Field::new("events", DataType::Int64, false),
            Field::new("page_views", DataType::Int64, false),
            Field::new("purchases", DataType::Int64, false),
            Field::new("revenue", DataType::Decimal128(18, 2), false),
            Field::new("avg_session_duration_s", DataType::Float64, false),
            Field::new("bounce_rate", DataType::Float64, false),
        ],
        GEOIP => vec![
            Field::new("ip_start", DataType::Int64, false),
            Field::new("ip_end", DataType::Int64, false),
            text("country_code", false),
        ],
        other => panic!("not a pipeline table: {other}"),
    };
    Arc::new(Schema::new(fields))
}

/// The partition fields of a pipeline table.
pub fn partition(table: &str) -> Vec<&'static str> {
    match table {
        CLEAN_EVENTS | ENRICHED_EVENTS | SESSION_EVENTS => vec!["day(event_time)"],
        SESSIONS => vec!["day(session_start)"],
        _ => vec![],
    }
}

/// Every table the pipeline writes or reads.
pub const ALL: &[&str] = &[
    RAW_EVENTS,
    REJECTED_EVENTS,
    CLEAN_EVENTS,
    ENRICHED_EVENTS,
    SESSION_EVENTS,
    SESSIONS,
    DAILY_METRICS,
    GEOIP,
];

/// Create the namespace and every missing table.
pub async fn ensure_tables(floe: &Floe, ns: &Namespace) -> Result<()> {
    floe.ensure_namespace(ns).await?;
    for table in ALL {
        let name = TableName::new(ns.clone(), *table)?;
        let definition = TableDefinition {
            schema: schema(table).as_ref().clone(),
            partition: partition(table)
                .into_iter()
                .map(PartitionField::parse)
                .collect::<Result<_>>()?,
            properties: Default::default(),
        };
        match floe.create_table(&name, definition).await {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}
