//! One frame through every stage: detect → select → store. A [`Pipeline`] owns the detector,
//! the selector and the sink with their reusable buffers; the job loop ([`super::run_job`])
//! feeds it frames.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{FrameHandler, FrameInfo, Tally};
use crate::config::Config;
use crate::detect::gate::Gate;
use crate::detect::manifest::{Manifest, ManifestError};
use crate::detect::model::{Detector, DetectorError};
use crate::detect::postprocess::Detections;
use crate::detect::tune;
use crate::select::policy::Decision;
use crate::select::uncertainty::FrameUncertainty;
use crate::select::{SelectError, Selector};
use crate::source::Frame;
use crate::store::context::{Context, ContextSet, Event};
use crate::store::record::{KeptRecord, StoredDetection};
use crate::store::{PutOutcome, Sink, StoreError};

/// Why a pipeline could not be built or could not process a frame.
#[derive(Debug)]
pub enum PipelineError {
    Manifest(ManifestError),
    Detector(DetectorError),
    Select(SelectError),
    Store(StoreError),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Manifest(e) => e.fmt(f),
            PipelineError::Detector(e) => e.fmt(f),
            PipelineError::Select(e) => e.fmt(f),
            PipelineError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PipelineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent: each variant displays its inner error, so the chain goes on below it.
        match self {
            PipelineError::Manifest(e) => e.source(),
            PipelineError::Detector(e) => e.source(),
            PipelineError::Select(e) => e.source(),
            PipelineError::Store(e) => e.source(),
        }
    }
}

/// What happened to one frame.
#[derive(Debug, Clone)]
pub struct FrameOutcome {
    pub uncertainty: FrameUncertainty,
    pub decision: Decision,
    /// Whether the frame is now in the sink (a kept decision can still be refused by the sink).
    pub stored: bool,
    /// Kept, and waiting for the frames after it (`[context] after`): stored, and counted in
    /// the tally, once they arrived.
    pub pending: bool,
    pub detections: usize,
    /// Time spent in the detector (preprocess, inference, decode) and in everything after it
    /// (scores, embedding, sketch, policy; the sink's write excluded), for the cost figures.
    pub detect_time: Duration,
    pub select_time: Duration,
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    pub frames: u64,
    /// Frames the gate let skip the detector as near-copies of the last processed one.
    pub gated: u64,
    /// Detector time (preprocess, inference, decode) of the processed frames.
    pub detect_time: Duration,
    pub kept: u64,
    pub sink_rejected: u64,
    pub sink_evicted: u64,
}

/// Loads the manifest the config names, else `default`.
pub fn load_manifest(config: &Config, default: &Path) -> Result<Manifest, PipelineError> {
    let path = config.detector.model.as_deref().unwrap_or(default);
    Manifest::load(path).map_err(PipelineError::Manifest)
}

/// Detect → select → store, for one stream of frames.
pub struct Pipeline<S: Sink> {
    detector: Detector,
    gate: Gate,
    selector: Selector,
    sink: S,
    detections: Detections,
    model_label: String,
    source_label: String,
    stats: RunStats,
    last: Option<FrameOutcome>,
    /// The frames around kept ones (`[context]`), when configured.
    context: Option<Context>,
    /// Kept frames with their context, ready to store (reused).
    ready: Vec<Event>,
    /// The background measurement of a kernel plan, when one runs.
    tuner: Option<std::thread::JoinHandle<Option<PathBuf>>>,
}

impl<S: Sink> Pipeline<S> {
    /// A pipeline for frames of `frame_size` (width, height) when the source knows it: the
    /// detector's input is shaped for it (`detector.input_shape`).
    pub fn new(
        config: &Config,
        manifest: Manifest,
        sink: S,
        frame_size: Option<(u32, u32)>,
    ) -> Result<Pipeline<S>, PipelineError> {
        let selector = Selector::new(
            &config.uncertainty,
            &config.embedding,
            &config.policy,
            config.detector.max_detections,
            &manifest,
        )
        .map_err(PipelineError::Select)?;
        let options = config.detector.options_for(frame_size);
        // The manifest as it describes the model file (the detector's own describes the input
        // it shaped the model for).
        let tuner_manifest = config.detector.tune_in_background.then(|| manifest.clone());
        let detector = Detector::load(manifest, &options).map_err(PipelineError::Detector)?;
        let tuner = match (detector.plan_wanted(), tuner_manifest) {
            (Some(wanted), Some(manifest)) => {
                match tune::measure_in_background(manifest, wanted.clone()) {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        log::warn!("matrix kernels: no thread to measure them on: {e}");
                        None
                    }
                }
            }
            (Some(wanted), None) => {
                log::info!(
                    "matrix kernels: tract's pick (no plan measured on this machine for {} at \
                     {}x{}: edgesieve tune, or detector.tune_in_background)",
                    wanted.path.display(),
                    wanted.settings.shape.0,
                    wanted.settings.shape.1
                );
                None
            }
            (None, _) => None,
        };
        let model_label = format!(
            "{} ({})",
            detector.model_path().display(),
            detector.precision()
        );
        let context = Context::new(&config.context);
        if let Some(c) = &context {
            let cfg = c.config();
            let memory = frame_size.map_or(String::new(), |(w, h)| {
                format!(
                    "; at most {:.1} MB of frames for {w}x{h}",
                    c.frame_memory(w, h) as f64 / 1e6
                )
            });
            log::info!(
                "context: {} frames before and {} after each kept frame, JPEG quality {}, longest side {}{memory}",
                cfg.before,
                cfg.after,
                cfg.jpeg_quality,
                cfg.max_side
            );
        }
        Ok(Pipeline {
            detector,
            gate: Gate::new(&config.gate),
            selector,
            sink,
            detections: Detections::new(),
            model_label,
            source_label: String::new(),
            stats: RunStats::default(),
            last: None,
            context,
            ready: Vec::new(),
            tuner,
        })
    }

    /// Waits for the background measurement of a kernel plan (`detector.tune_in_background`),
    /// when one was started, and gives the plan's file when it was saved.
    pub fn wait_for_tuner(&mut self) -> Option<PathBuf> {
        self.tuner.take()?.join().ok().flatten()
    }

    /// The source's description, recorded with every kept frame.
    pub fn set_source_label(&mut self, label: &str) {
        self.source_label.clear();
        self.source_label.push_str(label);
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    pub fn selector_mut(&mut self) -> &mut Selector {
        &mut self.selector
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// The last frame's detections.
    pub fn detections(&self) -> &Detections {
        &self.detections
    }

    /// What happened to the last frame handled through [`FrameHandler::handle`].
    pub fn last_outcome(&self) -> Option<&FrameOutcome> {
        self.last.as_ref()
    }

    /// Runs every stage after the gate on one frame, stamped `timestamp_ms` (the gate has
    /// just judged it: its luma grid is this frame's).
    fn process(&mut self, frame: &Frame, timestamp_ms: u64) -> Result<FrameOutcome, PipelineError> {
        let t0 = Instant::now();
        self.detector
            .detect(&frame.rgb, frame.width, frame.height, &mut self.detections)
            .map_err(PipelineError::Detector)?;
        let t1 = Instant::now();
        let features = self.detector.embedding().unwrap_or(&[]);
        // The frame's luma grid for the look rule (the gate's, when it has judged this frame).
        let look = self
            .selector
            .wants_look()
            .then(|| self.gate.grid_of(&frame.rgb, frame.width, frame.height));
        let selection = self
            .selector
            .select_with_look(&self.detections, features, look, timestamp_ms)
            .map_err(PipelineError::Select)?;
        self.stats.frames += 1;
        self.stats.detect_time += t1 - t0;
        let t2 = Instant::now();

        let decision = selection.decision;
        let (mut stored, mut pending) = (false, false);
        if decision.keep {
            let record = make_record(
                frame,
                timestamp_ms,
                &self.source_label,
                &self.model_label,
                &self.detections,
                &self.detector.manifest().classes,
                &decision,
                self.selector.embedding(),
            );
            if let Some(context) = self.context.as_mut() {
                // Counted as kept now (the sketch knows it for the frames that follow); its
                // bytes are charged when it is stored with its context.
                context
                    .open_event(record, frame, &mut self.ready)
                    .map_err(|e| PipelineError::Store(StoreError::Spool(e)))?;
                self.selector.commit_kept(0);
                pending = true;
            } else if let Some(bytes) = self.put(&record, frame, &ContextSet::EMPTY)? {
                self.selector.commit_kept(bytes);
                stored = true;
            }
        }
        Ok(FrameOutcome {
            uncertainty: selection.uncertainty,
            decision,
            stored,
            pending,
            detections: self.detections.len(),
            detect_time: t1 - t0,
            select_time: t2 - t1,
        })
    }
}

impl<S: Sink> Pipeline<S> {
    /// Puts a kept frame into the sink and counts the outcome; the bytes stored, or None when
    /// the sink refused it (a full disk is a refusal, not the end of the job: selection goes
    /// on, and frames are stored again once space is freed).
    fn put(
        &mut self,
        record: &KeptRecord,
        frame: &Frame,
        context: &ContextSet,
    ) -> Result<Option<u64>, PipelineError> {
        let put = match self.sink.put(record, frame, context) {
            Err(StoreError::Spool(e)) if e.is_disk_full() => Err(e.to_string()),
            other => Ok(other.map_err(PipelineError::Store)?),
        };
        let refusal = match put {
            Ok(PutOutcome::Stored { bytes, evicted, .. }) => {
                self.stats.sink_evicted += evicted as u64;
                self.stats.kept += 1;
                return Ok(Some(bytes));
            }
            Ok(PutOutcome::Rejected { reason }) => format!(" ({reason:?})"),
            Err(disk_full) => format!(": {disk_full}"),
        };
        self.stats.sink_rejected += 1;
        // Logged at 1, 2, 4, 8, … refusals: visible, but not a flood.
        if self.stats.sink_rejected.is_power_of_two() {
            log::warn!(
                "store refused frame {}{refusal}; {} refused so far",
                frame.name,
                self.stats.sink_rejected
            );
        }
        Ok(None)
    }

    /// Stores the kept frames whose context is complete, and counts them in `tally`.
    fn store_ready(&mut self, tally: &mut Tally) -> Result<(), PipelineError> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let mut ready = std::mem::take(&mut self.ready);
        let mut result = Ok(());
        for mut event in ready.drain(..) {
            if let (Some(record), Ok(())) = (event.record.take(), &result) {
                match self.put(&record, &event.frame, &event.context) {
                    Ok(Some(bytes)) => {
                        self.selector.charge_bytes(bytes);
                        tally.kept(&record.reasons);
                        log::debug!(
                            "stored {} with {} context frames",
                            record.frame_name,
                            event.context.frames.len()
                        );
                    }
                    Ok(None) => {}
                    Err(e) => result = Err(e),
                }
            }
            if let Some(context) = self.context.as_mut() {
                context.recycle(event);
            }
        }
        self.ready = ready;
        result
    }

    /// Hands `frame` to the context as an after-frame of the kept frames waiting for it.
    fn feed_context(&mut self, frame: &Frame, timestamp_ms: u64) -> Result<(), PipelineError> {
        match self.context.as_mut() {
            Some(c) => c
                .feed_after(frame, timestamp_ms, &mut self.ready)
                .map_err(|e| PipelineError::Store(StoreError::Spool(e))),
            None => Ok(()),
        }
    }

    /// Gate, then every stage, on one frame; the kept frame goes to the tally (or waits for
    /// its context).
    fn decide(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        tally: &mut Tally,
    ) -> Result<(), PipelineError> {
        let stream_ms = frame.time_ms;
        if self
            .gate
            .skips(&frame.rgb, frame.width, frame.height, stream_ms)
        {
            self.stats.gated += 1;
            self.last = None;
            log::trace!(
                "frame {} gated (luma difference {:.2})",
                frame.name,
                self.gate.last_difference()
            );
            return Ok(());
        }
        log::trace!(
            "frame {} passes the gate (luma difference {:.2})",
            frame.name,
            self.gate.last_difference()
        );
        let outcome = self.process(frame, info.timestamp_ms)?;
        let s = &outcome.decision.scores;
        log::trace!(
            "frame {} u {:.3} n {:.3} value {:.3} threshold {:.3} keep {}",
            frame.name,
            s.uncertainty,
            s.novelty,
            s.value,
            s.threshold,
            outcome.stored || outcome.pending
        );
        if outcome.stored || outcome.pending {
            if outcome.stored {
                tally.kept(&outcome.decision.reasons);
            }
            log::debug!(
                "kept {} value {:.3} (u {:.3}, n {:.3}) {:?}",
                frame.name,
                s.value,
                s.uncertainty,
                s.novelty,
                outcome.decision.reasons
            );
        }
        self.last = Some(outcome);
        Ok(())
    }
}

impl<S: Sink> FrameHandler for Pipeline<S> {
    type Error = PipelineError;

    /// The context first takes the frame as an after-frame of earlier keeps, then the frame is
    /// decided, then it joins the ring of frames before the next keep.
    fn handle(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        tally: &mut Tally,
    ) -> Result<(), PipelineError> {
        self.feed_context(frame, info.timestamp_ms)?;
        let decided = self.decide(frame, info, tally);
        if let Some(c) = self.context.as_mut() {
            c.remember(frame, info.timestamp_ms);
        }
        self.store_ready(tally)?;
        decided
    }

    /// Stores the kept frames still waiting for after-frames with those they have.
    fn finish(&mut self, tally: &mut Tally) -> Result<(), PipelineError> {
        if let Some(c) = self.context.as_mut() {
            c.drain(&mut self.ready);
        }
        self.store_ready(tally)
    }
}

/// Builds the record of a kept frame: its detections as pre-annotations, its scores, its
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::manifest::Precision;
    use crate::store::Discard;
    use crate::util::testing::TempDir;

    /// `detector.tune_in_background`: a pipeline that starts without a kernel plan measures one
    /// on a thread of its own and saves it; the next one runs it and measures nothing. Off, a
    /// missing plan is only logged.
    #[test]
    fn a_missing_kernel_plan_is_measured_in_the_background_for_the_next_start() {
        let dir = TempDir::new("tune-background");
        let mut config = Config::default();
        config.detector.precision = Precision::Fp32;
        config.detector.tuning_dir = Some(dir.path().to_path_buf());
        let manifest = Manifest::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/yolox_nano.toml"
        )))
        .unwrap();
        let frame = Some((640, 360));
        let mut off = Pipeline::new(&config, manifest.clone(), Discard, frame).unwrap();
        assert!(off.detector().plan_wanted().is_some());
        assert_eq!(off.wait_for_tuner(), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        config.detector.tune_in_background = true;
        let mut first = Pipeline::new(&config, manifest.clone(), Discard, frame).unwrap();
        let wanted = first
            .detector()
            .plan_wanted()
            .cloned()
            .expect("no plan yet");
        let file = first.wait_for_tuner().expect("a plan saved");
        assert_eq!(file, tune::plan_path(dir.path(), &wanted.key));
        assert!(tune::read_plan(dir.path(), &wanted.key).unwrap().is_some());

        let mut next = Pipeline::new(&config, manifest, Discard, frame).unwrap();
        assert!(next.detector().plan_wanted().is_none());
        assert_eq!(next.wait_for_tuner(), None);
    }
}
