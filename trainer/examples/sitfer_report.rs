//! Summarises the runs of `experiments/sitfer.sh` into the tables of docs/results/sitfer.md
//! (printed as Markdown) and two pictures: accuracy vs labels per class, and pseudo-label
//! precision and mask rate over training.
//!
//! Usage: cargo run --release -p sitfer-trainer --example sitfer_report -- RUNS_DIR OUT_DIR

use sitfer_trainer::plot::{Series, line_chart};
use sitfer_trainer::train::checkpoint::EpochRecord;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Run {
    name: String,
    history: Vec<EpochRecord>,
}

impl Run {
    fn best(&self) -> f64 {
        self.history.iter().map(|r| r.val_accuracy).fold(0.0, f64::max)
    }
    fn last(&self) -> &EpochRecord {
        self.history.last().expect("non-empty history")
    }
    /// Mean over the run's intervals of an SSL statistic.
    fn mean_ssl(&self, f: impl Fn(&sitfer_trainer::train::checkpoint::SslRecord) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .history
            .iter()
            .filter_map(|r| r.ssl.as_ref().and_then(&f))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

fn load(dir: &Path) -> Option<Run> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let history: Vec<EpochRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("metrics.jsonl line"))
        .collect();
    (!history.is_empty()).then(|| Run {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        history,
    })
}

/// mean ± half the range (with 2 seeds: the two values are mean ± spread).
fn mean_spread(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, (hi - lo) / 2.0)
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}", 100.0 * x)).unwrap_or_else(|| "–".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs_dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("runs/sitfer"));
    let out_dir = PathBuf::from(args.get(2).map(String::as_str).unwrap_or("docs/results"));
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    for entry in std::fs::read_dir(&runs_dir).expect("runs directory") {
        let p = entry.unwrap().path();
        if p.is_dir()
            && let Some(r) = load(&p)
        {
            runs.insert(r.name.clone(), r);
        }
    }
    let methods = ["supervised", "fixmatch", "sitfer"];
    let mut labels: Vec<usize> = Vec::new();
    // (method, labels) -> runs over seeds
    let mut cells: BTreeMap<(String, usize), Vec<&Run>> = BTreeMap::new();
    for r in runs.values() {
        let parts: Vec<&str> = r.name.split('-').collect();
        if parts.len() == 3 && methods.contains(&parts[0]) {
            let l: usize = parts[1].parse().unwrap();
            if !labels.contains(&l) {
                labels.push(l);
            }
            cells.entry((parts[0].to_string(), l)).or_default().push(r);
        }
    }
    labels.sort();

    println!("### Matrix: best validation accuracy (%), mean ± half-range over seeds\n");
    print!("| method |");
    for l in &labels {
        print!(" {l} labels/class |");
    }
    println!();
    print!("|---|");
    for _ in &labels {
        print!("---|");
    }
    println!();
    let mut points: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for m in methods {
        print!("| {m} |");
        for &l in &labels {
            match cells.get(&(m.to_string(), l)) {
                Some(rs) => {
                    let (mean, spread) = mean_spread(&rs.iter().map(|r| r.best()).collect::<Vec<_>>());
                    points.entry(m).or_default().push((l as f64, 100.0 * mean));
                    print!(" {:.2} ± {:.2} (n={}) |", 100.0 * mean, 100.0 * spread, rs.len());
                }
                None => print!(" – |"),
            }
        }
        println!();
    }

    println!("\n### Every run\n");
    println!(
        "| run | best val acc | last val acc | last fused p̂ val acc | mask rate (mean) | pseudo-label precision (mean) | p̂ acc on unlabeled (mean) | p_sem / p_text / p_ins acc (last) | wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in runs.values() {
        let last = r.last();
        let src = last
            .ssl
            .as_ref()
            .map(|s| {
                format!(
                    "{} / {} / {}",
                    pct(s.sem_accuracy),
                    pct(s.text_accuracy),
                    pct(s.ins_accuracy)
                )
            })
            .unwrap_or_else(|| "–".into());
        println!(
            "| {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.0} s |",
            r.name,
            100.0 * r.best(),
            100.0 * last.val_accuracy,
            pct(last.val_fused_accuracy),
            pct(r.mean_ssl(|s| s.mask_rate)),
            pct(r.mean_ssl(|s| s.pseudo_precision)),
            pct(r.mean_ssl(|s| s.fused_accuracy)),
            src,
            last.elapsed_seconds
        );
    }

    std::fs::create_dir_all(&out_dir).unwrap();
    let series: Vec<Series> = points
        .iter()
        .map(|(m, p)| Series {
            name: m,
            points: p.clone(),
        })
        .collect();
    let p = out_dir.join("sitfer-accuracy-vs-labels.png");
    line_chart(
        &p,
        "FER2013 val accuracy vs labels per class (mean over seeds)",
        "labels per class",
        "best val accuracy (%)",
        &series,
        None,
    )
    .unwrap();
    eprintln!("wrote {}", p.display());

    // Pseudo-labels over training, seed 0 at the smallest label budget.
    if let Some(&l) = labels.first() {
        type Stat = fn(&sitfer_trainer::train::checkpoint::SslRecord) -> Option<f64>;
        let stats: [(&str, Stat); 2] = [("precision", |x| x.pseudo_precision), ("mask rate", |x| x.mask_rate)];
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for m in ["fixmatch", "sitfer"] {
            if let Some(r) = runs.get(&format!("{m}-{l}-s0")) {
                for (what, f) in stats {
                    let pts = r
                        .history
                        .iter()
                        .filter_map(|h| h.ssl.as_ref().and_then(f).map(|v| (h.step as f64, 100.0 * v)))
                        .collect();
                    curves.push((format!("{m} {what}"), pts));
                }
            }
        }
        let s: Vec<Series> = curves
            .iter()
            .map(|(n, p)| Series {
                name: n,
                points: p.clone(),
            })
            .collect();
        let p = out_dir.join("sitfer-pseudo-labels.png");
        line_chart(
            &p,
            &format!("Pseudo-labels at {l} labels/class, seed 0 (vs hidden labels)"),
            "step",
            "%",
            &s,
            Some((0.0, 100.0)),
        )
        .unwrap();
        eprintln!("wrote {}", p.display());
    }
}
