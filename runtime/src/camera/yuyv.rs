//! YUYV (packed 4:2:2) to RGB8, BT.601 video range.
//!
//! Written by hand because no maintained crate does exactly this for our buffers: V4L2 rows
//! carry a driver-chosen stride (padding after `2 * width` bytes), UVC cameras send limited
//! ("video") range BT.601, and we want packed RGB8 straight into the frame without an
//! intermediate planar copy. The conversion is the integer form from ITU-R BT.601 with 8 bits of
//! fraction, which is exact to ±1 of the floating-point formula and fast without SIMD.

/// Converts one YUYV frame. `stride` is bytes per source row (`>= 2 * width`); `width` must be
/// even (YUYV stores pixels in pairs sharing one U and one V). Returns `None` when `src` is
/// shorter than the geometry needs.
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize) -> Option<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    if !w.is_multiple_of(2) || stride < 2 * w || h == 0 {
        return None;
    }
    // The last row need not carry its padding.
    let needed = stride.checked_mul(h - 1)?.checked_add(2 * w)?;
    if src.len() < needed {
        return None;
    }
    let mut out = vec![0u8; w * h * 3];
    for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
        let line = &src[row * stride..row * stride + 2 * w];
        for (quad, px) in line.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
            px[..3].copy_from_slice(&yuv_to_rgb(y0, u, v));
            px[3..].copy_from_slice(&yuv_to_rgb(y1, u, v));
        }
    }
    Some(out)
}

/// One pixel: Y in [16, 235], U and V in [16, 240] centred on 128.
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    // 298/256 = 255/219 (luma range), 409/256 = 1.596, 100/256 = 0.391, 208/256 = 0.813,
    // 516/256 = 2.018; +128 rounds.
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [clamp(c + 409 * e), clamp(c - 100 * d - 208 * e), clamp(c + 516 * d)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: [u8; 3], want: [u8; 3]) -> bool {
        got.iter().zip(want).all(|(&g, w)| (g as i32 - w as i32).abs() <= 1)
    }

    #[test]
    fn reference_colours() {
        // BT.601 video-range codes of the 75 %/100 % colour bars and the range ends.
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(126, 128, 128), [128, 128, 128]);
        assert!(
            close(yuv_to_rgb(82, 90, 240), [255, 0, 0]),
            "{:?}",
            yuv_to_rgb(82, 90, 240)
        );
        assert!(
            close(yuv_to_rgb(145, 54, 34), [0, 255, 0]),
            "{:?}",
            yuv_to_rgb(145, 54, 34)
        );
        assert!(
            close(yuv_to_rgb(41, 240, 110), [0, 0, 255]),
            "{:?}",
            yuv_to_rgb(41, 240, 110)
        );
    }

    #[test]
    fn out_of_range_codes_clamp() {
        assert_eq!(yuv_to_rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(255, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(255, 255, 255)[0], 255);
    }

    #[test]
    fn matches_the_float_formula_everywhere() {
        for y in (0..=255).step_by(7) {
            for u in (0..=255).step_by(11) {
                for v in (0..=255).step_by(13) {
                    let (yf, uf, vf) = (y as f64 - 16.0, u as f64 - 128.0, v as f64 - 128.0);
                    let f = |x: f64| x.round().clamp(0.0, 255.0) as u8;
                    let want = [
                        f(1.164 * yf + 1.596 * vf),
                        f(1.164 * yf - 0.392 * uf - 0.813 * vf),
                        f(1.164 * yf + 2.017 * uf),
                    ];
                    let got = yuv_to_rgb(y as u8, u as u8, v as u8);
                    assert!(close(got, want), "yuv {y} {u} {v}: {got:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn pairs_share_chroma_and_stride_padding_is_skipped() {
        // 2x2 frame, stride 6 (2 bytes of padding per row marked 0xEE).
        let src = [
            16, 128, 235, 128, 0xEE, 0xEE, //
            82, 90, 41, 240, 0xEE, 0xEE,
        ];
        let rgb = yuyv_to_rgb(&src, 2, 2, 6).unwrap();
        assert_eq!(&rgb[0..6], &[0, 0, 0, 255, 255, 255]);
        // Second row: both pixels use U=90, V=240.
        assert_eq!(&rgb[6..9], &yuv_to_rgb(82, 90, 240));
        assert_eq!(&rgb[9..12], &yuv_to_rgb(41, 90, 240));
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(yuyv_to_rgb(&[0; 8], 3, 1, 6).is_none(), "odd width");
        assert!(yuyv_to_rgb(&[0; 7], 2, 2, 4).is_none(), "too short");
        assert!(yuyv_to_rgb(&[0; 8], 4, 1, 4).is_none(), "stride below 2*width");
        // The last row may omit its padding.
        assert!(yuyv_to_rgb(&[0; 10], 2, 2, 6).is_some());
    }
}
