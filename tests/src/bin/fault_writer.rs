//! `sitfer-fault-writer`: a test-only child process for `tests/tests/faults.rs`. It writes one
//! kind of state (instance buffer, bundle or checkpoint) through the real writers, version after
//! version, so the test can SIGKILL it at random points and check that the previous version
//! still loads; or, under `--fsize-limit`, it makes one write fail the way a full disk does.
//!
//! `sitfer-fault-writer buffer|bundle|checkpoint PATH [--fsize-limit BYTES]`
//!
//! Every version `v` is self-describing (all values equal `v`), so a reader can tell a complete
//! version from a mix of two. A new writer continues after the version on disk, as a restarted
//! device or a resumed training run does. Prints `saved v` after each completed write.

#[allow(dead_code)] // only `config` is needed here; the dataset writer serves the tests
#[path = "../../../trainer/tests/common/mod.rs"]
mod common;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use sitfer_runtime::bundle::{
    Bundle, BundleContents, BundleSettings, FusionWeights, SeedBuffer, fixture, write_bundle,
};
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_trainer::train::checkpoint::{self, TrainState, Which};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Embedding width of the buffers written; with `ENTRIES` per class a version is ~200 KB, so a
/// write takes long enough for random kills to land inside it.
const DIM: usize = 64;
const ENTRIES: usize = 120;
const SPACE: &str = "fault-writer:64";
/// Bytes of the opaque model file of each bundle version and of each checkpoint tensor.
const BIG: usize = 1 << 20;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, path) = match &args[..] {
        [k, p, ..] => (k.as_str(), PathBuf::from(p)),
        _ => bail!("usage: sitfer-fault-writer buffer|bundle|checkpoint PATH [--fsize-limit BYTES]"),
    };
    let fsize_limit = match &args[2..] {
        [] => None,
        [flag, n] if flag == "--fsize-limit" => Some(n.parse::<u64>().context("--fsize-limit")?),
        other => bail!("unexpected arguments {other:?}"),
    };
    let mut v = current_version(kind, &path)?.map_or(0, |v| v + 1);
    if let Some(limit) = fsize_limit {
        write_version(kind, &path, v)?;
        println!("saved {v}");
        limit_file_size(limit)?;
        // Exit 3 with the writer's own message: the test checks it names the file.
        if let Err(e) = write_version(kind, &path, v + 1) {
            eprintln!("{e:#}");
            std::process::exit(3);
        }
        bail!("the write under a {limit}-byte file size limit succeeded");
    }
    loop {
        write_version(kind, &path, v)?;
        println!("saved {v}");
        std::io::stdout().flush()?;
        v += 1;
    }
}

/// Makes writes past `limit` bytes fail with EFBIG, as on a full disk (without privileges:
/// a tiny tmpfs needs root, and root ignores read-only permissions).
fn limit_file_size(limit: u64) -> Result<()> {
    // SAFETY: plain libc calls with valid arguments; ignoring SIGXFSZ turns the signal the
    // kernel sends at the limit into the EFBIG error the writer must handle.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn write_version(kind: &str, path: &Path, v: u64) -> Result<()> {
    match kind {
        "buffer" => buffer_version(v)
            .save(path, SPACE)
            .with_context(|| format!("saving buffer version {v}")),
        "bundle" => {
            let seed = SeedBuffer {
                dim: DIM,
                embeddings: vec![v as f32; 7 * DIM],
                labels: (0..7).collect(),
            };
            let model = vec![v as u8; BIG];
            write_bundle(
                path,
                &bundle_settings(v),
                BundleContents {
                    model_fp32: Some(&model),
                    model_int8: None,
                    prototypes: None,
                    buffer: &seed,
                },
            )
            .map(|_| ())
            .with_context(|| format!("writing bundle version {v}"))
        }
        "checkpoint" => {
            let device = Device::Cpu;
            let t = Tensor::full(v as f32, BIG / 4, &device)?;
            let weights = HashMap::from([("w".to_string(), t.clone())]);
            let optimizer = HashMap::from([("m".to_string(), t)]);
            let state = TrainState {
                version: checkpoint::CHECKPOINT_VERSION,
                step: v,
                optimizer_updates: v,
                best_step: Some(v - v % 2),
                best_val_accuracy: 0.0,
                elapsed_seconds: 0.0,
                config: common::config(Path::new("/nonexistent"), 1_000_000),
                history: Vec::new(),
            };
            checkpoint::save(path, &state, &weights, &optimizer, v.is_multiple_of(2))
                .map(|_| ())
                .with_context(|| format!("saving checkpoint version {v}"))
        }
        other => bail!("unknown kind `{other}` (buffer, bundle, checkpoint)"),
    }
}

fn buffer_version(v: u64) -> InstanceBuffer {
    let mut b = InstanceBuffer::new(DIM, 4096);
    for c in 0..7 {
        for _ in 0..ENTRIES {
            b.push(c, &[v as f32; DIM]);
        }
    }
    b
}

fn bundle_settings(v: u64) -> BundleSettings {
    let mut s = fixture::settings(48, DIM);
    // These bundles have no prototypes.
    s.fusion.weights = FusionWeights {
        sem: 0.5,
        text: 0.0,
        ins: 0.5,
    };
    s.provenance.insert("version".to_string(), v.to_string());
    s
}

/// The version on disk, read back with the normal reader (`None` when nothing was written yet).
fn current_version(kind: &str, path: &Path) -> Result<Option<u64>> {
    Ok(match kind {
        "buffer" if path.exists() => {
            let mut b = InstanceBuffer::new(DIM, 4096);
            b.load(path, SPACE)?;
            b.queued(0).next().map(|z| z[0] as u64)
        }
        // `open` also finds a previous bundle a killed writer left beside a missing `path`.
        "bundle" => match Bundle::open(path) {
            Ok(b) => Some(b.manifest.provenance["version"].parse()?),
            Err(_) if !path.exists() => None,
            Err(e) => return Err(e.into()),
        },
        "checkpoint" if path.join("latest.json").exists() => {
            let dir = checkpoint::resolve(path, Which::Latest)?;
            Some(checkpoint::load(&dir, &Device::Cpu)?.state.step)
        }
        _ => None,
    })
}
