//! `sitfer run`: frames from a source through the recognizer into JSON lines.

use super::bundle_arg;
use super::model_args::ModelArgs;
use super::online_args::{self, OnlineArgs};
use anyhow::{Context, Result};
use clap::Args;
use sitfer_runtime::camera::device::CameraConfig;
use sitfer_runtime::camera::negotiate::FormatRequest;
use sitfer_runtime::camera::source::CameraSource;
use sitfer_runtime::detect::{DetectorSpec, FaceDetector};
use sitfer_runtime::display::{DisplaySink, Framebuffer, MjpegPreview, Screen, Snapshots};
use sitfer_runtime::instance_buffer::{InstanceBuffer, space_id};
use sitfer_runtime::metrics::{MetricsServer, RunMetrics};
use sitfer_runtime::mqtt::{Message, MqttPublisher, MqttSink, MqttUrl, PublisherConfig};
use sitfer_runtime::pipeline::{CancelToken, DropPolicy, JsonLinesSink, Recognizer, RunOptions, Sink, run_pipeline};
use sitfer_runtime::source::{self, FrameSource, Paced};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// An image, a folder of images (name order) or a .y4m video.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Frame rate of image sources, and of the replay with --realtime.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Replay the file at its frame rate like a camera, dropping the oldest frames when
    /// inference falls behind (default: every frame, as fast as possible).
    #[arg(long)]
    pub realtime: bool,
    /// JSON lines destination: a file or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub json: String,
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Run the detector every N frames; tracks are carried between, and a lost track makes the
    /// next frame detect [default: the --board profile's detection interval, else 5].
    #[arg(long)]
    pub detect_every: Option<u32>,
    /// Detect on the inference thread, on the scheduled frame itself. By default a scheduled
    /// detection runs on its own thread while the frame is classified on the tracked boxes,
    /// and its faces join the tracks at the next frame.
    #[arg(long)]
    pub detect_inline: bool,
    /// EMA weight of the newest probabilities in a track (1: no smoothing).
    #[arg(long, default_value_t = 0.4)]
    pub smoothing: f32,
    /// On-device instance buffer file: loaded at start if it exists, saved at exit.
    #[arg(long)]
    pub buffer: Option<PathBuf>,
    /// Entries per class the device may add to the buffer (oldest leave first).
    #[arg(long, default_value_t = 256)]
    pub queue_per_class: usize,
    /// Freeze the buffer: no continual pseudo-labelling.
    #[arg(long, conflicts_with = "online_refit")]
    pub no_continual: bool,
    #[command(flatten)]
    pub online: OnlineArgs,
    /// Frames the capture ring holds.
    #[arg(long, default_value_t = 4)]
    pub ring: usize,
    /// Annotated PNG frames (boxes, track ids, labels, confidence bars, FPS) into this folder.
    #[arg(long)]
    pub snapshots: Option<PathBuf>,
    /// With --snapshots: one PNG every N frames.
    #[arg(long, default_value_t = 1)]
    pub snapshot_every: u32,
    /// MJPEG-over-HTTP preview of the annotated frames on --preview-bind:PORT.
    #[arg(long)]
    pub preview: Option<u16>,
    /// Address the preview listens on: loopback by default, since the picture shows faces
    /// (0.0.0.0 for every interface).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1", requires = "preview")]
    pub preview_bind: std::net::IpAddr,
    /// Preview connections served at once; more get 503 (each costs a thread and a JPEG per frame).
    #[arg(long, value_name = "N", default_value_t = sitfer_runtime::display::preview::DEFAULT_MAX_VIEWERS as u16,
          value_parser = clap::value_parser!(u16).range(1..=64), requires = "preview")]
    pub preview_max_viewers: u16,
    /// Draw the annotated frames on a Linux framebuffer (e.g. /dev/fb0).
    #[arg(long)]
    pub framebuffer: Option<PathBuf>,
    /// Also publish each frame's JSON line to an MQTT broker at QoS 1 (mqtt://HOST[:PORT]/TOPIC;
    /// the run summary goes to TOPIC/summary). A broker outage never stalls the run: results
    /// queue (--mqtt-queue) and go out after the reconnect.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<MqttUrl>,
    /// With --mqtt: results held while the broker is away or has not acknowledged them; when
    /// full the oldest is dropped and counted (the summary's mqtt.dropped).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub mqtt_queue: u64,
    /// Serve Prometheus metrics on --metrics-bind:PORT: GET /metrics (fps, per-stage latency
    /// histograms, dropped frames, faces, instance-buffer size and admissions, MQTT counts),
    /// /healthz (liveness) and /readyz (200 once the first frame is processed).
    #[arg(long, value_name = "PORT")]
    pub metrics: Option<u16>,
    /// Address the metrics endpoint listens on (0.0.0.0 for every interface).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1", requires = "metrics")]
    pub metrics_bind: std::net::IpAddr,
    /// A board profile (boards/*.toml name or a path): its camera when no --source is given.
    /// Without --source and --board: /dev/video0 if present, else a built-in demo photo.
    #[arg(long)]
    pub board: Option<String>,
}

pub fn run(mut a: RunArgs) -> Result<()> {
    let board = a
        .board
        .as_deref()
        .map(sitfer_runtime::board::load)
        .transpose()
        .context("--board")?;
    if let Some(b) = &board {
        apply_board_inference(&mut a, b);
        // rustface's pyramid and YuNet's native layers run on rayon's global pool; the profile
        // leaves cores to the capture and sink threads (tract itself runs on one thread).
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(b.inference.threads as usize)
            .build_global()
        {
            log::warn!("inference.threads: {e}");
        }
        log::info!(
            "board {}: detector {:?}, detection every {} frames, {} detector threads",
            b.name,
            a.model.detector_spec(),
            a.detect_every.unwrap_or(1),
            b.inference.threads
        );
    }
    apply_run_defaults(&mut a);
    let camera = match (&a.source, &board) {
        (Some(src), _) if src.starts_with("/dev") => {
            // A V4L2 device: the board's format/size/fps when given, else the device's defaults.
            let mut cfg = board.as_ref().map(|b| b.camera_config()).unwrap_or(CameraConfig {
                device: src.clone(),
                request: FormatRequest {
                    format: None,
                    width: 640,
                    height: 480,
                },
                fps: 0,
            });
            cfg.device = src.clone();
            Some(cfg)
        }
        (None, Some(b)) => Some(b.camera_config()),
        // No source given: the first camera if there is one (the demo photo otherwise, below).
        (None, None) if std::path::Path::new(DEFAULT_CAMERA).exists() => Some(CameraConfig {
            device: DEFAULT_CAMERA.into(),
            request: FormatRequest {
                format: None,
                width: 640,
                height: 480,
            },
            fps: 0,
        }),
        _ => None,
    };
    let screen = screen(&a, board.as_ref())?;
    // A refitted head (online, or saved beside the buffer) reads the model's pooled feature.
    let (bundle, mut model, base) = if a.online.needs_head(a.buffer.as_deref()) {
        let (b, m, h) = bundle_arg::open_with_head(a.model.bundle.as_deref(), a.model.precision)?;
        (b, m, Some(h))
    } else {
        let (b, m) = bundle_arg::open(a.model.bundle.as_deref(), a.model.precision)?;
        (b, m, None)
    };
    model.set_mirror(a.model.mirror);
    let (source, policy): (Box<dyn FrameSource>, _) = if let Some(cfg) = camera {
        let cam = CameraSource::open(cfg).context("opening the camera")?;
        // The camera paces itself: the model always takes the newest frame.
        (Box::new(cam), DropPolicy::DropOldest)
    } else {
        let Some(src) = &a.source else {
            log::info!("no --source and no camera at {DEFAULT_CAMERA}: running on the built-in demo photo");
            let demo = demo_source()?;
            return run_with(a, bundle, (model, base), demo, DropPolicy::Block, screen);
        };
        let file_source = source::open_path(src, a.fps).with_context(|| format!("opening source {}", src.display()))?;
        file_policy(file_source, a.realtime, a.fps)
    };
    run_with(a, bundle, (model, base), source, policy, screen)
}

const DEFAULT_CAMERA: &str = "/dev/video0";

/// `sitfer run`'s detection interval when neither the flags nor a board profile give one: YuNet
/// every 5th frame, the tracker carrying the boxes between (and detecting at once when a track
/// is lost): chosen by `experiments/fps.sh` (docs/results/runtime.md).
pub const RUN_DETECT_EVERY: u32 = 5;

/// What `sitfer run` uses where neither the flags nor a board profile say: YuNet (native engine)
/// every [`RUN_DETECT_EVERY`] frames. Only for `run`: `eval` keeps its own default detector, so
/// its published accuracies stay comparable.
fn apply_run_defaults(a: &mut RunArgs) {
    a.model.detector.get_or_insert_with(DetectorSpec::yunet);
    a.detect_every.get_or_insert(RUN_DETECT_EVERY);
}

/// At the end of a run, how long the MQTT publisher keeps trying to deliver what it still holds.
const MQTT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The profile's detector, detection interval and model precision, where the command line does
/// not say otherwise.
fn apply_board_inference(a: &mut RunArgs, b: &sitfer_runtime::board::BoardProfile) {
    a.model.detector.get_or_insert_with(|| b.detector_spec());
    if a.model.precision.is_none() {
        a.model.precision = b.precision();
    }
    a.detect_every.get_or_insert(b.inference.detection_interval);
}

/// Where annotated frames go: the flags first, else the board profile's display, else nowhere
/// (JSON lines only).
fn screen(a: &RunArgs, board: Option<&sitfer_runtime::board::BoardProfile>) -> Result<Option<Screen>> {
    Ok(if let Some(dir) = &a.snapshots {
        Some(Screen::Snapshots(Snapshots::new(dir, a.snapshot_every.max(1), 100)?))
    } else if let Some(port) = a.preview {
        let addr = std::net::SocketAddr::new(a.preview_bind, port);
        let p = MjpegPreview::bind_with_limit(&addr.to_string(), a.preview_max_viewers.into())
            .with_context(|| format!("--preview on {addr}"))?;
        log::info!("preview on http://{}/", p.local_addr());
        Some(Screen::Preview(p))
    } else if let Some(fb) = &a.framebuffer {
        Some(Screen::Framebuffer(Framebuffer::open(fb)?))
    } else if let Some(b) = board {
        Screen::from_profile(&b.display)?
    } else {
        None
    })
}

/// NASA's public-domain portrait of Eileen Collins (from the scikit-image wheel), so `sitfer run`
/// shows real output on a machine without a camera.
const DEMO_PHOTO: &[u8] = include_bytes!("../../../models/demo/astronaut.png");

fn demo_source() -> Result<Box<dyn FrameSource>> {
    let img = image::load_from_memory(DEMO_PHOTO)
        .context("decoding the built-in demo photo")?
        .to_rgb8();
    let frame = source::Frame {
        index: 0,
        timestamp: std::time::Duration::ZERO,
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    };
    Ok(Box::new(source::SingleImage::from_frame(
        "built-in demo photo (astronaut.png)",
        frame,
    )))
}

fn file_policy(
    file_source: Box<dyn FrameSource>,
    realtime: bool,
    fps: Option<f64>,
) -> (Box<dyn FrameSource>, DropPolicy) {
    if realtime {
        (Box::new(Paced::new(file_source, fps)), DropPolicy::DropOldest)
    } else {
        (file_source, DropPolicy::Block)
    }
}

fn run_with(
    a: RunArgs,
    bundle: sitfer_runtime::bundle::Bundle,
    (model, base): (sitfer_runtime::infer::Model, Option<sitfer_runtime::adapt::Head>),
    source: Box<dyn FrameSource>,
    policy: DropPolicy,
    screen: Option<Screen>,
) -> Result<()> {
    log::info!("source: {}", source.describe());
    let space = space_id(&bundle.manifest);
    let mut buffer = InstanceBuffer::from_seed(&bundle.buffer, a.queue_per_class);
    if let Some(p) = &a.buffer
        && p.exists()
    {
        buffer.load(p, &space)?;
        log::info!(
            "buffer {}: loaded, queued per class {:?}",
            p.display(),
            buffer.queued_counts()
        );
    }
    let mut cfg = a.model.recognizer_config(&bundle);
    cfg.detect_every = a.detect_every.unwrap_or(1).max(1);
    cfg.tracker.smoothing = a.smoothing.clamp(0.01, 1.0);
    cfg.continual = !a.no_continual;
    if a.source.as_deref().is_some_and(|s| a.model.is_crop_folder(s)) {
        cfg.for_unrelated_faces();
    }
    let detector = a.model.detector()?;
    log::info!("faces: {}", detector.name());
    let mut rec = Recognizer::new(&bundle, model, detector, buffer, cfg);
    if !a.detect_inline {
        rec = rec.with_detection_ahead()?;
    }
    if let Some(base) = &base {
        online_args::attach(&mut rec, &a.online, &bundle, base, a.buffer.as_deref())?;
    }

    let sink: Box<dyn Sink> = if a.json == "-" {
        Box::new(JsonLinesSink::new(std::io::BufWriter::new(std::io::stdout()), "stdout"))
    } else {
        let f = std::fs::File::create(&a.json).with_context(|| format!("creating {}", a.json))?;
        Box::new(JsonLinesSink::new(std::io::BufWriter::new(f), &a.json))
    };
    let metrics = match a.metrics {
        Some(port) => {
            let m = Arc::new(RunMetrics::new());
            let server = MetricsServer::bind(std::net::SocketAddr::new(a.metrics_bind, port), m.clone())?;
            log::info!("metrics on http://{}/metrics", server.local_addr());
            Some((m, server))
        }
        None => None,
    };
    let cancel = CancelToken::new();
    {
        let c = cancel.clone();
        ctrlc::set_handler(move || c.cancel()).context("installing the Ctrl-C handler")?;
    }
    let opts = RunOptions {
        ring_capacity: a.ring.max(1),
        policy,
        max_frames: a.max_frames,
        cancel,
        metrics: metrics.as_ref().map(|(m, _)| m.clone()),
        ..RunOptions::default()
    };
    let mut sinks = vec![sink];
    if let Some(s) = screen {
        sinks.push(Box::new(DisplaySink::new(s)));
    }
    let mqtt = match &a.mqtt {
        Some(url) => {
            let p = MqttPublisher::start(PublisherConfig::new(url.clone(), a.mqtt_queue as usize))
                .context("--mqtt: starting the publisher thread")?;
            log::info!(
                "mqtt: publishing to {url} (QoS 1, up to {} results queued)",
                a.mqtt_queue
            );
            sinks.push(Box::new(MqttSink::new(p.outbox())));
            if let Some((m, _)) = &metrics {
                m.watch_mqtt(p.outbox());
            }
            Some(p)
        }
        None => None,
    };
    let result = run_pipeline(source, &mut rec, sinks, &opts);
    // The buffer is saved whatever happened to the stream: what was learnt stays learnt.
    if let Some(p) = &a.buffer
        && !a.no_continual
    {
        rec.buffer().save(p, &space)?;
        log::info!(
            "buffer {}: saved, queued per class {:?} ({} added this run)",
            p.display(),
            rec.buffer().queued_counts(),
            rec.added()
        );
    }
    if let (Some(p), Some(base), Some(l)) = (&a.buffer, &base, rec.online_mut()) {
        online_args::save(l, p, &bundle, base)?;
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // The frames already queued still go out, within the drain time.
            if let Some(p) = mqtt {
                p.close(MQTT_DRAIN);
            }
            return Err(e.into());
        }
    };
    let mut line = serde_json::json!({
        "summary": summary,
        "added_to_buffer": rec.added(),
        "buffer_queued": rec.buffer().queued_counts(),
    });
    if let Some(l) = rec.online_mut() {
        l.finish();
        line["online_refit"] = serde_json::json!(l.stats());
    }
    if let Some(p) = mqtt {
        // The published summary carries the counts as they were when it was queued; the line
        // on stderr the final ones, after the drain.
        line["mqtt"] = serde_json::json!(p.stats());
        p.push(Message {
            summary: true,
            payload: line.to_string().into_bytes(),
        });
        let stats = p.close(MQTT_DRAIN);
        if stats.dropped + stats.undelivered > 0 {
            log::warn!(
                "mqtt: {} results dropped (queue full), {} undelivered at exit",
                stats.dropped,
                stats.undelivered
            );
        }
        line["mqtt"] = serde_json::json!(stats);
    }
    eprintln!("{line}");
    Ok(())
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
