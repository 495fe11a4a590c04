//! The clickstream pipeline (its rules: README.md in this folder): the input reader shared by every
//! engine, the pipeline's tables, the `Engine` seam with its implementations, the run ledger and the
//! stage runner.

pub mod engine;
pub mod input;
pub mod ledger;
pub mod runner;
pub mod tables;

pub use engine::{BallistaEngine, DataFusionEngine, DuckDbEngine, Engine, PinnedTable, Stage};
pub use runner::{run, Progress, RunOptions, RunReport, StageReport};
