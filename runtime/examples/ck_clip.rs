//! Footage as a fixed camera records it: the CK+ crops of the given subjects, in name order,
//! written as one Y4M clip (48x48, every crop filling the frame: the same framing for every
//! person). With `--faces whole-frame` every frame has the same box, so a boxes-only tracker
//! makes one track of all of them; `sitfer adapt --footage CLIP` then shows whether tracks join
//! different people and whether a long track starves adaptation (docs/results/runtime.md, "One
//! track per person").
//!
//!   cargo run --release -p sitfer-runtime --example ck_clip -- ../shared/data/ckplus48 OUT.y4m S011,S138,...

use sitfer_runtime::source::encode_y4m_444;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, out, subjects] = args.as_slice() else {
        return Err("usage: ck_clip CKPLUS_DIR OUT.y4m SUBJECT[,SUBJECT...]".into());
    };
    let subjects: Vec<&str> = subjects.split(',').collect();
    let mut files: Vec<PathBuf> = Vec::new();
    for class in std::fs::read_dir(data)? {
        let class = class?.path();
        if class.is_dir() {
            files.extend(
                sitfer_runtime::image_files::image_files(&class, false)?
                    .into_iter()
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy();
                        subjects.iter().any(|s| name.starts_with(&format!("{s}_")))
                    }),
            );
        }
    }
    // Subject by subject in the order given, each subject's frames in name order.
    let rank = |p: &PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let s = subjects
            .iter()
            .position(|s| name.starts_with(&format!("{s}_")))
            .unwrap();
        (s, name)
    };
    files.sort_by_key(rank);
    let mut frames = Vec::new();
    for p in &files {
        let img = image::open(p)?.to_rgb8();
        if img.dimensions() != (48, 48) {
            return Err(format!("{}: expected a 48x48 crop", p.display()).into());
        }
        frames.push(img.into_raw());
    }
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    std::fs::write(out, encode_y4m_444(48, 48, (25, 1), &refs))?;
    println!("{out}: {} frames of {} subjects", files.len(), subjects.len());
    Ok(())
}
