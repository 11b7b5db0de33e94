//! Splits one training step of a model on random data into forward, backward and optimizer time.
//! `cargo run --release -p sitfer-trainer --example step_profile -- student 48 64 [fast|channels-first|candle]`
//! (the same measurement as `sitfer-train bench --single`, printed for reading).

use clap::ValueEnum;
use sitfer_trainer::bench::bench_training;
use sitfer_trainer::model::Arch;
use sitfer_trainer::ops::ConvImpl;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    sitfer_trainer::alloc::configure();
    let args: Vec<String> = std::env::args().collect();
    let arch =
        Arch::from_str(args.get(1).map(String::as_str).unwrap_or("student"), true).map_err(anyhow::Error::msg)?;
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(48);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let conv = match args.get(4).map(String::as_str) {
        Some("candle") => ConvImpl::Candle,
        Some("channels-first") => ConvImpl::ChannelsFirst,
        _ => ConvImpl::Fast,
    };
    let r = bench_training(arch, size, batch, 5, 1, conv, &candle_core::Device::Cpu)?;
    println!(
        "fwd {:.1} ms  bwd {:.1} ms  opt {:.1} ms  => {:.1} img/s  (peak RSS {:.0} MB)",
        r.forward_ms, r.backward_ms, r.optimizer_ms, r.images_per_second, r.peak_rss_mb
    );
    Ok(())
}
