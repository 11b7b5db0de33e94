use super::*;
use std::path::PathBuf;

fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards")
}

const GOOD: &str = r#"
name = "test-board"
target = "aarch64-unknown-linux-gnu"
min_glibc = "2.31"

[camera]
device = "/dev/video2"
format = "mjpeg"
width = 1280
height = 720
fps = 15

[inference]
threads = 2
detection_interval = 4
detector = "rustface"

[display]
output = "headless"
"#;

fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn every_profile_in_boards_loads_and_is_built_in() {
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(boards_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let profile = load_path(&path).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(profile.name, stem, "{}: name must match the file name", path.display());
            assert_eq!(load(&stem).unwrap(), profile, "built-in {stem} differs from the file");
            on_disk.push(stem);
        }
    }
    on_disk.sort();
    let mut built_in = builtin_names();
    built_in.sort();
    assert_eq!(on_disk, built_in, "boards/*.toml and the embedded list disagree");
    for required in ["jetson-orin-nano", "jetson-nano", "raspberry-pi-5", "x86_64-dev"] {
        assert!(built_in.iter().any(|n| n == required), "{required}");
    }
}

#[test]
fn a_full_profile_maps_to_camera_and_detector_settings() {
    let p = BoardProfile::from_toml("t.toml", GOOD).unwrap();
    let cam = p.camera_config();
    assert_eq!(cam.device, PathBuf::from("/dev/video2"));
    assert_eq!(cam.request.format, Some(crate::camera::PixelFormat::Mjpeg));
    assert_eq!((cam.request.width, cam.request.height, cam.fps), (1280, 720, 15));
    assert_eq!(p.detector_spec(), crate::detect::DetectorSpec::Rustface);
    assert_eq!(p.glibc(), Some((2, 31)));
    assert_eq!(p.display.output, DisplayOutput::Headless);
    assert_eq!(p.display.http_bind, "127.0.0.1", "preview stays on loopback by default");
    assert_eq!(p.display.framebuffer, PathBuf::from("/dev/fb0"));
    // No precision key: the bundle's preferred one.
    assert_eq!(p.precision(), None);
    let half = with(
        "detector = \"rustface\"",
        "detector = \"rustface\"\nprecision = \"fp16\"",
    );
    let p = BoardProfile::from_toml("t.toml", &half).unwrap();
    assert_eq!(p.precision(), Some(crate::bundle::Precision::Fp16));
}

#[test]
fn unknown_keys_are_errors_naming_file_and_key() {
    let err = BoardProfile::from_toml("boards/x.toml", &with("fps = 15", "fps = 15\nexposure = 3")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("boards/x.toml: "), "{msg}");
    assert!(msg.contains("exposure"), "{msg}");
    let err = BoardProfile::from_toml("x.toml", &format!("{GOOD}\n[extras]\na = 1\n")).unwrap_err();
    assert!(err.to_string().contains("extras"), "{err}");
}

#[test]
fn missing_keys_and_wrong_types_are_errors() {
    let err = BoardProfile::from_toml("x.toml", &with("fps = 15\n", "")).unwrap_err();
    assert!(err.to_string().contains("fps"), "{err}");
    let err = BoardProfile::from_toml("x.toml", &with("width = 1280", "width = \"wide\"")).unwrap_err();
    assert!(err.to_string().contains("width"), "{err}");
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    let cases = [
        (
            with("aarch64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu"),
            "`target`",
        ),
        (with("\"2.31\"", "\"2.x\""), "`min_glibc`"),
        (with("\"2.31\"", "\"2.12\""), "glibc 2.17"),
        (with("min_glibc = \"2.31\"\n", ""), "`min_glibc` = (missing)"),
        (
            with("aarch64-unknown-linux-gnu", "aarch64-unknown-linux-musl"),
            "musl targets",
        ),
        (with("\"/dev/video2\"", "\"video2\""), "`camera.device`"),
        (with("\"mjpeg\"", "\"h264\""), "`camera.format` = \"h264\""),
        (with("width = 1280", "width = 8"), "`camera.width` = 8"),
        (
            with("\"mjpeg\"", "\"yuyv\"").replace("width = 1280", "width = 641"),
            "must be even",
        ),
        (with("height = 720", "height = 99999"), "`camera.height`"),
        (with("fps = 15", "fps = 0"), "`camera.fps` = 0"),
        (with("threads = 2", "threads = 0"), "`inference.threads` = 0"),
        (
            with("detection_interval = 4", "detection_interval = 0"),
            "`inference.detection_interval`",
        ),
        (with("\"rustface\"", "\"yolo\""), "`inference.detector` = \"yolo\""),
        (
            with(
                "detector = \"rustface\"",
                "detector = \"rustface\"\nprecision = \"bf16\"",
            ),
            "`inference.precision` = \"bf16\"",
        ),
        (with("\"headless\"", "\"hdmi\""), "output"),
        (
            with("output = \"headless\"", "output = \"png\"\nsnapshot_every = 0"),
            "`display.snapshot_every`",
        ),
        (
            with("output = \"headless\"", "output = \"http\"\nhttp_port = 0"),
            "`display.http_port`",
        ),
        (
            with("output = \"headless\"", "output = \"http\"\nhttp_bind = \"everywhere\""),
            "`display.http_bind`",
        ),
        (
            with("output = \"headless\"", "output = \"http\"\nhttp_max_viewers = 0"),
            "`display.http_max_viewers`",
        ),
        (with("\"test-board\"", "\"my board\""), "`name`"),
    ];
    for (text, want) in cases {
        let err = BoardProfile::from_toml("boards/x.toml", &text).expect_err(want);
        let msg = err.to_string();
        assert!(msg.starts_with("boards/x.toml: "), "{msg}");
        assert!(msg.contains(want), "want {want:?} in: {msg}");
    }
    let musl = with("aarch64-unknown-linux-gnu", "aarch64-unknown-linux-musl").replace("min_glibc = \"2.31\"\n", "");
    assert_eq!(BoardProfile::from_toml("x.toml", &musl).unwrap().glibc(), None);
    let onnx = with("\"rustface\"", "\"onnx:models/detectors/face.onnx\"");
    assert!(BoardProfile::from_toml("x.toml", &onnx).is_ok());
}

#[test]
fn names_and_paths_resolve() {
    let err = load("jetson-orin").unwrap_err().to_string();
    assert!(
        err.contains("unknown board `jetson-orin`") && err.contains("jetson-orin-nano"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(load(path.to_str().unwrap()).unwrap().name, "test-board");
    let err = load(dir.path().join("absent.toml").to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.toml"), "{err}");
}

#[test]
fn an_oversized_or_endless_profile_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = GOOD.to_string();
    text.push_str(&"# padding\n".repeat((super::MAX_PROFILE_BYTES / 10) as usize + 1));
    std::fs::write(&big, &text).unwrap();
    let err = load(big.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, BoardError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("big.toml"), "{err}");
    // A device that never ends: only the limit is read.
    #[cfg(unix)]
    {
        let err = super::load_path(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            err.contains("/dev/zero") && err.contains("not a board profile"),
            "{err}"
        );
    }
}
