//! The online refit's head file through the commands: `sitfer run --online-refit --buffer FILE`
//! writes it beside the buffer, `sitfer eval --buffer FILE` reads it, a head file of another
//! bundle is refused by name, and `sitfer buffer reset` removes it.

use image::GenericImageView;
use sitfer_runtime::online::{HeadIdentity, HeadState, head_path};
use std::path::{Path, PathBuf};

mod common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo photo's face, as a crop folder of one class.
fn faces(root: &Path) -> PathBuf {
    let happy = root.join("data/happy");
    std::fs::create_dir_all(&happy).unwrap();
    let photo = image::open(repo().join("models/demo/astronaut.png")).unwrap();
    for (i, dx) in [0u32, 4, 8].iter().enumerate() {
        let face = image::imageops::grayscale(&photo.view(162 + dx, 56, 118, 118).to_image());
        face.save(happy.join(format!("face-{i}.png"))).unwrap();
    }
    happy
}

fn sitfer(args: &[&str], paths: &[&Path]) -> (bool, String) {
    let out = common::run_sitfer(|c| {
        c.args(args).env("RUST_LOG", "info");
        for p in paths {
            c.arg(p);
        }
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn the_head_file_lives_beside_the_buffer_and_belongs_to_its_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let happy = faces(tmp.path());
    let buffer = tmp.path().join("device.safetensors");
    let head = head_path(&buffer);
    let run = ["run", "--faces", "whole-frame", "--online-refit", "--json", "/dev/null"];
    let (ok, log) = sitfer(&[&run[..], &["--source"]].concat(), &[&happy]);
    assert!(ok, "{log}");
    assert!(!head.exists(), "no --buffer, no head file");
    let (ok, log) = sitfer(
        &[&run[..], &["--buffer"]].concat(),
        &[&buffer, Path::new("--source"), &happy],
    );
    assert!(ok, "{log}");
    assert!(buffer.exists() && head.exists(), "{log}");
    // Read back by eval (no refit yet on three faces: the pool only).
    let (ok, log) = sitfer(
        &["eval", "--faces", "whole-frame", "--data"],
        &[&tmp.path().join("data"), Path::new("--buffer"), &buffer],
    );
    assert!(ok, "{log}");
    assert!(log.contains("online head"), "{log}");

    // A head file written for another bundle: refused, naming the file and the remedy.
    let other = HeadIdentity {
        space: "0000:384".into(),
        base: "0000".into(),
    };
    HeadState {
        head: None,
        pool: Vec::new(),
        refits: 0,
    }
    .save(&head, 256, &other)
    .unwrap();
    let (ok, log) = sitfer(
        &[&run[..], &["--buffer"]].concat(),
        &[&buffer, Path::new("--source"), &happy],
    );
    assert!(!ok, "{log}");
    assert!(
        log.contains("belongs to another bundle") && log.contains("device.head.safetensors"),
        "{log}"
    );
    let (ok, log) = sitfer(
        &["eval", "--faces", "whole-frame", "--data"],
        &[&tmp.path().join("data"), Path::new("--buffer"), &buffer],
    );
    assert!(!ok && log.contains("belongs to another bundle"), "{log}");

    // Reset forgets both.
    let (ok, log) = sitfer(&["buffer", "reset", "--buffer"], &[&buffer]);
    assert!(ok, "{log}");
    assert!(buffer.exists() && !head.exists(), "{log}");
}
