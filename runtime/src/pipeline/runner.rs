//! Threads, ring and drop policy of a run.
//!
//! Drop-oldest over an SPSC ring: only the consumer may remove frames, so the inference thread
//! drains the ring each time it is free and keeps the newest frame, counting the others as
//! dropped; with a ring of several frames this is exactly "the model sees the newest frame".
//! If inference stalls for longer than the ring holds, the capture thread keeps its newest
//! frame aside (replacing it with each newer one, counting the replaced) and pushes it as soon
//! as there is room, so the newest frame is never the one lost.

use super::{CancelToken, FrameResult, PipelineError, Recognizer, Sink, StageTimes};
use crate::metrics::RunMetrics;
use crate::source::{Frame, FrameSource, SourceError};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

/// What the pipeline does when frames arrive faster than inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPolicy {
    /// Live sources: keep the newest frame, drop (and count) older ones.
    DropOldest,
    /// Files read as fast as possible: wait, every frame is processed.
    Block,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ring_capacity: usize,
    pub policy: DropPolicy,
    /// Stop after this many processed frames.
    pub max_frames: Option<u64>,
    pub cancel: CancelToken,
    /// Interval of the FPS log line.
    pub log_every: Duration,
    /// Updated after each processed frame (`--metrics`).
    pub metrics: Option<Arc<RunMetrics>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            ring_capacity: 4,
            policy: DropPolicy::Block,
            max_frames: None,
            cancel: CancelToken::new(),
            log_every: Duration::from_secs(2),
            metrics: None,
        }
    }
}

/// Counts and timings of a run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunSummary {
    pub captured: u64,
    pub processed: u64,
    pub dropped: u64,
    pub faces: u64,
    /// Index of the last frame processed.
    pub last_frame: Option<u64>,
    pub seconds: f64,
    pub fps: f64,
    /// Mean milliseconds per processed frame and stage.
    pub mean_ms: StageTimes,
    pub cancelled: bool,
}

/// What the inference thread runs on each frame (the [`Recognizer`], or a stand-in in tests).
pub trait FrameProcessor {
    fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError>;
    /// Instance-buffer entries (seed, added on the device), for the metrics.
    fn buffer_entries(&self) -> Option<(usize, usize)> {
        None
    }
}

impl FrameProcessor for Recognizer {
    fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError> {
        Recognizer::process(self, frame)
    }
    fn buffer_entries(&self) -> Option<(usize, usize)> {
        let b = self.buffer();
        Some((b.seed_counts().iter().sum(), b.queued_counts().iter().sum()))
    }
}

type Ring = HeapRb<Frame>;

/// Frames dropped before the inference thread saw them: by the source itself (the camera's
/// slot) and by the capture thread when the ring was full.
#[derive(Debug, Default)]
struct Drops {
    source: AtomicU64,
    ring: AtomicU64,
}

/// The capture loop; returns the number of frames read.
fn capture(
    mut source: Box<dyn FrameSource>,
    mut prod: <Ring as Split>::Prod,
    policy: DropPolicy,
    stop: &CancelToken,
    drops: &Drops,
    consumer: &std::thread::Thread,
) -> Result<u64, SourceError> {
    let mut captured = 0;
    let mut pending: Option<Frame> = None;
    let mut source_drops = 0;
    while !stop.is_cancelled() {
        let next = source.next_frame();
        let d = source.dropped();
        drops.source.fetch_add(d - source_drops.min(d), Ordering::SeqCst);
        source_drops = source_drops.max(d);
        let Some(frame) = next? else {
            break;
        };
        captured += 1;
        match policy {
            DropPolicy::Block => {
                let mut f = frame;
                loop {
                    match prod.try_push(f) {
                        Ok(()) => break,
                        Err(back) if !stop.is_cancelled() => {
                            f = back;
                            consumer.unpark();
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        Err(_) => return Ok(captured),
                    }
                }
            }
            DropPolicy::DropOldest => {
                if pending.replace(frame).is_some() {
                    drops.ring.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(f) = pending.take()
                    && let Err(back) = prod.try_push(f)
                {
                    pending = Some(back);
                }
            }
        }
        consumer.unpark();
    }
    // End of stream: the held-back newest frame still goes through.
    while let Some(f) = pending.take() {
        if stop.is_cancelled() {
            break;
        }
        if let Err(back) = prod.try_push(f) {
            pending = Some(back);
            consumer.unpark();
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok(captured)
}

/// Runs `source` through `processor` into `sinks` until the source ends, `max_frames` frames
/// are processed, or `opts.cancel` fires. Sinks are finished in every case.
pub fn run_pipeline<P: FrameProcessor>(
    mut source: Box<dyn FrameSource>,
    processor: &mut P,
    mut sinks: Vec<Box<dyn Sink>>,
    opts: &RunOptions,
) -> Result<RunSummary, PipelineError> {
    let (prod, mut cons) = Ring::new(opts.ring_capacity.max(1)).split();
    // Set when the run ends for any reason (end of stream, max_frames, Ctrl-C, an error); the
    // source watches it too, so a capture thread waiting on an unplugged camera returns.
    let stop = CancelToken::new();
    let done = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(Drops::default());
    let me = std::thread::current();
    let policy = opts.policy;
    let start = Instant::now();
    source.watch_stop(stop.clone());
    let capture_thread = {
        let (stop, done, drops, me) = (stop.clone(), done.clone(), drops.clone(), me.clone());
        std::thread::Builder::new()
            .name("sitfer-capture".into())
            .spawn(move || {
                let r = capture(source, prod, policy, &stop, &drops, &me);
                done.store(true, Ordering::SeqCst);
                me.unpark();
                r
            })
            .map_err(|e| PipelineError::Thread(format!("starting the capture thread: {e}")))?
    };
    let (tx, rx) = sync_channel::<(Frame, FrameResult)>(4);
    let sink_thread = std::thread::Builder::new()
        .name("sitfer-sink".into())
        .spawn(move || -> Result<(), super::SinkError> {
            let mut first_err = None;
            for (frame, result) in rx {
                if first_err.is_some() {
                    continue;
                }
                for s in sinks.iter_mut() {
                    if let Err(e) = s.consume(&frame, &result) {
                        first_err = Some(e);
                        break;
                    }
                }
            }
            for s in sinks.iter_mut() {
                if let Err(e) = s.finish() {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
        .map_err(|e| PipelineError::Thread(format!("starting the sink thread: {e}")))?;

    let mut summary = RunSummary::default();
    let mut consumer_dropped = 0u64;
    let mut totals = StageTimes::default();
    let mut last_log = Instant::now();
    let mut logged_processed = 0u64;
    let mut failure: Option<PipelineError> = None;
    loop {
        if opts.cancel.is_cancelled() {
            summary.cancelled = true;
            break;
        }
        let frame = match policy {
            DropPolicy::Block => cons.try_pop(),
            DropPolicy::DropOldest => {
                let mut newest = None;
                while let Some(f) = cons.try_pop() {
                    if newest.replace(f).is_some() {
                        consumer_dropped += 1;
                    }
                }
                newest
            }
        };
        let Some(frame) = frame else {
            if done.load(Ordering::SeqCst) && cons.is_empty() {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(5));
            continue;
        };
        let result = match processor.process(&frame) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        summary.processed += 1;
        summary.faces += result.faces.len() as u64;
        summary.last_frame = Some(frame.index);
        let ms = result.ms;
        totals.detect += ms.detect;
        totals.crop += ms.crop;
        totals.infer += ms.infer;
        totals.fuse += ms.fuse;
        if let Some(m) = &opts.metrics {
            m.observe_frame(&result, processor.buffer_entries());
            m.set_dropped(
                drops.source.load(Ordering::SeqCst),
                drops.ring.load(Ordering::SeqCst) + consumer_dropped,
            );
        }
        if tx.send((frame, result)).is_err() {
            // The sink thread ended early: its error is reported when it is joined.
            break;
        }
        if last_log.elapsed() >= opts.log_every {
            let secs = last_log.elapsed().as_secs_f64();
            log::info!(
                "{:.1} fps, {} frames, {} dropped",
                (summary.processed - logged_processed) as f64 / secs,
                summary.processed,
                consumer_dropped + drops.source.load(Ordering::SeqCst) + drops.ring.load(Ordering::SeqCst)
            );
            last_log = Instant::now();
            logged_processed = summary.processed;
        }
        if opts.max_frames.is_some_and(|m| summary.processed >= m) {
            break;
        }
    }
    stop.cancel();
    drop(tx);
    let captured = capture_thread
        .join()
        .map_err(|_| PipelineError::Thread("the capture thread panicked".into()));
    let sunk = sink_thread
        .join()
        .map_err(|_| PipelineError::Thread("the sink thread panicked".into()));
    let secs = start.elapsed().as_secs_f64();
    summary.captured = match captured? {
        Ok(n) => n,
        Err(e) => {
            failure.get_or_insert(PipelineError::Source(e));
            0
        }
    };
    sunk?.map_err(PipelineError::Sink).or_else(|e| match failure {
        Some(_) => Ok(()),
        None => Err(e),
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    summary.dropped = consumer_dropped + drops.source.load(Ordering::SeqCst) + drops.ring.load(Ordering::SeqCst);
    summary.seconds = secs;
    summary.fps = summary.processed as f64 / secs.max(1e-9);
    let n = summary.processed.max(1) as f64;
    summary.mean_ms = StageTimes {
        detect: totals.detect / n,
        crop: totals.crop / n,
        infer: totals.infer / n,
        fuse: totals.fuse / n,
    };
    Ok(summary)
}
