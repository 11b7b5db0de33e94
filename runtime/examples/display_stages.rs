//! Per-frame cost of the camera and display stages at a given size, on synthetic frames:
//! YUYV → RGB, MJPEG decode, overlay drawing, framebuffer packing and writing (a regular file
//! with the geometry of a 1080p XRGB8888 and a 1080p RGB565 console), PNG snapshot and preview
//! JPEG encoding.
//!
//! cargo run --release -p sitfer-runtime --example display_stages -- [WIDTH HEIGHT FACES RUNS]

use image::ImageEncoder;
use sitfer_runtime::camera::PixelFormat;
use sitfer_runtime::camera::decode::{BufferLayout, to_rgb};
use sitfer_runtime::display::{FbGeometry, Framebuffer, OverlayFace, PixelLayout, draw_overlay};
use std::time::Instant;

fn time_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..runs {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / runs as f64
}

fn main() {
    let args: Vec<u32> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let (w, h) = (
        args.first().copied().unwrap_or(640),
        args.get(1).copied().unwrap_or(480),
    );
    let faces = args.get(2).copied().unwrap_or(1) as usize;
    let runs = args.get(3).copied().unwrap_or(100) as usize;

    // A smooth gradient with some texture, so JPEG and PNG sizes are camera-like.
    let rgb: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, ((x ^ y) & 0xff) as u8]))
        .collect();
    let yuyv: Vec<u8> = (0..h)
        .flat_map(|y| (0..w / 2).flat_map(move |x| [(16 + (x + y) % 200) as u8, 128, (16 + (x * 3) % 200) as u8, 140]))
        .collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();

    let yuyv_layout = BufferLayout {
        format: PixelFormat::Yuyv,
        width: w,
        height: h,
        stride: 2 * w as usize,
    };
    let mjpeg_layout = BufferLayout {
        format: PixelFormat::Mjpeg,
        width: w,
        height: h,
        stride: 0,
    };
    let t_yuyv = time_ms(runs, || drop(to_rgb(yuyv_layout, &yuyv).unwrap()));
    let t_mjpeg = time_ms(runs, || drop(to_rgb(mjpeg_layout, &jpeg).unwrap()));

    let probs = [0.05, 0.05, 0.05, 0.6, 0.05, 0.05, 0.15];
    let list: Vec<OverlayFace> = (0..faces)
        .map(|i| OverlayFace {
            bbox: (40 + 140 * i as i32, 60, 110, 120),
            track: i as u64,
            label: "happy",
            probs,
        })
        .collect();
    let mut canvas = rgb.clone();
    let t_draw = time_ms(runs, || {
        canvas.copy_from_slice(&rgb);
        draw_overlay(&mut canvas, w, h, &list, Some(29.9));
    });

    let dir = tempfile::tempdir().unwrap();
    let mut fb_times = Vec::new();
    for (name, layout, bpp) in [
        ("xrgb8888", PixelLayout::XRGB8888, 4u32),
        ("rgb565", PixelLayout::RGB565, 2),
    ] {
        let path = dir.path().join(name);
        let geometry = FbGeometry {
            width: 1920,
            height: 1080,
            line_length: 1920 * bpp,
            xoffset: 0,
            yoffset: 0,
            layout,
        };
        std::fs::write(&path, vec![0u8; (1920 * 1080 * bpp) as usize]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut fb = Framebuffer::with_geometry(file, &path, geometry, name.into()).unwrap();
        fb_times.push((name, time_ms(runs, || fb.show(&canvas, w, h).unwrap())));
    }

    let mut png_len = 0;
    let t_png = time_ms(runs.min(20), || {
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&canvas, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        png_len = png.len();
    });
    let mut jpg_len = 0;
    let t_jpeg = time_ms(runs, || {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .write_image(&canvas, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        jpg_len = out.len();
    });

    println!("frame {w}x{h}, {faces} face(s), {runs} runs, ms per frame");
    println!("| stage | ms |");
    println!("|---|---|");
    println!("| decode YUYV → RGB | {t_yuyv:.3} |");
    println!("| decode MJPEG → RGB ({} KiB JPEG) | {t_mjpeg:.3} |", jpeg.len() / 1024);
    println!("| draw overlay | {t_draw:.3} |");
    for (name, t) in fb_times {
        println!("| framebuffer 1920x1080 {name} (fit + pack + write) | {t:.3} |");
    }
    println!("| PNG snapshot encode ({} KiB) | {t_png:.3} |", png_len / 1024);
    println!("| preview JPEG encode q80 ({} KiB) | {t_jpeg:.3} |", jpg_len / 1024);
}
