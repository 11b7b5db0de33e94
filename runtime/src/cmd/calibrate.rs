//! `sitfer calibrate`: a copy of a bundle whose fusion is calibrated on labeled faces that are
//! not the ones it will be scored on (FER2013 train for a bundle reported on FER2013 val): the
//! temperatures of p_sem, p_text and p_ins, the buffer aggregate, a larger class-balanced seed
//! buffer and the admission threshold, all recorded in the manifest's provenance. The maths is
//! `sitfer_runtime::calibrate` over the contract's; the source bundle is only read.

use super::eval::{frame_of, list, spread_indices};
use super::model_args::{Faces, ModelArgs};
use super::{bundle_arg, derived_bundle};
use anyhow::{Context, Result, bail};
use clap::Args;
use sitfer_runtime::bundle::SeedBuffer;
use sitfer_runtime::calibrate::{FusionFit, LabeledFace, Scores, fit_fusion, score};
use sitfer_runtime::fusion::Aggregate;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::labels::{ALL, NUM_CLASSES};
use sitfer_runtime::pipeline::{FaceOutputs, Recognizer};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labeled ImageFolder (`<class>/*`, or `<split>/<class>/*` with --split) of faces the
    /// bundle will not be evaluated on, e.g. ../shared/data/fer2013/train.
    #[arg(long)]
    pub data: PathBuf,
    /// Split folder under --data, when --data has no class folders.
    #[arg(long)]
    pub split: Option<String>,
    /// Faces the temperatures, aggregate and threshold are fitted on, spread evenly over the
    /// folder (so in its class mix, which the threshold's precision depends on).
    #[arg(long, default_value_t = 2100)]
    pub calibration_faces: usize,
    /// Calibrate on exactly these faces instead: a JSON list of image paths relative to --data
    /// (the `calibration.json` a `sitfer-train --calibration-fraction` run writes: labeled faces
    /// its model never trained on). --calibration-faces then caps how many are used.
    #[arg(long)]
    pub calibration_list: Option<PathBuf>,
    /// Seed buffer entries per class, from faces other than the calibration faces (a class
    /// with fewer left gives what it has). 0 keeps the bundle's seed buffer.
    #[arg(long, default_value_t = 128)]
    pub seed_per_class: usize,
    /// Buffer aggregates tried; the one whose fused p̂ has the lowest NLL on the calibration
    /// faces is kept.
    #[arg(long, value_delimiter = ',', default_value = "max,top3,top5,top10,top20")]
    pub aggregates: Vec<Aggregate>,
    /// Fusion weights of p_ins tried with each aggregate (p_sem and p_text keep the bundle's);
    /// the pair whose p̂ has the lowest NLL on the calibration faces is kept. Empty: the
    /// bundle's weight.
    #[arg(long, value_delimiter = ',')]
    pub ins_weights: Vec<f32>,
    /// Precision of the admitted faces the threshold must reach on the calibration faces. The
    /// default bundle's threshold was set for 0.9 (experiments/default-bundle.sh).
    #[arg(long, default_value_t = 0.9)]
    pub target_precision: f64,
    /// Faces per model run.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The calibrated bundle (a new directory; never the source bundle).
    #[arg(long)]
    pub out: PathBuf,
}

/// Which files calibrate and which seed: the calibration faces (`listed`, else spread over the
/// whole listing), then up to `seed_per_class` of each class's remaining files, spread over them.
fn choose(
    items: &[(PathBuf, usize)],
    listed: Option<&[usize]>,
    calibration: usize,
    seed_per_class: usize,
) -> (Vec<usize>, Vec<usize>) {
    let n = items.len();
    let cal: Vec<usize> = match listed {
        Some(l) => spread_indices(l.len(), calibration).into_iter().map(|j| l[j]).collect(),
        None => spread_indices(n, calibration),
    };
    let mut taken = vec![false; n];
    for &i in &cal {
        taken[i] = true;
    }
    // A listed face beyond the cap is still not a seed face: the list is the model's hold-out.
    for &i in listed.unwrap_or(&[]) {
        taken[i] = true;
    }
    let mut seed = Vec::new();
    for c in 0..NUM_CLASSES {
        let rest: Vec<usize> = (0..n).filter(|&i| items[i].1 == c && !taken[i]).collect();
        seed.extend(spread_indices(rest.len(), seed_per_class).into_iter().map(|j| rest[j]));
    }
    (cal, seed)
}

/// The indices into `items` of the faces a calibration list names (paths relative to `root`,
/// in the list's order); a listed face that is not in the listing is an error naming it.
fn listed_indices(list: &Path, root: &Path, items: &[(PathBuf, usize)]) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(list).with_context(|| format!("{}: cannot read", list.display()))?;
    let names: Vec<String> =
        serde_json::from_str(&text).with_context(|| format!("{}: not a JSON list of image paths", list.display()))?;
    let index: HashMap<&Path, usize> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (p, _))| p.strip_prefix(root).ok().map(|r| (r, i)))
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for (k, name) in names.iter().enumerate() {
        let Some(&i) = index.get(Path::new(name)) else {
            bail!(
                "{}: entry {k} ({name}) is not a labeled image under {}",
                list.display(),
                root.display()
            );
        };
        if seen.insert(i) {
            out.push(i);
        }
    }
    if out.is_empty() {
        bail!("{}: the list is empty", list.display());
    }
    Ok(out)
}

/// The model outputs of `items[idx]`, in that order; a file without a face is an error (the
/// labeled folders this reads are face crops or frames with one face).
pub(super) fn outputs(
    rec: &mut Recognizer,
    items: &[(PathBuf, usize)],
    idx: &[usize],
    batch: usize,
    whole_frame: bool,
) -> Result<Vec<FaceOutputs>> {
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(if whole_frame { batch.max(1) } else { 1 }) {
        let frames = chunk
            .iter()
            .map(|&i| frame_of(&items[i].0))
            .collect::<Result<Vec<_>>>()?;
        for (&i, f) in chunk.iter().zip(rec.embed_single_faces(&frames, whole_frame)?) {
            match f {
                Some(f) => out.push(f),
                None => bail!(
                    "{}: no face found (use --faces whole-frame for face crops)",
                    items[i].0.display()
                ),
            }
        }
    }
    Ok(out)
}

fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

fn print_scores(label: &str, s: &Scores) {
    println!(
        "| {label} | {} | {} | {} | {} | {:.4} |",
        pct(s.sem),
        s.text.map_or("-".into(), pct),
        pct(s.ins),
        pct(s.fused),
        s.fused_nll
    );
}

fn print_fit(fit: &FusionFit, before: &Scores, before_new_seed: &Scores) {
    println!("| aggregate | w_ins | τ_i | NLL p_ins | p_ins % | p̂ % | NLL p̂ |");
    println!("|---|---|---|---|---|---|---|");
    for t in &fit.trials {
        let mark = if t.aggregate == fit.fusion.aggregate && t.w_ins == fit.fusion.weights.ins {
            " (chosen)"
        } else {
            ""
        };
        println!(
            "| {}{mark} | {} | {:.4} | {:.4} | {} | {} | {:.4} |",
            t.aggregate,
            t.w_ins,
            t.tau_i,
            t.ins_nll,
            pct(t.scores.ins),
            pct(t.scores.fused),
            t.scores.fused_nll
        );
    }
    println!();
    println!("| on the calibration faces | p_sem % | p_text % | p_ins % | p̂ % | NLL p̂ |");
    println!("|---|---|---|---|---|---|");
    print_scores("bundle as it was", before);
    print_scores("its fusion, new seed buffer", before_new_seed);
    print_scores("calibrated", &fit.scores);
    println!();
}

pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let Some(bundle_dir) = a.model.bundle.clone() else {
        bail!("--bundle is required: the calibrated copy is written from the source bundle's files");
    };
    derived_bundle::check_out(&bundle_dir, &a.out)?;
    if a.aggregates.is_empty() {
        bail!("--aggregates: give at least one (max, topK)");
    }
    let (bundle, mut model) = bundle_arg::open(Some(bundle_dir.as_path()), a.model.precision)?;
    let precision = a
        .model
        .precision
        .unwrap_or_else(|| bundle.manifest.preferred_precision());
    model.set_mirror(a.model.mirror);
    let listing = list(&a.data, a.split.as_deref())?;
    let items = &listing.items;
    let (listed, cal_source) = match &a.calibration_list {
        Some(l) => (
            Some(listed_indices(l, &a.data, items)?),
            format!("listed in {}", l.display()),
        ),
        None => (None, "spread over the folder".to_string()),
    };
    let (cal_idx, seed_idx) = choose(items, listed.as_deref(), a.calibration_faces, a.seed_per_class);
    let mut cfg = a.model.recognizer_config(&bundle);
    cfg.continual = false;
    let whole_frame = a.model.faces == Faces::WholeFrame;
    let old_seed = InstanceBuffer::from_seed(&bundle.buffer, 0);
    let mut rec = Recognizer::new(&bundle, model, a.model.detector()?, old_seed.clone(), cfg);
    let t0 = Instant::now();
    let seed = if a.seed_per_class == 0 {
        bundle.buffer.clone()
    } else {
        let out = outputs(&mut rec, items, &seed_idx, a.batch, whole_frame)?;
        SeedBuffer {
            dim: bundle.manifest.embedding_dim,
            embeddings: out.iter().flat_map(|o| o.embedding.iter().copied()).collect(),
            labels: seed_idx.iter().map(|&i| items[i].1 as u8).collect(),
        }
    };
    let faces: Vec<LabeledFace> = outputs(&mut rec, items, &cal_idx, a.batch, whole_frame)?
        .into_iter()
        .zip(&cal_idx)
        .map(|(o, &i)| LabeledFace {
            logits: o.logits,
            embedding: o.embedding,
            label: items[i].1,
        })
        .collect();
    let model_secs = t0.elapsed().as_secs_f64();
    let seed_counts = seed.class_counts();
    let cal_counts: [usize; NUM_CLASSES] = std::array::from_fn(|c| faces.iter().filter(|f| f.label == c).count());
    println!(
        "calibrate {} with {}: {} calibration faces, seed {} ({:.1} s of model time, {} model)",
        bundle_dir.display(),
        listing.dir.display(),
        faces.len(),
        seed.len(),
        model_secs,
        precision.name()
    );
    println!("| class | calibration faces | seed entries (was) |");
    println!("|---|---|---|");
    let was = bundle.buffer.class_counts();
    for (c, e) in ALL.iter().enumerate() {
        println!("| {} | {} | {} ({}) |", e.name(), cal_counts[c], seed_counts[c], was[c]);
    }
    println!();

    let base = rec.config().fusion;
    let new_seed = InstanceBuffer::from_seed(&seed, 0);
    let protos = bundle.prototypes.as_ref();
    let before = score(&base, &faces, protos, &old_seed);
    let before_new_seed = score(&base, &faces, protos, &new_seed);
    let Some(fit) = fit_fusion(
        &base,
        &faces,
        protos,
        &new_seed,
        &a.aggregates,
        &a.ins_weights,
        a.target_precision,
    ) else {
        bail!(
            "{}: no calibration faces; {} not written",
            listing.dir.display(),
            a.out.display()
        );
    };
    print_fit(&fit, &before, &before_new_seed);
    let f = fit.fusion;
    let data = listing.dir.display();
    let mut provenance = vec![(
        "fusion_calibration".to_string(),
        format!(
            "τ_sem {:.4}, τ_t {:.4}, τ_i {:.4}, aggregate {} and p_ins weight {} (lowest NLL of p̂ among {} × weights {:?}) fitted by NLL on {} labeled faces of {data} {cal_source} ({} model); p̂ on them {}% → {}% (p_sem {}%)",
            f.tau_sem,
            f.tau_t,
            f.tau_i,
            f.aggregate,
            f.weights.ins,
            a.aggregates
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if a.ins_weights.is_empty() {
                vec![f.weights.ins]
            } else {
                a.ins_weights.clone()
            },
            faces.len(),
            precision.name(),
            pct(before.fused),
            pct(fit.scores.fused),
            pct(fit.scores.sem),
        ),
    )];
    if a.seed_per_class > 0 {
        provenance.push((
            "seed_buffer".to_string(),
            format!(
                "up to {} per class ({} in all: {:?}) from {data}, none of them calibration faces ({} model)",
                a.seed_per_class,
                seed.len(),
                seed_counts,
                precision.name()
            ),
        ));
    }
    match fit.admitted {
        Some((n, p)) => {
            provenance.push((
                "threshold_calibration".to_string(),
                format!(
                    "{:.4} on {data} ({} calibration faces): {n} admitted ({:.1}%) at precision {p:.3} (target {})",
                    f.threshold,
                    faces.len(),
                    100.0 * n as f64 / faces.len().max(1) as f64,
                    a.target_precision
                ),
            ));
            println!(
                "threshold {:.4}: {n} of {} faces at precision {p:.3}",
                f.threshold,
                faces.len()
            );
        }
        None => println!(
            "no threshold reaches precision {} on these faces: the bundle's {} is kept",
            a.target_precision, f.threshold
        ),
    }
    derived_bundle::write_derived(
        &bundle,
        &a.out,
        derived_bundle::Changes {
            fusion: Some(f),
            buffer: (a.seed_per_class > 0).then_some(&seed),
            provenance,
            ..Default::default()
        },
    )?;
    println!("wrote {}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(per_class: &[usize]) -> Vec<(PathBuf, usize)> {
        let mut v = Vec::new();
        for (c, &n) in per_class.iter().enumerate() {
            v.extend((0..n).map(|k| (PathBuf::from(format!("{c}/{k}.png")), c)));
        }
        v
    }

    #[test]
    fn calibration_and_seed_faces_are_disjoint_balanced_and_spread() {
        let items = items(&[300, 300, 40, 700, 400, 400, 450]);
        let (cal, seed) = choose(&items, None, 260, 64);
        assert_eq!(cal.len(), 260);
        let mut all: Vec<usize> = cal.iter().chain(&seed).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a face is never both");
        // The calibration faces follow the folder's class mix.
        let happy = cal.iter().filter(|&&i| items[i].1 == 3).count();
        assert!((happy as f64 / 260.0 - 700.0 / 2690.0).abs() < 0.01, "{happy}");
        // The seed takes 64 of each class, or all a small class has left.
        for c in 0..NUM_CLASSES {
            let k = seed.iter().filter(|&&i| items[i].1 == c).count();
            let left = (0..items.len())
                .filter(|i| items[*i].1 == c && !cal.contains(i))
                .count();
            assert_eq!(k, 64.min(left), "class {c}");
        }
        // Spread over the class, not its first files.
        let first_sad = items.iter().position(|it| it.1 == 4).unwrap();
        let last_sad = seed.iter().filter(|&&i| items[i].1 == 4).max().unwrap();
        assert!(*last_sad > first_sad + 300, "{last_sad}");
    }

    #[test]
    fn a_calibration_list_is_used_as_given_and_never_seeds() {
        let items = items(&[30, 30, 30, 30, 30, 30, 30]);
        let listed: Vec<usize> = (0..items.len()).step_by(3).collect();
        let (cal, seed) = choose(&items, Some(&listed), 10_000, 8);
        assert_eq!(cal, listed);
        assert!(seed.iter().all(|i| !listed.contains(i)));
        assert_eq!(seed.len(), 7 * 8);
        // Capped: fewer calibration faces, but the rest of the list still does not seed.
        let (cal, seed) = choose(&items, Some(&listed), 5, 30);
        assert_eq!(cal.len(), 5);
        assert!(seed.iter().all(|i| !listed.contains(i)), "a held-out face seeded");
    }

    #[test]
    fn a_calibration_list_names_the_entry_it_cannot_find() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("data/fer");
        let items: Vec<(PathBuf, usize)> =
            vec![(root.join("train/angry/a.png"), 5), (root.join("train/happy/b.png"), 3)];
        let list = dir.path().join("calibration.json");
        std::fs::write(
            &list,
            r#"["train/happy/b.png", "train/angry/a.png", "train/happy/b.png"]"#,
        )
        .unwrap();
        assert_eq!(listed_indices(&list, root, &items).unwrap(), vec![1, 0]);
        std::fs::write(&list, r#"["train/happy/b.png", "train/sad/c.png"]"#).unwrap();
        let e = listed_indices(&list, root, &items).unwrap_err().to_string();
        assert!(e.contains("entry 1 (train/sad/c.png)"), "{e}");
        std::fs::write(&list, r#"{"not": "a list"}"#).unwrap();
        let e = format!("{:#}", listed_indices(&list, root, &items).unwrap_err());
        assert!(e.contains("not a JSON list"), "{e}");
    }
}
