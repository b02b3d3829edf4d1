//! A replay: a source through the pipeline `edgesieve run` uses, by the library's job loop
//! ([`run_job`]), over [`Discard`] (every keep decision counts as stored). Each part of the
//! eval hands [`replay`] what it records of a frame; the loop itself is the library's.

use crate::Options;
use edgesieve::run::pipeline::{load_manifest, FrameOutcome, Pipeline, PipelineError};
use edgesieve::run::{run_job, FrameHandler, FrameInfo, JobOptions, Stop, Summary, Tally};
use edgesieve::source::{Frame, FrameSource};
use edgesieve::store::Discard;

/// A fresh pipeline with the eval's configuration, its detector shaped for `source`'s frames
/// as `run` shapes it.
pub fn new_pipeline(opts: &Options, source: &dyn FrameSource) -> Result<Pipeline<Discard>, String> {
    let manifest = load_manifest(&opts.config, &opts.manifest).map_err(crate::err)?;
    Pipeline::new(&opts.config, manifest, Discard, source.frame_size()).map_err(crate::err)
}

/// The pipeline, then `record(pipeline, frame, outcome)` of each frame.
struct Replay<F> {
    pipeline: Pipeline<Discard>,
    record: F,
}

impl<F> FrameHandler for Replay<F>
where
    F: FnMut(&Pipeline<Discard>, &Frame, &FrameOutcome),
{
    type Error = PipelineError;

    fn handle(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        tally: &mut Tally,
    ) -> Result<(), PipelineError> {
        // The pipeline's own handler runs the frame (and tallies what it keeps); the replay
        // only records what came out.
        self.pipeline.handle(frame, info, tally)?;
        if let Some(outcome) = self.pipeline.last_outcome() {
            (self.record)(&self.pipeline, frame, outcome);
        }
        Ok(())
    }
}

/// Runs every frame of `source` through `pipeline`, stamped `start_ms` plus the frame's stream
/// time, and calls `record` after each. Frames that fail to decode are skipped (and counted in
/// the summary); a frame the pipeline fails on, or a source that fails for good, is an error.
pub fn replay<F>(
    pipeline: Pipeline<Discard>,
    source: &mut dyn FrameSource,
    start_ms: u64,
    record: F,
) -> Result<Summary, String>
where
    F: FnMut(&Pipeline<Discard>, &Frame, &FrameOutcome),
{
    let mut handler = Replay { pipeline, record };
    let options = JobOptions {
        start_ms,
        shutdown: None,
        ..JobOptions::default()
    };
    let summary = run_job(source, &mut handler, &options).map_err(crate::err)?;
    if let Stop::SourceFailed(e) = &summary.stop {
        return Err(format!(
            "input stopped after {} frames: {e}",
            summary.frames
        ));
    }
    Ok(summary)
}
