//! Checks an exported bundle against the checkpoint it came from, on the validation faces:
//! candle vs tract fp32 (max |Δ logit|, and max |Δ| of the text-space embedding when the run has
//! a projection head; accuracy) and int8 vs fp32 (top-1 agreement, accuracy).
//! The numbers of docs/results/bundle.md.
//!
//! Usage: cargo run --release -p sitfer-trainer --example bundle_check -- RUN_DIR BUNDLE_DIR

use candle_core::{DType, Device};
use sitfer_contract::bundle::{Bundle, Precision};
use sitfer_contract::infer::Model;
use sitfer_contract::labels::NUM_CLASSES;
use sitfer_trainer::data::loader::{BatchStream, StreamConfig, batches_per_epoch};
use sitfer_trainer::data::{ReadOptions, read_dataset, split::carve_validation};
use sitfer_trainer::evaluate::{argmax, forward_store};
use sitfer_trainer::model::build;
use sitfer_trainer::model::projection::ProjectionHead;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::run::{labeled_store, set_vars};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let run = PathBuf::from(&args[1]);
    let bundle_dir = PathBuf::from(&args[2]);
    let dev = Device::Cpu;
    let dir = checkpoint::resolve(&run, Which::Best)?;
    let ck = checkpoint::load(&dir, &dev)?;
    let cfg = &ck.state.config;
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = build(&cfg.model, vb.clone())?;
    let head = match ck.weights.get("proj.weight") {
        Some(w) => Some(ProjectionHead::new(model.embedding_dim(), w.dim(0)?, vb)?),
        None => None,
    };
    set_vars(&varmap, &ck.weights, &dir)?;
    let opts = ReadOptions {
        outside: cfg.data.outside,
        soft_labels: false,
    };
    let mut dataset = read_dataset(cfg.data.format, &cfg.data.root, &opts)?;
    carve_validation(&mut dataset, cfg.data.val_fraction, cfg.seed);
    let (store, _) = labeled_store(&dataset.val, cfg.model.input_size, "val");
    let truth: Vec<usize> = store.targets.as_ref().unwrap().iter().map(|t| argmax(t)).collect();
    let n = store.len();
    let (candle_logits, candle_embedding) = forward_store(model.as_ref(), &store, cfg.norm, 64, &dev)?;
    let candle_logits = candle_logits.to_vec2::<f32>()?;
    // The bundle's embedding output: the projection's unit vector, or the unit feature.
    let candle_z = match &head {
        Some(h) => h.forward(&candle_embedding)?,
        None => sitfer_trainer::text::encoder::l2_normalize(&candle_embedding)?,
    }
    .to_vec2::<f32>()?;

    let bundle = Bundle::open(&bundle_dir)?;
    let batch = 8;
    let side = cfg.model.input_size as usize;
    let mut results: Vec<(Precision, Vec<[f32; NUM_CLASSES]>, f64, f32)> = Vec::new();
    for p in [Precision::Fp32, Precision::Int8] {
        if bundle.manifest.model(p).0.is_none() {
            continue;
        }
        let m = Model::load(&bundle, p)?;
        let mut logits = Vec::with_capacity(n);
        let mut secs = 0.0;
        let mut z_diff = 0f32;
        let stream = BatchStream::new(
            store.clone(),
            StreamConfig::eval(batch, cfg.norm),
            0,
            Some(batches_per_epoch(n, batch, false)),
        );
        for b in stream {
            assert_eq!(b.views[0].len(), b.len() * 3 * side * side);
            let t = Instant::now();
            let out = m.run(&b.views[0], b.len())?;
            secs += t.elapsed().as_secs_f64();
            for i in 0..b.len() {
                let mut a = [0f32; NUM_CLASSES];
                a.copy_from_slice(out.logits_row(i));
                let row = &candle_z[logits.len()];
                z_diff = out
                    .embedding_row(i)
                    .iter()
                    .zip(row)
                    .map(|(x, y)| (x - y).abs())
                    .fold(z_diff, f32::max);
                logits.push(a);
            }
        }
        results.push((p, logits, secs, z_diff));
    }
    let acc = |rows: &[[f32; NUM_CLASSES]]| {
        rows.iter().zip(&truth).filter(|(r, t)| argmax(&r[..]) == **t).count() as f64 / n as f64
    };
    let candle_rows: Vec<[f32; NUM_CLASSES]> = candle_logits
        .iter()
        .map(|r| {
            let mut a = [0f32; NUM_CLASSES];
            a.copy_from_slice(r);
            a
        })
        .collect();
    println!("{n} validation faces of {}", cfg.data.root.display());
    println!(
        "| model | accuracy | vs candle max abs Δ logit | vs candle max abs Δ embedding ({}) | top-1 agreement with fp32 | ms / batch of {batch} |",
        if head.is_some() { "text space" } else { "feature" }
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| candle (checkpoint) | {:.2} % | – | – | – | – |",
        100.0 * acc(&candle_rows)
    );
    let fp32 = results.iter().find(|r| r.0 == Precision::Fp32).map(|r| r.1.clone());
    for (p, rows, secs, z_diff) in &results {
        let max_diff = rows
            .iter()
            .zip(&candle_rows)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        let agree = fp32.as_ref().map(|f| {
            f.iter()
                .zip(rows)
                .filter(|(a, b)| argmax(&a[..]) == argmax(&b[..]))
                .count() as f64
                / n as f64
        });
        println!(
            "| tract {} | {:.2} % | {:.2e} | {:.2e} | {} | {:.2} |",
            p.name(),
            100.0 * acc(rows),
            max_diff,
            z_diff,
            agree.map(|a| format!("{:.2} %", 100.0 * a)).unwrap_or_default(),
            1e3 * secs / batches_per_epoch(n, batch, false) as f64
        );
    }
    Ok(())
}
