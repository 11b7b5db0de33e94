//! The trainer's readers and the runtime agree on the label set: every dataset id table maps onto
//! the runtime's canonical classes one-to-one, and a target's index is the runtime's index.

use sitfer_runtime::labels::{ALL, Expression, LabelMeaning, NUM_CLASSES, lookup_label_name};
use sitfer_trainer::data::Target;
use sitfer_trainer::data::affectnet::affectnet_meaning;
use sitfer_trainer::data::fer2013_csv::FER2013_IDS;
use sitfer_trainer::data::ferplus::VOTE_COLUMNS;
use sitfer_trainer::data::rafdb::RAFDB_IDS;
use std::collections::BTreeSet;

fn is_permutation(classes: &[Expression]) -> bool {
    classes.len() == NUM_CLASSES && classes.iter().collect::<BTreeSet<_>>().len() == NUM_CLASSES
}

#[test]
fn every_id_table_is_a_permutation_of_the_runtime_classes() {
    assert!(is_permutation(&FER2013_IDS));
    assert!(is_permutation(&RAFDB_IDS));
    // RAF-DB's ids are the canonical order shifted by one.
    assert_eq!(RAFDB_IDS, ALL);
    let affectnet: Vec<Expression> = (0..7)
        .map(|i| match affectnet_meaning(i) {
            Some(LabelMeaning::Class(e)) => e,
            other => panic!("AffectNet id {i}: {other:?}"),
        })
        .collect();
    assert!(is_permutation(&affectnet));
    assert!(
        matches!(affectnet_meaning(7), Some(LabelMeaning::OutsideSet(_))),
        "contempt is outside the set"
    );
    let ferplus: Vec<Expression> = VOTE_COLUMNS[..7]
        .iter()
        .map(|n| match lookup_label_name(n) {
            Some(LabelMeaning::Class(e)) => e,
            other => panic!("FER+ column {n}: {other:?}"),
        })
        .collect();
    assert!(is_permutation(&ferplus));
    for n in &VOTE_COLUMNS[7..] {
        assert!(matches!(lookup_label_name(n), Some(LabelMeaning::OutsideSet(_))), "{n}");
    }
}

#[test]
fn target_indices_are_runtime_indices() {
    for e in ALL {
        let d = Target::Hard(e).distribution();
        assert_eq!(d.iter().position(|&v| v == 1.0), Some(e.index()));
        assert_eq!(Target::Soft(d).class(), e);
    }
}
