//! `edgesieve bench`: per-stage milliseconds per frame on real frames, for each precision and
//! thread count. Figures are printed, never asserted.

use super::{run_job, FrameHandler, FrameInfo, JobOptions, Stop, Tally};
use crate::detect::manifest::{Manifest, Precision};
use crate::detect::model::{Detector, DetectorError, DetectorOptions};
use crate::detect::postprocess::Detections;
use crate::source::{Frame, SourceError};
use std::fmt;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum BenchError {
    Source(SourceError),
    Detector(DetectorError),
    NoFrames(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Source(_) => f.write_str("frames"),
            BenchError::Detector(e) => e.fmt(f),
            BenchError::NoFrames(s) => write!(f, "no frame could be decoded from {s}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Source(e) => Some(e),
            BenchError::Detector(e) => e.source(),
            BenchError::NoFrames(_) => None,
        }
    }
}

/// Mean milliseconds per frame of each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
}

impl StageTimes {
    pub fn total(&self) -> f64 {
        self.decode + self.preprocess + self.inference + self.postprocess
    }
}

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub precision: Precision,
    pub threads: usize,
    pub frames: usize,
    pub detections: usize,
    pub times: StageTimes,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times each detector step per frame, after `warmup` untimed frames, until `frames` are timed.
pub struct StageTimer {
    detector: Detector,
    dets: Detections,
    warmup: usize,
    frames: usize,
    seen: usize,
    timed: usize,
    detections: usize,
    /// decode, preprocess, inference, postprocess
    sum: [Duration; 4],
}

impl StageTimer {
    pub fn new(detector: Detector, frames: usize, warmup: usize) -> StageTimer {
        StageTimer {
            detector,
            dets: Detections::new(),
            warmup,
            frames,
            seen: 0,
            timed: 0,
            detections: 0,
            sum: [Duration::ZERO; 4],
        }
    }
}

impl FrameHandler for StageTimer {
    type Error = DetectorError;

    fn handle(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        _tally: &mut Tally,
    ) -> Result<(), DetectorError> {
        let t1 = Instant::now();
        self.detector
            .preprocess(&frame.rgb, frame.width, frame.height)?;
        let t2 = Instant::now();
        self.detector.infer()?;
        let t3 = Instant::now();
        self.detector.postprocess(&mut self.dets)?;
        let t4 = Instant::now();
        self.seen += 1;
        if self.seen <= self.warmup {
            return Ok(());
        }
        for (s, d) in self
            .sum
            .iter_mut()
            .zip([info.read_time, t2 - t1, t3 - t2, t4 - t3])
        {
            *s += d;
        }
        self.detections += self.dets.len();
        self.timed += 1;
        Ok(())
    }

    fn wants_more(&self) -> bool {
        self.timed < self.frames
    }
}

/// Runs `frames` frames of `input` (after `warmup` untimed ones) through one configuration.
pub fn bench_one(
    manifest: &Manifest,
    options: &DetectorOptions,
    input: &str,
    frames: usize,
    warmup: usize,
) -> Result<BenchRow, BenchError> {
    let detector = Detector::load(manifest.clone(), options).map_err(BenchError::Detector)?;
    let mut source = crate::source::open(input).map_err(BenchError::Source)?;
    let mut timer = StageTimer::new(detector, frames, warmup);
    let summary = run_job(source.as_mut(), &mut timer, &JobOptions::default())
        .map_err(|e| BenchError::Detector(e.error))?;
    if let Stop::SourceFailed(e) = summary.stop {
        return Err(BenchError::Source(e));
    }
    if timer.timed == 0 {
        return Err(BenchError::NoFrames(input.to_string()));
    }
    let n = timer.timed as f64;
    let sum = timer.sum;
    Ok(BenchRow {
        precision: options.precision,
        threads: options.threads,
        frames: timer.timed,
        detections: timer.detections,
        times: StageTimes {
            decode: ms(sum[0]) / n,
            preprocess: ms(sum[1]) / n,
            inference: ms(sum[2]) / n,
            postprocess: ms(sum[3]) / n,
        },
    })
}

pub fn print_header() {
    println!(
        "{:<6} {:>7} {:>6} {:>9} {:>11} {:>10} {:>12} {:>9} {:>8} {:>8}",
        "model",
        "threads",
        "frames",
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "total",
        "fps",
        "det/frm"
    );
}

pub fn print_row(r: &BenchRow) {
    let t = r.times;
    println!(
        "{:<6} {:>7} {:>6} {:>9.2} {:>11.2} {:>10.2} {:>12.3} {:>9.2} {:>8.1} {:>8.1}",
        r.precision.to_string(),
        r.threads,
        r.frames,
        t.decode,
        t.preprocess,
        t.inference,
        t.postprocess,
        t.total(),
        1e3 / t.total(),
        r.detections as f64 / r.frames as f64
    );
}
