//! The mean teacher (`--ema-teacher`): pseudo-labels and the buffer's embeddings come from the
//! weight-averaged copy, not from the model being trained; a run checkpoints the teacher, resumes
//! it exactly and scores it on val at the end.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{run_opts, semi_config as config, write_dataset, write_prototypes};
use sitfer_trainer::method::step::{LabeledInput, SslState, UnlabeledInput};
use sitfer_trainer::method::{EmaTeacher, InstanceMemory, SslConfig};
use sitfer_trainer::model::projection::ProjectionHead;
use sitfer_trainer::model::{Arch, FerModel, ModelSpec, Stem, build, init::seeded_var_builder};
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::Method;
use sitfer_trainer::train::run::train;

const DIM: usize = 8;

fn model(seed: u64) -> (VarMap, Box<dyn FerModel>, ProjectionHead) {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    let spec = ModelSpec {
        arch: Arch::Student,
        stem: Stem::Small,
        num_classes: 7,
        input_size: 16,
    };
    let m = build(&spec, vb.clone()).unwrap();
    let proj = ProjectionHead::new(m.embedding_dim(), DIM, vb).unwrap();
    (varmap, m, proj)
}

fn argmax_rows(t: &Tensor) -> Vec<usize> {
    t.argmax(1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
        .into_iter()
        .map(|c| c as usize)
        .collect()
}

#[test]
fn pseudo_labels_and_labeled_slots_come_from_the_teacher_not_the_trained_model() {
    let dev = Device::Cpu;
    let cfg = SslConfig {
        threshold: 0.0,
        ins_warmup_steps: 0,
        queue_per_class: 4,
        ema_teacher: Some(0.5),
        ..SslConfig::sitfer()
    };
    let (varmap, student, proj) = model(1);
    // The teacher starts as a copy of the student ...
    let (tvars, tmodel, tproj) = model(2);
    let teacher = EmaTeacher::new(tmodel, Some(tproj), &tvars, &varmap, 0.5).unwrap();
    // ... then the student moves away (as if trained), so the two label differently.
    for v in varmap.all_vars() {
        v.set(&(v.as_tensor() + Tensor::randn(0f32, 0.5, v.shape(), &dev).unwrap()).unwrap())
            .unwrap();
    }
    let protos =
        sitfer_trainer::text::encoder::l2_normalize(&Tensor::randn(0f32, 1.0, (7, DIM), &dev).unwrap()).unwrap();
    let memory = InstanceMemory::new(DIM, (0..7).collect(), cfg.queue_per_class);
    let mut ssl = SslState::new(cfg, Some(protos), Some(proj), Some(memory));
    ssl.teacher = Some(teacher);

    let x = Tensor::randn(0f32, 1.0, (7, 3, 16, 16), &dev).unwrap();
    let weak = Tensor::randn(0f32, 1.0, (24, 3, 16, 16), &dev).unwrap();
    let mut onehot = vec![0f32; 49];
    for i in 0..7 {
        onehot[i * 7 + i] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, (7, 7), &dev).unwrap();
    let labels: Vec<usize> = (0..7).collect();
    // What each model says before the step (the teacher in eval mode, on labeled + weak faces).
    let t = ssl.teacher.as_ref().unwrap();
    let t_out = t
        .model
        .forward_t(&Tensor::cat(&[&x, &weak], 0).unwrap(), false)
        .unwrap();
    let t_sem = argmax_rows(&t_out.logits.narrow(0, 7, 24).unwrap());
    let t_z_labeled = t
        .proj
        .as_ref()
        .unwrap()
        .forward(&t_out.embedding.narrow(0, 0, 7).unwrap())
        .unwrap();
    let s_sem = argmax_rows(&student.forward_t(&weak, false).unwrap().logits);
    assert_ne!(t_sem, s_sem, "the test needs models that disagree");

    let out = ssl
        .step(
            student.as_ref(),
            0,
            LabeledInput {
                x: &x,
                targets: &targets,
                labels: &labels,
                slots: &labels,
            },
            Some(UnlabeledInput {
                weak: &weak,
                strong: &weak,
            }),
        )
        .unwrap();
    let p = out.unlabeled.unwrap();
    assert_eq!(p.sem, t_sem, "p_sem of the pseudo-label is the teacher's");
    let saved = ssl.memory.as_ref().unwrap().to_tensors().unwrap();
    let slots = saved["memory.labeled"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = t_z_labeled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d = slots.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        d < 1e-5,
        "the labeled slots hold the teacher's embeddings (max diff {d})"
    );
}

#[test]
fn a_run_with_a_teacher_checkpoints_it_resumes_it_exactly_and_scores_it_at_the_end() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 10, 777);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let ssl = SslConfig {
        threshold: 0.3,
        ins_warmup_steps: 0,
        queue_per_class: 4,
        ema_teacher: Some(0.9),
        ..SslConfig::sitfer()
    };
    let cfg = config(data.path(), Method::Sitfer, Some(ssl), 6);
    let straight = tempfile::tempdir().unwrap();
    let s = train(&cfg, &run_opts(straight.path(), false, None)).unwrap();
    let (first, last) = (&s.history[0], s.history.last().unwrap());
    assert!(first.val_teacher_accuracy.is_none() || s.history.len() == 1);
    assert!(
        last.val_teacher_accuracy.is_some(),
        "the teacher is scored at the last step"
    );
    let tensors = |run: &std::path::Path| {
        let ck = checkpoint::load(&checkpoint::resolve(run, Which::Latest).unwrap(), &Device::Cpu).unwrap();
        let flat = |m: std::collections::HashMap<String, Tensor>| -> Vec<(String, Vec<f32>)> {
            let mut v: Vec<_> = m
                .into_iter()
                .map(|(k, t)| {
                    (
                        k,
                        t.to_dtype(DType::F32)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap(),
                    )
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        (flat(ck.weights), flat(ck.optimizer))
    };
    let (weights, extra) = tensors(straight.path());
    let ema: Vec<_> = extra.iter().filter(|(k, _)| k.starts_with("ema.")).collect();
    assert_eq!(ema.len(), weights.len(), "every variable has its teacher copy");
    // After 6 steps at decay 0.9 the teacher lags: it is not the trained model.
    let w = &weights.iter().find(|(k, _)| k == "proj.weight").unwrap().1;
    let t = &ema.iter().find(|(k, _)| k == "ema.proj.weight").unwrap().1;
    assert!(w.iter().zip(t.iter()).any(|(a, b)| (a - b).abs() > 1e-6));

    let resumed = tempfile::tempdir().unwrap();
    assert_eq!(train(&cfg, &run_opts(resumed.path(), true, Some(3))).unwrap().step, 3);
    assert_eq!(train(&cfg, &run_opts(resumed.path(), true, None)).unwrap().step, 6);
    let (w2, e2) = tensors(resumed.path());
    for ((k, a), (_, b)) in weights.iter().chain(&extra).zip(w2.iter().chain(&e2)) {
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d < 1e-4, "{k}: resumed run differs by {d}");
    }
}
