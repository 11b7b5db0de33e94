//! A training run: its configuration, the data and model it prepares, the loop shared by every
//! method (`crate::method`), resume, reports, optimisers, schedules and checkpoints.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod optimizer;
pub mod prepare;
mod report;
mod resume;
pub mod run;
pub mod schedule;
