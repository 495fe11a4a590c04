-- floe's run ledger: one row per stage and engine of a pipeline run. Times are RFC 3339 text and
-- structured columns are JSON text, so the same schema serves SQLite and Postgres.
CREATE TABLE IF NOT EXISTS floe_runs (
    catalog_name VARCHAR(255) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    pipeline VARCHAR(64) NOT NULL,
    stage VARCHAR(32) NOT NULL,
    engine VARCHAR(32) NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    input_snapshots TEXT NOT NULL,
    output_snapshots TEXT,
    started_at VARCHAR(40) NOT NULL,
    ended_at VARCHAR(40),
    rows_in BIGINT,
    rows_out TEXT,
    rejects TEXT,
    peak_memory_bytes BIGINT,
    error TEXT,
    PRIMARY KEY (catalog_name, run_id, stage, engine)
);

CREATE INDEX IF NOT EXISTS floe_runs_by_fingerprint ON floe_runs (catalog_name, fingerprint, status);
