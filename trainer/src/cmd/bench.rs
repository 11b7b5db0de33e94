//! `sitfer-train bench`: the arguments of the training-throughput benchmark; the measuring and
//! the table live in `sitfer_trainer::bench`.

use anyhow::{Context, Result};
use clap::Args;
use sitfer_trainer::model::Arch;
use sitfer_trainer::ops::ConvImpl;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchConv {
    /// The default CPU path: channels-last activations with fused conv + batch norm +
    /// activation.
    Fast,
    /// The previous CPU path: channels-first, one sitfer op per layer (im2col conv, fused batch
    /// norm, ReLU).
    ChannelsFirst,
    /// candle's own conv2d and composed batch norm.
    Candle,
    /// All three, for a before/after table.
    All,
}

impl BenchConv {
    fn impls(self) -> Vec<ConvImpl> {
        match self {
            BenchConv::Fast => vec![ConvImpl::Fast],
            BenchConv::ChannelsFirst => vec![ConvImpl::ChannelsFirst],
            BenchConv::Candle => vec![ConvImpl::Candle],
            BenchConv::All => vec![ConvImpl::Fast, ConvImpl::ChannelsFirst, ConvImpl::Candle],
        }
    }
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
    #[arg(long, value_enum, default_value = "all")]
    conv: BenchConv,
    /// cpu, cuda or cuda:N (sitfer's fast ops are CPU code; on CUDA the models use candle's).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also measure the SIT-FER step (16 labeled + 16 unlabeled in two views, all sources on).
    #[arg(long)]
    sitfer_step: bool,
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
    use sitfer_trainer::bench::{BenchPlan, bench_sitfer_step, bench_training, run_plan};
    let device = sitfer_trainer::train::prepare::parse_device(&a.device)?;
    if a.single {
        let imp = a.conv.impls()[0];
        let r = if a.sitfer_step {
            sitfer_trainer::ops::set_conv_impl(imp);
            bench_sitfer_step(a.archs[0], a.sizes[0], a.steps, 2, &device)?
        } else {
            bench_training(a.archs[0], a.sizes[0], a.batch, a.steps, 2, imp, &device)?
        };
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let plan = BenchPlan {
        archs: a.archs,
        sizes: a.sizes,
        batch: a.batch,
        steps: a.steps,
        impls: a.conv.impls(),
        device: a.device,
        sitfer_step: a.sitfer_step,
        python: a.python,
        pytorch_script: a.pytorch_script,
    };
    let all = run_plan(&std::env::current_exe()?, &plan)?;
    if let Some(out) = a.out {
        let text: String = all.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        sitfer_contract::file_write::atomic_write_bytes(&out, text.as_bytes())
            .with_context(|| out.display().to_string())?;
    }
    Ok(())
}
