//! The fused pseudo-label p̂ from the semantic (classifier), text and instance sources.
//!
//! Every source is a score matrix `[B, classes]` before its softmax: the classifier's logits,
//! cos(z, T) / τ_t, and the buffer's aggregated similarity / τ_i.

use super::config::{FuseMode, FusionWeights};
use candle_core::{D, DType, Result, Tensor};
use sitfer_contract::NUM_CLASSES;
use sitfer_contract::fusion as contract;

/// Scores of each source; a missing source does not take part (its weight is ignored).
pub struct SourceScores<'a> {
    pub sem: Option<&'a Tensor>,
    pub text: Option<&'a Tensor>,
    pub ins: Option<&'a Tensor>,
}

/// p_text's scores: cosine similarity of unit embeddings `z` `[B, d]` to unit prototypes `[C, d]`,
/// divided by τ_t.
pub fn text_scores(z: &Tensor, prototypes: &Tensor, tau_t: f64) -> Result<Tensor> {
    z.matmul(&prototypes.t()?)? / tau_t
}

pub fn softmax(scores: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(scores, D::Minus1)
}

/// Fuses the present sources with positive weight into class probabilities `[B, classes]`:
/// the scores come back to the host and each row goes through the contract's `fuse_scores`,
/// the function the runtime fuses with, so a bundle means on the device what it meant here.
pub fn fuse(s: &SourceScores, w: &FusionWeights, mode: FuseMode) -> Result<Tensor> {
    let host = |t: Option<&Tensor>| t.map(|t| t.to_dtype(DType::F32)?.to_vec2::<f32>()).transpose();
    let (sem, text, ins) = (host(s.sem)?, host(s.text)?, host(s.ins)?);
    let Some(first) = [s.sem, s.text, s.ins].into_iter().flatten().next() else {
        candle_core::bail!("fusion: no source with a positive weight");
    };
    let rows = first.dim(0)?;
    let mut out = Vec::with_capacity(rows * NUM_CLASSES);
    for i in 0..rows {
        let p = contract::fuse_scores(
            [
                (row(&sem, i), w.sem as f32),
                (row(&text, i), w.text as f32),
                (row(&ins, i), w.ins as f32),
            ],
            mode,
        )
        .ok_or_else(|| candle_core::Error::Msg("fusion: no source with a positive weight".into()))?;
        out.extend(p);
    }
    Tensor::from_vec(out, (rows, NUM_CLASSES), first.device())
}

/// Row `i` of a source's host scores, when the source is present.
fn row(m: &Option<Vec<Vec<f32>>>, i: usize) -> Option<&[f32]> {
    m.as_ref().map(|m| &m[i][..])
}

/// Per row: (max probability, its class).
pub fn confidence(p: &Tensor) -> Result<(Vec<f32>, Vec<usize>)> {
    let conf = p.max(D::Minus1)?.to_vec1::<f32>()?;
    let cls = p.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok((conf, cls.into_iter().map(|c| c as usize).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A row of 7 scores whose first three are `r` and the rest ~-∞, so that three classes
    /// carry the hand-computed numbers.
    fn t(rows: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied().chain([-1e4; 4])).collect();
        Tensor::from_vec(flat, (rows.len(), 7), &Device::Cpu).unwrap()
    }

    #[test]
    fn equal_weight_probability_fusion_is_the_mean_of_softmaxes() {
        // Hand-computed: softmax([ln1, ln1, ln2]) = [.25, .25, .5]; softmax([0,0,0]) = 1/3 each;
        // softmax([ln3, ln1, ln1... ]) = [3/5, 1/5, 1/5]. Mean = [.3611, .2611, .3278].
        let l2 = 2f32.ln();
        let l3 = 3f32.ln();
        let sem = t(&[[0.0, 0.0, l2]]);
        let text = t(&[[0.0, 0.0, 0.0]]);
        let ins = t(&[[l3, 0.0, 0.0]]);
        let p = fuse(
            &SourceScores {
                sem: Some(&sem),
                text: Some(&text),
                ins: Some(&ins),
            },
            &FusionWeights::EQUAL,
            FuseMode::Probabilities,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let want = [
            (0.25 + 1.0 / 3.0 + 0.6) / 3.0,
            (0.25 + 1.0 / 3.0 + 0.2) / 3.0,
            (0.5 + 1.0 / 3.0 + 0.2) / 3.0,
        ];
        for (a, b) in p[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{p:?} vs {want:?}");
        }
    }

    #[test]
    fn weights_and_missing_sources() {
        let sem = t(&[[0.0, 0.0, 2f32.ln()]]);
        let ins = t(&[[3f32.ln(), 0.0, 0.0]]);
        // Weight 0 on ins and a missing text source leave p_sem alone.
        let w = FusionWeights {
            sem: 2.0,
            text: 1.0,
            ins: 0.0,
        };
        let s = SourceScores {
            sem: Some(&sem),
            text: None,
            ins: Some(&ins),
        };
        let p = fuse(&s, &w, FuseMode::Probabilities).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in p[0].iter().zip([0.25, 0.25, 0.5]) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        let none = SourceScores {
            sem: None,
            text: None,
            ins: None,
        };
        assert!(fuse(&none, &w, FuseMode::Probabilities).is_err());
    }

    #[test]
    fn raw_score_fusion_softmaxes_the_weighted_sum() {
        // 0.5 * [2, 0, 0] + 0.5 * [0, 0, 2] = [1, 0, 1] -> [e/(2e+1), 1/(2e+1), e/(2e+1)].
        let a = t(&[[2.0, 0.0, 0.0]]);
        let b = t(&[[0.0, 0.0, 2.0]]);
        let w = FusionWeights {
            sem: 0.5,
            text: 0.5,
            ins: 0.0,
        };
        let s = SourceScores {
            sem: Some(&a),
            text: Some(&b),
            ins: None,
        };
        let p = fuse(&s, &w, FuseMode::RawScores).unwrap().to_vec2::<f32>().unwrap();
        let e = std::f32::consts::E;
        let z = 2.0 * e + 1.0;
        for (x, y) in p[0].iter().zip([e / z, 1.0 / z, e / z]) {
            assert!((x - y).abs() < 1e-6, "{p:?}");
        }
    }

    #[test]
    fn text_scores_are_cosines_over_tau() {
        let z = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
        let protos = Tensor::new(&[[1f32, 0.0], [0.6, 0.8]], &Device::Cpu).unwrap();
        let s = text_scores(&z, &protos, 0.5).unwrap().to_vec2::<f32>().unwrap();
        assert!((s[0][0] - 2.0).abs() < 1e-6 && (s[0][1] - 1.2).abs() < 1e-6, "{s:?}");
    }
}
