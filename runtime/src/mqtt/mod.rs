//! `sitfer run --mqtt mqtt://HOST:PORT/TOPIC`: each frame's JSON line (and the run summary, on
//! `TOPIC/summary`) published at QoS 1 from a thread of its own, through a bounded offline queue
//! that drops its oldest results (counted) when the broker is away longer than it holds.

mod outbox;
mod publisher;
mod sink;
mod url;

pub use outbox::{MAX_PAYLOAD, Message, MqttStats, Outbox};
pub use publisher::{MqttPublisher, PublisherConfig};
pub use sink::MqttSink;
pub use url::{DEFAULT_PORT, MqttUrl, MqttUrlError};
