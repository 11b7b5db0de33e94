//! The objective of every method: soft cross-entropy, and L = λ_s L_s + λ_t L_t + λ_u L_u
//! (+ λ_in L_in with the instance consistency term).

use candle_core::{D, Result, Tensor};

/// Cross-entropy against target distributions `[B, C]` (one-hot for hard labels), averaged over
/// the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (log_p * targets)?.sum(D::Minus1)?.neg()?.mean_all()
}

/// Loss weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub s: f64,
    pub t: f64,
    pub u: f64,
    /// λ_in of the instance consistency term (0 when it is off).
    pub ins: f64,
}

/// The terms of one step (`None` = the term is off).
pub struct Terms {
    pub l_s: Tensor,
    pub l_t: Option<Tensor>,
    pub l_u: Option<Tensor>,
    pub l_in: Option<Tensor>,
}

/// λ_s L_s + λ_t L_t + λ_u L_u over the present terms.
pub fn combine(terms: &Terms, w: LossWeights) -> Result<Tensor> {
    let mut total = (&terms.l_s * w.s)?;
    if let Some(l) = &terms.l_t {
        total = (total + (l * w.t)?)?;
    }
    if let Some(l) = &terms.l_u {
        total = (total + (l * w.u)?)?;
    }
    if let Some(l) = &terms.l_in {
        total = (total + (l * w.ins)?)?;
    }
    Ok(total)
}

/// Cross-entropy of `logits` `[B, C]` against hard `labels`, counted only where `mask` is set
/// and divided by B (FixMatch's normalisation: the loss grows with the share of confident
/// samples instead of jumping when few pass).
pub fn masked_cross_entropy(logits: &Tensor, labels: &[usize], mask: &[bool]) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    let mut onehot = vec![0f32; b * c];
    for (i, (&l, &m)) in labels.iter().zip(mask).enumerate() {
        if m {
            onehot[i * c + l] = 1.0;
        }
    }
    rows_cross_entropy(logits, onehot)
}

/// Σ_rows −targets·log softmax(logits) / B, for unnormalised target rows (`[B·C]`, row-major):
/// a zero row drops the sample, a row summing to w weights it by w. One normalisation for the
/// hard, soft and confidence-weighted pseudo-label losses.
pub fn rows_cross_entropy(logits: &Tensor, targets: Vec<f32>) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    let targets = Tensor::from_vec(targets, (b, c), logits.device())?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (log_p * targets)?.sum_all()?.neg()? / b as f64
}

/// Cross-entropy against hard labels (one-hot targets).
pub fn hard_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let mask = vec![true; labels.len()];
    masked_cross_entropy(logits, labels, &mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn scalar(t: &Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn total_is_the_stated_combination() {
        let d = Device::Cpu;
        let terms = Terms {
            l_s: Tensor::new(2f32, &d).unwrap(),
            l_t: Some(Tensor::new(3f32, &d).unwrap()),
            l_u: Some(Tensor::new(5f32, &d).unwrap()),
            l_in: Some(Tensor::new(7f32, &d).unwrap()),
        };
        let w = LossWeights {
            s: 0.4,
            t: 0.4,
            u: 0.2,
            ins: 0.5,
        };
        assert!((scalar(&combine(&terms, w).unwrap()) - (0.8 + 1.2 + 1.0 + 3.5)).abs() < 1e-6);
        let only_s = Terms {
            l_s: Tensor::new(2f32, &d).unwrap(),
            l_t: None,
            l_u: None,
            l_in: None,
        };
        assert!((scalar(&combine(&only_s, w).unwrap()) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn masked_ce_counts_confident_rows_over_the_whole_batch() {
        let d = Device::Cpu;
        // Row 0: p = [1/4, 1/4, 1/2], label 2 -> ln 2. Row 1 masked out.
        let logits = Tensor::new(&[[0f32, 0.0, 2f32.ln()], [5.0, 0.0, 0.0]], &d).unwrap();
        let l = scalar(&masked_cross_entropy(&logits, &[2, 1], &[true, false]).unwrap());
        assert!((l - std::f32::consts::LN_2 / 2.0).abs() < 1e-6, "{l}");
        let none = scalar(&masked_cross_entropy(&logits, &[2, 1], &[false, false]).unwrap());
        assert_eq!(none, 0.0);
    }

    #[test]
    fn target_rows_weight_each_sample_by_their_sum() {
        let d = Device::Cpu;
        // Row 0: p = [1/4, 1/4, 1/2]; soft target [0.5, 0, 0.5] -> 0.5 ln 4 + 0.5 ln 2.
        // Row 1: a zero row counts nothing but still divides (B = 2).
        let logits = Tensor::new(&[[0f32, 0.0, 2f32.ln()], [5.0, 0.0, 0.0]], &d).unwrap();
        let l = scalar(&rows_cross_entropy(&logits, vec![0.5, 0.0, 0.5, 0.0, 0.0, 0.0]).unwrap());
        let want = (0.5 * 4f32.ln() + 0.5 * 2f32.ln()) / 2.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
        // A one-hot row at weight 0.3 is 0.3 of the hard loss.
        let w = scalar(&rows_cross_entropy(&logits, vec![0.0, 0.0, 0.3, 0.0, 0.0, 0.0]).unwrap());
        let hard = scalar(&masked_cross_entropy(&logits, &[2, 1], &[true, false]).unwrap());
        assert!((w - 0.3 * hard).abs() < 1e-6, "{w} vs 0.3 × {hard}");
    }

    #[test]
    fn matches_hand_computed_value() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[0f32, 0f32, (2f32).ln()]], &dev).unwrap();
        let target = Tensor::new(&[[0f32, 0f32, 1f32]], &dev).unwrap();
        // p = [1/4, 1/4, 1/2] -> CE = ln 2.
        let l = soft_cross_entropy(&logits, &target)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - std::f32::consts::LN_2).abs() < 1e-6, "{l}");
    }
}
