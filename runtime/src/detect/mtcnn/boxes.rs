//! facenet-pytorch's box arithmetic between MTCNN's stages, with its `+ 1` pixel widths: the
//! "Min" overlap, the regression, the square and the crop range. Kept apart from the stages so
//! that each formula can be checked against the reference's one-liners.

use crate::detect::BBox;

/// facenet-pytorch's `nms_numpy` with method "Min": intersection over the smaller area, both
/// with MTCNN's `+ 1` pixel widths.
pub(super) fn min_overlap(a: &BBox, b: &BBox) -> f32 {
    let area = |r: &BBox| (r.x2 - r.x1 + 1.0) * (r.y2 - r.y1 + 1.0);
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1) + 1.0).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1) + 1.0).max(0.0);
    iw * ih / area(a).min(area(b))
}

/// `bbreg`: the regression in units of the `+ 1` width and height.
pub(super) fn bbreg(b: &BBox, reg: &[f32; 4]) -> BBox {
    let (w, h) = (b.x2 - b.x1 + 1.0, b.y2 - b.y1 + 1.0);
    BBox::new(
        b.x1 + reg[0] * w,
        b.y1 + reg[1] * h,
        b.x2 + reg[2] * w,
        b.y2 + reg[3] * h,
    )
}

/// `rerec`: the square of side max(w, h) around the box's centre (the next network's input is
/// square).
pub(super) fn rerec(b: BBox) -> BBox {
    let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
    let l = w.max(h);
    let (x1, y1) = (b.x1 + w * 0.5 - l * 0.5, b.y1 + h * 0.5 - l * 0.5);
    BBox::new(x1, y1, x1 + l, y1 + l)
}

/// `pad`: the box truncated to integers and clamped to the frame, as the 0-based half-open
/// pixel range `[x0, x1) x [y0, y1)` that facenet-pytorch crops (`[y - 1 : ey, x - 1 : ex]`
/// with `x, y >= 1` and `ex <= w, ey <= h`); `None` when that is empty.
pub(super) fn pad(b: &BBox, w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    // `as i64` truncates toward zero like torch's `trunc().int()` (and saturates on overflow).
    let x = (b.x1 as i64).max(1);
    let y = (b.y1 as i64).max(1);
    let ex = (b.x2 as i64).min(w as i64);
    let ey = (b.y2 as i64).min(h as i64);
    (ex > x - 1 && ey > y - 1).then(|| ((x - 1) as usize, (y - 1) as usize, ex as usize, ey as usize))
}
