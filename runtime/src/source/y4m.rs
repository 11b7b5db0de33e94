//! Y4M (YUV4MPEG2) video, what `ffmpeg -f yuv4mpegpipe` writes.
//!
//! Parsed by hand: the format is a text header plus raw planes, and the crates that read it
//! (`y4m`) are unmaintained and trust the header's frame size for their allocation; here the
//! claimed size is bounded before anything is allocated, and every error names the file and
//! what in it is wrong.

use super::{Frame, FrameSource, SourceError};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest frame (all planes) accepted: 8K 4:4:4 fits, a corrupt header claiming gigabytes
/// does not.
pub const MAX_Y4M_FRAME_BYTES: usize = 128 << 20;
/// Largest width or height accepted.
const MAX_SIDE: u32 = 16384;
/// Header and frame-header lines longer than this are not Y4M.
const MAX_LINE: usize = 4096;
const MAGIC: &str = "YUV4MPEG2";

/// Chroma layout of the planes (all 8-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0, every siting variant (jpeg, mpeg2, paldv): siting moves chroma by half a pixel,
    /// which does not matter for face detection.
    C420,
    C422,
    C444,
    Mono,
}

/// The stream header.
#[derive(Debug, Clone, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    /// Frame rate as a fraction, when the header gives one.
    pub fps: Option<(u32, u32)>,
    pub chroma: Chroma,
    /// `XCOLORRANGE=FULL` (ffmpeg's yuvj formats); otherwise studio range (16–235).
    pub full_range: bool,
}

impl Y4mHeader {
    /// Bytes of one frame's planes.
    pub fn frame_bytes(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = match self.chroma {
            Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
            Chroma::C422 => (w.div_ceil(2), h),
            Chroma::C444 => (w, h),
            Chroma::Mono => (0, 0),
        };
        w * h + 2 * cw * ch
    }

    /// Parses the header line (without its newline).
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut tokens = line.split(' ').filter(|t| !t.is_empty());
        if tokens.next() != Some(MAGIC) {
            return Err(format!("does not start with `{MAGIC}`"));
        }
        let (mut width, mut height, mut fps) = (None, None, None);
        let mut chroma = Chroma::C420;
        let mut full_range = false;
        for t in tokens {
            // Checked: a token starting with a multi-byte character has no 1-byte tag (found
            // by fuzzing: `split_at(1)` panicked).
            let Some((tag, val)) = t.split_at_checked(1) else {
                return Err(format!("unknown header field `{t}`"));
            };
            match tag {
                "W" => width = Some(parse_side(val, "width (W)")?),
                "H" => height = Some(parse_side(val, "height (H)")?),
                "F" => fps = Some(parse_ratio(val)?),
                "C" => chroma = parse_chroma(val)?,
                "X" if val.eq_ignore_ascii_case("COLORRANGE=FULL") => full_range = true,
                // Interlacing, aspect ratio and other extensions do not change the pixel layout.
                "I" | "A" | "X" => {}
                _ => return Err(format!("unknown header field `{t}`")),
            }
        }
        let width = width.ok_or("no width (W) field")?;
        let height = height.ok_or("no height (H) field")?;
        let fps = match fps {
            Some((n, d)) if n > 0 && d > 0 => Some((n, d)),
            // `F0:0` means unknown.
            _ => None,
        };
        let h = Y4mHeader {
            width,
            height,
            fps,
            chroma,
            full_range,
        };
        if h.frame_bytes() > MAX_Y4M_FRAME_BYTES {
            return Err(format!(
                "{width}x{height} frames of {} bytes exceed the limit of {MAX_Y4M_FRAME_BYTES} bytes",
                h.frame_bytes()
            ));
        }
        Ok(h)
    }
}

fn parse_side(v: &str, what: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_SIDE).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{what} {n} is outside 1..={MAX_SIDE}")),
        Err(_) => Err(format!("{what} `{v}` is not a number")),
    }
}

fn parse_ratio(v: &str) -> Result<(u32, u32), String> {
    let bad = || format!("frame rate (F) `{v}` is not N:D");
    let (n, d) = v.split_once(':').ok_or_else(bad)?;
    Ok((n.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?))
}

fn parse_chroma(v: &str) -> Result<Chroma, String> {
    Ok(match v {
        "420jpeg" | "420" | "420mpeg2" | "420paldv" => Chroma::C420,
        "422" => Chroma::C422,
        "444" => Chroma::C444,
        "mono" => Chroma::Mono,
        _ => {
            return Err(format!(
                "colour space (C) `{v}` is not supported (8-bit 420jpeg, 420, 420mpeg2, 420paldv, 422, 444, mono)"
            ));
        }
    })
}

/// Reads one `\n`-terminated line of at most `MAX_LINE` bytes; `Ok(None)` at a clean end of
/// stream.
fn read_line(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut b = [0u8];
    loop {
        match r.read(&mut b) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "line cut short")),
            Ok(_) if b[0] == b'\n' => return Ok(Some(line)),
            Ok(_) => {
                line.push(b[0]);
                if line.len() > MAX_LINE {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line longer than {MAX_LINE} bytes"),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A Y4M stream.
pub struct Y4mReader<R: Read + Send = BufReader<File>> {
    reader: R,
    file: PathBuf,
    header: Y4mHeader,
    planes: Vec<u8>,
    next: u64,
}

impl Y4mReader {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let f = File::open(path).map_err(SourceError::io(path))?;
        Y4mReader::new(BufReader::with_capacity(1 << 20, f), path)
    }
}

impl<R: Read + Send> Y4mReader<R> {
    /// Reads the header from `reader`; `file` names the stream in errors.
    pub fn new(mut reader: R, file: &Path) -> Result<Self, SourceError> {
        let err = |message: String| SourceError::Y4m {
            file: file.to_path_buf(),
            what: "header".into(),
            message,
        };
        let line = read_line(&mut reader)
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("empty file".into()))?;
        let line = String::from_utf8(line).map_err(|_| err("not text".into()))?;
        let header = Y4mHeader::parse(&line).map_err(err)?;
        Ok(Y4mReader {
            reader,
            file: file.to_path_buf(),
            header,
            planes: Vec::new(),
            next: 0,
        })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    fn frame_err(&self, message: String) -> SourceError {
        SourceError::Y4m {
            file: self.file.clone(),
            what: format!("frame {}", self.next),
            message,
        }
    }

    fn timestamp(&self, index: u64) -> Duration {
        match self.header.fps {
            Some((n, d)) => Duration::from_secs_f64(index as f64 * d as f64 / n as f64),
            None => Duration::ZERO,
        }
    }
}

impl<R: Read + Send> FrameSource for Y4mReader<R> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let line = match read_line(&mut self.reader) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.frame_err(e.to_string())),
        };
        if !(line.starts_with(b"FRAME") && (line.len() == 5 || line[5] == b' ')) {
            let shown = String::from_utf8_lossy(&line[..line.len().min(16)]).into_owned();
            return Err(self.frame_err(format!("expected a `FRAME` line, found `{shown}`")));
        }
        let n = self.header.frame_bytes();
        self.planes.resize(n, 0);
        if let Err(e) = self.reader.read_exact(&mut self.planes) {
            let msg = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("truncated: fewer than the {n} bytes of a frame")
            } else {
                e.to_string()
            };
            return Err(self.frame_err(msg));
        }
        let index = self.next;
        self.next += 1;
        Ok(Some(Frame {
            index,
            timestamp: self.timestamp(index),
            width: self.header.width,
            height: self.header.height,
            rgb: to_rgb(&self.header, &self.planes),
        }))
    }

    fn nominal_fps(&self) -> Option<f64> {
        self.header.fps.map(|(n, d)| n as f64 / d as f64)
    }

    fn describe(&self) -> String {
        let h = &self.header;
        format!(
            "y4m {} ({}x{} {:?}{})",
            self.file.display(),
            h.width,
            h.height,
            h.chroma,
            self.nominal_fps().map_or(String::new(), |f| format!(" {f:.2} fps"))
        )
    }
}

/// BT.601 YCbCr → RGB, studio or full range.
pub fn to_rgb(h: &Y4mHeader, planes: &[u8]) -> Vec<u8> {
    let (w, ht) = (h.width as usize, h.height as usize);
    let (cw, sx, sy) = match h.chroma {
        Chroma::C420 => (w.div_ceil(2), 2, 2),
        Chroma::C422 => (w.div_ceil(2), 2, 1),
        Chroma::C444 => (w, 1, 1),
        Chroma::Mono => (0, 1, 1),
    };
    let ch = ht.div_ceil(sy);
    let (y_plane, rest) = planes.split_at(w * ht);
    let (u_plane, v_plane) = rest.split_at(cw * ch);
    let (ys, yo, cs) = if h.full_range {
        (1.0f32, 0.0f32, 1.0f32)
    } else {
        (255.0 / 219.0, 16.0, 255.0 / 224.0)
    };
    let mut out = Vec::with_capacity(w * ht * 3);
    for y in 0..ht {
        for x in 0..w {
            let luma = (y_plane[y * w + x] as f32 - yo) * ys;
            let (cb, cr) = if h.chroma == Chroma::Mono {
                (0.0, 0.0)
            } else {
                let i = (y / sy) * cw + x / sx;
                ((u_plane[i] as f32 - 128.0) * cs, (v_plane[i] as f32 - 128.0) * cs)
            };
            let r = luma + 1.402 * cr;
            let g = luma - 0.344_136 * cb - 0.714_136 * cr;
            let b = luma + 1.772 * cb;
            out.extend([r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    out
}

/// Encodes RGB frames as a 4:4:4 full-range Y4M stream (test fixtures and demo clips; the
/// inverse of [`to_rgb`] up to rounding).
pub fn encode_y4m_444(width: u32, height: u32, fps: (u32, u32), frames: &[&[u8]]) -> Vec<u8> {
    let mut out = format!(
        "{MAGIC} W{width} H{height} F{}:{} Ip A1:1 C444 XCOLORRANGE=FULL\n",
        fps.0, fps.1
    )
    .into_bytes();
    let n = (width * height) as usize;
    for rgb in frames {
        out.extend_from_slice(b"FRAME\n");
        let mut planes = vec![0u8; 3 * n];
        for i in 0..n {
            let [r, g, b] = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]].map(f32::from);
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            planes[i] = y.round().clamp(0.0, 255.0) as u8;
            planes[n + i] = ((b - y) / 1.772 + 128.0).round().clamp(0.0, 255.0) as u8;
            planes[2 * n + i] = ((r - y) / 1.402 + 128.0).round().clamp(0.0, 255.0) as u8;
        }
        out.extend_from_slice(&planes);
    }
    out
}
