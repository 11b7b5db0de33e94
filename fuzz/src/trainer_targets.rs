//! Fuzz targets of the trainer's dataset label-file readers: FER2013 CSV, FER+ votes, RAF-DB's
//! label list and AffectNet's CSV. The input is written as the label file of a dataset root whose
//! other files are fixed, then read with both outside-label policies and both target kinds.

use sitfer_trainer::data::decode::load_rgb;
use sitfer_trainer::data::{Dataset, Format, ImageRef, OutsidePolicy, ReadOptions, Target, read_dataset};
use std::path::{Path, PathBuf};

/// Every trainer target by name.
pub const TARGETS: &[crate::runtime_targets::Target] = &[
    ("fer2013_csv", fer2013_csv),
    ("ferplus", ferplus),
    ("rafdb", rafdb),
    ("affectnet", affectnet),
];

/// The pixels FER+ votes are paired with (by row): three 2x2 faces.
pub const FERPLUS_PIXELS: &str =
    "emotion,pixels,Usage\n0,0 1 2 3,Training\n3,4 5 6 7,PublicTest\n6,8 9 10 11,PrivateTest\n";

struct Roots {
    _tmp: tempfile::TempDir,
    fer2013: PathBuf,
    ferplus: PathBuf,
    rafdb: PathBuf,
    affectnet: PathBuf,
}

thread_local! {
    static ROOTS: Roots = {
        let tmp = tempfile::tempdir().expect("scratch directory");
        let dir = |name: &str| {
            let p = tmp.path().join(name);
            std::fs::create_dir_all(&p).expect("scratch dir");
            p
        };
        let (fer2013, ferplus, rafdb, affectnet) = (dir("fer2013"), dir("ferplus"), dir("rafdb"), dir("affectnet"));
        std::fs::write(ferplus.join("fer2013.csv"), FERPLUS_PIXELS).expect("pixels");
        std::fs::create_dir_all(rafdb.join("EmoLabel")).expect("rafdb labels dir");
        std::fs::create_dir_all(rafdb.join("Image/aligned")).expect("rafdb images dir");
        Roots { _tmp: tmp, fer2013, ferplus, rafdb, affectnet }
    };
}

const OPTIONS: [ReadOptions; 2] = [
    ReadOptions {
        outside: OutsidePolicy::Drop,
        soft_labels: false,
    },
    ReadOptions {
        outside: OutsidePolicy::Refuse,
        soft_labels: true,
    },
];

/// Reads `root` as `format` and checks what a reader promises of whatever it accepts: soft
/// targets are distributions, in-memory faces decode.
fn read(format: Format, root: &Path) {
    for opts in &OPTIONS {
        if let Ok(d) = read_dataset(format, root, opts) {
            check(&d);
        }
    }
}

fn check(d: &Dataset) {
    for s in d.train.iter().chain(&d.val).chain(&d.test) {
        if let Target::Soft(p) = &s.target {
            let sum: f32 = p.iter().sum();
            assert!(
                p.iter().all(|x| x.is_finite() && *x >= 0.0) && (sum - 1.0).abs() < 1e-3,
                "{}: soft target {p:?} is not a distribution",
                s.id
            );
        }
    }
    for s in d.train.iter().chain(&d.val).chain(&d.test).take(4) {
        if matches!(s.image, ImageRef::Gray { .. }) {
            load_rgb(&s.image, 8).expect("a face the reader accepted decodes");
        }
    }
}

pub fn fer2013_csv(data: &[u8]) {
    ROOTS.with(|r| {
        std::fs::write(r.fer2013.join("fer2013.csv"), data).expect("scratch write");
        read(Format::Fer2013Csv, &r.fer2013);
    });
}

pub fn ferplus(data: &[u8]) {
    ROOTS.with(|r| {
        std::fs::write(r.ferplus.join("fer2013new.csv"), data).expect("scratch write");
        read(Format::Ferplus, &r.ferplus);
    });
}

pub fn rafdb(data: &[u8]) {
    ROOTS.with(|r| {
        std::fs::write(r.rafdb.join("EmoLabel/list_patition_label.txt"), data).expect("scratch write");
        read(Format::Rafdb, &r.rafdb);
    });
}

pub fn affectnet(data: &[u8]) {
    ROOTS.with(|r| {
        std::fs::write(r.affectnet.join("training.csv"), data).expect("scratch write");
        read(Format::Affectnet, &r.affectnet);
    });
}
