//! The capture thread: mmap streaming from the device into the hand-off slot, reopening the
//! device with backoff when it disappears or fails.

use super::backoff::Backoff;
use super::decode::{BufferLayout, to_rgb};
use super::device::{CameraConfig, OpenedCamera, open_camera};
use super::error::CameraError;
use super::slot::{Slot, Status, Taken};
use crate::pipeline::CancelToken;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;

/// Frames waiting for the reader. Two: one being replaced while the other is read; more would
/// only add latency, since the pipeline wants the newest frame.
const SLOT_CAPACITY: usize = 2;
/// mmap buffers queued in the driver: enough to absorb a slow copy, few enough that a lagging
/// reader never sees a stale frame (the slot drops those).
const BUFFERS: u32 = 4;
/// How often the thread checks for `stop` while no frame comes.
const DEQUEUE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a reader waiting for a frame (the camera reconnecting) checks the run's stop.
const STOP_POLL: Duration = Duration::from_millis(200);
/// No frame for this long on an open stream counts as a lost camera (some drivers keep the node
/// open but stop delivering after a USB reset).
const STALL: Duration = Duration::from_secs(5);

/// Raw bytes of one buffer, copied out so the driver gets the buffer back at once.
#[derive(Debug)]
pub struct RawFrame {
    pub bytes: Vec<u8>,
    pub layout: BufferLayout,
    pub captured_at: Instant,
}

/// A running camera: the capture thread and the slot it fills.
pub struct Capture {
    slot: Arc<Slot<RawFrame>>,
    thread: Option<JoinHandle<()>>,
    device: String,
    card: String,
    layout: BufferLayout,
    started: Instant,
    stop: Option<CancelToken>,
}

/// One decoded frame.
#[derive(Debug)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    /// Since the capture started.
    pub timestamp: Duration,
}

impl Capture {
    /// Opens the device (errors at start are returned, not retried: a missing camera at start is
    /// a configuration problem) and starts the capture thread.
    pub fn start(config: CameraConfig) -> Result<Capture, CameraError> {
        let opened = open_camera(&config)?;
        let device = config.device.display().to_string();
        let (card, layout) = (opened.card.clone(), opened.layout);
        log::info!(
            "camera {device} ({card}): {} {}x{} stride {}",
            layout.format,
            layout.width,
            layout.height,
            layout.stride
        );
        let slot = Arc::new(Slot::new(SLOT_CAPACITY));
        let thread = {
            let slot = slot.clone();
            std::thread::Builder::new()
                .name("camera".into())
                .spawn(move || capture_loop(config, Some(opened), &slot))
                .map_err(|e| CameraError::Io {
                    device: device.clone(),
                    what: "starting the capture thread",
                    source: e,
                })?
        };
        Ok(Capture {
            slot,
            thread: Some(thread),
            device,
            card,
            layout,
            started: Instant::now(),
            stop: None,
        })
    }

    /// The layout negotiated at start (a reconnect may renegotiate; each frame carries its own).
    pub fn layout(&self) -> BufferLayout {
        self.layout
    }

    pub fn describe(&self) -> String {
        let l = self.layout;
        format!(
            "camera {} ({}) {} {}x{}",
            self.device, self.card, l.format, l.width, l.height
        )
    }

    /// (frames captured, frames dropped before the reader took them).
    pub fn counts(&self) -> (u64, u64) {
        self.slot.counts()
    }

    /// Blocks for the next frame and decodes it. `Ok(None)` once stopped. While the camera is
    /// reconnecting this keeps waiting; the capture thread logs each attempt. A frame that fails
    /// to decode (a torn MJPEG frame after a USB glitch) is skipped with a warning.
    pub fn next_rgb(&mut self) -> Result<Option<RgbFrame>, CameraError> {
        loop {
            let Some(raw) = wait_for_item(&self.slot, self.stop.as_ref(), STOP_POLL) else {
                return Ok(None);
            };
            match to_rgb(raw.layout, &raw.bytes) {
                Ok(rgb) => {
                    return Ok(Some(RgbFrame {
                        width: raw.layout.width,
                        height: raw.layout.height,
                        rgb,
                        timestamp: raw.captured_at.saturating_duration_since(self.started),
                    }));
                }
                Err(e) => log::warn!("camera {}: skipping a frame: {e}", self.device),
            }
        }
    }

    /// `next_rgb` returns `Ok(None)` within [`STOP_POLL`] of `stop` firing, even while the camera
    /// is unplugged and being reopened (the run's Ctrl-C would otherwise wait for the camera).
    pub fn watch_stop(&mut self, stop: CancelToken) {
        self.stop = Some(stop);
    }

    pub fn stop(&mut self) {
        self.slot.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next item of `slot`, waiting through reconnects; `None` once the slot is stopped or
/// `stop` fires (checked every `poll`).
fn wait_for_item<T>(slot: &Slot<T>, stop: Option<&CancelToken>, poll: Duration) -> Option<T> {
    loop {
        if stop.is_some_and(CancelToken::is_cancelled) {
            return None;
        }
        match slot.take(poll) {
            Taken::Stopped => return None,
            Taken::Waiting(_) => continue,
            Taken::Item(item) => return Some(item),
        }
    }
}

fn capture_loop(config: CameraConfig, mut opened: Option<OpenedCamera>, slot: &Slot<RawFrame>) {
    let name = config.device.display().to_string();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    while !slot.is_stopped() {
        let camera = match opened.take() {
            Some(c) => c,
            None => match open_camera(&config) {
                Ok(c) => {
                    log::info!(
                        "camera {name}: reconnected ({} {}x{})",
                        c.layout.format,
                        c.layout.width,
                        c.layout.height
                    );
                    c
                }
                Err(e) => {
                    retry_later(slot, &mut backoff, &name, e.to_string());
                    continue;
                }
            },
        };
        match stream(&camera, slot, &mut backoff) {
            Ok(()) => break,
            Err(reason) => retry_later(slot, &mut backoff, &name, reason),
        }
    }
}

fn retry_later(slot: &Slot<RawFrame>, backoff: &mut Backoff, name: &str, reason: String) {
    let wait = backoff.next_delay();
    log::warn!(
        "camera {name}: {reason}; retrying in {:.1} s (attempt {})",
        wait.as_secs_f64(),
        backoff.attempts()
    );
    slot.set_status(Status::Reconnecting {
        attempt: backoff.attempts(),
        reason,
    });
    slot.sleep_unless_stopped(wait);
}

/// Streams until stopped (`Ok`) or the device fails (`Err` with the reason).
fn stream(camera: &OpenedCamera, slot: &Slot<RawFrame>, backoff: &mut Backoff) -> Result<(), String> {
    // v4l's Stream panics in Drop when STREAMOFF fails with anything but ENODEV; a driver in a
    // bad state must cost a reconnect, not the capture thread.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream_inner(camera, slot, backoff)))
        .unwrap_or_else(|_| Err("the V4L2 stream failed (panic while streaming)".to_string()))
}

fn stream_inner(camera: &OpenedCamera, slot: &Slot<RawFrame>, backoff: &mut Backoff) -> Result<(), String> {
    let mut stream = Stream::with_buffers(&camera.device, Type::VideoCapture, BUFFERS)
        .map_err(|e| format!("cannot start streaming: {e}"))?;
    // v4l's own timeout leaves its buffer bookkeeping out of step (the next call re-queues a
    // queued buffer and fails), so it only bounds a dead stream; the short stop checks poll the
    // handle before dequeuing instead.
    stream.set_timeout(STALL);
    let handle = stream.handle();
    let mut started = false;
    let mut last_frame = Instant::now();
    while !slot.is_stopped() {
        if started {
            match handle.poll(libc::POLLIN, DEQUEUE_TIMEOUT.as_millis() as i32) {
                Ok(0) => {
                    if last_frame.elapsed() >= STALL {
                        return Err(format!("no frame for {} s", STALL.as_secs()));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll failed ({e}); the camera may have been unplugged")),
            }
        }
        match CaptureStream::next(&mut stream) {
            Ok((buf, meta)) => {
                started = true;
                last_frame = Instant::now();
                if meta.flags.contains(v4l::buffer::Flags::ERROR) {
                    // The driver marks frames it knows are corrupt (lost USB packets).
                    continue;
                }
                let used = match meta.bytesused as usize {
                    0 => buf.len(),
                    n => n.min(buf.len()),
                };
                slot.push(RawFrame {
                    bytes: buf[..used].to_vec(),
                    layout: camera.layout,
                    captured_at: last_frame,
                });
                backoff.reset();
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(format!("no frame for {} s", STALL.as_secs()));
            }
            Err(e) => return Err(format!("read error ({e}); the camera may have been unplugged")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_waiting_on_a_reconnecting_camera_returns_when_the_run_stops() {
        // The capture thread is retrying an unplugged camera: the slot says Reconnecting and no
        // frame will ever come.
        let slot = Slot::<u32>::new(2);
        slot.set_status(Status::Reconnecting {
            attempt: 3,
            reason: "unplugged".into(),
        });
        let stop = CancelToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                tx.send(wait_for_item(&slot, Some(&stop), Duration::from_millis(20)))
                    .unwrap()
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(rx.try_recv().is_err(), "returned before the stop");
            stop.cancel();
            let got = rx.recv_timeout(Duration::from_secs(2));
            // Unblock the thread if the stop was not seen, so the scope can end and report.
            slot.stop();
            assert_eq!(got, Ok(None), "the reader did not see the stop");
        });
        // Frames still come through while the run goes on.
        let slot = Slot::<u32>::new(2);
        slot.push(7);
        assert_eq!(
            wait_for_item(&slot, Some(&CancelToken::new()), Duration::from_millis(20)),
            Some(7)
        );
    }
}
