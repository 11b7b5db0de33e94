//! The MQTT publisher thread: moves results from the [`Outbox`] to the broker at QoS 1,
//! reconnecting with backoff.
//!
//! Delivery is tracked here, not left to rumqttc: a message stays held (in the outbox's bound)
//! until its PUBACK arrives, and when the connection drops every unacknowledged message goes back
//! to the front of the outbox. rumqttc would republish them itself only if the broker kept our
//! session, which a restarted broker without persistence does not; so we connect with a clean
//! session, throw away rumqttc's own copies, and resend ours. A message whose ack was lost with
//! the connection is sent twice: QoS 1 is at-least-once.

use super::outbox::{Message, MqttStats, Outbox};
use super::url::MqttUrl;
use crate::camera::backoff::Backoff;
use rumqttc::{Client, Connection, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Settings of a publisher (`sitfer run --mqtt URL --mqtt-queue N`).
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub url: MqttUrl,
    /// Results held at most (queued + unacknowledged); see [`Outbox`].
    pub queue: usize,
    /// Unacknowledged publishes on the wire at once.
    pub window: usize,
    /// Keep-alive ping interval: how soon a silently dead broker is noticed.
    pub keep_alive: Duration,
    /// First and longest wait between reconnect attempts.
    pub backoff: (Duration, Duration),
    pub client_id: String,
}

impl PublisherConfig {
    pub fn new(url: MqttUrl, queue: usize) -> Self {
        PublisherConfig {
            url,
            queue: queue.max(1),
            window: 64,
            keep_alive: Duration::from_secs(5),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            client_id: format!(
                "sitfer-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ),
        }
    }
}

/// Handle of a running publisher: queue messages with [`push`](Self::push) (or through
/// [`MqttSink`](super::MqttSink)), then [`close`](Self::close).
pub struct MqttPublisher {
    outbox: Arc<Outbox>,
    url: MqttUrl,
    thread: Option<JoinHandle<()>>,
}

impl MqttPublisher {
    /// Starts the publisher thread; connecting happens there, so an absent broker is not an
    /// error here (results queue until it answers).
    pub fn start(cfg: PublisherConfig) -> std::io::Result<Self> {
        let outbox = Arc::new(Outbox::new(cfg.queue));
        let url = cfg.url.clone();
        let thread = {
            let outbox = outbox.clone();
            std::thread::Builder::new()
                .name("sitfer-mqtt".into())
                .spawn(move || publish_loop(cfg, &outbox))?
        };
        Ok(MqttPublisher {
            outbox,
            url,
            thread: Some(thread),
        })
    }

    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    pub fn url(&self) -> &MqttUrl {
        &self.url
    }

    pub fn push(&self, m: Message) {
        self.outbox.push(m);
    }

    /// Counts so far.
    pub fn stats(&self) -> MqttStats {
        self.outbox.stats()
    }

    /// Publishes what is still held for up to `drain`, then disconnects; the final counts.
    pub fn close(mut self, drain: Duration) -> MqttStats {
        self.shutdown(drain);
        self.outbox.finish()
    }

    fn shutdown(&mut self, drain: Duration) {
        self.outbox.close(drain);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("mqtt: the publisher thread panicked");
        }
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// One message with the client: its packet id once rumqttc has assigned one.
struct Sent {
    msg: Message,
    pkid: Option<u16>,
}

fn publish_loop(cfg: PublisherConfig, outbox: &Outbox) {
    let url = &cfg.url;
    let summary_topic = url.summary_topic();
    let mut opts = MqttOptions::new(&cfg.client_id, &url.host, url.port);
    let window = cfg.window.clamp(1, u16::MAX as usize);
    opts.set_keep_alive(cfg.keep_alive)
        .set_clean_session(true)
        .set_inflight(window as u16)
        .set_max_packet_size(64 << 10, 2 * super::outbox::MAX_PAYLOAD);
    let (client, mut conn) = Client::new(opts, window);
    let mut sent: VecDeque<Sent> = VecDeque::new();
    let mut connected = false;
    let mut backoff = Backoff::new(cfg.backoff.0, cfg.backoff.1);
    let mut retry_at = Instant::now();
    let mut failures = 0u32;
    loop {
        let deadline = outbox.deadline();
        let now = Instant::now();
        if deadline.is_some() && sent.is_empty() && outbox.is_drained() {
            break;
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if connected {
            for msg in outbox.take(window - sent.len()) {
                let topic = if msg.summary { &summary_topic } else { &url.topic };
                // Cannot be full: the channel holds `window` requests and we never have more
                // than `window` with the client; if it ever is, the message simply waits.
                if client
                    .try_publish(topic.as_str(), QoS::AtLeastOnce, false, msg.payload.clone())
                    .is_err()
                {
                    outbox.requeue(vec![msg]);
                    break;
                }
                sent.push_back(Sent { msg, pkid: None });
            }
        } else if now < retry_at {
            outbox.sleep_until(deadline.map_or(retry_at, |d| d.min(retry_at)));
            continue;
        }
        // Connected: short polls, so new results go out within milliseconds. Connecting: long
        // enough for the TCP and MQTT handshakes (rumqttc's own timeout is 5 s), since a timed
        // out poll abandons the attempt.
        let poll = if connected {
            Duration::from_millis(5)
        } else {
            Duration::from_secs(6)
        };
        let poll = deadline.map_or(poll, |d| poll.min(d.saturating_duration_since(Instant::now())));
        match conn.recv_timeout(poll.max(Duration::from_millis(1))) {
            Ok(Ok(event)) => {
                if !connected && matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    connected = true;
                    backoff.reset();
                    log::info!("mqtt: connected to {url} ({} results queued)", outbox.waiting());
                    failures = 0;
                } else {
                    on_event(event, &mut sent, outbox);
                }
            }
            Ok(Err(e)) => {
                if connected {
                    outbox.count_reconnect();
                }
                log_failure(url, &e, connected, failures, outbox);
                failures = failures.saturating_add(1);
                connected = false;
                forget_session(&mut conn);
                outbox.requeue(sent.drain(..).map(|s| s.msg).collect());
                retry_at = Instant::now() + backoff.next_delay();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if connected {
        // Best effort: a clean DISCONNECT so the broker does not publish a will or wait for the
        // keep-alive; the unacknowledged remainder is counted as undelivered by the caller.
        let _ = client.try_disconnect();
        let _ = conn.recv_timeout(Duration::from_millis(200));
    }
    outbox.requeue(sent.drain(..).map(|s| s.msg).collect());
}

fn on_event(event: Event, sent: &mut VecDeque<Sent>, outbox: &Outbox) {
    match event {
        // rumqttc sends our requests in the order they were queued, so the first message
        // without a packet id is the one this id belongs to.
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            if let Some(s) = sent.iter_mut().find(|s| s.pkid.is_none()) {
                s.pkid = Some(pkid);
            }
        }
        Event::Incoming(Packet::PubAck(ack)) => {
            if let Some(i) = sent.iter().position(|s| s.pkid == Some(ack.pkid)) {
                sent.remove(i);
                outbox.delivered(1);
            }
        }
        _ => {}
    }
}

/// After a lost connection rumqttc keeps its own copies of the unacknowledged publishes and any
/// events it had read but not yet returned; both belong to the dead session (we resend from the
/// outbox), and a stale PUBACK's packet id would match a new message after reconnecting.
fn forget_session(conn: &mut Connection) {
    conn.eventloop.pending.clear();
    conn.eventloop.state.events.clear();
}

fn log_failure(url: &MqttUrl, e: &ConnectionError, was_connected: bool, failures: u32, outbox: &Outbox) {
    if was_connected {
        log::warn!("mqtt: lost the connection to {url}: {e}; reconnecting, results queue meanwhile");
    } else if failures == 0 {
        log::warn!(
            "mqtt: cannot reach {url}: {e}; retrying, results queue meanwhile ({} queued)",
            outbox.waiting()
        );
    } else {
        log::debug!("mqtt: {url}: {e} (attempt {})", failures + 1);
    }
}
