//! `sitfer adapt`: a bundle adapted to unlabeled footage of the device's own camera, written as a
//! new bundle with its report. The source bundle is only read.

use super::model_args::ModelArgs;
use super::{bundle_arg, derived_bundle};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sitfer_runtime::adapt::{
    self, AdaptConfig, GuardConfig, Objective, Original, RefitConfig, SelectConfig, histogram_png, onnx_head,
};
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::infer::Model;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::pipeline::Recognizer;
use sitfer_runtime::source;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefitObjective {
    PseudoLabels,
    InfoMax,
    /// Information maximisation plus nearest-centroid pseudo-labels (SHOT's full objective).
    Shot,
}

pub const REPORT_FILE: &str = "adaptation.json";
pub const HISTOGRAM_FILE: &str = "adaptation-confidence.png";

#[derive(Debug, Args)]
pub struct AdaptArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Unlabeled footage: a folder of frames or face crops (name order), or a .y4m video.
    #[arg(long)]
    pub footage: PathBuf,
    /// The adapted bundle (a new directory; never the source bundle).
    #[arg(long)]
    pub out: PathBuf,
    /// Frame rate of image folders (for frame times only).
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Confidence of p̂ a face needs to be considered at all. Default 0: the bundle's threshold
    /// is set for live admission and is rarely reached on another domain (on CK+ the default
    /// bundle's p̂ never exceeds 0.65), so ranking within each class (--top-fraction) decides.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f32,
    /// Of the faces predicted as a class, the most confident this fraction become pseudo-labels.
    #[arg(long, default_value_t = AdaptConfig::default().top_fraction)]
    pub top_fraction: f32,
    /// Consecutive confident frames of one track needed (default: 3 for video, 1 for a folder of
    /// face crops with --faces whole-frame, where every image is its own face).
    #[arg(long)]
    pub stable_frames: Option<u32>,
    /// Buffer entries added per class at most.
    #[arg(long, default_value_t = 64)]
    pub per_class: usize,
    /// Buffer entries from one track at most, however short the track (a longer track may give
    /// more: --faces-per-entry).
    #[arg(long, default_value_t = SelectConfig::default().per_track)]
    pub per_track: usize,
    /// A track may give one buffer entry per this many of its faces, beyond --per-track, so one
    /// person filmed for minutes is not held to a passer-by's share (0: --per-track only).
    #[arg(long, default_value_t = SelectConfig::default().faces_per_entry)]
    pub faces_per_entry: u64,
    /// Frames between two admissions from one track [default: 0 offline: the selection thins
    /// the footage's faces; `sitfer run` admits at most one per 15 frames per track].
    #[arg(long)]
    pub min_interval: Option<u64>,
    /// Also refit the classifier head on the footage's features.
    #[arg(long)]
    pub refit: bool,
    /// info-max (information maximisation over every face: confident per-face, diverse overall
    /// predictions; no labels), shot (SHOT: the same plus nearest-centroid pseudo-labels) or
    /// pseudo-labels (self-training on the selected faces). With the default bundle on CK+'s
    /// unseen subjects, over ten fresh splits: info-max +4.1 points (nine gain), shot +3.2 (six
    /// gain, −8 … +13), pseudo-labels −0.9 (docs/results/adapt.md).
    #[arg(long, value_enum, default_value = "info-max")]
    pub refit_objective: RefitObjective,
    /// With info-max and shot: weight of the diversity (marginal entropy) term.
    #[arg(long, default_value_t = 1.0)]
    pub diversity: f32,
    /// With shot: weight of the nearest-centroid pseudo-label cross-entropy (SHOT's 0.3).
    #[arg(long, default_value_t = 0.3)]
    pub shot_beta: f32,
    /// With shot: how often the centroid labels are recomputed over the refit (SHOT: 15).
    #[arg(long, default_value_t = 15)]
    pub shot_relabels: usize,
    #[arg(long, default_value_t = RefitConfig::default().steps)]
    pub refit_steps: usize,
    #[arg(long, default_value_t = RefitConfig::default().lr)]
    pub refit_lr: f32,
    /// Pull of the refitted head toward the bundle's (L2 weight).
    #[arg(long, default_value_t = RefitConfig::default().anchor)]
    pub anchor: f32,
    /// Confident faces needed for the adaptation to go ahead.
    #[arg(long, default_value_t = GuardConfig::default().min_pseudo_labels)]
    pub min_pseudo_labels: usize,
    /// Largest share of the pseudo-labels one class may hold.
    #[arg(long, default_value_t = GuardConfig::default().max_class_share)]
    pub max_class_share: f32,
    /// Smallest entropy of the pseudo-labels' class distribution, as a fraction of ln 7.
    #[arg(long, default_value_t = GuardConfig::default().min_entropy)]
    pub min_entropy: f32,
    /// A class predicted on at least this share of the footage before adaptation must keep a
    /// fifth of it after (above 1: never checked).
    #[arg(long, default_value_t = GuardConfig::default().vanish_share)]
    pub vanish_share: f32,
}

pub fn adapt(a: AdaptArgs) -> Result<()> {
    // The embedded bundle is unpacked for the whole run: its model files are read again when
    // the adapted bundle is written.
    let (_unpacked, dir, name) = match &a.model.bundle {
        Some(p) => (None, p.clone(), p.display().to_string()),
        None => {
            let u = bundle_arg::unpack_embedded()?;
            let d = u.dir.clone();
            (Some(u), d, bundle_arg::EMBEDDED_NAME.to_string())
        }
    };
    derived_bundle::check_out(&dir, &a.out)?;
    let bundle = Bundle::open(&dir).with_context(|| format!("opening bundle {name}"))?;
    let precision = a
        .model
        .precision
        .unwrap_or_else(|| bundle.manifest.preferred_precision());
    let mut model = if a.refit {
        Model::load_with_feature(&bundle, precision).with_context(|| {
            format!(
                "loading the {} model of {name} with its pooled feature",
                precision.name()
            )
        })?
    } else {
        Model::load(&bundle, precision).with_context(|| format!("loading the {} model of {name}", precision.name()))?
    };
    model.set_mirror(a.model.mirror);
    let head = if a.refit {
        let (path, bytes) = bundle.model_bytes(precision)?;
        Some(onnx_head::read_head(&bytes, &path)?)
    } else {
        None
    };

    let mut cfg = a.model.recognizer_config(&bundle);
    let original_fusion = cfg.fusion;
    cfg.continual = true;
    cfg.observe = true;
    cfg.admission = adapt::offline_admission(cfg.admission);
    cfg.admission.threshold = a.threshold;
    if let Some(n) = a.min_interval {
        cfg.admission.min_interval_frames = n;
    }
    if a.model.is_crop_folder(&a.footage) {
        cfg.for_unrelated_faces();
    }
    if let Some(s) = a.stable_frames {
        cfg.admission.stable_frames = s.max(1);
    }
    let threshold = cfg.admission.threshold;
    // The pass fills a private copy of the buffer as `sitfer run` would; its queues are large
    // enough that the selection, not FIFO order, decides what stays.
    let live = InstanceBuffer::from_seed(&bundle.buffer, 4096);
    let detector = a.model.detector()?;
    log::info!("faces: {}", detector.name());
    let mut rec = Recognizer::new(&bundle, model, detector, live, cfg);

    let mut src =
        source::open_path(&a.footage, a.fps).with_context(|| format!("opening footage {}", a.footage.display()))?;
    let total = match (src.frames_left(), a.max_frames) {
        (Some(t), Some(m)) => Some(t.min(m)),
        (t, m) => t.or(m),
    };
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} frames ({per_sec}, eta {eta})")
                .expect("template"),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{msg} {spinner} {pos} frames ({per_sec})").expect("template")),
    };
    bar.set_message("adapting");
    let adapt_cfg = AdaptConfig {
        top_fraction: a.top_fraction,
        select: SelectConfig {
            per_class: a.per_class,
            per_track: a.per_track.max(1),
            faces_per_entry: a.faces_per_entry,
            ..SelectConfig::default()
        },
        refit: a.refit.then_some(RefitConfig {
            objective: match a.refit_objective {
                RefitObjective::PseudoLabels => Objective::PseudoLabels,
                RefitObjective::InfoMax => Objective::InfoMax { diversity: a.diversity },
                RefitObjective::Shot => Objective::Shot {
                    diversity: a.diversity,
                    beta: a.shot_beta,
                    relabels: a.shot_relabels,
                },
            },
            steps: a.refit_steps,
            lr: a.refit_lr,
            anchor: a.anchor,
            // Offline adaptation keeps SHOT's uniform diversity (its objective was registered so).
            target_mix: None,
        }),
        guard: GuardConfig {
            min_pseudo_labels: a.min_pseudo_labels,
            max_class_share: a.max_class_share,
            min_entropy: a.min_entropy,
            vanish_share: a.vanish_share,
        },
        ..AdaptConfig::default()
    };
    let observed = adapt::observe(
        &mut rec,
        src.as_mut(),
        a.max_frames,
        adapt_cfg.max_compared_faces,
        |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    log::info!(
        "footage: {} frames, {} faces, {} tracks, {} admitted (p̂ ≥ {threshold}, stable tracks)",
        observed.frames,
        observed.faces,
        observed.tracks,
        observed.candidates.len()
    );
    let original = Original {
        fusion: &original_fusion,
        prototypes: bundle.prototypes.as_ref(),
        buffer: &bundle.buffer,
        head: head.as_ref(),
    };
    let plan = match adapt::plan(&original, &observed, &adapt_cfg) {
        Ok(p) => p,
        Err(report) => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            let why: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
            bail!(
                "adaptation stopped by the collapse guard: {}. {} was not written; {name} is unchanged",
                why.join("; "),
                a.out.display()
            );
        }
    };
    write_adapted(&bundle, &name, &a, precision, threshold, &plan)?;
    println!("{}", serde_json::to_string_pretty(&plan.report)?);
    log::info!(
        "wrote {}: buffer per class {:?} → {:?}{}",
        a.out.display(),
        plan.report.buffer_before,
        plan.report.buffer_after,
        if plan.refit.is_some() {
            ", classifier head refitted"
        } else {
            ""
        }
    );
    Ok(())
}

/// The source bundle's files with the adapted buffer (and head), plus the report and picture.
fn write_adapted(
    bundle: &Bundle,
    name: &str,
    a: &AdaptArgs,
    precision: Precision,
    threshold: f32,
    plan: &adapt::Plan,
) -> Result<()> {
    // The manifest's hash: Bundle::open verified it against the file.
    let source_hash = bundle.manifest.model(precision).0.map_or("?", |e| e.sha256.as_str());
    let summary = format!(
        "{} buffer entries from {} ({} frames, {} faces), threshold {threshold}{}",
        plan.report.selected.iter().sum::<usize>(),
        a.footage.display(),
        plan.report.frames,
        plan.report.faces,
        match &plan.report.refit {
            Some(r) => format!(", classifier head refitted ({})", r.objective),
            None => String::new(),
        }
    );
    let report = serde_json::json!({
        "source_bundle": name,
        "footage": a.footage.display().to_string(),
        "precision": precision.name(),
        "threshold": threshold,
        "report": plan.report,
    });
    let report = serde_json::to_vec_pretty(&report)?;
    let png = histogram_png(&plan.report.confidence, threshold);
    derived_bundle::write_derived(
        bundle,
        &a.out,
        derived_bundle::Changes {
            head: plan.refit.as_ref().map(|r| &r.head),
            buffer: Some(&plan.buffer),
            provenance: vec![
                (
                    "adapted_from".into(),
                    format!("{name} ({} model sha256 {source_hash})", precision.name()),
                ),
                ("adaptation".into(), summary),
            ],
            extras: vec![(REPORT_FILE, &report), (HISTOGRAM_FILE, &png)],
            ..derived_bundle::Changes::default()
        },
    )
}
