//! Fuzz targets of the runtime's parsers: the bundle manifest, the bundle directory, the bundle's
//! tensor files, ONNX models, Y4M streams, the instance-buffer file and board profiles.

use sitfer_runtime::board::BoardProfile;
use sitfer_runtime::bundle::{
    Bundle, BundleContents, BundleSettings, FileEntry, Manifest, Models, SeedBuffer, TextPrototypes, fixture,
    write_bundle,
};
use sitfer_runtime::infer::Model;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::source::{FrameSource, Y4mReader};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A target's name (its `fuzz_targets/` file and `fuzz/seeds/` folder) and function.
pub type Target = (&'static str, fn(&[u8]));

/// Every runtime target by name, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("bundle_manifest", bundle_manifest),
    ("bundle_open", bundle_open),
    ("bundle_tensors", bundle_tensors),
    ("onnx_model", onnx_model),
    ("y4m", y4m),
    ("instance_buffer", instance_buffer),
    ("board_profile", board_profile),
];

/// Embedding width of the fixtures: small, so that seeds stay small.
pub const DIM: usize = 4;
/// Input side the fixture manifest declares (the ONNX seed reads `[N, 3, SIZE, SIZE]`).
pub const SIZE: u32 = 8;
/// Embedding-space id the instance-buffer target loads against.
pub const SPACE: &str = "fuzz:4";
/// Frames a Y4M input may yield before the target stops reading (bounds the time per input).
const MAX_FRAMES: usize = 4;

pub fn fixture_settings() -> BundleSettings {
    let mut s = fixture::settings(SIZE, DIM);
    s.provenance.insert("fuzz".to_string(), "fixture".to_string());
    s
}

pub fn fixture_buffer() -> SeedBuffer {
    SeedBuffer {
        dim: DIM,
        embeddings: (0..7 * DIM).map(|i| (i as f32 * 0.3).sin()).collect(),
        labels: (0..7).collect(),
    }
}

pub fn fixture_prototypes() -> TextPrototypes {
    let rows: Vec<Vec<f32>> = (0..7)
        .map(|c| (0..DIM).map(|i| ((c * DIM + i) as f32).cos()).collect())
        .collect();
    TextPrototypes::from_rows(&rows).expect("7 rows of DIM")
}

/// A bundle directory written by the real writer (the model bytes are opaque to `Bundle::open`),
/// with a file outside it and a symlink inside pointing there, so that mutated manifests reach
/// the path-confinement checks.
pub fn write_fixture_bundle(dir: &Path) {
    let (p, b) = (fixture_prototypes(), fixture_buffer());
    write_bundle(
        dir,
        &fixture_settings(),
        BundleContents {
            model_fp32: Some(b"model bytes"),
            model_int8: Some(b"int8 model bytes"),
            prototypes: Some(&p),
            buffer: &b,
        },
    )
    .expect("fixture bundle");
    let outside = dir.with_extension("outside");
    std::fs::write(&outside, b"outside the bundle").expect("outside file");
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(&outside, dir.join("link"));
    }
}

/// The manifest the ONNX target checks models against.
fn onnx_manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| {
        let s = fixture_settings();
        let entry = FileEntry {
            path: "model-fp32.onnx".into(),
            bytes: 0,
            sha256: "0".repeat(64),
        };
        Manifest {
            format_version: sitfer_runtime::bundle::manifest::FORMAT_VERSION,
            classes: sitfer_runtime::ALL_EXPRESSIONS
                .iter()
                .map(|e| e.name().to_string())
                .collect(),
            input: s.input,
            embedding_dim: DIM,
            fusion: s.fusion,
            models: Models {
                fp32: Some(entry.clone()),
                int8: None,
            },
            prototypes: None,
            buffer: entry,
            anchors: None,
            provenance: s.provenance,
        }
    })
}

/// A per-thread scratch directory: targets that read from disk get their input written there.
struct Scratch {
    _tmp: tempfile::TempDir,
    bundle: PathBuf,
    buffer_file: PathBuf,
}

thread_local! {
    static SCRATCH: Scratch = {
        let tmp = tempfile::tempdir().expect("scratch directory");
        let bundle = tmp.path().join("bundle");
        write_fixture_bundle(&bundle);
        let buffer_file = tmp.path().join("buffer.safetensors");
        Scratch { bundle, buffer_file, _tmp: tmp }
    };
}

/// Manifest bytes alone: JSON, version, fields and values.
pub fn bundle_manifest(data: &[u8]) {
    let _ = Manifest::from_bytes(data, Path::new("manifest.json"));
}

/// A manifest over a real bundle directory: paths, sizes and hashes, then the tensor files.
pub fn bundle_open(data: &[u8]) {
    SCRATCH.with(|s| {
        std::fs::write(s.bundle.join("manifest.json"), data).expect("scratch write");
        if let Ok(b) = Bundle::open(&s.bundle) {
            assert_eq!(b.buffer.embeddings.len(), b.buffer.len() * b.manifest.embedding_dim);
        }
    });
}

/// A safetensors file read as the seed buffer or the prototypes. The first byte picks which
/// (bit 0) and the manifest's embedding dimension (the next three bits: 1..=8).
pub fn bundle_tensors(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let dim = 1 + ((pick >> 1) & 7) as usize;
    let file = Path::new("tensors.safetensors");
    if pick & 1 == 0 {
        if let Ok(b) = SeedBuffer::from_bytes(bytes, dim, file, "buffer") {
            assert_eq!(b.embeddings.len(), b.len() * dim);
            let _ = b.class_counts();
        }
    } else if let Ok(p) = TextPrototypes::from_bytes(bytes, dim, file, "prototypes") {
        assert_eq!(p.data.len(), 7 * dim);
    }
}

/// ONNX bytes handed to tract and checked against a manifest.
pub fn onnx_model(data: &[u8]) {
    let _ = Model::from_onnx(data, Path::new("model.onnx"), "models.fp32", onnx_manifest());
}

/// A Y4M stream: the header, then up to a few frames.
pub fn y4m(data: &[u8]) {
    let Ok(mut r) = Y4mReader::new(Cursor::new(data), Path::new("fuzz.y4m")) else {
        return;
    };
    for _ in 0..MAX_FRAMES {
        match r.next_frame() {
            Ok(Some(f)) => assert_eq!(f.rgb.len(), f.width as usize * f.height as usize * 3),
            _ => break,
        }
    }
}

/// The device's instance-buffer file.
pub fn instance_buffer(data: &[u8]) {
    SCRATCH.with(|s| {
        std::fs::write(&s.buffer_file, data).expect("scratch write");
        let mut b = InstanceBuffer::new(DIM, 8);
        if b.load(&s.buffer_file, SPACE).is_ok() {
            assert!(b.queued_counts().iter().all(|&n| n <= 8));
        }
    });
}

/// A board profile (`--board FILE.toml`); `load_path` refuses files that are not UTF-8.
pub fn board_profile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = BoardProfile::from_toml("fuzz.toml", text);
    }
}
