//! Showing results: an `embedded-graphics` overlay (face boxes, track ids, labels, a
//! confidence bar per class, FPS) drawn onto the RGB frame, then sent to the Linux
//! framebuffer, PNG snapshots, or an MJPEG preview over HTTP.

pub mod canvas;
pub mod display_sink;
pub mod error;
pub mod fbdev;
pub mod fps;
pub mod framebuffer;
pub mod overlay;
pub mod pixel;
pub mod preview;
pub mod snapshot;

pub use canvas::RgbCanvas;
pub use display_sink::{DisplaySink, Screen, overlay_face};
pub use error::DisplayError;
pub use fbdev::FbGeometry;
pub use fps::FpsMeter;
pub use framebuffer::Framebuffer;
pub use overlay::{OverlayFace, draw_overlay, track_colour};
pub use pixel::{Channel, PixelLayout};
pub use preview::MjpegPreview;
pub use snapshot::Snapshots;
