//! How good each pseudo-labeler of a checkpoint is on the unlabeled faces, against their hidden
//! labels (analysis only: FER2013 train faces whose labels the run never saw).
//!
//! A semi-supervised method gains when its pseudo-labels are right more often than the
//! classifier's own at the same coverage; a threshold only picks the coverage. So this ranks the
//! unlabeled faces by each rule's confidence and prints the precision of the top 5 … 100 %, and
//! the coverage and precision at fixed thresholds. Rules: p_sem (FixMatch's), p̂ with the run's
//! configured temperatures, p̂ with temperatures fitted on the run's labeled hold-out, and each
//! of those kept only where the three sources' argmaxes agree.
//!
//! ```sh
//! cargo run --release -p sitfer-trainer --example pseudo_label_quality -- \
//!     runs/sitfer2/sitfer-100-s0/checkpoints/step-00001000 [max-unlabeled]
//! ```
//! The run directory is only read: split, hold-out and prototypes are copied to a temporary one.

use anyhow::{Context, Result, bail};
use candle_core::Device;
use sitfer_contract::fusion::calibration::fit_temperature;
use sitfer_contract::fusion::softmax;
use sitfer_contract::labels::NUM_CLASSES;
use sitfer_trainer::data::loader::ImageStore;
use sitfer_trainer::evaluate::{argmax, forward_store};
use sitfer_trainer::method::step::hard_labels;
use sitfer_trainer::method::{InstanceMemory, SslConfig, SslState};
use sitfer_trainer::train::checkpoint::{self, run_dir_of};
use sitfer_trainer::train::prepare::{build_model, prepare_data, run_prototypes, set_vars};
use std::path::PathBuf;
use std::sync::Arc;

type Row = [f32; NUM_CLASSES];

/// One rule's pseudo-label and confidence per face.
struct Rule {
    name: String,
    class: Vec<usize>,
    conf: Vec<f32>,
}

fn scaled(rows: &[Row], t: f64) -> Vec<Row> {
    rows.iter()
        .map(|r| softmax(&std::array::from_fn(|k| (r[k] as f64 / t) as f32)))
        .collect()
}

fn mean3(a: &[Row], b: &[Row], c: &[Row]) -> Vec<Row> {
    a.iter()
        .zip(b)
        .zip(c)
        .map(|((x, y), z)| std::array::from_fn(|k| (x[k] + y[k] + z[k]) / 3.0))
        .collect()
}

fn rule(name: &str, p: &[Row]) -> Rule {
    Rule {
        name: name.into(),
        class: p.iter().map(|r| argmax(r)).collect(),
        conf: p.iter().map(|r| r[argmax(r)]).collect(),
    }
}

/// `r` where every source's argmax agrees with it, confidence 0 elsewhere.
fn agreeing(r: &Rule, sources: &[&[Row]]) -> Rule {
    let conf = (0..r.conf.len())
        .map(|i| {
            let agree = sources.iter().all(|s| argmax(&s[i]) == r.class[i]);
            if agree { r.conf[i] } else { 0.0 }
        })
        .collect();
    Rule {
        name: format!("{} ∧ agree", r.name),
        class: r.class.clone(),
        conf,
    }
}

fn report(r: &Rule, truth: &[usize]) {
    let n = truth.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| r.conf[b].total_cmp(&r.conf[a]));
    let mut line = format!("{:<24}", r.name);
    for pct in [5, 10, 20, 30, 40, 50, 100] {
        let k = (n * pct / 100).max(1);
        let right = order[..k].iter().filter(|&&i| r.class[i] == truth[i]).count();
        line += &format!(" {:>6.1}", 100.0 * right as f64 / k as f64);
    }
    for t in [0.5f32, 0.7, 0.8, 0.9, 0.95] {
        let sel: Vec<usize> = (0..n).filter(|&i| r.conf[i] >= t).collect();
        let right = sel.iter().filter(|&&i| r.class[i] == truth[i]).count();
        let prec = if sel.is_empty() {
            f64::NAN
        } else {
            100.0 * right as f64 / sel.len() as f64
        };
        line += &format!("  {:>5.1}/{:<5.1}", 100.0 * sel.len() as f64 / n as f64, prec);
    }
    println!("{line}");
}

fn main() -> Result<()> {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let Some(ckpt) = args.get(1).map(PathBuf::from) else {
        bail!("usage: pseudo_label_quality CHECKPOINT_DIR [max-unlabeled]");
    };
    let max_unlabeled: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(6000);
    let device = Device::Cpu;
    let ck = checkpoint::load(&ckpt, &device)?;
    let mut cfg = ck.state.config.clone();
    let Some(ssl_cfg) = cfg.ssl.clone() else {
        bail!("{}: a supervised run has no unlabeled split to score", ckpt.display());
    };
    // A scratch run directory: prepare_data and run_prototypes write beside what they read.
    let src = run_dir_of(&ckpt);
    let scratch = std::env::temp_dir().join(format!("pseudo-label-quality-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    for f in ["split.json", "calibration.json", "prototypes.json"] {
        if src.join(f).is_file() {
            std::fs::copy(src.join(f), scratch.join(f)).with_context(|| format!("{}", src.join(f).display()))?;
        }
    }
    cfg.data.split_manifest = None;
    let data = prepare_data(&cfg, &scratch)?;
    let protos = run_prototypes(&cfg, &scratch)?;
    let mv = build_model(&cfg, &device, protos.as_ref().map(|p| p.dim))?;
    set_vars(&mv.varmap, &ck.weights, &ckpt)?;
    let labeled_y = hard_labels(data.labeled.targets.as_ref().context("labeled targets")?);
    let dim = protos.as_ref().map_or(0, |p| p.dim);
    let mut ssl = SslState::new(
        SslConfig { ..ssl_cfg },
        protos.as_ref().map(|p| p.tensor(&device)).transpose()?,
        mv.proj,
        protos.as_ref().map(|_| InstanceMemory::new(dim, labeled_y.clone(), 0)),
    );
    let fwd = |s: &ImageStore| forward_store(mv.model.as_ref(), s, cfg.norm, 64, &device);
    // The buffer's labeled slots, as the run prefills them.
    if let (Some(proj), Some(mem)) = (&ssl.proj, ssl.memory.as_mut()) {
        let (_, e) = fwd(&data.labeled)?;
        let z = proj.forward(&e)?.flatten_all()?.to_vec1::<f32>()?;
        mem.update_labeled(&(0..labeled_y.len()).collect::<Vec<_>>(), &z);
    }
    let (ustore, kept) = data.unlabeled.context("no unlabeled split")?;
    let n = ustore.len().min(max_unlabeled);
    // An even spread over the split, not its first (class-sorted) faces.
    let pick: Vec<usize> = (0..n).map(|i| i * ustore.len() / n).collect();
    let sub = ImageStore {
        images: Arc::new(pick.iter().map(|&i| ustore.images[i].clone()).collect()),
        targets: None,
    };
    let truth: Vec<usize> = pick
        .iter()
        .map(|&i| {
            data.split
                .analysis
                .get(kept[i])
                .map(|e| e as usize)
                .context("hidden label")
        })
        .collect::<Result<_>>()?;
    let (logits, emb) = fwd(&sub)?;
    let u = ssl.holdout_scores(&logits, &emb)?;
    let (Some(text), Some(ins)) = (&u.text, &u.ins) else {
        bail!("{}: the run has no text head / buffer", ckpt.display());
    };
    let cfg_t = [1.0, ssl.cfg.tau_t, ssl.cfg.tau_i];
    let cal_t = match &data.calibration {
        Some(store) => {
            let (l, e) = fwd(store)?;
            let y = hard_labels(store.targets.as_ref().context("hold-out targets")?);
            let h = ssl.holdout_scores(&l, &e)?;
            let fit = |r: &[Row]| fit_temperature(r, &y, 0.01, 20.0).unwrap_or(1.0);
            Some([
                fit(&h.sem),
                fit(h.text.as_deref().unwrap_or_default()),
                fit(h.ins.as_deref().unwrap_or_default()),
            ])
        }
        None => None,
    };
    println!(
        "{}: {} unlabeled faces (of {}), {} labeled; temperatures configured {:?}, fitted on the hold-out {:?}",
        ckpt.display(),
        n,
        ustore.len(),
        labeled_y.len(),
        cfg_t,
        cal_t
    );
    let acc =
        |rows: &[Row]| 100.0 * rows.iter().zip(&truth).filter(|(r, t)| argmax(*r) == **t).count() as f64 / n as f64;
    println!(
        "accuracy on them: sem {:.1} text {:.1} ins {:.1}",
        acc(&u.sem),
        acc(text),
        acc(ins)
    );
    println!(
        "{:<24} precision of the top 5/10/20/30/40/50/100 %         coverage/precision at 0.5, 0.7, 0.8, 0.9, 0.95",
        "rule"
    );
    let mut rules = Vec::new();
    for (tag, t) in [("cfg", Some(cfg_t)), ("cal", cal_t)] {
        let Some(t) = t else { continue };
        let (s, x, i) = (scaled(&u.sem, t[0]), scaled(text, t[1]), scaled(ins, t[2]));
        let sem = rule(&format!("p_sem/{tag}"), &s);
        let fused = rule(&format!("p̂/{tag}"), &mean3(&s, &x, &i));
        rules.push(agreeing(&sem, &[&x, &i]));
        rules.push(agreeing(&fused, &[&s, &x, &i]));
        rules.push(sem);
        rules.push(fused);
        rules.push(rule(&format!("p_text/{tag}"), &x));
        rules.push(rule(&format!("p_ins/{tag}"), &i));
    }
    // FixMatch's admission (raw p_sem's confidence) with the calibrated fusion's label: what the
    // fusion adds at FixMatch's coverage.
    if let Some(t) = cal_t {
        let fused = rule(
            "p̂/cal label, p_sem/cfg conf",
            &mean3(&scaled(&u.sem, t[0]), &scaled(text, t[1]), &scaled(ins, t[2])),
        );
        let sem = rule("", &scaled(&u.sem, cfg_t[0]));
        rules.push(Rule {
            conf: sem.conf,
            ..fused
        });
    }
    for r in &rules {
        report(r, &truth);
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}
