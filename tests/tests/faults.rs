//! Faults lose nothing. Writers of the instance buffer, bundles and checkpoints killed with
//! SIGKILL at random points leave the last version they reported saved loadable by the normal
//! readers; writes that fail as on a full disk give an error naming the file and leave no partial
//! file; a training run killed at a random point resumes to the same weights; corrupt images in
//! a dataset are skipped and listed while training goes on.
//!
//! Kill points are random; the seed is printed, and `SITFER_FAULT_SEED` replays one.

#[path = "../../trainer/tests/common/mod.rs"]
mod common;
#[path = "common/mod.rs"]
mod e2e;

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::run::{RunOptions, train};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_sitfer-fault-writer");
/// As in `src/bin/fault_writer.rs`.
const DIM: usize = 64;
const SPACE: &str = "fault-writer:64";
const ENTRIES: usize = 120;
/// Kills per writer: enough to land in every phase of a write (the writes take milliseconds).
const ROUNDS: usize = 16;

/// A seeded generator: each run draws new kill times, and the printed seed replays one.
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(name: &str) -> Rng {
        let seed = std::env::var("SITFER_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{name}: SITFER_FAULT_SEED={seed}");
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }
}

fn saved(line: &str) -> Option<u64> {
    line.strip_prefix("saved ")?.trim().parse().ok()
}

/// Starts the writer, lets it complete at least one write, kills it `0..max_delay_ms` later and
/// returns the last version it reported saved.
fn run_and_kill(kind: &str, path: &Path, rng: &mut Rng, max_delay_ms: u64) -> u64 {
    let mut child = Command::new(WRITER)
        .arg(kind)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let Some(mut last) = saved(&first) else {
        let _ = child.kill();
        let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        panic!("{kind} writer did not start: {first}{err}");
    };
    std::thread::sleep(Duration::from_millis(rng.below(max_delay_ms)));
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no cleanup runs
    child.wait().unwrap();
    for line in out.lines() {
        if let Some(v) = line.ok().as_deref().and_then(saved) {
            last = v;
        }
    }
    last
}

/// Kills a writer `ROUNDS` times; after each kill the state on disk must load and be the last
/// version reported saved or the one after it (which may have been completed but not reported),
/// never an older one or a mix.
fn kill_rounds(kind: &str, path: &Path, max_delay_ms: u64, load: impl Fn(&Path) -> Result<u64, String>) {
    let mut rng = Rng::new(kind);
    for round in 0..ROUNDS {
        let reported = run_and_kill(kind, path, &mut rng, max_delay_ms);
        let found = load(path).unwrap_or_else(|e| panic!("{kind}, kill {round}: does not load: {e}"));
        assert!(
            found == reported || found == reported + 1,
            "{kind}, kill {round}: version {found} on disk, the writer had reported {reported} saved"
        );
    }
}

fn all_equal(values: impl IntoIterator<Item = f32>, v: u64, what: &str) -> Result<(), String> {
    match values.into_iter().find(|&x| x != v as f32) {
        Some(x) => Err(format!("{what}: value {x} in version {v} (a mix of versions)")),
        None => Ok(()),
    }
}

fn load_buffer(path: &Path) -> Result<u64, String> {
    let mut b = InstanceBuffer::new(DIM, 4096);
    b.load(path, SPACE).map_err(|e| e.to_string())?;
    if b.queued_counts() != [ENTRIES; 7] {
        return Err(format!("queued {:?}", b.queued_counts()));
    }
    let v = b.queued(0).next().unwrap()[0] as u64;
    all_equal(
        (0..7).flat_map(|c| b.queued(c).flatten().copied().collect::<Vec<_>>()),
        v,
        "buffer",
    )?;
    Ok(v)
}

fn load_bundle(path: &Path) -> Result<u64, String> {
    let b = Bundle::open(path).map_err(|e| e.to_string())?;
    let v: u64 = b.manifest.provenance["version"].parse().unwrap();
    let (_, model) = b.model_bytes(Precision::Fp32).map_err(|e| e.to_string())?;
    if model.iter().any(|&x| x != v as u8) {
        return Err(format!("model bytes of another version than {v}"));
    }
    all_equal(b.buffer.embeddings.iter().copied(), v, "seed buffer")?;
    Ok(v)
}

fn load_checkpoint(run: &Path) -> Result<u64, String> {
    let load = |which| {
        let dir = checkpoint::resolve(run, which).map_err(|e| e.to_string())?;
        checkpoint::load(&dir, &candle_core::Device::Cpu).map_err(|e| e.to_string())
    };
    let latest = load(Which::Latest)?;
    let v = latest.state.step;
    for (name, t) in latest.weights.iter().chain(&latest.optimizer) {
        all_equal(t.to_vec1::<f32>().unwrap(), v, name)?;
    }
    let best = load(Which::Best)?;
    if !best.state.step.is_multiple_of(2) || best.state.step > v {
        return Err(format!("best.json points at step {}", best.state.step));
    }
    Ok(v)
}

/// Temporaries (`.name…tmp`) in `dir`: each kill leaves one, and the next completed write must
/// remove those of dead writers, so at most the last kill's remains.
fn temporaries(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_killed_instance_buffer_writer_leaves_the_last_saved_buffer() {
    let dir = tempfile::tempdir().unwrap();
    kill_rounds("buffer", &dir.path().join("buffer.safetensors"), 30, load_buffer);
    let left = temporaries(dir.path());
    assert!(left.len() <= 1, "{left:?}");
}

#[test]
fn a_killed_bundle_writer_leaves_the_last_written_bundle() {
    let dir = tempfile::tempdir().unwrap();
    kill_rounds("bundle", &dir.path().join("bundle"), 60, load_bundle);
}

#[test]
fn a_killed_checkpoint_writer_leaves_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    kill_rounds("checkpoint", dir.path(), 80, load_checkpoint);
    for d in [dir.path().to_path_buf(), dir.path().join("checkpoints")] {
        let left = temporaries(&d);
        assert!(left.len() <= 2, "{}: {left:?}", d.display()); // latest.json's and best.json's
    }
}

/// Runs the writer with its file size limited to 4 KiB after one good version: the next write
/// fails with EFBIG, as on a full disk. Returns its error output.
fn write_on_a_full_disk(kind: &str, path: &Path) -> String {
    let out = Command::new(WRITER)
        .arg(kind)
        .arg(path)
        .args(["--fsize-limit", "4096"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{kind}: {err}");
    assert!(err.contains("File too large"), "{kind}: {err}");
    err
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_failing_as_on_a_full_disk_name_the_file_and_leave_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();

    let buffer = dir.path().join("buffer.safetensors");
    let err = write_on_a_full_disk("buffer", &buffer);
    assert!(err.contains("buffer.safetensors"), "{err}");
    assert_eq!(load_buffer(&buffer), Ok(0));
    assert_eq!(names(dir.path()), ["buffer.safetensors"]);

    let bundle = dir.path().join("bundle");
    let err = write_on_a_full_disk("bundle", &bundle);
    assert!(err.contains("bundle"), "{err}");
    assert_eq!(load_bundle(&bundle), Ok(0));
    assert_eq!(names(dir.path()), ["buffer.safetensors", "bundle"]);

    let run = dir.path().join("run");
    let err = write_on_a_full_disk("checkpoint", &run);
    assert!(err.contains("weights.safetensors"), "{err}");
    assert_eq!(load_checkpoint(&run), Ok(0));
    assert_eq!(names(&run), ["best.json", "checkpoints", "latest.json"]);
    assert_eq!(names(&run.join("checkpoints")), ["step-00000000"]);
}

fn weights(run: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let dir = checkpoint::resolve(run, Which::Latest).unwrap();
    checkpoint::load(&dir, &candle_core::Device::Cpu)
        .unwrap()
        .weights
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn a_training_run_killed_at_a_random_point_resumes_to_the_same_weights() {
    let bin = e2e::workspace_bin("sitfer-train");
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 8, 12345);
    let runs = tempfile::tempdir().unwrap();
    let train_cmd = |run: &Path| {
        let mut c = Command::new(&bin);
        c.args([
            "train",
            "--format",
            "image-folder",
            "--input-size",
            "16",
            "--batch-size",
            "16",
            "--steps",
            "8",
            "--eval-every",
            "2",
            "--warmup-steps",
            "1",
        ])
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let straight = runs.path().join("straight");
    let t0 = Instant::now();
    let out = train_cmd(&straight).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = t0.elapsed();

    let killed = runs.path().join("killed");
    let mut rng = Rng::new("training");
    let mut child = train_cmd(&killed).spawn().unwrap();
    // Kill once a first checkpoint exists, somewhere in the rest of the run.
    while !killed.join("latest.json").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "training stopped before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rng.below(took.as_millis() as u64 / 2 + 1)));
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = checkpoint::load(
        &checkpoint::resolve(&killed, Which::Latest).unwrap(),
        &candle_core::Device::Cpu,
    )
    .expect("the checkpoint a kill leaves loads")
    .state
    .step;
    eprintln!("killed with the latest checkpoint at step {at_kill}");
    let out = train_cmd(&killed).arg("--resume").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (weights(&straight), weights(&killed));
    assert_eq!(a.len(), b.len());
    for (k, va) in &a {
        let d = va.iter().zip(&b[k]).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "{k}: the resumed run differs by {d}");
    }
}

#[test]
fn corrupt_and_unreadable_images_are_skipped_and_listed_while_training_goes_on() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 4, 12345);
    let bad_png = data.path().join("train/happy/corrupt.png");
    std::fs::write(&bad_png, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let empty = data.path().join("val/sad/empty.png");
    std::fs::write(&empty, b"").unwrap();
    // A directory named like an image cannot be read as one.
    std::fs::create_dir(data.path().join("train/fear/folder.png")).unwrap();
    let run = tempfile::tempdir().unwrap();
    let summary = train(
        &common::config(data.path(), 4),
        &RunOptions {
            run_dir: run.path().to_path_buf(),
            resume: false,
            stop_after: None,
        },
    )
    .unwrap();
    assert_eq!(summary.step, 4);
    let listed = std::fs::read_to_string(run.path().join("skipped-images.txt")).unwrap();
    let ids: Vec<&str> = listed.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{listed}");
    for want in ["corrupt.png", "empty.png", "folder.png"] {
        assert!(ids.iter().any(|id| id.ends_with(want)), "{want} not listed: {listed}");
    }
    // Each line says why.
    assert!(
        listed
            .lines()
            .all(|l| l.split('\t').nth(1).is_some_and(|e| !e.is_empty()))
    );
}

/// The loss turns non-finite in the middle of a resumed run (its optimizer state is corrupted
/// so that the first update overflows the weights): training stops with a diagnosis naming the
/// step, and the checkpoint it resumed from stays the latest, untouched.
#[test]
fn a_loss_turning_non_finite_mid_run_stops_with_a_diagnosis_and_keeps_the_last_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 4, 12345);
    let run = tempfile::tempdir().unwrap();
    let cfg = common::config(data.path(), 8);
    let opts = |resume| RunOptions {
        run_dir: run.path().to_path_buf(),
        resume,
        stop_after: if resume { None } else { Some(4) },
    };
    train(&cfg, &opts(false)).unwrap();
    let dir = checkpoint::resolve(run.path(), Which::Latest).unwrap();
    let opt_file = dir.join("optimizer.safetensors");
    let mut moments = candle_core::safetensors::load(&opt_file, &candle_core::Device::Cpu).unwrap();
    for (name, t) in moments.iter_mut() {
        let value = if name.starts_with("m.") { 3e38 } else { 0.0 };
        if name.starts_with("m.") || name.starts_with("v.") {
            *t = t.ones_like().unwrap().affine(value, 0.0).unwrap();
        }
    }
    candle_core::safetensors::save(&moments, &opt_file).unwrap();
    let before = weights(run.path());
    let files_before = names(&run.path().join("checkpoints"));

    let err = train(&cfg, &opts(true)).unwrap_err().to_string();
    assert!(
        err.contains("loss became") && err.contains("at step 5") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(checkpoint::resolve(run.path(), Which::Latest).unwrap(), dir);
    assert_eq!(weights(run.path()), before);
    assert_eq!(names(&run.path().join("checkpoints")), files_before);
}
