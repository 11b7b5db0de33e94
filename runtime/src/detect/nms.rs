//! Greedy non-maximum suppression, plain and weighted.

use super::{BBox, Detection};

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

/// Weighted NMS (MediaPipe's `WEIGHTED` overlap mode for BlazeFace): the best remaining detection
/// and every one overlapping it by more than `iou_threshold` form a cluster, replaced by one box
/// whose corners are the score-weighted mean of the cluster's; it keeps the best score. Dense
/// anchors fire several times on one face, and averaging them steadies the box between frames.
pub fn weighted_nms(mut dets: Vec<Detection>, iou_threshold: f32, max: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    while !dets.is_empty() && kept.len() < max {
        let best = dets[0].bbox;
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) = dets
            .into_iter()
            .partition(|d| d.bbox.iou(&best) > iou_threshold || d.bbox == best);
        dets = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mean = |f: fn(&BBox) -> f32| cluster.iter().map(|d| f(&d.bbox) * d.score).sum::<f32>() / total;
        // Landmarks are blended like the box (MediaPipe blends its keypoints the same way).
        let landmarks = cluster
            .iter()
            .map(|d| d.landmarks)
            .collect::<Option<Vec<_>>>()
            .map(|all| {
                std::array::from_fn(|k| {
                    std::array::from_fn(|c| {
                        all.iter().zip(&cluster).map(|(l, d)| l[k][c] * d.score).sum::<f32>() / total
                    })
                })
            });
        kept.push(Detection {
            bbox: BBox::new(mean(|b| b.x1), mean(|b| b.y1), mean(|b| b.x2), mean(|b| b.y2)),
            score: cluster[0].score,
            landmarks,
        });
    }
    kept
}

/// Greedy NMS over parallel `boxes` and `scores` for callers that carry more per box than a
/// [`Detection`] (MTCNN's regressions between its stages), with the overlap measure given
/// (`BBox::iou` as in [`nms`], or MTCNN's intersection over the smaller box): the indices kept,
/// best score first (equal scores: the earlier index first); a box is dropped when its overlap
/// with a kept one exceeds `threshold`.
pub fn nms_indices(
    boxes: &[BBox],
    scores: &[f32],
    threshold: f32,
    overlap: impl Fn(&BBox, &BBox) -> f32,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&k| overlap(&boxes[k], &boxes[i]) <= threshold) {
            kept.push(i);
        }
    }
    kept
}
