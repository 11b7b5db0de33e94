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
