//! Training: configuration, optimisers, schedules, losses, checkpoints and the loop.

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod optimizer;
pub mod run;
pub mod schedule;
