//! Export through the contract: the fp32 ONNX run by tract matches candle, the bundle written
//! by the trainer opens with the reader the runtime uses, the int8 graph is really quantized and agrees
//! with fp32, and a model that disagrees with its manifest is refused with a clear error.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sitfer_contract::bundle::{Bundle, Manifest, Precision, TextPrototypes};
use sitfer_contract::infer::Model;
use sitfer_trainer::export::bundle::{BundleInputs, SeedImages, default_fusion, write_model_bundle};
use sitfer_trainer::export::fold::{FoldedNet, PROJ_WEIGHT, fold};
use sitfer_trainer::export::onnx::fp32_onnx;
use sitfer_trainer::export::proto::op_types;
use sitfer_trainer::export::quantize::CalibMethod;
use sitfer_trainer::model::{Arch, FerModel, ModelSpec, Stem, build, init::seeded_var_builder};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const SIZE: usize = 48;
const TEXT_DIM: usize = 32;

struct Fixture {
    model: Box<dyn FerModel>,
    proj: Option<Tensor>,
    net: FoldedNet,
}

/// The student with non-trivial batch-norm statistics and affine parameters (so folding is
/// really exercised) and, optionally, a projection head.
fn fixture(with_proj: bool) -> Fixture {
    let spec = ModelSpec {
        arch: Arch::Student,
        stem: Stem::Small,
        num_classes: 7,
        input_size: SIZE as u32,
    };
    let varmap = VarMap::new();
    let vb: VarBuilder = seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let model = build(&spec, vb.clone()).unwrap();
    let proj = with_proj.then(|| {
        vb.get_with_hints(
            (TEXT_DIM, model.embedding_dim()),
            PROJ_WEIGHT,
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )
        .unwrap()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    {
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var: &Var = &data[name];
            let n = var.elem_count();
            let bn = ["bn1.", "bn2.", "downsample.1."].iter().any(|p| name.contains(p));
            let (lo, hi) = if name.ends_with("running_var") {
                (0.5, 2.0)
            } else if name.ends_with("running_mean") || (bn && name.ends_with(".bias")) {
                (-0.3, 0.3)
            } else if bn && name.ends_with(".weight") {
                (0.5, 1.5)
            } else {
                continue;
            };
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let net = fold(&spec, &weights).unwrap();
    Fixture { model, proj, net }
}

/// Smooth, image-like inputs (a few random gratings plus noise), already normalised.
fn images(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let waves: Vec<(f32, f32, f32, f32)> = (0..4)
                .map(|_| {
                    (
                        rng.random_range(0.02..0.3),
                        rng.random_range(0.02..0.3),
                        rng.random_range(0.0..6.3),
                        rng.random_range(0.2..0.8),
                    )
                })
                .collect();
            let mut v = Vec::with_capacity(3 * SIZE * SIZE);
            for c in 0..3 {
                for y in 0..SIZE {
                    for x in 0..SIZE {
                        let s: f32 = waves
                            .iter()
                            .map(|(fx, fy, ph, a)| a * (fx * x as f32 + fy * y as f32 + ph + c as f32).sin())
                            .sum();
                        v.push(s + rng.random_range(-0.1..0.1));
                    }
                }
            }
            v
        })
        .collect()
}

/// candle's eval-mode logits and the embedding the ONNX should reproduce.
fn candle_reference(f: &Fixture, batch: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::from_vec(batch.concat(), (batch.len(), 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let out = f.model.forward_t(&x, false).unwrap();
    let e = match &f.proj {
        Some(w) => out.embedding.matmul(&w.t().unwrap()).unwrap(),
        None => out.embedding,
    };
    let norm = e
        .sqr()
        .unwrap()
        .sum_keepdim(1)
        .unwrap()
        .sqrt()
        .unwrap()
        .clamp(1e-12, f64::MAX)
        .unwrap();
    let e = e.broadcast_div(&norm).unwrap();
    (
        out.logits.flatten_all().unwrap().to_vec1().unwrap(),
        e.flatten_all().unwrap().to_vec1().unwrap(),
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn prototypes() -> TextPrototypes {
    let rows: Vec<Vec<f32>> = (0..7)
        .map(|c| {
            let r: Vec<f32> = (0..TEXT_DIM).map(|i| ((c * 31 + i) as f32).sin()).collect();
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        })
        .collect();
    TextPrototypes::from_rows(&rows).unwrap()
}

fn write(f: &Fixture, out: &Path, calib: Option<&[Vec<f32>]>) -> sitfer_trainer::export::bundle::BundleSummary {
    let seed_imgs = images(14, 11);
    let seed = SeedImages {
        classes: (0..seed_imgs.len()).map(|i| (i % 7) as u8).collect(),
        images: seed_imgs,
    };
    write_model_bundle(
        out,
        BundleInputs {
            net: &f.net,
            norm: Default::default(),
            prototypes: f.proj.as_ref().map(|_| prototypes()),
            seed: &seed,
            calib: calib.map(|c| (c, CalibMethod::MinMax)),
            fusion: default_fusion(f.proj.is_some()),
            provenance: BTreeMap::from([("test".into(), "export_bundle".into())]),
        },
    )
    .unwrap()
}

#[test]
fn fp32_parity_through_tract_and_bundle_round_trip() {
    for with_proj in [true, false] {
        let f = fixture(with_proj);
        let tmp = tempfile::tempdir().unwrap();
        let summary = write(&f, tmp.path(), None);
        let bundle = Bundle::open(tmp.path()).unwrap();
        assert_eq!(bundle.manifest, summary.manifest);
        assert_eq!(bundle.buffer.len(), 14);
        assert_eq!(bundle.prototypes.is_some(), with_proj);
        assert_eq!(bundle.manifest.fusion.weights.text > 0.0, with_proj);
        let dim = if with_proj { TEXT_DIM } else { 256 };
        assert_eq!(bundle.manifest.embedding_dim, dim);
        let model = Model::load(&bundle, Precision::Fp32).unwrap();
        let imgs = images(8, 5);
        for n in [1, 8] {
            let (logits, emb) = candle_reference(&f, &imgs[..n]);
            let out = model.run(&imgs[..n].concat(), n).unwrap();
            let (dl, de) = (max_abs_diff(&logits, &out.logits), max_abs_diff(&emb, &out.embedding));
            eprintln!("parity proj={with_proj} batch {n}: logits max |Δ| {dl:.2e}, embedding max |Δ| {de:.2e}");
            assert!(dl <= 1e-4 && de <= 1e-4, "batch {n}: logits {dl}, embedding {de}");
        }
        // The seed buffer holds what the exported model computes.
        let seed = images(14, 11);
        let out = model.run(&seed[..2].concat(), 2).unwrap();
        assert!(max_abs_diff(&out.embedding, &bundle.buffer.embeddings[..2 * dim]) <= 1e-5);
    }
}

/// `img` mirrored left to right, written out here rather than through the runtime's own flip.
fn mirrored(img: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(img.len());
    for c in 0..3 {
        for y in 0..SIZE {
            for x in (0..SIZE).rev() {
                out.push(img[(c * SIZE + y) * SIZE + x]);
            }
        }
    }
    out
}

#[test]
fn mirrored_inference_averages_each_face_with_its_mirror_image() {
    let f = fixture(true);
    let tmp = tempfile::tempdir().unwrap();
    write(&f, tmp.path(), None);
    let bundle = Bundle::open(tmp.path()).unwrap();
    let plain = Model::load_with_feature(&bundle, Precision::Fp32).unwrap();
    let mut both = Model::load_with_feature(&bundle, Precision::Fp32).unwrap();
    both.set_mirror(true);
    let imgs = images(3, 21);
    let out = both.run(&imgs.concat(), 3).unwrap();
    for (i, img) in imgs.iter().enumerate() {
        let (l0, e0) = candle_reference(&f, std::slice::from_ref(img));
        let (l1, e1) = candle_reference(&f, &[mirrored(img)]);
        let mean = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect::<Vec<f32>>();
        let e = mean(&e0, &e1);
        let n = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        let e: Vec<f32> = e.iter().map(|v| v / n).collect();
        assert!(
            max_abs_diff(out.logits_row(i), &mean(&l0, &l1)) <= 1e-4,
            "face {i}: logits"
        );
        assert!(max_abs_diff(out.embedding_row(i), &e) <= 1e-4, "face {i}: embedding");
        let norm = out.embedding_row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "face {i}: embedding norm {norm}");
        // The gratings are not symmetric, so the mirror is another view: the average moves.
        assert!(
            max_abs_diff(out.logits_row(i), &l0) > 1e-3,
            "face {i}: mirror changed nothing"
        );
        let p0 = plain.run(img, 1).unwrap();
        let p1 = plain.run(&mirrored(img), 1).unwrap();
        let feat = mean(p0.feature_row(0).unwrap(), p1.feature_row(0).unwrap());
        assert!(
            max_abs_diff(out.feature_row(i).unwrap(), &feat) <= 1e-5,
            "face {i}: feature"
        );
    }
    // A face that is its own mirror image gives what the plain model gives.
    let sym: Vec<f32> = imgs[0]
        .chunks_exact(SIZE)
        .flat_map(|row| {
            let half = &row[..SIZE / 2];
            half.iter().chain(half.iter().rev()).copied().collect::<Vec<f32>>()
        })
        .collect();
    let (a, b) = (plain.run(&sym, 1).unwrap(), both.run(&sym, 1).unwrap());
    assert!(max_abs_diff(&a.logits, &b.logits) <= 1e-5);
    assert!(max_abs_diff(&a.embedding, &b.embedding) <= 1e-5);
}

#[test]
fn int8_is_quantized_and_agrees_with_fp32() {
    let f = fixture(true);
    let tmp = tempfile::tempdir().unwrap();
    let calib = images(64, 21);
    let summary = write(&f, tmp.path(), Some(&calib));
    let bundle = Bundle::open(tmp.path()).unwrap();
    let (_, int8_bytes) = bundle.model_bytes(Precision::Int8).unwrap();
    let ops = op_types(&int8_bytes).unwrap();
    let convs = ops.iter().filter(|o| *o == "QLinearConv").count();
    assert_eq!(convs, summary.qlinear_convs);
    assert_eq!(
        convs,
        f.net
            .layers
            .iter()
            .filter(|l| matches!(l, sitfer_trainer::export::fold::Layer::Conv { .. }))
            .count()
    );
    assert!(!ops.iter().any(|o| o == "Conv"), "float convolutions left: {ops:?}");
    let fp32 = Model::load(&bundle, Precision::Fp32).unwrap();
    let int8 = Model::load(&bundle, Precision::Int8).unwrap();
    let test = images(96, 99);
    let (mut agree, mut max_dl, mut cos_min) = (0, 0f32, 1f32);
    for chunk in test.chunks(8) {
        let a = fp32.run(&chunk.concat(), chunk.len()).unwrap();
        let b = int8.run(&chunk.concat(), chunk.len()).unwrap();
        for i in 0..chunk.len() {
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&x, &y| v[x].total_cmp(&v[y])).unwrap();
            agree += (argmax(a.logits_row(i)) == argmax(b.logits_row(i))) as usize;
            max_dl = max_dl.max(max_abs_diff(a.logits_row(i), b.logits_row(i)));
            let cos: f32 = a
                .embedding_row(i)
                .iter()
                .zip(b.embedding_row(i))
                .map(|(x, y)| x * y)
                .sum();
            cos_min = cos_min.min(cos);
        }
    }
    let rate = agree as f64 / test.len() as f64;
    eprintln!(
        "int8 vs fp32: top-1 agreement {rate:.3} on {} images, logits max |Δ| {max_dl:.3}, embedding cosine ≥ {cos_min:.4}; sizes fp32 {} int8 {} bytes",
        test.len(),
        summary.fp32_bytes,
        summary.int8_bytes.unwrap()
    );
    assert!(rate >= 0.9, "top-1 agreement {rate}");
    assert!(cos_min >= 0.98, "embedding cosine {cos_min}");
    assert!(summary.int8_bytes.unwrap() * 3 < summary.fp32_bytes);
}

fn manifest_of(dir: &Path) -> Manifest {
    Bundle::open(dir).unwrap().manifest
}

#[test]
fn model_disagreeing_with_manifest_is_refused_naming_file_and_field() {
    let f = fixture(true);
    let tmp = tempfile::tempdir().unwrap();
    write(&f, tmp.path(), None);
    let onnx = fp32_onnx(&f.net);
    let file = Path::new("model-fp32.onnx");
    let mut m = manifest_of(tmp.path());
    m.embedding_dim = 16;
    let e = Model::from_onnx(&onnx, file, "models.fp32", &m)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model-fp32.onnx") && e.contains("models.fp32") && e.contains("embedding_dim"),
        "{e}"
    );
    let mut m = manifest_of(tmp.path());
    m.input.size = 64;
    let e = Model::from_onnx(&onnx, file, "models.fp32", &m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model-fp32.onnx") && e.contains("input.size"), "{e}");
    let m = manifest_of(tmp.path());
    let e = Model::from_onnx(&onnx[..onnx.len() / 2], file, "models.fp32", &m)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model-fp32.onnx") && e.contains("not a loadable ONNX model"),
        "{e}"
    );
}

#[test]
fn efficientnet_export_is_refused_clearly() {
    let spec = ModelSpec {
        arch: Arch::EfficientnetLite0,
        stem: Stem::Small,
        num_classes: 7,
        input_size: 64,
    };
    let e = fold(&spec, &HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("not supported for export"), "{e}");
}

/// The fp32 bundle of the run in `run`, written inside the run directory.
fn export_fp32(run: &Path) -> std::path::PathBuf {
    use sitfer_trainer::export::bundle::{ExportOptions, export_checkpoint};
    let out = run.join("bundle");
    export_checkpoint(&ExportOptions {
        checkpoint: run.to_path_buf(),
        out: out.clone(),
        calib: None,
        int8: false,
        calib_images: 10,
        calib_method: CalibMethod::MinMax,
        per_class: 2,
        data: None,
    })
    .unwrap();
    out
}

/// A 2-step SIT-FER run (with `ssl`'s settings) on every label of a dataset and prototypes
/// written under `data`.
fn all_label_run(
    data: &Path,
    noise_seed: u32,
    ssl: sitfer_trainer::method::SslConfig,
) -> sitfer_trainer::train::config::TrainConfig {
    use sitfer_trainer::train::config::{DataConfig, Method, TrainConfig};
    common::write_dataset(data, 6, noise_seed);
    common::write_prototypes(&data.join("prototypes.json"), TEXT_DIM);
    let cfg = common::semi_config(data, Method::Sitfer, Some(ssl), 2);
    TrainConfig {
        data: DataConfig {
            budget: sitfer_trainer::data::split::LabelBudget::All,
            ..cfg.data
        },
        ..cfg
    }
}

/// A SIT-FER run on every label, exported as a user would: the bundle carries the run's text
/// prototypes with text in the fusion, a text-space embedding, and the recorded command.
#[test]
fn an_all_label_sitfer_run_exports_with_prototypes_and_its_command() {
    use sitfer_trainer::export::bundle::COMMAND_FILE;
    use sitfer_trainer::train::checkpoint::{self, Which};
    use sitfer_trainer::train::config::TrainConfig;
    use sitfer_trainer::train::run::train;
    let data = tempfile::tempdir().unwrap();
    let cfg = all_label_run(data.path(), 5, sitfer_trainer::method::SslConfig::sitfer());
    let run = tempfile::tempdir().unwrap();
    std::fs::write(run.path().join(COMMAND_FILE), "sitfer-train train --method sitfer\n").unwrap();
    train(&cfg, &common::run_opts(run.path(), false, None)).unwrap();
    let out = export_fp32(run.path());
    let b = Bundle::open(&out).unwrap();
    assert_eq!(b.manifest.embedding_dim, TEXT_DIM);
    assert_eq!(b.prototypes.as_ref().unwrap().dim, TEXT_DIM);
    assert!(b.manifest.fusion.weights.text > 0.0);
    assert_eq!(b.manifest.provenance["method"], "sitfer");
    assert_eq!(b.manifest.provenance["command"], "sitfer-train train --method sitfer");
    assert_eq!(b.buffer.labels.len(), 14, "2 seed embeddings per class");

    // A run started from this one's weights (a warm restart) records both commands.
    let weights = checkpoint::resolve(run.path(), Which::Latest)
        .unwrap()
        .join("weights.safetensors");
    let again = tempfile::tempdir().unwrap();
    std::fs::write(again.path().join(COMMAND_FILE), "sitfer-train train --pretrained W\n").unwrap();
    let restart = TrainConfig {
        pretrained: Some(weights.clone()),
        lr: cfg.lr / 2.0,
        ..cfg.clone()
    };
    train(&restart, &common::run_opts(again.path(), false, None)).unwrap();
    let out = export_fp32(again.path());
    let p = Bundle::open(&out).unwrap().manifest.provenance;
    assert_eq!(p["command"], "sitfer-train train --pretrained W");
    assert_eq!(p["pretrained.1.weights"], weights.display().to_string());
    assert_eq!(p["pretrained.1.command"], "sitfer-train train --method sitfer");
    assert!(!p.contains_key("pretrained.2.weights"), "{p:?}");

    // A student distilled from the first run records its teacher's command too.
    let teacher = checkpoint::resolve(run.path(), Which::Best).unwrap();
    let student_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        student_dir.path().join(COMMAND_FILE),
        "sitfer-train distill --teacher T\n",
    )
    .unwrap();
    let student = TrainConfig {
        distill: Some(sitfer_trainer::distill::DistillConfig {
            teacher,
            kd_weight: 1.0,
            teacher_mirror: false,
            more_teachers: vec![],
        }),
        ..cfg
    };
    sitfer_trainer::distill::train(&student, &common::run_opts(student_dir.path(), false, None)).unwrap();
    let p = Bundle::open(&export_fp32(student_dir.path()))
        .unwrap()
        .manifest
        .provenance;
    assert_eq!(p["command"], "sitfer-train distill --teacher T");
    assert_eq!(p["teacher.command"], "sitfer-train train --method sitfer");
}

/// A `reference`-preset run fuses raw scores with per-class max similarity and its own
/// weights; its bundle says so, so that the device fuses as the run did.
#[test]
fn a_reference_preset_bundle_carries_its_fusion_settings() {
    use sitfer_contract::fusion::{Aggregate, FuseMode};
    use sitfer_trainer::method::SslConfig;
    use sitfer_trainer::train::run::train;
    let data = tempfile::tempdir().unwrap();
    let reference = SslConfig::reference();
    let cfg = all_label_run(data.path(), 7, reference.clone());
    let run = tempfile::tempdir().unwrap();
    train(&cfg, &common::run_opts(run.path(), false, None)).unwrap();
    let f = Bundle::open(&export_fp32(run.path())).unwrap().manifest.fusion;
    assert_eq!((f.mode, f.aggregate), (FuseMode::RawScores, Aggregate::Max));
    assert_eq!((reference.fuse, reference.aggregate), (f.mode, f.aggregate));
    let w = reference.weights;
    assert_eq!(
        (f.weights.sem, f.weights.text, f.weights.ins),
        (w.sem as f32, w.text as f32, w.ins as f32)
    );
    assert_eq!(
        (f.tau_t, f.tau_i, f.threshold),
        (
            reference.tau_t as f32,
            reference.tau_i as f32,
            reference.threshold as f32
        )
    );
}
