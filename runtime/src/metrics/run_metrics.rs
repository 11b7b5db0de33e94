//! What a run exposes to Prometheus: frame rate, per-stage latency, drops, faces, the instance
//! buffer, the MQTT publisher's counts, and whether the first frame has been processed.
//!
//! Updated by the inference thread once per processed frame (a few atomic adds and one mutex for
//! the fps window), read by the metrics server thread at each scrape.

use crate::mqtt::Outbox;
use crate::pipeline::FrameResult;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Stage latency buckets in seconds: 0.5 ms (crop, fuse) to 2.5 s (a slow detector on a debug
/// build), roughly ×2.5 apart.
const STAGE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Frames the fps gauge averages over (~1 s at 30 fps).
const FPS_WINDOW: usize = 30;

pub struct RunMetrics {
    registry: Registry,
    frames: IntCounter,
    fps: Gauge,
    stage: HistogramVec,
    dropped: IntCounterVec,
    faces: IntGauge,
    faces_total: IntCounter,
    buffer_entries: IntGaugeVec,
    admissions: IntCounter,
    mqtt: IntGaugeVec,
    mqtt_outbox: OnceLock<Arc<Outbox>>,
    fps_meter: Mutex<crate::display::FpsMeter>,
    ready: AtomicBool,
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMetrics")
            .field("frames", &self.frames.get())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Default for RunMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RunMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // Names and labels are constants: registering them cannot fail except by a typo here,
        // which every test run would show.
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone()))
                .expect("metric names are valid and unique");
            m
        }
        let frames = reg(
            &registry,
            IntCounter::new("sitfer_frames_processed_total", "Frames run through the recognizer.").unwrap(),
        );
        let fps = reg(
            &registry,
            Gauge::new("sitfer_fps", "Processed frames per second over the last 30 frames.").unwrap(),
        );
        let stage = reg(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sitfer_stage_seconds",
                    "Time per frame in each stage: detect (detector and tracking), crop, infer (the model, \
                     all faces as one batch), fuse (fusion, smoothing, buffer admission), total.",
                )
                .buckets(STAGE_BUCKETS.to_vec()),
                &["stage"],
            )
            .unwrap(),
        );
        let dropped = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "sitfer_frames_dropped_total",
                    "Frames dropped to keep up with a live source: by the camera's capture (where=camera) \
                     or by the pipeline's ring and inference thread (where=pipeline).",
                ),
                &["where"],
            )
            .unwrap(),
        );
        let faces = reg(
            &registry,
            IntGauge::new("sitfer_faces", "Faces in the last processed frame.").unwrap(),
        );
        let faces_total = reg(
            &registry,
            IntCounter::new("sitfer_faces_total", "Faces recognised, summed over frames.").unwrap(),
        );
        let buffer_entries = reg(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "sitfer_buffer_entries",
                    "Instance-buffer entries: shipped with the bundle (kind=seed) or added on the device (kind=device).",
                ),
                &["kind"],
            )
            .unwrap(),
        );
        let admissions = reg(
            &registry,
            IntCounter::new(
                "sitfer_buffer_admissions_total",
                "Faces admitted into the instance buffer this run.",
            )
            .unwrap(),
        );
        let mqtt = reg(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "sitfer_mqtt_messages",
                    "With --mqtt: results accepted, delivered (acknowledged), dropped (queue full) and queued.",
                ),
                &["state"],
            )
            .unwrap(),
        );
        for w in ["camera", "pipeline"] {
            dropped.with_label_values(&[w]);
        }
        RunMetrics {
            registry,
            frames,
            fps,
            stage,
            dropped,
            faces,
            faces_total,
            buffer_entries,
            admissions,
            mqtt,
            mqtt_outbox: OnceLock::new(),
            fps_meter: Mutex::new(crate::display::FpsMeter::new(FPS_WINDOW)),
            ready: AtomicBool::new(false),
        }
    }

    /// Reports the MQTT publisher's counts at each scrape.
    pub fn watch_mqtt(&self, outbox: Arc<Outbox>) {
        let _ = self.mqtt_outbox.set(outbox);
    }

    /// One processed frame; `buffer` is (seed, device) entries when the processor has a buffer.
    pub fn observe_frame(&self, r: &FrameResult, buffer: Option<(usize, usize)>) {
        self.frames.inc();
        for (stage, ms) in [
            ("detect", r.ms.detect),
            ("crop", r.ms.crop),
            ("infer", r.ms.infer),
            ("fuse", r.ms.fuse),
            ("total", r.ms.total()),
        ] {
            self.stage.with_label_values(&[stage]).observe(ms / 1000.0);
        }
        self.faces.set(r.faces.len() as i64);
        self.faces_total.inc_by(r.faces.len() as u64);
        self.admissions
            .inc_by(r.faces.iter().filter(|f| f.added).count() as u64);
        if let Some((seed, device)) = buffer {
            self.buffer_entries.with_label_values(&["seed"]).set(seed as i64);
            self.buffer_entries.with_label_values(&["device"]).set(device as i64);
        }
        let mut meter = self.fps_meter.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fps) = meter.tick(Instant::now()) {
            self.fps.set(fps);
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The run's drop totals so far (the counters follow them; they never go down).
    pub fn set_dropped(&self, camera: u64, pipeline: u64) {
        for (w, total) in [("camera", camera), ("pipeline", pipeline)] {
            let c = self.dropped.with_label_values(&[w]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// Ready once the first frame has been processed: the model loaded, the source delivers.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        if let Some(o) = self.mqtt_outbox.get() {
            let s = o.stats();
            for (state, v) in [
                ("accepted", s.accepted),
                ("delivered", s.delivered),
                ("dropped", s.dropped),
                ("queued", o.held() as u64),
            ] {
                self.mqtt.with_label_values(&[state]).set(v as i64);
            }
        }
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a non-UTF-8 help string or label, none of which exist.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics: encoding failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StageTimes;

    fn frame(faces: usize) -> FrameResult {
        FrameResult {
            frame: 0,
            time: 0.0,
            width: 1,
            height: 1,
            detected: true,
            faces: (0..faces)
                .map(|i| crate::pipeline::FaceResult {
                    track: i as u64,
                    bbox: crate::detect::BBox {
                        x1: 0.0,
                        y1: 0.0,
                        x2: 1.0,
                        y2: 1.0,
                    },
                    score: 1.0,
                    label: "happy",
                    confidence: 1.0,
                    p_hat: [0.0; 7],
                    p_smooth: [0.0; 7],
                    p_sem: [0.0; 7],
                    p_text: None,
                    p_ins: [0.0; 7],
                    added: i == 0,
                })
                .collect(),
            ms: StageTimes {
                detect: 30.0,
                crop: 0.2,
                infer: 4.0,
                fuse: 0.3,
            },
        }
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn frames_faces_stages_drops_and_buffer_are_counted() {
        let m = RunMetrics::new();
        assert!(!m.is_ready());
        m.observe_frame(&frame(2), Some((224, 3)));
        m.observe_frame(&frame(1), Some((224, 5)));
        m.set_dropped(4, 1);
        m.set_dropped(6, 1);
        let t = m.render();
        assert!(m.is_ready());
        assert_eq!(value(&t, "sitfer_frames_processed_total"), 2.0);
        assert_eq!(value(&t, "sitfer_faces"), 1.0);
        assert_eq!(value(&t, "sitfer_faces_total"), 3.0);
        assert_eq!(value(&t, "sitfer_buffer_admissions_total"), 2.0);
        assert_eq!(value(&t, "sitfer_buffer_entries{kind=\"device\"}"), 5.0);
        assert_eq!(value(&t, "sitfer_frames_dropped_total{where=\"camera\"}"), 6.0);
        assert_eq!(value(&t, "sitfer_frames_dropped_total{where=\"pipeline\"}"), 1.0);
        // 30 ms of detection lands in the 50 ms bucket, not the 25 ms one.
        assert_eq!(
            value(&t, "sitfer_stage_seconds_bucket{stage=\"detect\",le=\"0.025\"}"),
            0.0
        );
        assert_eq!(
            value(&t, "sitfer_stage_seconds_bucket{stage=\"detect\",le=\"0.05\"}"),
            2.0
        );
        assert_eq!(value(&t, "sitfer_stage_seconds_count{stage=\"total\"}"), 2.0);
        assert!(t.contains("# TYPE sitfer_stage_seconds histogram"), "{t}");
    }
}
