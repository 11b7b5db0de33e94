//! Axis-aligned boxes in frame pixels, the currency of detection and tracking.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        BBox { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    pub fn iou(&self, o: &BBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + o.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// Clamped to a `width` x `height` frame.
    pub fn clamp(&self, width: u32, height: u32) -> BBox {
        let (w, h) = (width as f32, height as f32);
        BBox {
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
            x2: self.x2.clamp(0.0, w),
            y2: self.y2.clamp(0.0, h),
        }
    }

    /// The square around the box's centre with side `max(w, h) * (1 + 2 * margin)`: faces are
    /// cropped square because the model's input is square and its training crops were.
    pub fn square_with_margin(&self, margin: f32) -> BBox {
        let (cx, cy) = self.center();
        let half = self.width().max(self.height()) * (0.5 + margin);
        BBox::new(cx - half, cy - half, cx + half, cy + half)
    }

    /// Linear interpolation toward `o` (`t = 0`: self, `t = 1`: o).
    pub fn lerp(&self, o: &BBox, t: f32) -> BBox {
        let l = |a: f32, b: f32| a + (b - a) * t;
        BBox::new(l(self.x1, o.x1), l(self.y1, o.y1), l(self.x2, o.x2), l(self.y2, o.y2))
    }
}
