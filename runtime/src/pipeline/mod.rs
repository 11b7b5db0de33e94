//! The run loop: a capture thread reads the source into a lock-free SPSC ring (`ringbuf`);
//! the inference thread takes the newest frame (older ones are dropped and counted when
//! inference falls behind a live source) and runs the [`Recognizer`]; a sink thread hands
//! each result to the sinks (JSON lines here; the display sinks of the camera issue). A
//! [`CancelToken`] (Ctrl-C) stops all three cleanly.

mod cancel;
mod detect_ahead;
mod recognizer;
mod result;
mod runner;
mod sink;

pub use cancel::CancelToken;
pub use recognizer::{FaceOutputs, Observation, PipelineError, Recognizer, RecognizerConfig};
pub use result::{FaceResult, FrameResult, StageTimes};
pub use runner::{DropPolicy, FrameProcessor, RunOptions, RunSummary, run_pipeline};
pub use sink::{JsonLinesSink, Sink, SinkError};

#[cfg(test)]
mod detect_ahead_tests;
#[cfg(test)]
mod tests;
