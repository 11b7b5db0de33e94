//! Text prototypes: the cache is rebuilt exactly when the descriptions or the encoder change
//! (with a tiny generated BERT), and the real all-MiniLM-L6-v2 puts a happy description nearer
//! to "a smiling face" than to "an angry face".

use candle_core::{DType, Device};
use candle_nn::VarMap;
use candle_transformers::models::bert;
use sitfer_trainer::text::descriptions::default_descriptions;
use sitfer_trainer::text::prototypes::{PrototypeError, PrototypeSet, resolve};
use sitfer_trainer::text::{EncoderKind, EncoderSource, TextEncoder};
use std::path::{Path, PathBuf};

const WORDS: &[&str] = &["a", "face", "image", "of", "happy", "angry", "photo", "smiling", "sad"];

/// Writes a 1-layer BERT with random weights (`seed` picks them) and a WordPiece tokenizer.
fn write_tiny_bert(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "vocab_size": 4 + WORDS.len(), "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg: bert::Config = serde_json::from_value(config).unwrap();
    let varmap = VarMap::new();
    let vb = sitfer_trainer::model::init::seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    bert::BertModel::load(vb, &cfg).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
    let mut vocab = serde_json::Map::new();
    for (i, w) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].iter().chain(WORDS).enumerate() {
        vocab.insert(w.to_string(), i.into());
    }
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}

fn source(dir: &Path) -> EncoderSource {
    EncoderSource {
        dir: dir.to_path_buf(),
        kind: EncoderKind::Minilm,
    }
}

#[test]
fn prototype_cache_is_rebuilt_when_texts_or_encoder_change() {
    let tmp = tempfile::tempdir().unwrap();
    let enc_a = tmp.path().join("enc-a");
    let enc_b = tmp.path().join("enc-b");
    write_tiny_bert(&enc_a, 1);
    write_tiny_bert(&enc_b, 2);
    let cache = tmp.path().join("cache/prototypes.json");
    let texts = default_descriptions();

    let (first, rebuilt) = resolve(&cache, &source(&enc_a), &texts).unwrap();
    assert!(rebuilt && cache.is_file());
    assert_eq!(first.dim, 8);
    for row in &first.prototypes {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "prototypes are unit vectors: {n}");
    }
    // Same texts, same encoder: the cache is used as is.
    let (again, rebuilt) = resolve(&cache, &source(&enc_a), &texts).unwrap();
    assert!(!rebuilt);
    assert_eq!(again, first);
    // Another description: rebuilt.
    let mut other = texts.clone();
    other[3].push("a grinning face".into());
    let (changed, rebuilt) = resolve(&cache, &source(&enc_a), &other).unwrap();
    assert!(rebuilt);
    assert_ne!(changed.prototypes[3], first.prototypes[3]);
    assert_eq!(
        changed.prototypes[0], first.prototypes[0],
        "other classes keep their texts"
    );
    // Another encoder (other weights): rebuilt with its id.
    let (by_b, rebuilt) = resolve(&cache, &source(&enc_b), &other).unwrap();
    assert!(rebuilt);
    assert_ne!(by_b.encoder.sha256, changed.encoder.sha256);
    assert_ne!(by_b.prototypes, changed.prototypes);
    // No encoder present: a fresh cache is used, a stale one is a clear error.
    let gone = tmp.path().join("missing");
    let (kept, rebuilt) = resolve(&cache, &source(&gone), &other).unwrap();
    assert!(!rebuilt);
    assert_eq!(kept, by_b);
    let err = resolve(&cache, &source(&gone), &texts).unwrap_err();
    assert!(matches!(err, PrototypeError::NeedEncoder { .. }), "{err}");
    assert!(err.to_string().contains("fetch-text-encoder.sh"), "{err}");
}

#[test]
fn a_broken_cache_names_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("p.json");
    std::fs::write(&p, r#"{"version": 99}"#).unwrap();
    let err = PrototypeSet::load(&p).unwrap_err().to_string();
    assert!(err.contains("p.json"), "{err}");
}

/// The unpacked all-MiniLM-L6-v2 (scripts/fetch-text-encoder.sh), if present.
fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SITFER_TEXT_ENCODER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/text-encoder/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("SITFER_REQUIRE_TEXT_ENCODER").is_none(),
        "SITFER_REQUIRE_TEXT_ENCODER is set but {} has no model (run scripts/fetch-text-encoder.sh)",
        dir.display()
    );
    eprintln!(
        "skipped: no text encoder at {} (scripts/fetch-text-encoder.sh)",
        dir.display()
    );
    None
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_puts_happy_nearer_to_smiling_than_to_angry() {
    let Some(dir) = minilm_dir() else { return };
    let enc = TextEncoder::load(&dir, EncoderKind::Minilm).unwrap();
    let e = enc
        .embed(&[
            "a photo of a happy face".to_string(),
            "a smiling face".to_string(),
            "an angry face".to_string(),
        ])
        .unwrap();
    assert_eq!(e[0].len(), 384);
    let (smile, angry) = (cos(&e[0], &e[1]), cos(&e[0], &e[2]));
    eprintln!("cos(happy, smiling) = {smile:.3}, cos(happy, angry) = {angry:.3}");
    assert!(smile > angry, "{smile} <= {angry}");
}

#[test]
fn shipped_prototype_cache_matches_the_descriptions_and_the_encoder() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(sitfer_trainer::text::DEFAULT_PROTOTYPES);
    let set = PrototypeSet::load(&shipped).unwrap();
    assert_eq!(
        set.texts_hash,
        sitfer_trainer::text::prototypes::texts_hash(&default_descriptions()),
        "{} is stale: run `sitfer-train prototypes`",
        shipped.display()
    );
    let Some(dir) = minilm_dir() else { return };
    // Resolve against a copy so a stale cache is reported, not silently rewritten.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("p.json");
    std::fs::copy(&shipped, &copy).unwrap();
    let (_, rebuilt) = resolve(&copy, &source(&dir), &default_descriptions()).unwrap();
    assert!(
        !rebuilt,
        "the shipped cache was made with another encoder: run `sitfer-train prototypes`"
    );
}
