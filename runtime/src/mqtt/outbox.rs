//! The bounded offline queue between the sink thread and the MQTT publisher thread.
//!
//! It bounds what is held, not what is waiting: messages handed to the MQTT client but not yet
//! acknowledged (PUBACK) count too, because after a disconnect they come back here to be sent
//! again. So at most `capacity` results are ever held, whatever the broker does, and a full
//! outbox drops its oldest waiting message (counted) rather than make the caller wait: the
//! camera loop never waits on the network.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest payload published: a frame line is ~1.3 KB per face, so this is hundreds of faces;
/// larger ones are dropped (counted) instead of making the client fail on every reconnect.
pub const MAX_PAYLOAD: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The run summary (published on `TOPIC/summary`) rather than a frame line.
    pub summary: bool,
    pub payload: Vec<u8>,
}

/// What happened to the results handed to the publisher. At the end of a run
/// `accepted = delivered + dropped + undelivered`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MqttStats {
    /// Messages given to the sink (frame lines and the summary).
    pub accepted: u64,
    /// Acknowledged by the broker (QoS 1 PUBACK).
    pub delivered: u64,
    /// Dropped because the queue was full (oldest first) or the payload too large.
    pub dropped: u64,
    /// Still queued or unacknowledged when the run ended and the drain time ran out.
    pub undelivered: u64,
    /// Connections lost after having been up.
    pub reconnects: u64,
}

#[derive(Debug)]
struct State {
    waiting: VecDeque<Message>,
    in_flight: usize,
    capacity: usize,
    stats: MqttStats,
    /// Set by `close`: publish what is left until then, then stop.
    deadline: Option<Instant>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    wake: Condvar,
}

impl Outbox {
    /// `capacity` ≥ 1 results held (waiting + unacknowledged).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                in_flight: 0,
                capacity: capacity.max(1),
                stats: MqttStats::default(),
                deadline: None,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters, not invariants, behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `m`; never waits for the network. When full, the oldest waiting message leaves
    /// (or `m` itself, when every held message is already with the client).
    pub fn push(&self, m: Message) {
        let mut s = self.lock();
        s.stats.accepted += 1;
        if m.payload.len() > MAX_PAYLOAD {
            s.stats.dropped += 1;
            log::warn!(
                "mqtt: a {} byte result is over the {MAX_PAYLOAD} byte limit, dropped",
                m.payload.len()
            );
            return;
        }
        if s.waiting.len() + s.in_flight >= s.capacity {
            s.stats.dropped += 1;
            if s.waiting.pop_front().is_none() {
                return;
            }
        }
        s.waiting.push_back(m);
        drop(s);
        self.wake.notify_all();
    }

    /// Up to `max` waiting messages, oldest first, now counted as in flight.
    pub fn take(&self, max: usize) -> Vec<Message> {
        let mut s = self.lock();
        let n = max.min(s.waiting.len());
        s.in_flight += n;
        s.waiting.drain(..n).collect()
    }

    /// `n` in-flight messages were acknowledged.
    pub fn delivered(&self, n: usize) {
        let mut s = self.lock();
        s.in_flight -= n.min(s.in_flight);
        s.stats.delivered += n as u64;
        drop(s);
        self.wake.notify_all();
    }

    /// The connection was lost: its unacknowledged messages go back to the front, in order.
    pub fn requeue(&self, unacked: Vec<Message>) {
        let mut s = self.lock();
        s.in_flight -= unacked.len().min(s.in_flight);
        for m in unacked.into_iter().rev() {
            s.waiting.push_front(m);
        }
    }

    pub fn count_reconnect(&self) {
        self.lock().stats.reconnects += 1;
    }

    /// Messages waiting (not yet with the client).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Messages held: waiting and unacknowledged.
    pub fn held(&self) -> usize {
        let s = self.lock();
        s.waiting.len() + s.in_flight
    }

    /// Nothing waiting and nothing unacknowledged.
    pub fn is_drained(&self) -> bool {
        let s = self.lock();
        s.waiting.is_empty() && s.in_flight == 0
    }

    /// No more messages will come; the publisher gives up on what is left after `drain`.
    pub fn close(&self, drain: Duration) {
        self.lock().deadline = Some(Instant::now() + drain);
        self.wake.notify_all();
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// Sleeps until `until` or `close`, for the disconnected publisher: pushes do not wake it
    /// (it cannot send them).
    pub fn sleep_until(&self, until: Instant) {
        let mut s = self.lock();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || s.deadline.is_some() {
                return;
            }
            s = self.wake.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub fn stats(&self) -> MqttStats {
        self.lock().stats
    }

    /// Final counts: whatever is still held is undelivered.
    pub fn finish(&self) -> MqttStats {
        let s = self.lock();
        let mut stats = s.stats;
        stats.undelivered = (s.waiting.len() + s.in_flight) as u64;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u8) -> Message {
        Message {
            summary: false,
            payload: vec![i],
        }
    }

    fn ids(v: &[Message]) -> Vec<u8> {
        v.iter().map(|m| m.payload[0]).collect()
    }

    #[test]
    fn full_drops_the_oldest_waiting_and_counts_it() {
        let o = Outbox::new(3);
        for i in 0..5 {
            o.push(msg(i));
        }
        assert_eq!(ids(&o.take(10)), [2, 3, 4]);
        let s = o.finish();
        assert_eq!((s.accepted, s.dropped, s.undelivered), (5, 2, 3));
    }

    #[test]
    fn unacknowledged_messages_count_against_the_bound_and_come_back_in_order() {
        let o = Outbox::new(4);
        for i in 0..3 {
            o.push(msg(i));
        }
        let sent = o.take(2); // 0, 1 with the client
        o.push(msg(3));
        o.push(msg(4)); // full (2 in flight + 2 waiting): 2 leaves
        assert_eq!(o.stats().dropped, 1);
        o.requeue(sent);
        assert_eq!(ids(&o.take(10)), [0, 1, 3, 4]);
        o.delivered(4);
        assert!(o.is_drained());
        let s = o.finish();
        assert_eq!((s.accepted, s.delivered, s.dropped, s.undelivered), (5, 4, 1, 0));
    }

    #[test]
    fn everything_in_flight_drops_the_newest_and_oversize_is_dropped() {
        let o = Outbox::new(2);
        o.push(msg(0));
        o.push(msg(1));
        let _sent = o.take(2);
        o.push(msg(2));
        o.push(Message {
            summary: false,
            payload: vec![0; MAX_PAYLOAD + 1],
        });
        assert_eq!(o.waiting(), 0);
        assert_eq!(o.finish().dropped, 2);
    }
}
