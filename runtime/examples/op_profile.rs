//! Where tract spends the time of a bundle's model: every node of the optimised plan timed over
//! repeated runs at batch 1, summed per operator kind, slowest first. Any single-input float
//! model: the input is `[1, 3, H, W]` (default 48x48, a bundle's student).
//!   cargo run --release -p sitfer-runtime --example op_profile -- MODEL.onnx [RUNS [H W]]
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/default/model-int8.onnx".into());
    let arg = |i: usize, default: usize| std::env::args().nth(i).map_or(Ok(default), |a| a.parse());
    let (runs, h, w) = (arg(2, 200)?, arg(3, 48)?, arg(4, 48)?);
    let plan = tract_onnx::onnx()
        .model_for_path(&path)?
        .with_input_fact(0, f32::fact([1, 3, h, w]).into())?
        .into_optimized()?
        .into_runnable()?;
    // OP_PROFILE_PLAN=1: print the optimised plan (what fused into what) before timing it.
    if std::env::var_os("OP_PROFILE_PLAN").is_some() {
        for &id in plan.order_without_consts() {
            let node = plan.model().node(id);
            let inputs: Vec<String> = node.inputs.iter().map(|i| i.node.to_string()).collect();
            println!("#{id} {} <- [{}] {}", node.name, inputs.join(","), node.op().name());
            for line in node.op().info()? {
                println!("      {line}");
            }
        }
    }
    let x = Tensor::zero::<f32>(&[1, 3, h, w])?;
    let mut per_node: HashMap<usize, (String, Duration)> = HashMap::new();
    let mut state = TypedSimpleState::new(&plan)?;
    let total = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(tvec![x.clone().into_tvalue()], |ctx, op_state, node, input| {
            let t = Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
            let e = per_node
                .entry(node.id)
                .or_insert_with(|| (node.op().name().to_string(), Duration::ZERO));
            e.1 += t.elapsed();
            out
        })?;
    }
    let total = total.elapsed();
    let mut per_op: HashMap<String, (usize, Duration)> = HashMap::new();
    for (name, d) in per_node.values() {
        let e = per_op.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += *d;
    }
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
    println!(
        "{path}: {:.3} ms per run ({runs} runs), {} nodes",
        total.as_secs_f64() * 1e3 / runs as f64,
        per_node.len()
    );
    println!("| op | nodes | ms per run | share |");
    println!("|---|---|---|---|");
    let sum: f64 = rows.iter().map(|r| r.1.1.as_secs_f64()).sum();
    for (name, (n, d)) in rows {
        println!(
            "| {name} | {n} | {:.3} | {:.1} % |",
            d.as_secs_f64() * 1e3 / runs as f64,
            100.0 * d.as_secs_f64() / sum
        );
    }
    Ok(())
}
