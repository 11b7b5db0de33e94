//! Losses.

use candle_core::{D, Result, Tensor};

/// Cross-entropy against target distributions `[B, C]` (one-hot for hard labels), averaged over
/// the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (log_p * targets)?.sum(D::Minus1)?.neg()?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
