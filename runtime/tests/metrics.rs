//! `sitfer run --metrics`: the endpoint scraped over HTTP while a pipeline runs.

use sitfer_runtime::detect::BBox;
use sitfer_runtime::metrics::{CONTENT_TYPE, MetricsServer, RunMetrics};
use sitfer_runtime::pipeline::{
    DropPolicy, FaceResult, FrameProcessor, FrameResult, PipelineError, RunOptions, StageTimes, run_pipeline,
};
use sitfer_runtime::source::{Frame, FrameSource, SourceError};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: sitfer\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// A sample's value, `series` with its labels as the text format writes them.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Frames released one by one by the test (`go`), like a camera that has dropped 3 frames of
/// its own before each one it hands over.
struct Stepped {
    go: Receiver<()>,
    next: u64,
}

impl FrameSource for Stepped {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.go.recv().is_err() {
            return Ok(None);
        }
        let f = Frame {
            index: self.next,
            timestamp: Duration::from_millis(self.next * 33),
            width: 4,
            height: 4,
            rgb: vec![0; 48],
        };
        self.next += 1;
        Ok(Some(f))
    }
    fn nominal_fps(&self) -> Option<f64> {
        Some(30.0)
    }
    fn describe(&self) -> String {
        "stepped frames".into()
    }
    fn dropped(&self) -> u64 {
        3 * self.next
    }
}

/// Two faces per frame, the first admitted to a buffer that grows by one per frame; 20 ms of
/// "detection" so the histogram has something to place.
struct TwoFaces {
    done: SyncSender<u64>,
    added: usize,
}

impl FrameProcessor for TwoFaces {
    fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError> {
        self.added += 1;
        let face = |track, added| FaceResult {
            track,
            bbox: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 2.0,
                y2: 2.0,
            },
            score: 1.0,
            label: "happy",
            confidence: 1.0,
            p_hat: [0.0; 7],
            p_smooth: [0.0; 7],
            p_sem: [0.0; 7],
            p_text: None,
            p_ins: [0.0; 7],
            added,
        };
        let _ = self.done.send(frame.index);
        Ok(FrameResult {
            frame: frame.index,
            time: 0.0,
            width: 4,
            height: 4,
            detected: true,
            faces: vec![face(1, true), face(2, false)],
            ms: StageTimes {
                detect: 20.0,
                crop: 0.1,
                infer: 3.0,
                fuse: 0.2,
            },
        })
    }
    fn buffer_entries(&self) -> Option<(usize, usize)> {
        Some((224, self.added))
    }
}

#[test]
fn scraped_during_a_run_metrics_follow_the_frames_and_readiness_the_first_one() {
    let metrics = Arc::new(RunMetrics::new());
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    // Before any frame: alive, not ready.
    assert_eq!(get(addr, "/healthz").0, 200);
    assert_eq!(get(addr, "/readyz").0, 503);

    let (go_tx, go_rx) = sync_channel(0);
    let (done_tx, done_rx) = sync_channel(16);
    let opts = RunOptions {
        policy: DropPolicy::Block,
        metrics: Some(metrics.clone()),
        ..RunOptions::default()
    };
    let run = std::thread::spawn(move || {
        let source = Box::new(Stepped { go: go_rx, next: 0 });
        let mut p = TwoFaces {
            done: done_tx,
            added: 0,
        };
        run_pipeline(source, &mut p, Vec::new(), &opts)
    });
    for i in 0..3 {
        go_tx.send(()).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), i);
    }
    // The processor has returned frame 2; the runner records it right after.
    std::thread::sleep(Duration::from_millis(100));
    let (status, head, text) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains(CONTENT_TYPE), "{head}");
    assert_eq!(get(addr, "/readyz").0, 200);
    assert_eq!(value(&text, "sitfer_frames_processed_total"), 3.0);
    assert_eq!(value(&text, "sitfer_faces"), 2.0);
    assert_eq!(value(&text, "sitfer_faces_total"), 6.0);
    assert_eq!(value(&text, "sitfer_buffer_admissions_total"), 3.0);
    assert_eq!(value(&text, "sitfer_buffer_entries{kind=\"seed\"}"), 224.0);
    assert_eq!(value(&text, "sitfer_buffer_entries{kind=\"device\"}"), 3.0);
    // The camera's own drops (3 per frame handed over), apart from the pipeline's (none: Block).
    assert_eq!(value(&text, "sitfer_frames_dropped_total{where=\"camera\"}"), 9.0);
    assert_eq!(value(&text, "sitfer_frames_dropped_total{where=\"pipeline\"}"), 0.0);
    assert_eq!(
        value(&text, "sitfer_stage_seconds_bucket{stage=\"detect\",le=\"0.01\"}"),
        0.0
    );
    assert_eq!(
        value(&text, "sitfer_stage_seconds_bucket{stage=\"detect\",le=\"0.025\"}"),
        3.0
    );
    assert!((value(&text, "sitfer_stage_seconds_sum{stage=\"infer\"}") - 0.009).abs() < 1e-9);
    assert!(value(&text, "sitfer_fps") > 0.0);
    assert!(text.contains("# TYPE sitfer_stage_seconds histogram"));
    assert!(text.contains("# HELP sitfer_fps "));

    drop(go_tx);
    let summary = run.join().unwrap().unwrap();
    assert_eq!(summary.processed, 3);
    assert_eq!(summary.dropped, 9);
    drop(server);
    assert!(TcpStream::connect(addr).is_err(), "the endpoint outlived its server");
}
