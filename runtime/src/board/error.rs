//! `BoardError`: every error names the profile (file or built-in name) and the key.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BoardError {
    #[error("unknown board `{name}`; built-in boards: {}; or pass a path to a .toml profile", .known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: larger than {limit} bytes: not a board profile")]
    TooLarge { file: String, limit: u64 },
    /// Syntax errors, unknown keys, missing keys and wrong types, as the TOML parser words them
    /// (with line, column and key).
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: `{key}` = {value}: {message}")]
    Invalid {
        file: String,
        key: &'static str,
        value: String,
        message: String,
    },
}
