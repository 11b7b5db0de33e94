//! The training methods, side by side, as one step each (`step.rs`) over the shared loop in
//! `crate::train::run`:
//!
//! - supervised: L_s only (no `SslConfig`, no unlabeled batch);
//! - FixMatch (`SslConfig::fixmatch`): confident p_sem of the weak view supervises the strong one;
//! - SIT-FER (`SslConfig::sitfer`, `reference`): p̂ fused from the classifier (p_sem), the text
//!   prototypes (p_text) and the instance memory (p_ins), plus text co-supervision L_t;
//! - distillation (`crate::distill`): the same step on targets a teacher's p̂ replaced.
//!
//! The fusion maths is the contract's (`sitfer_contract::fusion`), so p̂ means here what it
//! means on the device.

pub mod calibrate;
pub mod config;
pub mod ema_teacher;
pub mod fusion;
pub mod instance_loss;
pub mod loss;
pub mod memory;
pub mod step;
pub mod threshold;

pub use calibrate::{CalibrationOutcome, Temperatures};
pub use config::{
    Aggregate, CalibrationConfig, FuseMode, FusionWeights, InstanceLoss, PseudoTarget, SslConfig, ThresholdMode,
};
pub use ema_teacher::EmaTeacher;
pub use memory::InstanceMemory;
pub use step::{SslState, StepOutput};
pub use threshold::Thresholds;
