use super::*;
use std::io::Cursor;
use std::path::Path;

fn reader(bytes: Vec<u8>) -> Result<Y4mReader<Cursor<Vec<u8>>>, SourceError> {
    Y4mReader::new(Cursor::new(bytes), Path::new("clip.y4m"))
}

fn err_of(bytes: &[u8]) -> String {
    match reader(bytes.to_vec()) {
        Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(bytes)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn y4m_420_frames_decode_with_known_values() {
    // 4x2 studio-range 4:2:0: Y 16 (black) on the left half, 235 (white) on the right; neutral
    // chroma. Two frames at 25 fps.
    let mut bytes = b"YUV4MPEG2 W4 H2 F25:1 Ip A0:0 C420jpeg XYSCSS=420JPEG\n".to_vec();
    for _ in 0..2 {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&[16, 16, 235, 235, 16, 16, 235, 235]);
        bytes.extend_from_slice(&[128, 128, 128, 128]);
    }
    let mut r = reader(bytes).unwrap();
    assert_eq!(r.nominal_fps(), Some(25.0));
    let f0 = r.next_frame().unwrap().unwrap();
    assert_eq!((f0.width, f0.height, f0.rgb.len()), (4, 2, 24));
    assert_eq!(f0.pixel(0, 0), [0, 0, 0]);
    assert_eq!(f0.pixel(3, 1), [255, 255, 255]);
    let f1 = r.next_frame().unwrap().unwrap();
    assert_eq!((f1.index, f1.timestamp), (1, std::time::Duration::from_millis(40)));
    assert!(r.next_frame().unwrap().is_none());
}

#[test]
fn y4m_chroma_is_applied_and_444_round_trips() {
    // Full-range 4:4:4 pure red, green, blue, grey through the encoder and back.
    let rgb: Vec<u8> = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]].concat();
    let bytes = encode_y4m_444(2, 2, (30, 1), &[&rgb]);
    let mut r = reader(bytes).unwrap();
    assert_eq!(r.header().chroma, Chroma::C444);
    let f = r.next_frame().unwrap().unwrap();
    for (a, b) in f.rgb.iter().zip(&rgb) {
        assert!((*a as i32 - *b as i32).abs() <= 2, "{:?} vs {rgb:?}", f.rgb);
    }
    // Mono: luma only, grey out.
    let mut mono = b"YUV4MPEG2 W2 H1 F30:1 Cmono XCOLORRANGE=FULL\nFRAME\n".to_vec();
    mono.extend_from_slice(&[10, 200]);
    let f = reader(mono).unwrap().next_frame().unwrap().unwrap();
    assert_eq!(f.rgb, vec![10, 10, 10, 200, 200, 200]);
    // Odd sizes: 4:2:0 chroma planes round up (3x3 luma, 2x2 chroma).
    let mut odd = b"YUV4MPEG2 W3 H3 C420mpeg2\nFRAME\n".to_vec();
    odd.extend_from_slice(&[128; 9 + 4 + 4]);
    let f = reader(odd).unwrap().next_frame().unwrap().unwrap();
    assert_eq!(f.rgb.len(), 27);
}

#[test]
fn malformed_y4m_headers_are_clear_errors() {
    for (bytes, want) in [
        (&b""[..], "empty file"),
        (b"RIFF W4 H4\n", "YUV4MPEG2"),
        (b"YUV4MPEG2 H4\n", "no width"),
        (b"YUV4MPEG2 W4\n", "no height"),
        (b"YUV4MPEG2 W0 H4\n", "width (W) 0"),
        (b"YUV4MPEG2 Wx H4\n", "not a number"),
        (b"YUV4MPEG2 W4 H4 F30\n", "N:D"),
        (b"YUV4MPEG2 W4 H4 C420p10\n", "420p10"),
        (b"YUV4MPEG2 W4 H4 Q9\n", "unknown header field"),
        // Fuzzing regression: a field starting with a multi-byte character panicked.
        (
            "YUV4MPEG2 W4 H4 \u{40f}C444\n".as_bytes(),
            "unknown header field `\u{40f}C444`",
        ),
    ] {
        let e = err_of(bytes);
        assert!(e.contains("clip.y4m") && e.contains(want), "{e} (wanted {want})");
    }
    let long = [b"YUV4MPEG2 ".to_vec(), vec![b'X'; 10_000]].concat();
    assert!(err_of(&long).contains("longer than"));
}

#[test]
fn absurd_claimed_frame_size_is_refused_before_allocating() {
    let e = err_of(b"YUV4MPEG2 W16384 H16384 C444\n");
    assert!(e.contains("exceed the limit"), "{e}");
    let e = err_of(b"YUV4MPEG2 W99999999 H2\n");
    assert!(e.contains("outside"), "{e}");
}

#[test]
fn truncated_and_garbled_frames_name_the_frame() {
    let mut bytes = b"YUV4MPEG2 W2 H2 C444\nFRAME\n".to_vec();
    bytes.extend_from_slice(&[0; 12]);
    bytes.extend_from_slice(b"FRAME\n");
    bytes.extend_from_slice(&[0; 5]);
    let mut r = reader(bytes.clone()).unwrap();
    assert!(r.next_frame().unwrap().is_some());
    let e = r.next_frame().unwrap_err().to_string();
    assert!(e.contains("frame 1") && e.contains("truncated"), "{e}");
    let mut bad = b"YUV4MPEG2 W2 H2 C444\nFRAMX\n".to_vec();
    bad.extend_from_slice(&[0; 12]);
    let e = reader(bad).unwrap().next_frame().unwrap_err().to_string();
    assert!(e.contains("frame 0") && e.contains("FRAME"), "{e}");
}

fn write_png(path: &Path, w: u32, h: u32, v: u8) {
    image::RgbImage::from_pixel(w, h, image::Rgb([v, v, v]))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_is_sorted_skips_non_images_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("b.png"), 3, 2, 20);
    write_png(&dir.path().join("a.png"), 4, 4, 10);
    write_png(&dir.path().join("c.png"), 5, 1, 30);
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let mut s = open_path(dir.path(), Some(10.0)).unwrap();
    let mut seen = Vec::new();
    assert_eq!(s.frames_left(), Some(3));
    while let Some(f) = s.next_frame().unwrap() {
        assert_eq!(f.rgb.len(), (f.width * f.height * 3) as usize);
        seen.push((f.index, f.rgb[0], f.timestamp.as_millis(), s.frames_left()));
    }
    assert_eq!(
        seen,
        vec![(0, 10, 0, Some(2)), (1, 20, 100, Some(1)), (2, 30, 200, Some(0))]
    );
    std::fs::write(dir.path().join("d.png"), "not a png").unwrap();
    let mut s = ImageFolder::open(dir.path(), None).unwrap();
    for _ in 0..3 {
        s.next_frame().unwrap();
    }
    let e = s.next_frame().unwrap_err().to_string();
    assert!(e.contains("d.png"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ImageFolder::open(empty.path(), None),
        Err(SourceError::Empty { .. })
    ));
    let single = open_path(&dir.path().join("a.png"), None)
        .unwrap()
        .next_frame()
        .unwrap()
        .unwrap();
    assert_eq!((single.width, single.height), (4, 4));
}

#[test]
fn paced_source_releases_frames_at_the_stream_rate() {
    let rgb = vec![0u8; 12];
    let bytes = encode_y4m_444(2, 2, (50, 1), &[&rgb, &rgb, &rgb, &rgb, &rgb]);
    let mut p = Paced::new(reader(bytes).unwrap(), None);
    let t = std::time::Instant::now();
    let mut n = 0;
    while p.next_frame().unwrap().is_some() {
        n += 1;
    }
    // 5 frames at 50 fps: the last is due 80 ms after the first.
    let ms = t.elapsed().as_millis();
    assert_eq!(n, 5);
    assert!((75..400).contains(&ms), "{ms} ms");
}
