//! The fuzz targets as plain functions over bytes: each hands its input to one parser of
//! outside input and ignores the `Result` (an error is the right answer to garbage; a panic, an
//! abort or an unbounded allocation is the bug). `fuzz_targets/*.rs` wrap them for libFuzzer and
//! `tests/tests/fuzz_smoke.rs` replays the seeds and mutations through them on stable.

pub mod runtime_targets;
#[cfg(feature = "trainer")]
pub mod trainer_targets;
