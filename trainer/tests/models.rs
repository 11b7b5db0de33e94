//! Model shapes and sizes, the fused batch norm against the composed one, and a model that
//! overfits a tiny generated set.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use sitfer_trainer::method::loss::soft_cross_entropy;
use sitfer_trainer::model::norm::batch_norm;
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build};
use sitfer_trainer::train::optimizer::{Optimizer, OptimizerConfig};
use sitfer_trainer::train::run::trainable;

fn spec(arch: Arch, stem: Stem, size: u32) -> ModelSpec {
    ModelSpec {
        arch,
        stem,
        num_classes: 7,
        input_size: size,
    }
}

fn param_count(varmap: &VarMap) -> usize {
    trainable(varmap).iter().map(|p| p.var.elem_count()).sum()
}

#[test]
fn models_return_logits_and_embeddings() {
    let dev = Device::Cpu;
    for (arch, stem, size, dim, lo, hi) in [
        (Arch::Student, Stem::Small, 48, 256, 300_000, 1_500_000),
        (Arch::Resnet18, Stem::Small, 48, 512, 11_000_000, 11_400_000),
        (Arch::Resnet18, Stem::Standard, 64, 512, 11_000_000, 11_400_000),
        (Arch::EfficientnetLite0, Stem::Small, 64, 1280, 3_300_000, 3_500_000),
    ] {
        let varmap = VarMap::new();
        let model = build(
            &spec(arch, stem, size),
            VarBuilder::from_varmap(&varmap, DType::F32, &dev),
        )
        .unwrap();
        let n = param_count(&varmap);
        assert!((lo..=hi).contains(&n), "{arch:?}: {n} parameters");
        let x = Tensor::randn(0f32, 1f32, (2, 3, size as usize, size as usize), &dev).unwrap();
        for train in [true, false] {
            let out = model.forward_t(&x, train).unwrap();
            assert_eq!(out.logits.dims(), &[2, 7], "{arch:?}");
            assert_eq!(out.embedding.dims(), &[2, dim], "{arch:?}");
            assert_eq!(model.embedding_dim(), dim);
            let s: f32 = out.logits.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(s.is_finite());
        }
    }
}

#[test]
fn fused_batch_norm_matches_composed_forward_backward_and_running_stats() {
    let dev = Device::Cpu;
    let make = || {
        let varmap = VarMap::new();
        let bn = batch_norm(3, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        // Non-trivial affine parameters.
        for (name, vals) in [("weight", [0.5f32, 2.0, -1.0]), ("bias", [0.1f32, -0.3, 0.7])] {
            varmap.data().lock().unwrap()[name]
                .set(&Tensor::new(&vals, &dev).unwrap())
                .unwrap();
        }
        (varmap, bn)
    };
    let x = Var::from_tensor(
        &Tensor::randn(0f32, 1f32, (4, 3, 5, 6), &dev)
            .unwrap()
            .affine(3.0, 1.0)
            .unwrap(),
    )
    .unwrap();
    let r = Tensor::randn(0f32, 1f32, (4, 3, 5, 6), &dev).unwrap();
    let mut results = Vec::new();
    for fused in [true, false] {
        let (varmap, bn) = make();
        let y = bn.forward_train_with(x.as_tensor(), fused).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let vars = varmap.data().lock().unwrap().clone();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        results.push(vec![
            flat(&y),
            flat(g.get(&x).unwrap()),
            flat(g.get(&vars["weight"]).unwrap()),
            flat(g.get(&vars["bias"]).unwrap()),
            flat(vars["running_mean"].as_tensor()),
            flat(vars["running_var"].as_tensor()),
        ]);
    }
    let names = [
        "output",
        "grad x",
        "grad weight",
        "grad bias",
        "running mean",
        "running var",
    ];
    for (k, name) in names.iter().enumerate() {
        let (a, b) = (&results[0][k], &results[1][k]);
        let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "{name}: max diff {d}");
    }
}

/// 14 random 16x16 images, two per class: a model must be able to memorise them.
#[test]
fn student_overfits_a_tiny_generated_set() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = build(
        &spec(Arch::Student, Stem::Small, 16),
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1f32, (14, 3, 16, 16), &dev).unwrap();
    let labels: Vec<u32> = (0..14).map(|i| i % 7).collect();
    let y = Tensor::new(labels.as_slice(), &dev).unwrap();
    let targets = candle_nn::encoding::one_hot(y.clone(), 7, 1f32, 0f32).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        trainable(&varmap),
    );
    let first = soft_cross_entropy(&model.forward_t(&x, true).unwrap().logits, &targets)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    for _ in 0..60 {
        let loss = soft_cross_entropy(&model.forward_t(&x, true).unwrap().logits, &targets).unwrap();
        opt.step(&loss.backward().unwrap(), 3e-3).unwrap();
    }
    // Judge in inference mode (running statistics), as evaluation does.
    let out = model.forward_t(&x, false).unwrap();
    let last = soft_cross_entropy(&out.logits, &targets)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let pred = out.logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert_eq!(correct, 14, "predictions {pred:?}");
}

#[test]
fn arch_names_are_the_command_line_names() {
    use clap::ValueEnum;
    for arch in Arch::value_variants() {
        assert_eq!(Arch::from_str(arch.name(), false).unwrap(), *arch);
    }
}
