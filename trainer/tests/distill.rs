//! Distillation end to end on a generated dataset: the teacher's fused p̂, the student's targets
//! built from it (aligned face by face with what the teacher itself sees), and a distilled run
//! that trains on every face and resumes.

mod common;

use candle_core::{D, DType, Device};
use candle_nn::{VarBuilder, VarMap};
use common::{config, run_opts, semi_config, write_dataset, write_prototypes};
use sitfer_trainer::distill::{self, DistillConfig, TEACHER_CACHE, Teacher, relabel};
use sitfer_trainer::evaluate::{forward_store, mirrored, prob_rows};
use sitfer_trainer::method::SslConfig;
use sitfer_trainer::model::build;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::{Method, TrainConfig};
use sitfer_trainer::train::prepare::{prepare_data, set_vars};
use sitfer_trainer::train::run::train;
use std::path::Path;

const DIM: usize = 8;

/// A SIT-FER teacher on 3 labels per class (p_text and p_ins on from the first step).
fn teacher_config(root: &Path) -> TrainConfig {
    let ssl = SslConfig {
        ins_warmup_steps: 0,
        ..SslConfig::sitfer()
    };
    semi_config(root, Method::Sitfer, Some(ssl), 6)
}

/// p_sem of a checkpoint over the store, computed without the distill module.
fn softmax_of(run: &Path, store: &sitfer_trainer::data::loader::ImageStore, cfg: &TrainConfig) -> Vec<[f32; 7]> {
    let dir = checkpoint::resolve(run, Which::Best).unwrap();
    let ck = checkpoint::load(&dir, &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    let model = build(&cfg.model, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let mut weights = ck.weights.clone();
    weights.retain(|k, _| !k.starts_with("proj."));
    set_vars(&varmap, &weights, &dir).unwrap();
    let (logits, _) = forward_store(model.as_ref(), store, cfg.norm, 64, &Device::Cpu).unwrap();
    prob_rows(&candle_nn::ops::softmax(&logits, D::Minus1).unwrap()).unwrap()
}

#[test]
fn teacher_fuses_its_sources_and_the_student_learns_them_on_every_face() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 10, 321);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let t_cfg = teacher_config(data.path());
    let t_run = tempfile::tempdir().unwrap();
    train(&t_cfg, &run_opts(t_run.path(), true, None)).unwrap();
    let teacher = Teacher::load(t_run.path(), &Device::Cpu).unwrap();

    // The teacher's own view of its split: p̂ is a distribution and, with p_text and p_ins in
    // the fusion, not just the classifier's softmax.
    let t_data = prepare_data(&t_cfg, t_run.path()).unwrap();
    let (t_unlabeled, _) = t_data.unlabeled.as_ref().unwrap();
    let (p_l, p_u) = teacher.soft_labels(&t_data.labeled, Some(t_unlabeled)).unwrap();
    assert_eq!((p_l.len(), p_u.len()), (21, 49));
    for p in p_l.iter().chain(&p_u) {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
    }
    let sem = softmax_of(t_run.path(), t_unlabeled, &t_cfg);
    let gap = sem
        .iter()
        .zip(&p_u)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    assert!(
        gap > 1e-3,
        "p̂ equals p_sem: text and instance sources did not take part"
    );

    // The student (at another input size, so the teacher's faces are decoded separately) gets
    // every face: labeled ones with (y + p̂)/2, unlabeled ones with p̂, in the teacher's order.
    let s_data_dir = tempfile::tempdir().unwrap();
    let s_cfg = TrainConfig {
        model: sitfer_trainer::model::ModelSpec {
            input_size: 20,
            ..t_cfg.model
        },
        data: sitfer_trainer::train::config::DataConfig {
            split_manifest: Some(t_run.path().join("split.json")),
            calibration_fraction: 0.0,
            ..t_cfg.data.clone()
        },
        distill: Some(DistillConfig {
            teacher: checkpoint::resolve(t_run.path(), Which::Best).unwrap(),
            kd_weight: 1.0,
            teacher_mirror: false,
            more_teachers: vec![],
        }),
        steps: 4,
        ..t_cfg.clone()
    };
    let s_data = prepare_data(&s_cfg, s_data_dir.path()).unwrap();
    let s_data = relabel(
        s_data,
        s_cfg.distill.as_ref().unwrap(),
        std::slice::from_ref(&teacher),
        20,
        None,
    )
    .unwrap();
    assert!(s_data.unlabeled.is_none());
    assert_eq!(s_data.labeled.len(), 70);
    assert_eq!(s_data.labeled.side(), 20);
    let targets = s_data.labeled.targets.as_ref().unwrap();
    let labels = t_data.labeled.targets.as_ref().unwrap();
    for (i, (t, y)) in targets.iter().zip(labels.iter()).enumerate() {
        for c in 0..7 {
            let want = (y[c] + p_l[i][c]) / 2.0;
            assert!((t[c] - want).abs() < 1e-5, "labeled face {i}: {t:?} vs {want}");
        }
    }
    for (t, p) in targets[21..].iter().zip(&p_u) {
        for c in 0..7 {
            assert!((t[c] - p[c]).abs() < 1e-5, "{t:?} vs {p:?}");
        }
    }

    // With `teacher_mirror` the teacher teaches the mean of its p̂ on each face and on the face's
    // mirror image.
    let m_cfg = DistillConfig {
        teacher_mirror: true,
        ..s_cfg.distill.clone().unwrap()
    };
    let m_data = relabel(
        prepare_data(&s_cfg, s_data_dir.path()).unwrap(),
        &m_cfg,
        std::slice::from_ref(&teacher),
        20,
        None,
    )
    .unwrap();
    let (pm_l, pm_u) = teacher
        .soft_labels(&mirrored(&t_data.labeled), Some(&mirrored(t_unlabeled)))
        .unwrap();
    let m_targets = m_data.labeled.targets.as_ref().unwrap();
    let mut moved = 0f32;
    for (i, y) in labels.iter().enumerate() {
        for c in 0..7 {
            let want = (y[c] + 0.5 * (p_l[i][c] + pm_l[i][c])) / 2.0;
            assert!(
                (m_targets[i][c] - want).abs() < 1e-5,
                "labeled face {i}: {:?} vs {want}",
                m_targets[i]
            );
            moved = moved.max((m_targets[i][c] - targets[i][c]).abs());
        }
    }
    for (i, t) in m_targets[21..].iter().enumerate() {
        for c in 0..7 {
            let want = 0.5 * (p_u[i][c] + pm_u[i][c]);
            assert!((t[c] - want).abs() < 1e-5, "unlabeled face {i}: {t:?} vs {want}");
        }
    }
    assert!(moved > 1e-4, "the mirror images changed no target");

    // The distilled run itself: trains L_s and L_t on the 70 faces, saves the teacher in its
    // config, and resumes under the same settings.
    let s_run = tempfile::tempdir().unwrap();
    assert_eq!(
        distill::train(&s_cfg, &run_opts(s_run.path(), true, Some(2)))
            .unwrap()
            .step,
        2
    );
    let s = distill::train(&s_cfg, &run_opts(s_run.path(), true, None)).unwrap();
    assert_eq!(s.step, 4);
    let ck = checkpoint::load(&checkpoint::resolve(s_run.path(), Which::Latest).unwrap(), &Device::Cpu).unwrap();
    assert_eq!(ck.state.config.distill, s_cfg.distill);
    // The run kept the teacher's p̂ and reads it back instead of scoring again (a marked row
    // comes back), unless the cache is another teacher step's (then the faces are scored anew).
    let cache = s_run.path().join(TEACHER_CACHE);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let marked = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    c["unlabeled"][0] = serde_json::json!(marked);
    std::fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
    let redo = |cfg: &TrainConfig| {
        let fresh = prepare_data(cfg, s_run.path()).unwrap();
        let d = relabel(
            fresh,
            cfg.distill.as_ref().unwrap(),
            std::slice::from_ref(&teacher),
            20,
            Some(&cache),
        )
        .unwrap();
        d.labeled.targets.as_ref().unwrap().to_vec()
    };
    let cached = redo(&s_cfg);
    assert_eq!(cached[21], marked, "the cache was not read");
    // A cache scored without the mirror images does not serve a run that asks for them.
    let m_run_cfg = TrainConfig {
        distill: Some(m_cfg.clone()),
        ..s_cfg.clone()
    };
    assert_ne!(
        redo(&m_run_cfg)[21],
        marked,
        "a cache without the mirror images was used"
    );
    assert_eq!(cached[..21], targets[..21]);
    c["step"] = 999.into();
    std::fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(redo(&s_cfg)[..], targets[..], "a stale cache was used");
    assert_eq!(ck.weights["proj.weight"].dims(), &[DIM, 256]);

    // Another teacher weight is another run: resume refuses it.
    let other = TrainConfig {
        distill: Some(DistillConfig {
            kd_weight: 0.5,
            ..s_cfg.distill.clone().unwrap()
        }),
        ..s_cfg.clone()
    };
    let err = distill::train(&other, &run_opts(s_run.path(), true, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("distill"), "{err}");
    // The settings are compared before the teacher is loaded and scores every face: a resume
    // naming a teacher that is not there is refused for its settings, not for the teacher.
    let gone = TrainConfig {
        distill: Some(DistillConfig {
            teacher: data.path().join("no-such-teacher"),
            ..s_cfg.distill.clone().unwrap()
        }),
        ..s_cfg.clone()
    };
    let err = distill::train(&gone, &run_opts(s_run.path(), true, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume") && err.contains("distill"), "{err}");
}

#[test]
fn an_ensemble_of_teachers_teaches_the_mean_of_their_p_hat_and_caches_it_apart() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 8, 77);
    let a_cfg = config(data.path(), 3);
    // The second teacher sees the same split with another seed and length: other weights.
    let b_cfg = TrainConfig {
        seed: a_cfg.seed + 1,
        steps: 5,
        ..a_cfg.clone()
    };
    let (a_run, b_run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(&a_cfg, &run_opts(a_run.path(), true, None)).unwrap();
    train(&b_cfg, &run_opts(b_run.path(), true, None)).unwrap();
    let a = Teacher::load(a_run.path(), &Device::Cpu).unwrap();
    let b = Teacher::load(b_run.path(), &Device::Cpu).unwrap();
    let d = DistillConfig {
        teacher: a.dir.clone(),
        kd_weight: 1.0,
        teacher_mirror: false,
        more_teachers: vec![b.dir.clone()],
    };
    let cfg = TrainConfig {
        data: sitfer_trainer::train::config::DataConfig {
            split_manifest: Some(a_run.path().join("split.json")),
            ..a_cfg.data.clone()
        },
        distill: Some(d.clone()),
        ..a_cfg.clone()
    };
    let s_run = tempfile::tempdir().unwrap();
    let targets = |teachers: &[Teacher], cache: Option<&Path>| {
        let fresh = prepare_data(&cfg, s_run.path()).unwrap();
        relabel(fresh, &d, teachers, 16, cache)
            .unwrap()
            .labeled
            .targets
            .unwrap()
            .to_vec()
    };
    let (ta, tb) = (
        targets(std::slice::from_ref(&a), None),
        targets(std::slice::from_ref(&b), None),
    );
    let both = targets(&[a, b], None);
    let mut apart = 0f32;
    for ((x, y), m) in ta.iter().zip(&tb).zip(&both) {
        for c in 0..7 {
            // Every target is linear in p̂, so the mean of the teachers' targets is the target of
            // their mean p̂.
            assert!((m[c] - 0.5 * (x[c] + y[c])).abs() < 1e-5, "{m:?} vs {x:?}, {y:?}");
            apart = apart.max((x[c] - y[c]).abs());
        }
    }
    assert!(
        apart > 1e-3,
        "the two teachers taught the same targets: the test shows nothing"
    );

    // A cache made by the first teacher alone does not serve the ensemble, and back.
    let cache = s_run.path().join(TEACHER_CACHE);
    let a = Teacher::load(a_run.path(), &Device::Cpu).unwrap();
    let b = Teacher::load(b_run.path(), &Device::Cpu).unwrap();
    assert_eq!(targets(std::slice::from_ref(&a), Some(&cache)), ta);
    assert_eq!(targets(&[a, b], Some(&cache)), both);
    let a = Teacher::load(a_run.path(), &Device::Cpu).unwrap();
    assert_eq!(targets(std::slice::from_ref(&a), Some(&cache)), ta);
}

#[test]
fn a_supervised_teacher_teaches_its_softmax_and_a_missing_one_is_named() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 6, 99);
    let cfg = config(data.path(), 3);
    let run = tempfile::tempdir().unwrap();
    train(&cfg, &run_opts(run.path(), true, None)).unwrap();
    let teacher = Teacher::load(run.path(), &Device::Cpu).unwrap();
    let prepared = prepare_data(&cfg, run.path()).unwrap();
    let (p, _) = teacher.soft_labels(&prepared.labeled, None).unwrap();
    let sem = softmax_of(run.path(), &prepared.labeled, &cfg);
    for (a, b) in p.iter().zip(&sem) {
        for c in 0..7 {
            assert!((a[c] - b[c]).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    let missing = data.path().join("no-such-run");
    let err = match Teacher::load(&missing, &Device::Cpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a missing teacher loaded"),
    };
    assert!(err.contains("no-such-run"), "{err}");
}
