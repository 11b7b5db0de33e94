//! Semi-supervised training end to end on a generated dataset: SIT-FER and FixMatch runs, their
//! pseudo-label statistics, resume with the instance memory, and the step's loss combination.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{run_opts, semi_config as config, write_dataset, write_prototypes};
use sitfer_trainer::data::split::LabelBudget;
use sitfer_trainer::method::memory::ins_scores;
use sitfer_trainer::method::step::{LabeledInput, PseudoLabels, SslState, UnlabeledInput};
use sitfer_trainer::method::{InstanceLoss, InstanceMemory, PseudoTarget, SslConfig, ThresholdMode, Thresholds};
use sitfer_trainer::model::projection::ProjectionHead;
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build, init::seeded_var_builder};
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::{DataConfig, Method, TrainConfig};
use sitfer_trainer::train::run::{RunOptions, train};
use std::path::Path;

const DIM: usize = 8;

fn sitfer_config() -> SslConfig {
    SslConfig {
        ins_warmup_steps: 2,
        queue_per_class: 4,
        threshold: 0.3,
        threshold_mode: ThresholdMode::Adaptive {
            floor: 0.2,
            momentum: 0.9,
        },
        ..SslConfig::sitfer()
    }
}

fn state_tensors(run: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let dir = checkpoint::resolve(run, Which::Latest).unwrap();
    let ck = checkpoint::load(&dir, &Device::Cpu).unwrap();
    ck.weights
        .into_iter()
        .chain(ck.optimizer)
        .map(|(k, v)| {
            (
                k,
                v.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn sitfer_trains_logs_pseudo_labels_and_resumes_exactly() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 10, 777);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let cfg = config(data.path(), Method::Sitfer, Some(sitfer_config()), 8);

    let straight = tempfile::tempdir().unwrap();
    let s = train(&cfg, &run_opts(straight.path(), false, None)).unwrap();
    assert_eq!(s.step, 8);
    let mut any_passed = false;
    for r in &s.history {
        let ssl = r.ssl.as_ref().expect("semi-supervised statistics are logged");
        let mask = ssl.mask_rate.expect("every interval saw unlabeled faces");
        // Precision is defined exactly when something passed.
        assert_eq!(ssl.pseudo_precision.is_some(), mask > 0.0, "{ssl:?}");
        any_passed |= mask > 0.0;
        assert!(ssl.loss_t.is_some(), "L_t is on for sitfer");
        assert!(ssl.text_accuracy.is_some());
        assert!(r.val_fused_accuracy.is_some());
    }
    // Thresholds floored at 0.2 over 7 classes on faces this separable: some pseudo-labels pass.
    assert!(any_passed, "{:?}", s.history);
    let last = s.history.last().unwrap().ssl.as_ref().unwrap();
    assert!(last.ins_accuracy.is_some(), "p_ins joins after its warm-up");
    // 21 labeled slots (3 per class), all seen within 8 batches of 7, plus queued pseudo-labels.
    assert!(last.buffer_size.unwrap() >= 21, "{last:?}");
    for f in ["prototypes.json", "pseudo-labels.png", "metrics.jsonl", "split.json"] {
        assert!(straight.path().join(f).is_file(), "{f} missing");
    }
    let saved = state_tensors(straight.path());
    assert_eq!(
        saved["proj.weight"].len(),
        DIM * 256,
        "projection head [d_text, d] is checkpointed"
    );
    assert!(saved.contains_key("memory.labeled") && saved.contains_key("ssl.thresholds"));
    // Adaptive thresholds follow the labeled faces' confidences: they left their start of 0.3.
    assert!(
        saved["ssl.thresholds"].iter().any(|&t| (t - 0.3).abs() > 1e-3),
        "{:?}",
        saved["ssl.thresholds"]
    );

    // 4 steps, stop, resume for 4 more: the same weights, optimizer, memory and thresholds.
    let resumed = tempfile::tempdir().unwrap();
    let opts = |stop| run_opts(resumed.path(), true, stop);
    assert_eq!(train(&cfg, &opts(Some(4))).unwrap().step, 4);
    assert_eq!(train(&cfg, &opts(None)).unwrap().step, 8);
    let again = state_tensors(resumed.path());
    assert_eq!(saved.len(), again.len());
    for (k, a) in &saved {
        let b = &again[k];
        assert_eq!(a.len(), b.len(), "{k}");
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d < 1e-4, "{k}: resumed run differs by {d}");
    }
}

#[test]
fn fixmatch_runs_without_text_and_reports_pseudo_labels() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 8, 777);
    let cfg = config(
        data.path(),
        Method::Fixmatch,
        Some(SslConfig {
            threshold: 0.5,
            ..SslConfig::fixmatch()
        }),
        4,
    );
    let run = tempfile::tempdir().unwrap();
    let s = train(&cfg, &run_opts(run.path(), false, None)).unwrap();
    let r = s.history.last().unwrap().ssl.as_ref().unwrap();
    assert!(
        r.loss_t.is_none() && r.text_accuracy.is_none() && r.ins_accuracy.is_none(),
        "{r:?}"
    );
    assert!(!run.path().join("prototypes.json").exists());
    assert!(!state_tensors(run.path()).contains_key("proj.weight"));
}

#[test]
fn sitfer_with_every_face_labeled_trains_the_text_head_and_fixmatch_refuses() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 6, 777);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let all = |method, ssl| {
        let c = config(data.path(), method, Some(ssl), 3);
        TrainConfig {
            data: DataConfig {
                budget: LabelBudget::All,
                ..c.data
            },
            ..c
        }
    };
    let run = tempfile::tempdir().unwrap();
    let opts = run_opts(run.path(), false, None);
    let s = train(&all(Method::Sitfer, sitfer_config()), &opts).unwrap();
    assert_eq!(s.step, 3);
    let last = s.history.last().unwrap();
    // No unlabeled batch: the loss terms are logged, pseudo-label statistics are not.
    let terms = last.ssl.as_ref().expect("L_s and L_t are logged");
    assert!(terms.loss_s > 0.0 && terms.loss_t.is_some_and(|t| t > 0.0), "{terms:?}");
    assert!(terms.mask_rate.is_none() && terms.fused_accuracy.is_none(), "{terms:?}");
    assert!(last.val_fused_accuracy.is_some(), "p̂ (with p_text) is evaluated");
    let saved = state_tensors(run.path());
    assert_eq!(saved["proj.weight"].len(), DIM * 256, "L_t trained a projection head");
    // The same run without L_t: the head then gets no gradient, so any difference is L_t's.
    let without = tempfile::tempdir().unwrap();
    let no_text = SslConfig {
        lambda_t: 0.0,
        ..sitfer_config()
    };
    train(
        &all(Method::Sitfer, no_text),
        &RunOptions {
            run_dir: without.path().to_path_buf(),
            ..opts.clone()
        },
    )
    .unwrap();
    let idle = &state_tensors(without.path())["proj.weight"];
    let moved = idle
        .iter()
        .zip(&saved["proj.weight"])
        .any(|(a, b)| (a - b).abs() > 1e-6);
    assert!(moved, "L_t did not reach the projection head");

    let err = train(
        &all(Method::Fixmatch, SslConfig::fixmatch()),
        &RunOptions {
            run_dir: tempfile::tempdir().unwrap().path().to_path_buf(),
            ..opts
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs unlabeled images"), "{err}");
}

/// A tiny model, projection head and prototypes for driving the step directly.
fn parts(cfg: SslConfig) -> (VarMap, Box<dyn sitfer_trainer::model::FerModel>, SslState) {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 1, DType::F32, &dev);
    let spec = ModelSpec {
        arch: Arch::Student,
        stem: Stem::Small,
        num_classes: 7,
        input_size: 16,
    };
    let model = build(&spec, vb.clone()).unwrap();
    let proj = ProjectionHead::new(model.embedding_dim(), DIM, vb).unwrap();
    let protos = Tensor::randn(0f32, 1.0, (7, DIM), &dev).unwrap();
    let protos = sitfer_trainer::text::encoder::l2_normalize(&protos).unwrap();
    let memory = InstanceMemory::new(DIM, (0..7).collect(), cfg.queue_per_class);
    let state = SslState::new(cfg, Some(protos), Some(proj), Some(memory));
    (varmap, model, state)
}

#[test]
fn step_loss_is_the_weighted_sum_of_its_terms_and_updates_the_memory() {
    let cfg = SslConfig {
        lambda_s: 0.7,
        lambda_t: 0.3,
        lambda_u: 2.0,
        threshold: 0.01, // every pseudo-label passes
        ins_warmup_steps: 0,
        queue_per_class: 8,
        instance_loss: Some(InstanceLoss { lambda: 0.5, tau: 0.1 }),
        ..SslConfig::sitfer()
    };
    // The labeled slots already hold embeddings, so L_in has a buffer to compare with.
    let (_vm, model, mut ssl) = primed(cfg);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (7, 3, 16, 16), &dev).unwrap();
    let labels: Vec<usize> = (0..7).collect();
    let mut onehot = vec![0f32; 49];
    for i in 0..7 {
        onehot[i * 7 + i] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, (7, 7), &dev).unwrap();
    let weak = Tensor::randn(0f32, 1.0, (5, 3, 16, 16), &dev).unwrap();
    let strong = Tensor::randn(0f32, 1.0, (5, 3, 16, 16), &dev).unwrap();
    let slots: Vec<usize> = (0..7).collect();
    let out = ssl
        .step(
            model.as_ref(),
            0,
            LabeledInput {
                x: &x,
                targets: &targets,
                labels: &labels,
                slots: &slots,
            },
            Some(UnlabeledInput {
                weak: &weak,
                strong: &strong,
            }),
        )
        .unwrap();
    let total = out.loss.to_scalar::<f32>().unwrap();
    let (ls, lt, lu) = (out.l_s, out.l_t.unwrap(), out.l_u.unwrap());
    let l_in = out.l_in.expect("L_in is on and the buffer has its labeled slots");
    assert!(lu > 0.0, "every pseudo-label passed, so L_u > 0");
    assert!(l_in > 0.0, "a cross-entropy between two spread distributions");
    let want = 0.7 * ls + 0.3 * lt + 2.0 * lu + 0.5 * l_in;
    assert!((total - want).abs() < 1e-4 * want.abs().max(1.0), "{total} vs {want}");
    let p = out.unlabeled.unwrap();
    assert!(p.mask.iter().all(|&m| m));
    let mem = ssl.memory.as_ref().unwrap();
    // 7 labeled slots filled + 5 confident pseudo-labels queued.
    assert_eq!(mem.len(), 12, "{:?}", mem.counts());
}

#[test]
fn nothing_passes_a_threshold_of_one() {
    let cfg = SslConfig {
        threshold: 1.0,
        ..SslConfig::fixmatch()
    };
    let (_vm, model, mut ssl) = parts(cfg);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
    let targets = Tensor::from_vec(
        vec![1f32, 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0.],
        (2, 7),
        &dev,
    )
    .unwrap();
    let u = Tensor::randn(0f32, 1.0, (4, 3, 16, 16), &dev).unwrap();
    let out = ssl
        .step(
            model.as_ref(),
            0,
            LabeledInput {
                x: &x,
                targets: &targets,
                labels: &[0, 1],
                slots: &[0, 1],
            },
            Some(UnlabeledInput { weak: &u, strong: &u }),
        )
        .unwrap();
    assert_eq!(out.l_u, Some(0.0));
    assert!(out.unlabeled.unwrap().mask.iter().all(|&m| !m));
    assert!(out.l_t.is_none(), "fixmatch has no text term");
}

/// A labeled and an unlabeled batch for driving the step directly.
struct Batches {
    x: Tensor,
    targets: Tensor,
    labels: Vec<usize>,
    weak: Tensor,
    strong: Tensor,
}

fn batches(n_unlabeled: usize) -> Batches {
    let dev = Device::Cpu;
    let mut onehot = vec![0f32; 49];
    for i in 0..7 {
        onehot[i * 7 + i] = 1.0;
    }
    Batches {
        x: Tensor::randn(0f32, 1.0, (7, 3, 16, 16), &dev).unwrap(),
        targets: Tensor::from_vec(onehot, (7, 7), &dev).unwrap(),
        labels: (0..7).collect(),
        weak: Tensor::randn(0f32, 1.0, (n_unlabeled, 3, 16, 16), &dev).unwrap(),
        strong: Tensor::randn(0f32, 1.0, (n_unlabeled, 3, 16, 16), &dev).unwrap(),
    }
}

fn run_step(ssl: &mut SslState, model: &dyn sitfer_trainer::model::FerModel, step: u64, b: &Batches) -> PseudoLabels {
    step_output(ssl, model, step, b).unlabeled.unwrap()
}

fn step_output(
    ssl: &mut SslState,
    model: &dyn sitfer_trainer::model::FerModel,
    step: u64,
    b: &Batches,
) -> sitfer_trainer::method::StepOutput {
    let slots: Vec<usize> = (0..7).collect();
    ssl.step(
        model,
        step,
        LabeledInput {
            x: &b.x,
            targets: &b.targets,
            labels: &b.labels,
            slots: &slots,
        },
        Some(UnlabeledInput {
            weak: &b.weak,
            strong: &b.strong,
        }),
    )
    .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

/// The three sources of the weak view, each a softmax, computed here from the model, the head,
/// the prototypes and a copy of the buffer taken before the step (the step changes it after).
fn sources(
    model: &dyn sitfer_trainer::model::FerModel,
    ssl: &SslState,
    mem: &InstanceMemory,
    weak: &Tensor,
) -> [Vec<Vec<f32>>; 3] {
    let out = model.forward_t(weak, true).unwrap();
    let z = ssl.proj.as_ref().unwrap().forward(&out.embedding).unwrap();
    let soft = |t: Tensor| rows(&candle_nn::ops::softmax(&t, 1).unwrap());
    let sem = soft(out.logits.clone());
    let text = soft((z.matmul(&ssl.prototypes.as_ref().unwrap().t().unwrap()).unwrap() / ssl.cfg.tau_t).unwrap());
    let bank = mem.bank(&Device::Cpu, false).unwrap();
    let ins = soft(ins_scores(&z, &bank, ssl.cfg.aggregate, ssl.cfg.tau_i).unwrap());
    [sem, text, ins]
}

/// The equal-weight mean of probability rows: p̂ as the method defines it.
fn mean(rows: &[&Vec<f32>]) -> Vec<f32> {
    (0..7)
        .map(|k| rows.iter().map(|r| r[k]).sum::<f32>() / rows.len() as f32)
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// The middle of the confidences p̂ will have on `b`'s weak views (the first test checks this
/// computation against the step): a threshold there splits the batch in half.
fn median_confidence(model: &dyn sitfer_trainer::model::FerModel, ssl: &SslState, b: &Batches) -> f64 {
    let mem = ssl.memory.as_ref().unwrap();
    let [sem, text, ins] = sources(model, ssl, mem, &b.weak);
    let n = sem.len();
    let mut conf: Vec<f32> = (0..n)
        .map(|i| mean(&[&sem[i], &text[i], &ins[i]]).into_iter().fold(0f32, f32::max))
        .collect();
    conf.sort_by(f32::total_cmp);
    let (lo, hi) = (conf[n / 2 - 1], conf[n / 2]);
    assert!(hi - lo > 1e-4, "distinct confidences to split: {conf:?}");
    ((lo + hi) / 2.0) as f64
}

/// A state whose buffer already holds one labeled embedding per class, so p_ins is informative.
fn primed(cfg: SslConfig) -> (VarMap, Box<dyn sitfer_trainer::model::FerModel>, SslState) {
    let (vm, model, mut ssl) = parts(cfg);
    let z = Tensor::randn(0f32, 1.0, (7, DIM), &Device::Cpu).unwrap();
    let z = sitfer_trainer::text::encoder::l2_normalize(&z).unwrap();
    let flat = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    ssl.memory
        .as_mut()
        .unwrap()
        .update_labeled(&(0..7).collect::<Vec<_>>(), &flat);
    (vm, model, ssl)
}

#[test]
fn the_pseudo_label_is_the_argmax_of_the_equal_weight_mean_of_the_three_sources() {
    let cfg = SslConfig {
        ins_warmup_steps: 0,
        threshold: 0.0,
        ..SslConfig::sitfer()
    };
    let (_vm, model, mut ssl) = primed(cfg);
    let b = batches(9);
    let mem = ssl.memory.clone().unwrap();
    let [sem, text, ins] = sources(model.as_ref(), &ssl, &mem, &b.weak);
    let p = run_step(&mut ssl, model.as_ref(), 0, &b);
    let mut differs_from_sem = 0;
    for i in 0..9 {
        let mean: Vec<f32> = mean(&[&sem[i], &text[i], &ins[i]]);
        let want = argmax(&mean);
        assert_eq!(p.class[i], want, "row {i}: p̂ {mean:?}");
        assert!(
            (p.confidence[i] - mean[want]).abs() < 1e-5,
            "{} vs {}",
            p.confidence[i],
            mean[want]
        );
        assert_eq!(p.sem[i], argmax(&sem[i]));
        assert_eq!(p.ins.as_ref().unwrap()[i], argmax(&ins[i]));
        differs_from_sem += (want != argmax(&sem[i])) as usize;
    }
    // Not a test of p_sem alone: on random weights the fused label overrides it somewhere.
    assert!(
        differs_from_sem > 0,
        "p̂ never differed from p_sem: the check would not see p_text/p_ins"
    );
}

#[test]
fn p_ins_stays_out_of_the_pseudo_label_before_its_warm_up() {
    let cfg = SslConfig {
        ins_warmup_steps: 5,
        threshold: 0.0,
        ..SslConfig::sitfer()
    };
    let (_vm, model, mut ssl) = primed(cfg);
    let b = batches(9);
    let mem = ssl.memory.clone().unwrap();
    let [sem, text, ins] = sources(model.as_ref(), &ssl, &mem, &b.weak);
    let p = run_step(&mut ssl, model.as_ref(), 4, &b);
    let mut ins_would_change = 0;
    for i in 0..9 {
        let two: Vec<f32> = mean(&[&sem[i], &text[i]]);
        let three: Vec<f32> = mean(&[&sem[i], &text[i], &ins[i]]);
        assert_eq!(
            p.class[i],
            argmax(&two),
            "row {i}: step 4 < warm-up 5 fuses p_sem and p_text only"
        );
        assert!((p.confidence[i] - two[argmax(&two)]).abs() < 1e-5);
        ins_would_change +=
            (argmax(&two) != argmax(&three) || (two[argmax(&two)] - three[argmax(&three)]).abs() > 1e-3) as usize;
    }
    assert!(
        ins_would_change > 0,
        "with p_ins the labels or confidences would differ"
    );
    assert!(p.ins.is_some(), "p_ins is still scored for the log during its warm-up");
}

#[test]
fn only_the_embeddings_that_pass_the_threshold_are_queued() {
    let cfg = SslConfig {
        ins_warmup_steps: 0,
        queue_per_class: 32,
        threshold: 0.0,
        ..SslConfig::sitfer()
    };
    let b = batches(12);
    let (_vm, model, mut ssl) = primed(cfg);
    let mem = ssl.memory.clone().unwrap();
    ssl.thresholds = Thresholds::new(median_confidence(model.as_ref(), &ssl, &b), ThresholdMode::Fixed);
    let out = model.forward_t(&b.weak, true).unwrap();
    let z = rows(&ssl.proj.as_ref().unwrap().forward(&out.embedding).unwrap());
    let p = run_step(&mut ssl, model.as_ref(), 0, &b);
    let passed = p.mask.iter().filter(|&&m| m).count();
    assert_eq!(passed, 6, "half the batch passes: {:?}", p.confidence);
    let after = ssl.memory.as_ref().unwrap();
    for c in 0..7 {
        let want: Vec<&Vec<f32>> = (0..12)
            .filter(|&i| p.mask[i] && p.class[i] == c)
            .map(|i| &z[i])
            .collect();
        let got = after.queued(c);
        assert_eq!(got.len(), want.len(), "class {c}");
        for (g, w) in got.iter().zip(want) {
            let d = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d < 1e-5, "class {c}: a queued embedding is not a passing face's");
        }
    }
    assert_eq!(
        after.len(),
        mem.len() + 6,
        "7 labeled (refreshed) + the 6 passing faces"
    );
}

#[test]
fn soft_and_weighted_pseudo_targets_change_l_u_as_their_definitions_say() {
    let b = batches(6);
    let cfg = SslConfig {
        threshold: 0.01, // every pseudo-label passes
        ins_warmup_steps: 0,
        ..SslConfig::sitfer()
    };
    // One model and one buffer for the three kinds (primed draws random embeddings), the buffer
    // put back before each step (a step queues and refreshes it).
    let (_vm, model, mut ssl) = primed(cfg);
    let mem = ssl.memory.clone();
    let mut l_u = |kind| {
        ssl.memory = mem.clone();
        ssl.cfg.pseudo_target = kind;
        let out = step_output(&mut ssl, model.as_ref(), 0, &b);
        let conf = out.unlabeled.unwrap().confidence;
        (out.l_u.unwrap(), conf)
    };
    let (hard, conf) = l_u(PseudoTarget::Hard);
    let (weighted, _) = l_u(PseudoTarget::Weighted);
    let (soft, _) = l_u(PseudoTarget::Soft);
    // Weighted: each face's hard loss scaled by a confidence < 1, so strictly less in total and
    // at least the smallest confidence's share of it.
    let lo = conf.iter().cloned().fold(1f32, f32::min);
    assert!(
        weighted < hard && weighted >= lo * hard - 1e-5,
        "{weighted} vs {hard} (min conf {lo})"
    );
    // Soft: the cross-entropy to p̂ is bounded below by p̂'s own entropy, unlike the hard loss.
    assert!(soft > 0.0 && (soft - hard).abs() > 1e-4, "soft {soft}, hard {hard}");
}

#[test]
fn a_queue_threshold_keeps_the_buffer_to_confident_faces_while_l_u_takes_all() {
    let b = batches(12);
    let probe = SslConfig {
        ins_warmup_steps: 0,
        queue_per_class: 32,
        threshold: 0.0,
        ..SslConfig::sitfer()
    };
    let (_vm, model, mut ssl) = primed(probe);
    let mem = ssl.memory.clone().unwrap();
    ssl.cfg.queue_threshold = Some(median_confidence(model.as_ref(), &ssl, &b));
    let p = run_step(&mut ssl, model.as_ref(), 0, &b);
    assert!(
        p.mask.iter().all(|&m| m),
        "threshold 0: every face trains the strong view"
    );
    assert_eq!(
        ssl.memory.as_ref().unwrap().len(),
        mem.len() + 6,
        "only the upper half is queued"
    );
}

/// The ablation of p_ins under L_in: with p_ins' fusion weight 0 the buffer is still kept, as
/// L_in's bank, and p̂ is what p_sem and p_text give (a zero weight), the same as with no buffer.
#[test]
fn l_in_keeps_the_buffer_when_p_ins_is_out_of_the_fused_label() {
    let cfg = SslConfig {
        ins_warmup_steps: 0,
        threshold: 0.01,
        queue_per_class: 8,
        instance_loss: Some(InstanceLoss { lambda: 1.0, tau: 0.1 }),
        weights: sitfer_trainer::method::FusionWeights {
            sem: 1.0,
            text: 1.0,
            ins: 0.0,
        },
        ..SslConfig::sitfer()
    };
    assert!(cfg.uses_memory(), "L_in needs the buffer even with p_ins out of p̂");
    let (_vm, model, mut ssl) = primed(cfg);
    let b = batches(5);
    let out = step_output(&mut ssl, model.as_ref(), 0, &b);
    assert!(
        out.l_in.is_some_and(|l| l > 0.0),
        "L_in runs on the buffer: {:?}",
        out.l_in
    );
    let logits = model.forward_t(&b.weak, false).unwrap().logits;
    let z = Tensor::randn(0f32, 1.0, (5, DIM), &Device::Cpu).unwrap();
    let z = sitfer_trainer::text::encoder::l2_normalize(&z).unwrap();
    let with_buffer = ssl.fused(&logits, Some(&z), 0, false).unwrap();
    ssl.memory = None;
    let no_buffer = ssl.fused(&logits, Some(&z), 0, false).unwrap();
    let diff = (with_buffer - no_buffer)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "p_ins must stay out of p̂ ({diff})");
}
