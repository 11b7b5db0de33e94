//! Live capture from a V4L2 camera: format negotiation, mmap streaming in its own thread,
//! reconnect with backoff, and conversion of YUYV / MJPEG / RGB3 buffers to RGB8.
//!
//! Everything that does not touch a device (negotiation, pixel conversion, the hand-off slot,
//! backoff) is a pure part with its own tests, since CI has no camera.

pub mod backoff;
pub mod capture;
pub mod decode;
pub mod device;
pub mod error;
pub mod format;
pub mod negotiate;
pub mod slot;
pub mod source;
pub mod yuyv;

pub use capture::{Capture, RgbFrame};
pub use device::{CameraConfig, list_video_devices};
pub use error::CameraError;
pub use format::PixelFormat;
pub use negotiate::{FormatRequest, Negotiated, negotiate};
pub use source::CameraSource;
