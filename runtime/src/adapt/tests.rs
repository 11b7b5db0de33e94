use super::*;
use crate::bundle::FusionWeights;
use crate::fusion::{Aggregate, FuseMode, FusionConfig, argmax, fuse};
use crate::pipeline::Observation;

const F: usize = 16;

/// A small deterministic generator (the runtime has no rand dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn normal(&mut self) -> f32 {
        // Sum of uniforms: close enough to a Gaussian for a toy problem.
        (0..6).map(|_| self.next()).sum::<f32>() * 0.7
    }
}

pub(super) fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

pub(super) fn fusion() -> FusionConfig {
    FusionConfig {
        tau_sem: 1.0,
        tau_t: 0.1,
        tau_i: 0.1,
        weights: FusionWeights {
            sem: 0.5,
            text: 0.0,
            ins: 0.5,
        },
        threshold: 0.8,
        mode: FuseMode::Probabilities,
        aggregate: Aggregate::Max,
    }
}

/// Two domains over the same 7 class centres: the target adds a shift shared by all classes
/// (other light, other camera) and a per-class offset (other people), so the source head and
/// the source buffer misjudge part of it.
pub(super) struct Toy {
    means: Vec<Vec<f32>>,
    shift: Vec<f32>,
    offsets: Vec<Vec<f32>>,
    rng: Lcg,
}

impl Toy {
    pub(super) fn new() -> Self {
        let mut rng = Lcg(7);
        let means = (0..NUM_CLASSES)
            .map(|_| (0..F).map(|_| 0.9 * rng.normal()).collect())
            .collect();
        let shift = (0..F).map(|_| 1.5 * rng.normal()).collect();
        let offsets = (0..NUM_CLASSES)
            .map(|_| (0..F).map(|_| 0.6 * rng.normal()).collect())
            .collect();
        Toy {
            means,
            shift,
            offsets,
            rng,
        }
    }
    pub(super) fn sample(&mut self, class: usize, target: bool) -> Vec<f32> {
        (0..F)
            .map(|i| {
                let t = if target {
                    self.shift[i] + self.offsets[class][i]
                } else {
                    0.0
                };
                self.means[class][i] + t + self.rng.normal()
            })
            .collect()
    }
    /// The source head: nearest class mean as a linear classifier.
    pub(super) fn head(&self) -> Head {
        Head {
            dim: F,
            weight: self.means.iter().flatten().copied().collect(),
            bias: std::array::from_fn(|c| -0.5 * self.means[c].iter().map(|x| x * x).sum::<f32>()),
        }
    }
}

/// `per_class` source-domain embeddings of every class.
pub(super) fn source_seed(toy: &mut Toy, per_class: usize) -> SeedBuffer {
    let mut seed = SeedBuffer {
        dim: F,
        embeddings: Vec::new(),
        labels: Vec::new(),
    };
    for c in 0..NUM_CLASSES {
        for _ in 0..per_class {
            seed.embeddings.extend(unit(&toy.sample(c, false)));
            seed.labels.push(c as u8);
        }
    }
    seed
}

fn observation(head: &Head, cfg: &FusionConfig, buf: &InstanceBuffer, f: Vec<f32>, track: u64) -> Observation {
    let logits = head.logits(&f);
    let z = unit(&f);
    let p = fuse(cfg, &logits, &z, None, buf);
    let (c, conf) = argmax(&p.p_hat);
    Observation {
        frame: track,
        track,
        p_hat: p.p_hat,
        logits,
        embedding: z,
        feature: Some(f),
        admitted: (conf >= cfg.threshold).then_some(c),
    }
}

pub(super) fn observed_from(obs: Vec<Observation>) -> Observed {
    let mut o = Observed {
        frames: obs.len() as u64,
        tracks: obs.len(),
        ..Observed::default()
    };
    for x in &obs {
        o.record(x);
    }
    o.sample = obs;
    o
}

fn accuracy(head: &Head, cfg: &FusionConfig, buf: &SeedBuffer, test: &[(Vec<f32>, usize)]) -> f32 {
    let ib = InstanceBuffer::from_seed(buf, 0);
    let ok = test
        .iter()
        .filter(|(f, y)| argmax(&fuse(cfg, &head.logits(f), &unit(f), None, &ib).p_hat).0 == *y)
        .count();
    ok as f32 / test.len() as f32
}

#[test]
fn adaptation_improves_accuracy_on_the_unseen_half_of_a_shifted_domain() {
    let mut toy = Toy::new();
    let head = toy.head();
    let cfg = fusion();
    let seed = source_seed(&mut toy, 8);
    let ib = InstanceBuffer::from_seed(&seed, 0);
    // Target half A: unlabeled footage; half B: scored only.
    let footage: Vec<Observation> = (0..700)
        .map(|k| {
            let f = toy.sample(k % NUM_CLASSES, true);
            observation(&head, &cfg, &ib, f, k as u64)
        })
        .collect();
    let test: Vec<(Vec<f32>, usize)> = (0..700).map(|k| (toy.sample(k % 7, true), k % 7)).collect();
    let observed = observed_from(footage);
    let original = Original {
        fusion: &cfg,
        prototypes: None,
        buffer: &seed,
        head: Some(&head),
    };
    let before = accuracy(&head, &cfg, &seed, &test);

    let buffer_only = plan(&original, &observed, &AdaptConfig::default()).expect("not degenerate");
    let after_buffer = accuracy(&head, &cfg, &buffer_only.buffer, &test);

    let with_refit = AdaptConfig {
        refit: Some(RefitConfig::default()),
        ..AdaptConfig::default()
    };
    let refitted = plan(&original, &observed, &with_refit).expect("not degenerate");
    let r = refitted.refit.as_ref().expect("refitted");
    assert!(r.loss_after < r.loss_before, "{} → {}", r.loss_before, r.loss_after);
    let after_refit = accuracy(&r.head, &cfg, &refitted.buffer, &test);
    let info_max = AdaptConfig {
        refit: Some(RefitConfig {
            objective: Objective::InfoMax { diversity: 1.0 },
            ..RefitConfig::default()
        }),
        ..AdaptConfig::default()
    };
    let im = plan(&original, &observed, &info_max).expect("not degenerate");
    let after_im = accuracy(&im.refit.as_ref().expect("refitted").head, &cfg, &im.buffer, &test);
    let shot = AdaptConfig {
        refit: Some(RefitConfig {
            objective: Objective::Shot {
                diversity: 1.0,
                beta: 0.3,
                relabels: 15,
            },
            ..RefitConfig::default()
        }),
        ..AdaptConfig::default()
    };
    let sh = plan(&original, &observed, &shot).expect("not degenerate");
    let after_shot = accuracy(&sh.refit.as_ref().expect("refitted").head, &cfg, &sh.buffer, &test);
    let ins_only = FusionConfig {
        weights: FusionWeights {
            sem: 0.0,
            text: 0.0,
            ins: 1.0,
        },
        ..cfg
    };
    let (ins_before, ins_after) = (
        accuracy(&head, &ins_only, &seed, &test),
        accuracy(&head, &ins_only, &buffer_only.buffer, &test),
    );
    eprintln!(
        "target accuracy: before {before:.3}, buffer {after_buffer:.3}, buffer + refit {after_refit:.3}, buffer + info-max {after_im:.3}, buffer + shot {after_shot:.3}; p_ins {ins_before:.3} → {ins_after:.3}"
    );
    assert!(before < 0.85, "the toy must leave room to adapt: {before}");
    // The domain's entries make the buffer's own prediction better on unseen target faces; the
    // fused one may gain little while the head is unchanged, but must not lose.
    assert!(ins_after > ins_before + 0.03, "p_ins: {ins_before} → {ins_after}");
    assert!(after_buffer > before - 0.02, "buffer: {before} → {after_buffer}");
    assert!(after_refit > before + 0.03, "refit: {before} → {after_refit}");
    assert!(after_im > before + 0.1, "info-max: {before} → {after_im}");
    assert!(after_shot > before + 0.1, "shot: {before} → {after_shot}");
    // The source entries stay; the domain's entries are added, class-balanced by the cap.
    assert_eq!(&refitted.buffer.labels[..seed.len()], &seed.labels[..]);
    assert!(
        refitted
            .report
            .selected
            .iter()
            .all(|&n| n <= SelectConfig::default().per_class)
    );
    assert!(refitted.buffer.len() > seed.len());
}

#[test]
fn guard_stops_one_sided_pseudo_labels() {
    let mut toy = Toy::new();
    let head = toy.head();
    let cfg = fusion();
    let seed = source_seed(&mut toy, 1);
    let ib = InstanceBuffer::from_seed(&seed, 0);
    // Footage of one expression only: every pseudo-label is class 3.
    let footage = (0..300)
        .map(|k| observation(&head, &cfg, &ib, toy.sample(3, false), k))
        .collect();
    let original = Original {
        fusion: &cfg,
        prototypes: None,
        buffer: &seed,
        head: Some(&head),
    };
    let observed = observed_from(footage);
    assert!(
        observed.candidates.len() >= 20,
        "{} confident",
        observed.candidates.len()
    );
    let report = plan(&original, &observed, &AdaptConfig::default()).expect_err("degenerate");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Collapse::DominantClass { class, .. } if *class == crate::labels::ALL[3].name())),
        "{:?}",
        report.findings
    );
}

#[test]
fn guard_counts_and_vanishing_classes() {
    let g = GuardConfig::default();
    assert!(matches!(
        g.check_pseudo_labels(&[1, 1, 1, 1, 1, 1, 1])[..],
        [Collapse::TooFewPseudoLabels { found: 7, .. }]
    ));
    assert!(g.check_pseudo_labels(&[10, 10, 10, 10, 10, 10, 0]).is_empty());
    let one_sided = g.check_pseudo_labels(&[0, 0, 0, 95, 0, 5, 0]);
    assert!(
        one_sided.iter().any(|f| matches!(f, Collapse::LowEntropy { .. })),
        "{one_sided:?}"
    );
    // Class 2 went from 20% of the predictions to 2%: vanished. Class 6 was never predicted.
    let f = g.check_predictions(&[20, 20, 20, 20, 20, 0, 0], &[27, 27, 2, 22, 22, 0, 0]);
    assert_eq!(f.len(), 1);
    assert!(matches!(&f[0], Collapse::ClassVanished { class, .. } if *class == crate::labels::ALL[2].name()));
    assert!(f[0].to_string().contains("vanished"));
}

#[test]
fn a_class_the_target_mix_shrinks_may_vanish_and_no_other() {
    let g = GuardConfig::default();
    let (before, after) = ([20, 20, 20, 20, 20, 0, 0], [30, 30, 1, 1, 38, 0, 0]);
    assert_eq!(
        g.check_predictions(&before, &after).len(),
        2,
        "classes 2 and 3 vanished"
    );
    // The mix the head was fitted toward expects class 2 at 1 % (under a fifth of its 20 %) and
    // class 3 at 10 %: only class 2's vanishing is what the refit was asked for.
    let toward = [0.3, 0.3, 0.01, 0.1, 0.29, 0.0, 0.0];
    let f = g.check_predictions_toward(&before, &after, Some(&toward));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(matches!(&f[0], Collapse::ClassVanished { class, .. } if *class == crate::labels::ALL[3].name()));
    assert_eq!(
        g.check_predictions_toward(&before, &after, None),
        g.check_predictions(&before, &after)
    );
}

fn cand(class: usize, confidence: f32, track: u64, e: &[f32]) -> Candidate {
    Candidate {
        class,
        confidence,
        track,
        track_faces: 0,
        embedding: unit(e),
        feature: None,
    }
}

#[test]
fn selection_takes_the_most_confident_then_the_most_distinct_within_caps() {
    let cands = vec![
        cand(0, 0.90, 1, &[1.0, 0.0, 0.0]),
        cand(0, 0.99, 2, &[1.0, 0.01, 0.0]), // most confident: first
        cand(0, 0.95, 3, &[1.0, 0.02, 0.0]), // a near duplicate of the first
        cand(0, 0.91, 4, &[0.0, 1.0, 0.0]),  // distinct: second
        cand(1, 0.97, 2, &[0.0, 0.0, 1.0]),  // track 2 already gave one
        cand(1, 0.96, 5, &[0.0, 0.3, 1.0]),
    ];
    let cfg = SelectConfig {
        per_class: 2,
        per_track: 1,
        faces_per_entry: 4,
        min_distance: 0.01,
    };
    assert_eq!(select(&cands, &cfg), vec![1, 3, 5]);
    // Duplicates never enter, however many slots are left.
    let dup = vec![cand(2, 0.9, 1, &[1.0, 0.0]), cand(2, 0.8, 2, &[1.0, 0.0])];
    assert_eq!(select(&dup, &SelectConfig::default()), vec![0]);
}

#[test]
fn a_strong_anchor_keeps_the_head() {
    let mut toy = Toy::new();
    let head = toy.head();
    let feats: Vec<Vec<f32>> = (0..70).map(|k| toy.sample(k % 7, true)).collect();
    let refs: Vec<&[f32]> = feats.iter().map(Vec::as_slice).collect();
    // Labels that contradict the head: a free refit must move it, an anchored one must not.
    let labels: Vec<usize> = (0..70).map(|k| (k + 1) % 7).collect();
    let free = refit::refit(
        &head,
        &refs,
        &labels,
        &RefitConfig {
            anchor: 0.0,
            ..Default::default()
        },
    );
    let held = refit::refit(
        &head,
        &refs,
        &labels,
        &RefitConfig {
            anchor: 1e4,
            ..Default::default()
        },
    );
    assert!(free.loss_after < free.loss_before);
    assert!(
        free.relative_change > 10.0 * held.relative_change,
        "{} vs {}",
        free.relative_change,
        held.relative_change
    );
}

#[test]
fn head_round_trips_through_onnx_initialisers() {
    use prost::Message;
    use tract_onnx::pb::{GraphProto, ModelProto, TensorProto, tensor_proto::DataType};
    let t = |name: &str, dims: Vec<i64>, v: &[f32]| TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::Float as i32,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    };
    let w: Vec<f32> = (0..NUM_CLASSES * 3).map(|i| i as f32).collect();
    let other = t("conv.weight", vec![2], &[5.0, 6.0]);
    let m = ModelProto {
        graph: Some(GraphProto {
            initializer: vec![
                other.clone(),
                t(onnx_head::FC_WEIGHT, vec![7, 3], &w),
                t(onnx_head::FC_BIAS, vec![7], &[0.5; 7]),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let file = std::path::Path::new("m.onnx");
    let bytes = m.encode_to_vec();
    let mut h = onnx_head::read_head(&bytes, file).unwrap();
    assert_eq!((h.dim, h.weight[4], h.bias[6]), (3, 4.0, 0.5));
    h.weight[4] = -1.0;
    h.bias[0] = 2.0;
    let patched = onnx_head::write_head(&bytes, &h, file).unwrap();
    assert_eq!(onnx_head::read_head(&patched, file).unwrap(), h);
    let back = ModelProto::decode(&patched[..]).unwrap();
    assert_eq!(back.graph.unwrap().initializer[0], other, "other tensors untouched");
    let wrong = Head {
        dim: 4,
        weight: vec![0.0; 28],
        bias: [0.0; 7],
    };
    assert!(
        onnx_head::write_head(&bytes, &wrong, file)
            .unwrap_err()
            .to_string()
            .contains("m.onnx")
    );
    let e = onnx_head::read_head(&ModelProto::default().encode_to_vec(), file).unwrap_err();
    assert!(e.to_string().contains("fc.weight"), "{e}");
}
