//! The refit's background thread. A refit is a few hundred million multiply-adds (100
//! full-batch steps over up to a few thousand rows), seconds on a small core: run on the
//! inference thread it would stall frames, so it runs here, at the lowest scheduling priority,
//! on copies of the rows; the inference thread only sends jobs and polls for outcomes, never
//! waits. Head files are also written here (an fsync can take tens of milliseconds). Jobs run
//! one at a time in order, so two writes of one file never overlap.

use super::anchors::{AnchorLoss, Anchors};
use super::head_file::{HeadIdentity, HeadState};
use super::{AnchorConfig, TargetMix};
use crate::adapt::label_shift::{divergence, estimate_prior, shift_lower_bound};
use crate::adapt::refit::refit_objective;
use crate::adapt::{Collapse, GuardConfig, Head, Objective, RefitConfig};
use crate::fusion::argmax;
use crate::fusion::{Probs, softmax};
use crate::labels::NUM_CLASSES;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

/// A refit of `base` (on the pool's pseudo-labelled rows, or on the recent faces for the
/// objectives that need no labels, with the bundle's anchor faces replayed when it has them),
/// guarded on the recent faces' features and judged on the held-back anchor faces.
pub struct RefitJob {
    pub base: Arc<Head>,
    /// The head in use now, whose predictions on `recent` the candidate is compared with.
    pub current: Arc<Head>,
    pub rows: Vec<(usize, Vec<f32>)>,
    pub recent: Vec<Vec<f32>>,
    pub refit: RefitConfig,
    pub guard: GuardConfig,
    pub anchors: Option<Arc<Anchors>>,
    pub anchor: AnchorConfig,
    pub target_mix: TargetMix,
    pub min_mix_shift: Option<f32>,
    /// The least-shift test passed at the previous refit too: a shift must show in two
    /// consecutive windows of recent faces before a head is fitted to it.
    pub shift_seen_before: bool,
    pub tau_sem: f32,
    /// The collapse guard (here and in the watch after a swap) lets a class vanish that the
    /// estimated mix the head was fitted toward itself puts under a fifth of its share.
    pub vanish_follows_mix: bool,
}

/// A candidate head that passed, and the class mix the guard judged it against (the watch
/// after the swap judges it the same way).
#[derive(Debug, Clone)]
pub struct Fitted {
    pub head: Head,
    pub toward: Option<Probs>,
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

/// Why a candidate head was not swapped in.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The collapse guard's findings on its predictions.
    Collapse(Vec<Collapse>),
    /// It lost accuracy on the held-back anchor faces.
    Anchors(AnchorLoss),
    /// Not run: the camera's class mix may be within `min` (KL, nats) of the training mix (the
    /// bootstrap lower bound of its distance is under it).
    SameMix { shift: f32, min: f32 },
    /// Not run yet: the shift showed in this window of recent faces but not in the previous one.
    ShiftUnconfirmed { shift: f32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Collapse(c) => {
                let why: Vec<String> = c.iter().map(ToString::to_string).collect();
                write!(f, "collapse guard: {}", why.join("; "))
            }
            Refusal::Anchors(a) => write!(f, "{a}"),
            Refusal::ShiftUnconfirmed { shift } => write!(
                f,
                "the camera's class mix is at least {shift:.3} nats from the training mix, a first time: the next window must show it too"
            ),
            Refusal::SameMix { shift, min } => write!(
                f,
                "the camera's class mix is at least {shift:.3} nats from the training mix (5 % bootstrap bound), under {min:.3}: nothing for a refit to correct"
            ),
        }
    }
}

pub enum Outcome {
    /// The candidate head, or why it was refused.
    Refit(Result<Fitted, Refusal>),
    Saved(Result<(), String>),
}

/// Runs a refit job: the shared refit maths from `adapt::refit`, then the guard's check that
/// no class the current head predicts on recent faces vanishes under the candidate, then the
/// check on the held-back anchor faces.
pub fn run_refit(job: &RefitJob) -> Result<Fitted, Refusal> {
    let (feats, labels): (Vec<&[f32]>, Vec<usize>) = match job.refit.objective {
        Objective::PseudoLabels => job.rows.iter().map(|(c, f)| (f.as_slice(), *c)).unzip(),
        _ => (job.recent.iter().map(Vec::as_slice).collect(), Vec::new()),
    };
    let replay_feats: Vec<&[f32]> = job
        .anchors
        .as_ref()
        .map(|a| a.replay.feats.iter().map(Vec::as_slice).collect())
        .unwrap_or_default();
    let replay = job
        .anchors
        .as_ref()
        .filter(|_| job.anchor.replay_weight > 0.0)
        .map(|a| a.replay(&replay_feats, job.anchor.replay_weight));
    let mix = camera_mix(job);
    if let (Some(min), Some((_, source, probs))) = (job.min_mix_shift, &mix) {
        // How far the mix is, at the least, given the recent faces' own spread (a bootstrap
        // bound: the first refits rest on ~100 faces, whose estimate is noisy).
        let shift = shift_lower_bound(probs, source, 0.05, BOOTSTRAP_RESAMPLES);
        if shift < min {
            return Err(Refusal::SameMix { shift, min });
        }
        if !job.shift_seen_before {
            return Err(Refusal::ShiftUnconfirmed { shift });
        }
    }
    let refit = RefitConfig {
        target_mix: match (job.target_mix, &mix) {
            (TargetMix::Estimated, Some((mix, _, _))) => Some(*mix),
            _ => job.refit.target_mix,
        },
        ..job.refit
    };
    let fitted = refit_objective(&job.base, &feats, &labels, job.refit.objective, replay, &refit).head;
    let (mut before, mut after) = ([0usize; NUM_CLASSES], [0usize; NUM_CLASSES]);
    for f in &job.recent {
        before[argmax(&job.current.logits(f)).0] += 1;
        after[argmax(&fitted.logits(f)).0] += 1;
    }
    let toward = refit.target_mix.filter(|_| job.vanish_follows_mix);
    let findings = job.guard.check_predictions_toward(&before, &after, toward.as_ref());
    if !findings.is_empty() {
        return Err(Refusal::Collapse(findings));
    }
    if let Some(a) = &job.anchors {
        let acc = a.judge(&fitted, job.anchor.max_drop).map_err(Refusal::Anchors)?;
        log::info!(
            "online refit candidate: {:.2}% on the held-back anchor faces (bundle's head {:.2}%)",
            100.0 * acc,
            100.0 * a.base_accuracy
        );
    }
    Ok(Fitted { head: fitted, toward })
}

/// Bootstrap resamples behind the least-shift test: its 5 % quantile moves by a few hundredths
/// of a nat between seeds at 40, and 40 EM estimates cost a small share of a refit.
const BOOTSTRAP_RESAMPLES: usize = 40;

/// The camera's class mix, estimated from the bundle head's calibrated predictions on the recent
/// faces, the training mix (the anchors'), and those predictions, when either use is asked for
/// and there are anchors.
fn camera_mix(job: &RefitJob) -> Option<(Probs, Probs, Vec<Probs>)> {
    let a = job.anchors.as_ref()?;
    if job.target_mix != TargetMix::Estimated && job.min_mix_shift.is_none() {
        return None;
    }
    let probs: Vec<Probs> = job
        .recent
        .iter()
        .map(|f| softmax(&job.base.logits(f).map(|z| z / job.tau_sem)))
        .collect();
    let mix = estimate_prior(&probs, &a.mix);
    log::info!(
        "online refit: the camera's class mix estimated as {:?}, {:.3} nats from the training mix {:?} ({} faces)",
        mix.map(|x| (100.0 * x).round() / 100.0),
        divergence(&mix, &a.mix),
        a.mix.map(|x| (100.0 * x).round() / 100.0),
        probs.len()
    );
    Some((mix, a.mix, probs))
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
