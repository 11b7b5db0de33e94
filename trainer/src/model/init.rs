//! Seeded parameter initialisation.
//!
//! candle's CPU device cannot be seeded (`Device::set_seed` fails on CPU), so `VarMap`
//! initialisation differs run to run and two runs with the same `--seed` would not match. This
//! backend creates every variable from one ChaCha stream seeded by the run, in construction
//! order, following the same `Init` rules as candle-nn.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::sync::Mutex;

struct SeededVarMap {
    varmap: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

fn sample(init: Init, shape: &Shape, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let uniform = |lo: f64, up: f64, rng: &mut ChaCha8Rng| (0..n).map(|_| rng.random_range(lo..up) as f32).collect();
    let normal = |mean: f64, std: f64, rng: &mut ChaCha8Rng| {
        let d = Normal::new(mean, std.max(f64::MIN_POSITIVE)).expect("finite normal parameters");
        (0..n).map(|_| d.sample(rng) as f32).collect()
    };
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } => uniform(lo, up, rng),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(-bound, bound, rng)
                }
                NormalOrUniform::Normal => normal(0.0, std, rng),
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("variable `{name}`: shape {:?} requested, {:?} exists", s, v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let values = sample(h, &s, &mut self.rng.lock().expect("rng lock"));
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("variable `{name}` must be created with a shape and an initialisation")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().expect("varmap lock").contains_key(name)
    }
}

/// A `VarBuilder` that stores new variables in `varmap`, initialised from `seed`.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        varmap: varmap.clone(),
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x1417_5EED)),
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}
