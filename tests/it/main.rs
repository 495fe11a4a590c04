//! floe's integration suite: one test binary, every test run against both backends (SQLite + local
//! disk, Postgres + Garage S3) with real servers.

mod support;

mod bad_input;
mod bench;
mod cli;
mod concurrency;
mod diff;
mod interop;
mod pipeline;
mod refs;
mod table_ops;
