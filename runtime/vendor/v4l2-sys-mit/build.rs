//! The published crate runs bindgen (and so libclang) on `wrapper.h` here. This copy ships the
//! output of that step for the targets sitfer builds for, and picks the one for the target being
//! built; `scripts/regen-v4l2-bindings.sh` at the sitfer repository root regenerates them.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Target architectures (with `target_os = "linux"`, `target_env = "gnu"`) that have bindings in
/// `bindings/`.
const SUPPORTED: &[&str] = &["x86_64", "aarch64"];

fn main() {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    if os != "linux" || target_env != "gnu" || !SUPPORTED.contains(&arch.as_str()) {
        eprintln!(
            "error: v4l2-sys-mit (vendored by sitfer in runtime/vendor/v4l2-sys-mit) has no \
             pre-generated V4L2 bindings for target `{}` (arch `{}`, os `{}`, env `{}`): it has them \
             for {}-unknown-linux-gnu only. Generate them with scripts/regen-v4l2-bindings.sh (needs \
             libclang and the target's kernel headers) and add the arch to SUPPORTED in build.rs.",
            target,
            arch,
            os,
            target_env,
            SUPPORTED.join("/")
        );
        std::process::exit(1);
    }

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest_dir.join("bindings").join(format!("{arch}-linux-gnu.rs"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", src.display());

    // Same place and name as the published build script writes bindgen's output, so src/lib.rs
    // is the published one unchanged.
    let out_path = PathBuf::from(env::var("OUT_DIR").unwrap()).join("v4l2_bindings.rs");
    fs::copy(&src, &out_path)
        .unwrap_or_else(|e| panic!("v4l2-sys-mit: copying {} to {}: {e}", src.display(), out_path.display()));
}
