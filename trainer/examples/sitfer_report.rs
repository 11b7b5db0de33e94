//! Summarises the runs of `experiments/sitfer.sh` (Protocol 1) or `experiments/sitfer2.sh`
//! (Protocol 2) into the tables of docs/results/sitfer.md (printed as Markdown), one CSV row per
//! run, and two pictures: accuracy vs labels per class, and the pseudo-labels over training.
//!
//! Usage: cargo run --release -p sitfer-trainer --example sitfer_report -- RUNS_DIR OUT_DIR
//!        [PREFIX] [--primary last|best]
//! Runs are directories named `METHOD-LABELS-sSEED` (`warm-*` are the warm-ups). The primary
//! metric is p_sem's val accuracy at the last step (Protocol 2's rule) or the best over the
//! evaluations (Protocol 1's); files are written as OUT_DIR/PREFIX-*.

use sitfer_trainer::plot::{Series, line_chart};
use sitfer_trainer::train::checkpoint::{EpochRecord, SslRecord};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

struct Run {
    name: String,
    method: String,
    labels: usize,
    seed: u64,
    history: Vec<EpochRecord>,
}

impl Run {
    fn best(&self) -> f64 {
        self.history.iter().map(|r| r.val_accuracy).fold(0.0, f64::max)
    }
    fn best_fused(&self) -> Option<f64> {
        self.history
            .iter()
            .filter_map(|r| r.val_fused_accuracy)
            .reduce(f64::max)
    }
    fn last(&self) -> &EpochRecord {
        self.history.last().expect("non-empty history")
    }
    /// Mean over the run's intervals of an SSL statistic.
    fn mean_ssl(&self, f: impl Fn(&SslRecord) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .history
            .iter()
            .filter_map(|r| r.ssl.as_ref().and_then(&f))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
    /// Precision of all pseudo-labels admitted over the run: the intervals' precisions weighted
    /// by their mask rates (the share of the run's admissions each interval made).
    fn pooled_precision(&self) -> Option<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        for s in self.history.iter().filter_map(|r| r.ssl.as_ref()) {
            if let (Some(m), Some(p)) = (s.mask_rate, s.pseudo_precision) {
                num += m * p;
                den += m;
            }
        }
        (den > 0.0).then(|| num / den)
    }
}

/// `METHOD-LABELS-sSEED`, the method possibly with hyphens (`supervised-9`, `ablation-no-ins`).
fn parse_name(name: &str) -> Option<(String, usize, u64)> {
    let mut parts = name.rsplitn(3, '-');
    let seed = parts.next()?.strip_prefix('s')?.parse().ok()?;
    let labels = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_string(), labels, seed))
}

fn load(dir: &Path) -> Option<Run> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let (method, labels, seed) = parse_name(&name)?;
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let history: Vec<EpochRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("metrics.jsonl line"))
        .collect();
    (!history.is_empty()).then_some(Run {
        name,
        method,
        labels,
        seed,
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

/// The order methods appear in: the baselines, SIT-FER, then anything else by name.
fn method_rank(m: &str) -> (usize, String) {
    let known = ["supervised", "supervised-9", "fixmatch", "sitfer"];
    (known.iter().position(|k| *k == m).unwrap_or(known.len()), m.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let primary_last = match args.iter().position(|a| a == "--primary") {
        Some(i) => args.get(i + 1).map(String::as_str) == Some("last"),
        None => true,
    };
    let pos: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--primary"))
        .map(|(_, a)| a)
        .collect();
    let runs_dir = PathBuf::from(pos.first().map_or("runs/sitfer2", |s| s.as_str()));
    let out_dir = PathBuf::from(pos.get(1).map_or("docs/results", |s| s.as_str()));
    let prefix = pos.get(2).map_or("sitfer", |s| s.as_str());
    let primary = |r: &Run| if primary_last { r.last().val_accuracy } else { r.best() };
    let primary_name = if primary_last { "last-step" } else { "best" };

    let mut runs: Vec<Run> = std::fs::read_dir(&runs_dir)
        .expect("runs directory")
        .filter_map(|e| load(&e.ok()?.path()))
        .filter(|r| r.method != "warm")
        .collect();
    runs.sort_by_key(|r| (method_rank(&r.method), r.labels, r.seed));
    let mut labels: Vec<usize> = runs.iter().map(|r| r.labels).collect();
    labels.sort();
    labels.dedup();
    let mut methods: Vec<&str> = runs.iter().map(|r| r.method.as_str()).collect();
    methods.dedup();

    println!(
        "### Matrix: {primary_name} val accuracy of p_sem (%), mean ± half-range over seeds (selected on val: no)\n"
    );
    let mut head = String::from("| method |");
    let mut rule = String::from("|---|");
    for l in &labels {
        let _ = write!(head, " {l} labels/class |");
        rule.push_str("---|");
    }
    println!("{head}\n{rule}");
    let mut points: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for &m in &methods {
        let mut row = format!("| {m} |");
        for &l in &labels {
            let v: Vec<f64> = runs
                .iter()
                .filter(|r| r.method == m && r.labels == l)
                .map(primary)
                .collect();
            if v.is_empty() {
                row.push_str(" – |");
                continue;
            }
            let (mean, spread) = mean_spread(&v);
            points.entry(m).or_default().push((l as f64, 100.0 * mean));
            let _ = write!(row, " {:.2} ± {:.2} (n={}) |", 100.0 * mean, 100.0 * spread, v.len());
        }
        println!("{row}");
    }

    println!("\n### Every run (best: the best of the evaluations every 50 steps, selected on val)\n");
    println!(
        "| run | steps | last val p_sem | last val p̂ | best val p_sem | best val p̂ | EMA teacher's last val p_sem | mask rate (mean) | pseudo-label precision (pooled) | p_sem / p_text / p_ins acc on unlabeled (last) | τ sem / text / ins, threshold (last) | wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut csv = String::from(
        "method,labels,seed,steps,best_val_p_sem,best_val_p_hat,mask_rate,pseudo_label_precision,last_val_p_sem,last_val_p_hat\n",
    );
    let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for r in &runs {
        let last = r.last();
        let ssl = last.ssl.as_ref();
        let src = ssl
            .map(|s| {
                format!(
                    "{} / {} / {}",
                    pct(s.sem_accuracy),
                    pct(s.text_accuracy),
                    pct(s.ins_accuracy)
                )
            })
            .unwrap_or_else(|| "–".into());
        let cal = ssl
            .and_then(|s| s.temperatures.map(|t| (t, s.mean_threshold)))
            .map(|(t, th)| format!("{:.2} / {:.3} / {:.3}, {th:.2}", t[0], t[1], t[2]))
            .unwrap_or_else(|| "–".into());
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            r.name,
            last.step,
            100.0 * last.val_accuracy,
            pct(last.val_fused_accuracy),
            100.0 * r.best(),
            pct(r.best_fused()),
            last.val_teacher_accuracy
                .map(|x| format!("{:.2}", 100.0 * x))
                .unwrap_or_else(|| "–".into()),
            pct(r.mean_ssl(|s| s.mask_rate)),
            pct(r.pooled_precision()),
            src,
            cal,
            last.elapsed_seconds
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.4},{},{},{},{:.4},{}",
            r.method,
            r.labels,
            r.seed,
            last.step,
            r.best(),
            num(r.best_fused()),
            num(r.mean_ssl(|s| s.mask_rate)),
            num(r.pooled_precision()),
            last.val_accuracy,
            num(last.val_fused_accuracy)
        );
    }

    std::fs::create_dir_all(&out_dir).unwrap();
    let p = out_dir.join(format!("{prefix}-matrix.csv"));
    std::fs::write(&p, csv).unwrap();
    eprintln!("wrote {}", p.display());
    let series: Vec<(String, Vec<(f64, f64)>)> = points.iter().map(|(m, p)| (m.to_string(), p.clone())).collect();
    chart(
        &out_dir.join(format!("{prefix}-accuracy-vs-labels.png")),
        &format!("FER2013 val accuracy of p_sem ({primary_name}) vs labels per class, mean over seeds"),
        "labels per class",
        "val accuracy (%)",
        &series,
        None,
    );

    // Curves over training at the smallest label budget, for the first seed FixMatch ran on (the
    // protocols' seeds differ): val p_sem of every method, and each SSL method's pseudo-labels.
    if let Some(&l) = labels.first() {
        let at_l = |r: &&Run| r.labels == l && !r.method.starts_with("ablation");
        let seed = runs
            .iter()
            .filter(at_l)
            .filter(|r| r.method == "fixmatch")
            .map(|r| r.seed)
            .min()
            .or_else(|| runs.iter().filter(at_l).map(|r| r.seed).min())
            .unwrap_or(0);
        let shown: Vec<&Run> = runs.iter().filter(at_l).filter(|r| r.seed == seed).collect();
        let val_curves: Vec<(String, Vec<(f64, f64)>)> = shown
            .iter()
            .map(|r| {
                let pts = r
                    .history
                    .iter()
                    .map(|h| (h.step as f64, 100.0 * h.val_accuracy))
                    .collect();
                (r.method.clone(), pts)
            })
            .collect();
        chart(
            &out_dir.join(format!("{prefix}-val-curves.png")),
            &format!("FER2013 val accuracy of p_sem during training, {l} labels/class, seed {seed}"),
            "step",
            "val accuracy (%)",
            &val_curves,
            None,
        );
        type Stat = fn(&SslRecord) -> Option<f64>;
        let stats: [(&str, Stat); 2] = [("precision", |x| x.pseudo_precision), ("mask rate", |x| x.mask_rate)];
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for r in shown.iter().filter(|r| {
            r.history
                .iter()
                .any(|h| h.ssl.as_ref().is_some_and(|x| x.mask_rate.is_some()))
        }) {
            for (what, f) in stats {
                let pts = r
                    .history
                    .iter()
                    .filter_map(|h| h.ssl.as_ref().and_then(f).map(|v| (h.step as f64, 100.0 * v)))
                    .collect();
                curves.push((format!("{} {what}", r.method), pts));
            }
        }
        chart(
            &out_dir.join(format!("{prefix}-pseudo-labels.png")),
            &format!("Pseudo-labels at {l} labels/class, seed {seed} (vs hidden labels)"),
            "step",
            "%",
            &curves,
            Some((0.0, 100.0)),
        );
    }
}

/// One line chart of named curves.
fn chart(path: &Path, title: &str, x: &str, y: &str, curves: &[(String, Vec<(f64, f64)>)], range: Option<(f64, f64)>) {
    let s: Vec<Series> = curves
        .iter()
        .map(|(n, p)| Series {
            name: n,
            points: p.clone(),
        })
        .collect();
    line_chart(path, title, x, y, &s, range).unwrap();
    eprintln!("wrote {}", path.display());
}
