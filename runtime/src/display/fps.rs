//! Frames per second over a sliding window of recent frames: steady enough to read on screen,
//! quick to show a slowdown (an average since start would hide it).

use std::collections::VecDeque;
use std::time::Instant;

pub struct FpsMeter {
    times: VecDeque<Instant>,
    window: usize,
}

impl FpsMeter {
    /// Averages over the last `window` frames (at least 2).
    pub fn new(window: usize) -> Self {
        FpsMeter {
            times: VecDeque::new(),
            window: window.max(2),
        }
    }

    /// Records a frame shown at `now`; the rate once two frames have been seen.
    pub fn tick(&mut self, now: Instant) -> Option<f64> {
        if self.times.len() == self.window {
            self.times.pop_front();
        }
        self.times.push_back(now);
        let (first, last) = (self.times.front()?, self.times.back()?);
        let span = last.saturating_duration_since(*first).as_secs_f64();
        (self.times.len() >= 2 && span > 0.0).then(|| (self.times.len() - 1) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn follows_the_recent_rate() {
        let t0 = Instant::now();
        let mut m = FpsMeter::new(5);
        assert_eq!(m.tick(t0), None);
        let mut last = None;
        for i in 1..10 {
            last = m.tick(t0 + Duration::from_millis(40 * i));
        }
        assert!((last.unwrap() - 25.0).abs() < 1e-6, "{last:?}");
        // Slows to 10 fps: after a full window the meter shows only the new rate.
        let t1 = t0 + Duration::from_millis(360);
        for i in 1..=5 {
            last = m.tick(t1 + Duration::from_millis(100 * i));
        }
        assert!((last.unwrap() - 10.0).abs() < 1e-6, "{last:?}");
    }
}
