//! The projection head that maps a face embedding into the text encoder's space:
//! z = normalize(W f). It is what lets text prototypes and the instance buffer score a face.

use crate::text::encoder::l2_normalize;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Variable prefix of the head in checkpoints (`proj.weight`, `[d_text, d]`, no bias).
pub const PREFIX: &str = "proj";

pub struct ProjectionHead {
    linear: Linear,
}

impl ProjectionHead {
    pub fn new(in_dim: usize, text_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ProjectionHead {
            linear: candle_nn::linear_no_bias(in_dim, text_dim, vb.pp(PREFIX))?,
        })
    }

    /// Unit vectors `[B, d_text]`.
    pub fn forward(&self, embedding: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.linear.forward(embedding)?)
    }
}
