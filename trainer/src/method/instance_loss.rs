//! Instance consistency L_in: the instance buffer as a training signal on every unlabeled face,
//! not only as the p_ins source of the pseudo-label (SimMatch, Zheng et al. 2022, its
//! "instance similarity" term with the labels' re-weighting).
//!
//! Why: L_u trains only the faces whose p̂ passes the threshold (a quarter to two fifths of them
//! in Protocols 3–5), and those mostly where the backbone is already right. The weak view's
//! similarities to the buffer's embeddings say which stored faces this face resembles, whether
//! or not any class is confident; asking the strong view to resemble the same stored faces
//! trains the embedding on all unlabeled faces. The weak distribution is re-weighted by p̂ of each
//! stored face's class, so stored faces of classes the fused label rules out count less.

use super::memory::Bank;
use candle_core::{D, DType, Result, Tensor};
use sitfer_contract::labels::NUM_CLASSES;

/// L_in = mean over faces of −Σ_j q̂_j log q^s_j, over the bank's entries j:
/// q^w = softmax(z_weak·E/τ) (the pseudo-labeler's weak view, no gradient),
/// q̂_j ∝ q^w_j · p̂[class(j)], q^s = softmax(z_strong·E/τ) (the trained model's strong view).
/// `None` when the bank is empty.
pub fn instance_consistency(
    z_weak: &Tensor,
    z_strong: &Tensor,
    p_hat: &Tensor,
    bank: &Bank,
    tau: f64,
) -> Result<Option<Tensor>> {
    let m = bank.entries.dim(0)?;
    if m == 0 {
        return Ok(None);
    }
    let dev = z_strong.device();
    let entries = bank.entries.to_dtype(DType::F32)?.detach();
    let q_w = candle_nn::ops::softmax(&(z_weak.detach().matmul(&entries.t()?)? / tau)?, D::Minus1)?;
    // [classes, M]: which class each entry belongs to, so p̂ · C gives p̂ of each entry's class.
    let mut onehot = vec![0f32; NUM_CLASSES * m];
    for (c, &(off, n)) in bank.ranges.iter().enumerate() {
        for j in off..off + n {
            onehot[c * m + j] = 1.0;
        }
    }
    let classes = Tensor::from_vec(onehot, (NUM_CLASSES, m), dev)?;
    let scaled = (q_w * p_hat.detach().matmul(&classes)?)?;
    let target = scaled.broadcast_div(&(scaled.sum_keepdim(D::Minus1)? + 1e-12)?)?;
    let log_q_s = candle_nn::ops::log_softmax(&(z_strong.matmul(&entries.t()?)? / tau)?, D::Minus1)?;
    Ok(Some((target * log_q_s)?.sum(D::Minus1)?.neg()?.mean_all()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn bank(rows: &[[f32; 2]], ranges: [(usize, usize); NUM_CLASSES]) -> Bank {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Bank {
            entries: Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).unwrap(),
            ranges,
        }
    }

    fn unit(a: f32) -> [f32; 2] {
        [a.cos(), a.sin()]
    }

    #[test]
    fn it_is_the_cross_entropy_of_the_reweighted_weak_distribution_and_is_least_when_views_agree() {
        let d = Device::Cpu;
        // Two entries of class 0, one of class 1.
        let mut ranges = [(3, 0); NUM_CLASSES];
        ranges[0] = (0, 2);
        ranges[1] = (2, 1);
        let b = bank(&[unit(0.0), unit(0.5), unit(2.0)], ranges);
        let zw = Tensor::new(&[unit(0.3)], &d).unwrap();
        let mut p = [0f32; NUM_CLASSES];
        p[0] = 0.25;
        p[1] = 0.75;
        let p_hat = Tensor::new(&[p], &d).unwrap();
        let tau = 0.5f64;
        let loss = |zs: [f32; 2]| {
            let zs = Tensor::new(&[zs], &d).unwrap();
            instance_consistency(&zw, &zs, &p_hat, &b, tau)
                .unwrap()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        // By hand: q^w from cosines / τ, re-weighted by p̂ of each entry's class.
        let sims = |z: [f32; 2]| -> Vec<f32> {
            [unit(0.0), unit(0.5), unit(2.0)]
                .iter()
                .map(|e| (z[0] * e[0] + z[1] * e[1]) / tau as f32)
                .collect()
        };
        let softmax = |v: Vec<f32>| {
            let s: f32 = v.iter().map(|x| x.exp()).sum();
            v.iter().map(|x| x.exp() / s).collect::<Vec<_>>()
        };
        let qw = softmax(sims(unit(0.3)));
        let w = [0.25f32, 0.25, 0.75];
        let norm: f32 = qw.iter().zip(&w).map(|(q, w)| q * w).sum();
        let target: Vec<f32> = qw.iter().zip(&w).map(|(q, w)| q * w / norm).collect();
        let zs = unit(1.0);
        let qs = softmax(sims(zs));
        let want: f32 = -target.iter().zip(&qs).map(|(t, q)| t * q.ln()).sum::<f32>();
        assert!((loss(zs) - want).abs() < 1e-5, "{} vs {want}", loss(zs));
        // A strong view near the target's mass beats one far from it.
        assert!(loss(unit(0.25)) < loss(unit(3.0)));
        let empty = Bank {
            entries: Tensor::zeros((0, 2), DType::F32, &d).unwrap(),
            ranges: [(0, 0); NUM_CLASSES],
        };
        assert!(instance_consistency(&zw, &zw, &p_hat, &empty, tau).unwrap().is_none());
    }
}
