//! `sitfer`: the edge runtime's command line.

mod cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::infer::Model;
use sitfer_runtime::labels::ALL;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sitfer",
    version,
    about = "sitfer edge runtime for facial expression recognition"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the canonical label set, one `index name` per line.
    Labels,
    /// Print a bundle's manifest summary after verifying every hash and loading its models.
    Info {
        /// Bundle directory or packed bundle file.
        bundle: PathBuf,
    },
    /// Pack a bundle directory into one file (a tar, verified first) that every `--bundle`
    /// accepts like the directory.
    Pack {
        bundle: PathBuf,
        /// The packed file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Unpack a packed bundle into a new directory.
    Unpack {
        file: PathBuf,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Latency of the bundle's models in tract at the given batch sizes, and model sizes; then the
    /// boards' aarch64 instruction counts (per face per precision, per frame per detector, on
    /// cortex-a76 and cortex-a57), which experiments/aarch64-counts.sh measures under qemu.
    Bench {
        bundle: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batches: Vec<usize>,
        /// Timed runs per configuration (after 3 warm-up runs).
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// A fresh counts' summary to print after the host timings (experiments/aarch64-counts.sh
        /// writes runs/aarch64-counts/summary.md) instead of the one built in: no board is at
        /// hand, and host wall time says little about the boards' cores (docs/results/boards.md).
        #[arg(long)]
        counts: Option<PathBuf>,
    },
    /// Recognize expressions in frames from a source; one JSON line per frame.
    // Boxed: the largest arguments by far (clap reads them the same).
    Run(Box<cmd::run::RunArgs>),
    /// Accuracy of a bundle on a labeled ImageFolder: p_sem and fused p̂ side by side.
    Eval(cmd::eval::EvalArgs),
    /// A copy of a bundle with its fusion calibrated on labeled faces it is not scored on: a
    /// temperature per source, the buffer aggregate, a class-balanced seed buffer, the threshold.
    Calibrate(cmd::calibrate::CalibrateArgs),
    /// A copy of a bundle carrying anchor faces (labeled pooled features) that the online refit
    /// replays and checks every new head against.
    Anchors(cmd::anchors::AnchorsArgs),
    /// The on-device instance buffer: `stats`, `reset` (keep the bundle's seed), `export` (JSON lines).
    Buffer(cmd::buffer::BufferArgs),
    /// Adapt a bundle to unlabeled footage of this camera: a new bundle with a domain buffer (and
    /// optionally a refitted classifier head) and an adaptation report.
    Adapt(cmd::adapt::AdaptArgs),
    /// Recall and speed of face detectors on generated frames of pasted face crops.
    BenchDetect(cmd::bench_detect::BenchDetectArgs),
}

/// The precisions the bundle can run (fp16 whenever it has an fp32 model).
fn precisions(b: &Bundle) -> Vec<Precision> {
    Precision::ALL
        .into_iter()
        .filter(|p| b.manifest.model(*p).0.is_some())
        .collect()
}

fn info(path: PathBuf) -> Result<()> {
    let b = Bundle::open(&path).with_context(|| format!("opening bundle {}", path.display()))?;
    let m = &b.manifest;
    println!("bundle {} (format {})", path.display(), m.format_version);
    println!("classes: {}", m.classes.join(", "));
    println!(
        "input: {}x{}x{} mean {:?} std {:?}",
        m.input.channels, m.input.size, m.input.size, m.input.mean, m.input.std
    );
    println!("embedding_dim: {}", m.embedding_dim);
    let f = &m.fusion;
    println!(
        "fusion: {} with {} similarity, weights sem {} text {} ins {}, tau_t {}, tau_i {}, threshold {}",
        f.mode, f.aggregate, f.weights.sem, f.weights.text, f.weights.ins, f.tau_t, f.tau_i, f.threshold
    );
    for (field, e) in m.files() {
        println!("{field}: {} ({} bytes, sha256 {}) ok", e.path, e.bytes, e.sha256);
    }
    println!(
        "buffer: {} entries, per class {:?}",
        b.buffer.len(),
        b.buffer.class_counts()
    );
    for p in precisions(&b) {
        Model::load(&b, p)?;
        println!("model {}: loads, shapes agree with the manifest", p.name());
    }
    for (k, v) in &m.provenance {
        println!("provenance.{k}: {v}");
    }
    Ok(())
}

fn bench(path: PathBuf, batches: &[usize], runs: usize) -> Result<()> {
    let b = Bundle::open(&path).with_context(|| format!("opening bundle {}", path.display()))?;
    let size = b.manifest.input.size as usize;
    println!("| model | bytes | batch | ms / batch | ms / image |");
    println!("|---|---|---|---|---|");
    for p in precisions(&b) {
        let model = Model::load(&b, p)?;
        let bytes = b.manifest.model(p).0.map_or(0, |e| e.bytes);
        for &n in batches {
            // Deterministic, image-like values: the cost does not depend on the content.
            let x: Vec<f32> = (0..n * 3 * size * size)
                .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
                .collect();
            for _ in 0..3 {
                model.run(&x, n)?;
            }
            let t = Instant::now();
            for _ in 0..runs {
                model.run(&x, n)?;
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / runs.max(1) as f64;
            println!("| {} | {bytes} | {n} | {ms:.3} | {:.3} |", p.name(), ms / n as f64);
        }
    }
    Ok(())
}

/// The counts docs/results/boards.md reports, built in so that `sitfer bench` shows them on any
/// machine (the summary format of experiments/aarch64-counts.sh).
const AARCH64_COUNTS: &str = include_str!("../../docs/results/aarch64-counts.md");

/// What `sitfer bench` prints after the host timings: a fresh summary when given, else the
/// built-in one.
fn aarch64_counts(path: Option<&Path>) -> Result<String> {
    let (from, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading the counts' summary {}", p.display()))?,
        ),
        None => (
            "built in: docs/results/aarch64-counts.md".to_string(),
            AARCH64_COUNTS.to_string(),
        ),
    };
    Ok(format!(
        "\nThe boards' aarch64 instruction counts ({from}):\n\n{}",
        text.trim_end()
    ))
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Labels => {
            for e in ALL {
                println!("{} {}", e.index(), e.name());
            }
        }
        Command::Info { bundle } => info(bundle)?,
        Command::Pack { bundle, out } => {
            let s = sitfer_runtime::bundle::pack(&bundle, &out)
                .with_context(|| format!("packing {} into {}", bundle.display(), out.display()))?;
            for (name, bytes) in &s.files {
                println!("{bytes:>10}  {name}");
            }
            println!("{} ({} bytes, {} files)", out.display(), s.bytes, s.files.len());
        }
        Command::Unpack { file, out } => {
            sitfer_runtime::bundle::unpack(&file, &out)
                .with_context(|| format!("unpacking {} into {}", file.display(), out.display()))?;
            Bundle::open(&out).with_context(|| format!("verifying {}", out.display()))?;
            println!("{} (verified)", out.display());
        }
        Command::Bench {
            bundle,
            batches,
            runs,
            counts,
        } => {
            bench(bundle, &batches, runs.max(1))?;
            println!("{}", aarch64_counts(counts.as_deref())?);
        }
        Command::Run(a) => cmd::run::run(*a)?,
        Command::Eval(a) => cmd::eval::eval(a)?,
        Command::Calibrate(a) => cmd::calibrate::calibrate(a)?,
        Command::Anchors(a) => cmd::anchors::anchors(a)?,
        Command::Buffer(a) => cmd::buffer::buffer(a)?,
        Command::Adapt(a) => cmd::adapt::adapt(a)?,
        Command::BenchDetect(a) => cmd::bench_detect::bench_detect(a)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::aarch64_counts;

    #[test]
    fn bench_prints_the_built_in_counts_or_a_given_summary() {
        let built_in = aarch64_counts(None).unwrap();
        for what in ["cortex-a76", "cortex-a57", "fp16", "rustface", "yunet"] {
            assert!(built_in.contains(what), "{what} missing:\n{built_in}");
        }
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("summary.md");
        assert!(aarch64_counts(Some(&summary)).is_err(), "a missing summary is an error");
        std::fs::write(&summary, "| core | fp32 |\n|---|---|\n| cortex-a76 | 56.8 M |\n").unwrap();
        let out = aarch64_counts(Some(&summary)).unwrap();
        assert!(out.ends_with("| cortex-a76 | 56.8 M |"), "{out}");
    }
}
