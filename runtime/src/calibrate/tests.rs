use super::*;
use crate::bundle::FusionWeights;
use crate::fusion::{FuseMode, fuse};
use crate::instance_buffer::InstanceBuffer;

const D: usize = 8;

struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        (0..6).map(|_| self.uniform() * 2.0 - 1.0).sum::<f32>() * 0.7
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// A face of class `c`: its axis plus noise.
fn embedding(rng: &mut Lcg, c: usize, noise: f32) -> Vec<f32> {
    unit((0..D).map(|i| (i == c) as u8 as f32 + noise * rng.normal()).collect())
}

fn base() -> Fusion {
    Fusion {
        tau_sem: 1.0,
        tau_t: 0.1,
        tau_i: 0.1,
        weights: FusionWeights {
            sem: 1.0,
            text: 0.0,
            ins: 1.0,
        },
        threshold: 0.5,
        mode: FuseMode::Probabilities,
        aggregate: Aggregate::Max,
    }
}

/// A buffer of `per_class` entries per class, of which `wrong` per class carry the next class's
/// label: pseudo-label noise, which the nearest entry (max) follows and a top-k mean averages out.
fn buffer(rng: &mut Lcg, per_class: usize, wrong: usize) -> InstanceBuffer {
    let mut b = InstanceBuffer::new(D, 0);
    for c in 0..NUM_CLASSES {
        for k in 0..per_class {
            let label = if k < wrong { (c + 1) % NUM_CLASSES } else { c };
            b.add_seed(label, &embedding(rng, c, 0.35));
        }
    }
    b
}

/// Faces whose logits are far too sharp: margin 8 on a class that is right 70 % of the time.
fn faces(rng: &mut Lcg, n: usize) -> Vec<LabeledFace> {
    (0..n)
        .map(|i| {
            let label = i % NUM_CLASSES;
            let said = if rng.uniform() < 0.7 {
                label
            } else {
                (label + 1 + (rng.uniform() * 6.0) as usize % 6) % NUM_CLASSES
            };
            let mut logits = [0f32; NUM_CLASSES];
            logits[said] = 8.0;
            LabeledFace {
                logits,
                embedding: embedding(rng, label, 0.35),
                label,
            }
        })
        .collect()
}

#[test]
fn fitted_temperatures_and_aggregate_beat_the_exported_fusion() {
    let mut rng = Lcg(3);
    let buf = buffer(&mut rng, 40, 4);
    let cal = faces(&mut rng, 1400);
    let held_out = faces(&mut rng, 1400);
    let aggregates = [Aggregate::Max, Aggregate::TopKMean(5), Aggregate::TopKMean(15)];
    let fit = fit_fusion(&base(), &cal, None, &buf, &aggregates, &[], 0.9).unwrap();
    // Logits right 70 % of the time at margin 8 are over-confident: τ_sem softens them.
    assert!(fit.fusion.tau_sem > 2.0, "τ_sem {}", fit.fusion.tau_sem);
    // Mislabeled entries sit among every class: the nearest entry is often one of them, a
    // mean over several is not.
    assert_ne!(fit.fusion.aggregate, Aggregate::Max, "{:?}", fit.trials);
    let chosen = fit.trials.iter().find(|t| t.aggregate == fit.fusion.aggregate).unwrap();
    for t in &fit.trials {
        assert!(chosen.scores.fused_nll <= t.scores.fused_nll, "{:?}", fit.trials);
    }
    // The fit generalises to faces it did not see: better NLL and no worse accuracy than the
    // exported settings, and p̂ no worse than the better single source.
    let before = score(&base(), &held_out, None, &buf);
    let after = score(&fit.fusion, &held_out, None, &buf);
    assert!(after.fused_nll < before.fused_nll, "{before:?} → {after:?}");
    assert!(after.fused >= before.fused, "{before:?} → {after:?}");
    assert!(after.fused + 0.01 >= after.sem.max(after.ins), "{after:?}");
    // What `score` reports is what the device computes with the contract's `fuse`.
    let right = held_out
        .iter()
        .filter(|f| argmax(&fuse(&fit.fusion, &f.logits, &f.embedding, None, &buf).p_hat).0 == f.label)
        .count();
    assert!((right as f64 / held_out.len() as f64 - after.fused).abs() < 1e-9);
}

#[test]
fn the_threshold_reaches_the_target_precision_on_the_calibration_faces() {
    let mut rng = Lcg(11);
    let buf = buffer(&mut rng, 30, 0);
    let cal = faces(&mut rng, 700);
    let mut checked_lower = false;
    for target in [0.8, 0.95, 0.98] {
        let fit = fit_fusion(&base(), &cal, None, &buf, &[Aggregate::TopKMean(5)], &[], target).unwrap();
        let (n, precision) = fit.admitted.expect("reachable");
        assert!(precision >= target && n > 0, "{target}: {n} at {precision}");
        // Recount with the device's fusion.
        let conf: Vec<(f32, bool)> = cal
            .iter()
            .map(|f| {
                let (c, v) = argmax(&fuse(&fit.fusion, &f.logits, &f.embedding, None, &buf).p_hat);
                (v, c == f.label)
            })
            .collect();
        let at: Vec<&(f32, bool)> = conf.iter().filter(|(v, _)| *v >= fit.fusion.threshold).collect();
        assert_eq!(at.len(), n);
        // The next lower confidence would break the target (the threshold is the lowest).
        let below = conf
            .iter()
            .filter(|(v, _)| *v < fit.fusion.threshold)
            .map(|(v, _)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
        if below.is_finite() {
            let wider: Vec<_> = conf.iter().filter(|(v, _)| *v >= below).collect();
            let p = wider.iter().filter(|(_, ok)| *ok).count() as f64 / wider.len() as f64;
            assert!(p < target, "{target}: a lower threshold {below} still reaches {p}");
        } else {
            // Every face admitted: only when they all reach the target together.
            let p = conf.iter().filter(|(_, ok)| *ok).count() as f64 / conf.len() as f64;
            assert!(p >= target && n == conf.len(), "{target}: {p}");
        }
        checked_lower |= below.is_finite();
    }
    assert!(checked_lower, "some target must leave faces out");
    assert!(fit_fusion(&base(), &[], None, &buf, &[Aggregate::Max], &[], 0.9).is_none());
}

/// The instance weight is fitted with the aggregate: a buffer whose entries are mostly
/// mislabeled gets the smallest weight tried, a clean one the largest; the chosen pair has the
/// lowest NLL of p̂ among all tried.
#[test]
fn the_instance_weight_follows_how_much_the_buffer_is_worth() {
    for (wrong, expected) in [(27, 0.25), (0, 1.0)] {
        let mut rng = Lcg(21);
        let buf = buffer(&mut rng, 30, wrong);
        let cal = faces(&mut rng, 700);
        let fit = fit_fusion(&base(), &cal, None, &buf, &[Aggregate::TopKMean(5)], &[0.25, 1.0], 0.9).unwrap();
        assert_eq!(fit.trials.len(), 2);
        assert_eq!(fit.fusion.weights.ins, expected, "{wrong} wrong: {:?}", fit.trials);
        assert!(
            fit.trials.iter().all(|t| fit.scores.fused_nll <= t.scores.fused_nll),
            "{:?}",
            fit.trials
        );
    }
}
