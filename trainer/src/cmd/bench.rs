//! `sitfer-train bench`: each configuration measured in its own process (so peak memory is its
//! own), candle beside PyTorch, as a markdown table.

use anyhow::{Context, Result, bail};
use clap::Args;
use sitfer_trainer::model::Arch;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchConv {
    /// sitfer's CPU training ops (im2col conv, fused batch norm…).
    Fast,
    /// candle's own conv2d and composed batch norm.
    Candle,
    /// Both, for a before/after table.
    Both,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Architectures (student, resnet18, efficientnet-lite0).
    #[arg(long, value_delimiter = ',', default_value = "student,resnet18")]
    archs: Vec<Arch>,
    /// Input sides.
    #[arg(long, value_delimiter = ',', default_value = "48,64")]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps per configuration (after 2 warm-up steps).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    #[arg(long, value_enum, default_value = "both")]
    conv: BenchConv,
    /// Python with PyTorch (made by bench/setup.sh); the PyTorch column is skipped if missing.
    #[arg(long, default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "bench/pytorch_bench.py")]
    pytorch_script: PathBuf,
    /// Also write all results as JSON lines here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: measure one configuration in this process and print it as JSON.
    #[arg(long, hide = true)]
    single: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    use sitfer_trainer::bench::{BenchResult, bench_training};
    use sitfer_trainer::ops::ConvImpl;
    if a.single {
        let conv = if a.conv == BenchConv::Candle {
            ConvImpl::Candle
        } else {
            ConvImpl::Fast
        };
        let r = bench_training(
            a.archs[0],
            a.sizes[0],
            a.batch,
            a.steps,
            2,
            conv,
            &candle_core::Device::Cpu,
        )?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let convs: &[&str] = match a.conv {
        BenchConv::Both => &["candle", "fast"],
        BenchConv::Fast => &["fast"],
        BenchConv::Candle => &["candle"],
    };
    let have_torch = a.python.is_file() && a.pytorch_script.is_file();
    if !have_torch {
        log::warn!(
            "{} not found: run bench/setup.sh for the PyTorch column",
            a.python.display()
        );
    }
    let mut all: Vec<BenchResult> = Vec::new();
    println!(
        "| model | input | batch | candle img/s | sitfer ops img/s | PyTorch img/s | sitfer / PyTorch | peak RSS sitfer / PyTorch (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &arch in &a.archs {
        for &size in &a.sizes {
            // Each measurement runs in its own process so peak memory is its own.
            let mut row: Vec<BenchResult> = Vec::new();
            for name in convs {
                let out = std::process::Command::new(&exe)
                    .args([
                        "bench",
                        "--single",
                        "--archs",
                        arch.name(),
                        "--sizes",
                        &size.to_string(),
                    ])
                    .args([
                        "--batch",
                        &a.batch.to_string(),
                        "--steps",
                        &a.steps.to_string(),
                        "--conv",
                        name,
                    ])
                    .output()?;
                if !out.status.success() {
                    bail!("bench {name} {arch:?} {size}: {}", String::from_utf8_lossy(&out.stderr));
                }
                row.push(serde_json::from_slice(&out.stdout)?);
            }
            let torch = if have_torch && arch != Arch::EfficientnetLite0 {
                let out = std::process::Command::new(&a.python)
                    .arg(&a.pytorch_script)
                    .args([
                        "--arch",
                        arch.name(),
                        "--size",
                        &size.to_string(),
                        "--batch",
                        &a.batch.to_string(),
                    ])
                    .args([
                        "--steps",
                        &a.steps.to_string(),
                        "--threads",
                        &candle_core::utils::get_num_threads().to_string(),
                    ])
                    .output()?;
                if !out.status.success() {
                    bail!("pytorch bench: {}", String::from_utf8_lossy(&out.stderr));
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                Some((
                    v["images_per_second"].as_f64().unwrap_or(0.0),
                    v["peak_rss_mb"].as_f64().unwrap_or(0.0),
                ))
            } else {
                None
            };
            let find = |fw: &str| row.iter().find(|r| r.framework == fw).cloned();
            let candle = find("candle");
            let fast = find("candle+sitfer-ops");
            let fmt = |r: &Option<BenchResult>| {
                r.as_ref()
                    .map(|r| format!("{:.1}", r.images_per_second))
                    .unwrap_or("-".into())
            };
            let best = fast.as_ref().or(candle.as_ref());
            let ratio = match (best, torch) {
                (Some(b), Some((t, _))) if t > 0.0 => format!("{:.2}", b.images_per_second / t),
                _ => "-".into(),
            };
            let mem = format!(
                "{} / {}",
                best.map(|b| format!("{:.0}", b.peak_rss_mb)).unwrap_or("-".into()),
                torch.map(|t| format!("{:.0}", t.1)).unwrap_or("-".into())
            );
            println!(
                "| {} | {size}x{size} | {} | {} | {} | {} | {ratio} | {mem} |",
                arch.name(),
                a.batch,
                fmt(&candle),
                fmt(&fast),
                torch.map(|t| format!("{:.1}", t.0)).unwrap_or("-".into())
            );
            all.extend(row);
            if let Some((ips, rss)) = torch {
                all.push(BenchResult {
                    framework: "pytorch".into(),
                    arch: arch.name().into(),
                    size,
                    batch: a.batch,
                    threads: candle_core::utils::get_num_threads(),
                    parameters: 0,
                    images_per_second: ips,
                    forward_ms: 0.0,
                    backward_ms: 0.0,
                    optimizer_ms: 0.0,
                    peak_rss_mb: rss,
                });
            }
        }
    }
    if let Some(out) = a.out {
        let text: String = all.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        sitfer_contract::file_write::atomic_write_bytes(&out, text.as_bytes())
            .with_context(|| out.display().to_string())?;
    }
    Ok(())
}
