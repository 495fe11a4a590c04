//! A handful of clickstream events as Arrow, for examples and doc tests: two users, three days,
//! one of them a bot.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::error::Result;

/// The schema of [`sample_clicks`]: `user_id`, `event_type`, `event_time` (timestamptz).
pub fn sample_clicks_schema() -> Schema {
    Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ])
}

/// Six events from 2024-03-01 to 2024-03-03, two of them by a bot: the schema and one batch.
pub fn sample_clicks() -> Result<(Schema, Vec<RecordBatch>)> {
    let schema = sample_clicks_schema();
    let day = 86_400_000_000i64;
    let start = 1_709_251_200_000_000i64; // 2024-03-01T00:00:00Z
    let times = [0, 3_600_000_000, day, day + 60_000_000, 2 * day, 2 * day + 1];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["u1", "u1", "u2", "bot-7", "u2", "bot-7"])),
        Arc::new(StringArray::from(vec![
            "page_view",
            "click",
            "page_view",
            "bot",
            "purchase",
            "bot",
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(times.iter().map(|t| start + t).collect::<Vec<_>>())
                .with_timezone("+00:00"),
        ),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema.clone()), columns)?;
    Ok((schema, vec![batch]))
}
