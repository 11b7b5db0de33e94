//! Palette-colour TIFFs and unreadable files through the commands that read user images:
//! folder sources (`sitfer run`, `sitfer adapt`) and `sitfer eval`.

use image::GenericImageView;
use sitfer_runtime::source::open_path;
use std::path::{Path, PathBuf};

mod common;

/// An uncompressed little-endian TIFF, 8-bit palette indices, whose ColorMap is a grey ramp
/// (index i is grey i): the same picture as the 8-bit grey `luma`.
fn grey_palette_tiff(luma: &image::GrayImage) -> Vec<u8> {
    let (w, h) = luma.dimensions();
    let entries = 10u32;
    let map_at = 8 + 2 + 12 * entries + 4;
    let pixels_at = map_at + 2 * 3 * 256;
    let mut f = b"II".to_vec();
    f.extend(42u16.to_le_bytes());
    f.extend(8u32.to_le_bytes());
    f.extend((entries as u16).to_le_bytes());
    let mut entry = |tag: u16, ty: u16, count: u32, value: u32| {
        f.extend(tag.to_le_bytes());
        f.extend(ty.to_le_bytes());
        f.extend(count.to_le_bytes());
        f.extend(value.to_le_bytes()); // a SHORT sits in the low bytes, little-endian
    };
    entry(256, 4, 1, w);
    entry(257, 4, 1, h);
    entry(258, 3, 1, 8);
    entry(259, 3, 1, 1);
    entry(262, 3, 1, 3); // RGBPalette
    entry(273, 4, 1, pixels_at);
    entry(277, 3, 1, 1);
    entry(278, 4, 1, h);
    entry(279, 4, 1, w * h);
    entry(320, 3, 3 * 256, map_at);
    f.extend(0u32.to_le_bytes());
    for _ in 0..3 {
        for i in 0..256u16 {
            f.extend((i << 8 | i).to_le_bytes());
        }
    }
    f.extend(luma.as_raw());
    f
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo photo's face (the box `sitfer run` finds), in grey.
fn face() -> image::GrayImage {
    let photo = image::open(repo().join("models/demo/astronaut.png")).unwrap();
    image::imageops::grayscale(&photo.view(166, 56, 118, 118).to_image())
}

/// `happy/`: the face as PNG, as a palette TIFF, and a file that is no image.
fn dataset(root: &Path) -> PathBuf {
    let happy = root.join("happy");
    std::fs::create_dir_all(&happy).unwrap();
    let face = face();
    face.save(happy.join("a-face.png")).unwrap();
    std::fs::write(happy.join("b-face-palette.tif"), grey_palette_tiff(&face)).unwrap();
    std::fs::write(happy.join("c-broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    happy
}

#[test]
fn a_folder_source_reads_a_palette_tiff_as_its_picture_and_names_a_broken_file() {
    let tmp = tempfile::tempdir().unwrap();
    let happy = dataset(tmp.path());
    let mut src = open_path(&happy, None).unwrap();
    let png = src.next_frame().unwrap().unwrap();
    let tif = src.next_frame().unwrap().unwrap();
    assert_eq!((tif.width, tif.height), (png.width, png.height));
    assert!(
        tif.rgb == png.rgb,
        "the palette TIFF decoded to another picture than the PNG"
    );
    let e = src.next_frame().unwrap_err().to_string();
    assert!(e.contains("c-broken.png"), "{e}");
}

fn eval(data: &Path, extra: &[&str]) -> std::process::Output {
    common::run_sitfer(|c| {
        c.args(["eval", "--faces", "whole-frame", "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn");
    })
}

#[test]
fn eval_scores_what_it_can_read_and_lists_what_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let out = eval(tmp.path(), &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("(2 images, 1 unreadable skipped"), "{stdout}");
    assert!(stdout.contains("unreadable: 1 images skipped"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains("c-broken.png")),
        "the skipped file is not listed:\n{stdout}"
    );
    assert!(
        stderr.contains("c-broken.png") && stderr.contains("skipped"),
        "{stderr}"
    );
    // The PNG and the palette TIFF are the same face: one p_sem accuracy, either 0, 0.5 or 1;
    // 0.5 would mean the two decoded differently.
    let acc = stdout
        .lines()
        .find_map(|l| l.strip_prefix("| p_sem (classifier) | "))
        .and_then(|l| l.trim_end_matches(" |").parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no p_sem line:\n{stdout}"));
    assert!(acc == 0.0 || acc == 1.0, "PNG and palette TIFF disagree: {acc}");

    let strict = eval(tmp.path(), &["--fail-on-unreadable"]);
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success());
    assert!(
        stderr.contains("--fail-on-unreadable") && stderr.contains("c-broken.png"),
        "{stderr}"
    );
}

#[test]
fn eval_predictions_give_one_row_per_scored_face_with_every_sources_class() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let csv = tmp.path().join("predictions.csv");
    let out = eval(tmp.path(), &["--predictions", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["file", "truth", "p_sem", "p_text", "p_ins", "p_hat"]);
    // The unreadable file is skipped here as in the accuracy.
    assert_eq!(rows.len(), 3, "{text}");
    for (row, name) in rows[1..].iter().zip(["a-face.png", "b-face-palette.tif"]) {
        assert!(row[0].ends_with(name) && row[1] == "happy", "{row:?}");
        // The default bundle has prototypes: every source names a class.
        assert!(row[2..].iter().all(|c| !c.is_empty()), "{row:?}");
    }
    // The same face twice (PNG and palette TIFF): the same classes.
    assert_eq!(rows[1][2..], rows[2][2..]);
}
