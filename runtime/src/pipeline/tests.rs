use super::*;
use crate::source::{Frame, FrameSource, SourceError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `n` tiny frames, as fast as asked, or paced `every` apart.
struct Counter {
    next: u64,
    n: u64,
    every: Duration,
}

impl FrameSource for Counter {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next >= self.n {
            return Ok(None);
        }
        std::thread::sleep(self.every);
        let f = Frame {
            index: self.next,
            timestamp: Duration::from_millis(self.next),
            width: 1,
            height: 1,
            rgb: vec![0; 3],
        };
        self.next += 1;
        Ok(Some(f))
    }
    fn nominal_fps(&self) -> Option<f64> {
        None
    }
    fn describe(&self) -> String {
        "counter".into()
    }
}

struct Slow {
    delay: Duration,
    seen: Vec<u64>,
}

impl FrameProcessor for Slow {
    fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError> {
        std::thread::sleep(self.delay);
        self.seen.push(frame.index);
        Ok(FrameResult {
            frame: frame.index,
            time: 0.0,
            width: 1,
            height: 1,
            detected: true,
            faces: Vec::new(),
            ms: StageTimes::default(),
        })
    }
}

/// A sink that records what it got and whether it was finished.
#[derive(Clone, Default)]
struct Record(Arc<Mutex<(Vec<u64>, bool)>>);

impl Sink for Record {
    fn consume(&mut self, _f: &Frame, r: &FrameResult) -> Result<(), SinkError> {
        self.0.lock().unwrap().0.push(r.frame);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.0.lock().unwrap().1 = true;
        Ok(())
    }
}

fn counter(n: u64, every_us: u64) -> Box<dyn FrameSource> {
    Box::new(Counter {
        next: 0,
        n,
        every: Duration::from_micros(every_us),
    })
}

#[test]
fn drop_oldest_counts_drops_and_always_reaches_the_newest_frame() {
    let rec = Record::default();
    let mut slow = Slow {
        delay: Duration::from_millis(5),
        seen: Vec::new(),
    };
    let opts = RunOptions {
        policy: DropPolicy::DropOldest,
        ring_capacity: 4,
        ..RunOptions::default()
    };
    // 300 frames at up to 5000 fps into a consumer at 200 fps at most.
    let s = run_pipeline(counter(300, 200), &mut slow, vec![Box::new(rec.clone())], &opts).unwrap();
    assert_eq!(s.captured, 300);
    assert!(s.dropped > 0 && s.processed < 300, "{s:?}");
    assert_eq!(s.processed + s.dropped, s.captured, "{s:?}");
    assert_eq!(slow.seen.last(), Some(&299), "the newest frame is processed");
    assert!(slow.seen.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", slow.seen);
    let (got, finished) = rec.0.lock().unwrap().clone();
    assert_eq!(got, slow.seen);
    assert!(finished);
}

#[test]
fn block_policy_processes_every_frame_in_order() {
    let mut slow = Slow {
        delay: Duration::from_micros(200),
        seen: Vec::new(),
    };
    let s = run_pipeline(counter(50, 0), &mut slow, Vec::new(), &RunOptions::default()).unwrap();
    assert_eq!((s.captured, s.processed, s.dropped), (50, 50, 0));
    assert_eq!(slow.seen, (0..50).collect::<Vec<_>>());
}

#[test]
fn cancel_and_max_frames_stop_cleanly_and_finish_sinks() {
    let rec = Record::default();
    let mut slow = Slow {
        delay: Duration::from_millis(1),
        seen: Vec::new(),
    };
    let opts = RunOptions {
        max_frames: Some(7),
        ..RunOptions::default()
    };
    let s = run_pipeline(counter(1_000_000, 0), &mut slow, vec![Box::new(rec.clone())], &opts).unwrap();
    assert_eq!(s.processed, 7);
    assert!(rec.0.lock().unwrap().1);
    // A cancel token fired from another thread (what Ctrl-C does).
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        c2.cancel();
    });
    let rec = Record::default();
    let opts = RunOptions {
        cancel,
        ..RunOptions::default()
    };
    let s = run_pipeline(counter(1_000_000, 100), &mut slow, vec![Box::new(rec.clone())], &opts).unwrap();
    t.join().unwrap();
    assert!(s.cancelled && s.processed > 0 && s.processed < 1_000_000);
    assert!(rec.0.lock().unwrap().1, "sinks finished after a cancel");
}

#[test]
fn source_errors_are_reported_after_sinks_finish() {
    struct Failing(u64);
    impl FrameSource for Failing {
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            self.0 += 1;
            if self.0 > 3 {
                return Err(SourceError::Other {
                    source_name: "cam".into(),
                    message: "unplugged".into(),
                });
            }
            Ok(Some(Frame {
                index: self.0,
                timestamp: Duration::ZERO,
                width: 1,
                height: 1,
                rgb: vec![0; 3],
            }))
        }
        fn nominal_fps(&self) -> Option<f64> {
            None
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }
    let rec = Record::default();
    let mut slow = Slow {
        delay: Duration::ZERO,
        seen: Vec::new(),
    };
    let e = run_pipeline(
        Box::new(Failing(0)),
        &mut slow,
        vec![Box::new(rec.clone())],
        &RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unplugged"), "{e}");
    assert!(rec.0.lock().unwrap().1);
}

#[test]
fn json_lines_sink_writes_one_object_per_frame() {
    let mut sink = JsonLinesSink::new(Vec::new(), "memory");
    let frame = Frame {
        index: 3,
        timestamp: Duration::from_millis(100),
        width: 2,
        height: 2,
        rgb: vec![0; 12],
    };
    let r = FrameResult {
        frame: 3,
        time: 0.1,
        width: 2,
        height: 2,
        detected: true,
        faces: Vec::new(),
        ms: StageTimes::default(),
    };
    sink.consume(&frame, &r).unwrap();
    sink.consume(&frame, &r).unwrap();
    sink.finish().unwrap();
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["frame"], 3);
    assert!(lines[0]["faces"].as_array().unwrap().is_empty());
}

#[test]
fn frames_the_source_dropped_count_in_the_summary() {
    // A camera reports the frames its own slot replaced; they are drops of the run as much as
    // the ring's.
    struct Lossy(Counter);
    impl FrameSource for Lossy {
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            self.0.next_frame()
        }
        fn nominal_fps(&self) -> Option<f64> {
            None
        }
        fn describe(&self) -> String {
            "lossy camera".into()
        }
        fn dropped(&self) -> u64 {
            2 * self.0.next
        }
    }
    let source = Box::new(Lossy(Counter {
        next: 0,
        n: 10,
        every: Duration::ZERO,
    }));
    let mut slow = Slow {
        delay: Duration::ZERO,
        seen: Vec::new(),
    };
    let s = run_pipeline(source, &mut slow, Vec::new(), &RunOptions::default()).unwrap();
    assert_eq!(s.processed, 10);
    assert_eq!(s.dropped, 20, "{s:?}");
}

#[test]
fn detection_runs_on_schedule_and_at_once_when_a_track_is_lost() {
    use crate::detect::{BBox, Detection};
    use crate::track::{Tracker, TrackerConfig};
    let face = Detection {
        bbox: BBox::new(10.0, 10.0, 60.0, 60.0),
        score: 0.9,
        landmarks: None,
    };
    let mut tr = Tracker::new(TrackerConfig::default());
    // no tracks: every frame detects
    assert!(recognizer::detect_now(1, 5, tr.tracks()));
    tr.update(0, std::slice::from_ref(&face));
    // a face tracked: only every 5th frame
    let scheduled: Vec<u64> = (1..11).filter(|&f| recognizer::detect_now(f, 5, tr.tracks())).collect();
    assert_eq!(scheduled, vec![5, 10]);
    // the detector misses it at frame 5: the next frame detects again, not frame 10
    tr.update(5, &[]);
    assert_eq!(tr.tracks()[0].missed, 1);
    assert!(recognizer::detect_now(6, 5, tr.tracks()));
    // found again: back to the schedule
    tr.update(6, std::slice::from_ref(&face));
    assert!(!recognizer::detect_now(7, 5, tr.tracks()));
    // a face that jumped out of the tracker's reach: a new track and a lost one; the new one is
    // carried, so the schedule holds
    let far = Detection {
        bbox: BBox::new(300.0, 200.0, 350.0, 250.0),
        ..face.clone()
    };
    tr.update(10, std::slice::from_ref(&far));
    assert!(tr.tracks().iter().any(|t| t.missed > 0) && tr.tracks().iter().any(|t| t.missed == 0));
    assert!(!recognizer::detect_now(11, 5, tr.tracks()));
    // every frame when asked for 0 or 1
    assert!(recognizer::detect_now(7, 1, tr.tracks()) && recognizer::detect_now(7, 0, tr.tracks()));
}

#[test]
fn a_stop_reaches_a_source_that_would_wait_for_ever() {
    // A camera unplugged mid-run: `next_frame` waits for it to come back, returning only when
    // the run's stop (handed over through `watch_stop`) fires. Ctrl-C must still end the run.
    struct Unplugged(Option<CancelToken>);
    impl FrameSource for Unplugged {
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            loop {
                if self.0.as_ref().is_some_and(CancelToken::is_cancelled) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        fn nominal_fps(&self) -> Option<f64> {
            None
        }
        fn describe(&self) -> String {
            "unplugged camera".into()
        }
        fn watch_stop(&mut self, stop: CancelToken) {
            self.0 = Some(stop);
        }
    }
    let opts = RunOptions {
        policy: DropPolicy::DropOldest,
        ..RunOptions::default()
    };
    let ctrl_c = opts.cancel.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut slow = Slow {
            delay: Duration::ZERO,
            seen: Vec::new(),
        };
        let _ = tx.send(run_pipeline(Box::new(Unplugged(None)), &mut slow, Vec::new(), &opts));
    });
    std::thread::sleep(Duration::from_millis(100));
    ctrl_c.cancel();
    let summary = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the run did not stop: the source never saw the stop")
        .unwrap();
    assert!(summary.cancelled);
    assert_eq!(summary.processed, 0);
}
