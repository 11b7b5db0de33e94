//! The canonical expression label set shared by the trainer and the runtime.
//!
//! The order is the one of RAF-DB and of the SIT-FER reference code; every model output,
//! text prototype and instance buffer in sitfer is indexed by it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of expression classes in the canonical set.
pub const NUM_CLASSES: usize = 7;

/// One of the seven basic expressions, in canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expression {
    Surprise = 0,
    Fear = 1,
    Disgust = 2,
    Happy = 3,
    Sad = 4,
    Angry = 5,
    Neutral = 6,
}

/// All classes in canonical order (index `i` holds the class whose `index()` is `i`).
pub const ALL: [Expression; NUM_CLASSES] = [
    Expression::Surprise,
    Expression::Fear,
    Expression::Disgust,
    Expression::Happy,
    Expression::Sad,
    Expression::Angry,
    Expression::Neutral,
];

/// What a dataset's label name means in the canonical set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMeaning {
    /// A class of the canonical set.
    Class(Expression),
    /// A known label that the canonical set does not have (contempt, FER+ unknown, not-a-face…).
    /// Readers drop or refuse these according to an explicit policy; they are never renamed.
    OutsideSet(OutsideLabel),
}

/// Known labels that are not part of the 7-class set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutsideLabel {
    Contempt,
    Unknown,
    NotAFace,
    Uncertain,
    NoFace,
}

impl OutsideLabel {
    pub fn name(self) -> &'static str {
        match self {
            OutsideLabel::Contempt => "contempt",
            OutsideLabel::Unknown => "unknown",
            OutsideLabel::NotAFace => "not-a-face",
            OutsideLabel::Uncertain => "uncertain",
            OutsideLabel::NoFace => "no-face",
        }
    }
}

impl Expression {
    /// Position in the canonical order.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Expression> {
        ALL.get(i).copied()
    }

    /// Canonical lowercase name (`surprise`, `fear`, …).
    pub fn name(self) -> &'static str {
        match self {
            Expression::Surprise => "surprise",
            Expression::Fear => "fear",
            Expression::Disgust => "disgust",
            Expression::Happy => "happy",
            Expression::Sad => "sad",
            Expression::Angry => "angry",
            Expression::Neutral => "neutral",
        }
    }

    /// Canonical names in canonical order.
    pub fn names() -> [&'static str; NUM_CLASSES] {
        ALL.map(Expression::name)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The explicit table from the label names that FER datasets use to their meaning.
///
/// Matching ignores case, surrounding whitespace, and `_`/`-`/space differences.
/// Returns `None` for a name the table does not know: callers turn that into an error that
/// names the file and line.
pub fn lookup_label_name(name: &str) -> Option<LabelMeaning> {
    let key: String = name
        .trim()
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    use Expression::*;
    use LabelMeaning::{Class, OutsideSet};
    let meaning = match key.as_str() {
        "surprise" | "surprised" | "surprize" => Class(Surprise),
        "fear" | "fearful" | "afraid" | "scared" => Class(Fear),
        "disgust" | "disgusted" => Class(Disgust),
        "happy" | "happiness" | "happily" | "joy" => Class(Happy),
        "sad" | "sadness" => Class(Sad),
        "angry" | "anger" => Class(Angry),
        "neutral" | "calm" => Class(Neutral),
        "contempt" | "contemptuous" => OutsideSet(OutsideLabel::Contempt),
        "unknown" => OutsideSet(OutsideLabel::Unknown),
        "nf" | "notaface" | "notface" => OutsideSet(OutsideLabel::NotAFace),
        "uncertain" => OutsideSet(OutsideLabel::Uncertain),
        "noface" | "none" => OutsideSet(OutsideLabel::NoFace),
        _ => return None,
    };
    Some(meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_is_rafdb_order() {
        assert_eq!(
            Expression::names(),
            ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
        );
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(Expression::from_index(i), Some(*e));
        }
        assert_eq!(Expression::from_index(7), None);
    }

    #[test]
    fn aliases_map_through_the_table() {
        assert_eq!(lookup_label_name("Anger"), Some(LabelMeaning::Class(Expression::Angry)));
        assert_eq!(
            lookup_label_name(" happiness "),
            Some(LabelMeaning::Class(Expression::Happy))
        );
        assert_eq!(lookup_label_name("SADNESS"), Some(LabelMeaning::Class(Expression::Sad)));
        assert_eq!(
            lookup_label_name("contempt"),
            Some(LabelMeaning::OutsideSet(OutsideLabel::Contempt))
        );
        assert_eq!(lookup_label_name("joyful-ish"), None);
    }

    #[test]
    fn serde_uses_canonical_names() {
        let s = serde_json::to_string(&Expression::Happy).unwrap();
        assert_eq!(s, "\"happy\"");
    }
}
