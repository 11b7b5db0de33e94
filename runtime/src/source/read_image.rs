//! Image files as users have them, to RGB8: what `image` decodes (PNG with a palette, grey+alpha
//! or 16 bits; 16-bit, grey+alpha and RGBA TIFF; JPEG), plus palette-colour TIFF, which neither
//! `image` nor `tiff` decodes ("RGBPalette … unsupported") and which some public FER datasets
//! ship their frames in.
//!
//! A palette TIFF is read by marking a copy of it as plain grey (PhotometricInterpretation 3 →
//! 1, one 2-byte field in the first directory), letting `tiff` decode the pixel indices with
//! whatever compression the file uses, and looking each index up in the file's ColorMap.

use image::RgbImage;
use std::io::Cursor;
use std::path::Path;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

/// Decodes `path` to RGB8; the error says why, in words (the caller names the file).
pub fn read_rgb(path: &Path) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_rgb(&bytes)
}

/// Like [`read_rgb`], for the bytes of a file.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    let decoded = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode();
    match decoded {
        Ok(img) => Ok(img.to_rgb8()),
        Err(e) => match palette_field(bytes) {
            Some(at) => decode_palette_tiff(bytes, at),
            None => Err(e.to_string()),
        },
    }
}

/// Byte order of a TIFF file.
#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8]) -> Option<u16> {
        let a = [*b.first()?, *b.get(1)?];
        Some(match self {
            Order::Little => u16::from_le_bytes(a),
            Order::Big => u16::from_be_bytes(a),
        })
    }
    fn u32(self, b: &[u8]) -> Option<u32> {
        let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        })
    }
    fn u64(self, b: &[u8]) -> Option<u64> {
        let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
        Some(match self {
            Order::Little => u64::from_le_bytes(a),
            Order::Big => u64::from_be_bytes(a),
        })
    }
}

const PHOTOMETRIC: u16 = 262;
const PALETTE: u16 = 3;
const BLACK_IS_ZERO: u16 = 1;

/// Where the first directory's PhotometricInterpretation value lies, when the file is a TIFF
/// (classic or BigTIFF) whose first image is palette-colour; with its byte order.
fn palette_field(b: &[u8]) -> Option<(usize, bool)> {
    let order = match b.get(..2)? {
        b"II" => Order::Little,
        b"MM" => Order::Big,
        _ => return None,
    };
    let big_endian = matches!(order, Order::Big);
    let (mut at, count, entry, value_at) = match order.u16(&b[2..])? {
        42 => {
            let ifd = order.u32(b.get(4..)?)? as usize;
            (ifd + 2, order.u16(b.get(ifd..)?)? as usize, 12, 8)
        }
        43 => {
            let ifd = usize::try_from(order.u64(b.get(8..)?)?).ok()?;
            (ifd + 8, usize::try_from(order.u64(b.get(ifd..)?)?).ok()?, 20, 12)
        }
        _ => return None,
    };
    for _ in 0..count.min(4096) {
        let tag = order.u16(b.get(at..)?)?;
        if tag == PHOTOMETRIC {
            let value = at + value_at;
            return (order.u16(b.get(value..)?)? == PALETTE).then_some((value, big_endian));
        }
        at += entry;
    }
    None
}

fn decode_palette_tiff(bytes: &[u8], (field, big_endian): (usize, bool)) -> Result<RgbImage, String> {
    let tiff_err = |e: tiff::TiffError| format!("palette TIFF: {e}");
    let mut grey = bytes.to_vec();
    let v = if big_endian {
        BLACK_IS_ZERO.to_be_bytes()
    } else {
        BLACK_IS_ZERO.to_le_bytes()
    };
    grey[field..field + 2].copy_from_slice(&v);
    let mut dec = Decoder::new(Cursor::new(grey)).map_err(tiff_err)?;
    let (w, h) = dec.dimensions().map_err(tiff_err)?;
    let bits = dec.get_tag_unsigned::<u16>(Tag::BitsPerSample).map_err(tiff_err)?;
    if !matches!(bits, 1 | 2 | 4 | 8) {
        return Err(format!(
            "palette TIFF with {bits} bits per index (expected 1, 2, 4 or 8)"
        ));
    }
    let map = dec.get_tag_u16_vec(Tag::ColorMap).map_err(tiff_err)?;
    let colours = 1usize << bits;
    if map.len() != 3 * colours {
        return Err(format!(
            "palette TIFF: a ColorMap of {} values for {bits}-bit indices (expected {})",
            map.len(),
            3 * colours
        ));
    }
    let DecodingResult::U8(data) = dec.read_image().map_err(tiff_err)? else {
        return Err("palette TIFF: indices are not bytes".into());
    };
    let (wu, hu) = (w as usize, h as usize);
    // Rows of sub-byte indices start on a byte boundary.
    let stride = (wu * bits as usize).div_ceil(8);
    if data.len() < stride * hu {
        return Err(format!(
            "palette TIFF: {} bytes of pixels for {w}x{h} at {bits} bits",
            data.len()
        ));
    }
    let per_byte = 8 / bits as usize;
    let mut rgb = Vec::with_capacity(wu * hu * 3);
    for y in 0..hu {
        let row = &data[y * stride..(y + 1) * stride];
        for x in 0..wu {
            let byte = row[x / per_byte];
            let shift = 8 - bits as usize * (x % per_byte + 1);
            let i = (byte as usize >> shift) & (colours - 1);
            // ColorMap entries are 16-bit: the high byte is the 8-bit value.
            rgb.extend([map[i], map[colours + i], map[2 * colours + i]].map(|c| (c >> 8) as u8));
        }
    }
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| "palette TIFF: size mismatch".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ImageEncoder, Luma, LumaA};

    /// An uncompressed palette-colour TIFF of `w`x`h` pixels with `bits`-bit indices (rows
    /// packed, most significant bits first) and a ColorMap where index i is
    /// `colour(i)`; big-endian when `big`.
    pub fn palette_tiff(
        w: u16,
        h: u16,
        bits: u16,
        indices: &[u8],
        colour: impl Fn(usize) -> [u8; 3],
        big: bool,
    ) -> Vec<u8> {
        let colours = 1usize << bits;
        let stride = (w as usize * bits as usize).div_ceil(8);
        let mut pixels = vec![0u8; stride * h as usize];
        let per_byte = 8 / bits as usize;
        for y in 0..h as usize {
            for x in 0..w as usize {
                let shift = 8 - bits as usize * (x % per_byte + 1);
                pixels[y * stride + x / per_byte] |= indices[y * w as usize + x] << shift;
            }
        }
        let u16b = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let entries = 10u32;
        let data = 8 + 2 + 12 * entries + 4;
        let map_at = data;
        let pixels_at = map_at + 2 * 3 * colours as u32;
        let mut f = Vec::new();
        f.extend(if big { *b"MM" } else { *b"II" });
        f.extend(u16b(42));
        f.extend(u32b(8));
        f.extend(u16b(entries as u16));
        let mut entry = |tag: u16, ty: u16, count: u32, value: u32| {
            f.extend(u16b(tag));
            f.extend(u16b(ty));
            f.extend(u32b(count));
            // A SHORT value sits in the first two bytes of the field.
            if ty == 3 && count == 1 {
                f.extend(u16b(value as u16));
                f.extend([0, 0]);
            } else {
                f.extend(u32b(value));
            }
        };
        entry(256, 3, 1, w as u32);
        entry(257, 3, 1, h as u32);
        entry(258, 3, 1, bits as u32);
        entry(259, 3, 1, 1);
        entry(262, 3, 1, PALETTE as u32);
        entry(273, 4, 1, pixels_at);
        entry(277, 3, 1, 1);
        entry(278, 3, 1, h as u32);
        entry(279, 4, 1, pixels.len() as u32);
        entry(320, 3, 3 * colours as u32, map_at);
        f.extend(u32b(0));
        assert_eq!(f.len() as u32, map_at);
        for channel in 0..3 {
            for i in 0..colours {
                let c = colour(i)[channel] as u16;
                f.extend(u16b(c << 8 | c));
            }
        }
        f.extend(pixels);
        f
    }

    fn colour(i: usize) -> [u8; 3] {
        [(i * 37 % 256) as u8, (255 - i * 11 % 256) as u8, (i * 101 % 256) as u8]
    }

    #[test]
    fn palette_tiffs_are_expanded_through_their_colour_map() {
        for (bits, big) in [(8, false), (8, true), (4, false), (1, true)] {
            let (w, h) = (5u16, 3u16);
            let n = 1usize << bits;
            let indices: Vec<u8> = (0..w as usize * h as usize).map(|i| ((i * 7 + 3) % n) as u8).collect();
            let file = palette_tiff(w, h, bits, &indices, colour, big);
            // What the image crate says on its own: the reason this module exists.
            let plain = image::load_from_memory(&file).unwrap_err().to_string();
            assert!(plain.to_lowercase().contains("palette"), "{plain}");
            let img = decode_rgb(&file).unwrap_or_else(|e| panic!("{bits} bits, big {big}: {e}"));
            assert_eq!(img.dimensions(), (w as u32, h as u32));
            for (i, p) in img.pixels().enumerate() {
                assert_eq!(p.0, colour(indices[i] as usize), "{bits} bits, big {big}, pixel {i}");
            }
        }
    }

    #[test]
    fn sixteen_bit_and_grey_alpha_images_come_out_as_rgb8() {
        let mut l16 = image::ImageBuffer::<Luma<u16>, Vec<u16>>::new(4, 2);
        for (x, _, p) in l16.enumerate_pixels_mut() {
            *p = Luma([x as u16 * 20000]);
        }
        let mut tiff16 = Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma16(l16)
            .write_to(&mut tiff16, image::ImageFormat::Tiff)
            .unwrap();
        let img = decode_rgb(tiff16.get_ref()).unwrap();
        // 16 bits to 8: 60000 / 257 = 233.46.
        assert_eq!(img.get_pixel(3, 1).0, [233, 233, 233]);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);

        let la = image::ImageBuffer::<LumaA<u8>, Vec<u8>>::from_pixel(3, 3, LumaA([200, 128]));
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(la.as_raw(), 3, 3, image::ExtendedColorType::La8)
            .unwrap();
        assert_eq!(decode_rgb(&png).unwrap().get_pixel(1, 1).0, [200, 200, 200]);
    }

    #[test]
    fn what_is_not_an_image_says_why() {
        let e = decode_rgb(b"not an image at all").unwrap_err();
        assert!(e.to_lowercase().contains("format"), "{e}");
        // A truncated palette TIFF: the directory is there, the pixels are not.
        let file = palette_tiff(4, 4, 8, &[0; 16], colour, false);
        let e = decode_rgb(&file[..file.len() - 8]).unwrap_err();
        assert!(e.starts_with("palette TIFF"), "{e}");
    }
}
