//! Embeds `models/default/` (the default bundle) into the `sitfer` binary when it exists at
//! build time, so that `sitfer run` works on a fresh checkout without a `--bundle`.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let models = manifest_dir.join("../models");
    // A directory is scanned recursively: adding or re-exporting the bundle rebuilds.
    println!("cargo:rerun-if-changed={}", models.display());
    let dir = models.join("default");
    let mut out =
        String::from("/// (file name, bytes) of the bundle embedded at build time; empty when there was none.\n");
    out.push_str("pub static DEFAULT_BUNDLE: &[(&str, &[u8])] = &[\n");
    if dir.join("manifest.json").is_file() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("models/default is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for p in files {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let abs = p.canonicalize().expect("bundle file path");
            out.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                abs.display().to_string()
            ));
        }
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("default_bundle.rs");
    std::fs::write(dest, out).expect("writing OUT_DIR/default_bundle.rs");
}
