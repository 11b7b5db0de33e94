use super::*;
use crate::fusion::argmax;
use crate::instance_buffer::InstanceBuffer;

pub(super) const F: usize = 8;

/// A small deterministic generator (the runtime has no rand dependency).
pub(super) struct Lcg(pub(super) u64);
impl Lcg {
    pub(super) fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The source head: class c reads feature dimension c.
pub(super) fn base_head() -> Head {
    let mut weight = vec![0.0; NUM_CLASSES * F];
    for c in 0..NUM_CLASSES {
        weight[c * F + c] = 3.0;
    }
    Head {
        dim: F,
        weight,
        bias: [0.0; NUM_CLASSES],
    }
}

/// A face of class `c` from the new camera: its class dimension raised, plus a shift into
/// dimension `(c + 1) % 7` that the source head mistakes for the next class half the time.
pub(super) fn target_face(rng: &mut Lcg, c: usize) -> Vec<f32> {
    let mut f: Vec<f32> = (0..F).map(|_| 0.3 * rng.uniform()).collect();
    f[c] += 1.0;
    f[(c + 1) % NUM_CLASSES] += 1.0 + 0.5 * rng.uniform();
    f
}

pub(super) fn accuracy(head: &Head, faces: &[(usize, Vec<f32>)]) -> f32 {
    let right = faces.iter().filter(|(c, f)| argmax(&head.logits(f)).0 == *c).count();
    right as f32 / faces.len() as f32
}

/// [`config`]'s refit, free to follow its pseudo-labels (no pull toward the bundle's head) and
/// long enough to reach them: what the tests of a bad refit's refusal need.
pub(super) fn free_refit() -> RefitConfig {
    RefitConfig {
        anchor: 0.0,
        steps: 300,
        ..config().refit
    }
}

pub(super) fn config() -> OnlineConfig {
    OnlineConfig {
        every_admissions: 35,
        refit: RefitConfig {
            objective: crate::adapt::Objective::PseudoLabels,
            ..RefitConfig::default()
        },
        min_interval: Duration::ZERO,
        watch: WatchConfig {
            faces: 20,
            max_confidence_drop: 0.05,
        },
        // These cameras come in the anchors' own class mix, which the default least shift
        // would leave to the buffer alone (mix_tests.rs tests that).
        min_mix_shift: None,
        ..OnlineConfig::default()
    }
}

/// The device's admissions are right (the buffer's admitted faces were 83–91 % right on CK+):
/// the head refitted online on them beats the bundle's head on other faces of the camera, and
/// it is the learner's head in use after the stream.
#[test]
fn an_online_refit_on_right_pseudo_labels_raises_accuracy_and_is_kept() {
    let mut rng = Lcg(3);
    let held_out: Vec<(usize, Vec<f32>)> = (0..350).map(|i| (i % 7, target_face(&mut rng, i % 7))).collect();
    let before = accuracy(&base_head(), &held_out);
    let mut l = OnlineLearner::new(base_head(), config(), false).unwrap();
    for i in 0..280 {
        let c = i % 7;
        // Nine of ten admissions right, the tenth given the next class.
        let label = if i % 10 == 9 { (c + 1) % 7 } else { c };
        l.observe(&target_face(&mut rng, c), Some(label));
        l.poll();
    }
    let s = l.stats();
    assert!(s.kept >= 1 && s.rolled_back == 0, "{s:?}");
    let after = accuracy(l.head().expect("a refitted head in use"), &held_out);
    assert!(after > before + 0.2, "accuracy {before} → {after}");
}

/// Pseudo-labels that contradict each other (each face cluster labelled half as its class,
/// half as the next) pass the pool's guard (balanced classes) and give a head that hesitates
/// between two classes on every face: the watch sees its confidence fall on the faces after the
/// swap and restores the bundle's head.
#[test]
fn a_head_that_loses_confidence_after_the_swap_is_rolled_back() {
    let mut rng = Lcg(5);
    let cfg = OnlineConfig {
        refit: free_refit(),
        ..config()
    };
    let mut l = OnlineLearner::new(base_head(), cfg, false).unwrap();
    let clean = |rng: &mut Lcg, c: usize| {
        let mut f: Vec<f32> = (0..F).map(|_| 0.1 * rng.uniform()).collect();
        f[c] += 1.5;
        f
    };
    let mut swapped_at = None;
    for i in 0..140 {
        let c = i % 7;
        let label = if (i / 7) % 2 == 0 { c } else { (c + 1) % 7 };
        l.observe(&clean(&mut rng, c), Some(label));
        l.poll();
        if swapped_at.is_none() && l.stats().swapped == 1 {
            swapped_at = Some(i);
        }
        if l.stats().rolled_back > 0 {
            break;
        }
    }
    let s = l.stats();
    assert_eq!(
        (s.swapped, s.rolled_back, s.kept),
        (1, 1, 0),
        "{s:?} (swap at {swapped_at:?})"
    );
    assert!(l.head().is_none(), "the bundle's head is back");
    assert!(l.state().head.is_none(), "a rolled-back head is never persisted");
}

#[test]
fn the_watch_rolls_back_a_head_whose_predictions_collapse() {
    let old = Arc::new(base_head());
    let mut happy = base_head();
    happy.bias[3] = 10.0;
    let mut w = Watch::new(old);
    let mut rng = Lcg(9);
    for i in 0..70 {
        let mut f: Vec<f32> = (0..F).map(|_| 0.1 * rng.uniform()).collect();
        f[i % 7] += 1.5;
        w.observe(&happy, &f);
    }
    let cfg = WatchConfig::default();
    let Verdict::RollBack(why) = w.verdict(&cfg, &GuardConfig::default()) else {
        panic!("kept a head that predicts one class")
    };
    assert!(
        why.iter()
            .any(|d| matches!(d, Degraded::Collapse(Collapse::ClassVanished { .. }))),
        "{why:?}"
    );
    assert!(
        why.iter()
            .any(|d| matches!(d, Degraded::Collapse(Collapse::DominantClass { class: "happy", .. }))),
        "{why:?}"
    );
    // The same faces under the same head: kept.
    let mut same = Watch::new(Arc::new(base_head()));
    for i in 0..70 {
        let mut f = vec![0.0; F];
        f[i % 7] = 1.0;
        same.observe(&base_head(), &f);
    }
    assert_eq!(same.verdict(&cfg, &GuardConfig::default()), Verdict::Keep);
}

#[test]
fn a_watch_toward_a_mix_without_a_class_keeps_a_head_that_drops_it() {
    // The old head predicts every class; the new one never predicts class 6 (neutral), which
    // the mix it was fitted toward says the camera does not show.
    let old = Arc::new(base_head());
    // Neutral faces read as surprise, as surely as they read as neutral before (no drop of
    // confidence for the watch to see).
    let mut no_neutral = base_head();
    no_neutral.weight[6 * F + 6] = 0.0;
    no_neutral.weight[6] = 3.0;
    no_neutral.bias[6] = -10.0;
    let faces: Vec<Vec<f32>> = (0..70)
        .map(|i| {
            let mut f = vec![0.0; F];
            f[i % 7] = 1.0;
            f
        })
        .collect();
    let cfg = WatchConfig::default();
    let verdict = |toward| {
        let mut w = Watch::toward(old.clone(), toward);
        for f in &faces {
            w.observe(&no_neutral, f);
        }
        w.verdict(&cfg, &GuardConfig::default())
    };
    assert!(
        matches!(verdict(None), Verdict::RollBack(ref why) if why.iter().any(|d| matches!(d, Degraded::Collapse(Collapse::ClassVanished { class: "neutral", .. })))),
        "without the mix, neutral vanishing is a collapse"
    );
    let without_neutral = [0.2, 0.15, 0.15, 0.2, 0.15, 0.15, 0.0];
    assert_eq!(verdict(Some(without_neutral)), Verdict::Keep);
}

use crate::adapt::Collapse;

fn identity() -> HeadIdentity {
    HeadIdentity {
        space: "model-sha:384".into(),
        base: head_id(&base_head()),
    }
}

fn sample_state() -> HeadState {
    let mut h = base_head();
    h.weight[5] = -0.25;
    h.bias[2] = 0.5;
    HeadState {
        head: Some(h),
        pool: (0..10)
            .map(|i| (i % 7, (0..F).map(|k| (i * F + k) as f32 * 0.1).collect()))
            .collect(),
        refits: 3,
    }
}

#[test]
fn the_head_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = head_path(&dir.path().join("device.safetensors"));
    assert_eq!(path.file_name().unwrap(), "device.head.safetensors");
    for state in [
        sample_state(),
        HeadState {
            head: None,
            ..sample_state()
        },
    ] {
        state.save(&path, F, &identity()).unwrap();
        assert_eq!(HeadState::load(&path, F, &identity()).unwrap(), state);
    }
}

#[test]
fn a_head_file_of_another_bundle_or_damaged_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.head.safetensors");
    sample_state().save(&path, F, &identity()).unwrap();
    let other_model = HeadIdentity {
        space: "other-sha:384".into(),
        ..identity()
    };
    let err = HeadState::load(&path, F, &other_model).unwrap_err();
    assert!(matches!(err, HeadFileError::OtherBundle { what: "model", .. }), "{err}");
    assert!(err.to_string().contains("another bundle"), "{err}");
    let mut other = base_head();
    other.bias[0] = 1.0;
    let other_head = HeadIdentity {
        base: head_id(&other),
        ..identity()
    };
    let err = HeadState::load(&path, F, &other_head).unwrap_err();
    assert!(
        matches!(
            err,
            HeadFileError::OtherBundle {
                what: "classifier head",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        HeadState::load(&path, F + 1, &identity()).is_err(),
        "another feature width"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = HeadState::load(&path, F, &identity()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

/// A write interrupted part-way (the process killed before the rename) leaves the previous
/// head file as it was.
#[test]
fn an_interrupted_head_save_leaves_the_previous_file_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.head.safetensors");
    sample_state().save(&path, F, &identity()).unwrap();
    let err = crate::file_write::atomic_write(&path, |w| {
        use std::io::Write;
        w.write_all(&HeadState::default_for_test().to_file_bytes(F, &identity())[..40])?;
        Err(std::io::Error::other("killed"))
    });
    assert!(err.is_err());
    assert_eq!(HeadState::load(&path, F, &identity()).unwrap(), sample_state());
}

impl HeadState {
    fn default_for_test() -> Self {
        HeadState {
            head: None,
            pool: Vec::new(),
            refits: 0,
        }
    }
}

const CHILD_ENV: &str = "SITFER_ONLINE_KILL_CHILD_DIR";

/// Not a test on its own: the child process of the kill test. With the directory in its
/// environment it refits and saves the head and buffer files in a loop until killed.
#[test]
fn kill_child_refits_and_saves_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let buffer_path = dir.join("buffer.safetensors");
    let cfg = OnlineConfig {
        every_admissions: 1,
        watch: WatchConfig {
            faces: 1,
            max_confidence_drop: 1.0,
        },
        refit: RefitConfig {
            steps: 50,
            ..config().refit
        },
        pool_per_class: 32,
        // The machine running the tests may be busy: at nice 19 the refit might never run.
        refit_nice: 0,
        ..config()
    };
    let mut l = OnlineLearner::new(base_head(), cfg, true).unwrap();
    l.persist_to(head_path(&buffer_path), identity());
    let mut buf = InstanceBuffer::new(F, 64);
    let mut rng = Lcg(11);
    for i in 0.. {
        let c = i % 7;
        let f = target_face(&mut rng, c);
        l.observe(&f, Some(c));
        l.poll();
        buf.push(c, &f);
        if i % 50 == 0 {
            buf.save(&buffer_path, "s").unwrap();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `kill -9` of a process that refits and saves at random moments, again and again: after each
/// kill the head and buffer files load (the previous complete version, or the new one).
#[test]
fn a_kill_during_a_refit_or_a_save_loses_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let buffer_path = dir.path().join("buffer.safetensors");
    let head = head_path(&buffer_path);
    let mut buf = InstanceBuffer::new(F, 64);
    buf.push(0, &[0.5; F]);
    buf.save(&buffer_path, "s").unwrap();
    sample_state().save(&head, F, &identity()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut refits_seen = 0;
    // Under the aarch64 test runner (qemu-user) the host kernel cannot exec the test binary
    // itself (exit 127, as in tests/common's `run_sitfer`): then the child goes through qemu.
    let mut via_qemu = false;
    let mut k = 0u64;
    while k < 8 {
        let before = modified(&head);
        let mut cmd = if via_qemu {
            let mut c = std::process::Command::new("qemu-aarch64-static");
            c.args(["-cpu", "cortex-a76", "-L", "/usr/aarch64-linux-gnu"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let mut child = cmd
            .args([
                "--exact",
                "online::tests::kill_child_refits_and_saves_until_killed",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed at a different moment after the child's first save of the head: waiting for
        // that save rather than a fixed time keeps the test meaningful on a slow or emulated
        // machine (under qemu a child needs seconds to start refitting).
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut restart = false;
        while modified(&head) == before && std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let not_executed = status.code() == Some(127) && cfg!(target_arch = "aarch64");
                assert!(
                    !via_qemu && k == 0 && not_executed,
                    "child {k} exited ({status}) before saving"
                );
                restart = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if restart {
            via_qemu = true;
            continue;
        }
        assert_ne!(modified(&head), before, "child {k} never saved the head");
        std::thread::sleep(Duration::from_millis(13 * k));
        child.kill().unwrap();
        child.wait().unwrap();
        let state = HeadState::load(&head, F, &identity()).unwrap_or_else(|e| panic!("after kill {k}: {e}"));
        refits_seen = refits_seen.max(state.refits);
        let mut back = InstanceBuffer::new(F, 64);
        back.load(&buffer_path, "s")
            .unwrap_or_else(|e| panic!("after kill {k}: {e}"));
        k += 1;
    }
    // The children's saves were read back (each child rewrote the head before its kill).
    assert!(refits_seen >= 1, "kept refits seen in the saved files: {refits_seen}");
}

/// The online path computes logits itself, as the bundle's head on the pooled feature; the
/// default bundle's own logits must come out the same, or a refitted head would be compared
/// with (and swapped for) something else than the model's head.
#[test]
fn the_bundle_head_on_the_pooled_feature_gives_the_model_logits() {
    use crate::bundle::{Bundle, Precision};
    use crate::infer::Model;
    let Ok(unpacked) = crate::default_bundle::unpack() else {
        return;
    };
    let bundle = Bundle::open(&unpacked.dir).unwrap();
    let mut checked = 0;
    for precision in [Precision::Fp32, Precision::Int8] {
        let Ok(model) = Model::load_with_feature(&bundle, precision) else {
            continue;
        };
        let (file, bytes) = bundle.model_bytes(precision).unwrap();
        let head = crate::adapt::onnx_head::read_head(&bytes, &file).unwrap();
        let per = 3 * model.input_size() * model.input_size();
        let mut rng = Lcg(1);
        let input: Vec<f32> = (0..2 * per).map(|_| rng.uniform()).collect();
        let out = model.run(&input, 2).unwrap();
        for i in 0..2 {
            let mine = head.logits(out.feature_row(i).unwrap());
            for (a, b) in mine.iter().zip(out.logits_row(i)) {
                assert!(
                    (a - b).abs() < 1e-3 * (1.0 + b.abs()),
                    "{precision:?} row {i}: {mine:?} vs {:?}",
                    out.logits_row(i)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no model of the default bundle exposes its pooled feature");
}
