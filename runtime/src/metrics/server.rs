//! `sitfer run --metrics PORT`: `GET /metrics` (Prometheus text), `GET /healthz` (liveness: the
//! process answers) and `GET /readyz` (readiness: 200 once the first frame has been processed,
//! 503 before).
//!
//! std::net on one thread, answering one request at a time: a scrape is a few kilobytes every
//! few seconds, so a framework (and its async runtime beside the camera loop) would buy nothing.
//! Each connection gets short timeouts so a stuck client delays the next scrape by at most that.

use super::run_metrics::{CONTENT_TYPE, RunMetrics};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free one). The error names the address.
    pub fn bind(addr: SocketAddr, metrics: Arc<RunMetrics>) -> std::io::Result<MetricsServer> {
        let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("--metrics on {addr}: {e}"));
        let listener = TcpListener::bind(addr).map_err(named)?;
        let local = listener.local_addr().map_err(named)?;
        // Non-blocking accept so the thread notices `stop` without a wake-up connection.
        listener.set_nonblocking(true).map_err(named)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sitfer-metrics".into())
                .spawn(move || accept_loop(&listener, &metrics, &stop))
                .map_err(named)?
        };
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, metrics: &RunMetrics, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, metrics) {
                    log::debug!("metrics: {peer}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn answer(stream: TcpStream, metrics: &RunMetrics) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Headers are not needed; read them so the client is not cut off mid-request.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    // Prometheus may add query parameters; the path alone decides.
    let path = path.split('?').next().unwrap_or(path);
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, metrics.render()),
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET" | "HEAD", "/readyz") if metrics.is_ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET" | "HEAD", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready: no frame processed yet\n".to_string(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "/metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn health_readiness_and_unknown_paths() {
        let m = Arc::new(RunMetrics::new());
        let srv = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let a = srv.local_addr();
        assert!(get(a, "/healthz").0.starts_with("HTTP/1.0 200"));
        let (head, body) = get(a, "/readyz");
        assert!(head.starts_with("HTTP/1.0 503"), "{head}");
        assert!(body.contains("no frame"));
        assert!(get(a, "/nothing").0.starts_with("HTTP/1.0 404"));
        let (head, body) = get(a, "/metrics?x=1");
        assert!(head.contains(CONTENT_TYPE), "{head}");
        assert!(body.contains("sitfer_frames_processed_total 0"), "{body}");
    }

    #[test]
    fn a_taken_port_is_an_error_naming_the_flag_and_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = MetricsServer::bind(addr, Arc::new(RunMetrics::new())).err().unwrap();
        assert!(e.to_string().starts_with(&format!("--metrics on {addr}:")), "{e}");
    }
}
