//! A long Y4M stream of face crops for `scripts/soak.sh`: the face of the built-in demo photo,
//! shifted, scaled, brightened and mirrored a little differently in every frame (so the model's
//! embedding moves and continual pseudo-labelling keeps admitting faces), written to stdout.
//!
//! `cargo run --release -p sitfer-runtime --example soak_stream -- FRAMES [SIZE]`

use image::imageops::{self, FilterType};
use sitfer_runtime::source::encode_y4m_444;
use std::io::Write;

/// The face box of `models/demo/astronaut.png`, as `sitfer run` detects it.
const FACE: (i64, i64, i64) = (176, 66, 98);

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let frames: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(48);
    let photo = image::load_from_memory(include_bytes!("../../models/demo/astronaut.png"))
        .expect("the demo photo decodes")
        .to_rgb8();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: i64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % (2 * n as u64 + 1)) as i64 - n
    };
    for i in 0..frames {
        let (x, y, side) = FACE;
        let side = side + rand(10);
        let (x, y) = (x + rand(6), y + rand(6));
        let crop = imageops::crop_imm(&photo, x as u32, y as u32, side as u32, side as u32).to_image();
        let mut face = imageops::resize(&crop, size, size, FilterType::Triangle);
        if i % 2 == 1 {
            imageops::flip_horizontal_in_place(&mut face);
        }
        let face = imageops::colorops::brighten(&face, rand(20) as i32);
        let bytes = encode_y4m_444(size, size, (30, 1), &[face.as_raw()]);
        // Each call writes a header; the stream has one.
        let skip = if i == 0 {
            0
        } else {
            bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1)
        };
        if let Err(e) = out.write_all(&bytes[skip..]) {
            // The reader stopped (--max-frames): not an error for a generator.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e);
        }
    }
    out.flush()
}
