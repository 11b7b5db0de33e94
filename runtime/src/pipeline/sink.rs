//! Where results go. Sinks run on their own thread, in the order frames were processed.

use super::FrameResult;
use crate::source::Frame;
use std::io::Write;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("{sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{sink}: {message}")]
    Other { sink: String, message: String },
}

pub trait Sink: Send {
    fn consume(&mut self, frame: &Frame, result: &FrameResult) -> Result<(), SinkError>;
    /// End of the run: flush and close.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// One JSON object per line per frame.
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
    name: String,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// `name` identifies the destination in errors (a path or `stdout`).
    pub fn new(out: W, name: &str) -> Self {
        JsonLinesSink {
            out,
            name: name.to_string(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> SinkError + use<W> {
        let sink = self.name.clone();
        move |source| SinkError::Io { sink, source }
    }
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    fn consume(&mut self, _frame: &Frame, result: &FrameResult) -> Result<(), SinkError> {
        let line = serde_json::to_string(result).map_err(|e| SinkError::Other {
            sink: self.name.clone(),
            message: e.to_string(),
        })?;
        let err = self.io();
        writeln!(self.out, "{line}").map_err(err)
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        let err = self.io();
        self.out.flush().map_err(err)
    }
}
