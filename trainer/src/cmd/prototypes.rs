//! `sitfer-train prototypes`: build or check the text prototype cache.

use anyhow::Result;
use clap::Args;
use sitfer_trainer::text::EncoderKind;
use std::path::PathBuf;

#[derive(Args)]
pub struct PrototypesArgs {
    /// The cache to build or check.
    #[arg(long, default_value = sitfer_trainer::text::DEFAULT_PROTOTYPES)]
    prototypes: PathBuf,
    #[arg(long, env = "SITFER_TEXT_ENCODER", default_value = sitfer_trainer::text::DEFAULT_ENCODER_DIR)]
    text_encoder: PathBuf,
    #[arg(long, value_enum, default_value = "minilm")]
    text_encoder_kind: EncoderKind,
}

pub fn run(a: PrototypesArgs) -> Result<()> {
    let (set, rebuilt) = sitfer_trainer::text::resolve(
        &a.prototypes,
        &sitfer_trainer::text::EncoderSource {
            dir: a.text_encoder.clone(),
            kind: a.text_encoder_kind,
        },
        &sitfer_trainer::text::descriptions::default_descriptions(),
    )?;
    println!(
        "{} {} (encoder {}, {} descriptions, dim {})",
        a.prototypes.display(),
        if rebuilt { "rebuilt" } else { "is up to date" },
        set.encoder.name,
        set.texts.iter().map(Vec::len).sum::<usize>(),
        set.dim
    );
    println!("cosine similarity between class prototypes:");
    print!("{:>10}", "");
    for c in &set.classes {
        print!("{c:>10}");
    }
    println!();
    for (i, c) in set.classes.iter().enumerate() {
        print!("{c:>10}");
        for j in 0..set.classes.len() {
            print!("{:>10.3}", set.similarity(i, j));
        }
        println!();
    }
    Ok(())
}
