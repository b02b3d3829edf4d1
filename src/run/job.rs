//! `edgesieve run`: the main job on the device. Opens the spool (recovering from a crash), loads
//! the sketch earlier runs saved, runs the source through the pipeline into the spool, and saves
//! the sketch again, whatever happened to the input.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::pipeline::{load_manifest, Pipeline, PipelineError, RunStats};
use super::shutdown::Shutdown;
use super::status::{Counters, StatusWriter};
use super::upload::{make_uploader, UploadJobError, UploadThread};
use super::{run_job, JobError, JobOptions, Progress, Summary};
use super::{FrameHandler, FrameInfo, Tally};
use crate::config::Config;
use crate::select::sketch_file::{load_sketch_file, save_sketch_at, SketchFileError};
use crate::select::SEEN_CENTRES;
use crate::source::Frame;
use crate::source::SourceError;
use crate::store::spool::{Spool, SpoolError};
use crate::upload::{SharedSpool, UploadError, UploadStats};

/// The sketch's file in the spool directory.
pub const SKETCH_FILE: &str = "sketch.bin";
/// The sketch of every frame seen, in the spool directory (see [`crate::select::SeenSketch`]).
pub const SEEN_FILE: &str = "seen.bin";
/// Frames between two saves of [`SEEN_FILE`] (and one at the end of a run): a kill forgets
/// at most this many seen frames, which then only count as unseen on the next run.
const SEEN_SAVE_EVERY: u64 = 1000;

/// Why the main job could not run or stopped on an error.
#[derive(Debug)]
pub enum RunError {
    Source(SourceError),
    Spool(SpoolError),
    Pipeline(PipelineError),
    Sketch(SketchFileError),
    /// `[upload]` is configured but the uploader cannot start (token, CA file, manifest).
    Upload(UploadJobError),
    /// The upload thread could not be started.
    Thread(std::io::Error),
    /// A frame failed in a way that stops the job (the spool could not write, say).
    Frame(Box<JobError<PipelineError>>),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Source(e) => e.fmt(f),
            RunError::Spool(e) => e.fmt(f),
            RunError::Pipeline(e) => e.fmt(f),
            RunError::Sketch(e) => e.fmt(f),
            RunError::Upload(e) => e.fmt(f),
            RunError::Thread(e) => write!(f, "cannot start the upload thread: {e}"),
            RunError::Frame(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Source(e) => e.source(),
            RunError::Spool(e) => e.source(),
            RunError::Pipeline(e) => e.source(),
            RunError::Sketch(e) => e.source(),
            RunError::Upload(e) => e.source(),
            RunError::Thread(e) => Some(e),
            RunError::Frame(e) => e.source(),
        }
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    pub stats: RunStats,
    pub target_keep_ratio: f64,
    /// What the upload thread did, when `[upload]` is configured (`Err`: it stopped on an error,
    /// already logged).
    pub upload: Option<Result<UploadStats, UploadError>>,
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let r = &s.tally.reasons;
        write!(
            f,
            "{} frames seen, {} kept ({:.2}%, target {:.2}%), {} failed, {} uniform, {} frozen, {} gated{}, {} dropped{}; reasons: value {}, explore {}, trigger {}, rare class {}; spool rejected {}, evicted {}; {:.1} frames/s{}",
            s.frames,
            s.tally.kept,
            s.kept_ratio() * 100.0,
            self.target_keep_ratio * 100.0,
            s.failed,
            s.uniform,
            s.frozen,
            self.stats.gated,
            GateSaving(&self.stats),
            s.dropped,
            DropShare(s),
            r.value,
            r.explore,
            r.trigger,
            r.rare_class,
            self.stats.sink_rejected,
            self.stats.sink_evicted,
            s.fps(),
            Latency(&s.latency)
        )?;
        match &self.upload {
            Some(Ok(u)) => write!(f, "; {u}"),
            Some(Err(e)) => write!(f, "; uploading stopped: {e}"),
            None => Ok(()),
        }
    }
}

/// " (x% of the frames in)" after the dropped count, when a live source dropped any.
struct DropShare<'a>(&'a Summary);

impl fmt::Display for DropShare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.dropped == 0 {
            return Ok(());
        }
        let total = s.frames + s.failed + s.dropped;
        write!(
            f,
            " ({:.1}% of the frames in)",
            100.0 * s.dropped as f64 / total as f64
        )
    }
}

/// ", decision latency p50 x ms, p99 y ms" when any frame was decided.
struct Latency<'a>(&'a crate::util::histogram::LatencyHistogram);

impl fmt::Display for Latency<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |q| self.0.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        match (ms(0.5), ms(0.99)) {
            (Some(p50), Some(p99)) => {
                write!(f, ", decision latency p50 {p50:.0} ms, p99 {p99:.0} ms")
            }
            _ => Ok(()),
        }
    }
}

/// " (x% of frames, ~y s of detector time saved)" after the gated count, when any were gated.
struct GateSaving<'a>(&'a RunStats);

impl fmt::Display for GateSaving<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.gated == 0 || s.frames == 0 {
            return Ok(());
        }
        let per_frame = s.detect_time.as_secs_f64() / s.frames as f64;
        write!(
            f,
            " ({:.1}% of frames, ~{:.1} s of detector time saved)",
            100.0 * s.gated as f64 / (s.gated + s.frames) as f64,
            per_frame * s.gated as f64
        )
    }
}

/// Runs `input` (a source spec, see [`crate::source::open_with`]) into the spool at `spool_dir`
/// with `config` (already validated); `default_manifest` is the model used when the config names
/// none. Stops early when `shutdown` is asked for, finishing the frame in hand.
pub fn run_selection(
    input: &str,
    spool_dir: &Path,
    config: &Config,
    default_manifest: &Path,
    shutdown: Option<&Shutdown>,
) -> Result<RunReport, RunError> {
    let manifest = load_manifest(config, default_manifest).map_err(RunError::Pipeline)?;
    let uploader = if config.upload.enabled() {
        Some(make_uploader(config, default_manifest).map_err(RunError::Upload)?)
    } else {
        None
    };
    // Spool::open recovers from an earlier crash and logs what it found.
    let (spool, _recovery) =
        Spool::open(spool_dir, config.spool.clone()).map_err(RunError::Spool)?;
    let spool = SharedSpool::new(spool);
    // Frame times count from here: a live source's reader starts its capture clock when it
    // opens, just below.
    let start_ms = if config.input.start_ms > 0 {
        config.input.start_ms
    } else {
        (unix_now_s() * 1e3) as u64
    };
    // The source opens first: the detector's input is shaped for its frames.
    let mut source = crate::source::open_with(input, &config.input).map_err(RunError::Source)?;
    let mut pipeline = Pipeline::new(config, manifest, spool.clone(), source.frame_size())
        .map_err(RunError::Pipeline)?;
    let sketch_path: PathBuf = spool_dir.join(SKETCH_FILE);
    let space = pipeline.selector().space_id();
    let mut high_id = match load_sketch_file(&sketch_path) {
        Ok(Some(saved)) if saved.space == Some(space) => {
            log::info!(
                "sketch {}: {} centres from earlier runs (up to spool entry {})",
                sketch_path.display(),
                saved.sketch.len(),
                saved.high_id
            );
            *pipeline.selector_mut().sketch_mut() = saved.sketch;
            saved.high_id
        }
        Ok(Some(saved)) => {
            // Made with another model, calibration or format: its centres (and the embeddings
            // the spool's entries hold) are in other coordinates and would score novelty
            // wrongly. Kept aside; the sketch starts afresh from the frames kept from now on.
            let reason = format!(
                "sketch {} was made in another embedding space ({}; now {space:016x}): the model or its calibration changed",
                sketch_path.display(),
                saved
                    .space
                    .map_or("format before version 3".to_string(), |s| format!("{s:016x}"))
            );
            log::warn!("{reason}; quarantining it and starting a new sketch");
            crate::store::spool::quarantine_file(spool_dir, SKETCH_FILE, &reason);
            spool.lock().pending().max().unwrap_or(0)
        }
        Ok(None) => 0,
        Err(e) => {
            let reason = with_source(&e);
            log::warn!("{reason}; quarantining it and rebuilding the sketch from the spool");
            crate::store::spool::quarantine_file(spool_dir, SKETCH_FILE, &reason);
            0
        }
    };
    // Entries stored after the last sketch save (a kill in between) count as seen too.
    high_id = fold_spool_into_sketch(&mut pipeline, high_id);
    load_seen(&mut pipeline, spool_dir, space);
    let described = source.describe();
    pipeline.set_source_label(&described);
    log::info!(
        "reading {described}; model {}",
        pipeline.detector().model_path().display()
    );
    let options = JobOptions {
        start_ms,
        shutdown,
        log_every: config.status.log_every(),
    };
    // Uploading starts once the model loaded and the input opened, so a bad model or input
    // fails the run before anything leaves the spool. Its counters reach the status file
    // through `upload_stats`.
    let upload_stats = Arc::new(Mutex::new(UploadStats::default()));
    let upload_thread = match uploader {
        Some(mut u) => {
            u.publish_to(Arc::clone(&upload_stats));
            Some(
                UploadThread::spawn(u, spool.clone(), shutdown.cloned())
                    .map_err(RunError::Thread)?,
            )
        }
        None => None,
    };
    let mut saving = SavingSketch {
        pipeline: &mut pipeline,
        path: sketch_path,
        seen_path: spool_dir.join(SEEN_FILE),
        high_id,
        failures: 0,
        frames: 0,
        status: StatusWriter::new(&config.status),
        start_s: unix_now_s(),
        upload_stats,
    };
    let result = run_job(source.as_mut(), &mut saving, &options);
    // Whatever happened to the input, what was kept stays kept: save the sketch, then report.
    let saved = saving.save();
    saving.save_seen();
    // The uploader finishes the entry in hand; what it did not reach stays in the spool.
    let upload = upload_thread.map(UploadThread::finish);
    if let Ok(s) = &result {
        saving.write_status(&Progress {
            frames: s.frames,
            failed: s.failed,
            uniform: s.uniform,
            frozen: s.frozen,
            dropped: s.dropped,
            latency: &s.latency,
            now: Instant::now(),
        });
    }
    saved?;
    let summary = result.map_err(|e| RunError::Frame(Box::new(e)))?;
    Ok(RunReport {
        summary,
        stats: pipeline.stats(),
        target_keep_ratio: config.policy.target_keep_ratio,
        upload,
    })
}

/// Folds into the pipeline's sketch the embeddings of the spool entries above `high_id`;
/// returns the highest entry id now in the sketch.
fn fold_spool_into_sketch(pipeline: &mut Pipeline<SharedSpool>, high_id: u64) -> u64 {
    let mut points = Vec::new();
    let mut high = high_id;
    let records: Vec<_> = pipeline.sink().lock().iter_records().collect();
    for item in records {
        match item {
            Ok((id, record)) if id > high_id => {
                high = high.max(id);
                match <[f32; crate::select::embedding::EMBED_DIM]>::try_from(
                    record.embedding.as_slice(),
                ) {
                    Ok(point) if point.iter().all(|v| v.is_finite()) => points.push(point),
                    _ => log::warn!("spool entry {id:012}: unusable embedding, not in the sketch"),
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("{e}"),
        }
    }
    if !points.is_empty() {
        log::info!(
            "sketch: folded in {} spool entries stored after its last save",
            points.len()
        );
    }
    let sketch = pipeline.selector_mut().sketch_mut();
    for point in &points {
        sketch.insert(point);
    }
    high
}

/// Seconds since the Unix epoch, now.
fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `e` and, when it has one, its source: "cannot read X: No such file or directory".
fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Loads what earlier runs saw ([`SEEN_FILE`]) into the selector. The file is advisory: a
/// missing one is normal, a damaged one or one from another embedding space is set aside with
/// a warning and the run starts with nothing seen.
fn load_seen(pipeline: &mut Pipeline<SharedSpool>, spool_dir: &Path, space: u64) {
    let path = spool_dir.join(SEEN_FILE);
    let reason = match load_sketch_file::<SEEN_CENTRES>(&path) {
        Ok(None) => return,
        Ok(Some(saved)) if saved.space == Some(space) => {
            log::info!(
                "seen {}: {} centres summarise {} frames of earlier runs",
                path.display(),
                saved.sketch.len(),
                saved.sketch.total_weight()
            );
            pipeline
                .selector_mut()
                .set_seen_before(Box::new(saved.sketch));
            return;
        }
        Ok(Some(_)) => format!(
            "{} was made in another embedding space: the model or its calibration changed",
            path.display()
        ),
        Err(e) => with_source(&e),
    };
    log::warn!("{reason}; quarantining it (frames of earlier runs count as unseen)");
    crate::store::spool::quarantine_file(spool_dir, SEEN_FILE, &reason);
}

/// The pipeline, saving the sketch (atomically, with the highest spool id in it) after every
/// stored frame, so that a kill loses at most the frame in hand; and the seen sketch every
/// [`SEEN_SAVE_EVERY`] frames.
struct SavingSketch<'a> {
    pipeline: &'a mut Pipeline<SharedSpool>,
    path: PathBuf,
    seen_path: PathBuf,
    high_id: u64,
    failures: u64,
    /// Frames handled since the start.
    frames: u64,
    /// The status file (`[status]`), when configured, and the run's start (s since the epoch).
    status: Option<StatusWriter>,
    start_s: f64,
    /// The upload thread's counters as it last published them (zeros without `[upload]`).
    upload_stats: Arc<Mutex<UploadStats>>,
}

impl SavingSketch<'_> {
    /// Writes the status file (when configured) with the loop's counts `p` and the pipeline's,
    /// spool's and uploader's counters; a failure is the writer's warning.
    fn write_status(&mut self, p: &Progress<'_>) {
        if self.status.is_none() {
            return;
        }
        let counters = self.counters(p);
        if let Some(w) = self.status.as_mut() {
            let _ = w.write(&counters, p.now);
        }
    }

    /// The counters of the status file.
    fn counters(&self, p: &Progress<'_>) -> Counters {
        let stats = self.pipeline.stats();
        let spool = self.pipeline.sink().lock().stats();
        let upload = *self
            .upload_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (errors, warnings, last_error_ms) = crate::util::logger::problem_counts();
        let seconds = |q| p.latency.quantile(q).map_or(0.0, |d| d.as_secs_f64());
        Counters {
            frames_in: p.frames_in(),
            processed: stats.frames,
            gated: stats.gated,
            dropped: p.dropped,
            skipped: p.failed + p.uniform + p.frozen,
            kept: stats.kept,
            rejected: stats.sink_rejected,
            evicted: spool.evicted,
            spool_entries: spool.entries as u64,
            spool_bytes: spool.bytes,
            uploaded: upload.uploaded + upload.already_there + upload.completed,
            upload_bytes: upload.bytes,
            upload_quarantined: upload.quarantined,
            upload_retries: upload.retries,
            latency_p50_s: seconds(0.5),
            latency_p99_s: seconds(0.99),
            errors,
            warnings,
            last_error_s: last_error_ms as f64 / 1e3,
            start_s: self.start_s,
            now_s: unix_now_s(),
        }
    }

    /// Saves the seen sketch; a failure is a warning (it only makes the next run see less).
    fn save_seen(&mut self) {
        let selector = self.pipeline.selector();
        if let Err(e) = save_sketch_at(&self.seen_path, selector.seen(), 0, selector.space_id()) {
            log::warn!("{e}; the next run will not know this run's frames as seen");
        }
    }

    /// Saves the sketch. A full disk is a warning (retried on the next stored frame); other
    /// failures are errors.
    fn save(&mut self) -> Result<(), RunError> {
        let newest = self.pipeline.sink().lock().pending().max();
        if let Some(newest) = newest {
            self.high_id = self.high_id.max(newest);
        }
        let selector = self.pipeline.selector();
        match save_sketch_at(
            &self.path,
            selector.sketch(),
            self.high_id,
            selector.space_id(),
        ) {
            Ok(()) => {
                self.failures = 0;
                Ok(())
            }
            Err(e) => {
                let full = match &e {
                    SketchFileError::Write { source, .. } => {
                        source.kind() == std::io::ErrorKind::StorageFull
                            || source.raw_os_error() == Some(28)
                    }
                    _ => false,
                };
                if !full {
                    return Err(RunError::Sketch(e));
                }
                self.failures += 1;
                if self.failures.is_power_of_two() {
                    log::warn!("{e}: disk full; retrying after the next stored frame");
                }
                Ok(())
            }
        }
    }
}

impl FrameHandler for SavingSketch<'_> {
    type Error = PipelineError;

    fn handle(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        tally: &mut Tally,
    ) -> Result<(), PipelineError> {
        let before = tally.kept;
        self.pipeline.handle(frame, info, tally)?;
        if tally.kept != before {
            if let Err(e) = self.save() {
                log::warn!("{e}");
            }
        }
        self.frames += 1;
        if self.frames % SEEN_SAVE_EVERY == 0 {
            self.save_seen();
        }
        Ok(())
    }

    fn finish(&mut self, tally: &mut Tally) -> Result<(), PipelineError> {
        let before = tally.kept;
        self.pipeline.finish(tally)?;
        if tally.kept != before {
            if let Err(e) = self.save() {
                log::warn!("{e}");
            }
        }
        Ok(())
    }

    fn progress(&mut self, progress: &Progress<'_>) {
        if self.status.as_ref().is_some_and(|w| w.due(progress.now)) {
            self.write_status(progress);
        }
    }

    fn wants_more(&self) -> bool {
        self.pipeline.wants_more()
    }
}
