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
    /// The model input (width, height) the detector was shaped for.
    pub input: (u32, u32),
    pub frames: usize,
    pub detections: usize,
    pub times: StageTimes,
    /// The fastest frame's inference, in ms: on a shared machine, the time least disturbed by
    /// the rest of it (every frame runs the same shape, whatever it shows).
    pub fastest_inference: f64,
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
    fastest_inference: Duration,
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
            fastest_inference: Duration::MAX,
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
        self.fastest_inference = self.fastest_inference.min(t3 - t2);
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
    let input_size = (
        detector.manifest().input.width,
        detector.manifest().input.height,
    );
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
        input: input_size,
        frames: timer.timed,
        detections: timer.detections,
        times: StageTimes {
            decode: ms(sum[0]) / n,
            preprocess: ms(sum[1]) / n,
            inference: ms(sum[2]) / n,
            postprocess: ms(sum[3]) / n,
        },
        fastest_inference: ms(timer.fastest_inference),
    })
}

/// One kernel's figures in `edgesieve bench --tune`.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneRow {
    /// `detector.matmul_kernel`; None: tract's pick.
    pub kernel: Option<String>,
    /// Inference milliseconds of the fastest frame of all rounds (what the kernel takes when
    /// the rest of the machine leaves it alone), by which the rows are sorted.
    pub fastest_ms: f64,
    /// Inference milliseconds per frame, the best round's mean.
    pub inference_ms: f64,
    /// Detections per frame (the same kernel-wide: a check that they compute the same).
    pub detections: f64,
}

/// `edgesieve bench --tune`: the inference time of `options` with tract's pick and with each of
/// `candidates` for its matrix products, `rounds` times round-robin (so that a noisy spell of the
/// machine falls on every kernel alike); per kernel its fastest frame and its best round's mean,
/// by fastest frame first. The fastest frame is the steadier figure on a shared machine: a
/// round's mean moves with whatever else runs during it, by more than the kernels differ.
pub fn tune(
    manifest: &Manifest,
    options: &DetectorOptions,
    candidates: &[String],
    input: &str,
    frames: usize,
    warmup: usize,
    rounds: usize,
) -> Result<Vec<TuneRow>, BenchError> {
    let kernels: Vec<Option<String>> = std::iter::once(None)
        .chain(candidates.iter().cloned().map(Some))
        .collect();
    let mut rows: Vec<TuneRow> = kernels
        .into_iter()
        .map(|kernel| TuneRow {
            kernel,
            fastest_ms: f64::INFINITY,
            inference_ms: f64::INFINITY,
            detections: 0.0,
        })
        .collect();
    for _ in 0..rounds.max(1) {
        for row in rows.iter_mut() {
            let options = DetectorOptions {
                matmul_kernel: row.kernel.clone(),
                ..options.clone()
            };
            let bench = bench_one(manifest, &options, input, frames, warmup)?;
            row.fastest_ms = row.fastest_ms.min(bench.fastest_inference);
            row.inference_ms = row.inference_ms.min(bench.times.inference);
            row.detections = bench.detections as f64 / bench.frames as f64;
        }
    }
    rows.sort_by(|a, b| a.fastest_ms.total_cmp(&b.fastest_ms));
    Ok(rows)
}

/// Prints `tune`'s rows beside tract's pick, and what to set: the fastest kernel when it beats
/// tract's pick by more than `margin` (a fraction; less is within a noisy machine's spread).
pub fn print_tune(rows: &[TuneRow], margin: f64) {
    let Some(pick) = rows.iter().find(|r| r.kernel.is_none()) else {
        return;
    };
    println!(
        "{:<28} {:>13} {:>8} {:>13} {:>8} {:>8}",
        "matmul kernel", "fastest frame", "vs pick", "best mean ms", "vs pick", "det/frm"
    );
    for r in rows {
        println!(
            "{:<28} {:>13.2} {:>8.2} {:>13.2} {:>8.2} {:>8.1}",
            r.kernel.as_deref().unwrap_or("(tract's pick)"),
            r.fastest_ms,
            r.fastest_ms / pick.fastest_ms,
            r.inference_ms,
            r.inference_ms / pick.inference_ms,
            r.detections
        );
    }
    match rows.first() {
        Some(TuneRow {
            kernel: Some(k),
            fastest_ms,
            ..
        }) if *fastest_ms < pick.fastest_ms * (1.0 - margin) => println!(
            "fastest here: {k}, its fastest frame {:.0}% faster than tract's pick's: \
             detector.matmul_kernel = \"{k}\" (or --matmul-kernel {k})",
            100.0 * (1.0 - fastest_ms / pick.fastest_ms)
        ),
        _ => println!(
            "no kernel beats tract's pick here by more than {:.0}%: leave detector.matmul_kernel \
             unset",
            100.0 * margin
        ),
    }
}

pub fn print_header() {
    println!(
        "{:<6} {:>7} {:>7} {:>6} {:>9} {:>11} {:>10} {:>12} {:>9} {:>8} {:>8}",
        "model",
        "input",
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
        "{:<6} {:>7} {:>7} {:>6} {:>9.2} {:>11.2} {:>10.2} {:>12.3} {:>9.2} {:>8.1} {:>8.1}",
        r.precision.to_string(),
        format!("{}x{}", r.input.0, r.input.1),
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

/// onnxruntime's inference time for one configuration, from `models/ort_bench.py --rows`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrtRow {
    pub precision: Precision,
    pub threads: usize,
    pub input: (u32, u32),
    pub inference_ms: f64,
    /// The fastest frame's milliseconds (absent from an older script's line).
    pub fastest_ms: Option<f64>,
}

/// Parses one `ort PRECISION THREADS WxH MS [FASTEST_MS]` line of `ort_bench.py --rows`.
pub fn parse_ort_row(line: &str) -> Option<OrtRow> {
    let mut it = line.split_whitespace();
    if it.next()? != "ort" {
        return None;
    }
    let precision = it.next()?.parse().ok()?;
    let threads = it.next()?.parse().ok()?;
    let (w, h) = it.next()?.split_once('x')?;
    let inference_ms = it.next()?.parse().ok()?;
    let fastest_ms = match it.next() {
        Some(v) => Some(v.parse().ok()?),
        None => None,
    };
    Some(OrtRow {
        precision,
        threads,
        input: (w.parse().ok()?, h.parse().ok()?),
        inference_ms,
        fastest_ms,
    })
}

/// Times the same configurations under onnxruntime with `script` (models/ort_bench.py) on
/// `frames` frames of `input`. Err says why there is no comparison (no python3, no
/// onnxruntime, the script failed); the tract figures stand without it.
pub fn ort_rows(
    script: &std::path::Path,
    input: &str,
    frames: usize,
    rows: &[BenchRow],
) -> Result<Vec<OrtRow>, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let join = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v.dedup();
        v.join(",")
    };
    let shapes = join(
        rows.iter()
            .map(|r| format!("{}x{}", r.input.0, r.input.1))
            .collect(),
    );
    let precisions = join(rows.iter().map(|r| r.precision.to_string()).collect());
    let threads = join(rows.iter().map(|r| r.threads.to_string()).collect());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(&python)
        .arg(script)
        .args([
            "--rows",
            "--frames",
            &frames.to_string(),
            "--frames-dir",
            input,
        ])
        .args([
            "--shapes",
            &shapes,
            "--precisions",
            &precisions,
            "--threads",
            &threads,
        ])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        return Err(format!(
            "{} failed ({}): {last}",
            script.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_ort_row)
        .collect())
}

/// Per configuration (precision, threads, input), the row of the fastest inference: over
/// rounds of `edgesieve bench --rounds`, the least disturbed by the rest of the machine; its
/// fastest frame is the fastest of all rounds.
pub fn best_rows(rows: &[BenchRow]) -> Vec<BenchRow> {
    best_by(
        rows,
        |r| (r.precision, r.threads, r.input),
        |r| r.times.inference,
        |b, r| b.fastest_inference = b.fastest_inference.min(r.fastest_inference),
    )
}

/// [`best_rows`] for onnxruntime's rows.
pub fn best_ort_rows(rows: &[OrtRow]) -> Vec<OrtRow> {
    best_by(
        rows,
        |r| (r.precision, r.threads, r.input),
        |r| r.inference_ms,
        |b, r| {
            b.fastest_ms = match (b.fastest_ms, r.fastest_ms) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            }
        },
    )
}

/// The item of least `ms` per `key`, in the order the keys first appear, with `fastest` folding
/// into it the fastest frame of every other item of its key.
fn best_by<T: Clone, K: PartialEq>(
    items: &[T],
    key: impl Fn(&T) -> K,
    ms: impl Fn(&T) -> f64,
    fastest: impl Fn(&mut T, &T),
) -> Vec<T> {
    let mut best: Vec<T> = Vec::new();
    for item in items {
        match best.iter_mut().find(|b| key(b) == key(item)) {
            Some(b) if ms(item) < ms(b) => {
                let before = std::mem::replace(b, item.clone());
                fastest(b, &before);
            }
            Some(b) => fastest(b, item),
            None => best.push(item.clone()),
        }
    }
    best
}

/// tract's inference next to onnxruntime's for every configuration both ran: per frame, and
/// the fastest frame of each (what each takes when the rest of a shared machine leaves it alone,
/// the steadier ratio there).
pub fn print_comparison(rows: &[BenchRow], ort: &[OrtRow]) {
    println!(
        "{:<6} {:>7} {:>7} {:>14} {:>16} {:>14} {:>22}",
        "model",
        "input",
        "threads",
        "tract ms",
        "onnxruntime ms",
        "tract / ort",
        "fastest frames ms"
    );
    for r in rows {
        let Some(o) = ort
            .iter()
            .find(|o| (o.precision, o.threads, o.input) == (r.precision, r.threads, r.input))
        else {
            continue;
        };
        let fastest = o.fastest_ms.map_or(String::new(), |f| {
            format!(
                "{:.2} / {f:.2} = {:.2}x",
                r.fastest_inference,
                r.fastest_inference / f
            )
        });
        println!(
            "{:<6} {:>7} {:>7} {:>14.2} {:>16.2} {:>13.2}x {:>22}",
            r.precision.to_string(),
            format!("{}x{}", r.input.0, r.input.1),
            r.threads,
            r.times.inference,
            o.inference_ms,
            r.times.inference / o.inference_ms,
            fastest
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over rounds, each configuration keeps its fastest round, in first-seen order, and the
    /// fastest frame of all its rounds.
    #[test]
    fn best_rows_keep_each_configurations_fastest_round() {
        let row = |input: (u32, u32), ms: f64, fastest: f64| OrtRow {
            precision: Precision::Fp32,
            threads: 1,
            input,
            inference_ms: ms,
            fastest_ms: Some(fastest),
        };
        let rounds = [
            row((416, 416), 20.0, 15.0),
            row((416, 256), 12.0, 11.0),
            row((416, 416), 17.5, 16.5),
            row((416, 256), 13.0, 11.5),
        ];
        assert_eq!(
            best_ort_rows(&rounds),
            vec![row((416, 416), 17.5, 15.0), row((416, 256), 12.0, 11.0)]
        );
    }

    #[test]
    fn ort_rows_parse_and_bad_lines_are_skipped() {
        assert_eq!(
            parse_ort_row("ort fp32 1 416x256 19.420"),
            Some(OrtRow {
                precision: Precision::Fp32,
                threads: 1,
                input: (416, 256),
                inference_ms: 19.42,
                fastest_ms: None,
            })
        );
        assert_eq!(
            parse_ort_row("ort fp32 1 416x256 19.420 17.250").and_then(|r| r.fastest_ms),
            Some(17.25)
        );
        for bad in [
            "",
            "onnxruntime 1.32.0, 10 frames",
            "ort int4 1 416x256 1.0",
            "ort int8 one 416x256 1.0",
            "ort int8 1 416 1.0",
            "ort int8 1 416x256",
            "ort int8 1 416x256 1.0 fast",
        ] {
            assert_eq!(parse_ort_row(bad), None, "{bad:?}");
        }
    }
}
