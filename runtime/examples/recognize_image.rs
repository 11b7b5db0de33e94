//! Recognize the expressions of the faces in one image, with sitfer-runtime as a library and the
//! default bundle built into the crate (models/default/): no files but the image.
//!
//! ```sh
//! cargo run --release -p sitfer-runtime --example recognize_image -- photo.jpg
//! cargo run --release -p sitfer-runtime --example recognize_image   # the demo photo
//! ```
//!
//! It prints one line per face: the box, the most likely expression and the three most likely
//! with their fused probabilities p̂ (classifier, text prototypes and the bundle's instance
//! buffer, fused with the bundle's settings, as `sitfer run` does).

use sitfer_runtime::ALL_EXPRESSIONS;
use sitfer_runtime::default_bundle;
use sitfer_runtime::detect::DetectorSpec;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::pipeline::{Recognizer, RecognizerConfig};
use sitfer_runtime::source::Frame;
use std::path::PathBuf;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo/astronaut.png"));
    let image = image::open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgb8();

    // The bundle's model (fp32 on x86_64, int8 on aarch64), text prototypes and seed buffer.
    let (bundle, model) = default_bundle::open(None)?;
    // rustface: the default detector, its model also built in.
    let detector = DetectorSpec::Rustface.build()?;
    let mut config = RecognizerConfig::for_bundle(&bundle);
    config.margin = DetectorSpec::Rustface.default_margin();
    // One photo: nothing to learn from, so the buffer stays the bundle's seed.
    config.continual = false;
    let buffer = InstanceBuffer::from_seed(&bundle.buffer, 0);
    let mut recognizer = Recognizer::new(&bundle, model, detector, buffer, config);

    let frame = Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: image.width(),
        height: image.height(),
        rgb: image.into_raw(),
    };
    let result = recognizer.process(&frame)?;
    if result.faces.is_empty() {
        println!("{}: no face found", path.display());
    }
    for face in &result.faces {
        let mut ranked: Vec<(usize, f32)> = face.p_hat.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ranked
            .iter()
            .take(3)
            .map(|&(c, p)| format!("{} {:.0} %", ALL_EXPRESSIONS[c].name(), 100.0 * p))
            .collect();
        let b = face.bbox;
        println!(
            "face at ({:.0}, {:.0})-({:.0}, {:.0}): {} ({})",
            b.x1,
            b.y1,
            b.x2,
            b.y2,
            face.label,
            top.join(", ")
        );
    }
    Ok(())
}
