//! The `sitfer` subcommands beyond `labels`, `info` and `bench`.

pub mod adapt;
pub mod anchors;
pub mod bench_detect;
pub mod buffer;
pub mod bundle_arg;
pub mod calibrate;
pub mod derived_bundle;
pub mod eval;
pub mod model_args;
pub mod online_args;
pub mod run;
