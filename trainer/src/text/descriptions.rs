//! Textual descriptions of the seven expressions: prompt templates around each expression's name
//! plus short descriptions of its facial actions (after the FACS action units of Ekman's basic
//! emotions). Their embeddings, averaged per class, are the text prototypes.

use sitfer_contract::labels::{ALL, Expression};

/// Prompt templates; `{}` is replaced by each of the class's names.
pub const TEMPLATES: &[&str] = &[
    "a face image of {}",
    "a photo of a {} face",
    "a close-up photo of a person looking {}",
    "the facial expression of {}",
];

/// Names an expression goes by in the templates (adjective forms read naturally there).
pub fn names(e: Expression) -> &'static [&'static str] {
    match e {
        Expression::Surprise => &["surprise", "surprised"],
        Expression::Fear => &["fear", "fearful", "scared"],
        Expression::Disgust => &["disgust", "disgusted"],
        Expression::Happy => &["happiness", "happy"],
        Expression::Sad => &["sadness", "sad"],
        Expression::Angry => &["anger", "angry"],
        Expression::Neutral => &["a neutral expression", "calm and expressionless"],
    }
}

/// What the face does (action units), in plain words.
pub fn actions(e: Expression) -> &'static [&'static str] {
    match e {
        Expression::Surprise => &[
            "a face with raised eyebrows, wide open eyes and a dropped jaw",
            "a face with the mouth open in an O shape and the brows lifted high",
        ],
        Expression::Fear => &[
            "a face with raised and drawn together inner brows, wide eyes and lips stretched back",
            "a face with tense widened eyes and a mouth pulled horizontally in fright",
        ],
        Expression::Disgust => &[
            "a face with a wrinkled nose and a raised upper lip",
            "a face with the nose scrunched up and the mouth corners pulled down in revulsion",
        ],
        Expression::Happy => &[
            "a smiling face with raised cheeks and lip corners pulled up",
            "a face with a broad smile and crinkled eyes",
        ],
        Expression::Sad => &[
            "a face with raised inner brows, drooping eyelids and lip corners pulled down",
            "a face with a trembling downturned mouth and a sorrowful look",
        ],
        Expression::Angry => &[
            "a face with lowered drawn together brows, glaring eyes and tightly pressed lips",
            "a face with a furrowed brow, flared nostrils and clenched jaw",
        ],
        Expression::Neutral => &[
            "a relaxed face with no particular expression",
            "a face with relaxed brows, closed lips and a blank look",
        ],
    }
}

/// All descriptions of a class: every template with every name, then the action descriptions.
pub fn describe(e: Expression) -> Vec<String> {
    let mut out: Vec<String> = TEMPLATES
        .iter()
        .flat_map(|t| names(e).iter().map(move |n| t.replace("{}", n)))
        .collect();
    out.extend(actions(e).iter().map(|s| s.to_string()));
    out
}

/// Descriptions of every class in canonical order.
pub fn default_descriptions() -> Vec<Vec<String>> {
    ALL.iter().map(|&e| describe(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_templates_and_actions() {
        let d = default_descriptions();
        assert_eq!(d.len(), 7);
        for (e, texts) in ALL.iter().zip(&d) {
            assert_eq!(texts.len(), TEMPLATES.len() * names(*e).len() + actions(*e).len());
            assert!(texts.iter().all(|t| !t.contains("{}")), "{texts:?}");
        }
    }
}
