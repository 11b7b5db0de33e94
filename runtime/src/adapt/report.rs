//! The adaptation report written into the adapted bundle (`adaptation.json`) and its picture
//! (`adaptation-confidence.png`): what the footage held, which pseudo-labels were kept, what the
//! refit did and how the footage's predictions changed.

use super::Observed;
use super::collapse_guard::Collapse;
use super::refit::{Refit, RefitConfig};
use crate::bundle::SeedBuffer;
use crate::display::RgbCanvas;
use crate::labels::{ALL, NUM_CLASSES};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// Counts of the top fused probability of every face, in 20 bins over [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfidenceHistogram {
    pub bins: Vec<u64>,
}

impl Default for ConfidenceHistogram {
    fn default() -> Self {
        ConfidenceHistogram { bins: vec![0; 20] }
    }
}

impl ConfidenceHistogram {
    pub fn add(&mut self, confidence: f32) {
        let n = self.bins.len();
        let k = ((confidence.clamp(0.0, 1.0) * n as f32) as usize).min(n - 1);
        self.bins[k] += 1;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefitReport {
    pub objective: String,
    pub steps: usize,
    pub lr: f32,
    pub anchor: f32,
    pub loss_before: f32,
    pub loss_after: f32,
    pub relative_weight_change: f32,
}

impl RefitReport {
    pub fn new(r: &Refit, c: &RefitConfig) -> Self {
        RefitReport {
            objective: format!("{:?}", c.objective),
            steps: c.steps,
            lr: c.lr,
            anchor: c.anchor,
            loss_before: r.loss_before,
            loss_after: r.loss_after,
            relative_weight_change: r.relative_change,
        }
    }
}

fn by_class<S: Serializer>(counts: &[usize; NUM_CLASSES], s: S) -> Result<S::Ok, S::Error> {
    let m: BTreeMap<&str, usize> = ALL.iter().map(|e| (e.name(), counts[e.index()])).collect();
    m.serialize(s)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdaptReport {
    pub frames: u64,
    pub faces: u64,
    pub tracks: usize,
    /// Faces admitted by the recognizer (confidence threshold, stable tracks) per class.
    #[serde(serialize_with = "by_class")]
    pub admitted: [usize; NUM_CLASSES],
    /// Of those, the pseudo-labels: the most confident fraction of each class.
    #[serde(serialize_with = "by_class")]
    pub pseudo_labels: [usize; NUM_CLASSES],
    /// Of those, kept as buffer entries.
    #[serde(serialize_with = "by_class")]
    pub selected: [usize; NUM_CLASSES],
    #[serde(serialize_with = "by_class")]
    pub buffer_before: [usize; NUM_CLASSES],
    #[serde(serialize_with = "by_class")]
    pub buffer_after: [usize; NUM_CLASSES],
    pub confidence: ConfidenceHistogram,
    pub refit: Option<RefitReport>,
    /// Predicted class (argmax p̂) of the compared faces before and after adaptation.
    pub compared_faces: usize,
    #[serde(serialize_with = "by_class")]
    pub predicted_before: [usize; NUM_CLASSES],
    #[serde(serialize_with = "by_class")]
    pub predicted_after: [usize; NUM_CLASSES],
    /// Share of the compared faces whose predicted class changed.
    pub changed_share: f32,
    /// The guard's findings; non-empty means the adaptation was stopped.
    pub findings: Vec<Collapse>,
    pub notes: Vec<String>,
}

impl AdaptReport {
    pub fn new(observed: &Observed, buffer: &SeedBuffer) -> Self {
        let mut pseudo = [0; NUM_CLASSES];
        for c in &observed.candidates {
            pseudo[c.class] += 1;
        }
        AdaptReport {
            frames: observed.frames,
            faces: observed.faces,
            tracks: observed.tracks,
            admitted: pseudo,
            pseudo_labels: [0; NUM_CLASSES],
            selected: [0; NUM_CLASSES],
            buffer_before: buffer.class_counts(),
            buffer_after: buffer.class_counts(),
            confidence: observed.confidence.clone(),
            refit: None,
            compared_faces: observed.sample.len(),
            predicted_before: [0; NUM_CLASSES],
            predicted_after: [0; NUM_CLASSES],
            changed_share: 0.0,
            findings: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// The confidence histogram as a PNG (640x360): one bar per bin, the admission threshold as a
/// red line. Drawn with embedded-graphics, the runtime's drawing crate, so the edge binary
/// needs no plotting library.
pub fn histogram_png(h: &ConfidenceHistogram, threshold: f32) -> Vec<u8> {
    let (w, ht) = (640u32, 360u32);
    let mut rgb = vec![255u8; (w * ht * 3) as usize];
    {
        let mut canvas = RgbCanvas::new(&mut rgb, w, ht).expect("sized buffer");
        let text = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
        let (x0, y0, pw, ph) = (50i32, 30i32, 570i32, 280i32);
        let max = h.bins.iter().copied().max().unwrap_or(0).max(1);
        let n = h.bins.len() as i32;
        let bar = pw / n;
        for (k, &c) in h.bins.iter().enumerate() {
            let bh = (c as f64 / max as f64 * ph as f64).round() as i32;
            let x = x0 + k as i32 * bar;
            let colour = if (k as f32 + 0.5) / n as f32 >= threshold {
                Rgb888::new(40, 140, 60)
            } else {
                Rgb888::new(90, 110, 170)
            };
            let _ = Rectangle::new(Point::new(x + 1, y0 + ph - bh), Size::new((bar - 2) as u32, bh as u32))
                .into_styled(PrimitiveStyle::with_fill(colour))
                .draw(&mut canvas);
        }
        let axis = PrimitiveStyle::with_stroke(Rgb888::BLACK, 1);
        let _ = Line::new(Point::new(x0, y0 + ph), Point::new(x0 + pw, y0 + ph))
            .into_styled(axis)
            .draw(&mut canvas);
        let _ = Line::new(Point::new(x0, y0), Point::new(x0, y0 + ph))
            .into_styled(axis)
            .draw(&mut canvas);
        let tx = x0 + (threshold.clamp(0.0, 1.0) * pw as f32) as i32;
        let _ = Line::new(Point::new(tx, y0 - 5), Point::new(tx, y0 + ph))
            .into_styled(PrimitiveStyle::with_stroke(Rgb888::RED, 2))
            .draw(&mut canvas);
        for k in 0..=10 {
            let x = x0 + k * pw / 10;
            let _ = Text::with_baseline(
                &format!("{:.1}", k as f32 / 10.0),
                Point::new(x - 9, y0 + ph + 6),
                text,
                Baseline::Top,
            )
            .draw(&mut canvas);
        }
        let _ = Text::with_baseline(&format!("{max}"), Point::new(4, y0), text, Baseline::Top).draw(&mut canvas);
        let _ = Text::with_baseline("0", Point::new(30, y0 + ph - 8), text, Baseline::Top).draw(&mut canvas);
        let total: u64 = h.bins.iter().sum();
        let title =
            format!("top fused probability of {total} faces; threshold {threshold:.2} (red), admissible bins green");
        let _ = Text::with_baseline(&title, Point::new(x0, 8), text, Baseline::Top).draw(&mut canvas);
        let _ = Text::with_baseline(
            "confidence (max p_hat)",
            Point::new(x0 + pw / 2 - 66, y0 + ph + 20),
            text,
            Baseline::Top,
        )
        .draw(&mut canvas);
    }
    let mut png = Vec::new();
    image::RgbImage::from_raw(w, ht, rgb)
        .expect("sized buffer")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    png
}
