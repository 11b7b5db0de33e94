//! `sitfer run`'s option handling: board profiles, defaults and the preview's address.

use super::*;
use clap::Parser;
use sitfer_runtime::bundle::Precision;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn args(cli: &[&str]) -> RunArgs {
    Cli::parse_from(std::iter::once("sitfer").chain(cli.iter().copied())).run
}

#[test]
fn a_board_sets_detector_and_interval_unless_the_flags_do() {
    let mut b = sitfer_runtime::board::load("x86_64-dev").unwrap();
    b.inference.detector = "mtcnn".into();
    b.inference.detection_interval = 7;
    let mut a = args(&["--board", "x86_64-dev"]);
    apply_board_inference(&mut a, &b);
    assert_eq!(a.model.detector_spec(), DetectorSpec::Mtcnn);
    assert_eq!(a.detect_every, Some(7));
    assert_eq!(a.model.precision, b.precision());
    b.inference.precision = Some("fp16".into());
    let mut a = args(&["--board", "x86_64-dev"]);
    apply_board_inference(&mut a, &b);
    assert_eq!(a.model.precision, Some(Precision::Fp16));
    let mut a = args(&["--board", "x86_64-dev", "--precision", "int8"]);
    apply_board_inference(&mut a, &b);
    assert_eq!(a.model.precision, Some(Precision::Int8), "the flag wins");
    let mut a = args(&[
        "--board",
        "x86_64-dev",
        "--detector",
        "blazeface",
        "--detect-every",
        "2",
    ]);
    apply_board_inference(&mut a, &b);
    assert_eq!(a.model.detector_spec(), DetectorSpec::BlazeFaceShort);
    assert_eq!(a.detect_every, Some(2));
    // No board: YuNet every 5th frame; flags still win.
    let mut a = args(&[]);
    apply_run_defaults(&mut a);
    assert_eq!(
        (a.model.detector_spec(), a.detect_every),
        (DetectorSpec::yunet(), Some(RUN_DETECT_EVERY))
    );
    let mut a = args(&["--detector", "rustface", "--detect-every", "1"]);
    apply_run_defaults(&mut a);
    assert_eq!(
        (a.model.detector_spec(), a.detect_every),
        (DetectorSpec::Rustface, Some(1))
    );
}

#[test]
fn the_preview_listens_where_the_flag_says() {
    let a = args(&[
        "--preview",
        "0",
        "--preview-bind",
        "127.0.0.2",
        "--preview-max-viewers",
        "2",
    ]);
    let Some(Screen::Preview(p)) = screen(&a, None).unwrap() else {
        panic!("no preview");
    };
    assert_eq!(p.local_addr().ip(), std::net::IpAddr::from([127, 0, 0, 2]));
    // Loopback unless asked.
    let Some(Screen::Preview(p)) = screen(&args(&["--preview", "0"]), None).unwrap() else {
        panic!("no preview");
    };
    assert_eq!(p.local_addr().ip(), std::net::IpAddr::from([127, 0, 0, 1]));
}
