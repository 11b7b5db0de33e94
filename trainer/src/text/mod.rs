//! Text side of SIT-FER: expression descriptions, the sentence encoder that embeds them, and
//! the cached per-class text prototypes.

pub mod descriptions;
pub mod encoder;
pub mod prototypes;

pub use encoder::{EncoderKind, TextEncoder};
pub use prototypes::{EncoderSource, PrototypeSet, resolve};

/// Default location of the prototype cache shipped with the repository.
pub const DEFAULT_PROTOTYPES: &str = "models/prototypes/fer7-all-MiniLM-L6-v2.json";
/// Default location of the unpacked all-MiniLM-L6-v2 (scripts/fetch-text-encoder.sh).
pub const DEFAULT_ENCODER_DIR: &str = ".cache/text-encoder/all-MiniLM-L6-v2";
