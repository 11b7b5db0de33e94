//! The refit's background thread. A refit is a few hundred million multiply-adds (100
//! full-batch steps over up to a few thousand rows), seconds on a small core: run on the
//! inference thread it would stall frames, so it runs here, at the lowest scheduling priority,
//! on copies of the rows; the inference thread only sends jobs and polls for outcomes, never
//! waits. Head files are also written here (an fsync can take tens of milliseconds). Jobs run
//! one at a time in order, so two writes of one file never overlap.

use super::head_file::{HeadIdentity, HeadState};
use crate::adapt::refit::{refit, refit_info_max, refit_shot};
use crate::adapt::{Collapse, GuardConfig, Head, Objective, RefitConfig};
use crate::fusion::argmax;
use crate::labels::NUM_CLASSES;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

/// A refit of `base` (on the pool's pseudo-labelled rows, or on the recent faces for the
/// objectives that need no labels), guarded on the recent faces' features.
pub struct RefitJob {
    pub base: Arc<Head>,
    /// The head in use now, whose predictions on `recent` the candidate is compared with.
    pub current: Arc<Head>,
    pub rows: Vec<(usize, Vec<f32>)>,
    pub recent: Vec<Vec<f32>>,
    pub refit: RefitConfig,
    pub guard: GuardConfig,
}

pub enum Job {
    Refit(RefitJob),
    Save {
        path: PathBuf,
        state: HeadState,
        dim: usize,
        id: HeadIdentity,
    },
}

pub enum Outcome {
    /// The candidate head, or the collapse guard's findings on it.
    Refit(Result<Head, Vec<Collapse>>),
    Saved(Result<(), String>),
}

/// Runs a refit job: the shared refit maths from `adapt::refit`, then the guard's check that
/// no class the current head predicts on recent faces vanishes under the candidate.
pub fn run_refit(job: &RefitJob) -> Result<Head, Vec<Collapse>> {
    let recent: Vec<&[f32]> = job.recent.iter().map(Vec::as_slice).collect();
    let fitted = match job.refit.objective {
        Objective::PseudoLabels => {
            let feats: Vec<&[f32]> = job.rows.iter().map(|(_, f)| f.as_slice()).collect();
            let labels: Vec<usize> = job.rows.iter().map(|(c, _)| *c).collect();
            refit(&job.base, &feats, &labels, &job.refit)
        }
        Objective::InfoMax { diversity } => refit_info_max(&job.base, &recent, diversity, &job.refit),
        Objective::Shot {
            diversity,
            beta,
            relabels,
        } => refit_shot(&job.base, &recent, diversity, beta, relabels, &job.refit),
    }
    .head;
    let (mut before, mut after) = ([0usize; NUM_CLASSES], [0usize; NUM_CLASSES]);
    for f in &job.recent {
        before[argmax(&job.current.logits(f)).0] += 1;
        after[argmax(&fitted.logits(f)).0] += 1;
    }
    let findings = job.guard.check_predictions(&before, &after);
    if findings.is_empty() { Ok(fitted) } else { Err(findings) }
}

fn run_job(job: Job) -> Outcome {
    match job {
        Job::Refit(j) => Outcome::Refit(run_refit(&j)),
        Job::Save { path, state, dim, id } => Outcome::Saved(state.save(&path, dim, &id).map_err(|e| e.to_string())),
    }
}

/// Sets the calling thread's nice value. On Linux `setpriority` with `who = 0` acts on the
/// calling thread only (threads have their own nice values), so inference and capture keep
/// theirs.
fn lower_priority(nice: i32) {
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    #[cfg(target_os = "linux")]
    // SAFETY: a plain syscall on the calling thread; no memory is passed.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) != 0 {
            log::debug!("refit thread: setpriority failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// Where jobs run: a background thread, or in place (tests, and `--refit-inline` runs whose
/// results must not depend on thread timing).
pub enum Worker {
    Thread {
        tx: Option<Sender<Job>>,
        rx: Receiver<Outcome>,
        handle: Option<JoinHandle<()>>,
        /// Set by `finish`: refits still queued are skipped, saves still run.
        stopping: Arc<AtomicBool>,
    },
    Inline(Vec<Outcome>),
}

impl Worker {
    /// A thread at nice value `nice` (19: the lowest priority).
    pub fn spawn(nice: i32) -> std::io::Result<Worker> {
        let (tx, jobs) = channel::<Job>();
        let (done, rx) = channel::<Outcome>();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let handle = std::thread::Builder::new().name("sitfer-refit".into()).spawn(move || {
            lower_priority(nice);
            for job in jobs {
                if stop.load(Ordering::SeqCst) && matches!(job, Job::Refit(_)) {
                    continue;
                }
                if done.send(run_job(job)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Worker::Thread {
            tx: Some(tx),
            rx,
            handle: Some(handle),
            stopping,
        })
    }

    pub fn send(&mut self, job: Job) {
        match self {
            Worker::Thread { tx, .. } => {
                if let Some(tx) = tx
                    && tx.send(job).is_err()
                {
                    log::warn!("refit thread ended; online refit stops");
                }
            }
            Worker::Inline(out) => out.push(run_job(job)),
        }
    }

    /// An outcome if one is ready; never waits.
    pub fn try_recv(&mut self) -> Option<Outcome> {
        match self {
            Worker::Thread { rx, .. } => rx.try_recv().ok(),
            Worker::Inline(out) => (!out.is_empty()).then(|| out.remove(0)),
        }
    }

    /// Stops the thread once a refit under way and the saves still queued are done (queued
    /// refits are dropped); the outcomes not yet polled are returned.
    pub fn finish(&mut self) -> Vec<Outcome> {
        match self {
            Worker::Thread {
                tx,
                rx,
                handle,
                stopping,
            } => {
                stopping.store(true, Ordering::SeqCst);
                drop(tx.take());
                if let Some(h) = handle.take()
                    && h.join().is_err()
                {
                    log::warn!("the refit thread panicked");
                }
                rx.try_iter().collect()
            }
            Worker::Inline(out) => std::mem::take(out),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.finish();
    }
}
