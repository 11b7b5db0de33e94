//! `sitfer run`'s online refit flags, and the head file beside `--buffer` (loaded at start,
//! written when a refit is kept and at exit).

use super::adapt::RefitObjective;
use anyhow::{Context, Result};
use clap::Args;
use sitfer_runtime::adapt::{GuardConfig, Head, Objective, RefitConfig};
use sitfer_runtime::bundle::Bundle;
use sitfer_runtime::instance_buffer::space_id;
use sitfer_runtime::online::{
    AnchorConfig, HeadIdentity, HeadState, OnlineConfig, OnlineLearner, TargetMix, WatchConfig, head_id, head_path,
};
use sitfer_runtime::pipeline::Recognizer;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct OnlineArgs {
    /// Refit the classifier head on the faces the continual mode admits, on a low-priority
    /// thread while frames run; a new head is watched over the next faces and rolled back if
    /// confidence or the predicted classes degrade. With --buffer FILE the kept head is saved
    /// beside it (FILE's stem + .head.safetensors).
    #[arg(long)]
    pub online_refit: bool,
    /// Admissions since the last refit that start the next one.
    #[arg(long, default_value_t = OnlineConfig::default().every_admissions, value_parser = clap::value_parser!(u64).range(1..))]
    pub refit_every: u64,
    /// Least seconds between the starts of two refits.
    #[arg(long, default_value_t = OnlineConfig::default().min_interval.as_secs_f64())]
    pub refit_min_interval: f64,
    /// Pseudo-labelled features kept per class for the refit (oldest leave first).
    #[arg(long, default_value_t = OnlineConfig::default().pool_per_class)]
    pub refit_pool_per_class: usize,
    /// info-max (over the recent faces, no labels; `sitfer adapt --refit`'s default, the
    /// objective that gained offline on CK+), shot, or pseudo-labels (over the admitted faces).
    #[arg(long, value_enum, default_value = "info-max")]
    pub refit_objective: RefitObjective,
    /// Full-batch optimiser steps per refit.
    #[arg(long, default_value_t = RefitConfig::default().steps)]
    pub refit_steps: usize,
    /// Faces after a swap over which the new head is judged before it is kept.
    #[arg(long, default_value_t = WatchConfig::default().faces)]
    pub refit_watch_faces: u64,
    /// Drop of the mean max-probability (new head vs previous, same faces) that rolls back.
    #[arg(long, default_value_t = WatchConfig::default().max_confidence_drop)]
    pub refit_max_confidence_drop: f32,
    /// Nice value of the refit thread (19: lowest priority; frames never wait for it).
    #[arg(long, default_value_t = OnlineConfig::default().refit_nice, value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub refit_nice: i32,
    /// Weight of the cross-entropy on the bundle's replayed anchor faces (labeled features of
    /// its own domain, `sitfer anchors`) beside the refit's objective; 0 replays none.
    #[arg(long, default_value_t = AnchorConfig::default().replay_weight)]
    pub refit_replay_weight: f32,
    /// Largest loss of accuracy (points) on the bundle's held-back anchor faces, against the
    /// bundle's own head, that a new head may show; more and it is refused [default: no check,
    /// as measured in docs/results/runtime.md: a camera in another domain should move the head].
    #[arg(long)]
    pub refit_max_anchor_drop: Option<f32>,
    /// Class mix information maximisation's diversity term pulls the predictions toward:
    /// uniform, or the camera's own, estimated from the bundle's calibrated predictions on the
    /// recent faces against its anchors' (training) mix.
    #[arg(long, value_enum, default_value = "estimated")]
    pub refit_target_mix: TargetMixArg,
    /// Refit only while the camera's estimated class mix is at least this far (KL, nats) from
    /// the bundle's training mix (its anchors'), as a 5 % bootstrap lower bound over the recent
    /// faces, in two consecutive windows; nearer, only the buffer learns; 0 refits always.
    #[arg(long, default_value_t = OnlineConfig::default().min_mix_shift.unwrap_or(0.0))]
    pub refit_min_mix_shift: f32,
    /// Let a class vanish under a new head when the camera's estimated class mix (the refit's
    /// target, `--refit-target-mix estimated`) itself puts it under a fifth of the share the
    /// current head predicts: the collapse guard and the watch refuse any other vanishing class.
    /// `false`: every class vanishing is refused.
    #[arg(long, default_value_t = OnlineConfig::default().vanish_follows_mix, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub refit_vanish_follows_mix: bool,
    /// No last refit when the run ends (with anchors it is kept if it passes their check).
    #[arg(long)]
    pub no_refit_on_exit: bool,
    /// Refit in place when due instead of on a background thread: the frame that starts a refit
    /// waits for it, and results no longer depend on thread timing (for measurements).
    #[arg(long, requires = "online_refit")]
    pub refit_inline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetMixArg {
    Uniform,
    Estimated,
}

impl OnlineArgs {
    pub fn config(&self) -> OnlineConfig {
        OnlineConfig {
            every_admissions: self.refit_every,
            min_interval: Duration::from_secs_f64(self.refit_min_interval.max(0.0)),
            pool_per_class: self.refit_pool_per_class,
            refit_nice: self.refit_nice,
            refit: RefitConfig {
                objective: match self.refit_objective {
                    RefitObjective::PseudoLabels => Objective::PseudoLabels,
                    // `sitfer adapt`'s defaults for these objectives.
                    RefitObjective::InfoMax => Objective::InfoMax { diversity: 1.0 },
                    RefitObjective::Shot => Objective::Shot {
                        diversity: 1.0,
                        beta: 0.3,
                        relabels: 15,
                    },
                },
                steps: self.refit_steps,
                ..RefitConfig::default()
            },
            guard: GuardConfig::default(),
            watch: WatchConfig {
                faces: self.refit_watch_faces,
                max_confidence_drop: self.refit_max_confidence_drop,
            },
            anchor: AnchorConfig {
                replay_weight: self.refit_replay_weight.max(0.0),
                max_drop: self.refit_max_anchor_drop.map(|p| p / 100.0),
                refit_on_exit: !self.no_refit_on_exit,
            },
            target_mix: match self.refit_target_mix {
                TargetMixArg::Uniform => TargetMix::Uniform,
                TargetMixArg::Estimated => TargetMix::Estimated,
            },
            min_mix_shift: (self.refit_min_mix_shift > 0.0).then_some(self.refit_min_mix_shift),
            vanish_follows_mix: self.refit_vanish_follows_mix,
            ..OnlineConfig::default()
        }
    }

    /// Whether the model must expose its pooled feature: a refit to run, or a saved head to apply.
    pub fn needs_head(&self, buffer: Option<&Path>) -> bool {
        self.online_refit || buffer.is_some_and(|b| head_path(b).exists())
    }
}

/// Which bundle a head file belongs to.
pub fn identity(bundle: &Bundle, base: &Head) -> HeadIdentity {
    HeadIdentity {
        space: space_id(&bundle.manifest),
        base: head_id(base),
    }
}

/// The state saved beside `buffer`, if there is one.
pub fn load_state(buffer: &Path, bundle: &Bundle, base: &Head) -> Result<Option<HeadState>> {
    let path = head_path(buffer);
    if !path.exists() {
        return Ok(None);
    }
    let state = HeadState::load(&path, base.dim, &identity(bundle, base))?;
    log::info!(
        "online head {}: loaded ({} refitted, {} pool rows, {} refits kept so far)",
        path.display(),
        if state.head.is_some() { "head" } else { "no head" },
        state.pool.len(),
        state.refits
    );
    Ok(Some(state))
}

/// The learner for a run, continued from the saved state and saving beside `buffer`.
pub fn learner(
    a: &OnlineArgs,
    bundle: &Bundle,
    base: Head,
    state: Option<HeadState>,
    buffer: Option<&Path>,
) -> Result<OnlineLearner> {
    let id = identity(bundle, &base);
    let mut l = OnlineLearner::new(base, a.config(), !a.refit_inline).context("starting the refit thread")?;
    if let Some(s) = state {
        l.restore(s);
    }
    if let Some(x) = &bundle.anchors {
        l.set_anchors(x);
    }
    l.set_sem_temperature(bundle.manifest.fusion.tau_sem);
    if let Some(b) = buffer {
        l.persist_to(head_path(b), id);
    }
    Ok(l)
}

/// What the device learned before into `rec`: with `--online-refit` a learner continuing from the
/// head file beside `buffer`, else that file's head applied as it is.
pub fn attach(rec: &mut Recognizer, a: &OnlineArgs, bundle: &Bundle, base: &Head, buffer: Option<&Path>) -> Result<()> {
    let state = match buffer {
        Some(p) => load_state(p, bundle, base)?,
        None => None,
    };
    if a.online_refit {
        rec.set_online(learner(a, bundle, base.clone(), state, buffer)?);
    } else {
        rec.set_head(state.and_then(|s| s.head));
    }
    Ok(())
}

/// Ends the learner's background work and writes its state beside `buffer`.
pub fn save(l: &mut OnlineLearner, buffer: &Path, bundle: &Bundle, base: &Head) -> Result<PathBuf> {
    l.finish();
    let path = head_path(buffer);
    l.state()
        .save(&path, base.dim, &identity(bundle, base))
        .with_context(|| format!("saving the online head beside {}", buffer.display()))?;
    log::info!("online head {}: saved ({:?})", path.display(), l.stats());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        online: OnlineArgs,
    }

    fn follows(args: &[&str]) -> bool {
        let cli = Cli::try_parse_from(std::iter::once("sitfer").chain(args.iter().copied())).unwrap();
        cli.online.config().vanish_follows_mix
    }

    #[test]
    fn the_guard_follows_the_mix_unless_told_false() {
        assert!(follows(&[]), "the default");
        assert!(follows(&["--refit-vanish-follows-mix"]), "the flag alone");
        assert!(!follows(&["--refit-vanish-follows-mix", "false"]));
        assert!(follows(&["--refit-vanish-follows-mix=true"]));
    }
}
