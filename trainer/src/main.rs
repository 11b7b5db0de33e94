//! `sitfer-train`: train, evaluate and split FER datasets.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cmd::{bench, distill, eval, export, prototypes, split, train};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sitfer-train",
    version,
    about = "Train and evaluate sitfer facial expression models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model: supervised, FixMatch or SIT-FER.
    Train(Box<train::TrainArgs>),
    /// Build (or check) the text prototype cache and show how the classes' prototypes relate.
    Prototypes(prototypes::PrototypesArgs),
    /// Evaluate a checkpoint on a labeled split.
    Eval(eval::EvalArgs),
    /// Draw a labeled/unlabeled split and save its manifest.
    Split(split::SplitArgs),
    /// Training throughput and peak memory, candle side by side with PyTorch CPU.
    Bench(bench::BenchArgs),
    /// Export a checkpoint as a model bundle (fp32 ONNX, optionally int8) and verify it.
    Export(export::ExportArgs),
    /// Train a student on a teacher's fused pseudo-labels p̂ (KL to p̂ plus CE on labels, and
    /// L_t when the student has a projection head).
    Distill(Box<distill::DistillArgs>),
}

fn main() -> Result<()> {
    sitfer_trainer::alloc::configure();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Prototypes(a) => prototypes::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Split(a) => split::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
        Command::Distill(a) => distill::run(*a),
    }
}
