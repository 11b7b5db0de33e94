//! Dataset readers on small fixtures written to a temporary folder: what each format parses
//! (splits, class mapping, drops, outside-label policy), how broken inputs are reported, and
//! decoding. CSV line numbers count the header as line 1.
//!
//! Expected error messages are written as ` | `-separated parts that the error's Display must
//! all contain; error tables hold `<fixture> | <part> | …` specs.

use image::{GrayImage, Luma};
use sitfer_contract::labels::{Expression, NUM_CLASSES};
use sitfer_trainer::data::decode::{decode_all, load_rgb};
use sitfer_trainer::data::sample::FaceBox;
use sitfer_trainer::data::{DataError, Dataset, Format, ImageRef, LabeledSample};
use sitfer_trainer::data::{OutsidePolicy, ReadOptions, Target, read_dataset};
use std::path::Path;
use tempfile::{TempDir, tempdir};

use Expression::*;

const DROP: ReadOptions = ReadOptions {
    outside: OutsidePolicy::Drop,
    soft_labels: false,
};
const REFUSE: ReadOptions = ReadOptions {
    outside: OutsidePolicy::Refuse,
    soft_labels: false,
};

fn tmp() -> TempDir {
    tempdir().unwrap()
}

/// Writes `contents` to `root/rel`, creating parent folders.
fn write(root: &Path, rel: &str, contents: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
}

/// Saves a gray image at `root/rel`, creating parent folders.
fn save(root: &Path, rel: &str, img: GrayImage) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    img.save(p).unwrap();
}

/// A 4x4 gray PNG of constant `value` at `root/rel`.
fn png(root: &Path, rel: &str, value: u8) {
    save(root, rel, GrayImage::from_pixel(4, 4, Luma([value])));
}

/// A 4x4 PNG at each whitespace-separated path of `rels`.
fn pngs(root: &Path, rels: &str) {
    rels.split_whitespace().for_each(|rel| png(root, rel, 10));
}

/// A CSV text: `header` (with its newline) then one line per row.
fn csv(header: &str, rows: &[&str]) -> String {
    rows.iter().fold(header.to_string(), |t, r| t + r + "\n")
}

fn read(format: Format, root: &Path, opts: &ReadOptions) -> Dataset {
    read_dataset(format, root, opts).unwrap_or_else(|e| panic!("{format:?} failed: {e}"))
}

fn assert_contains(msg: &str, parts: &str) {
    for p in parts.split(" | ") {
        assert!(msg.contains(p), "`{msg}` should contain `{p}`");
    }
}

/// Reads a dataset that must fail with a message holding every part of `parts`.
fn err(format: Format, root: &Path, opts: &ReadOptions, parts: &str) -> DataError {
    let e = match read_dataset(format, root, opts) {
        Ok(d) => panic!("{format:?} should fail, got {}", d.summary()),
        Err(e) => e,
    };
    assert_contains(&e.to_string(), parts);
    e
}

/// Error cases `<fixture> | <part> | …`: `setup` writes each fixture into a fresh folder,
/// reading which must fail with all the parts. Returns the errors.
fn cases(format: Format, setup: fn(&Path, &str), specs: &[&str]) -> Vec<DataError> {
    let run = |spec: &&str| {
        let (fixture, parts) = spec.split_once(" | ").unwrap();
        let dir = tmp();
        setup(dir.path(), fixture);
        err(format, dir.path(), &DROP, parts)
    };
    specs.iter().map(run).collect()
}

fn splits(d: &Dataset) -> [usize; 3] {
    [d.train.len(), d.val.len(), d.test.len()]
}

/// Per-class counts in canonical order (surprise, fear, disgust, happy, sad, angry, neutral).
fn counts(s: &[LabeledSample]) -> [usize; NUM_CLASSES] {
    Dataset::class_counts(s)
}

fn hard(s: &LabeledSample) -> Expression {
    match s.target {
        Target::Hard(e) => e,
        Target::Soft(_) => panic!("{}: expected a hard target", s.id),
    }
}

fn classes(s: &[LabeledSample]) -> Vec<Expression> {
    s.iter().map(hard).collect()
}

fn find<'a>(d: &'a Dataset, id: &str) -> &'a LabeledSample {
    let mut all = d.train.iter().chain(&d.val).chain(&d.test);
    all.find(|s| s.id == id).unwrap_or_else(|| panic!("no sample `{id}`"))
}

fn file_of(img: &ImageRef) -> (&Path, Option<FaceBox>) {
    match img {
        ImageRef::File { path, crop } => (path, *crop),
        other => panic!("expected a file, got {other:?}"),
    }
}

fn gray_of(img: &ImageRef) -> (u32, u32, &[u8]) {
    match img {
        ImageRef::Gray { width, height, pixels } => (*width, *height, &pixels[..]),
        other => panic!("expected in-memory pixels, got {other:?}"),
    }
}

fn dropped(d: &Dataset, reason: &str) -> usize {
    d.dropped.reasons.get(reason).copied().unwrap_or(0)
}

// ------------------------------------------------------------ ImageFolder / FER2013 / SFEW

#[test]
fn image_folder_reads_splits_and_aliases() {
    let dir = tmp();
    let p = dir.path();
    let paths = "train/happy/a.png train/happy/b.PNG train/Anger/c.png train/sadness/d.png \
                 valid/neutral/e.png test/surprised/f.png extras/happy/g.png";
    pngs(p, paths);
    write(p, "train/sadness/notes.txt", "not an image");
    write(p, "train/README", "ignored");
    let d = read(Format::ImageFolder, p, &DROP);
    assert_eq!(splits(&d), [4, 1, 1]); // extras/ is not a split folder
    assert_eq!(counts(&d.train), [0, 0, 0, 2, 1, 1, 0]);
    assert_eq!(hard(find(&d, "valid/neutral/e.png")), Neutral);
    assert_eq!(hard(find(&d, "test/surprised/f.png")), Surprise);
    assert_eq!(d.dropped.total(), 0);
    let (path, crop) = file_of(&find(&d, "train/Anger/c.png").image);
    assert_eq!(path, p.join("train/Anger/c.png"));
    assert_eq!(crop, None);
}

#[test]
fn fer2013_folder_maps_kaggle_layout() {
    let dir = tmp();
    let p = dir.path();
    let paths = "train/angry/fer0.png train/disgust/fer1.png train/fear/fer2.png \
                 train/happy/fer3.png train/neutral/fer4.png train/sad/fer5.png \
                 train/surprise/fer6.png test/happy/fer7.png test/angry/fer8.png \
                 PublicTest/fear/fer9.png";
    pngs(p, paths);
    let d = read(Format::Fer2013Folder, p, &DROP);
    assert_eq!(splits(&d), [7, 1, 2]);
    assert_eq!(counts(&d.train), [1; NUM_CLASSES]);
    assert_eq!(hard(find(&d, "train/angry/fer0.png")), Angry);
    assert_eq!(hard(find(&d, "PublicTest/fear/fer9.png")), Fear);
    assert_eq!(counts(&d.test), [0, 0, 0, 1, 0, 1, 0]);
}

#[test]
fn sfew_capitalised_folders() {
    let dir = tmp();
    let p = dir.path();
    let paths = "Train/Angry/a.png Train/Angry/b.png Train/Surprise/c.png Train/Disgust/d.png \
                 Val/Happy/e.png Val/Neutral/f.png Val/Fear/g.png";
    pngs(p, paths);
    let d = read(Format::Sfew, p, &DROP);
    assert_eq!(splits(&d), [4, 3, 0]);
    assert_eq!(counts(&d.train), [1, 0, 1, 0, 0, 2, 0]);
    assert_eq!(counts(&d.val), [0, 1, 0, 1, 0, 0, 1]);
    assert_eq!(hard(find(&d, "Train/Surprise/c.png")), Surprise);
}

#[test]
fn image_folder_contempt_folder_follows_policy() {
    let dir = tmp();
    let p = dir.path();
    let paths = "train/happy/a.png train/contempt/b.png train/contempt/c.png";
    pngs(p, paths);
    let d = read(Format::ImageFolder, p, &DROP);
    assert_eq!(splits(&d), [1, 0, 0]);
    assert_eq!(dropped(&d, "label contempt"), 2);
    assert_eq!(d.dropped.total(), 2);
    let parts = "train/contempt | `contempt` | --outside-labels drop";
    let e = err(Format::ImageFolder, p, &REFUSE, parts);
    assert!(matches!(e, DataError::Layout { .. }), "{e:?}");
    assert!(!e.to_string().contains(":0:"), "a folder has no line number: {e}");
}

#[test]
fn image_folder_skips_hidden_folders() {
    let dir = tmp();
    let p = dir.path();
    pngs(p, "train/happy/a.png train/.ipynb_checkpoints/b.png val/sad/c.png");
    let d = read(Format::ImageFolder, p, &DROP);
    assert_eq!(splits(&d), [1, 1, 0]);
}

#[test]
fn image_folder_unknown_class_folder_is_named() {
    let dir = tmp();
    let p = dir.path();
    pngs(p, "train/happy/a.png train/bored/b.png");
    let parts = "train/bored: | `bored` | not a known expression";
    let e = err(Format::ImageFolder, p, &DROP, parts);
    assert!(matches!(e, DataError::Layout { .. }), "{e:?}");
    // The same rule holds for SFEW's capitalised names.
    let dir = tmp();
    pngs(dir.path(), "Train/Bored/a.png");
    err(Format::Sfew, dir.path(), &DROP, "Train/Bored: | `Bored`");
}

#[test]
fn image_folder_missing_splits_and_empty_splits() {
    // Class folders directly under the root: no split folder; the root is named.
    let dir = tmp();
    let p = dir.path();
    pngs(p, "happy/a.png");
    let e = err(Format::Fer2013Folder, p, &DROP, "no split folder found");
    let DataError::Layout { path, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(path, p);
    // Split folders without any image.
    let dir = tmp();
    let p = dir.path();
    write(p, "Train/Happy/readme.txt", "no images");
    err(Format::Sfew, p, &DROP, "no images found");
    // A root that does not exist.
    let gone = p.join("nowhere");
    err(Format::ImageFolder, &gone, &DROP, "nowhere: does not exist");
}

// ------------------------------------------------------------ FER2013 CSV

const FER_HEADER: &str = "emotion,pixels,Usage\n";

#[test]
fn fer2013_csv_maps_ids_and_usage() {
    let dir = tmp();
    fer_csv(
        dir.path(),
        "0,0 64 128 255,Training\n5,1 2 3 4 5 6 7 8 9,Training\n3,9 9 9 9,PublicTest\n\
         6,7 7 7 7,PrivateTest\n1,0 0 0 0,Training\n2,0 0 0 0,PrivateTest\n4,0 0 0 0,PublicTest",
    );
    // The folder and the file itself both work.
    for root in [dir.path().to_path_buf(), dir.path().join("fer2013.csv")] {
        let d = read(Format::Fer2013Csv, &root, &DROP);
        assert_eq!(splits(&d), [3, 2, 2]);
        assert_eq!(classes(&d.train), [Angry, Surprise, Disgust]);
        assert_eq!(classes(&d.val), [Happy, Sad]);
        assert_eq!(classes(&d.test), [Neutral, Fear]);
        assert_eq!(d.dropped.total(), 0);
        let first = gray_of(&find(&d, "fer2013.csv:0").image);
        assert_eq!(first, (2, 2, &[0u8, 64, 128, 255][..]));
        assert_eq!(gray_of(&find(&d, "fer2013.csv:1").image).0, 3);
    }
}

fn fer_csv(p: &Path, body: &str) {
    write(p, "fer2013.csv", &format!("{FER_HEADER}{body}\n"));
}

#[test]
fn fer2013_csv_errors_name_file_line_and_field() {
    let specs = [
        "3,1 2 3 4,Training\n7,1 2 3 4,Training | fer2013.csv:3: unknown expression label `7`",
        "3,1 2 3 4,Training\n3,1 2 3 4,Training\nangry,1 2 3 4,Training | fer2013.csv:4: | `angry`",
        "3,1 2 x 4,Training | fer2013.csv:2: field `pixels` | `x`",
        "3,1 2 300 4,Training | fer2013.csv:2: field `pixels` | `300`",
        "3,1 2 3 4,Training\n3,1 2 3 4 5,Training | fer2013.csv:3: field `pixels` | 5 values",
        "3,,Training | fer2013.csv:2: field `pixels`",
        "3,1 2 3 4,Holdout | fer2013.csv:2: field `Usage` | `Holdout`",
        "3,1 2 3 4 | fer2013.csv:2: field `Usage` | missing",
    ];
    let errs = cases(Format::Fer2013Csv, fer_csv, &specs);
    let e = &errs[0];
    assert!(matches!(e, DataError::UnknownLabel { line: 3, .. }), "{e:?}");
    let e = &errs[4];
    let ok = matches!(e, DataError::Field { line: 3, field, .. } if field == "pixels");
    assert!(ok, "{e:?}");
    // A missing column; a missing file.
    let dir = tmp();
    let p = dir.path();
    write(p, "fer2013.csv", "emotion,pixels\n3,1 2 3 4\n");
    let parts = "fer2013.csv:1: field `Usage` | missing column";
    err(Format::Fer2013Csv, p, &DROP, parts);
    std::fs::remove_file(p.join("fer2013.csv")).unwrap();
    let e = err(Format::Fer2013Csv, p, &DROP, "fer2013.csv");
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
}

// ------------------------------------------------------------ FER+

const FERPLUS_HEADER: &str = "Usage,Image name,neutral,happiness,surprise,sadness,anger,\
                              disgust,fear,contempt,unknown,NF\n";

/// FER+ votes; row `r` is `fer000000r.png` at file line `r + 2`.
const FERPLUS_ROWS: [&str; 9] = [
    "Training,fer0000000.png,0,0,0,0,10,0,0,0,0,0",   // anger
    "Training,fer0000001.png,4,0,0,1,3,2,0,0,0,0",    // 4 of 9: no majority
    "Training,fer0000002.png,5,0,0,3,1,0,0,0,1,0",    // neutral: 5 of 8 once 1s go
    "PublicTest,fer0000003.png,0,0,0,0,0,0,0,0,10,0", // unknown
    "PublicTest,fer0000004.png,1,0,0,0,0,0,0,0,0,9",  // not a face
    "PublicTest,,0,10,0,0,0,0,0,0,0,0",               // removed by FER+
    "PrivateTest,fer0000006.png,2,0,0,0,0,0,0,8,0,0", // contempt (line 8)
    "PrivateTest,fer0000007.png,0,0,9,0,0,0,1,0,0,0", // surprise
    "PublicTest,fer0000008.png,0,6,2,0,0,0,0,0,0,2",  // happiness
];

fn ferplus_votes(root: &Path) {
    write(root, "fer2013new.csv", &csv(FERPLUS_HEADER, &FERPLUS_ROWS));
}

/// fer2013.csv with the FER+ rows' usages (so its splits interleave: rows are not in split
/// order); row `r` is 2x2 pixels of value `10 * r`, all labelled 0 (angry).
fn ferplus_pixels_csv(root: &Path) {
    let mut text = FER_HEADER.to_string();
    for (r, row) in FERPLUS_ROWS.iter().enumerate() {
        let usage = row.split(',').next().unwrap();
        text += &format!("0,{v} {v} {v} {v},{usage}\n", v = 10 * r);
    }
    write(root, "fer2013.csv", &text);
}

fn ferplus_csv_fixture() -> TempDir {
    let dir = tmp();
    ferplus_votes(dir.path());
    ferplus_pixels_csv(dir.path());
    dir
}

#[test]
fn ferplus_over_csv_majority_rule() {
    let dir = ferplus_csv_fixture();
    let d = read(Format::Ferplus, dir.path(), &DROP);
    assert_eq!(splits(&d), [2, 1, 1]);
    // FER2013's own label (0 = angry for every row) is not used: FER+ votes decide.
    assert_eq!(classes(&d.train), [Angry, Neutral]);
    assert_eq!(classes(&d.val), [Happy]);
    assert_eq!(classes(&d.test), [Surprise]);
    assert_eq!(d.val[0].id, "ferplus:fer0000008.png");
    // Pixels come from the same row of fer2013.csv.
    for row in [0u8, 2, 7, 8] {
        let s = find(&d, &format!("ferplus:fer000000{row}.png"));
        assert_eq!(gray_of(&s.image).2, [10 * row; 4], "{}", s.id);
    }
    assert_eq!(dropped(&d, "no FER+ majority"), 1);
    assert_eq!(dropped(&d, "FER+ majority unknown or not-a-face"), 2);
    assert_eq!(dropped(&d, "removed by FER+"), 1);
    assert_eq!(dropped(&d, "label contempt"), 1);
    assert_eq!(d.dropped.total(), 5);
}

#[test]
fn ferplus_soft_labels_are_normalised_votes() {
    let dir = ferplus_csv_fixture();
    let opts = ReadOptions {
        soft_labels: true,
        ..DROP
    };
    let d = read(Format::Ferplus, dir.path(), &opts);
    assert_eq!(splits(&d), [2, 1, 1]);
    assert_eq!(d.dropped.total(), 5);
    let expect = |row: usize, want: &[(Expression, f32)]| {
        let s = find(&d, &format!("ferplus:fer000000{row}.png"));
        let Target::Soft(p) = s.target else {
            panic!("{}: expected a soft target", s.id)
        };
        let mut w = [0f32; NUM_CLASSES];
        want.iter().for_each(|(e, v)| w[e.index()] = *v);
        let close = p.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-6);
        assert!(close, "{}: got {p:?}, want {w:?}", s.id);
    };
    expect(0, &[(Angry, 1.0)]);
    // 5 neutral, 3 sadness; the single anger and unknown votes are outliers.
    expect(2, &[(Neutral, 5.0 / 8.0), (Sad, 3.0 / 8.0)]);
    // The single fear vote is an outlier.
    expect(7, &[(Surprise, 1.0)]);
    // NF votes are not an expression: the distribution covers the 7 classes only.
    expect(8, &[(Happy, 0.75), (Surprise, 0.25)]);
    assert_eq!(find(&d, "ferplus:fer0000002.png").target.class(), Neutral);
}

#[test]
fn ferplus_over_png_folders() {
    let dir = tmp();
    let p = dir.path();
    // Votes in ferplus_original/; PNGs in <split>/<class>/, the class folder not being FER+'s
    // label (the votes decide); fer0000007.png is missing on disk.
    ferplus_votes(&p.join("ferplus_original"));
    for row in FERPLUS_ROWS {
        let mut f = row.split(',');
        let (usage, name) = (f.next().unwrap(), f.next().unwrap());
        let split = match usage {
            "Training" => "train",
            "PublicTest" => "valid",
            _ => "test",
        };
        if !name.is_empty() && name != "fer0000007.png" {
            png(p, &format!("{split}/happy/{name}"), 10);
        }
    }
    let d = read(Format::Ferplus, p, &DROP);
    assert_eq!(splits(&d), [2, 1, 0]);
    assert_eq!(classes(&d.train), [Angry, Neutral]);
    assert_eq!(classes(&d.val), [Happy]);
    let (path, crop) = file_of(&find(&d, "ferplus:fer0000000.png").image);
    assert_eq!(path, p.join("train/happy/fer0000000.png"));
    assert_eq!(crop, None);
    assert_eq!(dropped(&d, "image file not present"), 1);
    assert_eq!(dropped(&d, "no FER+ majority"), 1);
    assert_eq!(dropped(&d, "FER+ majority unknown or not-a-face"), 2);
    assert_eq!(dropped(&d, "removed by FER+"), 1);
    assert_eq!(dropped(&d, "label contempt"), 1);
    assert_eq!(d.dropped.total(), 6);
}

/// `votes` (after the header) as fer2013new.csv, over the 9-row pixels CSV.
fn ferplus_with(p: &Path, votes: &str) {
    ferplus_pixels_csv(p);
    write(p, "fer2013new.csv", &format!("{FERPLUS_HEADER}{votes}\n"));
}

#[test]
fn ferplus_errors() {
    let specs = [
        "Training,a.png,9,0,0,0,0,0,0,0,0,0\n\
         Training,b.png,0,x,0,0,9,0,0,0,0,0 | fer2013new.csv:3: field `happiness` | `x`",
        "Training,a.png,9,0,0,0,0,0,0,0,0,0\n\
         Bogus,b.png,9,0,0,0,0,0,0,0,0,0 | fer2013new.csv:3: field `Usage` | `Bogus`",
        "Training,a.png,9,0,0,0,0,0,0,0 | fer2013new.csv:2: field `unknown` | missing",
    ];
    let errs = cases(Format::Ferplus, ferplus_with, &specs);
    let e = &errs[0];
    let ok = matches!(e, DataError::Field { line: 3, field, .. } if field == "happiness");
    assert!(ok, "{e:?}");

    // Contempt majority refused: names the votes file and line 8.
    let dir = ferplus_csv_fixture();
    let p = dir.path();
    let parts = "fer2013new.csv:8: | `contempt` | --outside-labels drop";
    let e = err(Format::Ferplus, p, &REFUSE, parts);
    assert!(matches!(e, DataError::OutsideLabel { line: 8, .. }), "{e:?}");
    // More vote rows than fer2013.csv rows: row 9 (line 11) has no pixels.
    let mut rows = FERPLUS_ROWS.to_vec();
    rows.push("Training,fer0000009.png,10,0,0,0,0,0,0,0,0,0");
    write(p, "fer2013new.csv", &csv(FERPLUS_HEADER, &rows));
    err(Format::Ferplus, p, &DROP, "fer2013new.csv:11: | no pixels");
    // A missing vote column.
    let header = FERPLUS_HEADER.replace(",contempt", "");
    write(p, "fer2013new.csv", &csv(&header, &[FERPLUS_ROWS[0]]));
    let parts = "fer2013new.csv:1: field `contempt` | missing column";
    err(Format::Ferplus, p, &DROP, parts);

    // No votes file; votes but no pixels.
    let dir = tmp();
    pngs(dir.path(), "train/happy/fer0000000.png");
    err(Format::Ferplus, dir.path(), &DROP, "no fer2013new.csv");
    let dir = tmp();
    ferplus_votes(dir.path());
    err(Format::Ferplus, dir.path(), &DROP, "FER+ needs pixels");
    // Pixels that pair with no vote row: an empty fer2013.csv, or images not named fer*.png.
    let dir = tmp();
    ferplus_votes(dir.path());
    write(dir.path(), "fer2013.csv", FER_HEADER);
    err(
        Format::Ferplus,
        dir.path(),
        &DROP,
        "fer2013new.csv:2: | no pixels | fer2013.csv",
    );
    let dir = tmp();
    ferplus_votes(dir.path());
    pngs(dir.path(), "train/happy/Training_10118481.png");
    err(
        Format::Ferplus,
        dir.path(),
        &DROP,
        "no FER+ row could be paired | ferNNNNNNN.png",
    );
}

// ------------------------------------------------------------ RAF-DB

fn rafdb(root: &Path, list: &str) {
    write(root, "EmoLabel/list_patition_label.txt", list);
    std::fs::create_dir_all(root.join("Image/aligned")).unwrap();
}

#[test]
fn rafdb_maps_ids_shifted_by_one() {
    let dir = tmp();
    let p = dir.path();
    rafdb(
        p,
        "train_00001.jpg 1\ntrain_00002.jpg 4\n\ntest_0001.jpg 7\r\ntrain_00003.jpg 6\n\
         test_0002.jpg 2\ntrain_00004.jpg 3\ntrain_00005.jpg 5\n",
    );
    let d = read(Format::Rafdb, p, &DROP);
    assert_eq!(splits(&d), [5, 0, 2]);
    assert_eq!(classes(&d.train), [Surprise, Happy, Angry, Disgust, Sad]);
    assert_eq!(classes(&d.test), [Neutral, Fear]);
    let (path, crop) = file_of(&find(&d, "rafdb:train_00001.jpg").image);
    assert_eq!(path, p.join("Image/aligned/train_00001_aligned.jpg"));
    assert_eq!(crop, None);
}

#[test]
fn rafdb_errors_name_file_and_line() {
    let specs = [
        "train_1.jpg 1\ntrain_2.jpg 4 x | list_patition_label.txt:2: expected `<image> <label>`",
        "train_1.jpg 1\n\ntrain_2.jpg 8 | list_patition_label.txt:3: unknown expression label `8`",
        "train_1.jpg 0 | list_patition_label.txt:1: | `0`",
        "train_1.jpg happy | list_patition_label.txt:1: | `happy`",
        "train_1.jpg 1\nval_2.jpg 4 | list_patition_label.txt:2: field `image` | `val_2.jpg`",
    ];
    cases(Format::Rafdb, rafdb, &specs);
    // Missing aligned faces, missing list file.
    let dir = tmp();
    let p = dir.path();
    write(p, "EmoLabel/list_patition_label.txt", "train_00001.jpg 1\n");
    err(Format::Rafdb, p, &DROP, "missing Image/aligned/");
    let dir = tmp();
    let e = err(Format::Rafdb, dir.path(), &DROP, "list_patition_label.txt");
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
}

// ------------------------------------------------------------ AffectNet

const AFFECTNET_HEADER: &str = "subDirectory_filePath,face_x,face_y,face_width,face_height,\
                                facial_landmarks,expression,valence,arousal\n";

fn affectnet(root: &Path, file: &str, rows: &[&str]) {
    write(root, file, &csv(AFFECTNET_HEADER, rows));
}

const AFFECTNET_TRAIN: [&str; 7] = [
    "1/a.jpg,2,3,10,12,\"1.0;2.0;3.0;4.0\",1,0.5,0.2", // line 2: happy
    "1/b.jpg,0,0,8,8,,0,0,0",                          // line 3: neutral
    "1/c.jpg,0,0,8,8,,7,0,0",                          // line 4: contempt
    "1/d.jpg,0,0,8,8,,8,-2,-2",                        // line 5: none
    "1/e.jpg,0,0,8,8,,9,-2,-2",                        // line 6: uncertain
    "1/f.jpg,0,0,8,8,,10,-2,-2",                       // line 7: no face
    "2/g.jpg,4,4,8,8,,6,-0.5,0.7",                     // line 8: anger
];

#[test]
fn affectnet_maps_ids_crops_and_drops() {
    let dir = tmp();
    let p = dir.path();
    affectnet(p, "training.csv", &AFFECTNET_TRAIN);
    let val = ["3/h.jpg,1,1,4,4,,3,0,0", "3/i.jpg,1,1,4,4,,5,0,0"];
    affectnet(p, "validation.csv", &val);
    std::fs::create_dir_all(p.join("Manually_Annotated_Images")).unwrap();
    let d = read(Format::Affectnet, p, &DROP);
    assert_eq!(splits(&d), [3, 2, 0]);
    assert_eq!(classes(&d.train), [Happy, Neutral, Angry]);
    assert_eq!(classes(&d.val), [Surprise, Disgust]);
    let (path, crop) = file_of(&find(&d, "affectnet:1/a.jpg").image);
    assert_eq!(path, p.join("Manually_Annotated_Images/1/a.jpg"));
    let b: FaceBox = crop.expect("AffectNet samples carry their face box");
    assert_eq!((b.x, b.y, b.width, b.height), (2, 3, 10, 12));
    assert_eq!(dropped(&d, "label contempt"), 1);
    assert_eq!(dropped(&d, "AffectNet none/uncertain/no-face"), 3);
    assert_eq!(d.dropped.total(), 4);

    // Contempt refused (line 4); ids 8-10 are dropped under either policy.
    let e = err(Format::Affectnet, p, &REFUSE, "training.csv:4: | `7`");
    assert!(matches!(e, DataError::OutsideLabel { line: 4, .. }), "{e:?}");
    let t = AFFECTNET_TRAIN;
    affectnet(p, "training.csv", &[t[0], t[3], t[5]]);
    let d = read(Format::Affectnet, p, &REFUSE);
    assert_eq!(splits(&d), [1, 2, 0]);
    assert_eq!(dropped(&d, "AffectNet none/uncertain/no-face"), 2);

    // Without Manually_Annotated_Images/, paths are relative to the root; one file suffices.
    let dir = tmp();
    affectnet(dir.path(), "validation.csv", &[val[0]]);
    let d = read(Format::Affectnet, dir.path(), &DROP);
    assert_eq!(splits(&d), [0, 1, 0]);
    assert_eq!(file_of(&d.val[0].image).0, dir.path().join("3/h.jpg"));
}

/// training.csv with `bad` between two good rows (so at line 3).
fn affectnet_bad_row(p: &Path, bad: &str) {
    let ok = AFFECTNET_TRAIN[1];
    affectnet(p, "training.csv", &[ok, bad, ok]);
}

#[test]
fn affectnet_errors_name_file_line_and_field() {
    let specs = [
        "1/x.jpg,abc,0,8,8,,1,0,0 | training.csv:3: field `face_x` | `abc`",
        "1/x.jpg,0,0,8,-8,,1,0,0 | training.csv:3: field `face_height` | `-8`",
        "1/x.jpg,0,0,0,8,,1,0,0 | training.csv:3: field `face_width` | empty face box",
        "1/x.jpg,0,0,8,0,,1,0,0 | training.csv:3: field `face_height` | empty face box",
        "1/x.jpg,0,0,8,8,,11,0,0 | training.csv:3: unknown expression label `11`",
        "1/x.jpg,0,0,8,8,,happy,0,0 | training.csv:3: field `expression` | `happy`",
        "1/x.jpg,0,0 | training.csv:3: field `expression` | missing",
    ];
    let errs = cases(Format::Affectnet, affectnet_bad_row, &specs);
    let e = &errs[0];
    let ok = matches!(e, DataError::Field { line: 3, field, .. } if field == "face_x");
    assert!(ok, "{e:?}");
    // A missing column; no CSV at all.
    let dir = tmp();
    let p = dir.path();
    let header = AFFECTNET_HEADER.replace(",expression", "");
    let body = csv(&header, &["1/b.jpg,0,0,8,8,,0,0"]);
    write(p, "validation.csv", &body);
    let parts = "validation.csv:1: field `expression` | missing column";
    err(Format::Affectnet, p, &DROP, parts);
    std::fs::remove_file(p.join("validation.csv")).unwrap();
    err(Format::Affectnet, p, &DROP, "training.csv | validation.csv");
}

// ------------------------------------------------------------ decoding

fn assert_gray_rgb(img: &image::RgbImage) {
    assert_eq!(img.dimensions(), (8, 8));
    for p in img.pixels() {
        assert!(p[0] == p[1] && p[1] == p[2], "channels differ: {p:?}");
    }
}

#[test]
fn decode_gray_inputs_to_equal_rgb_channels() {
    let dir = tmp();
    let p = dir.path();
    // A gradient PNG in an ImageFolder.
    let grad = GrayImage::from_fn(5, 3, |x, y| Luma([(x * 40 + y * 10) as u8]));
    save(p, "train/happy/grad.png", grad);
    let d = read(Format::ImageFolder, p, &DROP);
    let img = load_rgb(&d.train[0].image, 8).unwrap();
    assert_gray_rgb(&img);
    let first = img.get_pixel(0, 0)[0];
    assert!(img.pixels().any(|px| px[0] != first), "gradient lost");
    // In-memory FER2013 pixels.
    fer_csv(p, "3,0 64 128 255,Training");
    let d = read(Format::Fer2013Csv, p, &DROP);
    let img = load_rgb(&d.train[0].image, 8).unwrap();
    assert_gray_rgb(&img);
    let (dark, light) = (img.get_pixel(0, 0)[0], img.get_pixel(7, 7)[0]);
    assert!(dark < 64 && light > 128, "{img:?}");
}

#[test]
fn decode_applies_affectnet_crop() {
    let dir = tmp();
    let p = dir.path();
    // Left half 0, right half 200: both boxes hold only right-half pixels; the second runs
    // past the image border and is clamped.
    let face = GrayImage::from_fn(16, 16, |x, _| Luma([if x < 8 { 0 } else { 200 }]));
    save(p, "1/face.png", face);
    let rows = "1/face.png,8,0,8,16,,1,0,0\n1/face.png,12,12,100,100,,1,0,0";
    affectnet(p, "training.csv", &[rows]);
    let d = read(Format::Affectnet, p, &DROP);
    for s in &d.train {
        let img = load_rgb(&s.image, 8).unwrap();
        assert_gray_rgb(&img);
        assert!(img.pixels().all(|px| px[0].abs_diff(200) <= 1), "{img:?}");
    }
}

#[test]
fn decode_all_reports_corrupt_and_missing_images() {
    let dir = tmp();
    let p = dir.path();
    png(p, "train/happy/a.png", 50);
    write(p, "train/happy/b.png", "this is not a png at all");
    png(p, "train/sad/c.png", 150);
    let d = read(Format::ImageFolder, p, &DROP);
    assert_eq!(splits(&d), [3, 0, 0]);
    let out = decode_all(d.train.iter().map(|s| (s.id.as_str(), &s.image)), 8);
    assert_eq!(out.kept, [0, 2]);
    assert_eq!(out.images.len(), 2);
    assert!(out.images[1].pixels().all(|px| px[0].abs_diff(150) <= 1));
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].0, "train/happy/b.png");
    assert_contains(&out.failed[0].1, "b.png: cannot decode image");
    assert!(load_rgb(&d.train[1].image, 8).is_err());

    // RAF-DB does not check files at read time: a missing face shows up here.
    rafdb(p, "train_00001.jpg 4\n");
    let d = read(Format::Rafdb, p, &DROP);
    let out = decode_all(d.train.iter().map(|s| (s.id.as_str(), &s.image)), 8);
    assert!(out.images.is_empty());
    assert_eq!(out.failed.len(), 1);
    assert_contains(&out.failed[0].1, "train_00001_aligned.jpg");
}
