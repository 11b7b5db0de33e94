//! `sitfer run --mqtt` against a real broker: mosquitto started on 127.0.0.1 by the test.
//!
//! Without a mosquitto binary (`apt-get install mosquitto`) the broker tests say so on stderr and
//! pass without checking anything; CI installs it (.ci/run). The throughput figure of
//! docs/results/runtime.md: `cargo test --release -p sitfer-runtime --test mqtt -- --ignored
//! --nocapture throughput`.

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use sitfer_runtime::detect::BBox;
use sitfer_runtime::mqtt::{Message, MqttPublisher, MqttSink, MqttStats, MqttUrl, PublisherConfig};
use sitfer_runtime::pipeline::{
    DropPolicy, FaceResult, FrameProcessor, FrameResult, PipelineError, RunOptions, Sink, StageTimes, run_pipeline,
};
use sitfer_runtime::source::{Frame, FrameSource, SourceError};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists()).or_else(|| {
        let out = Command::new("sh").args(["-c", "command -v mosquitto"]).output().ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!path.is_empty()).then(|| PathBuf::from(path))
    })
}

macro_rules! broker_or_skip {
    ($name:literal) => {
        match mosquitto_binary() {
            Some(bin) => bin,
            None => {
                eprintln!(
                    "SKIPPED {}: no mosquitto binary (apt-get install mosquitto); the MQTT sink was NOT tested against a broker",
                    $name
                );
                return;
            }
        }
    };
}

/// A mosquitto process on 127.0.0.1:`port`, with persistence so that the test subscriber's
/// session (and the messages queued for it) survive a restart, as a production broker's would.
struct Broker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(bin: PathBuf) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to its own user, which must still write its
        // persistence file and log here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut b = Broker {
            bin,
            dir,
            port,
            child: None,
        };
        b.spawn();
        b
    }

    fn conf(&self) -> PathBuf {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nlog_dest file {}/broker.log\n",
                self.port,
                self.dir.path().display(),
                self.dir.path().display()
            ),
        )
        .unwrap();
        conf
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait for the exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we started and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            c.wait().unwrap();
        }
    }

    fn url(&self, topic: &str) -> MqttUrl {
        format!("mqtt://127.0.0.1:{}/{topic}", self.port).parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// (topic, payload) of each message received, in arrival order.
type Received = Vec<(String, Vec<u8>)>;

/// A QoS 1 subscriber to `TOPIC/#` with a persistent session: what the fleet's consumer sees.
struct Subscriber {
    got: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    fn start(port: u16, topic: &str) -> Subscriber {
        let mut opts = MqttOptions::new(format!("sitfer-test-sub-{port}"), "127.0.0.1", port);
        opts.set_clean_session(false).set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut conn) = Client::new(opts, 16);
        client.subscribe(format!("{topic}/#"), QoS::AtLeastOnce).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let thread = {
            let (got, stop) = (got.clone(), stop.clone());
            std::thread::spawn(move || {
                let _client = client;
                while !stop.load(Ordering::SeqCst) {
                    match conn.recv_timeout(Duration::from_millis(50)) {
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            let _ = subscribed_tx.send(());
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            got.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()));
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        // The broker is restarting: rumqttc reconnects on the next poll.
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        subscribed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no SUBACK from the broker");
        Subscriber {
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `done` holds for what was received, or `timeout`.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&[(String, Vec<u8>)]) -> bool) -> Received {
        let t = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if done(&got) || t.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` 2x2 frames, `every` apart (a camera-like pace), calling `at(index)` before each.
struct Paced<F: FnMut(u64) + Send> {
    next: u64,
    n: u64,
    every: Duration,
    at: F,
}

impl<F: FnMut(u64) + Send> FrameSource for Paced<F> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next >= self.n {
            return Ok(None);
        }
        (self.at)(self.next);
        std::thread::sleep(self.every);
        let f = Frame {
            index: self.next,
            timestamp: Duration::from_millis(self.next),
            width: 2,
            height: 2,
            rgb: vec![0; 12],
        };
        self.next += 1;
        Ok(Some(f))
    }
    fn nominal_fps(&self) -> Option<f64> {
        None
    }
    fn describe(&self) -> String {
        "paced test frames".into()
    }
}

/// One face per frame, so each message is the size of a real frame line (~1 KB).
struct OneFace;

fn frame_result(frame: u64) -> FrameResult {
    let p = [1.0 / 7.0; 7];
    FrameResult {
        frame,
        time: frame as f64 / 30.0,
        width: 640,
        height: 480,
        detected: true,
        faces: vec![FaceResult {
            track: 1,
            bbox: BBox {
                x1: 100.0,
                y1: 80.0,
                x2: 200.0,
                y2: 180.0,
            },
            score: 0.9,
            label: "neutral",
            confidence: p[6],
            p_hat: p,
            p_smooth: p,
            p_sem: p,
            p_text: Some(p),
            p_ins: p,
            added: false,
        }],
        ms: StageTimes::default(),
    }
}

impl FrameProcessor for OneFace {
    fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError> {
        Ok(frame_result(frame.index))
    }
}

fn publisher(url: MqttUrl, queue: usize) -> MqttPublisher {
    let mut cfg = PublisherConfig::new(url, queue);
    // Reconnect quickly: the test's outages last a second.
    cfg.backoff = (Duration::from_millis(50), Duration::from_millis(400));
    MqttPublisher::start(cfg).unwrap()
}

/// Frame index → times received, checking every frame message is a frame line as JSON.
fn frames_received(got: &[(String, Vec<u8>)], topic: &str) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (t, payload) in got.iter().filter(|(t, _)| t == topic) {
        let v: serde_json::Value = serde_json::from_slice(payload)
            .unwrap_or_else(|e| panic!("{t}: not JSON ({e}): {:?}", String::from_utf8_lossy(payload)));
        let frame = v["frame"]
            .as_u64()
            .unwrap_or_else(|| panic!("{t}: no frame index in {v}"));
        assert!(v["faces"][0]["p_hat"].as_array().is_some_and(|p| p.len() == 7), "{v}");
        *seen.entry(frame).or_insert(0) += 1;
    }
    seen
}

#[test]
fn every_frame_arrives_once_as_json_with_the_summary() {
    let bin = broker_or_skip!("every_frame_arrives_once_as_json_with_the_summary");
    let broker = Broker::start(bin);
    let sub = Subscriber::start(broker.port, "cam/once");
    let p = publisher(broker.url("cam/once"), 1000);
    let n = 300;
    let source = Box::new(Paced {
        next: 0,
        n,
        every: Duration::from_micros(500),
        at: |_| {},
    });
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(MqttSink::new(p.outbox()))];
    let summary = run_pipeline(source, &mut OneFace, sinks, &RunOptions::default()).unwrap();
    assert_eq!(summary.processed, n);
    p.push(Message {
        summary: true,
        payload: serde_json::to_vec(&serde_json::json!({ "summary": summary })).unwrap(),
    });
    let stats = p.close(Duration::from_secs(10));
    assert_eq!(
        stats,
        MqttStats {
            accepted: n + 1,
            delivered: n + 1,
            ..MqttStats::default()
        }
    );
    let got = sub.wait_for(Duration::from_secs(10), |g| g.len() > n as usize);
    let frames = frames_received(&got, "cam/once");
    assert_eq!(frames.len() as u64, n, "frames missing: got {} of {n}", frames.len());
    assert!(
        frames.values().all(|&k| k == 1),
        "a frame arrived twice without an outage"
    );
    let summaries: Vec<_> = got.iter().filter(|(t, _)| t == "cam/once/summary").collect();
    assert_eq!(summaries.len(), 1);
    let s: serde_json::Value = serde_json::from_slice(&summaries[0].1).unwrap();
    assert_eq!(s["summary"]["processed"], n);
}

#[test]
fn sitfer_run_publishes_every_frame_and_its_summary() {
    let bin = broker_or_skip!("sitfer_run_publishes_every_frame_and_its_summary");
    let broker = Broker::start(bin);
    let sub = Subscriber::start(broker.port, "cli/cam0");
    let tmp = tempfile::tempdir().unwrap();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo/astronaut.png");
    for i in 0..3 {
        std::fs::copy(&demo, tmp.path().join(format!("{i:03}.png"))).unwrap();
    }
    let url = broker.url("cli/cam0").to_string();
    let out = common::run_sitfer(|c| {
        c.args(["run", "--json", "/dev/null", "--mqtt", &url, "--source"])
            .arg(tmp.path())
            .env("RUST_LOG", "warn");
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = sub.wait_for(Duration::from_secs(10), |g| g.len() >= 4);
    let frames = frames_received(&got, "cli/cam0");
    assert_eq!(frames.keys().copied().collect::<Vec<_>>(), [0, 1, 2], "{stderr}");
    let summary: Vec<serde_json::Value> = got
        .iter()
        .filter(|(t, _)| t == "cli/cam0/summary")
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["summary"]["processed"], 3);
    // The line on stderr has the final counts: every frame and the summary acknowledged.
    let last: serde_json::Value =
        serde_json::from_str(stderr.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(last["mqtt"]["delivered"], 4, "{last}");
}

#[test]
fn a_broker_restart_mid_run_loses_nothing_within_the_queue() {
    let bin = broker_or_skip!("a_broker_restart_mid_run_loses_nothing_within_the_queue");
    let broker = Arc::new(Mutex::new(Broker::start(bin)));
    let port = broker.lock().unwrap().port;
    let sub = Subscriber::start(port, "cam/restart");
    let p = publisher(broker.lock().unwrap().url("cam/restart"), 5000);
    let n = 1500;
    let restarted = Arc::new(AtomicBool::new(false));
    let source = {
        let (broker, restarted) = (broker.clone(), restarted.clone());
        Box::new(Paced {
            next: 0,
            n,
            every: Duration::from_millis(1),
            // A third of the way in, the broker goes away for ~0.5 s; the stream does not stop.
            at: move |i| {
                if i == n / 3 {
                    let (broker, restarted) = (broker.clone(), restarted.clone());
                    std::thread::spawn(move || {
                        let mut b = broker.lock().unwrap();
                        b.stop();
                        std::thread::sleep(Duration::from_millis(500));
                        b.spawn();
                        restarted.store(true, Ordering::SeqCst);
                    });
                }
            },
        })
    };
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(MqttSink::new(p.outbox()))];
    let t = Instant::now();
    let summary = run_pipeline(source, &mut OneFace, sinks, &RunOptions::default()).unwrap();
    let run_secs = t.elapsed().as_secs_f64();
    assert_eq!(summary.processed, n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !restarted.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the broker did not come back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = p.close(Duration::from_secs(15));
    assert!(stats.reconnects >= 1, "the publisher never saw the outage: {stats:?}");
    assert_eq!((stats.dropped, stats.undelivered), (0, 0), "{stats:?}");
    assert_eq!(stats.accepted, n);
    let got = sub.wait_for(Duration::from_secs(15), |g| {
        frames_received(g, "cam/restart").len() as u64 >= n
    });
    let frames = frames_received(&got, "cam/restart");
    let missing: Vec<u64> = (0..n).filter(|i| !frames.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} frames lost across the restart (first {:?}); broker log:\n{}",
        missing.len(),
        missing.first(),
        broker.lock().unwrap().log()
    );
    // At least once: only messages in flight when the broker went down may come twice.
    let twice = frames.values().filter(|&&k| k > 1).count();
    assert!(twice <= 64, "{twice} duplicates, more than the in-flight window");
    // 1.5 s of frames at 1 ms: the outage must not have held the camera loop up.
    assert!(
        run_secs < 6.0,
        "the run took {run_secs:.1} s: the broker outage stalled it"
    );
    eprintln!("restart: {n} frames, all delivered, {twice} twice, {stats:?}");
}

#[test]
fn an_outage_longer_than_the_queue_loses_exactly_the_counted_oldest() {
    let bin = broker_or_skip!("an_outage_longer_than_the_queue_loses_exactly_the_counted_oldest");
    let mut broker = Broker::start(bin);
    let sub = Subscriber::start(broker.port, "cam/bound");
    let queue = 50;
    let p = publisher(broker.url("cam/bound"), queue);
    let mut sink = MqttSink::new(p.outbox());
    let frame = Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: 1,
        height: 1,
        rgb: vec![0; 3],
    };
    let mut push = |range: std::ops::Range<u64>| {
        let mut slowest = Duration::ZERO;
        for i in range {
            let t = Instant::now();
            sink.consume(&frame, &frame_result(i)).unwrap();
            slowest = slowest.max(t.elapsed());
        }
        slowest
    };
    let wait = |what: &str, ok: &dyn Fn(MqttStats) -> bool| {
        let t = Instant::now();
        while !ok(p.stats()) {
            assert!(t.elapsed() < Duration::from_secs(15), "{what}: {:?}", p.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    push(0..40);
    wait("first 40 delivered", &|s| s.delivered == 40);
    broker.stop();
    wait("outage noticed", &|s| s.reconnects == 1);
    // 500 results while the broker is down: the queue keeps the newest 50.
    let slowest = push(40..540);
    assert!(
        slowest < Duration::from_millis(50),
        "a push waited {slowest:?} on a dead broker"
    );
    assert_eq!(p.stats().dropped, 450);
    broker.spawn();
    wait("the queued 50 delivered after the restart", &|s| s.delivered == 90);
    push(540..580);
    let stats = p.close(Duration::from_secs(15));
    assert_eq!(
        (stats.accepted, stats.dropped, stats.undelivered),
        (580, 450, 0),
        "{stats:?}"
    );
    let got = sub.wait_for(Duration::from_secs(15), |g| {
        frames_received(g, "cam/bound").len() >= 130
    });
    let frames = frames_received(&got, "cam/bound");
    let want: Vec<u64> = (0..40).chain(490..580).collect();
    assert_eq!(frames.keys().copied().collect::<Vec<_>>(), want);
}

#[test]
fn without_a_broker_the_run_keeps_its_pace_and_counts_the_drops() {
    // No mosquitto needed: nothing listens on this port.
    let url: MqttUrl = format!("mqtt://127.0.0.1:{}/nobody", free_port()).parse().unwrap();
    let p = publisher(url, 10);
    let n = 2000;
    let source = Box::new(Paced {
        next: 0,
        n,
        every: Duration::ZERO,
        at: |_| {},
    });
    let opts = RunOptions {
        policy: DropPolicy::Block,
        ..RunOptions::default()
    };
    let t = Instant::now();
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(MqttSink::new(p.outbox()))];
    let summary = run_pipeline(source, &mut OneFace, sinks, &opts).unwrap();
    assert_eq!(summary.processed, n);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{:?} for {n} frames",
        t.elapsed()
    );
    let stats = p.close(Duration::ZERO);
    assert_eq!(
        (stats.accepted, stats.delivered, stats.dropped, stats.undelivered),
        (n, 0, n - 10, 10)
    );
}

/// Messages per second delivered at QoS 1 with nothing lost: a burst of frame lines through the
/// sink as fast as the publisher and broker take them, every one received by the subscriber.
#[test]
#[ignore = "benchmark: cargo test --release -p sitfer-runtime --test mqtt -- --ignored --nocapture"]
fn throughput() {
    let bin = broker_or_skip!("throughput");
    let broker = Broker::start(bin);
    let sub = Subscriber::start(broker.port, "cam/bench");
    let n: u64 = 20_000;
    let p = publisher(broker.url("cam/bench"), n as usize);
    let size = serde_json::to_vec(&frame_result(0)).unwrap().len();
    let mut sink = MqttSink::new(p.outbox());
    let frame = Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: 1,
        height: 1,
        rgb: vec![0; 3],
    };
    let t = Instant::now();
    for i in 0..n {
        sink.consume(&frame, &frame_result(i)).unwrap();
    }
    let stats = p.close(Duration::from_secs(120));
    let acked = t.elapsed().as_secs_f64();
    let got = sub.wait_for(Duration::from_secs(60), |g| g.len() as u64 >= n);
    let received = t.elapsed().as_secs_f64();
    let frames = frames_received(&got, "cam/bench");
    assert_eq!(frames.len() as u64, n, "{stats:?}");
    assert_eq!((stats.dropped, stats.undelivered), (0, 0));
    eprintln!(
        "mqtt throughput: {n} messages of {size} bytes at QoS 1, all received: {:.0} msg/s acknowledged, \
         {:.0} msg/s received by the subscriber ({stats:?})",
        n as f64 / acked,
        n as f64 / received
    );
}
