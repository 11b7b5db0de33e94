//! Online refit of the classifier head while `sitfer run` runs.
//!
//! Each face the continual mode admits to the instance buffer also leaves its pooled feature
//! and pseudo-label in a bounded pool, and every face its feature in a bounded window of recent
//! faces. Every `every_admissions` admissions (and at most once per `min_interval`), if the
//! pool's pseudo-labels pass the collapse guard, a refit of the bundle's own head runs on a
//! low-priority thread ([`worker`]): the offline adaptation's maths ([`crate::adapt::refit`]),
//! on the recent faces for information maximisation (the default, as `sitfer adapt --refit`'s,
//! the objective that gained on CK+ offline) or on the pool for pseudo-labels, anchored to the
//! bundle's head so each refit starts from it again rather than drifting from the last. The inference thread polls for the result between frames,
//! swaps the head it computes logits with (an `Arc` it owns: no lock, no frame waits), and
//! [`watch`]es the next faces under both heads to keep or roll back the new one. A kept head
//! is written beside the buffer ([`head_file`]).
//!
//! A bundle with anchor faces (labeled features of its own domain, [`anchors`]) makes the refit
//! replay half of them and refuses a candidate that loses accuracy on the other half: the
//! labeled check that lets the last refit of a run, fitted on every face the run saw, be kept
//! when the run ends, with no faces left to watch it on.

pub mod anchors;
pub mod head_file;
pub mod watch;
pub mod worker;

pub use anchors::{AnchorLoss, Anchors};
pub use head_file::{HeadFileError, HeadIdentity, HeadState, head_id, head_path};
pub use watch::{Degraded, Verdict, Watch, WatchConfig};

use crate::adapt::{GuardConfig, Head, Objective, RefitConfig};
use crate::labels::NUM_CLASSES;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Job, Outcome, RefitJob, Refusal, Worker};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineConfig {
    /// Admissions since the last refit that start the next one.
    pub every_admissions: u64,
    /// Least time between the starts of two refits (bounds the CPU a busy camera costs).
    pub min_interval: Duration,
    /// Pseudo-labelled features kept per class for the refit (oldest leave first).
    pub pool_per_class: usize,
    /// Recent faces' features kept: the rows of the objectives without labels, and the faces
    /// the guard compares predictions on before and after.
    pub recent_faces: usize,
    /// Nice value of the refit thread: 19, the lowest priority, so that frames never wait for
    /// it; a device whose cores are otherwise busy may want less (the refit then waits for idle
    /// time that never comes).
    pub refit_nice: i32,
    pub refit: RefitConfig,
    pub guard: GuardConfig,
    pub watch: WatchConfig,
    pub anchor: AnchorConfig,
    pub target_mix: TargetMix,
    /// Refit only while the camera's class mix, estimated as for [`TargetMix::Estimated`], is
    /// at least this far from the bundle's training mix (KL, nats); nearer, the camera looks
    /// like the data the head was trained on, where an unlabeled refit has nothing to correct
    /// and only the buffer learns. The shift tested is a lower bound (the 5 % quantile over
    /// bootstrap resamples of the recent faces), and it must pass at two consecutive refits, so
    /// a few faces' noisy estimate does not fit a head. `None`: always refit. Needs anchors
    /// (their mix is the training mix).
    pub min_mix_shift: Option<f32>,
    /// A class the estimated mix puts under a fifth of its predicted share may vanish under a
    /// new head without the collapse guard or the watch refusing it ([`TargetMix::Estimated`]
    /// only): the refit was asked to shrink it.
    pub vanish_follows_mix: bool,
}

/// What class mix information maximisation's diversity term pulls the predictions toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMix {
    /// Uniform (SHOT's marginal entropy).
    Uniform,
    /// The camera's own mix, estimated from the bundle head's calibrated predictions on the
    /// recent faces against the anchors' (training) mix ([`crate::adapt::label_shift`]); uniform
    /// without anchors.
    #[default]
    Estimated,
}

/// How the bundle's anchor faces (if it has them) take part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorConfig {
    /// Weight of the replayed half's cross-entropy against the unlabeled objective (0: no
    /// replay, the check only).
    pub replay_weight: f32,
    /// Largest loss of accuracy on the held-back half, against the bundle's head, that a
    /// candidate may show (a share); `None`: no check (the default). Pre-registered on fresh
    /// CK+ splits (docs/results/runtime.md): with a 2-point margin the check refused the very
    /// heads that help on another domain (+3.01, 7 of 10 splits gaining, seeds 30–39); without
    /// it, replay alone kept in-domain accuracy (FER2013 val +0.28, −0.16, +0.50 on three guard
    /// seeds) and the camera's stream gained +6.10 (10/10, seeds 30–39) and +5.66 (10/10, seeds
    /// 40–49, the confirmation). A margin stays available for a camera known to look like the
    /// bundle's own domain.
    pub max_drop: Option<f32>,
    /// When the run ends, refit once more on every recent face and keep the head if the guard
    /// and the anchor check (when set) pass (there are no more faces to watch it on, so never without
    /// anchors).
    pub refit_on_exit: bool,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        AnchorConfig {
            replay_weight: 1.0,
            max_drop: None,
            refit_on_exit: true,
        }
    }
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            every_admissions: 32,
            min_interval: Duration::from_secs(30),
            pool_per_class: 256,
            recent_faces: 2048,
            refit_nice: 19,
            refit: RefitConfig {
                objective: Objective::InfoMax { diversity: 1.0 },
                ..RefitConfig::default()
            },
            guard: GuardConfig::default(),
            watch: WatchConfig::default(),
            anchor: AnchorConfig::default(),
            // The camera's estimated mix, and refits only once its shift from the training mix
            // has a bootstrap bound ≥ 0.1 nats in two consecutive windows: on fresh CK+ seeds
            // 110–119 +6.26 p̂ (10/10), guards −0.12…0.00 on four FER2013 val halves, the
            // registered rule's goals (docs/results/runtime.md; the earlier forms of the test
            // failed guards on seeds 90–93 and 102).
            target_mix: TargetMix::Estimated,
            min_mix_shift: Some(0.1),
            // On fresh CK+ seeds 150–159: +6.46 p̂ (10/10) against +5.94 with the plain guard
            // (paired +0.51), guards −0.12…+0.06 on four FER2013 val halves: the registered
            // rule's goals (docs/results/runtime.md).
            vanish_follows_mix: true,
        }
    }
}

/// Counts over a run, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OnlineStats {
    /// Refits started.
    pub started: u64,
    /// Candidates the collapse guard refused (pool or predictions).
    pub refused: u64,
    /// Candidates refused for their accuracy on the held-back anchor faces.
    pub refused_anchors: u64,
    /// Refits not run because the camera's class mix matched the training mix.
    pub skipped_same_mix: u64,
    /// Heads kept by the refit when the run ended.
    pub kept_on_exit: u64,
    /// Heads swapped in.
    pub swapped: u64,
    /// Swapped heads the watch kept.
    pub kept: u64,
    /// Swapped heads the watch rolled back.
    pub rolled_back: u64,
}

/// The learner the inference thread owns.
pub struct OnlineLearner {
    cfg: OnlineConfig,
    /// The bundle's head: every refit's start and anchor.
    base: Arc<Head>,
    /// The refitted head in use, if any (else the model's own logits).
    current: Option<Arc<Head>>,
    pool: [VecDeque<Vec<f32>>; NUM_CLASSES],
    recent: VecDeque<Vec<f32>>,
    since_refit: u64,
    last_start: Option<Instant>,
    busy: bool,
    watch: Option<Watch>,
    worker: Worker,
    /// Where kept heads are written, and the bundle they belong to.
    persist: Option<(PathBuf, HeadIdentity)>,
    anchors: Option<Arc<Anchors>>,
    /// The refit at exit ran (a second `finish` does not repeat it).
    exited: bool,
    /// The classifier's calibrated temperature (the bundle's τ_sem), for the mix estimate.
    tau_sem: f32,
    /// The last refit's least-shift test passed (a shift must hold over two windows).
    shift_seen: bool,
    refits_total: u64,
    stats: OnlineStats,
}

impl OnlineLearner {
    /// `threaded`: refits on a background thread (live runs); else in place when due
    /// (deterministic, for tests and measurements that must not depend on timing).
    pub fn new(base: Head, cfg: OnlineConfig, threaded: bool) -> std::io::Result<Self> {
        Ok(OnlineLearner {
            cfg,
            base: Arc::new(base),
            current: None,
            pool: std::array::from_fn(|_| VecDeque::new()),
            recent: VecDeque::new(),
            since_refit: 0,
            last_start: None,
            busy: false,
            watch: None,
            worker: if threaded {
                Worker::spawn(cfg.refit_nice)?
            } else {
                Worker::Inline(Vec::new())
            },
            persist: None,
            anchors: None,
            exited: false,
            tau_sem: 1.0,
            shift_seen: false,
            refits_total: 0,
            stats: OnlineStats::default(),
        })
    }

    /// Continues from a saved state (its head in use, its pool refilled).
    pub fn restore(&mut self, state: HeadState) {
        self.current = state.head.map(Arc::new);
        self.refits_total = state.refits;
        for (c, f) in state.pool {
            self.push_pool(c, f);
        }
    }

    /// The bundle's anchor faces: replayed by every refit and checked against. Ignored (with a
    /// warning) when their width is not the head's input width.
    pub fn set_anchors(&mut self, a: &crate::bundle::SeedBuffer) {
        match Anchors::split(a, &self.base) {
            Some(x) => {
                log::info!(
                    "online refit: {} anchor faces replayed, {} held back (bundle's head {:.2}% on them)",
                    x.replay.labels.len(),
                    x.check.labels.len(),
                    100.0 * x.base_accuracy
                );
                self.anchors = Some(Arc::new(x));
            }
            None => log::warn!(
                "the bundle's anchors ({} of width {}) do not fit its head (width {}): refits run without them",
                a.len(),
                a.dim,
                self.base.dim
            ),
        }
    }

    /// The bundle's calibrated classifier temperature (its manifest's τ_sem): the mix estimate
    /// needs calibrated predictions.
    pub fn set_sem_temperature(&mut self, tau: f32) {
        if tau.is_finite() && tau > 0.0 {
            self.tau_sem = tau;
        }
    }

    /// Kept heads (and the pool) are written to `path`, tied to the bundle `id`.
    pub fn persist_to(&mut self, path: PathBuf, id: HeadIdentity) {
        self.persist = Some((path, id));
    }

    /// The head to compute logits with: `None` means the model's own.
    pub fn head(&self) -> Option<&Arc<Head>> {
        self.current.as_ref()
    }

    pub fn stats(&self) -> OnlineStats {
        self.stats
    }

    pub fn pool_counts(&self) -> [usize; NUM_CLASSES] {
        std::array::from_fn(|c| self.pool[c].len())
    }

    fn push_pool(&mut self, class: usize, f: Vec<f32>) {
        if f.len() != self.base.dim || class >= NUM_CLASSES || self.cfg.pool_per_class == 0 {
            return;
        }
        let q = &mut self.pool[class];
        if q.len() >= self.cfg.pool_per_class {
            q.pop_front();
        }
        q.push_back(f);
    }

    /// The last head the watch kept (or the one restored): a head still under watch is not
    /// persisted.
    fn settled(&self) -> Option<&Arc<Head>> {
        match &self.watch {
            Some(w) => (!Arc::ptr_eq(&w.previous, &self.base)).then_some(&w.previous),
            None => self.current.as_ref(),
        }
    }

    /// What to persist: the settled head and the pool.
    pub fn state(&self) -> HeadState {
        HeadState {
            head: self.settled().map(|h| h.as_ref().clone()),
            pool: (0..NUM_CLASSES)
                .flat_map(|c| self.pool[c].iter().map(move |f| (c, f.clone())))
                .collect(),
            refits: self.refits_total,
        }
    }

    /// One face: its pooled feature, and the class it was admitted to the buffer under.
    pub fn observe(&mut self, feature: &[f32], admitted: Option<usize>) {
        if feature.len() != self.base.dim {
            return;
        }
        if let (Some(w), Some(h)) = (&mut self.watch, &self.current) {
            w.observe(h, feature);
        }
        if self.recent.len() >= self.cfg.recent_faces.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(feature.to_vec());
        if let Some(c) = admitted {
            self.push_pool(c, feature.to_vec());
            self.since_refit += 1;
        }
    }

    /// Between frames: takes a finished refit or save, concludes a watch, starts a refit when
    /// one is due. Never waits.
    pub fn poll(&mut self) {
        while let Some(o) = self.worker.try_recv() {
            self.take(o);
        }
        self.conclude_watch();
        if self.due() {
            self.start();
            // In place, the outcome is ready at once.
            while let Some(o) = self.worker.try_recv() {
                self.take(o);
            }
        }
    }

    fn due(&self) -> bool {
        !self.busy
            && self.watch.is_none()
            && self.cfg.every_admissions > 0
            && self.since_refit >= self.cfg.every_admissions
            && self.last_start.is_none_or(|t| t.elapsed() >= self.cfg.min_interval)
    }

    fn start(&mut self) {
        let counts = self.pool_counts();
        let findings = self.cfg.guard.check_pseudo_labels(&counts);
        if !findings.is_empty() {
            // Not a refusal of a head: the pool is not ready; wait for more admissions.
            log::debug!("online refit waits: {}", findings[0]);
            self.since_refit = 0;
            return;
        }
        self.since_refit = 0;
        self.last_start = Some(Instant::now());
        self.busy = true;
        self.stats.started += 1;
        let job = self.job();
        self.worker.send(Job::Refit(job));
    }

    fn job(&self) -> RefitJob {
        RefitJob {
            base: self.base.clone(),
            current: self.current.clone().unwrap_or_else(|| self.base.clone()),
            rows: self.state().pool,
            recent: self.recent.iter().cloned().collect(),
            refit: self.cfg.refit,
            guard: self.cfg.guard,
            anchors: self.anchors.clone(),
            anchor: self.cfg.anchor,
            target_mix: self.cfg.target_mix,
            min_mix_shift: self.cfg.min_mix_shift,
            shift_seen_before: self.shift_seen,
            tau_sem: self.tau_sem,
            vanish_follows_mix: self.cfg.vanish_follows_mix,
        }
    }

    fn take(&mut self, o: Outcome) {
        match o {
            Outcome::Refit(Ok(fitted)) => {
                self.busy = false;
                self.shift_seen = true;
                let previous = self.current.clone().unwrap_or_else(|| self.base.clone());
                self.current = Some(Arc::new(fitted.head));
                self.watch = Some(Watch::toward(previous, fitted.toward));
                self.stats.swapped += 1;
                log::info!(
                    "online refit: new head in use, watching the next {} faces",
                    self.cfg.watch.faces
                );
            }
            Outcome::Refit(Err(why)) => {
                self.busy = false;
                self.count_refusal(&why);
                log::info!("online refit refused: {why}");
            }
            Outcome::Saved(Err(e)) => log::warn!("online head not saved: {e}"),
            Outcome::Saved(Ok(())) => {}
        }
    }

    fn count_refusal(&mut self, why: &Refusal) {
        // Every refusal but a small shift comes after the test passed (or without the test).
        self.shift_seen = !matches!(why, Refusal::SameMix { .. });
        match why {
            Refusal::Collapse(_) => self.stats.refused += 1,
            Refusal::Anchors(_) => self.stats.refused_anchors += 1,
            Refusal::SameMix { .. } | Refusal::ShiftUnconfirmed { .. } => self.stats.skipped_same_mix += 1,
        }
    }

    fn conclude_watch(&mut self) {
        let Some(w) = &self.watch else { return };
        match w.verdict(&self.cfg.watch, &self.cfg.guard) {
            Verdict::Pending => {}
            Verdict::Keep => {
                self.watch = None;
                self.stats.kept += 1;
                self.refits_total += 1;
                if let Some((path, id)) = &self.persist {
                    self.worker.send(Job::Save {
                        path: path.clone(),
                        state: self.state(),
                        dim: self.base.dim,
                        id: id.clone(),
                    });
                }
            }
            Verdict::RollBack(why) => {
                let previous = w.previous.clone();
                self.watch = None;
                self.stats.rolled_back += 1;
                // The bundle's head is "no refit": the model's logits again.
                self.current = (!Arc::ptr_eq(&previous, &self.base)).then_some(previous);
                let why: Vec<String> = why.iter().map(ToString::to_string).collect();
                log::info!("online refit rolled back: {}", why.join("; "));
            }
        }
    }

    /// Ends the background work (a refit under way finishes first) and takes its outcomes, so
    /// that the caller may save without racing the thread. With anchors and a head file, a last refit on every
    /// recent face runs here, in place, when faces were admitted since the last one started (or
    /// a head is still under watch), and is kept if the guard and the anchor check pass. A head
    /// still under watch otherwise stays in use but is not counted as kept (nor persisted).
    pub fn finish(&mut self) {
        for o in self.worker.finish() {
            self.take(o);
        }
        self.busy = false;
        self.conclude_watch();
        let pending = self.since_refit > 0 || self.watch.is_some();
        if std::mem::replace(&mut self.exited, true)
            || !(self.cfg.anchor.refit_on_exit && self.anchors.is_some() && pending)
            // Without a head file the head would die with the process: no point refitting.
            || self.persist.is_none()
            || !self.cfg.guard.check_pseudo_labels(&self.pool_counts()).is_empty()
        {
            return;
        }
        self.stats.started += 1;
        self.since_refit = 0;
        match worker::run_refit(&self.job()) {
            Ok(fitted) => {
                self.current = Some(Arc::new(fitted.head));
                self.watch = None;
                self.stats.kept_on_exit += 1;
                self.refits_total += 1;
                log::info!("online refit at exit: kept (held-back anchor faces and collapse guard passed)");
            }
            Err(why) => {
                self.count_refusal(&why);
                log::info!("online refit at exit refused: {why}");
            }
        }
    }
}

#[cfg(test)]
mod anchor_tests;
#[cfg(test)]
mod mix_tests;
#[cfg(test)]
mod tests;
