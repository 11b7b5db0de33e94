//! `sitfer adapt` end to end on a tiny exported bundle: the adapted bundle is a new, loadable
//! bundle with the domain's entries, a refitted head and its report; the source bundle is never
//! modified; degenerate footage and `--out` = source are refused with nothing written.

mod common;

use common::{face_folder, sitfer, tiny_bundle};
use sitfer_runtime::adapt::onnx_head::read_head;
use sitfer_runtime::bundle::{Bundle, Precision};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file of a directory with its bytes, to prove it unchanged.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// `sitfer adapt --faces whole-frame ARGS --bundle B --footage F --out O`.
fn adapt(bundle: &Path, footage: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    Command::new(sitfer())
        .args(["adapt", "--faces", "whole-frame"])
        .args(args)
        .arg("--bundle")
        .arg(bundle)
        .arg("--footage")
        .arg(footage)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// The sum of a report's per-class counts.
fn total(by_class: &serde_json::Value) -> u64 {
    by_class
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Relaxed guard: a random tiny model is not confident about anything, so every face is
/// admitted and the guard lets the mechanics run (the guard has its own test).
const RELAXED: [&str; 10] = [
    "--threshold",
    "0",
    "--min-pseudo-labels",
    "1",
    "--max-class-share",
    "1",
    "--min-entropy",
    "0",
    "--vanish-share",
    "1.01",
];

#[test]
fn adapt_writes_a_new_bundle_and_never_touches_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, footage, out) = (tmp.path().join("b"), tmp.path().join("footage"), tmp.path().join("b2"));
    tiny_bundle(&bundle);
    face_folder(&footage, 24);
    let before = snapshot(&bundle);
    let bin = sitfer();
    let refit = ["--refit", "--refit-steps", "30", "--refit-lr", "0.05"];
    let run = adapt(&bundle, &footage, &out, &[&RELAXED[..], &refit[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(snapshot(&bundle), before, "the source bundle changed");

    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["frames"], 24);
    assert_eq!(report["faces"], 24);
    assert_eq!(report["tracks"], 24, "every crop of a folder is its own face");
    let selected: u64 = total(&report["selected"]);
    assert!(selected > 0);
    assert!(report["refit"]["loss_after"].as_f64().unwrap() < report["refit"]["loss_before"].as_f64().unwrap());

    let (src, adapted) = (Bundle::open(&bundle).unwrap(), Bundle::open(&out).unwrap());
    assert_eq!(adapted.buffer.len(), src.buffer.len() + selected as usize);
    assert_eq!(
        adapted.buffer.embeddings[..src.buffer.embeddings.len()],
        src.buffer.embeddings[..]
    );
    assert!(adapted.manifest.provenance["adapted_from"].contains("sha256"));
    let head = |b: &Bundle| {
        let (p, bytes) = b.model_bytes(Precision::Fp32).unwrap();
        read_head(&bytes, &p).unwrap()
    };
    assert_ne!(head(&src), head(&adapted), "--refit changes the classifier head");
    for f in ["adaptation.json", "adaptation-confidence.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    image::open(out.join("adaptation-confidence.png")).unwrap();

    // The adapted bundle runs like any other.
    let eval = Command::new(&bin)
        .args(["run", "--faces", "whole-frame", "--no-continual", "--bundle"])
        .arg(&out)
        .arg("--source")
        .arg(&footage)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    assert_eq!(String::from_utf8_lossy(&eval.stdout).lines().count(), 24);

    // Adapting into the source itself is refused, and it stays as it was.
    let same = adapt(&bundle, &footage, &bundle, &["--threshold", "0"]);
    assert!(!same.status.success());
    assert!(String::from_utf8_lossy(&same.stderr).contains("its source is never modified"));
    assert_eq!(snapshot(&bundle), before);
}

#[test]
fn degenerate_footage_stops_the_adaptation_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, footage, out) = (tmp.path().join("b"), tmp.path().join("footage"), tmp.path().join("b2"));
    tiny_bundle(&bundle);
    // The same face 60 times: every pseudo-label is one class.
    std::fs::create_dir_all(&footage).unwrap();
    let img = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([(x * 5) as u8, (y * 5) as u8, 90]));
    for k in 0..60 {
        img.save(footage.join(format!("f{k:02}.png"))).unwrap();
    }
    let before = snapshot(&bundle);
    let run = adapt(&bundle, &footage, &out, &["--threshold", "0"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("collapse guard") && err.contains("100%"), "{err}");
    assert!(!out.exists(), "nothing may be written when the guard fires");
    assert_eq!(snapshot(&bundle), before);
}

#[test]
fn a_video_is_one_track_and_its_length_is_not_starved_by_a_frame_interval() {
    use sitfer_runtime::source::encode_y4m_444;
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, clip, out) = (tmp.path().join("b"), tmp.path().join("clip.y4m"), tmp.path().join("b2"));
    tiny_bundle(&bundle);
    // 40 frames of one face whose expression drifts: one track (whole-frame box throughout).
    let frames: Vec<Vec<u8>> = (0..40u32)
        .map(|k| {
            let mut rgb = Vec::with_capacity(48 * 48 * 3);
            for y in 0..48u32 {
                for x in 0..48u32 {
                    let v = (128.0 + 100.0 * ((x as f32 * 0.2 + k as f32 * 0.3).sin() * (y as f32 * 0.15).cos())) as u8;
                    rgb.extend([v, v, v]);
                }
            }
            rgb
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    std::fs::write(&clip, encode_y4m_444(48, 48, (25, 1), &refs)).unwrap();
    // A random model's embedding says nothing about who is in the frame: link by boxes.
    let video = ["--stable-frames", "1", "--per-track", "3", "--min-identity-cos", "-1"];
    let run = adapt(&bundle, &clip, &out, &[&RELAXED[..], &video[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (report["frames"].as_u64(), report["tracks"].as_u64()),
        (Some(40), Some(1))
    );
    // Offline there is no frame interval: every frame whose embedding is no near-duplicate of
    // the track's earlier admissions is admitted, and a 40-face track may give one entry per 4
    // faces (10), beyond --per-track 3.
    let admitted: u64 = total(&report["admitted"]);
    let selected: u64 = total(&report["selected"]);
    assert!(selected >= 1 && selected <= admitted.min(10), "{report}");
    // With `sitfer run`'s interval (15 frames) the same clip admits at most frames 0, 15 and 30,
    // and never more than without it.
    let out2 = tmp.path().join("b3");
    let live = [&RELAXED[..], &video[..], &["--min-interval", "15"][..]].concat();
    let run = adapt(&bundle, &clip, &out2, &live);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let live_admitted = total(&report["admitted"]);
    assert!((1..=3).contains(&live_admitted), "{report}");
    assert!(admitted >= live_admitted, "{admitted} < {live_admitted}");
}
