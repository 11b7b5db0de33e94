//! AdamW and SGD with momentum whose state can be saved and restored.
//!
//! Written here rather than taken from candle-nn because candle-nn's optimizers keep their
//! moment buffers private: a checkpoint could not save them, and `--resume` would restart
//! Adam's moments from zero.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Optimizer choice and hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
}

/// A named trainable variable. Batch-norm running statistics are variables too but get no
/// gradient, so the optimizer leaves them alone.
pub struct Param {
    pub name: String,
    pub var: Var,
    /// Weight decay applies to weights of rank ≥ 2 only (not biases or norm scales).
    pub decay: bool,
}

/// The optimizer with its per-parameter state.
pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<Param>,
    /// First moment (AdamW) or momentum buffer (SGD), by parameter name.
    m: HashMap<String, Tensor>,
    /// Second moment (AdamW only).
    v: HashMap<String, Tensor>,
    /// Number of updates done.
    pub t: u64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, mut params: Vec<Param>) -> Self {
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Optimizer {
            config,
            params,
            m: HashMap::new(),
            v: HashMap::new(),
            t: 0,
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        for p in &self.params {
            let Some(g) = grads.get(&p.var) else { continue };
            let g = g.to_dtype(DType::F32)?;
            let theta = p.var.as_tensor();
            match self.config {
                OptimizerConfig::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    if crate::ops::cpu_ops(theta) {
                        let h = AdamStep {
                            beta1: beta1 as f32,
                            beta2: beta2 as f32,
                            eps: eps as f32,
                            lr: lr as f32,
                            decay: if p.decay { (lr * weight_decay) as f32 } else { 0.0 },
                            bias1: (1.0 - beta1.powi(t)) as f32,
                            bias2: (1.0 - beta2.powi(t)) as f32,
                        };
                        let (m, v) = adamw_cpu(&p.var, &g, self.m.get(&p.name), self.v.get(&p.name), h)?;
                        self.m.insert(p.name.clone(), m);
                        self.v.insert(p.name.clone(), v);
                        continue;
                    }
                    let m_prev = match self.m.get(&p.name) {
                        Some(m) => m.clone(),
                        None => g.zeros_like()?,
                    };
                    let v_prev = match self.v.get(&p.name) {
                        Some(v) => v.clone(),
                        None => g.zeros_like()?,
                    };
                    let m = ((m_prev * beta1)? + (&g * (1.0 - beta1))?)?;
                    let v = ((v_prev * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                    let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                    let decayed = if p.decay && weight_decay > 0.0 {
                        (theta * (1.0 - lr * weight_decay))?
                    } else {
                        theta.clone()
                    };
                    let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
                    p.var.set(&(decayed - (update * lr)?)?)?;
                    self.m.insert(p.name.clone(), m);
                    self.v.insert(p.name.clone(), v);
                }
                OptimizerConfig::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let g = if p.decay && weight_decay > 0.0 {
                        (g + (theta * weight_decay)?)?
                    } else {
                        g
                    };
                    let buf = match self.m.get(&p.name) {
                        Some(b) if momentum > 0.0 => ((b * momentum)? + &g)?,
                        _ => g.clone(),
                    };
                    let dir = if nesterov {
                        (&g + (&buf * momentum)?)?
                    } else {
                        buf.clone()
                    };
                    p.var.set(&(theta - (dir * lr)?)?)?;
                    if momentum > 0.0 {
                        self.m.insert(p.name.clone(), buf);
                    }
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`m.<param>`, `v.<param>`) for a safetensors file.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`]; `t` is the update count.
    pub fn load_state(&mut self, tensors: HashMap<String, Tensor>, t: u64) -> Result<()> {
        let names: std::collections::HashSet<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        self.m.clear();
        self.v.clear();
        for (k, tensor) in tensors {
            let (kind, name) = k
                .split_once('.')
                .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state: bad tensor name `{k}`")))?;
            if !names.contains(name) {
                candle_core::bail!("optimizer state: `{name}` is not a parameter of this model");
            }
            match kind {
                "m" => self.m.insert(name.to_string(), tensor),
                "v" => self.v.insert(name.to_string(), tensor),
                _ => candle_core::bail!("optimizer state: bad tensor name `{k}`"),
            };
        }
        self.t = t;
        Ok(())
    }
}

/// One AdamW update's constants.
#[derive(Clone, Copy)]
struct AdamStep {
    beta1: f32,
    beta2: f32,
    eps: f32,
    lr: f32,
    /// lr × weight decay, 0 for parameters without decay.
    decay: f32,
    /// 1 − β₁ᵗ and 1 − β₂ᵗ.
    bias1: f32,
    bias2: f32,
}

/// AdamW on CPU in one pass over each parameter: the composed form above is a dozen candle ops
/// per parameter, each allocating a parameter-sized tensor and waking candle's thread pool (a
/// third of an EfficientNet-Lite0 step, whose 200 parameter tensors are mostly small). Same
/// formula, same order of operations; returns the new moments.
fn adamw_cpu(var: &Var, g: &Tensor, m: Option<&Tensor>, v: Option<&Tensor>, h: AdamStep) -> Result<(Tensor, Tensor)> {
    use crate::ops::with_f32;
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let n = g.elem_count();
    let zeros = |t: Option<&Tensor>| -> Result<Tensor> {
        match t {
            Some(t) => Ok(t.clone()),
            None => g.zeros_like(),
        }
    };
    let (m, v) = (zeros(m)?, zeros(v)?);
    let mut new_theta = vec![0f32; n];
    let mut new_m = vec![0f32; n];
    let mut new_v = vec![0f32; n];
    with_f32(var.as_tensor(), |theta| {
        with_f32(g, |g| {
            with_f32(&m, |m| {
                with_f32(&v, |v| {
                    new_theta
                        .par_chunks_mut(CHUNK)
                        .zip(new_m.par_chunks_mut(CHUNK))
                        .zip(new_v.par_chunks_mut(CHUNK))
                        .enumerate()
                        .for_each(|(i, ((nt, nm), nv))| {
                            let off = i * CHUNK;
                            let len = nt.len();
                            let (theta, g, m, v) = (
                                &theta[off..off + len],
                                &g[off..off + len],
                                &m[off..off + len],
                                &v[off..off + len],
                            );
                            for j in 0..len {
                                let mj = m[j] * h.beta1 + g[j] * (1.0 - h.beta1);
                                let vj = v[j] * h.beta2 + g[j] * g[j] * (1.0 - h.beta2);
                                let update = (mj / h.bias1) / ((vj / h.bias2).sqrt() + h.eps);
                                nt[j] = theta[j] * (1.0 - h.decay) - update * h.lr;
                                nm[j] = mj;
                                nv[j] = vj;
                            }
                        });
                    Ok(())
                })
            })
        })
    })?;
    let (shape, dev) = (g.shape().clone(), g.device().clone());
    var.set(&Tensor::from_vec(new_theta, shape.clone(), &dev)?)?;
    Ok((
        Tensor::from_vec(new_m, shape.clone(), &dev)?,
        Tensor::from_vec(new_v, shape, &dev)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{ConvImpl, set_conv_impl};
    use candle_core::Device;

    fn run(imp: ConvImpl) -> Vec<f32> {
        set_conv_impl(imp);
        let w = Var::from_vec(
            (0..40_000).map(|i| ((i as f32) * 0.37).sin()).collect(),
            (200, 200),
            &Device::Cpu,
        )
        .unwrap();
        let b = Var::from_vec(vec![0.5f32, -1.0, 2.0], 3, &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 5e-4,
            },
            vec![
                Param {
                    name: "w".into(),
                    var: w.clone(),
                    decay: true,
                },
                Param {
                    name: "b".into(),
                    var: b.clone(),
                    decay: false,
                },
            ],
        );
        for step in 0..3 {
            let loss = ((w.as_tensor().sqr().unwrap().sum_all().unwrap() * (0.5 + step as f64)).unwrap()
                + b.as_tensor().sum_all().unwrap().sqr().unwrap())
            .unwrap();
            opt.step(&loss.backward().unwrap(), 1e-2).unwrap();
        }
        set_conv_impl(ConvImpl::Fast);
        let mut out = w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        out.extend(b.as_tensor().to_vec1::<f32>().unwrap());
        out.extend(
            opt.state_tensors()["v.w"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
        out
    }

    #[test]
    fn cpu_adamw_matches_the_composed_update() {
        let fast = run(ConvImpl::Fast);
        let reference = run(ConvImpl::Candle);
        for (a, b) in fast.iter().zip(&reference) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
