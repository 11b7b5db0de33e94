//! Round trip and every documented corruption of a bundle directory (the model bytes here are
//! opaque: `Bundle::open` verifies hashes, not ONNX; model shapes are checked by the trainer's
//! export tests through `sitfer_contract::infer`).

use super::manifest::{MANIFEST_FILE, MODEL_FP32_FILE};
use super::*;
use std::path::Path;

fn settings(dim: usize) -> BundleSettings {
    let mut s = super::fixture::settings(48, dim);
    s.provenance.insert("test".to_string(), "yes".to_string());
    s
}

fn prototypes(dim: usize) -> TextPrototypes {
    let rows: Vec<Vec<f32>> = (0..7)
        .map(|c| (0..dim).map(|i| ((c * dim + i) as f32).sin()).collect())
        .collect();
    TextPrototypes::from_rows(&rows).unwrap()
}

fn buffer(dim: usize) -> SeedBuffer {
    let n = 14;
    SeedBuffer {
        dim,
        embeddings: (0..n * dim).map(|i| (i as f32 * 0.1).cos()).collect(),
        labels: (0..n).map(|i| (i % 7) as u8).collect(),
    }
}

fn write(dir: &Path) -> Manifest {
    let p = prototypes(16);
    let b = buffer(16);
    write_bundle(
        dir,
        &settings(16),
        BundleContents {
            model_fp32: Some(b"not really onnx"),
            model_int8: None,
            prototypes: Some(&p),
            buffer: &b,
        },
    )
    .unwrap()
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn open_err(dir: &Path) -> String {
    Bundle::open(dir).unwrap_err().to_string()
}

#[test]
fn round_trip_and_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let m = write(&dir);
    let b = Bundle::open(&dir).unwrap();
    assert_eq!(b.manifest, m);
    assert_eq!(b.prototypes.as_ref().unwrap(), &prototypes(16));
    assert_eq!(b.buffer, buffer(16));
    assert_eq!(b.buffer.class_counts(), [2; 7]);
    assert_eq!(b.model_bytes(Precision::Fp32).unwrap().1, b"not really onnx");
    // Rewriting replaces the directory and leaves nothing beside it.
    write(&dir);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("b")]);
}

#[cfg(unix)]
#[test]
fn leftovers_of_killed_writers_are_removed_and_a_live_writers_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write(&dir);
    // No process has a pid this large (Linux caps pids at 2^22); the parent (cargo) is alive.
    let live = format!(".b.tmp-{}", std::os::unix::process::parent_id());
    for d in [
        ".b.tmp-999999999",
        ".b.old-999999999",
        live.as_str(),
        ".other.tmp-999999999",
    ] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
        std::fs::write(tmp.path().join(d).join("model-fp32.onnx"), b"half").unwrap();
    }
    write(&dir);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![live.clone(), ".other.tmp-999999999".to_string(), "b".to_string()]
    );
}

#[test]
fn no_prototypes_requires_zero_text_weight() {
    let tmp = tempfile::tempdir().unwrap();
    let b = buffer(16);
    let contents = BundleContents {
        model_fp32: Some(b"m"),
        model_int8: None,
        prototypes: None,
        buffer: &b,
    };
    let e = write_bundle(&tmp.path().join("x"), &settings(16), contents)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fusion.weights.text"), "{e}");
    let mut s = settings(16);
    s.fusion.weights.text = 0.0;
    write_bundle(&tmp.path().join("x"), &s, contents).unwrap();
    assert!(Bundle::open(&tmp.path().join("x")).unwrap().prototypes.is_none());
}

#[test]
fn truncated_model_is_a_size_error_naming_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    std::fs::write(tmp.path().join(MODEL_FP32_FILE), b"not really").unwrap();
    let e = open_err(tmp.path());
    assert!(e.contains(MODEL_FP32_FILE) && e.contains("models.fp32.bytes"), "{e}");
}

#[test]
fn hash_mismatch_names_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    std::fs::write(tmp.path().join(MODEL_FP32_FILE), b"not really 0nnx").unwrap();
    let e = Bundle::open(tmp.path()).unwrap_err();
    assert!(matches!(e, BundleError::HashMismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(MODEL_FP32_FILE) && e.contains("models.fp32.sha256"), "{e}");
}

#[test]
fn unknown_version() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    edit_manifest(tmp.path(), |v| v["format_version"] = 99.into());
    let e = open_err(tmp.path());
    assert!(
        e.contains(MANIFEST_FILE) && e.contains("format_version") && e.contains("99"),
        "{e}"
    );
}

#[test]
fn missing_and_extra_fields() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    edit_manifest(tmp.path(), |v| {
        v.as_object_mut().unwrap().remove("embedding_dim");
    });
    let e = open_err(tmp.path());
    assert!(
        e.contains(MANIFEST_FILE) && e.contains("missing field `embedding_dim`"),
        "{e}"
    );
    write(tmp.path());
    edit_manifest(tmp.path(), |v| v["fusion"]["temperature"] = 1.into());
    let e = open_err(tmp.path());
    assert!(e.contains("unknown field `temperature`"), "{e}");
}

#[test]
fn fusion_mode_and_aggregate_round_trip_and_older_manifests_keep_the_old_fusion() {
    use crate::fusion::{Aggregate, FuseMode};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(4);
    s.fusion.mode = FuseMode::RawScores;
    s.fusion.aggregate = Aggregate::TopKMean(5);
    write_bundle(
        tmp.path(),
        &s,
        BundleContents {
            model_fp32: Some(b"not really onnx"),
            model_int8: None,
            prototypes: Some(&prototypes(4)),
            buffer: &buffer(4),
        },
    )
    .unwrap();
    let f = Bundle::open(tmp.path()).unwrap().manifest.fusion;
    assert_eq!((f.mode, f.aggregate), (FuseMode::RawScores, Aggregate::TopKMean(5)));
    // A manifest written before the fields existed: the runtime then fused probabilities with
    // the nearest entry per class, and still does.
    edit_manifest(tmp.path(), |v| {
        let f = v["fusion"].as_object_mut().unwrap();
        f.remove("mode");
        f.remove("aggregate");
    });
    let f = Bundle::open(tmp.path()).unwrap().manifest.fusion;
    assert_eq!((f.mode, f.aggregate), (FuseMode::Probabilities, Aggregate::Max));
    assert_eq!((f.tau_t, f.threshold), (0.1, 0.9), "the other fields as written");
}

#[test]
fn tau_sem_round_trips_is_left_out_at_one_and_must_be_positive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(4);
    s.fusion.tau_sem = 1.7;
    let contents = BundleContents {
        model_fp32: Some(b"not really onnx"),
        model_int8: None,
        prototypes: Some(&prototypes(4)),
        buffer: &buffer(4),
    };
    write_bundle(tmp.path(), &s, contents).unwrap();
    assert_eq!(Bundle::open(tmp.path()).unwrap().manifest.fusion.tau_sem, 1.7);
    // At 1 the field is not written, so an uncalibrated bundle reads as before it existed (and
    // older runtimes, which refuse unknown fields, still open it); missing, it means 1.
    s.fusion.tau_sem = 1.0;
    write_bundle(tmp.path(), &s, contents).unwrap();
    let text = std::fs::read_to_string(tmp.path().join(MANIFEST_FILE)).unwrap();
    assert!(!text.contains("tau_sem"), "{text}");
    assert_eq!(Bundle::open(tmp.path()).unwrap().manifest.fusion.tau_sem, 1.0);
    edit_manifest(tmp.path(), |v| v["fusion"]["tau_sem"] = serde_json::json!(0.0));
    let e = open_err(tmp.path());
    assert!(e.contains("fusion.tau_sem") && e.contains("manifest.json"), "{e}");
}

#[test]
fn paths_may_not_leave_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    write(&dir);
    std::fs::write(tmp.path().join("outside.onnx"), b"x").unwrap();
    for bad in ["../outside.onnx", "/etc/passwd", "./model-fp32.onnx", "a\\b", ""] {
        edit_manifest(&dir, |v| v["models"]["fp32"]["path"] = bad.into());
        let e = Bundle::open(&dir).unwrap_err();
        assert!(matches!(e, BundleError::PathEscapes { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("models.fp32.path"), "{e}");
        write(&dir);
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.path().join("outside.onnx"), dir.join("link.onnx")).unwrap();
        edit_manifest(&dir, |v| v["models"]["fp32"]["path"] = "link.onnx".into());
        assert!(matches!(
            Bundle::open(&dir).unwrap_err(),
            BundleError::PathEscapes { .. }
        ));
    }
}

#[test]
fn absurd_sizes_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    edit_manifest(tmp.path(), |v| v["buffer"]["bytes"] = (1u64 << 40).into());
    let e = Bundle::open(tmp.path()).unwrap_err();
    assert!(matches!(e, BundleError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("buffer.bytes"), "{e}");
    write(tmp.path());
    edit_manifest(tmp.path(), |v| v["embedding_dim"] = 1_000_000.into());
    assert!(open_err(tmp.path()).contains("embedding_dim"));
}

#[test]
fn buffer_header_claiming_too_many_entries_is_refused() {
    let huge = vec![0u8; super::seed_buffer::MAX_BUFFER_ENTRIES + 1];
    let bytes = super::tensors::encode(vec![
        ("labels", safetensors::Dtype::U8, vec![huge.len()], huge),
        ("embeddings", safetensors::Dtype::F32, vec![0, 16], vec![]),
    ])
    .unwrap();
    let e = SeedBuffer::from_bytes(&bytes, 16, Path::new("buffer.safetensors"), "buffer").unwrap_err();
    assert!(
        e.to_string().contains("buffer.safetensors") && e.to_string().contains("labels"),
        "{e}"
    );
}

#[test]
fn class_order_must_be_canonical() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    edit_manifest(tmp.path(), |v| {
        let c = v["classes"].as_array_mut().unwrap();
        c.swap(0, 1);
    });
    let e = open_err(tmp.path());
    assert!(e.contains(MANIFEST_FILE) && e.contains("`classes`"), "{e}");
}

#[test]
fn prototype_shape_must_match_embedding_dim() {
    let tmp = tempfile::tempdir().unwrap();
    let p = prototypes(8);
    let b = buffer(16);
    let e = write_bundle(
        tmp.path(),
        &settings(16),
        BundleContents {
            model_fp32: Some(b"m"),
            model_int8: None,
            prototypes: Some(&p),
            buffer: &b,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("prototypes"), "{e}");
}

#[test]
fn an_oversized_manifest_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    let mut bytes = std::fs::read(tmp.path().join(MANIFEST_FILE)).unwrap();
    bytes.resize(2 << 20, b' ');
    std::fs::write(tmp.path().join(MANIFEST_FILE), bytes).unwrap();
    let e = Bundle::open(tmp.path()).unwrap_err();
    assert!(matches!(e, BundleError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains(MANIFEST_FILE), "{e}");
}

#[test]
fn manifest_bytes_parse_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let m = write(tmp.path());
    let bytes = std::fs::read(tmp.path().join(MANIFEST_FILE)).unwrap();
    assert_eq!(Manifest::from_bytes(&bytes, Path::new("m.json")).unwrap(), m);
    let e = Manifest::from_bytes(b"{\"format_version\": 1", Path::new("m.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.json") && e.contains("line 1"), "{e}");
}

/// What a writer killed between its two renames leaves: the target missing, the complete
/// previous bundle moved aside, the new one half-written under its temporary name.
#[test]
fn a_replacement_killed_between_renames_still_opens_the_previous_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let m = write(&dir);
    std::fs::rename(&dir, tmp.path().join(".b.old-4242")).unwrap();
    std::fs::create_dir(tmp.path().join(".b.tmp-4242")).unwrap();
    std::fs::write(tmp.path().join(".b.tmp-4242/buffer.safetensors"), b"torn").unwrap();
    let b = Bundle::open(&dir).unwrap();
    assert_eq!(b.manifest, m);
    assert_eq!(b.model_bytes(Precision::Fp32).unwrap().1, b"not really onnx");
    // The next write puts a bundle back in place; that one is opened from then on.
    write(&dir);
    assert_eq!(Bundle::open(&dir).unwrap().dir, dir);
    // Nothing set aside and nothing in place: the error names the missing manifest.
    let e = open_err(&tmp.path().join("never-written"));
    assert!(e.contains("never-written") && e.contains(MANIFEST_FILE), "{e}");
}

/// The packed file of a fresh bundle, and the temporary directory holding both.
fn packed() -> (tempfile::TempDir, std::path::PathBuf, Manifest) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let m = write(&dir);
    let file = tmp.path().join("b.sitfer");
    let s = pack(&dir, &file).unwrap();
    assert_eq!(s.files[0].0, MANIFEST_FILE, "the manifest comes first");
    assert_eq!(s.files.len(), 4);
    (tmp, file, m)
}

#[test]
fn a_packed_bundle_opens_like_its_directory_and_unpacks_atomically() {
    let (tmp, file, m) = packed();
    let b = Bundle::open(&file).unwrap();
    assert_eq!(b.manifest, m);
    let from_dir = Bundle::open(&tmp.path().join("b")).unwrap();
    assert_eq!(b.buffer.embeddings, from_dir.buffer.embeddings);
    let (_, bytes) = b.model_bytes(Precision::Fp32).unwrap();
    assert_eq!(bytes, b"not really onnx");
    // The private copy lives as long as the bundle (and its clones) do.
    let private = b.dir.clone();
    let clone = b.clone();
    drop(b);
    assert!(private.is_dir());
    drop(clone);
    assert!(!private.exists(), "{} left behind", private.display());

    let out = tmp.path().join("unpacked");
    unpack(&file, &out).unwrap();
    assert_eq!(Bundle::open(&out).unwrap().manifest, m);
    let err = unpack(&file, &out).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    // Packing is deterministic: the same directory gives the same bytes.
    let again = tmp.path().join("again.sitfer");
    pack(&out, &again).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn a_corrupted_packed_bundle_names_the_file_and_the_entry() {
    let (tmp, file, _) = packed();
    let bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(15).position(|w| w == b"not really onnx").unwrap();

    // A flipped byte inside the model: the reader's hash check, naming file!entry and field.
    let mut flipped = bytes.clone();
    flipped[at] ^= 1;
    let f = tmp.path().join("flipped.sitfer");
    std::fs::write(&f, &flipped).unwrap();
    let err = open_err(&f);
    assert!(
        err.contains("flipped.sitfer!model-fp32.onnx") && err.contains("models.fp32.sha256"),
        "{err}"
    );

    // Cut inside the model's data.
    let f = tmp.path().join("cut.sitfer");
    std::fs::write(&f, &bytes[..at + 4]).unwrap();
    let err = open_err(&f);
    assert!(err.contains("cut.sitfer") && err.contains("model-fp32.onnx"), "{err}");

    // Not a tar at all.
    let f = tmp.path().join("noise.sitfer");
    std::fs::write(&f, vec![0x5a; 1536]).unwrap();
    assert!(open_err(&f).contains("noise.sitfer"));

    // Unpacking a broken file leaves no directory behind.
    let out = tmp.path().join("never");
    assert!(unpack(&tmp.path().join("cut.sitfer"), &out).is_err());
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name().to_string_lossy().contains(".unpack-") })
            .count(),
        0
    );
}

/// A tar whose single entry has a raw `name` and `kind` (the tar crate refuses to write `..`
/// through its own API, as it should).
fn raw_tar(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn packed_entries_must_be_plain_files_inside_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, kind, what) in [
        ("../evil", tar::EntryType::Regular, "plain relative"),
        ("/etc/evil", tar::EntryType::Regular, "plain relative"),
        ("link", tar::EntryType::Symlink, "regular file"),
        ("model-fp32.onnx", tar::EntryType::Regular, "no `manifest.json`"),
    ] {
        let f = tmp.path().join("x.sitfer");
        std::fs::write(&f, raw_tar(name, kind, b"x")).unwrap();
        let err = open_err(&f);
        assert!(err.contains("x.sitfer") && err.contains(what), "{name}: {err}");
        assert!(!tmp.path().join("evil").exists());
    }
}

/// Anchor faces have the head's input width, not `embedding_dim`: written, listed with their
/// hash, read back with their own width; a bundle without them writes no `anchors` field, so
/// runtimes that predate it still read it; a tampered anchor file is refused.
#[test]
fn anchors_round_trip_and_are_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, b) = (prototypes(16), buffer(16));
    let contents = BundleContents {
        model_fp32: Some(b"not really onnx"),
        model_int8: None,
        prototypes: Some(&p),
        buffer: &b,
    };
    let anchors = SeedBuffer {
        dim: 24,
        embeddings: (0..3 * 24).map(|i| i as f32 * 0.5).collect(),
        labels: vec![0, 3, 6],
    };
    let dir = tmp.path().join("a");
    let m = super::write_bundle_with_anchors(&dir, &settings(16), contents, Some(&anchors), &[]).unwrap();
    assert_eq!(m.anchors.as_ref().unwrap().path, super::manifest::ANCHORS_FILE);
    assert_eq!(Bundle::open(&dir).unwrap().anchors, Some(anchors));
    std::fs::write(dir.join(super::manifest::ANCHORS_FILE), b"tampered").unwrap();
    assert!(open_err(&dir).contains("anchors"), "{}", open_err(&dir));
    let plain = tmp.path().join("p");
    write(&plain);
    let text = std::fs::read_to_string(plain.join(MANIFEST_FILE)).unwrap();
    assert!(!text.contains("anchors"), "{text}");
    assert_eq!(Bundle::open(&plain).unwrap().anchors, None);
}
