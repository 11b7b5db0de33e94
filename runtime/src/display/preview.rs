//! An MJPEG-over-HTTP preview for headless boards: `GET /` is a page showing the stream,
//! `GET /stream` the `multipart/x-mixed-replace` stream every browser plays, `GET /frame.jpg`
//! the newest frame. std::net only: one listener thread plus one thread per viewer, which is
//! plenty for the one or two people watching a board.
//!
//! It binds where it is told; the board profiles and the CLI default to loopback because the
//! picture shows faces. Connections are capped (`--preview-max-viewers`): each costs a thread and,
//! while streaming, a JPEG send per frame, so a page left open in many tabs (or a client opening
//! connections in a loop) would otherwise take the board's CPU and memory from the camera loop.
//! Over the cap a client gets `503 Service Unavailable` at once.

use super::error::DisplayError;
use image::ImageEncoder;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const BOUNDARY: &str = "sitferframe";
/// Concurrent connections served when the caller does not say.
pub const DEFAULT_MAX_VIEWERS: usize = 4;
const PAGE: &str = "<!doctype html><title>sitfer</title><body style=\"margin:0;background:#000\">\
<img src=\"/stream\" style=\"width:100%;height:100vh;object-fit:contain\"></body>";

struct Shared {
    /// (sequence number, JPEG) of the newest frame.
    latest: Mutex<(u64, Arc<Vec<u8>>)>,
    fresh: Condvar,
    stop: AtomicBool,
    /// Connections streaming `/stream` (frames are encoded only while there is one).
    viewers: AtomicUsize,
    /// Connections being served, of any path; at most `max_connections`.
    connections: AtomicUsize,
    max_connections: usize,
}

pub struct MjpegPreview {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listener: Option<JoinHandle<()>>,
    quality: u8,
    sequence: u64,
}

impl MjpegPreview {
    /// Listens on `addr` (`127.0.0.1:8090`; port 0 picks a free one), serving up to
    /// [`DEFAULT_MAX_VIEWERS`] connections at once.
    pub fn bind(addr: &str) -> Result<MjpegPreview, DisplayError> {
        Self::bind_with_limit(addr, DEFAULT_MAX_VIEWERS)
    }

    /// Like [`bind`](Self::bind), serving up to `max_viewers` (≥ 1) connections at once.
    pub fn bind_with_limit(addr: &str, max_viewers: usize) -> Result<MjpegPreview, DisplayError> {
        let http = |source| DisplayError::Http {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(http)?;
        let local = listener.local_addr().map_err(http)?;
        // Non-blocking accept so the listener thread notices `stop` without a wake-up connection.
        listener.set_nonblocking(true).map_err(http)?;
        let shared = Arc::new(Shared {
            latest: Mutex::new((0, Arc::new(Vec::new()))),
            fresh: Condvar::new(),
            stop: AtomicBool::new(false),
            viewers: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            max_connections: max_viewers.max(1),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("mjpeg-preview".into())
                .spawn(move || accept_loop(listener, shared))
                .map_err(http)?
        };
        log::info!("preview on http://{local}/");
        Ok(MjpegPreview {
            shared,
            addr: local,
            listener: Some(thread),
            quality: 80,
            sequence: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes a frame. The JPEG is encoded only while someone watches: encoding costs more
    /// than drawing the overlay on small boards.
    pub fn publish(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<(), DisplayError> {
        if self.shared.viewers.load(Ordering::Relaxed) == 0 && self.sequence > 0 {
            return Ok(());
        }
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(DisplayError::BadFrame {
                width,
                height,
                len: rgb.len(),
            });
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, self.quality)
            .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
            .map_err(|e| DisplayError::Http {
                addr: self.addr.to_string(),
                source: std::io::Error::other(e),
            })?;
        self.sequence += 1;
        *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = (self.sequence, Arc::new(jpeg));
        self.shared.fresh.notify_all();
        Ok(())
    }
}

impl Drop for MjpegPreview {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.fresh.notify_all();
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if shared.connections.load(Ordering::SeqCst) >= shared.max_connections {
                    log::debug!("preview: {peer} refused, {} viewers already", shared.max_connections);
                    refuse(stream);
                    continue;
                }
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                let spawned = std::thread::Builder::new().name("mjpeg-viewer".into()).spawn({
                    let shared = shared.clone();
                    move || {
                        if let Err(e) = serve(stream, &shared) {
                            log::debug!("preview viewer {peer}: {e}");
                        }
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                    }
                });
                if spawned.is_err() {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                log::warn!("preview: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Answers a connection over the cap from the accept thread: the request is read (briefly, so
/// the client is not reset before it reads the answer), then `503` and close.
fn refuse(stream: TcpStream) {
    let answer = || -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        stream.set_write_timeout(Some(Duration::from_millis(100)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 2 {
            line.clear();
        }
        let body = "too many preview viewers; try again later\n";
        let mut out = &stream;
        write!(
            out,
            "HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    if let Err(e) = answer() {
        log::debug!("preview: refusing a viewer: {e}");
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Headers are not needed; read them so the client is not cut off mid-request.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let mut out = stream;
    match path {
        "/" | "/index.html" => write!(
            out,
            "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{PAGE}",
            PAGE.len()
        ),
        "/frame.jpg" => {
            let (_, jpeg) = shared.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
            write!(
                out,
                "HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )?;
            out.write_all(&jpeg)
        }
        "/stream" => {
            shared.viewers.fetch_add(1, Ordering::Relaxed);
            let result = stream_to(&mut out, shared);
            shared.viewers.fetch_sub(1, Ordering::Relaxed);
            result
        }
        _ => out.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    }
}

fn stream_to(out: &mut TcpStream, shared: &Shared) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-cache\r\n\r\n"
    )?;
    let mut seen = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let jpeg = {
            let mut latest = shared.latest.lock().unwrap_or_else(|p| p.into_inner());
            while latest.0 == seen && !shared.stop.load(Ordering::Relaxed) {
                latest = shared
                    .fresh
                    .wait_timeout(latest, Duration::from_millis(500))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            seen = latest.0;
            latest.1.clone()
        };
        if jpeg.is_empty() {
            continue;
        }
        write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )?;
        out.write_all(&jpeg)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s
    }

    fn read_headers(r: &mut BufReader<TcpStream>) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.trim().is_empty() {
                return lines;
            }
            lines.push(l.trim().to_string());
        }
    }

    #[test]
    fn streams_jpeg_frames_to_a_viewer() {
        let mut p = MjpegPreview::bind("127.0.0.1:0").unwrap();
        let addr = p.local_addr();
        assert!(addr.ip().is_loopback());
        let red: Vec<u8> = [[250u8, 10, 10]; 16 * 8].concat();
        p.publish(&red, 16, 8).unwrap();

        let mut page = String::new();
        get(addr, "/").read_to_string(&mut page).unwrap();
        assert!(page.contains("/stream"), "{page}");

        let mut r = BufReader::new(get(addr, "/stream"));
        let head = read_headers(&mut r);
        assert!(head[0].contains("200"), "{head:?}");
        assert!(head.iter().any(|h| h.contains("multipart/x-mixed-replace")), "{head:?}");
        // Wait until the viewer is registered, then publish a fresh frame for it.
        for _ in 0..100 {
            if p.shared.viewers.load(Ordering::Relaxed) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        p.publish(&red, 16, 8).unwrap();
        let part = read_headers(&mut r);
        assert_eq!(part[0], format!("--{BOUNDARY}"));
        let len: usize = part
            .iter()
            .find_map(|h| h.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut jpeg = vec![0; len];
        r.read_exact(&mut jpeg).unwrap();
        let img = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (16, 8));
        assert!(img.get_pixel(8, 4)[0] > 200);

        let mut missing = String::new();
        get(addr, "/nope").read_to_string(&mut missing).unwrap();
        assert!(missing.starts_with("HTTP/1.0 404"));
        drop(p);
    }

    #[test]
    fn viewers_over_the_cap_get_503_until_one_leaves() {
        let mut p = MjpegPreview::bind_with_limit("127.0.0.1:0", 1).unwrap();
        let addr = p.local_addr();
        let frame = [[0u8, 0, 0]; 8 * 8].concat();
        p.publish(&frame, 8, 8).unwrap();
        let mut first = BufReader::new(get(addr, "/stream"));
        assert!(read_headers(&mut first)[0].contains("200"));

        let mut second = String::new();
        get(addr, "/frame.jpg").read_to_string(&mut second).unwrap();
        assert!(second.starts_with("HTTP/1.0 503"), "{second}");
        assert!(second.contains("too many preview viewers"), "{second}");

        // The first viewer leaves; its thread notices at the next frames it cannot send.
        drop(first);
        for _ in 0..200 {
            if p.shared.connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            p.publish(&frame, 8, 8).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut third = Vec::new();
        get(addr, "/frame.jpg").read_to_end(&mut third).unwrap();
        assert!(
            third.starts_with(b"HTTP/1.0 200"),
            "{:?}",
            String::from_utf8_lossy(&third[..third.len().min(40)])
        );
    }
}
