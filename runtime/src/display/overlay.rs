//! What goes on the picture: a box per face in its track's colour, `#id label p` above it,
//! one confidence bar per class below it, and the FPS in the corner.

use super::canvas::RgbCanvas;
use crate::labels::{ALL, NUM_CLASSES};
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::{MonoTextStyle, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

/// One face to draw, in frame pixels. Plain data so the overlay does not depend on the
/// pipeline's result types.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayFace<'a> {
    /// (x, y, width, height) of the face box.
    pub bbox: (i32, i32, u32, u32),
    pub track: u64,
    pub label: &'a str,
    /// Per-class probabilities in canonical order.
    pub probs: [f32; NUM_CLASSES],
}

const CHAR_W: i32 = 6;
const LINE_H: i32 = 10;
/// Width of a full (p = 1) confidence bar.
const BAR_W: i32 = 60;
/// Class names are cut to this many letters beside the bars (`sur fea dis hap sad ang neu`).
const SHORT: usize = 3;

/// Distinct, saturated colours that stay readable on skin and on dark backgrounds; a track
/// keeps its colour for its whole life.
const PALETTE: [Rgb888; 8] = [
    Rgb888::new(0, 220, 0),
    Rgb888::new(255, 170, 0),
    Rgb888::new(0, 190, 255),
    Rgb888::new(255, 60, 200),
    Rgb888::new(255, 255, 0),
    Rgb888::new(140, 110, 255),
    Rgb888::new(0, 255, 190),
    Rgb888::new(255, 90, 70),
];

pub fn track_colour(track: u64) -> Rgb888 {
    PALETTE[(track % PALETTE.len() as u64) as usize]
}

/// Draws `faces` and, when given, the FPS onto a `width x height` RGB8 frame. Returns false
/// (drawing nothing) when the buffer does not match the size.
pub fn draw_overlay(rgb: &mut [u8], width: u32, height: u32, faces: &[OverlayFace<'_>], fps: Option<f64>) -> bool {
    let Some(mut canvas) = RgbCanvas::new(rgb, width, height) else {
        return false;
    };
    for face in faces {
        draw_face(&mut canvas, face);
    }
    if let Some(fps) = fps {
        label(&mut canvas, Point::new(2, 2), &format!("{fps:.1} fps"), Rgb888::WHITE);
    }
    true
}

fn label(canvas: &mut RgbCanvas<'_>, at: Point, text: &str, colour: Rgb888) {
    // A dark background keeps text readable on any picture.
    let style = MonoTextStyleBuilder::new()
        .font(&FONT_6X10)
        .text_color(colour)
        .background_color(Rgb888::BLACK)
        .build();
    let _ = Text::with_baseline(text, at, style, Baseline::Top).draw(canvas);
}

fn draw_face(canvas: &mut RgbCanvas<'_>, face: &OverlayFace<'_>) {
    let colour = track_colour(face.track);
    let (x, y, w, h) = face.bbox;
    let _ = Rectangle::new(Point::new(x, y), Size::new(w, h))
        .into_styled(PrimitiveStyle::with_stroke(colour, 2))
        .draw(canvas);

    let best = face.probs.iter().copied().fold(0.0f32, f32::max);
    let title = format!("#{} {} {:.2}", face.track, face.label, best);
    // Above the box when there is room, else just inside its top edge.
    let title_y = if y > LINE_H { y - LINE_H - 1 } else { y + 2 };
    label(canvas, Point::new(x, title_y), &title, colour);

    let panel_h = LINE_H * NUM_CLASSES as i32;
    let frame_h = canvas.size().height as i32;
    // Below the box when it fits in the frame, else to its right.
    let (px, py) = if y + h as i32 + 2 + panel_h <= frame_h {
        (x, y + h as i32 + 2)
    } else {
        (x + w as i32 + 2, y.max(0))
    };
    let text = MonoTextStyle::new(&FONT_6X10, Rgb888::WHITE);
    for (i, (class, p)) in ALL.iter().zip(face.probs).enumerate() {
        let row_y = py + i as i32 * LINE_H;
        let name: String = class.name().chars().take(SHORT).collect();
        let bar_x = px + (SHORT as i32 + 1) * CHAR_W;
        let _ = Rectangle::new(
            Point::new(px, row_y),
            Size::new(((SHORT as i32 + 1) * CHAR_W + BAR_W) as u32, LINE_H as u32),
        )
        .into_styled(PrimitiveStyle::with_fill(Rgb888::BLACK))
        .draw(canvas);
        let _ = Text::with_baseline(&name, Point::new(px, row_y), text, Baseline::Top).draw(canvas);
        let len = (p.clamp(0.0, 1.0) * BAR_W as f32).round() as u32;
        if len > 0 {
            let _ = Rectangle::new(Point::new(bar_x, row_y + 2), Size::new(len, (LINE_H - 3) as u32))
                .into_styled(PrimitiveStyle::with_fill(colour))
                .draw(canvas);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(buf: &[u8], w: u32, x: i32, y: i32) -> [u8; 3] {
        let i = (y as usize * w as usize + x as usize) * 3;
        [buf[i], buf[i + 1], buf[i + 2]]
    }

    fn face(track: u64, bbox: (i32, i32, u32, u32), probs: [f32; 7]) -> OverlayFace<'static> {
        OverlayFace {
            bbox,
            track,
            label: "happy",
            probs,
        }
    }

    #[test]
    fn draws_box_in_track_colour_and_bars_by_probability() {
        let (w, h) = (320u32, 240u32);
        let mut buf = vec![128u8; (w * h * 3) as usize];
        let probs = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5];
        assert!(draw_overlay(&mut buf, w, h, &[face(1, (50, 40, 60, 60), probs)], None));
        let c = track_colour(1);
        let c = [c.r(), c.g(), c.b()];
        assert_eq!(at(&buf, w, 50, 70), c, "left edge of the box");
        assert_eq!(at(&buf, w, 109, 70), c, "right edge of the box");
        assert_eq!(at(&buf, w, 80, 70), [128, 128, 128], "inside stays untouched");
        // Bars start below the box: y = 40 + 60 + 2, one 10-px row per class.
        let bar_x = 50 + 4 * CHAR_W;
        let row = |class: i32| 102 + class * LINE_H + 5;
        assert_eq!(at(&buf, w, bar_x + 59, row(3)), c, "happy: a full bar");
        assert_eq!(at(&buf, w, bar_x + 25, row(6)), c, "neutral: half a bar");
        assert_eq!(at(&buf, w, bar_x + 40, row(6)), [0, 0, 0], "neutral bar ends at 30 px");
        assert_eq!(at(&buf, w, bar_x + 1, row(0)), [0, 0, 0], "surprise: no bar");
        // The title sits above the box on a black background.
        assert_eq!(at(&buf, w, 50, 40 - LINE_H - 1), [0, 0, 0]);
    }

    #[test]
    fn panel_moves_right_near_the_bottom_and_edges_clip() {
        let (w, h) = (200u32, 120u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        let probs = [1.0; 7];
        assert!(draw_overlay(
            &mut buf,
            w,
            h,
            &[face(2, (20, 60, 50, 50), probs), face(3, (-30, -30, 40, 40), probs)],
            Some(29.97)
        ));
        let c = track_colour(2);
        // Panel to the right of the box: x = 20 + 50 + 2, first bar row at y = 60.
        assert_eq!(at(&buf, w, 72 + 4 * CHAR_W + 10, 60 + 5), [c.r(), c.g(), c.b()]);
        // The FPS text drew something white in the top-left corner.
        let white = (0..12)
            .flat_map(|y| (0..60).map(move |x| (x, y)))
            .any(|(x, y)| at(&buf, w, x, y) == [255, 255, 255]);
        assert!(white);
    }

    #[test]
    fn wrong_buffer_size_draws_nothing() {
        let mut buf = vec![0u8; 10];
        assert!(!draw_overlay(&mut buf, 4, 4, &[], Some(1.0)));
    }

    #[test]
    fn tracks_get_distinct_colours() {
        let colours: std::collections::HashSet<_> = (0..8).map(|t| track_colour(t).into_storage()).collect();
        assert_eq!(colours.len(), 8);
    }
}
