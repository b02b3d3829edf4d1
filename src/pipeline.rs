//! The main job, frame by frame: detect → uncertainty → embedding and novelty → policy →
//! spool. One `Pipeline` owns every stage and its reusable buffers; `run` and `eval` drive it.

use crate::config::Config;
use crate::detector::{Detector, DetectorError, DetectorOptions};
use crate::embedding::{Projector, EMBED_DIM};
use crate::manifest::{Manifest, ManifestError, Precision};
use crate::policy::{Decision, FrameFacts, Policy};
use crate::postprocess::{Detections, PostprocessOptions};
use crate::record::{KeptRecord, StoredDetection};
use crate::score::{FrameUncertainty, UncertaintyScorer};
use crate::sketch::Sketch;
use crate::source::Frame;
use crate::spool::{PutOutcome, Spool, SpoolError};
use std::fmt;
use std::path::{Path, PathBuf};

/// Centres the diversity sketch holds: 256 × 64 f32 = 64 KiB, fixed at compile time.
pub const SKETCH_CENTRES: usize = 256;
pub type FrameSketch = Sketch<SKETCH_CENTRES, EMBED_DIM>;

#[derive(Debug)]
pub enum PipelineError {
    Manifest(ManifestError),
    Detector(DetectorError),
    /// The model has no embedding tensor: novelty needs one.
    NoEmbedding {
        model: PathBuf,
    },
    Embedding(String),
    /// A saved sketch could not be read or written.
    Sketch(String),
    Policy(String),
    Spool(SpoolError),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Manifest(e) => e.fmt(f),
            PipelineError::Detector(e) => e.fmt(f),
            PipelineError::NoEmbedding { model } => write!(
                f,
                "manifest of {} names no [embedding] tensor; the diversity sketch needs one",
                model.display()
            ),
            PipelineError::Embedding(e) => write!(f, "embedding: {e}"),
            PipelineError::Sketch(e) => write!(f, "sketch: {e}"),
            PipelineError::Policy(e) => write!(f, "policy: {e}"),
            PipelineError::Spool(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PipelineError {}

/// What happened to one frame.
#[derive(Debug, Clone)]
pub struct FrameOutcome {
    pub uncertainty: FrameUncertainty,
    pub decision: Decision,
    /// Whether the frame is now in the spool (a kept decision can still be refused by the spool).
    pub stored: bool,
    pub detections: usize,
    /// Time spent in the detector (preprocess, inference, decode) and in everything after it
    /// (scores, embedding, sketch, policy; the spool write excluded), for the cost figures.
    pub detect_time: std::time::Duration,
    pub select_time: std::time::Duration,
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    pub frames: u64,
    pub kept: u64,
    pub spool_rejected: u64,
    pub spool_evicted: u64,
}

pub struct Pipeline {
    detector: Detector,
    scorer: UncertaintyScorer,
    projector: Projector,
    sketch: Box<FrameSketch>,
    policy: Policy,
    spool: Option<Spool>,
    detections: Detections,
    embedding: [f32; EMBED_DIM],
    confident_classes: Vec<u16>,
    detection_threshold: f32,
    model_label: String,
    source_label: String,
    stats: RunStats,
}

/// Loads the manifest the config names (or the default).
pub fn load_manifest(config: &Config, default: &Path) -> Result<Manifest, PipelineError> {
    let path = config.detector.model.as_deref().unwrap_or(default);
    Manifest::load(path).map_err(PipelineError::Manifest)
}

impl Pipeline {
    pub fn new(
        config: &Config,
        manifest: Manifest,
        spool: Option<Spool>,
    ) -> Result<Pipeline, PipelineError> {
        let precision = Precision::parse(&config.detector.precision).unwrap_or(Precision::Int8);
        let options = DetectorOptions {
            precision,
            model_file: None,
            threads: config.detector.threads,
            postprocess: PostprocessOptions {
                min_score: config.detector.min_score,
                nms_iou: config.detector.nms_iou,
                max_detections: config.detector.max_detections,
            },
        };
        let in_dim = match &manifest.embedding {
            Some(e) => e.channels,
            None => {
                return Err(PipelineError::NoEmbedding {
                    model: manifest.dir.join(&manifest.fp32_file),
                })
            }
        };
        let policy = Policy::new(config.policy.clone(), &manifest.classes)
            .map_err(|e| PipelineError::Policy(e.to_string()))?;
        let detector = Detector::load(manifest, &options).map_err(PipelineError::Detector)?;
        let model_label = format!("{} ({precision})", detector.model_path().display());
        Ok(Pipeline {
            scorer: UncertaintyScorer::new(config.uncertainty.clone()),
            projector: Projector::new(in_dim, EMBED_DIM, config.embedding.seed),
            sketch: Box::new(FrameSketch::new()),
            policy,
            spool,
            detections: Detections::new(),
            embedding: [0.0; EMBED_DIM],
            confident_classes: Vec::with_capacity(config.detector.max_detections),
            detection_threshold: config.uncertainty.threshold,
            model_label,
            source_label: String::new(),
            stats: RunStats::default(),
            detector,
        })
    }

    pub fn set_source_label(&mut self, label: &str) {
        self.source_label.clear();
        self.source_label.push_str(label);
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
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

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// The last frame's detections.
    pub fn detections(&self) -> &Detections {
        &self.detections
    }

    /// The last frame's projected, unit-norm embedding.
    pub fn embedding(&self) -> &[f32; EMBED_DIM] {
        &self.embedding
    }

    /// Runs every stage on one frame, stamped `timestamp_ms`.
    pub fn process(
        &mut self,
        frame: &Frame,
        timestamp_ms: u64,
    ) -> Result<FrameOutcome, PipelineError> {
        let t0 = std::time::Instant::now();
        self.detector
            .detect(&frame.rgb, frame.width, frame.height, &mut self.detections)
            .map_err(PipelineError::Detector)?;
        let t1 = std::time::Instant::now();
        let uncertainty = self.scorer.score(&self.detections, None);
        let features = self.detector.embedding().unwrap_or(&[]);
        self.projector
            .project(features, &mut self.embedding)
            .map_err(|e| PipelineError::Embedding(e.to_string()))?;
        let novelty = self.sketch.novelty(&self.embedding);

        self.confident_classes.clear();
        for d in self.detections.items() {
            if d.score >= self.detection_threshold {
                self.confident_classes.push(d.class_id);
            }
        }
        let facts = FrameFacts {
            timestamp_ms,
            uncertainty: uncertainty.value,
            novelty,
            classes: &self.confident_classes,
        };
        let decision = self.policy.decide(&facts);
        self.stats.frames += 1;
        let t2 = std::time::Instant::now();

        let mut stored = false;
        if decision.keep {
            let bytes = match self.spool.as_mut() {
                None => Some(0),
                Some(spool) => {
                    let record = make_record(
                        frame,
                        timestamp_ms,
                        &self.source_label,
                        &self.model_label,
                        &self.detections,
                        &self.detector.manifest().classes,
                        &decision,
                        &self.embedding,
                    );
                    match spool
                        .put(&record, &frame.rgb, frame.width, frame.height)
                        .map_err(PipelineError::Spool)?
                    {
                        PutOutcome::Stored { bytes, evicted, .. } => {
                            self.stats.spool_evicted += evicted as u64;
                            Some(bytes)
                        }
                        PutOutcome::Rejected { reason } => {
                            self.stats.spool_rejected += 1;
                            // Logged at 1, 2, 4, 8, … refusals: visible, but not a flood.
                            if self.stats.spool_rejected.is_power_of_two() {
                                log::warn!(
                                    "spool refused frame {} ({reason:?}); {} refused so far",
                                    frame.name,
                                    self.stats.spool_rejected
                                );
                            }
                            None
                        }
                    }
                }
            };
            if let Some(bytes) = bytes {
                self.policy.commit_kept(&facts, bytes);
                self.sketch.insert(&self.embedding);
                self.stats.kept += 1;
                stored = true;
            }
        }
        Ok(FrameOutcome {
            uncertainty,
            decision,
            stored,
            detections: self.detections.len(),
            detect_time: t1 - t0,
            select_time: t2 - t1,
        })
    }
}

/// Builds the spool record of a kept frame: its detections as pre-annotations, its scores, its
/// embedding and the reasons it was kept. Allocates, but only for kept frames.
#[allow(clippy::too_many_arguments)]
fn make_record(
    frame: &Frame,
    timestamp_ms: u64,
    source: &str,
    model: &str,
    detections: &Detections,
    classes: &[String],
    decision: &Decision,
    embedding: &[f32],
) -> KeptRecord {
    KeptRecord {
        frame_index: frame.index,
        frame_name: frame.name.clone(),
        source: source.to_string(),
        timestamp_ms,
        width: frame.width,
        height: frame.height,
        model: model.to_string(),
        detections: detections
            .iter()
            .map(|(d, probs)| StoredDetection {
                class_id: d.class_id,
                class_name: classes
                    .get(d.class_id as usize)
                    .cloned()
                    .unwrap_or_default(),
                score: d.score,
                objectness: d.objectness,
                bbox: d.bbox,
                class_probs: probs.to_vec(),
            })
            .collect(),
        scores: decision.scores,
        embedding: embedding.to_vec(),
        reasons: decision.reasons.iter().copied().collect(),
    }
}

/// Reads a sketch saved by an earlier run; None when there is none yet.
pub fn load_sketch(path: &Path) -> Result<Option<FrameSketch>, PipelineError> {
    match std::fs::read(path) {
        Ok(bytes) => FrameSketch::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| PipelineError::Sketch(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError::Sketch(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Saves the sketch atomically (temporary file, fsync, rename).
pub fn save_sketch(path: &Path, sketch: &FrameSketch) -> Result<(), PipelineError> {
    use std::io::Write;
    let tmp = path.with_extension("bin.tmp");
    let io =
        |e: std::io::Error| PipelineError::Sketch(format!("cannot save {}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&sketch.to_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
