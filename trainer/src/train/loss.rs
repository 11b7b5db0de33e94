//! Kept so that `crate::train::loss::soft_cross_entropy` (used by `bench.rs`) still resolves;
//! the loss lives with the methods, in `crate::method::loss`.

pub use crate::method::loss::soft_cross_entropy;
