//! Turns the detector's raw output into boxes: YOLOX grid decode and class-aware NMS.
//!
//! Every kept box carries its full class-probability vector, because the uncertainty scores need
//! more than the winning class. The probabilities live in one flat pool reused from frame to frame.

use crate::detect::preprocess::Letterbox;

/// One detected object, in source-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class_id: u16,
    /// objectness × class probability of the winning class.
    pub score: f32,
    pub objectness: f32,
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
}

/// The detections of one frame with their class-probability vectors.
#[derive(Debug, Clone, Default)]
pub struct Detections {
    items: Vec<Detection>,
    probs: Vec<f32>,
    num_classes: usize,
}

impl Detections {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self, num_classes: usize) {
        self.items.clear();
        self.probs.clear();
        self.num_classes = num_classes;
    }

    /// Makes room for `boxes` more detections, so pushing them does not allocate.
    pub fn reserve(&mut self, boxes: usize) {
        self.items.reserve(boxes);
        self.probs.reserve(boxes * self.num_classes);
    }

    pub fn push(&mut self, det: Detection, probs: &[f32]) {
        debug_assert_eq!(probs.len(), self.num_classes);
        self.items.push(det);
        self.probs.extend_from_slice(probs);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Detection] {
        &self.items
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Class probabilities of detection `i` (independent sigmoids for YOLOX, not a softmax).
    pub fn probs(&self, i: usize) -> &[f32] {
        &self.probs[i * self.num_classes..][..self.num_classes]
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Detection, &[f32])> {
        self.items
            .iter()
            .zip(self.probs.chunks_exact(self.num_classes.max(1)))
    }
}

/// Thresholds of the postprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostprocessOptions {
    /// Boxes scoring below this are dropped before NMS. Kept low on purpose: boxes just under the
    /// detection threshold are the uncertain ones the selection wants to see.
    pub min_score: f32,
    /// Same-class boxes overlapping a better one by more than this IoU are suppressed.
    pub nms_iou: f32,
    pub max_detections: usize,
}

impl Default for PostprocessOptions {
    fn default() -> Self {
        PostprocessOptions {
            min_score: 0.1,
            nms_iou: 0.45,
            max_detections: 100,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    anchor: u32,
    class_id: u16,
    score: f32,
    bbox: [f32; 4],
}

/// Decoder for YOLOX heads: `[x, y, w, h, obj, cls…]` per grid point, strides in order.
pub struct YoloxDecoder {
    /// (grid x, grid y, stride) of every anchor point, in output order.
    grid: Vec<(f32, f32, f32)>,
    num_classes: usize,
    options: PostprocessOptions,
    candidates: Vec<Candidate>,
    kept: Vec<Candidate>,
}

impl YoloxDecoder {
    pub fn new(
        input_width: u32,
        input_height: u32,
        strides: &[u32],
        num_classes: usize,
        options: PostprocessOptions,
    ) -> Self {
        let mut grid = Vec::new();
        for &s in strides {
            let (gw, gh) = (input_width / s, input_height / s);
            for gy in 0..gh {
                for gx in 0..gw {
                    grid.push((gx as f32, gy as f32, s as f32));
                }
            }
        }
        // At most one candidate per anchor and `max_detections` kept: sized once here, so no
        // frame allocates however many boxes it has.
        let kept = options.max_detections.min(grid.len());
        YoloxDecoder {
            candidates: Vec::with_capacity(grid.len()),
            kept: Vec::with_capacity(kept),
            grid,
            num_classes,
            options,
        }
    }

    pub fn anchor_count(&self) -> usize {
        self.grid.len()
    }

    pub fn row_len(&self) -> usize {
        5 + self.num_classes
    }

    /// Decodes `raw` (anchors × (5 + classes), row-major) into `out`, boxes mapped by `letterbox`.
    pub fn decode(&mut self, raw: &[f32], letterbox: &Letterbox, out: &mut Detections) {
        let row_len = self.row_len();
        debug_assert_eq!(raw.len(), self.grid.len() * row_len);
        self.candidates.clear();
        for (anchor, (row, &(gx, gy, s))) in raw.chunks_exact(row_len).zip(&self.grid).enumerate() {
            let obj = row[4];
            if obj < self.options.min_score {
                continue; // score = obj × cls ≤ obj: cannot pass.
            }
            let (class_id, cls) = argmax(&row[5..]);
            let score = obj * cls;
            if score < self.options.min_score {
                continue;
            }
            let cx = (row[0] + gx) * s;
            let cy = (row[1] + gy) * s;
            let w = row[2].exp() * s;
            let h = row[3].exp() * s;
            self.candidates.push(Candidate {
                anchor: anchor as u32,
                class_id: class_id as u16,
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            });
        }
        nms(
            &mut self.candidates,
            &mut self.kept,
            self.options.nms_iou,
            self.options.max_detections,
        );
        out.clear(self.num_classes);
        // The most a frame can have, reserved at the first frame rather than grown frame by
        // frame as busier scenes come.
        out.reserve(self.options.max_detections.min(self.grid.len()));
        for c in &self.kept {
            let row = &raw[c.anchor as usize * row_len..][..row_len];
            out.push(
                Detection {
                    class_id: c.class_id,
                    score: c.score,
                    objectness: row[4],
                    bbox: letterbox.to_frame(c.bbox),
                },
                &row[5..],
            );
        }
    }
}

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

/// Intersection over union of two x1,y1,x2,y2 boxes; 0 for empty boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy class-aware NMS: best score first, a box is dropped when a kept box of the same class
/// overlaps it by more than `iou_threshold`. Ties keep the earlier anchor, so output is stable.
fn nms(cands: &mut [Candidate], kept: &mut Vec<Candidate>, iou_threshold: f32, max: usize) {
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.anchor.cmp(&b.anchor)));
    kept.clear();
    for c in cands.iter() {
        if kept.len() >= max {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_letterbox() -> Letterbox {
        Letterbox::new(64, 64, 64, 64)
    }

    #[test]
    fn iou_hand_computed() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        // inter 50, union 150
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
    }

    /// A 64x64 input with one stride of 32: a 2x2 grid, 2 classes.
    fn decoder(min_score: f32) -> YoloxDecoder {
        YoloxDecoder::new(
            64,
            64,
            &[32],
            2,
            PostprocessOptions {
                min_score,
                nms_iou: 0.45,
                max_detections: 10,
            },
        )
    }

    #[test]
    fn grid_decode_hand_computed() {
        let mut d = decoder(0.1);
        assert_eq!(d.anchor_count(), 4);
        let mut raw = vec![0.0f32; 4 * 7];
        // Anchor 3 is grid (1, 1) at stride 32. raw xy 0.5 -> centre (1.5*32, 1.5*32) = (48, 48);
        // raw wh ln(0.5) -> 16 px; obj 0.8, classes [0.25, 0.5] -> class 1, score 0.4.
        raw[3 * 7..4 * 7].copy_from_slice(&[0.5, 0.5, 0.5f32.ln(), 0.5f32.ln(), 0.8, 0.25, 0.5]);
        let mut out = Detections::new();
        d.decode(&raw, &identity_letterbox(), &mut out);
        assert_eq!(out.len(), 1);
        let det = out.items()[0];
        assert_eq!(det.class_id, 1);
        assert!((det.score - 0.4).abs() < 1e-6);
        assert_eq!(det.objectness, 0.8);
        for (got, want) in det.bbox.iter().zip([40.0, 40.0, 56.0, 56.0]) {
            assert!((got - want).abs() < 1e-4, "{:?}", det.bbox);
        }
        assert_eq!(out.probs(0), &[0.25, 0.5]);
    }

    #[test]
    fn boxes_map_back_through_the_letterbox() {
        let mut d = decoder(0.1);
        let mut raw = vec![0.0f32; 4 * 7];
        raw[0..7].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.9, 0.0]);
        // A 128x64 frame into a 64x64 input: scale 0.5.
        let lb = Letterbox::new(128, 64, 64, 64);
        let mut out = Detections::new();
        d.decode(&raw, &lb, &mut out);
        // Model box: centre (16,16), 32x32 -> [0,0,32,32] -> frame [0,0,64,64].
        assert_eq!(out.items()[0].bbox, [0.0, 0.0, 64.0, 64.0]);
    }

    #[test]
    fn below_min_score_is_dropped() {
        let mut d = decoder(0.5);
        let mut raw = vec![0.0f32; 4 * 7];
        raw[0..7].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.5, 0.0]); // score 0.45
        let mut out = Detections::new();
        d.decode(&raw, &identity_letterbox(), &mut out);
        assert!(out.is_empty());
    }

    fn cand(anchor: u32, class_id: u16, score: f32, x: f32) -> Candidate {
        Candidate {
            anchor,
            class_id,
            score,
            bbox: [x, 0.0, x + 10.0, 10.0],
        }
    }

    #[test]
    fn nms_is_class_aware() {
        let mut cands = vec![
            cand(0, 0, 0.6, 1.0), // overlaps #1 (IoU 9/11 = 0.82), same class, lower: dropped
            cand(1, 0, 0.9, 0.0),
            cand(2, 1, 0.8, 0.0), // same place, other class: kept
            cand(3, 0, 0.7, 6.0), // IoU with #1 = 4/16 = 0.25: kept
        ];
        let mut kept = Vec::new();
        nms(&mut cands, &mut kept, 0.45, 10);
        let ids: Vec<u32> = kept.iter().map(|c| c.anchor).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn nms_caps_and_breaks_ties_by_anchor() {
        let mut cands = vec![
            cand(5, 0, 0.5, 0.0),
            cand(4, 0, 0.5, 100.0),
            cand(9, 0, 0.5, 200.0),
        ];
        let mut kept = Vec::new();
        nms(&mut cands, &mut kept, 0.45, 2);
        let ids: Vec<u32> = kept.iter().map(|c| c.anchor).collect();
        assert_eq!(ids, vec![4, 5]);
    }
}
