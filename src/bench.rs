//! `edgesieve bench`: per-stage milliseconds per frame on real frames, for each precision and
//! thread count. Figures are printed, never asserted.

use crate::detector::{Detector, DetectorError, DetectorOptions};
use crate::manifest::{Manifest, Precision};
use crate::postprocess::Detections;
use crate::source::{Frame, FrameSource, SourceError};
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
            BenchError::Source(e) => write!(f, "frames: {e}"),
            BenchError::Detector(e) => e.fmt(f),
            BenchError::NoFrames(s) => write!(f, "no frame could be decoded from {s}"),
        }
    }
}

impl std::error::Error for BenchError {}

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

/// Runs `frames` frames of `input` (after `warmup` untimed ones) through one configuration.
pub fn bench_one(
    manifest: &Manifest,
    options: &DetectorOptions,
    input: &str,
    frames: usize,
    warmup: usize,
) -> Result<BenchRow, BenchError> {
    let mut detector = Detector::load(manifest.clone(), options).map_err(BenchError::Detector)?;
    let mut source = FrameSource::open(input).map_err(BenchError::Source)?;
    let mut frame = Frame::new();
    let mut dets = Detections::new();
    let mut sum = [Duration::ZERO; 4];
    let (mut timed, mut seen, mut detections) = (0usize, 0usize, 0usize);
    while timed < frames {
        let t0 = Instant::now();
        match source.next_frame(&mut frame) {
            None => break,
            Some(Err(e)) if e.is_fatal() => return Err(BenchError::Source(e)),
            Some(Err(e)) => {
                log::warn!("{e}");
                continue;
            }
            Some(Ok(())) => {}
        }
        let t1 = Instant::now();
        detector
            .preprocess(&frame.rgb, frame.width, frame.height)
            .map_err(BenchError::Detector)?;
        let t2 = Instant::now();
        detector.infer().map_err(BenchError::Detector)?;
        let t3 = Instant::now();
        detector
            .postprocess(&mut dets)
            .map_err(BenchError::Detector)?;
        let t4 = Instant::now();
        seen += 1;
        if seen <= warmup {
            continue;
        }
        for (s, d) in sum.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            *s += d;
        }
        detections += dets.len();
        timed += 1;
    }
    if timed == 0 {
        return Err(BenchError::NoFrames(input.to_string()));
    }
    let n = timed as f64;
    Ok(BenchRow {
        precision: options.precision,
        threads: options.threads,
        frames: timed,
        detections,
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
