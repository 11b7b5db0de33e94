//! Hand-computed cases on 7 classes: the four extra classes get scores of ~-∞ so that three
//! classes carry the numbers.

use super::*;
use crate::bundle::FusionWeights;

/// A buffer as a list of entries per class.
struct Entries(Vec<Vec<Vec<f32>>>);

impl Entries {
    fn new() -> Self {
        Entries(vec![Vec::new(); NUM_CLASSES])
    }
    fn add(&mut self, class: usize, z: &[f32]) {
        self.0[class].push(z.to_vec());
    }
}

impl ClassEntries for Entries {
    fn class_entries(&self, class: usize) -> impl Iterator<Item = &[f32]> {
        self.0[class].iter().map(Vec::as_slice)
    }
}

const NEG: f32 = -1e4;

fn unit4(v: [f32; 4]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn cfg(w: FusionWeights, mode: FuseMode, tau_t: f32, tau_i: f32) -> FusionConfig {
    FusionConfig {
        tau_sem: 1.0,
        tau_t,
        tau_i,
        weights: w,
        threshold: 0.9,
        mode,
        aggregate: Aggregate::Max,
    }
}

fn close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn equal_weight_probability_fusion_is_the_mean_of_softmaxes() {
    // sem: softmax([0, 0, ln2]) = [.25, .25, .5]. text: z = e0 is orthogonal to prototypes 0-2
    // (cos 0 → 1/3 each) and opposite to 3-6. ins: class 0 at cos 1, classes 1-2 at cos
    // 1 - ln3 / 2, τ_i = .5 → scores [2, 2 - ln3, 2 - ln3] → [3/5, 1/5, 1/5]; 3-6 empty.
    let l2 = 2f32.ln();
    let l3 = 3f32.ln();
    let logits = [0.0, 0.0, l2, NEG, NEG, NEG, NEG];
    let z = unit4([1.0, 0.0, 0.0, 0.0]);
    let mut rows = vec![
        unit4([0.0, 1.0, 0.0, 0.0]),
        unit4([0.0, 0.0, 1.0, 0.0]),
        unit4([0.0, 0.0, 0.0, 1.0]),
    ];
    rows.extend((0..4).map(|_| unit4([-1.0, 0.0, 0.0, 0.0])));
    let protos = TextPrototypes::from_rows(&rows).unwrap();
    let b = 1.0 - l3 / 2.0;
    let side = unit4([b, (1.0 - b * b).sqrt(), 0.0, 0.0]);
    let mut buf = Entries::new();
    buf.add(0, &z);
    buf.add(1, &side);
    buf.add(2, &side);
    let third = 1.0 / 3.0;
    let w = FusionWeights {
        sem: third,
        text: third,
        ins: third,
    };
    let f = fuse(
        &cfg(w, FuseMode::Probabilities, 0.01, 0.5),
        &logits,
        &z,
        Some(&protos),
        &buf,
    );
    close(&f.p_sem, &[0.25, 0.25, 0.5, 0.0, 0.0, 0.0, 0.0]);
    close(&f.p_text.unwrap(), &[third, third, third, 0.0, 0.0, 0.0, 0.0]);
    close(&f.p_ins, &[0.6, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0]);
    let want = [
        (0.25 + third + 0.6) / 3.0,
        (0.25 + third + 0.2) / 3.0,
        (0.5 + third + 0.2) / 3.0,
    ];
    close(&f.p_hat[..3], &want);
    assert!(f.p_hat[3..].iter().all(|p| *p < 1e-6));
    // Weight 0 on ins and no prototypes: p̂ is p_sem.
    let w2 = FusionWeights {
        sem: 2.0,
        text: 1.0,
        ins: 0.0,
    };
    let f = fuse(&cfg(w2, FuseMode::Probabilities, 0.01, 0.5), &logits, &z, None, &buf);
    close(&f.p_hat, &[0.25, 0.25, 0.5, 0.0, 0.0, 0.0, 0.0]);
    assert!(f.p_text.is_none());
}

#[test]
fn raw_score_fusion_softmaxes_the_weighted_sum() {
    // 0.5 * [2, 0, 0] + 0.5 * [0, 0, 2] = [1, 0, 1] -> [e/(2e+1), 1/(2e+1), e/(2e+1)].
    let logits = [2.0, 0.0, 0.0, NEG, NEG, NEG, NEG];
    let z = unit4([1.0, 0.0, 0.0, 0.0]);
    let mut buf = Entries::new();
    buf.add(2, &z);
    buf.add(0, &unit4([0.0, 1.0, 0.0, 0.0]));
    buf.add(1, &unit4([0.0, 1.0, 0.0, 0.0]));
    let w = FusionWeights {
        sem: 0.5,
        text: 0.0,
        ins: 0.5,
    };
    let f = fuse(&cfg(w, FuseMode::RawScores, 0.1, 0.5), &logits, &z, None, &buf);
    let e = std::f32::consts::E;
    let d = 2.0 * e + 1.0;
    close(&f.p_hat[..3], &[e / d, 1.0 / d, e / d]);
}

#[test]
fn ins_scores_aggregate_per_class_like_the_trainer() {
    // The trainer's `ins_scores_aggregate_per_class`: class 0 at angles 0 and 1, class 1 at 0.5.
    let u = |a: f32| vec![a.cos(), a.sin()];
    let mut buf = Entries::new();
    buf.add(0, &u(0.0));
    buf.add(0, &u(1.0));
    buf.add(1, &u(0.5));
    let z = [1.0, 0.0];
    let max = ins_scores(&z, &buf, Aggregate::Max, 0.5);
    assert!((max[0] - 2.0).abs() < 1e-5 && (max[1] - 0.5f32.cos() / 0.5).abs() < 1e-5);
    assert_eq!(max[2], EMPTY_CLASS_SCORE);
    let top2 = ins_scores(&z, &buf, Aggregate::TopKMean(2), 1.0);
    assert!((top2[0] - (1.0 + 1f32.cos()) / 2.0).abs() < 1e-5, "{top2:?}");
    assert!((top2[1] - 0.5f32.cos()).abs() < 1e-5, "{top2:?}");
    assert_eq!("top5".parse::<Aggregate>().unwrap(), Aggregate::TopKMean(5));
    assert!("top0".parse::<Aggregate>().is_err());
}

#[test]
fn tau_sem_divides_the_logits_before_p_sem_and_p_hat() {
    // logits [0, 0, 2 ln 2] at τ_sem = 2: softmax([0, 0, ln 2]) = [.25, .25, .5], the same as
    // logits [0, 0, ln 2] at τ_sem = 1; with only p_sem weighted, p̂ follows it.
    let l2 = 2f32.ln();
    let z = unit4([1.0, 0.0, 0.0, 0.0]);
    let buf = Entries::new();
    let w = FusionWeights {
        sem: 1.0,
        text: 0.0,
        ins: 0.0,
    };
    let mut c = cfg(w, FuseMode::Probabilities, 0.1, 0.1);
    c.tau_sem = 2.0;
    let sharp = [0.0, 0.0, 2.0 * l2, NEG, NEG, NEG, NEG];
    let f = fuse(&c, &sharp, &z, None, &buf);
    close(&f.p_sem, &[0.25, 0.25, 0.5, 0.0, 0.0, 0.0, 0.0]);
    close(&f.p_hat, &f.p_sem);
    c.tau_sem = 1.0;
    let f1 = fuse(&c, &sharp, &z, None, &buf);
    assert!(
        f1.p_sem[2] > 0.6,
        "at τ_sem = 1 the same logits are sharper: {:?}",
        f1.p_sem
    );
    // Raw-scores fusion reads the same scaled logits.
    c.mode = FuseMode::RawScores;
    c.tau_sem = 2.0;
    close(&fuse(&c, &sharp, &z, None, &buf).p_hat, &f.p_sem);
}

#[test]
fn top_k_mean_is_the_mean_of_the_k_largest_for_every_k() {
    let sims: Vec<f32> = (0..97).map(|i| ((i * 37 % 97) as f32 * 0.7).sin()).collect();
    let mut sorted = sims.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    for k in [1, 2, 5, 20, 96, 97, 500] {
        let want = sorted[..k.min(97)].iter().sum::<f32>() / k.min(97) as f32;
        let got = class_similarity(&mut sims.clone(), Aggregate::TopKMean(k)).unwrap();
        assert!((got - want).abs() < 1e-5, "top{k}: {got} vs {want}");
    }
    assert_eq!(class_similarity(&mut [], Aggregate::TopKMean(3)), None);
}

#[test]
fn the_vectorised_dot_product_is_the_dot_product_at_every_length() {
    // Lengths around the 8-wide blocks and the embeddings' 384, with values of mixed sign.
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 383, 384, 385] {
        let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let got = dot(&a, &b) as f64;
        assert!(
            (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
            "n {n}: {got} vs {exact}"
        );
    }
}
