//! The fuzz targets of `fuzz/` (every parser of outside input) run on stable inside
//! `cargo test`, without cargo-fuzz or libFuzzer: the committed seeds (`fuzz/seeds/<target>/`,
//! crash inputs found by `scripts/fuzz.sh` included) and generated seeds are replayed, then a
//! fixed number of seeded random mutations of them. A panic fails the test with the input saved.
//!
//! `SITFER_FUZZ_ITERS` changes the mutations per target, `SITFER_FUZZ_SEED` the mutation seed;
//! `SITFER_WRITE_FUZZ_SEEDS=1` rewrites `fuzz/seeds/` from the generators below.

#[path = "../../fuzz/src/runtime_targets.rs"]
mod runtime_targets;
#[path = "../../fuzz/src/trainer_targets.rs"]
mod trainer_targets;

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runtime_targets::{DIM, SIZE, SPACE};
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::source::encode_y4m_444;
use sitfer_trainer::export::proto::{Attr, GraphBuilder};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Mutations per target: ~1,000 keeps the whole test near 10 s on CI's two cores.
const ITERS: usize = 1000;

fn targets() -> Vec<runtime_targets::Target> {
    runtime_targets::TARGETS
        .iter()
        .chain(trainer_targets::TARGETS)
        .copied()
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The smallest model the ONNX target accepts: `[N, 3, SIZE, SIZE]` → pooled `[N, 3]` →
/// logits `[N, 7]` and embedding `[N, DIM]`.
fn tiny_onnx() -> Vec<u8> {
    let mut g = GraphBuilder::new("fuzz-seed");
    g.input("input", &[3, SIZE as usize, SIZE as usize]);
    let wl = g.f32("wl", &[7, 3], &(0..21).map(|i| i as f32 * 0.1).collect::<Vec<_>>());
    let we = g.f32(
        "we",
        &[DIM, 3],
        &(0..3 * DIM).map(|i| i as f32 * 0.2).collect::<Vec<_>>(),
    );
    g.node("GlobalAveragePool", &["input"], &["pooled"], vec![]);
    g.node("Flatten", &["pooled"], &["feat"], vec![("axis", Attr::Int(1))]);
    g.node("Gemm", &["feat", &wl], &["logits"], vec![("transB", Attr::Int(1))]);
    g.node("Gemm", &["feat", &we], &["embedding"], vec![("transB", Attr::Int(1))]);
    g.output("logits", &[7]);
    g.output("embedding", &[DIM]);
    g.into_model_bytes("fuzz seed")
}

/// Valid inputs of each target (named seed files), from the real writers where there is one.
fn generated_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let one = |name: &str, bytes: Vec<u8>| vec![(name.to_string(), bytes)];
    match target {
        "bundle_manifest" | "bundle_open" => {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("b");
            runtime_targets::write_fixture_bundle(&dir);
            let mut seeds = one("fixture.json", std::fs::read(dir.join("manifest.json")).unwrap());
            if target == "bundle_manifest" {
                seeds.extend(one(
                    "default.json",
                    std::fs::read(repo().join("models/default/manifest.json")).unwrap(),
                ));
            }
            seeds
        }
        "bundle_tensors" => vec![
            (
                "buffer.bin".into(),
                [vec![6], runtime_targets::fixture_buffer().to_bytes().unwrap()].concat(),
            ),
            (
                "prototypes.bin".into(),
                [vec![7], runtime_targets::fixture_prototypes().to_bytes().unwrap()].concat(),
            ),
        ],
        "onnx_model" => one("tiny.onnx", tiny_onnx()),
        "y4m" => {
            let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 17) as u8).collect();
            let mut mono = b"YUV4MPEG2 W3 H2 F25:1 Ip A1:1 Cmono\nFRAME\n".to_vec();
            mono.extend([16, 64, 128, 200, 235, 255]);
            let mut c420 = b"YUV4MPEG2 W3 H3 F30000:1001 C420jpeg XYSCSS=420JPEG\nFRAME\n".to_vec();
            c420.extend((0..9 + 2 * 4).map(|i| (i * 13) as u8));
            vec![
                ("444.y4m".into(), encode_y4m_444(4, 4, (30, 1), &[&rgb, &rgb])),
                ("mono.y4m".into(), mono),
                ("420.y4m".into(), c420),
            ]
        }
        "instance_buffer" => {
            let mut b = InstanceBuffer::new(DIM, 8);
            for c in 0..7 {
                b.push(c, &[c as f32 * 0.1; DIM]);
            }
            one("buffer.safetensors", b.to_file_bytes(SPACE))
        }
        "board_profile" => std::fs::read_dir(repo().join("boards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect(),
        "fer2013_csv" => one(
            "fer2013.csv",
            b"emotion,pixels,Usage\n0,0 1 2 3,Training\n3,10 20 30 40 50 60 70 80 90,PublicTest\n6,255 0 255 0,PrivateTest\n"
                .to_vec(),
        ),
        "ferplus" => one(
            "fer2013new.csv",
            b"Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n\
              Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0\n\
              PublicTest,fer0000001.png,0,6,2,0,0,0,2,0,0,0\n\
              PrivateTest,,0,0,0,0,0,0,0,0,0,10\n"
                .to_vec(),
        ),
        "rafdb" => one(
            "list_patition_label.txt",
            b"train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n".to_vec(),
        ),
        "affectnet" => one(
            "training.csv",
            b"subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n\
              689/a.jpg,10,12,100,100,1;2,1,0.5,0.2\n\
              690/b.jpg,0,0,50,60,1;2,7,0.1,0.1\n\
              691/c.jpg,0,0,50,60,1;2,9,0.1,0.1\n"
                .to_vec(),
        ),
        other => panic!("no seed generator for target `{other}`"),
    }
}

fn seed_dir(target: &str) -> PathBuf {
    repo().join("fuzz/seeds").join(target)
}

/// Generated seeds plus every committed file (crash inputs found by libFuzzer among them).
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut all = generated_seeds(target);
    if let Ok(dir) = std::fs::read_dir(seed_dir(target)) {
        for e in dir {
            let p = e.unwrap().path();
            all.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    all
}

/// Seeded, so a failing input can be replayed from the printed seed.
struct Rng(ChaCha8Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }
}

/// Values that break parsers: limits of integer types, non-finite floats, multi-byte UTF-8,
/// separators, path escapes.
const TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"255",
    b"256",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"99999999999999999999",
    b"1e309",
    b"NaN",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xff",
    b"\0",
    b"\n",
    b",",
    b" ",
    b":",
    b"\"",
    b"../",
    b"/",
    b"[",
    b"{",
];

/// One to four stacked mutations of `input`, with `other` as splice material.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            4 => v.truncate(at),
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            6 => {
                // Replace the run of digits at or after `at` by a token (a number or garbage).
                let start = (at..v.len()).find(|&i| v[i].is_ascii_digit()).unwrap_or(v.len());
                let end = (start..v.len()).find(|&i| !v[i].is_ascii_digit()).unwrap_or(v.len());
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(start..end, t.iter().copied());
            }
            _ if at < v.len() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs `f` on `input`; a panic fails the test with the input saved for `cargo fuzz run`.
fn run_one(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{target}"));
        std::fs::write(&out, input).unwrap();
        panic!(
            "target {target} panicked on {what}; input saved to {} (replay: scripts/fuzz.sh, or \
             `cargo fuzz run {target} {}` in fuzz/)",
            out.display(),
            out.display()
        );
    }
}

/// Replays the seeds of `target` and `iters` mutations of them.
fn fuzz_target(target: &str, f: fn(&[u8]), iters: usize, committed: bool) {
    let base_seed = env_or("SITFER_FUZZ_SEED", 0x0517_1fe2_u64);
    if std::env::var_os("SITFER_WRITE_FUZZ_SEEDS").is_some() {
        let dir = seed_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in generated_seeds(target) {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let seeds = if committed {
        seeds(target)
    } else {
        generated_seeds(target)
    };
    assert!(!seeds.is_empty(), "{target}: no seeds");
    for (name, bytes) in &seeds {
        run_one(target, f, bytes, &format!("seed {name}"));
    }
    let mut rng = Rng(ChaCha8Rng::seed_from_u64(
        base_seed ^ (target.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    ));
    for i in 0..iters {
        let a = &seeds[rng.below(seeds.len())].1;
        let b = &seeds[rng.below(seeds.len())].1;
        let input = mutate(&mut rng, a, b);
        run_one(
            target,
            f,
            &input,
            &format!("mutation {i} (SITFER_FUZZ_SEED={base_seed})"),
        );
    }
}

#[test]
fn every_target_survives_its_seeds_and_mutations() {
    let iters = env_or("SITFER_FUZZ_ITERS", ITERS);
    for (target, f) in targets() {
        fuzz_target(target, f, iters, true);
    }
}

#[test]
fn every_fuzz_target_has_committed_seeds() {
    for (target, _) in targets() {
        let n = std::fs::read_dir(seed_dir(target)).map(|d| d.count()).unwrap_or(0);
        assert!(
            n > 0,
            "fuzz/seeds/{target}/ is empty: run SITFER_WRITE_FUZZ_SEEDS=1 cargo test -p sitfer-tests --test fuzz_smoke"
        );
    }
}
