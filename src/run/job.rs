//! `edgesieve run`: the main job on the device. Opens the spool (recovering from a crash), loads
//! the sketch earlier runs saved, runs the source through the pipeline into the spool, and saves
//! the sketch again, whatever happened to the input.

use std::fmt;
use std::path::{Path, PathBuf};

use super::pipeline::{load_manifest, Pipeline, PipelineError, RunStats};
use super::shutdown::Shutdown;
use super::{run_job, JobError, JobOptions, Summary};
use crate::config::Config;
use crate::select::sketch_file::{load_sketch, save_sketch, SketchFileError};
use crate::source::SourceError;
use crate::store::spool::{Spool, SpoolError};

/// The sketch's file in the spool directory.
pub const SKETCH_FILE: &str = "sketch.bin";

/// Why the main job could not run or stopped on an error.
#[derive(Debug)]
pub enum RunError {
    Source(SourceError),
    Spool(SpoolError),
    Pipeline(PipelineError),
    Sketch(SketchFileError),
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
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let r = &s.tally.reasons;
        write!(
            f,
            "{} frames seen, {} kept ({:.2}%, target {:.2}%), {} failed; reasons: value {}, explore {}, trigger {}, rare class {}; spool rejected {}, evicted {}; {:.1} frames/s",
            s.frames,
            s.tally.kept,
            s.kept_ratio() * 100.0,
            self.target_keep_ratio * 100.0,
            s.failed,
            r.value,
            r.explore,
            r.trigger,
            r.rare_class,
            self.stats.sink_rejected,
            self.stats.sink_evicted,
            s.fps()
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
    // Spool::open recovers from an earlier crash and logs what it found.
    let (spool, _recovery) =
        Spool::open(spool_dir, config.spool.clone()).map_err(RunError::Spool)?;
    let mut pipeline = Pipeline::new(config, manifest, spool).map_err(RunError::Pipeline)?;
    let sketch_path: PathBuf = spool_dir.join(SKETCH_FILE);
    if let Some(sketch) = load_sketch(&sketch_path).map_err(RunError::Sketch)? {
        log::info!(
            "sketch {}: {} centres from earlier runs",
            sketch_path.display(),
            sketch.len()
        );
        *pipeline.selector_mut().sketch_mut() = sketch;
    }
    let mut source = crate::source::open_with(input, &config.input).map_err(RunError::Source)?;
    let described = source.describe();
    pipeline.set_source_label(&described);
    log::info!(
        "reading {described}; model {}",
        pipeline.detector().model_path().display()
    );
    let start_ms = if config.input.start_ms > 0 {
        config.input.start_ms
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let options = JobOptions { start_ms, shutdown };
    let result = run_job(source.as_mut(), &mut pipeline, &options);
    // Whatever happened to the input, what was kept stays kept: save the sketch, then report.
    save_sketch(&sketch_path, pipeline.selector().sketch()).map_err(RunError::Sketch)?;
    let summary = result.map_err(|e| RunError::Frame(Box::new(e)))?;
    Ok(RunReport {
        summary,
        stats: pipeline.stats(),
        target_keep_ratio: config.policy.target_keep_ratio,
    })
}
