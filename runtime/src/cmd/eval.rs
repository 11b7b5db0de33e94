//! `sitfer eval`: accuracy of a bundle on a labeled ImageFolder (`<class>/*.png`, or
//! `<split>/<class>/`), p_sem and the fused p̂ side by side.

use super::bundle_arg;
use super::model_args::{Faces, ModelArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use sitfer_runtime::fusion::{Probs, argmax};
use sitfer_runtime::image_files::image_files;
use sitfer_runtime::instance_buffer::{InstanceBuffer, MAX_QUEUE_PER_CLASS, space_id};
use sitfer_runtime::labels::{ALL, LabelMeaning, NUM_CLASSES, lookup_label_name};
use sitfer_runtime::online::head_path;
use sitfer_runtime::pipeline::Recognizer;
use sitfer_runtime::source::Frame;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// ImageFolder root: `<class>/*` or `<split>/<class>/*`.
    #[arg(long)]
    pub data: PathBuf,
    /// Split folder under --data (default: `val`, else `test`, when --data has no class folders).
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate at most this many images (spread over classes in file order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Faces per model run with --faces whole-frame.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Also write a copy of the bundle whose admission threshold (`fusion.threshold`) is the
    /// lowest p̂ at which these labeled faces reach --target-precision. Calibrate on validation
    /// data, never on what you report.
    #[arg(long, requires = "bundle")]
    pub calibrate_out: Option<PathBuf>,
    /// A device buffer file (`sitfer run --buffer`): its queued entries join the seed for p_ins.
    #[arg(long)]
    pub buffer: Option<PathBuf>,
    /// Precision of the admitted faces the calibrated threshold must reach.
    #[arg(long, default_value_t = 0.9)]
    pub target_precision: f64,
    /// Faces that must reach the calibrated threshold for it to count.
    #[arg(long, default_value_t = 50)]
    pub min_admitted: usize,
    /// Stop at the first image that cannot be read (default: skip it with a warning naming the
    /// file; the skipped files are counted and listed after the results, and leave the accuracy).
    #[arg(long)]
    pub fail_on_unreadable: bool,
    /// Also write one CSV row per image (file, true class, and the class each source predicts;
    /// empty when no face was found): two runs' rows can then be compared face by face, which
    /// equal accuracies alone do not show.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

/// The folder evaluated, (file, class) of every image in it, and the folders skipped (labels
/// outside the 7 classes).
pub struct Listing {
    pub dir: PathBuf,
    pub items: Vec<(PathBuf, usize)>,
    pub skipped: Vec<String>,
}

pub fn list(root: &Path, split: Option<&str>) -> Result<Listing> {
    let is_class_dir = |d: &Path| {
        d.is_dir()
            && d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| lookup_label_name(n).is_some())
    };
    let has_classes = |d: &Path| {
        std::fs::read_dir(d)
            .map(|it| it.flatten().any(|e| is_class_dir(&e.path())))
            .unwrap_or(false)
    };
    let dir = match split {
        Some(s) => root.join(s),
        None if has_classes(root) => root.to_path_buf(),
        None => ["val", "test"]
            .iter()
            .map(|s| root.join(s))
            .find(|d| has_classes(d))
            .with_context(|| {
                format!(
                    "{}: no class folders, nor val/ or test/ with class folders",
                    root.display()
                )
            })?,
    };
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let class = match lookup_label_name(&name) {
            Some(LabelMeaning::Class(e)) => e.index(),
            Some(LabelMeaning::OutsideSet(o)) => {
                skipped.push(format!("{name} ({})", o.name()));
                continue;
            }
            None => bail!("{}: folder `{name}` is not a known label", d.display()),
        };
        items.extend(image_files(&d, false)?.into_iter().map(|f| (f, class)));
    }
    if items.is_empty() {
        bail!("{}: no images in class folders", dir.display());
    }
    Ok(Listing { dir, items, skipped })
}

/// `k` indices spread evenly over `0..n`, each at the start of its stride (all of them when
/// `k >= n`).
pub(super) fn spread_indices(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

/// Every k-th item so that a limit keeps all classes.
fn spread<T: Clone>(items: &[T], limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(n) => spread_indices(items.len(), n)
            .into_iter()
            .map(|i| items[i].clone())
            .collect(),
        None => items.to_vec(),
    }
}

pub fn frame_of(path: &Path) -> Result<Frame> {
    let img = sitfer_runtime::source::read_rgb(path)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("decoding {}", path.display()))?;
    Ok(Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    })
}

#[derive(Default)]
struct Tally {
    confusion: [[u64; NUM_CLASSES]; NUM_CLASSES],
    correct: u64,
    total: u64,
}

impl Tally {
    fn add(&mut self, truth: usize, p: Option<&Probs>) {
        self.total += 1;
        if let Some(p) = p {
            let c = argmax(p).0;
            self.confusion[truth][c] += 1;
            self.correct += (c == truth) as u64;
        }
    }
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    // The online refit's head beside the buffer, if `sitfer run --online-refit` left one: what
    // the device learned is the buffer and that head together.
    let with_head = a.buffer.as_deref().is_some_and(|p| head_path(p).exists());
    let (bundle, mut model, base) = if with_head {
        let (b, m, h) = bundle_arg::open_with_head(a.model.bundle.as_deref(), a.model.precision)?;
        (b, m, Some(h))
    } else {
        let (b, m) = bundle_arg::open(a.model.bundle.as_deref(), a.model.precision)?;
        (b, m, None)
    };
    model.set_mirror(a.model.mirror);
    let Listing { dir, items, skipped } = list(&a.data, a.split.as_deref())?;
    let items = spread(&items, a.limit);
    if !skipped.is_empty() {
        eprintln!("skipped folders outside the 7 classes: {}", skipped.join(", "));
    }
    let mut cfg = a.model.recognizer_config(&bundle);
    cfg.continual = false;
    let detector = a.model.detector()?;
    let detector_name = detector.name();
    let mut buffer = InstanceBuffer::from_seed(&bundle.buffer, MAX_QUEUE_PER_CLASS);
    if let Some(p) = &a.buffer {
        buffer.load(p, &space_id(&bundle.manifest))?;
        eprintln!(
            "device buffer {}: queued per class {:?}",
            p.display(),
            buffer.queued_counts()
        );
    }
    let mut rec = Recognizer::new(&bundle, model, detector, buffer, cfg);
    if let (Some(p), Some(base)) = (&a.buffer, &base) {
        let head = super::online_args::load_state(p, &bundle, base)?.and_then(|s| s.head);
        eprintln!(
            "online head {}: {}",
            head_path(p).display(),
            if head.is_some() {
                "refitted head applied"
            } else {
                "no refitted head yet (pool only)"
            }
        );
        rec.set_head(head);
    }
    let (mut sem, mut fused, mut text, mut ins) =
        (Tally::default(), Tally::default(), Tally::default(), Tally::default());
    let mut no_face = [0u64; NUM_CLASSES];
    // (top p̂, whether its class is right) per face: how far the admission threshold can be trusted.
    let mut confidence: Vec<(f32, bool)> = Vec::new();
    let t0 = Instant::now();
    let batch = a.batch.max(1);
    let whole_frame = a.model.faces == Faces::WholeFrame;
    // "decoding FILE: why" of each image skipped.
    let mut unreadable: Vec<String> = Vec::new();
    let mut predictions = match &a.predictions {
        Some(p) => {
            let mut w =
                std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?);
            writeln!(w, "{PREDICTIONS_HEADER}")?;
            Some(w)
        }
        None => None,
    };
    for chunk in items.chunks(if whole_frame { batch } else { 1 }) {
        let mut readable = Vec::with_capacity(chunk.len());
        let mut frames = Vec::with_capacity(chunk.len());
        for (path, class) in chunk {
            match frame_of(path) {
                Ok(f) => {
                    frames.push(f);
                    readable.push((path, *class));
                }
                Err(e) if a.fail_on_unreadable => {
                    return Err(e.context("--fail-on-unreadable: stopping at the first unreadable image"));
                }
                Err(e) => {
                    log::warn!("{e:#}: skipped");
                    unreadable.push(format!("{e:#}"));
                }
            }
        }
        for (&(path, class), f) in readable.iter().zip(rec.fuse_single_faces(&frames, whole_frame)?) {
            if let Some(w) = predictions.as_mut() {
                let p = f.as_ref();
                let row = prediction_row(
                    path,
                    class,
                    [
                        p.map(|f| &f.p_sem),
                        p.and_then(|f| f.p_text.as_ref()),
                        p.map(|f| &f.p_ins),
                        p.map(|f| &f.p_hat),
                    ],
                );
                writeln!(w, "{row}")?;
            }
            match f {
                Some(f) => {
                    sem.add(class, Some(&f.p_sem));
                    fused.add(class, Some(&f.p_hat));
                    let (top, conf) = argmax(&f.p_hat);
                    confidence.push((conf, top == class));
                    text.add(class, f.p_text.as_ref());
                    ins.add(class, Some(&f.p_ins));
                }
                None => {
                    no_face[class] += 1;
                    for t in [&mut sem, &mut fused, &mut text, &mut ins] {
                        t.add(class, None);
                    }
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(mut w) = predictions {
        w.flush()?;
    }
    let scored = items.len() - unreadable.len();
    if scored == 0 {
        bail!(
            "{}: none of the {} images could be read (first: {})",
            dir.display(),
            items.len(),
            unreadable[0]
        );
    }
    println!(
        "eval {} ({} images{}, faces: {}{}, {:.1} images/s)",
        dir.display(),
        scored,
        if unreadable.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable skipped", unreadable.len())
        },
        detector_name,
        if a.model.mirror { ", mirrored and averaged" } else { "" },
        scored as f64 / secs
    );
    let missing: u64 = no_face.iter().sum();
    if a.model.faces == Faces::Detect {
        println!(
            "no face detected: {missing} of {scored} ({:.1}%), counted as errors",
            100.0 * missing as f64 / scored as f64
        );
    }
    println!("| source | accuracy |");
    println!("|---|---|");
    println!("| p_sem (classifier) | {:.4} |", sem.accuracy());
    if bundle.prototypes.is_some() {
        println!("| p_text (prototypes) | {:.4} |", text.accuracy());
    }
    println!("| p_ins (seed buffer) | {:.4} |", ins.accuracy());
    println!("| p̂ (fused) | {:.4} |", fused.accuracy());
    println!();
    println!("| class | images | recall p_sem | recall p̂ |");
    println!("|---|---|---|---|");
    for (c, e) in ALL.iter().enumerate() {
        let n = sem.confusion[c].iter().sum::<u64>() + no_face[c];
        let r = |t: &Tally| {
            if n == 0 {
                "-".to_string()
            } else {
                format!("{:.3}", t.confusion[c][c] as f64 / n as f64)
            }
        };
        println!("| {} | {n} | {} | {} |", e.name(), r(&sem), r(&fused));
    }
    println!();
    print_calibration(&confidence, bundle.manifest.fusion.threshold);
    if let Some(out) = &a.calibrate_out {
        calibrate(&bundle, &dir, out, &confidence, a.target_precision, a.min_admitted)?;
    }
    println!();
    println!("confusion matrix of p̂ (rows: true, columns: predicted)");
    print!("{:>10}", "");
    for e in ALL {
        print!("{:>9}", e.name());
    }
    println!();
    for (c, e) in ALL.iter().enumerate() {
        print!("{:>10}", e.name());
        for v in fused.confusion[c] {
            print!("{v:>9}");
        }
        println!();
    }
    print_unreadable(&unreadable);
    Ok(())
}

/// The files skipped as unreadable, after the results so they are not missed: how many, and
/// each with the reason (the first 20; the log has them all).
const PREDICTIONS_HEADER: &str = "file,truth,p_sem,p_text,p_ins,p_hat";

/// One `--predictions` row: the class names, an empty field where a source gave nothing (no
/// face, or no prototypes in the bundle).
fn prediction_row(path: &Path, truth: usize, sources: [Option<&Probs>; 4]) -> String {
    let mut row = format!("{},{}", csv_field(&path.display().to_string()), ALL[truth].name());
    for p in sources {
        row.push(',');
        if let Some(p) = p {
            row.push_str(ALL[argmax(p).0].name());
        }
    }
    row
}

/// Quoted only when it has to be: file names rarely hold a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn print_unreadable(unreadable: &[String]) {
    if unreadable.is_empty() {
        return;
    }
    println!();
    println!(
        "unreadable: {} images skipped, not scored (--fail-on-unreadable stops at the first):",
        unreadable.len()
    );
    for why in unreadable.iter().take(20) {
        println!("  {why}");
    }
    if unreadable.len() > 20 {
        println!("  … and {} more", unreadable.len() - 20);
    }
}

/// Coverage and precision of the faces whose top p̂ reaches each threshold: what continual
/// pseudo-labelling would admit at the bundle's threshold, and how often it would be right.
fn print_calibration(conf: &[(f32, bool)], manifest_threshold: f32) {
    println!("| p̂ threshold | faces at or above | share | precision |");
    println!("|---|---|---|---|");
    let mut ts = vec![0.3f32, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
    if !ts.iter().any(|t| (t - manifest_threshold).abs() < 1e-6) {
        ts.push(manifest_threshold);
        ts.sort_by(f32::total_cmp);
    }
    for t in ts {
        let (n, right) = admitted_at(conf, t);
        let precision = if n == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", right as f64 / n as f64)
        };
        let mark = if (t - manifest_threshold).abs() < 1e-6 {
            " (manifest)"
        } else {
            ""
        };
        println!(
            "| {t:.2}{mark} | {n} | {:.3} | {precision} |",
            n as f64 / conf.len().max(1) as f64
        );
    }
}

/// (faces whose top p̂ reaches `t`, of which right).
fn admitted_at(conf: &[(f32, bool)], t: f32) -> (usize, usize) {
    conf.iter()
        .filter(|(c, _)| *c >= t)
        .fold((0, 0), |(n, right), &(_, ok)| (n + 1, right + ok as usize))
}

/// The lowest threshold on a 0.01 grid whose admitted faces (at least `min_admitted`) reach
/// `target` precision: (threshold, admitted, precision).
pub fn calibrated_threshold(conf: &[(f32, bool)], target: f64, min_admitted: usize) -> Option<(f32, usize, f64)> {
    (1..100).map(|k| k as f32 / 100.0).find_map(|t| {
        let (n, right) = admitted_at(conf, t);
        let precision = right as f64 / n.max(1) as f64;
        (n >= min_admitted.max(1) && precision >= target).then_some((t, n, precision))
    })
}

fn calibrate(
    bundle: &sitfer_runtime::bundle::Bundle,
    data: &Path,
    out: &Path,
    conf: &[(f32, bool)],
    target: f64,
    min_admitted: usize,
) -> Result<()> {
    let Some((t, n, precision)) = calibrated_threshold(conf, target, min_admitted) else {
        bail!(
            "no threshold reaches precision {target} on at least {min_admitted} of these {} faces: {} not written",
            conf.len(),
            out.display()
        );
    };
    let note = format!(
        "{t:.2} on {} ({} faces): {n} admitted ({:.1}%) at precision {precision:.3} (target {target})",
        data.display(),
        conf.len(),
        100.0 * n as f64 / conf.len().max(1) as f64
    );
    super::derived_bundle::write_derived(
        bundle,
        out,
        super::derived_bundle::Changes {
            threshold: Some(t),
            provenance: vec![("threshold_calibration".into(), note.clone())],
            ..Default::default()
        },
    )?;
    println!();
    println!("calibrated threshold {note}; wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{PREDICTIONS_HEADER, calibrated_threshold, prediction_row};
    use sitfer_runtime::labels::NUM_CLASSES;
    use std::path::Path;

    #[test]
    fn prediction_rows_name_each_sources_class_and_leave_missing_ones_empty() {
        let one_hot = |c: usize| {
            let mut p = [0.0f32; NUM_CLASSES];
            p[c] = 1.0;
            p
        };
        let (sem, ins, hat) = (one_hot(3), one_hot(6), one_hot(3));
        let row = prediction_row(
            Path::new("val/happy/fer1.png"),
            3,
            [Some(&sem), None, Some(&ins), Some(&hat)],
        );
        assert_eq!(row, "val/happy/fer1.png,happy,happy,,neutral,happy");
        assert_eq!(row.split(',').count(), PREDICTIONS_HEADER.split(',').count());
        let none = prediction_row(Path::new("a,\"b\".png"), 0, [None; 4]);
        assert_eq!(none, "\"a,\"\"b\"\".png\",surprise,,,,");
    }

    #[test]
    fn calibration_picks_the_lowest_threshold_reaching_the_precision() {
        // Right above 0.6, a coin flip below.
        let conf: Vec<(f32, bool)> = (0..1000)
            .map(|i| {
                let c = i as f32 / 1000.0;
                (c, c >= 0.6 || i % 2 == 0)
            })
            .collect();
        let (t, n, p) = calibrated_threshold(&conf, 0.95, 10).unwrap();
        // At t, right answers r = 400 + (600 - 1000 t) / 2 of n = 1000 (1 - t): p ≥ 0.95 from t ≈ 0.57.
        assert!((0.56..=0.58).contains(&t), "{t}");
        assert!(p >= 0.95 && n == conf.iter().filter(|(c, _)| *c >= t).count());
        assert!(
            calibrated_threshold(&conf, 0.95, 1000).is_none(),
            "too few faces reach it"
        );
        assert!(calibrated_threshold(&[(0.9, false); 100], 0.5, 1).is_none());
    }
}
