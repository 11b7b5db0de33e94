//! Times forward, backward and optimizer step of one model on random data.
//! `cargo run --release -p sitfer-trainer --example step_profile -- student 48 64 [candle]`

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build};
use sitfer_trainer::ops::{ConvImpl, set_conv_impl};
use sitfer_trainer::train::loss::soft_cross_entropy;
use sitfer_trainer::train::optimizer::{Optimizer, OptimizerConfig};
use sitfer_trainer::train::run::trainable;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    sitfer_trainer::alloc::configure();
    let args: Vec<String> = std::env::args().collect();
    let arch = match args.get(1).map(String::as_str).unwrap_or("student") {
        "resnet18" => Arch::Resnet18,
        "efficientnet-lite0" => Arch::EfficientnetLite0,
        _ => Arch::Student,
    };
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(48);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    if args.get(4).map(String::as_str) == Some("candle") {
        set_conv_impl(ConvImpl::Candle);
    }
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let spec = ModelSpec {
        arch,
        stem: Stem::Small,
        num_classes: 7,
        input_size: size as u32,
    };
    let model = build(&spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 5e-4,
        },
        trainable(&varmap),
    );
    let x = Tensor::randn(0f32, 1f32, (batch, 3, size, size), &dev)?;
    let t = Tensor::ones((batch, 7), DType::F32, &dev)?.affine(1.0 / 7.0, 0.0)?;
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let iters = 6;
    for i in 0..iters {
        let t0 = Instant::now();
        let out = model.forward_t(&x, true)?;
        let loss = soft_cross_entropy(&out.logits, &t)?;
        let _ = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3)?;
        let t3 = Instant::now();
        if i > 0 {
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
    }
    let n = (iters - 1) as f64;
    println!(
        "fwd {:.1} ms  bwd {:.1} ms  opt {:.1} ms  => {:.1} img/s",
        1e3 * tf / n,
        1e3 * tb / n,
        1e3 * to / n,
        batch as f64 * n / (tf + tb + to)
    );
    let t0 = Instant::now();
    for _ in 0..3 {
        let out = model.forward_t(&x, false)?;
        let _ = out.logits.to_vec2::<f32>()?;
    }
    println!("eval fwd {:.1} img/s", 3.0 * batch as f64 / t0.elapsed().as_secs_f64());
    Ok(())
}
