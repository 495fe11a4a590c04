-- floe's record of extraction runs (`floe ingest`): one row per run, one per work unit, so that a
-- run that failed or was killed can be resumed (`floe ingest --resume RUN_ID`) running only the units
-- that are not done. The source URL is stored without its password. Structured columns are JSON text.
CREATE TABLE IF NOT EXISTS floe_ingest_runs (
    catalog_name VARCHAR(255) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    source TEXT NOT NULL,
    destination VARCHAR(1000) NOT NULL,
    spec TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    started_at VARCHAR(40) NOT NULL,
    ended_at VARCHAR(40),
    snapshot_id BIGINT,
    rows_written BIGINT,
    error TEXT,
    PRIMARY KEY (catalog_name, run_id)
);

CREATE TABLE IF NOT EXISTS floe_ingest_units (
    catalog_name VARCHAR(255) NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    unit INTEGER NOT NULL,
    spec TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    rows_written BIGINT,
    files TEXT,
    error TEXT,
    updated_at VARCHAR(40) NOT NULL,
    PRIMARY KEY (catalog_name, run_id, unit)
);
