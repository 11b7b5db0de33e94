//! Hand-off from the capture thread to the reader: a short queue that drops its oldest entry.
//!
//! The capture thread must give every buffer back to the driver at once (a held buffer stalls
//! the stream), so it copies the bytes here and never waits for the reader. Decoding happens on
//! the reader's side, so a frame dropped here never costs a JPEG decode.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the capture thread reports besides frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Streaming,
    /// The device was lost or failed to open; the thread is retrying.
    Reconnecting {
        attempt: u32,
        reason: String,
    },
    /// `stop` was called: no more frames will come.
    Stopped,
}

#[derive(Debug)]
pub struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    pushed: u64,
    dropped: u64,
    status: Status,
}

/// What a wait returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Item(T),
    /// Nothing arrived within the timeout; carries the current status.
    Waiting(Status),
    Stopped,
}

impl<T> Slot<T> {
    pub fn new(capacity: usize) -> Self {
        Slot {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                pushed: 0,
                dropped: 0,
                status: Status::Streaming,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue half-updated (each method is
        // one push/pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, dropping the oldest when full. Returns false after `stop`.
    pub fn push(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.status == Status::Stopped {
            return false;
        }
        if s.queue.len() == self.capacity {
            s.queue.pop_front();
            s.dropped += 1;
        }
        s.queue.push_back(item);
        s.pushed += 1;
        s.status = Status::Streaming;
        drop(s);
        self.ready.notify_one();
        true
    }

    pub fn set_status(&self, status: Status) {
        let mut s = self.lock();
        if s.status != Status::Stopped {
            s.status = status;
        }
        drop(s);
        self.ready.notify_all();
    }

    pub fn stop(&self) {
        let mut s = self.lock();
        s.status = Status::Stopped;
        s.queue.clear();
        drop(s);
        self.ready.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.lock().status == Status::Stopped
    }

    /// Waits up to `timeout` for the oldest queued item.
    pub fn take(&self, timeout: Duration) -> Taken<T> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(item) = s.queue.pop_front() {
                return Taken::Item(item);
            }
            if s.status == Status::Stopped {
                return Taken::Stopped;
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::Waiting(s.status.clone());
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// (frames captured, frames dropped because the reader was slower than the camera).
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.pushed, s.dropped)
    }

    /// Sleeps up to `d`, returning early (true) when stopped.
    pub fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut s = self.lock();
        while s.status != Status::Stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drops_oldest_and_counts() {
        let slot = Slot::new(2);
        for i in 0..5 {
            assert!(slot.push(i));
        }
        assert_eq!(slot.counts(), (5, 3));
        assert_eq!(slot.take(Duration::ZERO), Taken::Item(3));
        assert_eq!(slot.take(Duration::ZERO), Taken::Item(4));
        assert_eq!(slot.take(Duration::ZERO), Taken::Waiting(Status::Streaming));
    }

    #[test]
    fn reports_reconnecting_while_waiting() {
        let slot: Slot<u8> = Slot::new(2);
        let status = Status::Reconnecting {
            attempt: 2,
            reason: "unplugged".into(),
        };
        slot.set_status(status.clone());
        assert_eq!(slot.take(Duration::from_millis(5)), Taken::Waiting(status));
        slot.push(1);
        assert_eq!(slot.take(Duration::ZERO), Taken::Item(1));
        assert_eq!(slot.take(Duration::ZERO), Taken::Waiting(Status::Streaming));
    }

    #[test]
    fn stop_wakes_a_blocked_reader_and_refuses_pushes() {
        let slot: Arc<Slot<u8>> = Arc::new(Slot::new(2));
        let reader = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.take(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        slot.stop();
        assert_eq!(reader.join().unwrap(), Taken::Stopped);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!slot.push(9));
        assert!(slot.sleep_unless_stopped(Duration::from_secs(30)));
        slot.set_status(Status::Streaming);
        assert!(slot.is_stopped(), "stop is final");
    }

    #[test]
    fn delivers_across_threads_in_order() {
        let slot: Arc<Slot<u32>> = Arc::new(Slot::new(64));
        let producer = {
            let slot = slot.clone();
            std::thread::spawn(move || (0..50).for_each(|i| assert!(slot.push(i))))
        };
        let mut got = Vec::new();
        while got.len() < 50 {
            if let Taken::Item(i) = slot.take(Duration::from_secs(5)) {
                got.push(i);
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }
}
