//! Checks the EfficientNet-Lite0 ImageNet conversion with a forward pass on real photos.
//!
//! `cargo run --release -p sitfer-trainer --example check_pretrained -- WEIGHTS.safetensors IMAGE...`
//! prints the top-5 ImageNet class indices per image for both usual input normalisations
//! (TF-Lite's (x-127)/128 and torchvision's ImageNet mean/std). Test photos ship inside the
//! scikit-image wheel (`skimage/data/chelsea.png`: a tabby cat; `coffee.png`: a cup of coffee).

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use sitfer_trainer::data::augment::{NormalizationPreset, to_chw};
use sitfer_trainer::model::init::seeded_var_builder;
use sitfer_trainer::model::pretrained::load_matching;
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: check_pretrained WEIGHTS IMAGE...");
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let spec = ModelSpec {
        arch: Arch::EfficientnetLite0,
        stem: Stem::Standard,
        num_classes: 1000,
        input_size: 224,
    };
    let model = build(&spec, seeded_var_builder(&varmap, 0, DType::F32, &dev))?;
    let report = load_matching(&varmap, std::path::Path::new(&args[0]), &dev)?;
    println!(
        "loaded {} tensors; missing {:?}; shape mismatch {:?}",
        report.loaded, report.missing, report.skipped_shape
    );
    let norms = [
        ("tf-lite (x-127)/128", NormalizationPreset::TfLite.normalization()),
        ("imagenet mean/std", NormalizationPreset::Imagenet.normalization()),
    ];
    for path in &args[1..] {
        let img = image::open(path)?.to_rgb8();
        // Resize the short side to 256 and take the central 224 crop (the usual ImageNet eval).
        let (w, h) = img.dimensions();
        let s = 256.0 / w.min(h) as f32;
        let (nw, nh) = ((w as f32 * s).round() as u32, (h as f32 * s).round() as u32);
        let resized = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
        let crop = image::imageops::crop_imm(&resized, (nw - 224) / 2, (nh - 224) / 2, 224, 224).to_image();
        for (name, norm) in &norms {
            let mut buf = vec![0f32; 3 * 224 * 224];
            to_chw(&crop, norm, &mut buf);
            let x = Tensor::from_vec(buf, (1, 3, 224, 224), &dev)?;
            let p = candle_nn::ops::softmax(&model.forward_t(&x, false)?.logits, D::Minus1)?
                .squeeze(0)?
                .to_vec1::<f32>()?;
            let mut idx: Vec<usize> = (0..p.len()).collect();
            idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
            let top: Vec<String> = idx[..5]
                .iter()
                .map(|&i| format!("{i} ({:.1}%)", 100.0 * p[i]))
                .collect();
            println!("{path} [{name}]: top-5 {}", top.join(", "));
        }
    }
    Ok(())
}
