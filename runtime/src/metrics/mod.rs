//! `sitfer run --metrics PORT`: the run's counters and latencies for Prometheus, with liveness
//! and readiness answers for a supervisor.

mod run_metrics;
mod server;

pub use run_metrics::{CONTENT_TYPE, RunMetrics};
pub use server::MetricsServer;
