//! Select stage: decides, per frame, whether it is worth labeling.
//!
//! [`uncertainty`] scores how unsure the detector is; [`embedding`] projects the detector's
//! pooled features into a small vector; [`sketch`] remembers what was kept (and
//! [`sketch_file`] keeps it across runs) and measures how novel a frame is; [`policy`]
//! combines both under a budget into a keep decision with its reasons. [`Selector`] runs them in
//! that order on one frame's detections.
//!
//! # Novelty
//!
//! The novelty the policy sees is
//! `max(min(distance to the nearest kept frame, distance to what earlier runs saw),
//! surprise_weight · distance to the recent context)`, and 0 when the frame lies within the
//! seen sketch's radius of a view an earlier run saw:
//!
//! * kept frames: [`FrameSketch`] (this run's keeps and earlier runs', `sketch.bin`);
//! * the look of the last kept frame ([`look`]): while the view has not changed since that
//!   keep by the frame's coarse luma grid (`policy.look_radius`), the distance is 0, for at
//!   most `policy.look_hold_ms` after the keep;
//! * seen frames: [`SeenSketch`], every frame of earlier runs (`seen.bin`), frozen for the run,
//!   while this run's frames accumulate into the copy saved for the next; a drive repeated adds
//!   little (edgesieve-eval part 1: the second pass keeps ~1% of what the first kept);
//! * surprise: distance from a moving average of the last ~5 frames, so a frame unlike the
//!   stream around it stays novel even when something like it was kept long ago (a rare
//!   condition seen between ordinary frames). Only its excess over `embedding.surprise_margin`
//!   times its own running mean counts: in a stretch whose features jitter from frame to frame
//!   every frame is a little "surprising", and that is noise, not a rare sight.
//!
//! **Novelty is measured in units of the stream's own jitter** (`embedding.jitter_horizon`):
//! the value the policy ranks is that distance divided by the running mean distance between
//! consecutive frames' embeddings. A stretch whose features wobble (a viaduct, flickering
//! light) spreads its frames far apart in the embedding without showing anything new; in raw
//! distances it would outrank, and starve, the calm clip that follows (on the tmo324 drive a
//! whole country road got 1 kept frame of 129, the desert 2 of 209). The duplicate rule still
//! judges the raw distance (`policy.duplicate_radius`).
//!
//! Smoothing (`embedding.smoothing`, default 0.5) averages consecutive embeddings before all
//! this, restarting at a scene cut (`embedding.scene_cut`).

pub mod embedding;
pub mod look;
pub mod policy;
pub mod sketch;
pub mod sketch_file;
pub mod uncertainty;

use std::fmt;

use crate::config::KeyError;
use crate::detect::gate::LumaGrid;
use crate::detect::manifest::Manifest;
use crate::detect::postprocess::Detections;
use embedding::{CalibrationError, EmbeddingError, Projector, EMBED_DIM};
use look::SameView;
use policy::{Decision, FrameFacts, Policy, PolicyConfig};
use serde::{Deserialize, Serialize};
use sketch::Sketch;
use uncertainty::{FrameUncertainty, UncertaintyConfig, UncertaintyScorer};

/// Centres the diversity sketch holds: 256 × 64 f32 = 64 KiB, fixed at compile time.
pub const SKETCH_CENTRES: usize = 256;
/// The sketch of the frames kept so far.
pub type FrameSketch = Sketch<SKETCH_CENTRES, EMBED_DIM>;
/// Weight of the newest frame in the context that surprise is measured against (~5 frames).
const CONTEXT_WEIGHT: f32 = 0.2;
/// Frames the running mean of the surprise is taken over (see `surprise_margin`).
const SURPRISE_HORIZON: f32 = 64.0;
/// Smallest jitter novelty is divided by (a frozen stream has none): 1/10 of the typical
/// consecutive distance on the tmo324 drive.
const JITTER_MIN: f32 = 0.02;
/// Centres of the sketch of every frame seen: 1024 × 64 f32 = 256 KiB.
pub const SEEN_CENTRES: usize = 1024;
/// The sketch of every frame seen (kept or not), to recognise a drive seen on an earlier run.
pub type SeenSketch = Sketch<SEEN_CENTRES, EMBED_DIM>;

/// Settings of the frame embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Seed of the random projection used when the manifest names no `[embedding]
    /// calibration`; vehicles whose sketches are merged must share it.
    pub seed: u64,
    /// Weight `α` of the newest frame in the exponential moving average of consecutive
    /// embeddings, in (0, 1]; 1 = no smoothing. Smoothing damps frame-to-frame jitter of the
    /// features (a scene seen again is recognised) while a scene change still moves the
    /// embedding by `α` of its distance in one frame.
    pub smoothing: f64,
    /// A frame whose own embedding lies farther than this from the previous frame's starts
    /// the average afresh (a cut, or a frame from another scene): smoothing must not blur a
    /// single rare frame into its neighbours. In embedding units, (0, 2].
    pub scene_cut: f64,
    /// Weight of surprise in novelty: `novelty = max(distance to what was kept or seen,
    /// surprise_weight · distance to the recent context)`, the context being a moving average
    /// of the last ~5 frames' embeddings. A frame unlike the stream around it (a flash of
    /// another condition, a rare sight between ordinary ones) stays novel even when something
    /// like it was kept long ago. 0 switches it off, at most 1.
    pub surprise_weight: f64,
    /// Surprise counts only by how much it exceeds this multiple of its own running mean
    /// (over the last 64 frames): the jitter of a wobbly stretch is not a rare sight. 0 counts
    /// all of it; at most 10.
    pub surprise_margin: f64,
    /// Frames over which the stream's jitter (the mean distance between consecutive frames'
    /// own embeddings) is averaged; novelty is divided by it, so it is measured in units of
    /// the stream's own frame-to-frame wobble. 0 switches it off (raw distances); at most
    /// 100,000.
    pub jitter_horizon: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            seed: embedding::DEFAULT_SEED,
            // edgesieve-eval part 1: consecutive / cross-clip distance 0.105 at 1 (off), 0.053
            // at 0.5; rare-frame recall 11/12 either way with the two keys below.
            smoothing: 0.5,
            // Within a clip of the tmo324 drive consecutive frames' own embeddings jump at
            // most 0.9 (the viaduct's wobble: 22 jumps above 0.6, 6 above 0.8); a spliced
            // night or rain frame jumps 1.35-1.74. At 0.6 the wobble's spikes were left
            // unsmoothed and set the max coverage (1.67x offline k-centre); at 1.0 they are
            // smoothed (1.54x, mean coverage 0.971x -> 0.958x random, rare frames 11/12;
            // 0.9-1.1 give the same, 1.2 loses a rare frame).
            scene_cut: 1.0,
            // edgesieve-eval part 2: rare-frame recall 3/12 without, 7/12 at 0.5, 10/12 at 1.
            surprise_weight: 1.0,
            // Part 2: 10/12 at 0 (smoothing 0.5, jitter on), 11/12 at 1, 7/12 at 2.
            surprise_margin: 1.0,
            // Part 1: horizon 8 keeps more jittery frames (rare recall 8/12), 128 adapts too
            // slowly at a clip change (redundancy 33%); 32 balances the clips.
            jitter_horizon: 32,
        }
    }
}

impl EmbeddingConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        let a = self.smoothing;
        if !(a > 0.0 && a <= 1.0) {
            return Err(KeyError::new(
                "smoothing",
                format!("must be in (0, 1], got {a}"),
            ));
        }
        let w = self.surprise_weight;
        if !(0.0..=1.0).contains(&w) {
            return Err(KeyError::new(
                "surprise_weight",
                format!("must be in [0, 1], got {w}"),
            ));
        }
        let m = self.surprise_margin;
        if !(0.0..=10.0).contains(&m) {
            return Err(KeyError::new(
                "surprise_margin",
                format!("must be in [0, 10], got {m}"),
            ));
        }
        if self.jitter_horizon > 100_000 {
            return Err(KeyError::new(
                "jitter_horizon",
                format!("must be at most 100000 frames, got {}", self.jitter_horizon),
            ));
        }
        let c = self.scene_cut;
        if !(c > 0.0 && c <= 2.0) {
            return Err(KeyError::new(
                "scene_cut",
                format!("must be in (0, 2], got {c}"),
            ));
        }
        Ok(())
    }
}

/// Why the select stage could not be set up or could not score a frame.
#[derive(Debug)]
pub enum SelectError {
    /// The model's manifest names no embedding tensor: novelty needs one.
    NoEmbedding {
        model: String,
    },
    Embedding(EmbeddingError),
    /// The manifest's embedding calibration file is missing or unusable.
    Calibration(CalibrationError),
    /// A configuration value is out of range, or a trigger names a class the model lacks.
    Config(KeyError),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::NoEmbedding { model } => write!(
                f,
                "manifest of {model} names no [embedding] tensor; the diversity sketch needs one"
            ),
            SelectError::Embedding(_) => f.write_str("embedding"),
            SelectError::Calibration(e) => e.fmt(f),
            SelectError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SelectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SelectError::Embedding(e) => Some(e),
            SelectError::Calibration(e) => e.source(),
            SelectError::NoEmbedding { .. } | SelectError::Config(_) => None,
        }
    }
}

/// What the selector made of one frame.
#[derive(Debug, Clone)]
pub struct Selection {
    pub uncertainty: FrameUncertainty,
    pub decision: Decision,
}

/// The select stage over one stream: scorer, embedding projection, sketch and policy, with
/// their reusable buffers. Steady state allocates nothing per frame.
pub struct Selector {
    scorer: UncertaintyScorer,
    projector: Projector,
    sketch: Box<FrameSketch>,
    /// What earlier runs saw (frozen for this run); empty when nothing was.
    seen_before: Box<SeenSketch>,
    /// `seen_before` plus every frame of this run, to be saved for the next.
    seen: Box<SeenSketch>,
    policy: Policy,
    /// The embedding the sketch sees: the smoothed one (unit norm).
    embedding: [f32; EMBED_DIM],
    /// The last frame's own projected embedding, before smoothing.
    raw: [f32; EMBED_DIM],
    smoothing: f32,
    scene_cut: f32,
    surprise_weight: f32,
    /// Moving average of recent frames' own embeddings (see [`Selector::surprise`]).
    context: [f32; EMBED_DIM],
    /// The previous frame's own embedding, to detect a cut.
    previous: [f32; EMBED_DIM],
    surprise_margin: f32,
    /// Running mean of the surprise over [`SURPRISE_HORIZON`] frames.
    surprise_mean: f32,
    /// Frames the jitter is averaged over (0: novelty is not divided by it).
    jitter_horizon: u64,
    /// Running mean distance between consecutive frames' own embeddings.
    jitter: f32,
    /// Whether the view has stayed that of the last kept frame.
    same_view: SameView,
    look_radius: f32,
    /// The last frame's luma grid, if it came with one (for [`Selector::commit_kept`]).
    last_look: Option<LumaGrid>,
    /// Frames smoothed since the stream (re)started.
    smoothed_frames: u64,
    confident_classes: Vec<u16>,
    detection_threshold: f32,
    /// The last frame's facts, for [`Selector::commit_kept`].
    last_timestamp_ms: u64,
    last_uncertainty: f32,
    last_novelty: f32,
    last_nearest: f32,
}

impl Selector {
    /// A selector for `manifest`'s model (its classes and embedding width).
    pub fn new(
        uncertainty: &UncertaintyConfig,
        embedding: &EmbeddingConfig,
        policy: &PolicyConfig,
        max_detections: usize,
        manifest: &Manifest,
    ) -> Result<Selector, SelectError> {
        let Some(spec) = &manifest.embedding else {
            return Err(SelectError::NoEmbedding {
                model: manifest.dir.join(&manifest.fp32_file).display().to_string(),
            });
        };
        embedding
            .validate()
            .map_err(|e| SelectError::Config(e.within("embedding")))?;
        let projector = match &spec.calibration {
            Some(file) => Projector::from_calibration(
                &manifest.dir.join(file),
                &spec.tensor,
                spec.channels,
                EMBED_DIM,
            )
            .map_err(SelectError::Calibration)?,
            None => Projector::new(spec.channels, EMBED_DIM, embedding.seed),
        };
        let look_radius = policy.look_radius as f32;
        let same_view = SameView::new(policy.look_hold_ms);
        let policy = Policy::new(policy.clone(), &manifest.classes)
            .map_err(|e| SelectError::Config(e.within("policy")))?;
        Ok(Selector {
            scorer: UncertaintyScorer::new(uncertainty.clone()),
            projector,
            sketch: Box::new(FrameSketch::new()),
            seen_before: Box::new(SeenSketch::new()),
            seen: Box::new(SeenSketch::new()),
            policy,
            embedding: [0.0; EMBED_DIM],
            raw: [0.0; EMBED_DIM],
            smoothing: embedding.smoothing as f32,
            scene_cut: embedding.scene_cut as f32,
            surprise_weight: embedding.surprise_weight as f32,
            context: [0.0; EMBED_DIM],
            previous: [0.0; EMBED_DIM],
            surprise_margin: embedding.surprise_margin as f32,
            surprise_mean: 0.0,
            jitter_horizon: embedding.jitter_horizon,
            jitter: 0.0,
            same_view,
            look_radius,
            last_look: None,
            smoothed_frames: 0,
            confident_classes: Vec::with_capacity(max_detections),
            detection_threshold: uncertainty.threshold,
            last_timestamp_ms: 0,
            last_uncertainty: 0.0,
            last_novelty: 0.0,
            last_nearest: 0.0,
        })
    }

    /// Scores one frame from its detections and the detector's pooled `features`, stamped
    /// `timestamp_ms`, and decides whether to keep it. The decision is not yet counted: call
    /// [`Selector::commit_kept`] once the frame is actually stored. Without the frame's look
    /// (see [`Selector::select_with_look`]).
    pub fn select(
        &mut self,
        detections: &Detections,
        features: &[f32],
        timestamp_ms: u64,
    ) -> Result<Selection, SelectError> {
        self.select_with_look(detections, features, None, timestamp_ms)
    }

    /// [`Selector::select`] with the frame's luma grid ([`crate::detect::gate::luma_grid`]):
    /// while the view has not changed since the last keep (`policy.look_radius`, see
    /// [`look`]) a frame is a near-duplicate.
    pub fn select_with_look(
        &mut self,
        detections: &Detections,
        features: &[f32],
        look: Option<&LumaGrid>,
        timestamp_ms: u64,
    ) -> Result<Selection, SelectError> {
        let uncertainty = self.scorer.score(detections, None);
        self.projector
            .project(features, &mut self.raw)
            .map_err(SelectError::Embedding)?;
        self.smooth();
        // Novel = far from every kept frame, and from everything earlier runs saw (a drive
        // repeated, the daily commute, adds little). This run's own frames only count once
        // kept: consecutive frames would otherwise hide each other.
        // The seen sketch summarises earlier runs' frames to within its radius `r` (each lies
        // within 2r of a centre): a frame closer than `r` to a centre is a view seen before,
        // whatever the duplicate radius; farther, its distance still counts as novelty.
        let kept = self.sketch.novelty(&self.embedding);
        let seen = self.seen_before.novelty(&self.embedding);
        // The view has not changed since the last keep: a near-duplicate (distance 0),
        // whatever the features say.
        self.last_look = look.copied();
        let looks_kept = self.look_radius > 0.0
            && look.is_some_and(|g| self.same_view.unchanged(g, self.look_radius, timestamp_ms));
        let nearest = if seen <= self.seen_before.radius() || looks_kept {
            0.0
        } else {
            kept.min(seen)
        };
        // Surprise raises the novelty (the value), never the distance the duplicate rule
        // judges: a frame kept before stays a duplicate however unlike its neighbours.
        let mut novelty = nearest.max(self.surprise_weight * self.surprise());
        if self.jitter_horizon > 0 {
            novelty /= self.jitter.max(JITTER_MIN);
        }
        self.seen.insert(&self.embedding);
        self.confident_classes.clear();
        for d in detections.items() {
            if d.score >= self.detection_threshold {
                self.confident_classes.push(d.class_id);
            }
        }
        self.last_timestamp_ms = timestamp_ms;
        self.last_uncertainty = uncertainty.value;
        self.last_novelty = novelty;
        self.last_nearest = nearest;
        let facts = FrameFacts {
            timestamp_ms,
            uncertainty: uncertainty.value,
            novelty,
            nearest,
            classes: &self.confident_classes,
        };
        let decision = self.policy.decide(&facts);
        Ok(Selection {
            uncertainty,
            decision,
        })
    }

    /// Charges `bytes` stored later for a frame already counted as kept (with its context
    /// frames, which are stored once the frames after it arrived) to the byte budgets.
    pub fn charge_bytes(&mut self, bytes: u64) {
        self.policy.charge_bytes(bytes);
    }

    /// Counts the last selected frame as kept, `bytes` stored: the policy's budgets move and
    /// its embedding joins the sketch.
    pub fn commit_kept(&mut self, bytes: u64) {
        let facts = FrameFacts {
            timestamp_ms: self.last_timestamp_ms,
            uncertainty: self.last_uncertainty,
            novelty: self.last_novelty,
            nearest: self.last_nearest,
            classes: &self.confident_classes,
        };
        self.policy.commit_kept(&facts, bytes);
        self.sketch.insert(&self.embedding);
        if let Some(look) = &self.last_look {
            self.same_view.kept(look, self.last_timestamp_ms);
        }
    }

    /// `embedding = normalise(α·raw + (1 − α)·embedding)`, or `raw` for the first frame of a
    /// stream. No allocation.
    fn smooth(&mut self) {
        let a = self.smoothing;
        let jump = self
            .raw
            .iter()
            .zip(&self.previous)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt();
        self.previous = self.raw;
        if self.smoothed_frames > 0 && self.jitter_horizon > 0 {
            let n = self.smoothed_frames.min(self.jitter_horizon) as f32;
            self.jitter += (jump - self.jitter) / n;
        }
        if self.smoothed_frames == 0 || a >= 1.0 || jump > self.scene_cut {
            self.embedding = self.raw;
        } else {
            for (e, &r) in self.embedding.iter_mut().zip(&self.raw) {
                *e = a * r + (1.0 - a) * *e;
            }
            let norm = self.embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 1e-6 && norm.is_finite() {
                self.embedding.iter_mut().for_each(|v| *v /= norm);
            } else {
                self.embedding = self.raw;
            }
        }
        self.smoothed_frames += 1;
    }

    /// How far this frame's own embedding lies from the recent context (a moving average of
    /// the frames before it, weight [`CONTEXT_WEIGHT`] for the newest) beyond
    /// `surprise_margin` times the running mean of that distance; then moves the context
    /// towards this frame. 0 for the first frame of a stream. No allocation.
    fn surprise(&mut self) -> f32 {
        let first = self.smoothed_frames <= 1;
        let mut d2 = 0.0f32;
        for (c, &r) in self.context.iter_mut().zip(&self.raw) {
            if first {
                *c = r;
            } else {
                d2 += (r - *c) * (r - *c);
                *c += CONTEXT_WEIGHT * (r - *c);
            }
        }
        if first {
            return 0.0;
        }
        let s = d2.sqrt();
        let excess = (s - self.surprise_margin * self.surprise_mean).max(0.0);
        let n = (self.smoothed_frames as f32).min(SURPRISE_HORIZON);
        self.surprise_mean += (s - self.surprise_mean) / n;
        excess
    }

    /// Whether frames' luma grids are looked at (`policy.look_radius` > 0): the caller need
    /// not compute them otherwise.
    pub fn wants_look(&self) -> bool {
        self.look_radius > 0.0
    }

    /// The embedding space of [`Selector::embedding`] (see [`Projector::space_id`]).
    pub fn space_id(&self) -> u64 {
        self.projector.space_id()
    }

    /// What earlier runs saw: the reference for this run, and the start of [`Selector::seen`].
    pub fn set_seen_before(&mut self, seen: Box<SeenSketch>) {
        self.seen = seen.clone();
        self.seen_before = seen;
    }

    /// Everything seen: earlier runs' frames and this run's, to save for the next run.
    pub fn seen(&self) -> &SeenSketch {
        &self.seen
    }

    pub fn sketch(&self) -> &FrameSketch {
        &self.sketch
    }

    pub fn sketch_mut(&mut self) -> &mut FrameSketch {
        &mut self.sketch
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The last frame's projected, unit-norm embedding.
    pub fn embedding(&self) -> &[f32; EMBED_DIM] {
        &self.embedding
    }
}
