//! floe's integration suite: one test binary, every test run against both backends (SQLite + local
//! disk, Postgres + Garage S3) with real servers.

mod faulty_catalog;
mod support;

mod add_files;
mod bad_input;
mod bench;
mod cli;
mod cluster;
mod cluster_hosts;
mod concurrency;
mod crash;
mod diff;
mod hostile_text;
mod ingest;
mod inspect;
pub mod interop;
mod maintenance;
mod names;
mod nested_evolution;
mod partition_evolution;
mod pipeline;
mod refs;
mod rest;
mod rest_clients;
mod rest_commit;
mod rest_concurrency;
mod rest_server;
mod row_level;
mod row_level_model;
mod row_level_races;
mod schema_evolution;
mod sort_order;
mod sql;
mod sql_pushdown;
mod table_ops;
mod transactions;
