//! `DisplayError`: every error names the output (device, file or address).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DisplayError {
    #[error("cannot open framebuffer {path}: {source}{hint}")]
    Open {
        path: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a framebuffer (FBIOGET_*SCREENINFO failed: {source})")]
    Ioctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("framebuffer {path}: unsupported format: {message}")]
    Unsupported { path: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("frame of {width}x{height} cannot be {len} RGB bytes")]
    BadFrame { width: u32, height: u32, len: usize },
    #[error("snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    #[error("preview server on {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
