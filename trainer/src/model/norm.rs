//! Batch normalisation for the models: PyTorch's parameter names, defaults and running-average
//! rule, with the fused CPU training op of `crate::ops::batch_norm`.

use crate::ops::batch_norm::{BatchNormTrain, BatchStats};
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

/// PyTorch defaults: eps 1e-5, momentum 0.1.
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<BatchNorm> {
    batch_norm_eps(channels, 1e-5, vb)
}

pub fn batch_norm_eps(channels: usize, eps: f64, vb: VarBuilder) -> Result<BatchNorm> {
    let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
    Ok(BatchNorm {
        weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        // The VarBuilder hands out the variables' own tensors, so these share their storage.
        running_mean: Var::from_tensor(&running_mean)?,
        running_var: Var::from_tensor(&running_var)?,
        eps,
        momentum: 0.1,
    })
}

impl BatchNorm {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Folds one batch's statistics into the running ones (PyTorch's rule: momentum 0.1, the
    /// unbiased variance).
    pub fn update_running(&self, s: &BatchStats) -> Result<()> {
        let c = self.weight.elem_count();
        let n = s.count as f32;
        let unbiased: Vec<f32> = s.var.iter().map(|v| v * n / (n - 1.0).max(1.0)).collect();
        let dev = self.weight.device();
        let m = self.momentum;
        let mean = Tensor::from_vec(s.mean.clone(), c, dev)?;
        let var = Tensor::from_vec(unbiased, c, dev)?;
        self.running_mean
            .set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var
            .set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * m)?)?)
    }

    /// `train`: normalise with batch statistics and update the running ones (PyTorch's rule:
    /// the running variance uses the unbiased estimate). Otherwise use the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.weight.elem_count();
        if !train {
            let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            let shape = (1, c, 1, 1);
            return x
                .broadcast_mul(&scale.reshape(shape)?)?
                .broadcast_add(&shift.reshape(shape)?);
        }
        let fused = crate::ops::cpu_ops(x);
        self.forward_train_with(x, fused)
    }

    /// Training-mode forward with the fused CPU op (`fused`) or the composed tensor ops.
    pub fn forward_train_with(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        let c = self.weight.elem_count();
        if fused {
            let stats = Arc::new(Mutex::new(BatchStats::default()));
            let op = BatchNormTrain {
                eps: self.eps as f32,
                stats: stats.clone(),
            };
            let y = x.contiguous()?.apply_op3(&self.weight, &self.bias, op)?;
            let s = stats.lock().expect("stats lock").clone();
            self.update_running(&s)?;
            return Ok(y);
        }
        // Composed form for other devices (and as the reference in tests).
        let dims: Vec<usize> = std::iter::once(0).chain(2..x.rank()).collect();
        let mean = x.mean_keepdim(dims.as_slice())?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(dims.as_slice())?;
        let n = (x.elem_count() / c) as f64;
        let y = centered.broadcast_div(&(&var + self.eps)?.sqrt()?)?;
        let y = y
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        let m = self.momentum;
        let mean = mean.flatten_all()?.detach();
        let var = (var.flatten_all()?.detach() * (n / (n - 1.0).max(1.0)))?;
        self.running_mean
            .set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var
            .set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * m)?)?)?;
        Ok(y)
    }
}
