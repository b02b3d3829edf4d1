//! Select stage: decides, per frame, whether it is worth labeling.
//!
//! [`uncertainty`] scores how unsure the detector is; [`embedding`] projects the detector's
//! pooled features into a small vector; [`sketch`] remembers what was kept (and
//! [`sketch_file`] keeps it across runs) and measures how novel a frame is; [`policy`]
//! combines both under a budget into a keep decision with its reasons. [`Selector`] runs them in
//! that order on one frame's detections.

pub mod embedding;
pub mod policy;
pub mod sketch;
pub mod sketch_file;
pub mod uncertainty;

use std::fmt;

use crate::config::KeyError;
use crate::detect::manifest::Manifest;
use crate::detect::postprocess::Detections;
use embedding::{EmbeddingError, Projector, EMBED_DIM};
use policy::{Decision, FrameFacts, Policy, PolicyConfig};
use serde::{Deserialize, Serialize};
use sketch::Sketch;
use uncertainty::{FrameUncertainty, UncertaintyConfig, UncertaintyScorer};

/// Centres the diversity sketch holds: 256 × 64 f32 = 64 KiB, fixed at compile time.
pub const SKETCH_CENTRES: usize = 256;
/// The sketch of the frames kept so far.
pub type FrameSketch = Sketch<SKETCH_CENTRES, EMBED_DIM>;

/// Settings of the frame embedding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Seed of the random projection; vehicles whose sketches are merged must share it.
    pub seed: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            seed: embedding::DEFAULT_SEED,
        }
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
            SelectError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SelectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SelectError::Embedding(e) => Some(e),
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
    policy: Policy,
    embedding: [f32; EMBED_DIM],
    confident_classes: Vec<u16>,
    detection_threshold: f32,
    /// The last frame's facts, for [`Selector::commit_kept`].
    last_timestamp_ms: u64,
    last_uncertainty: f32,
    last_novelty: f32,
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
        let in_dim = match &manifest.embedding {
            Some(e) => e.channels,
            None => {
                return Err(SelectError::NoEmbedding {
                    model: manifest.dir.join(&manifest.fp32_file).display().to_string(),
                })
            }
        };
        let policy = Policy::new(policy.clone(), &manifest.classes)
            .map_err(|e| SelectError::Config(e.within("policy")))?;
        Ok(Selector {
            scorer: UncertaintyScorer::new(uncertainty.clone()),
            projector: Projector::new(in_dim, EMBED_DIM, embedding.seed),
            sketch: Box::new(FrameSketch::new()),
            policy,
            embedding: [0.0; EMBED_DIM],
            confident_classes: Vec::with_capacity(max_detections),
            detection_threshold: uncertainty.threshold,
            last_timestamp_ms: 0,
            last_uncertainty: 0.0,
            last_novelty: 0.0,
        })
    }

    /// Scores one frame from its detections and the detector's pooled `features`, stamped
    /// `timestamp_ms`, and decides whether to keep it. The decision is not yet counted: call
    /// [`Selector::commit_kept`] once the frame is actually stored.
    pub fn select(
        &mut self,
        detections: &Detections,
        features: &[f32],
        timestamp_ms: u64,
    ) -> Result<Selection, SelectError> {
        let uncertainty = self.scorer.score(detections, None);
        self.projector
            .project(features, &mut self.embedding)
            .map_err(SelectError::Embedding)?;
        let novelty = self.sketch.novelty(&self.embedding);
        self.confident_classes.clear();
        for d in detections.items() {
            if d.score >= self.detection_threshold {
                self.confident_classes.push(d.class_id);
            }
        }
        self.last_timestamp_ms = timestamp_ms;
        self.last_uncertainty = uncertainty.value;
        self.last_novelty = novelty;
        let facts = FrameFacts {
            timestamp_ms,
            uncertainty: uncertainty.value,
            novelty,
            classes: &self.confident_classes,
        };
        let decision = self.policy.decide(&facts);
        Ok(Selection {
            uncertainty,
            decision,
        })
    }

    /// Counts the last selected frame as kept, `bytes` stored: the policy's budgets move and
    /// its embedding joins the sketch.
    pub fn commit_kept(&mut self, bytes: u64) {
        let facts = FrameFacts {
            timestamp_ms: self.last_timestamp_ms,
            uncertainty: self.last_uncertainty,
            novelty: self.last_novelty,
            classes: &self.confident_classes,
        };
        self.policy.commit_kept(&facts, bytes);
        self.sketch.insert(&self.embedding);
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
