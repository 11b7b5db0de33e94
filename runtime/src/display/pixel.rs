//! Packing RGB8 into a framebuffer's pixel format, as its bitfields describe it.
//!
//! Driven by the (offset, length) of each channel that `FBIOGET_VSCREENINFO` reports rather than
//! by a fixed list, so RGB565, BGR565, XRGB8888 and XBGR8888 panels all work with one code path.

/// Position of one colour channel in a pixel word (`fb_bitfield`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

/// How a framebuffer stores one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub bits_per_pixel: u32,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
    /// Alpha or padding; written as all ones so panels that honour alpha show the pixel opaque.
    pub transp: Channel,
}

impl PixelLayout {
    pub const RGB565: PixelLayout = PixelLayout {
        bits_per_pixel: 16,
        red: Channel { offset: 11, length: 5 },
        green: Channel { offset: 5, length: 6 },
        blue: Channel { offset: 0, length: 5 },
        transp: Channel { offset: 0, length: 0 },
    };
    /// What most DRM fbdev emulations (Jetson, Raspberry Pi, x86) report.
    pub const XRGB8888: PixelLayout = PixelLayout {
        bits_per_pixel: 32,
        red: Channel { offset: 16, length: 8 },
        green: Channel { offset: 8, length: 8 },
        blue: Channel { offset: 0, length: 8 },
        transp: Channel { offset: 24, length: 0 },
    };

    pub fn bytes_per_pixel(&self) -> usize {
        self.bits_per_pixel as usize / 8
    }

    /// Why this layout cannot be written, if it cannot: only 16- and 32-bit true-colour layouts
    /// with channels of at most 8 bits inside the word are supported.
    pub fn check(&self) -> Result<(), String> {
        if self.bits_per_pixel != 16 && self.bits_per_pixel != 32 {
            return Err(format!("{} bits per pixel (supported: 16 and 32)", self.bits_per_pixel));
        }
        for (name, c) in [
            ("red", self.red),
            ("green", self.green),
            ("blue", self.blue),
            ("transp", self.transp),
        ] {
            let colour = name != "transp";
            if c.length > 8 || (colour && c.length == 0) || c.offset + c.length > self.bits_per_pixel {
                return Err(format!(
                    "{name} bitfield offset {} length {} does not fit a {}-bit true-colour pixel",
                    c.offset, c.length, self.bits_per_pixel
                ));
            }
        }
        Ok(())
    }

    /// The pixel word for one RGB8 colour. Channels are truncated to their width (the top bits
    /// are kept), as the kernel's own console code does.
    #[inline]
    pub fn pack(&self, [r, g, b]: [u8; 3]) -> u32 {
        let put = |v: u8, c: Channel| -> u32 {
            if c.length == 0 {
                0
            } else {
                ((v as u32) >> (8 - c.length)) << c.offset
            }
        };
        let alpha = if self.transp.length == 0 {
            0
        } else {
            ((1u32 << self.transp.length) - 1) << self.transp.offset
        };
        put(r, self.red) | put(g, self.green) | put(b, self.blue) | alpha
    }

    /// Packs a row of RGB8 pixels into `out` (native byte order, as the kernel and the display
    /// controller read the framebuffer on little-endian ARM and x86).
    pub fn pack_row(&self, rgb: &[u8], out: &mut [u8]) {
        let bpp = self.bytes_per_pixel();
        for (px, dst) in rgb.chunks_exact(3).zip(out.chunks_exact_mut(bpp)) {
            let word = self.pack([px[0], px[1], px[2]]);
            match bpp {
                2 => dst.copy_from_slice(&(word as u16).to_ne_bytes()),
                _ => dst.copy_from_slice(&word.to_ne_bytes()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb565_known_values() {
        let l = PixelLayout::RGB565;
        assert_eq!(l.pack([255, 0, 0]), 0xF800);
        assert_eq!(l.pack([0, 255, 0]), 0x07E0);
        assert_eq!(l.pack([0, 0, 255]), 0x001F);
        assert_eq!(l.pack([255, 255, 255]), 0xFFFF);
        assert_eq!(l.pack([0, 0, 0]), 0x0000);
        // 0x84 = 1000_0100: red keeps 10000, green 100001, blue 10000.
        assert_eq!(l.pack([0x84, 0x84, 0x84]), (0b10000 << 11) | (0b100001 << 5) | 0b10000);
        let mut out = [0u8; 4];
        l.pack_row(&[255, 0, 0, 0, 0, 255], &mut out);
        assert_eq!(out, [0x00, 0xF8, 0x1F, 0x00], "little-endian words");
    }

    #[test]
    fn xrgb8888_and_bgr_orders() {
        let l = PixelLayout::XRGB8888;
        assert_eq!(l.pack([0x12, 0x34, 0x56]), 0x0012_3456);
        let mut out = [0u8; 4];
        l.pack_row(&[0x12, 0x34, 0x56], &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12, 0x00], "B G R X in memory");
        let argb = PixelLayout {
            transp: Channel { offset: 24, length: 8 },
            ..l
        };
        assert_eq!(argb.pack([0x12, 0x34, 0x56]), 0xFF12_3456, "alpha opaque");
        let xbgr = PixelLayout {
            red: Channel { offset: 0, length: 8 },
            blue: Channel { offset: 16, length: 8 },
            ..l
        };
        assert_eq!(xbgr.pack([0x12, 0x34, 0x56]), 0x0056_3412);
    }

    #[test]
    fn unsupported_layouts_are_explained() {
        assert!(PixelLayout::RGB565.check().is_ok());
        assert!(PixelLayout::XRGB8888.check().is_ok());
        let l24 = PixelLayout {
            bits_per_pixel: 24,
            ..PixelLayout::XRGB8888
        };
        assert!(l24.check().unwrap_err().contains("24 bits"));
        let wide = PixelLayout {
            red: Channel { offset: 20, length: 10 },
            ..PixelLayout::XRGB8888
        };
        assert!(wide.check().unwrap_err().contains("red"));
        let mono = PixelLayout {
            green: Channel { offset: 0, length: 0 },
            ..PixelLayout::RGB565
        };
        assert!(mono.check().unwrap_err().contains("green"));
    }
}
