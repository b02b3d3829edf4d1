//! Uncertainty of a frame's detections: how unsure the detector is, per box and per frame.
//!
//! # Per box
//!
//! YOLOX gives each box an objectness `obj` and `C` class scores `s_1..s_C` that are independent
//! sigmoids: they do not sum to 1 and are not a distribution. Inputs are first sanitised: each
//! `s_i` is clamped to `[0, 1]` (NaN → 0), and so is the box score. Then:
//!
//! - **least confidence** `= 1 − score`, with `score = obj × s_top` (the detection's own score).
//!   The only measure that sees objectness, i.e. "is there an object at all".
//! - The class vector becomes a distribution by normalising it to sum 1: `p_i = s_i / Σ s`.
//!   - **margin** (reported as an uncertainty) `= 1 − (p_top1 − p_top2)`.
//!   - **entropy** `= −Σ p_i ln p_i / ln C` (terms with `p_i = 0` count 0), in `[0, 1]`.
//!   - **ratio** `= p_top2 / p_top1` (= `s_top2 / s_top1`: the only one independent of the
//!     normalisation).
//!
//!   Degenerate vectors: with no class mass (`Σ s` below `f32::MIN_POSITIVE`, including an empty
//!   vector) there is no class evidence at all and all three are 1 (maximally uncertain, no NaN).
//!   With a single class, margin, entropy and ratio are 0 (nothing to confuse it with).
//!
//! All four are uncertainties in `[0, 1]`: higher = less sure.
//!
//! **Near the threshold**: a box is `near_threshold` when `|score − threshold| ≤ band`. Its
//! `weight` peaks at 1 at the threshold and is 0 outside the band; inside, with `x = |score −
//! threshold| / band`: triangular `1 − x` (default), Gaussian `exp(−2x²)` (σ = band/2, cut at the
//! band edge) or flat `1`. A flat shape with `band = 1` weighs every box 1 (plain aggregation).
//!
//! # Per frame
//!
//! Each box contributes `v = weight × u`, `u` being the configured measure, so boxes at the
//! decision threshold dominate and boxes far from it contribute nothing. Over the frame's `n`
//! boxes: `max`, `mean = Σv / n`, `sum = Σv` and `top_k_mean` = mean of the `min(k, n)` largest
//! `v`. The frame `value` is the configured aggregation, `sum` squashed to `1 − exp(−sum)` so that
//! it lies in `[0, 1]` too. A frame without detections is not certain: its `value` is
//! `empty_frame_value` (its aggregates are 0, `empty` is set). An optional model score head (e.g.
//! a loss-prediction output, already mapped into `[0, 1]`) is blended in last:
//! `value = (1 − head_weight) × value + head_weight × head`.
//!
//! # Defaults
//!
//! Least confidence, sum, triangular band 0.15 around 0.3. Measured with the int8 YOLOX-nano on
//! the 75 labeled KITTI frames (490 person/car/truck/train boxes ≥ 0.1): a box's threshold
//! decision is wrong (false positive above 0.3, or a real object left below it) with AUC 0.64 for
//! the triangular-weighted least confidence, while the unweighted class measures are at chance
//! (margin 0.52, entropy 0.51, ratio 0.53): this detector's errors are objectness errors at the
//! threshold, not class confusions, and only least confidence (and the band weight) see
//! objectness. Per frame, Spearman correlation with the frame's FP + FN count: sum 0.59, top-3
//! mean 0.47, max 0.34, mean 0.06 (entropy/margin/ratio with sum: 0.41–0.43). `1 − exp(−sum)`
//! puts the median frame near 0.5, hence `empty_frame_value = 0.5`: an empty frame ranks as an
//! ordinary frame, neither certain nor alarming. 75 frames is a small sample: the ordering of
//! aggregations was clear, the differences between measures once weighted were small.

use crate::config::KeyError;
use crate::detect::postprocess::Detections;
use serde::{Deserialize, Serialize};

/// Which per-box uncertainty feeds the frame value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    LeastConfidence,
    Margin,
    Entropy,
    Ratio,
}

/// How the weighted box uncertainties of a frame become its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Max,
    Mean,
    /// Squashed to `1 − exp(−sum)` for the frame value.
    Sum,
    TopKMean,
}

/// Shape of the box weight inside the band around the threshold (0 outside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BandShape {
    /// `1 − |score − threshold| / band`.
    Triangular,
    /// `exp(−2 (|score − threshold| / band)²)`: σ = band / 2, cut at the band edge.
    Gaussian,
    /// 1 everywhere inside the band.
    Flat,
}

/// The `[uncertainty]` section of the run configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UncertaintyConfig {
    pub measure: Measure,
    pub aggregation: Aggregation,
    /// k of `top_k_mean` (fewer boxes: the mean of all of them).
    pub top_k: usize,
    /// The detection threshold boxes are reported at.
    pub threshold: f32,
    /// Half-width of the "near the threshold" band, in score units.
    pub band: f32,
    pub band_shape: BandShape,
    /// Frame value of a frame without detections.
    pub empty_frame_value: f32,
    /// Weight of the model's score head in the frame value; 0 = unused.
    pub head_weight: f32,
}

impl Default for UncertaintyConfig {
    fn default() -> Self {
        UncertaintyConfig {
            measure: Measure::LeastConfidence,
            aggregation: Aggregation::Sum,
            top_k: 3,
            threshold: 0.3,
            band: 0.15,
            band_shape: BandShape::Triangular,
            empty_frame_value: 0.5,
            head_weight: 0.0,
        }
    }
}

impl UncertaintyConfig {
    /// Checks every value; the error starts with the offending key.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.top_k == 0 {
            return Err(KeyError::new("top_k", "must be at least 1"));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(KeyError::new(
                "threshold",
                format!("must be in (0, 1), got {}", self.threshold),
            ));
        }
        if !(self.band > 0.0 && self.band <= 1.0) {
            return Err(KeyError::new(
                "band",
                format!("must be in (0, 1], got {}", self.band),
            ));
        }
        if !(0.0..=1.0).contains(&self.empty_frame_value) {
            return Err(KeyError::new(
                "empty_frame_value",
                format!("must be in [0, 1], got {}", self.empty_frame_value),
            ));
        }
        if !(0.0..=1.0).contains(&self.head_weight) {
            return Err(KeyError::new(
                "head_weight",
                format!("must be in [0, 1], got {}", self.head_weight),
            ));
        }
        Ok(())
    }
}

/// The uncertainties of one box, each in `[0, 1]` (higher = less sure); see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxUncertainty {
    pub least_confidence: f32,
    /// `1 − (p_top1 − p_top2)` of the normalised class vector.
    pub margin: f32,
    pub entropy: f32,
    pub ratio: f32,
    pub near_threshold: bool,
    /// Aggregation weight: 1 at the threshold, 0 outside the band.
    pub weight: f32,
}

/// The uncertainty of one frame. Aggregates are over `weight × measure` of its boxes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameUncertainty {
    /// The configured aggregation (head blended in), in `[0, 1]`.
    pub value: f32,
    pub max: f32,
    pub mean: f32,
    /// Raw sum, not squashed.
    pub sum: f32,
    pub top_k_mean: f32,
    /// Boxes near the threshold.
    pub uncertain_boxes: u32,
    pub boxes: u32,
    /// No detections: `value` is `empty_frame_value`.
    pub empty: bool,
}

/// All uncertainties of one box from its class-probability vector and its score (obj × top
/// class).
pub fn box_uncertainty(probs: &[f32], score: f32, cfg: &UncertaintyConfig) -> BoxUncertainty {
    let score = unit(score);
    let c = class_stats(probs, true);
    let (near_threshold, weight) = band_weight(score, cfg);
    BoxUncertainty {
        least_confidence: 1.0 - score,
        margin: c.margin,
        entropy: c.entropy,
        ratio: c.ratio,
        near_threshold,
        weight,
    }
}

/// Scores frames; keeps its scratch between frames, so no allocation once warmed up.
#[derive(Debug, Clone)]
pub struct UncertaintyScorer {
    cfg: UncertaintyConfig,
    /// `weight × measure` of each box of the current frame.
    values: Vec<f32>,
}

impl UncertaintyScorer {
    /// Out-of-range values are tolerated (no panic, no NaN); `validate` the config to refuse them.
    pub fn new(cfg: UncertaintyConfig) -> Self {
        UncertaintyScorer {
            cfg,
            values: Vec::with_capacity(128),
        }
    }

    pub fn config(&self) -> &UncertaintyConfig {
        &self.cfg
    }

    /// The frame's uncertainty; `head` is the model's score-head output, if any, in `[0, 1]`.
    pub fn score(&mut self, dets: &Detections, head: Option<f32>) -> FrameUncertainty {
        self.values.clear();
        let mut uncertain = 0u32;
        if dets.num_classes() == 0 {
            for det in dets.items() {
                uncertain += self.add_box(&[], det.score) as u32;
            }
        } else {
            for (det, probs) in dets.iter() {
                uncertain += self.add_box(probs, det.score) as u32;
            }
        }
        let n = self.values.len();
        if n == 0 {
            return FrameUncertainty {
                value: self.blend(self.cfg.empty_frame_value, head),
                empty: true,
                ..FrameUncertainty::default()
            };
        }
        let (mut max, mut sum) = (0.0f32, 0.0f32);
        for &v in &self.values {
            max = max.max(v);
            sum += v;
        }
        let mean = sum / n as f32;
        let k = self.cfg.top_k.clamp(1, n);
        if k < n {
            self.values
                .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        }
        let top_k_mean = self.values[..k].iter().sum::<f32>() / k as f32;
        let value = match self.cfg.aggregation {
            Aggregation::Max => max,
            Aggregation::Mean => mean,
            Aggregation::Sum => 1.0 - (-sum).exp(),
            Aggregation::TopKMean => top_k_mean,
        };
        FrameUncertainty {
            value: self.blend(value, head),
            max,
            mean,
            sum,
            top_k_mean,
            uncertain_boxes: uncertain,
            boxes: n as u32,
            empty: false,
        }
    }

    /// Records the box's weighted measure; returns whether it is near the threshold.
    fn add_box(&mut self, probs: &[f32], score: f32) -> bool {
        let score = unit(score);
        let (near, weight) = band_weight(score, &self.cfg);
        let u = match self.cfg.measure {
            Measure::LeastConfidence => 1.0 - score,
            Measure::Margin => class_stats(probs, false).margin,
            Measure::Entropy => class_stats(probs, true).entropy,
            Measure::Ratio => class_stats(probs, false).ratio,
        };
        self.values.push(weight * u);
        near
    }

    fn blend(&self, value: f32, head: Option<f32>) -> f32 {
        let w = self.cfg.head_weight;
        let value = unit(value);
        match head {
            Some(h) if w > 0.0 && !h.is_nan() => {
                let w = w.min(1.0);
                (1.0 - w) * value + w * unit(h)
            }
            _ => value,
        }
    }
}

/// Clamps to `[0, 1]`, NaN to 0.
#[inline]
fn unit(x: f32) -> f32 {
    if x > 0.0 {
        x.min(1.0)
    } else {
        0.0
    }
}

struct ClassStats {
    margin: f32,
    entropy: f32,
    ratio: f32,
}

/// Margin, ratio and (if asked, else 0) entropy of the normalised class vector.
#[inline]
fn class_stats(probs: &[f32], with_entropy: bool) -> ClassStats {
    let (mut sum, mut top1, mut top2) = (0.0f32, 0.0f32, 0.0f32);
    for &s in probs {
        let s = unit(s);
        sum += s;
        if s > top1 {
            top2 = top1;
            top1 = s;
        } else if s > top2 {
            top2 = s;
        }
    }
    if sum < f32::MIN_POSITIVE {
        // No class evidence at all: maximally uncertain.
        return ClassStats {
            margin: 1.0,
            entropy: 1.0,
            ratio: 1.0,
        };
    }
    let inv = 1.0 / sum;
    let margin = unit(1.0 - (top1 - top2) * inv);
    let ratio = unit(top2 / top1); // top1 > 0 because sum > 0
    let entropy = if with_entropy && probs.len() > 1 {
        let mut h = 0.0f32;
        for &s in probs {
            let p = unit(s) * inv;
            if p > 0.0 {
                h -= p * p.ln();
            }
        }
        unit(h / (probs.len() as f32).ln())
    } else {
        0.0
    };
    ClassStats {
        margin,
        entropy,
        ratio,
    }
}

/// (near the threshold, weight) of a sanitised score.
#[inline]
fn band_weight(score: f32, cfg: &UncertaintyConfig) -> (bool, f32) {
    let d = (score - cfg.threshold).abs();
    if d <= cfg.band {
        let x = if cfg.band > 0.0 { d / cfg.band } else { 0.0 };
        let w = match cfg.band_shape {
            BandShape::Triangular => 1.0 - x,
            BandShape::Gaussian => (-2.0 * x * x).exp(),
            BandShape::Flat => 1.0,
        };
        (true, unit(w))
    } else {
        (false, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::postprocess::Detection;

    const EPS: f32 = 1e-5;

    fn close(got: f32, want: f32) {
        assert!((got - want).abs() < EPS, "got {got}, want {want}");
    }

    /// threshold 0.5, band 0.25: scores 0.25, 0.5, 0.625, 0.75 are exact in binary.
    fn cfg(measure: Measure, aggregation: Aggregation, shape: BandShape) -> UncertaintyConfig {
        UncertaintyConfig {
            measure,
            aggregation,
            top_k: 2,
            threshold: 0.5,
            band: 0.25,
            band_shape: shape,
            empty_frame_value: 0.5,
            head_weight: 0.0,
        }
    }

    /// Every box weighs 1: threshold 0.5, flat band 0.5 covers [0, 1].
    fn flat_all(measure: Measure, aggregation: Aggregation) -> UncertaintyConfig {
        UncertaintyConfig {
            band: 0.5,
            ..cfg(measure, aggregation, BandShape::Flat)
        }
    }

    // H([0.6, 0.3, 0.1]) = −(0.6 ln 0.6 + 0.3 ln 0.3 + 0.1 ln 0.1)
    //   = 0.6 × 0.5108256 + 0.3 × 1.2039728 + 0.1 × 2.3025851
    //   = 0.3064954 + 0.3611918 + 0.2302585 = 0.8979457; / ln 3 (1.0986123) = 0.8173454.
    const ENTROPY_631: f32 = 0.817_345_4;

    #[test]
    fn every_measure_hand_computed() {
        let c = UncertaintyConfig::default();
        let b = box_uncertainty(&[0.6, 0.3, 0.1], 0.42, &c);
        close(b.least_confidence, 0.58); // 1 − 0.42
        close(b.margin, 0.7); // 1 − (0.6 − 0.3)
        close(b.ratio, 0.5); // 0.3 / 0.6
        close(b.entropy, ENTROPY_631);
    }

    #[test]
    fn sigmoid_vectors_are_normalised() {
        let c = UncertaintyConfig::default();
        // Sum 0.5 → normalised [0.6, 0.3, 0.1]: same margin, entropy, ratio as above.
        let b = box_uncertainty(&[0.3, 0.15, 0.05], 0.2, &c);
        close(b.margin, 0.7);
        close(b.ratio, 0.5);
        close(b.entropy, ENTROPY_631);
        close(b.least_confidence, 0.8);
        // Two classes both at 0.9 (sum 1.8) → [0.5, 0.5]: margin 0 → uncertainty 1, ratio 1,
        // entropy ln 2 / ln 2 = 1.
        let b = box_uncertainty(&[0.9, 0.9], 0.81, &c);
        close(b.margin, 1.0);
        close(b.ratio, 1.0);
        close(b.entropy, 1.0);
        // [0.8, 0.2, 0.0, 0.0] sums to 1: margin 1 − 0.6 = 0.4, ratio 0.25,
        // entropy −(0.8 ln 0.8 + 0.2 ln 0.2) / ln 4 = (0.1785148 + 0.3218876) / 1.3862944.
        let b = box_uncertainty(&[0.8, 0.2, 0.0, 0.0], 0.5, &c);
        close(b.margin, 0.4);
        close(b.ratio, 0.25);
        close(b.entropy, 0.500_402_4 / 1.386_294_4);
    }

    #[test]
    fn certain_and_degenerate_vectors() {
        let c = UncertaintyConfig::default();
        let one_hot = box_uncertainty(&[0.0, 1.0, 0.0, 0.0], 1.0, &c);
        assert_eq!(
            (
                one_hot.least_confidence,
                one_hot.margin,
                one_hot.entropy,
                one_hot.ratio
            ),
            (0.0, 0.0, 0.0, 0.0)
        );
        // No class mass: maximally uncertain, never NaN.
        for probs in [&[0.0f32; 80][..], &[], &[f32::NAN, -1.0, 0.0]] {
            let b = box_uncertainty(probs, 0.0, &c);
            assert_eq!((b.margin, b.entropy, b.ratio), (1.0, 1.0, 1.0), "{probs:?}");
            assert_eq!(b.least_confidence, 1.0);
        }
        // One class: nothing to confuse it with.
        let b = box_uncertainty(&[0.7], 0.35, &c);
        assert_eq!((b.margin, b.entropy, b.ratio), (0.0, 0.0, 0.0));
        // Out-of-range inputs are clamped: NaN score → 0, 1.5 → 1, negative probs → 0.
        let b = box_uncertainty(&[1.5, -0.5, f32::NAN], f32::NAN, &c);
        assert_eq!(b.least_confidence, 1.0);
        assert_eq!((b.margin, b.entropy, b.ratio), (0.0, 0.0, 0.0));
        assert_eq!(box_uncertainty(&[1.0], 7.0, &c).least_confidence, 0.0);
        let b = box_uncertainty(&[1e-30, 1e-31], 1e-30, &c);
        assert!(b.margin.is_finite() && b.entropy.is_finite() && b.ratio.is_finite());
    }

    #[test]
    fn band_weight_at_inside_and_outside_the_band() {
        use BandShape::*;
        let w = |score: f32, shape| {
            let b = box_uncertainty(
                &[1.0],
                score,
                &cfg(Measure::Margin, Aggregation::Max, shape),
            );
            (b.near_threshold, b.weight)
        };
        for shape in [Triangular, Gaussian, Flat] {
            assert_eq!(
                w(0.5, shape),
                (true, 1.0),
                "{shape:?} peaks at the threshold"
            );
            assert_eq!(w(0.8, shape), (false, 0.0), "{shape:?} above the band");
            assert_eq!(w(0.2, shape), (false, 0.0), "{shape:?} below the band");
        }
        // Halfway (|0.625 − 0.5| / 0.25 = 0.5): triangular 0.5, Gaussian exp(−2 × 0.25) = 0.60653.
        assert_eq!(w(0.625, Triangular), (true, 0.5));
        assert_eq!(w(0.375, Triangular), (true, 0.5));
        let (near, g) = w(0.625, Gaussian);
        assert!(near);
        close(g, 0.606_530_7);
        assert_eq!(w(0.625, Flat), (true, 1.0));
        // The band edges belong to the band; triangular is 0 there, Gaussian exp(−2) = 0.13534.
        assert_eq!(w(0.75, Triangular), (true, 0.0));
        assert_eq!(w(0.25, Triangular), (true, 0.0));
        let (near, g) = w(0.75, Gaussian);
        assert!(near);
        close(g, 0.135_335_3);
        assert_eq!(w(0.25, Flat), (true, 1.0));
    }

    fn det(score: f32) -> Detection {
        Detection {
            class_id: 0,
            score,
            objectness: 1.0,
            bbox: [0.0, 0.0, 10.0, 10.0],
        }
    }

    fn frame(boxes: &[(f32, [f32; 3])]) -> Detections {
        let mut d = Detections::new();
        d.clear(3);
        for (score, probs) in boxes {
            d.push(det(*score), probs);
        }
        d
    }

    /// Ratios 0.5, 1.0 and 0.25.
    fn three_boxes() -> Detections {
        frame(&[
            (0.3, [0.6, 0.3, 0.1]),
            (0.5, [0.4, 0.4, 0.2]),
            (0.9, [0.8, 0.2, 0.0]),
        ])
    }

    #[test]
    fn each_aggregation_hand_computed() {
        let dets = three_boxes();
        let expected = [
            (Aggregation::Max, 1.0),
            (Aggregation::Mean, 1.75 / 3.0),
            (Aggregation::Sum, 1.0 - (-1.75f32).exp()), // 0.826226
            (Aggregation::TopKMean, 0.75),              // top 2: (1.0 + 0.5) / 2
        ];
        for (aggregation, value) in expected {
            let mut s = UncertaintyScorer::new(flat_all(Measure::Ratio, aggregation));
            let f = s.score(&dets, None);
            close(f.value, value);
            close(f.max, 1.0);
            close(f.mean, 1.75 / 3.0);
            close(f.sum, 1.75);
            close(f.top_k_mean, 0.75);
            assert_eq!((f.boxes, f.uncertain_boxes, f.empty), (3, 3, false));
        }
    }

    #[test]
    fn each_measure_reaches_the_frame() {
        // One box at the threshold (weight 1), probs [0.6, 0.3, 0.1], score 0.5.
        let dets = frame(&[(0.5, [0.6, 0.3, 0.1])]);
        let expected = [
            (Measure::LeastConfidence, 0.5),
            (Measure::Margin, 0.7),
            (Measure::Entropy, ENTROPY_631),
            (Measure::Ratio, 0.5),
        ];
        for (measure, value) in expected {
            let c = cfg(measure, Aggregation::Max, BandShape::Triangular);
            let f = UncertaintyScorer::new(c).score(&dets, None);
            close(f.value, value);
        }
    }

    #[test]
    fn near_threshold_boxes_dominate() {
        // Least confidence, threshold 0.5, triangular band 0.25:
        //   0.5   → weight 1,   u 0.5   → 0.5
        //   0.625 → weight 0.5, u 0.375 → 0.1875
        //   0.9   → outside,    u 0.1   → 0
        //   0.15  → outside,    u 0.85  → 0 (the most uncertain by itself, but far from the threshold)
        let dets = frame(&[
            (0.5, [1.0, 0.0, 0.0]),
            (0.625, [1.0, 0.0, 0.0]),
            (0.9, [1.0, 0.0, 0.0]),
            (0.15, [1.0, 0.0, 0.0]),
        ]);
        let c = cfg(
            Measure::LeastConfidence,
            Aggregation::Sum,
            BandShape::Triangular,
        );
        let f = UncertaintyScorer::new(c).score(&dets, None);
        close(f.max, 0.5);
        close(f.sum, 0.6875);
        close(f.mean, 0.6875 / 4.0);
        close(f.top_k_mean, 0.34375); // (0.5 + 0.1875) / 2
        close(f.value, 1.0 - (-0.6875f32).exp());
        assert_eq!((f.boxes, f.uncertain_boxes), (4, 2));
    }

    #[test]
    fn top_k_with_fewer_boxes_than_k_is_the_mean() {
        let dets = three_boxes();
        let c = UncertaintyConfig {
            top_k: 5,
            ..flat_all(Measure::Ratio, Aggregation::TopKMean)
        };
        let f = UncertaintyScorer::new(c).score(&dets, None);
        close(f.top_k_mean, 1.75 / 3.0);
        close(f.value, f.mean);
        // k = n: the same.
        let c = UncertaintyConfig {
            top_k: 3,
            ..flat_all(Measure::Ratio, Aggregation::TopKMean)
        };
        close(
            UncertaintyScorer::new(c).score(&dets, None).value,
            1.75 / 3.0,
        );
        // k = 1: the max.
        let c = UncertaintyConfig {
            top_k: 1,
            ..flat_all(Measure::Ratio, Aggregation::TopKMean)
        };
        close(UncertaintyScorer::new(c).score(&dets, None).value, 1.0);
    }

    #[test]
    fn empty_frame_has_its_own_value() {
        let mut dets = Detections::new();
        dets.clear(80);
        let mut s = UncertaintyScorer::new(UncertaintyConfig::default());
        let f = s.score(&dets, None);
        assert_eq!(
            f,
            FrameUncertainty {
                value: 0.5,
                empty: true,
                ..FrameUncertainty::default()
            }
        );
        let c = UncertaintyConfig {
            empty_frame_value: 0.9,
            ..UncertaintyConfig::default()
        };
        assert_eq!(UncertaintyScorer::new(c).score(&dets, None).value, 0.9);
        // Boxes all outside the band are not an empty frame: certain, value 0.
        let far = frame(&[(0.95, [1.0, 0.0, 0.0])]);
        let f = s.score(&far, None);
        assert_eq!(
            (f.value, f.empty, f.boxes, f.uncertain_boxes),
            (0.0, false, 1, 0)
        );
    }

    #[test]
    fn head_is_blended_by_its_weight() {
        let dets = three_boxes(); // max ratio 1.0
        let mut base = flat_all(Measure::Ratio, Aggregation::Mean); // value 1.75 / 3
        let mean = 1.75 / 3.0;
        // Weight 0: the head is ignored.
        close(
            UncertaintyScorer::new(base.clone())
                .score(&dets, Some(1.0))
                .value,
            mean,
        );
        base.head_weight = 0.25;
        let mut s = UncertaintyScorer::new(base);
        close(s.score(&dets, Some(0.9)).value, 0.75 * mean + 0.25 * 0.9);
        close(s.score(&dets, None).value, mean);
        close(s.score(&dets, Some(f32::NAN)).value, mean);
        // A head above 1 is clamped to 1.
        close(s.score(&dets, Some(3.0)).value, 0.75 * mean + 0.25);
        // An empty frame blends too: 0.75 × 0.5 + 0.25 × 0.1.
        let mut empty = Detections::new();
        empty.clear(3);
        close(s.score(&empty, Some(0.1)).value, 0.4);
    }

    #[test]
    fn no_classes_still_counts_boxes() {
        let mut dets = Detections::new();
        dets.clear(0);
        dets.push(det(0.5), &[]);
        let c = cfg(Measure::Entropy, Aggregation::Max, BandShape::Triangular);
        let f = UncertaintyScorer::new(c).score(&dets, None);
        assert_eq!((f.boxes, f.uncertain_boxes, f.value), (1, 1, 1.0));
    }

    #[test]
    fn scratch_is_reused_between_frames() {
        let mut s = UncertaintyScorer::new(UncertaintyConfig::default());
        let dets = three_boxes();
        let first = s.score(&dets, None);
        let (ptr, cap) = (s.values.as_ptr(), s.values.capacity());
        for _ in 0..10 {
            assert_eq!(s.score(&dets, None), first);
        }
        assert_eq!((s.values.as_ptr(), s.values.capacity()), (ptr, cap));
    }

    #[test]
    fn validation_names_the_bad_key() {
        assert_eq!(UncertaintyConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut UncertaintyConfig)| {
            let mut c = UncertaintyConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.top_k = 0).key == "top_k");
        assert!(bad(|c| c.threshold = 0.0).key == "threshold");
        assert!(bad(|c| c.threshold = 1.0).key == "threshold");
        assert!(bad(|c| c.threshold = f32::NAN).key == "threshold");
        assert!(bad(|c| c.band = 0.0).key == "band");
        assert!(bad(|c| c.band = 1.5).key == "band");
        assert!(bad(|c| c.empty_frame_value = -0.1).key == "empty_frame_value");
        assert!(bad(|c| c.empty_frame_value = f32::NAN).key == "empty_frame_value");
        assert!(bad(|c| c.head_weight = 1.5).key == "head_weight");
    }

    #[test]
    fn config_reads_snake_case_and_refuses_unknown_keys() {
        let c: UncertaintyConfig = toml::from_str(
            "measure = \"least_confidence\"\naggregation = \"top_k_mean\"\nband_shape = \"gaussian\"\nhead_weight = 0.2",
        )
        .unwrap();
        assert_eq!(c.measure, Measure::LeastConfidence);
        assert_eq!(c.aggregation, Aggregation::TopKMean);
        assert_eq!(c.band_shape, BandShape::Gaussian);
        assert_eq!((c.threshold, c.head_weight), (0.3, 0.2));
        assert!(toml::from_str::<UncertaintyConfig>("treshold = 0.3").is_err());
        assert!(toml::from_str::<UncertaintyConfig>("measure = \"softmax\"").is_err());
    }
}
