//! tract panics on some malformed graphs instead of returning an error (fuzzing found a graph
//! output naming no tensor, and a `Flatten` axis beyond its input's rank). A bundle or detector
//! file is outside input, so every tract call that reads or plans a graph goes through
//! [`tract_guarded`]: a panic becomes an error naming what was being done.

use std::panic::{AssertUnwindSafe, catch_unwind};
use tract_onnx::prelude::TractResult;

/// Runs `f`, turning an `Err` or a panic into a message starting with `what`.
pub fn tract_guarded<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(format!("{what}: tract panicked on this graph ({msg})"))
        }
    }
}
