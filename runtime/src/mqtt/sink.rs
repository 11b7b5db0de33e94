//! [`MqttSink`]: the pipeline [`Sink`] that hands each frame's JSON line to the MQTT publisher.

use super::outbox::{Message, Outbox};
use crate::pipeline::{FrameResult, Sink, SinkError};
use crate::source::Frame;
use std::sync::Arc;

/// Serialises the result (the same JSON as a `--json` line) and queues it; the publisher thread
/// does the network I/O, so `consume` costs a serialisation and a lock, never a wait on the
/// broker.
pub struct MqttSink {
    outbox: Arc<Outbox>,
}

impl MqttSink {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        MqttSink { outbox }
    }
}

impl Sink for MqttSink {
    fn consume(&mut self, _frame: &Frame, result: &FrameResult) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(result).map_err(|e| SinkError::Other {
            sink: "--mqtt".into(),
            message: e.to_string(),
        })?;
        self.outbox.push(Message {
            summary: false,
            payload,
        });
        Ok(())
    }

    /// Nothing to flush here: the run's owner closes the publisher after publishing the summary.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
