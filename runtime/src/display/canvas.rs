//! An `embedded-graphics` draw target over a packed RGB8 frame buffer.
//!
//! Pixels outside the frame are skipped, so overlays for faces at the frame edge need no
//! clipping of their own.

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{Dimensions, DrawTarget, OriginDimensions, Pixel, Size};
use embedded_graphics::primitives::Rectangle;
use std::convert::Infallible;

pub struct RgbCanvas<'a> {
    rgb: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> RgbCanvas<'a> {
    /// `None` when `rgb` is not `width * height * 3` bytes.
    pub fn new(rgb: &'a mut [u8], width: u32, height: u32) -> Option<RgbCanvas<'a>> {
        (rgb.len() == width as usize * height as usize * 3).then_some(RgbCanvas { rgb, width, height })
    }

    #[inline]
    fn put(&mut self, x: i32, y: i32, c: Rgb888) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&[c.r(), c.g(), c.b()]);
        }
    }
}

impl OriginDimensions for RgbCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for RgbCanvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        for Pixel(p, c) in pixels {
            self.put(p.x, p.y, c);
        }
        Ok(())
    }

    // Bars and label backgrounds are filled rectangles: fill whole clipped rows instead of one
    // bounds-checked pixel at a time.
    fn fill_solid(&mut self, area: &Rectangle, color: Rgb888) -> Result<(), Infallible> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let px = [color.r(), color.g(), color.b()];
        for y in area.top_left.y..=bottom_right.y {
            let row = y as usize * self.width as usize;
            let (x0, x1) = (area.top_left.x as usize, bottom_right.x as usize);
            for chunk in self.rgb[(row + x0) * 3..(row + x1 + 1) * 3].chunks_exact_mut(3) {
                chunk.copy_from_slice(&px);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn draws_and_clips() {
        let mut buf = vec![0u8; 4 * 3 * 3];
        let mut c = RgbCanvas::new(&mut buf, 4, 3).unwrap();
        Pixel(Point::new(1, 2), Rgb888::new(1, 2, 3)).draw(&mut c).unwrap();
        Pixel(Point::new(-1, 0), Rgb888::WHITE).draw(&mut c).unwrap();
        Pixel(Point::new(4, 0), Rgb888::WHITE).draw(&mut c).unwrap();
        Rectangle::new(Point::new(3, -5), Size::new(10, 6))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::RED))
            .draw(&mut c)
            .unwrap();
        let px = |x: usize, y: usize| &buf[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!(px(1, 2), [1, 2, 3]);
        assert_eq!(px(3, 0), [255, 0, 0]);
        assert_eq!(px(3, 1), [0, 0, 0], "the rectangle ends at row 0");
        assert_eq!(px(0, 0), [0, 0, 0]);
        assert_eq!(buf.iter().filter(|&&b| b == 255).count(), 1);
    }

    #[test]
    fn refuses_a_buffer_of_the_wrong_size() {
        assert!(RgbCanvas::new(&mut [0u8; 10], 2, 2).is_none());
    }
}
