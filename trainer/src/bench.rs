//! Training-throughput benchmark: one model, synthetic batches, timed full steps (forward,
//! backward, AdamW update), and the process's peak resident memory.

use crate::method::loss::soft_cross_entropy;
use crate::model::init::seeded_var_builder;
use crate::model::{Arch, ModelSpec, Stem, build};
use crate::ops::{ConvImpl, set_conv_impl};
use crate::train::optimizer::{Optimizer, OptimizerConfig};
use crate::train::prepare::trainable;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub framework: String,
    pub arch: String,
    pub size: usize,
    pub batch: usize,
    pub threads: usize,
    pub parameters: usize,
    pub images_per_second: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub peak_rss_mb: f64,
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB; 0 where unavailable.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Trains `arch` on random `size`x`size` batches: `warmup` untimed steps, then `steps` timed.
pub fn bench_training(
    arch: Arch,
    size: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
    conv: ConvImpl,
    device: &Device,
) -> Result<BenchResult> {
    set_conv_impl(conv);
    let varmap = VarMap::new();
    let model = build(&spec(arch, size), seeded_var_builder(&varmap, 0, DType::F32, device))?;
    let (mut opt, parameters) = adamw(&varmap);
    let x = Tensor::randn(0f32, 1f32, (batch, 3, size, size), device)?;
    let t = (Tensor::ones((batch, 7), DType::F32, device)? / 7.0)?;
    let times = timed(steps, warmup, device, &mut opt, |_| {
        let loss = soft_cross_entropy(&model.forward_t(&x, true)?.logits, &t)?;
        loss.to_scalar::<f32>()?;
        Ok(loss)
    })?;
    let framework = match conv {
        ConvImpl::Fast => "candle+sitfer-fused",
        ConvImpl::ChannelsFirst => "candle+sitfer-ops",
        ConvImpl::Candle => "candle",
    };
    Ok(result(framework, arch, size, batch, parameters, steps, times))
}

fn spec(arch: Arch, size: usize) -> ModelSpec {
    ModelSpec {
        arch,
        stem: Stem::Small,
        num_classes: 7,
        input_size: size as u32,
    }
}

/// AdamW over the varmap's trainable variables, as `train` sets it up; and their size.
fn adamw(varmap: &VarMap) -> (Optimizer, usize) {
    let params = trainable(varmap);
    let parameters = params.iter().map(|p| p.var.elem_count()).sum();
    let config = OptimizerConfig::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 5e-4,
    };
    (Optimizer::new(config, params), parameters)
}

/// `warmup + steps` steps of loss → backward → AdamW update; seconds spent in each of the three
/// over the last `steps`.
fn timed(
    steps: usize,
    warmup: usize,
    device: &Device,
    opt: &mut Optimizer,
    mut loss_of: impl FnMut(usize) -> Result<Tensor>,
) -> Result<[f64; 3]> {
    let mut acc = [0f64; 3];
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = loss_of(i)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3)?;
        device.synchronize()?;
        let t3 = Instant::now();
        if i >= warmup {
            acc[0] += (t1 - t0).as_secs_f64();
            acc[1] += (t2 - t1).as_secs_f64();
            acc[2] += (t3 - t2).as_secs_f64();
        }
    }
    Ok(acc)
}

fn result(
    framework: &str,
    arch: Arch,
    size: usize,
    images: usize,
    parameters: usize,
    steps: usize,
    [f, b, o]: [f64; 3],
) -> BenchResult {
    let n = steps.max(1) as f64;
    BenchResult {
        framework: framework.into(),
        arch: arch.name().into(),
        size,
        batch: images,
        threads: candle_core::utils::get_num_threads(),
        parameters,
        images_per_second: images as f64 * n / (f + b + o),
        forward_ms: 1e3 * f / n,
        backward_ms: 1e3 * b / n,
        optimizer_ms: 1e3 * o / n,
        peak_rss_mb: peak_rss_mb(),
    }
}

/// Labeled faces per SIT-FER benchmark step (each with one unlabeled face, seen in a weak and a
/// strong view: 3 images per labeled face).
pub const SITFER_LABELED: usize = 16;

/// The semi-supervised step as SIT-FER trains: `SITFER_LABELED` labeled faces and as many
/// unlabeled ones in a weak (forward only) and a strong view, with all three sources on from
/// the first step (random unit text prototypes, an instance buffer seeded with random unit
/// embeddings of every class) and every unlabeled face passing the threshold, so L_s, L_t and
/// L_u are all computed. img/s counts all three views.
pub fn bench_sitfer_step(arch: Arch, size: usize, steps: usize, warmup: usize, device: &Device) -> Result<BenchResult> {
    use crate::method::SslConfig;
    use crate::method::memory::InstanceMemory;
    use crate::method::step::{LabeledInput, SslState, UnlabeledInput};
    use crate::model::projection::ProjectionHead;
    const TEXT_DIM: usize = 384;
    const SEED_PER_CLASS: usize = 32;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, device);
    let model = build(&spec(arch, size), vb.clone())?;
    let proj = ProjectionHead::new(model.embedding_dim(), TEXT_DIM, vb)?;
    let unit = |rows: usize| -> Result<Tensor> {
        let t = Tensor::randn(0f32, 1f32, (rows, TEXT_DIM), device)?;
        t.broadcast_div(&t.sqr()?.sum_keepdim(1)?.sqrt()?)
    };
    let prototypes = unit(7)?;
    let seed_classes: Vec<usize> = (0..7 * SEED_PER_CLASS).map(|i| i % 7).collect();
    let mut memory = InstanceMemory::new(TEXT_DIM, seed_classes.clone(), 256);
    let slots: Vec<usize> = (0..seed_classes.len()).collect();
    memory.update_labeled(&slots, &unit(seed_classes.len())?.flatten_all()?.to_vec1::<f32>()?);
    let cfg = SslConfig {
        threshold: 0.0,
        ins_warmup_steps: 0,
        ..SslConfig::sitfer()
    };
    let mut ssl = SslState::new(cfg, Some(prototypes), Some(proj), Some(memory));
    let (mut opt, parameters) = adamw(&varmap);
    let b = SITFER_LABELED;
    let x = Tensor::randn(0f32, 1f32, (b, 3, size, size), device)?;
    let weak = Tensor::randn(0f32, 1f32, (b, 3, size, size), device)?;
    let strong = Tensor::randn(0f32, 1f32, (b, 3, size, size), device)?;
    let labels: Vec<usize> = (0..b).map(|i| i % 7).collect();
    let mut onehot = vec![0f32; b * 7];
    for (i, &c) in labels.iter().enumerate() {
        onehot[i * 7 + c] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, (b, 7), device)?;
    let batch_slots: Vec<usize> = (0..b).collect();
    let times = timed(steps, warmup, device, &mut opt, |i| {
        let out = ssl.step(
            model.as_ref(),
            i as u64,
            LabeledInput {
                x: &x,
                targets: &targets,
                labels: &labels,
                slots: &batch_slots,
            },
            Some(UnlabeledInput {
                weak: &weak,
                strong: &strong,
            }),
        )?;
        if out.l_u.is_none() || out.l_t.is_none() {
            candle_core::bail!(
                "sitfer bench: a loss term is missing (L_t {:?}, L_u {:?})",
                out.l_t,
                out.l_u
            );
        }
        Ok(out.loss)
    })?;
    let framework = if crate::ops::fast_path(&x) {
        "candle+sitfer-fused sitfer-step"
    } else {
        "sitfer-step"
    };
    Ok(result(framework, arch, size, 3 * b, parameters, steps, times))
}

/// The implementations a benchmark row can compare, by their command-line names.
pub fn impl_name(imp: ConvImpl) -> &'static str {
    match imp {
        ConvImpl::Fast => "fast",
        ConvImpl::ChannelsFirst => "channels-first",
        ConvImpl::Candle => "candle",
    }
}

/// What `sitfer-train bench` measures.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub archs: Vec<Arch>,
    pub sizes: Vec<usize>,
    pub batch: usize,
    pub steps: usize,
    pub impls: Vec<ConvImpl>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Also the SIT-FER step of each model at each size.
    pub sitfer_step: bool,
    /// Python with PyTorch and the script that mirrors the nets; the column is skipped when
    /// either is missing.
    pub python: PathBuf,
    pub pytorch_script: PathBuf,
}

/// Runs `exe bench --single …` for one configuration (its own process, so peak memory is its
/// own) and parses its JSON line.
fn measure(
    exe: &Path,
    plan: &BenchPlan,
    arch: Arch,
    size: usize,
    conv: &str,
    sitfer: bool,
) -> anyhow::Result<BenchResult> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "bench",
        "--single",
        "--archs",
        arch.name(),
        "--sizes",
        &size.to_string(),
    ])
    .args(["--batch", &plan.batch.to_string(), "--steps", &plan.steps.to_string()])
    .args(["--conv", conv, "--device", &plan.device]);
    if sitfer {
        cmd.arg("--sitfer-step");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!(
            "bench {conv} {} {size}: {}",
            arch.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The PyTorch side of a row: (img/s, peak RSS MB).
fn measure_pytorch(plan: &BenchPlan, arch: Arch, size: usize) -> anyhow::Result<(f64, f64)> {
    let out = std::process::Command::new(&plan.python)
        .arg(&plan.pytorch_script)
        .args([
            "--arch",
            arch.name(),
            "--size",
            &size.to_string(),
            "--batch",
            &plan.batch.to_string(),
        ])
        .args(["--steps", &plan.steps.to_string()])
        .args(["--threads", &candle_core::utils::get_num_threads().to_string()])
        .output()?;
    if !out.status.success() {
        anyhow::bail!("pytorch bench: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        v["images_per_second"].as_f64().unwrap_or(0.0),
        v["peak_rss_mb"].as_f64().unwrap_or(0.0),
    ))
}

/// Measures every configuration of `plan` (this binary is `exe`), prints a markdown table of
/// img/s per implementation beside PyTorch, and returns every measurement.
pub fn run_plan(exe: &Path, plan: &BenchPlan) -> anyhow::Result<Vec<BenchResult>> {
    let have_torch = plan.python.is_file() && plan.pytorch_script.is_file() && plan.device == "cpu";
    if !have_torch && plan.device == "cpu" {
        log::warn!(
            "{} not found: run bench/setup.sh for the PyTorch column",
            plan.python.display()
        );
    }
    let fastest = *plan.impls.first().unwrap_or(&ConvImpl::Fast);
    let heads: Vec<String> = plan.impls.iter().map(|i| format!("{} img/s", impl_name(*i))).collect();
    println!(
        "| model | input | batch | device | {} | PyTorch img/s | {} / PyTorch | peak RSS {} / PyTorch (MB) |",
        heads.join(" | "),
        impl_name(fastest),
        impl_name(fastest)
    );
    println!("|---|---|---|---|{}---|---|---|", "---|".repeat(heads.len()));
    let mut all = Vec::new();
    let mut sitfer_rows = Vec::new();
    for &arch in &plan.archs {
        for &size in &plan.sizes {
            let mut row = Vec::new();
            for &imp in &plan.impls {
                row.push(measure(exe, plan, arch, size, impl_name(imp), false)?);
            }
            let torch = if have_torch && arch != Arch::EfficientnetLite0 {
                Some(measure_pytorch(plan, arch, size)?)
            } else {
                None
            };
            let first = row.first().cloned();
            let ratio = match (&first, torch) {
                (Some(b), Some((t, _))) if t > 0.0 => format!("{:.2}", b.images_per_second / t),
                _ => "-".into(),
            };
            let mem = format!(
                "{} / {}",
                first
                    .as_ref()
                    .map(|b| format!("{:.0}", b.peak_rss_mb))
                    .unwrap_or("-".into()),
                torch.map(|t| format!("{:.0}", t.1)).unwrap_or("-".into())
            );
            let cells: Vec<String> = row.iter().map(|r| format!("{:.1}", r.images_per_second)).collect();
            println!(
                "| {} | {size}x{size} | {} | {} | {} | {} | {ratio} | {mem} |",
                arch.name(),
                plan.batch,
                plan.device,
                cells.join(" | "),
                torch.map(|t| format!("{:.1}", t.0)).unwrap_or("-".into())
            );
            all.extend(row);
            if let Some((ips, rss)) = torch {
                all.push(BenchResult {
                    framework: "pytorch".into(),
                    arch: arch.name().into(),
                    size,
                    batch: plan.batch,
                    threads: candle_core::utils::get_num_threads(),
                    parameters: 0,
                    images_per_second: ips,
                    forward_ms: 0.0,
                    backward_ms: 0.0,
                    optimizer_ms: 0.0,
                    peak_rss_mb: rss,
                });
            }
            if plan.sitfer_step {
                sitfer_rows.push(measure(exe, plan, arch, size, impl_name(fastest), true)?);
            }
        }
    }
    if !sitfer_rows.is_empty() {
        println!();
        println!(
            "SIT-FER step ({SITFER_LABELED} labeled + {SITFER_LABELED} unlabeled x 2 views, all three sources, L_s + L_t + L_u):"
        );
        println!();
        println!(
            "| model | input | images per step | device | img/s | forward / backward / optimizer ms | peak RSS (MB) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in &sitfer_rows {
            println!(
                "| {} | {}x{} | {} | {} | {:.1} | {:.0} / {:.0} / {:.0} | {:.0} |",
                r.arch,
                r.size,
                r.size,
                r.batch,
                plan.device,
                r.images_per_second,
                r.forward_ms,
                r.backward_ms,
                r.optimizer_ms,
                r.peak_rss_mb
            );
        }
        all.extend(sitfer_rows);
    }
    Ok(all)
}
