//! The stages' SQL, written once for both engines. The few places where DuckDB's and DataFusion's
//! dialects differ are filled in by a [`Dialect`].

/// What differs between the engines' SQL.
pub(crate) struct Dialect {
    /// Microseconds since the epoch of a timestamp expression.
    pub epoch_us: fn(&str) -> String,
    /// Integer division.
    pub int_div: &'static str,
    /// The first value of an expression in a group, by an ordering.
    pub first: &'static str,
    /// The last value of an expression in a group, by an ordering.
    pub last: &'static str,
}

pub(crate) const DATAFUSION: Dialect = Dialect {
    epoch_us: |e| format!("CAST({e} AS BIGINT)"),
    int_div: "/",
    first: "first_value",
    last: "last_value",
};

pub(crate) const DUCKDB: Dialect = Dialect {
    epoch_us: |e| format!("epoch_us({e})"),
    int_div: "//",
    first: "first",
    last: "last",
};

const CLEANSE_CHECKED: &str = "
    WITH typed AS (
        SELECT *, floe_trim(event_id) AS t_id, floe_trim(user_id) AS t_user,
               floe_event_time(event_time) AS t_time, floe_event_type(event_type) AS t_type,
               floe_revenue_ok(revenue) AS rev_ok
        FROM raw_events),
    checked AS (
        SELECT *, CASE
            WHEN t_id IS NULL OR t_id = '' THEN 'missing_event_id'
            WHEN t_user IS NULL OR t_user = '' THEN 'missing_user_id'
            WHEN t_time IS NULL THEN 'bad_event_time'
            WHEN t_type IS NULL THEN 'bad_event_type'
            WHEN NOT rev_ok THEN 'bad_revenue'
        END AS reason
        FROM typed),
    ranked AS (
        SELECT *, row_number() OVER (PARTITION BY t_id ORDER BY t_time, source_file, source_line) AS rn
        FROM checked WHERE reason IS NULL)";

/// The reject's `record`: `floe_record_json(nulls, fields...)`, the null mask and the fields as text.
const RECORD: &str = "floe_record_json(
    concat(CASE WHEN event_id IS NULL THEN '1' ELSE '0' END, CASE WHEN user_id IS NULL THEN '1' ELSE '0' END,
           CASE WHEN event_time IS NULL THEN '1' ELSE '0' END, CASE WHEN event_type IS NULL THEN '1' ELSE '0' END,
           CASE WHEN url IS NULL THEN '1' ELSE '0' END, CASE WHEN referrer IS NULL THEN '1' ELSE '0' END,
           CASE WHEN ip IS NULL THEN '1' ELSE '0' END, CASE WHEN user_agent IS NULL THEN '1' ELSE '0' END,
           CASE WHEN revenue IS NULL THEN '1' ELSE '0' END),
    coalesce(event_id, ''), coalesce(user_id, ''), coalesce(event_time, ''), coalesce(event_type, ''),
    coalesce(url, ''), coalesce(referrer, ''), coalesce(ip, ''), coalesce(user_agent, ''), coalesce(revenue, ''))";

impl Dialect {
    /// The queries of `stage`, one per output table in `stage.outputs()` order.
    pub(crate) fn stage(&self, stage: super::Stage) -> Vec<String> {
        use super::Stage::*;
        match stage {
            Ingest => Vec::new(),
            Cleanse => vec![
                format!(
                    "{CLEANSE_CHECKED}
                    SELECT t_id AS event_id, t_user AS user_id, t_time AS event_time, t_type AS event_type,
                           nullif(url, '') AS url, nullif(referrer, '') AS referrer, nullif(ip, '') AS ip,
                           nullif(user_agent, '') AS user_agent, floe_revenue(revenue) AS revenue, source_file,
                           source_line
                    FROM ranked WHERE rn = 1"
                ),
                format!(
                    "{CLEANSE_CHECKED}
                    SELECT source_file, source_line, 'cleanse' AS stage, reason, {RECORD} AS record
                    FROM checked WHERE reason IS NOT NULL
                    UNION ALL
                    SELECT source_file, source_line, 'cleanse' AS stage, 'duplicate_event_id' AS reason,
                           {RECORD} AS record
                    FROM ranked WHERE rn > 1"
                ),
            ],
            // Ranges are looked up through their /16 blocks, so the join is an equi-join on the
            // block; the small geoip side comes first (DataFusion builds its hash table from the left).
            Enrich => vec![format!(
                "WITH g AS (
                    SELECT ip_start, ip_end, country_code,
                           unnest(range(ip_start {d} 65536, ip_end {d} 65536 + 1)) AS blk
                    FROM geoip),
                c AS (SELECT *, floe_ipv4(ip) AS ipn FROM clean_events)
                SELECT c.event_id, c.user_id, c.event_time, c.event_type, c.url, c.referrer, c.ip, c.user_agent,
                       c.revenue, c.source_file, c.source_line, coalesce(g.country_code, 'ZZ') AS country_code
                FROM g RIGHT JOIN c ON g.blk = c.ipn {d} 65536 AND c.ipn >= g.ip_start AND c.ipn <= g.ip_end",
                d = self.int_div
            )],
            Sessionize => {
                let sessionized = format!(
                    "WITH e AS (
                        SELECT *, {t} AS t_us,
                               lag({t}) OVER (PARTITION BY user_id ORDER BY event_time, event_id) AS prev_us
                        FROM enriched_events),
                    s AS (
                        SELECT *, CASE WHEN prev_us IS NULL OR t_us - prev_us > 1800000000 THEN 1 ELSE 0 END
                               AS starts
                        FROM e),
                    n AS (
                        SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY event_time, event_id
                                                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
                        FROM s),
                    x AS (
                        SELECT event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue,
                               source_file, source_line, country_code,
                               concat(user_id, '#', CAST(CAST(session_no AS BIGINT) AS VARCHAR)) AS session_id, t_us
                        FROM n)",
                    t = (self.epoch_us)("event_time")
                );
                vec![
                    format!(
                        "{sessionized}
                        SELECT event_id, user_id, event_time, event_type, url, referrer, ip, user_agent, revenue,
                               source_file, source_line, country_code, session_id
                        FROM x"
                    ),
                    format!(
                        "{sessionized}
                        SELECT session_id, user_id, min(event_time) AS session_start, max(event_time) AS session_end,
                               max(t_us) - min(t_us) AS duration_us, count(*) AS event_count,
                               CAST(sum(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END) AS BIGINT) AS page_views,
                               CAST(sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
                               CAST(coalesce(sum(revenue), 0) AS DECIMAL(18, 2)) AS revenue,
                               {first}(country_code ORDER BY event_time, event_id) AS country_code,
                               {first}(url ORDER BY event_time, event_id) AS landing_url,
                               {last}(url ORDER BY event_time, event_id) AS exit_url,
                               count(*) = 1 AS is_bounce
                        FROM x GROUP BY session_id, user_id",
                        first = self.first,
                        last = self.last
                    ),
                ]
            }
            Aggregate => vec!["
                SELECT CAST(session_start AS DATE) AS day, country_code, count(*) AS sessions,
                       count(DISTINCT user_id) AS users, CAST(sum(event_count) AS BIGINT) AS events,
                       CAST(sum(page_views) AS BIGINT) AS page_views, CAST(sum(purchases) AS BIGINT) AS purchases,
                       CAST(sum(revenue) AS DECIMAL(18, 2)) AS revenue,
                       avg(CAST(duration_us AS DOUBLE) / 1e6) AS avg_session_duration_s,
                       CAST(sum(CASE WHEN is_bounce THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS bounce_rate
                FROM sessions GROUP BY 1, 2"
                .to_string()],
        }
    }
}
