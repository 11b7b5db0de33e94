//! Greedy non-maximum suppression.

use super::Detection;

/// Keeps the best-scoring detections, dropping any whose IoU with a kept one exceeds
/// `iou_threshold`; at most `max` are returned, best first.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32, max: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.len() >= max {
            break;
        }
        if kept.iter().all(|k| k.bbox.iou(&d.bbox) <= iou_threshold) {
            kept.push(d);
        }
    }
    kept
}
