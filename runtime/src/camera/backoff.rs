//! Reconnect delays: doubling from a short first wait up to a cap, reset by a good frame.
//!
//! Short first so a USB hiccup costs a fraction of a second; capped so a camera plugged back in
//! after minutes is picked up within seconds without spinning on `open` meanwhile.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first,
            attempts: 0,
        }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.attempts += 1;
        d
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.next = self.first;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(2000));
        let got: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(got, [ms(250), ms(500), ms(1000), ms(2000), ms(2000), ms(2000)]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!((b.next_delay(), b.attempts()), (ms(250), 1));
    }
}
