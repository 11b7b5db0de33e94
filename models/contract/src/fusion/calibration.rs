//! Calibration of the fusion's sources on labeled faces: a temperature per source fitted by
//! negative log-likelihood, and the confidence threshold that reaches a target precision.
//!
//! The three sources of p̂ come on different scales (logits; cosines / τ_t; aggregated cosines /
//! τ_i): averaged raw, the sharpest one decides and the mean's confidence means little. Fitted
//! temperatures put each source's confidence on the scale of its accuracy before averaging
//! (temperature scaling, Guo et al. 2017), and a threshold read off the same labeled faces turns
//! "admit a pseudo-label" into a precision target. Written once, for the trainer's semi-supervised
//! step and for export (the manifest's temperatures).

use crate::labels::NUM_CLASSES;

/// Mean negative log-likelihood of `labels` under softmax(scores / t).
pub fn nll(scores: &[[f32; NUM_CLASSES]], labels: &[usize], t: f64) -> f64 {
    assert_eq!(scores.len(), labels.len(), "calibration: one label per row");
    let mut total = 0f64;
    for (s, &y) in scores.iter().zip(labels) {
        let z: Vec<f64> = s.iter().map(|&v| v as f64 / t).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - z[y];
    }
    total / scores.len().max(1) as f64
}

/// The temperature in `[lo, hi]` that minimises [`nll`], by golden-section search on log t (the
/// NLL of temperature scaling is unimodal in t). `None` without rows.
pub fn fit_temperature(scores: &[[f32; NUM_CLASSES]], labels: &[usize], lo: f64, hi: f64) -> Option<f64> {
    if scores.is_empty() || !(lo > 0.0 && hi > lo) {
        return None;
    }
    let f = |u: f64| nll(scores, labels, u.exp());
    let (mut a, mut b) = (lo.ln(), hi.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    Some(((a + b) / 2.0).exp())
}

/// The smallest threshold at which the predictions with confidence ≥ threshold are right at
/// least `target` of the time, among the observed confidences, clamped to `[floor, ceil]`.
/// `conf[i]` is prediction i's confidence and `correct[i]` whether it was right. `None` when no
/// threshold in range reaches the target.
pub fn precision_threshold(conf: &[f32], correct: &[bool], target: f64, floor: f64, ceil: f64) -> Option<f64> {
    assert_eq!(conf.len(), correct.len(), "calibration: one outcome per confidence");
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
    // Walk from the most confident down; the running precision at each prefix is the precision
    // of "admit everything at or above this confidence".
    let (mut right, mut best) = (0usize, None);
    for (k, &i) in order.iter().enumerate() {
        right += correct[i] as usize;
        let c = conf[i] as f64;
        let next_differs = order.get(k + 1).is_none_or(|&j| conf[j] < conf[i]);
        if next_differs && c <= ceil && right as f64 / (k + 1) as f64 >= target {
            best = Some(c.max(floor));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose true class gets score `margin` and the rest 0, right `p` of the time.
    fn rows(n: usize, margin: f32, p: f64) -> (Vec<[f32; NUM_CLASSES]>, Vec<usize>) {
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let y = i % NUM_CLASSES;
            let right = (i as f64 + 0.5) / n as f64 <= p;
            let hot = if right { y } else { (y + 1) % NUM_CLASSES };
            let mut s = [0f32; NUM_CLASSES];
            s[hot] = margin;
            scores.push(s);
            labels.push(y);
        }
        (scores, labels)
    }

    #[test]
    fn fitted_temperature_makes_confidence_match_accuracy() {
        // Scores of margin 10 that are right 70 % of the time: far too sharp at t = 1.
        let (s, y) = rows(700, 10.0, 0.7);
        let t = fit_temperature(&s, &y, 0.01, 100.0).unwrap();
        // At the optimum the hot class's probability equals the accuracy.
        let p = 1.0 / (1.0 + 6.0 * (-10.0 / t).exp());
        assert!((p - 0.7).abs() < 0.01, "t {t}: confidence {p}");
        assert!(nll(&s, &y, t) < nll(&s, &y, 1.0));
        assert!(nll(&s, &y, t) <= nll(&s, &y, t * 1.1) && nll(&s, &y, t) <= nll(&s, &y, t / 1.1));
    }

    #[test]
    fn fitted_temperature_sharpens_a_flat_but_accurate_source() {
        let (s, y) = rows(700, 0.1, 0.95);
        let t = fit_temperature(&s, &y, 0.001, 100.0).unwrap();
        assert!(t < 0.1, "a flat, mostly right source is sharpened: t {t}");
    }

    #[test]
    fn no_rows_no_temperature() {
        assert_eq!(fit_temperature(&[], &[], 0.1, 10.0), None);
    }

    #[test]
    fn threshold_reaches_the_target_precision() {
        // Confidences 0.95..0.05; the top half is right, then every other one.
        let conf: Vec<f32> = (0..10).map(|i| 0.95 - 0.1 * i as f32).collect();
        let correct = [true, true, true, true, true, false, true, false, false, false];
        // ≥ 0.9 precision: the top 5 (1.0) and the top 7 (6/7 = 0.857 fails) → 0.55.
        let t = precision_threshold(&conf, &correct, 0.9, 0.0, 1.0).unwrap();
        assert!((t - 0.55).abs() < 1e-6, "{t}");
        // 0.8: the top 7 (0.857) passes → 0.35.
        let t = precision_threshold(&conf, &correct, 0.8, 0.0, 1.0).unwrap();
        assert!((t - 0.35).abs() < 1e-6, "{t}");
        // The floor and the ceiling bound it.
        assert_eq!(precision_threshold(&conf, &correct, 0.8, 0.5, 1.0), Some(0.5));
        assert_eq!(precision_threshold(&conf, &correct, 0.9, 0.0, 0.5), None);
        // Nothing is right: no threshold.
        assert_eq!(precision_threshold(&conf, &[false; 10], 0.5, 0.0, 1.0), None);
    }

    #[test]
    fn tied_confidences_are_admitted_together() {
        let conf = [0.9f32, 0.9, 0.9, 0.5];
        let correct = [true, true, false, true];
        // Admitting at 0.9 takes all three tied faces (2/3), never only the first two (1.0).
        assert_eq!(precision_threshold(&conf, &correct, 0.9, 0.0, 1.0), None);
        assert_eq!(precision_threshold(&conf, &correct, 0.6, 0.0, 1.0), Some(0.5));
        assert_eq!(precision_threshold(&conf, &correct, 0.8, 0.0, 1.0), None);
    }
}
