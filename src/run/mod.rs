//! The job: frames from a [`FrameSource`] through a [`FrameHandler`] until the input ends, a
//! stop is asked for, or the source fails.
//!
//! Written once, used by every command: `run` hands it a [`pipeline::Pipeline`] over the spool,
//! the evaluation the same pipeline over [`crate::store::Discard`], `detect` a
//! [`detections::DetectionWriter`] and `bench` a [`bench::StageTimer`]. The loop owns what they
//! share: skipping (and counting) frames that fail to decode, stopping at a fatal source error or
//! a shutdown signal, stamping frames with time, and the [`Summary`] with typed reason counts.

pub mod bench;
pub mod detections;
pub mod job;
pub mod pipeline;
pub mod shutdown;
pub mod status;
pub mod upload;

use std::fmt;
use std::time::{Duration, Instant};

use crate::source::{FaultChecks, Frame, FrameSource, SourceError};
use crate::store::record::Reason;
use crate::util::histogram::LatencyHistogram;
use shutdown::Shutdown;

/// What the loop knows about a frame besides its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Capture time, ms since the Unix epoch: the job's start time plus the frame's stream time.
    pub timestamp_ms: u64,
    /// Time the source took to read and decode the frame.
    pub read_time: Duration,
}

/// One stage of work per decoded frame (the pipeline, a detection printer, a timer).
pub trait FrameHandler {
    type Error: std::error::Error + 'static;

    /// Handles one decoded frame; kept frames are counted in `tally`. An error stops the job.
    fn handle(
        &mut self,
        frame: &Frame,
        info: &FrameInfo,
        tally: &mut Tally,
    ) -> Result<(), Self::Error>;

    /// False once the handler wants no more frames (a benchmark that has timed enough).
    fn wants_more(&self) -> bool {
        true
    }

    /// Called once when the frames end (input over, shutdown, source failure; not after a
    /// handler error): work held for later frames is finished. Frames it keeps count in
    /// `tally`. Nothing by default.
    fn finish(&mut self, _tally: &mut Tally) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called by the loop after each handled frame with its running counts (the status file
    /// is written from here); nothing by default.
    fn progress(&mut self, _progress: &Progress<'_>) {}
}

/// The loop's running counts, handed to [`FrameHandler::progress`] after each frame.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// As in [`Summary`]: decoded frames, undecodable ones, and those set aside as camera
    /// faults; frames a live source dropped.
    pub frames: u64,
    pub failed: u64,
    pub uniform: u64,
    pub frozen: u64,
    pub dropped: u64,
    /// Time from each handled frame's arrival to its keep decision.
    pub latency: &'a LatencyHistogram,
    pub now: Instant,
}

impl Progress<'_> {
    /// Frames the source delivered: decoded, undecodable or dropped.
    pub fn frames_in(&self) -> u64 {
        self.frames + self.failed + self.dropped
    }
}

/// Kept frames by reason. A frame kept for several reasons counts under each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCounts {
    pub value: u64,
    pub explore: u64,
    pub trigger: u64,
    pub rare_class: u64,
}

impl ReasonCounts {
    pub fn add(&mut self, reason: &Reason) {
        match reason {
            Reason::Value => self.value += 1,
            Reason::Explore => self.explore += 1,
            Reason::ClassTrigger(_) => self.trigger += 1,
            Reason::RareClass(_) => self.rare_class += 1,
        }
    }
}

/// What handlers report while the job runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub kept: u64,
    pub reasons: ReasonCounts,
}

impl Tally {
    /// Counts one kept frame and its reasons.
    pub fn kept(&mut self, reasons: &[Reason]) {
        self.kept += 1;
        for r in reasons {
            self.reasons.add(r);
        }
    }
}

/// Why the job ended.
#[derive(Debug)]
pub enum Stop {
    /// The source has no more frames.
    EndOfInput,
    /// A shutdown signal arrived (its name); the frame in hand was finished.
    Shutdown(&'static str),
    /// The handler wanted no more frames.
    Enough,
    /// The source failed for good (a broken stream).
    SourceFailed(SourceError),
}

/// The figures of a job.
#[derive(Debug)]
pub struct Summary {
    /// Frames read and decoded: handed to the handler, or set aside as `uniform` or `frozen`.
    pub frames: u64,
    /// Frames skipped because they could not be read or decoded.
    pub failed: u64,
    /// Of `frames`, those not handed on because uniform (camera fault; `input.uniform_stddev`).
    pub uniform: u64,
    /// Of `frames`, those not handed on because identical to the previous frame (frozen
    /// camera; `input.skip_frozen`).
    pub frozen: u64,
    /// Frames a live source read but dropped because the loop was busy (`input.live`); not in
    /// `frames`.
    pub dropped: u64,
    pub tally: Tally,
    /// Time from each handled frame's arrival (its read by a live source's reader, else the
    /// loop's read) to its keep decision.
    pub latency: LatencyHistogram,
    pub elapsed: Duration,
    pub stop: Stop,
}

impl Summary {
    /// Frames handed to the handler: `frames` less the uniform and frozen ones.
    pub fn handled(&self) -> u64 {
        self.frames - self.uniform - self.frozen
    }

    /// Frames read per second of wall time.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Kept frames over handled frames.
    pub fn kept_ratio(&self) -> f64 {
        if self.frames > 0 {
            self.tally.kept as f64 / self.frames as f64
        } else {
            0.0
        }
    }

    /// Whether the input was usable: an error when the source failed for good, or when every
    /// frame failed to decode.
    pub fn input_result(&self) -> Result<(), InputError<'_>> {
        if let Stop::SourceFailed(e) = &self.stop {
            return Err(InputError::Stopped {
                after: self.frames,
                source: e,
            });
        }
        if self.frames == 0 && self.failed > 0 {
            return Err(InputError::NothingDecoded {
                failed: self.failed,
            });
        }
        Ok(())
    }
}

/// The input, as a whole, failed (see [`Summary::input_result`]).
#[derive(Debug)]
pub enum InputError<'a> {
    Stopped { after: u64, source: &'a SourceError },
    NothingDecoded { failed: u64 },
}

impl fmt::Display for InputError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Stopped { after, source } => write!(
                f,
                "input stopped after {after} frames: {source} (what was kept is safe)"
            ),
            InputError::NothingDecoded { failed } => {
                write!(f, "none of the {failed} frames could be decoded")
            }
        }
    }
}

impl std::error::Error for InputError<'_> {}

/// A handler failed on a frame; the job stopped there.
#[derive(Debug)]
pub struct JobError<E> {
    /// The frame's name.
    pub frame: String,
    pub error: E,
    /// Frames handled before it.
    pub after: u64,
}

impl<E: std::error::Error> fmt::Display for JobError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame {}: {} (after {} frames)",
            self.frame, self.error, self.after
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for JobError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// How the job stamps and bounds frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobOptions<'a> {
    /// Added to each frame's stream time ([`Frame::time_ms`]) for its timestamp.
    pub start_ms: u64,
    /// Checked before each frame: a stop that arrives mid-frame lets the frame finish.
    pub shutdown: Option<&'a Shutdown>,
    /// How often the loop logs its rates (input and handled fps, drop share, decision latency);
    /// None: never.
    pub log_every: Option<Duration>,
}

/// Runs frames of `source` through `handler` until the input ends, a shutdown is asked for, the
/// handler has enough, or the source fails. Frames that fail to decode are logged, counted and
/// skipped; a handler error stops the job and is returned.
pub fn run_job<H: FrameHandler>(
    source: &mut dyn FrameSource,
    handler: &mut H,
    options: &JobOptions<'_>,
) -> Result<Summary, JobError<H::Error>> {
    let started = Instant::now();
    let mut frame = Frame::new();
    let mut tally = Tally::default();
    let (mut frames, mut failed) = (0u64, 0u64);
    let (mut uniform, mut frozen) = (0u64, 0u64);
    let mut faults = FaultCheck::new(source.fault_checks());
    let mut latency = LatencyHistogram::new();
    let mut rates = RateLog::new(started, options.log_every);
    if let Some(shutdown) = options.shutdown {
        source.watch_shutdown(shutdown);
    }
    let stop = loop {
        if let Some(why) = options.shutdown.and_then(Shutdown::reason) {
            log::info!("{why}: stopping after the frame in hand");
            break Stop::Shutdown(why);
        }
        if !handler.wants_more() {
            break Stop::Enough;
        }
        let t0 = Instant::now();
        let Some(next) = source.next_frame(&mut frame) else {
            // A source waiting on a stream ends early when a stop is asked for.
            if let Some(why) = options.shutdown.and_then(Shutdown::reason) {
                log::info!("{why}: stopping while waiting for the next frame");
                break Stop::Shutdown(why);
            }
            break Stop::EndOfInput;
        };
        if let Err(e) = next {
            if e.is_fatal() {
                break Stop::SourceFailed(e);
            }
            log::warn!("skipping frame: {e}");
            failed += 1;
            continue;
        }
        match faults.check(&frame) {
            Some(Fault::Uniform(sd)) => {
                frames += 1;
                uniform += 1;
                if uniform.is_power_of_two() {
                    log::warn!(
                        "{}: uniform frame (luma std-dev {sd:.2} < input.uniform_stddev {}), \
                         not handed on; {uniform} so far",
                        frame.name,
                        faults.checks.uniform_stddev
                    );
                }
                continue;
            }
            Some(Fault::Frozen) => {
                frames += 1;
                frozen += 1;
                if frozen.is_power_of_two() {
                    log::warn!(
                        "{}: same as the previous frame (frozen camera?), not handed on; \
                         {frozen} so far (input.skip_frozen)",
                        frame.name
                    );
                }
                continue;
            }
            None => {}
        }
        let info = FrameInfo {
            timestamp_ms: options.start_ms.saturating_add(frame.time_ms),
            read_time: t0.elapsed(),
        };
        handler
            .handle(&frame, &info, &mut tally)
            .map_err(|error| JobError {
                frame: frame.name.clone(),
                error,
                after: frames,
            })?;
        frames += 1;
        let now = Instant::now();
        latency.record(now.duration_since(frame.arrived.unwrap_or(t0)));
        let progress = Progress {
            frames,
            failed,
            uniform,
            frozen,
            dropped: source.dropped(),
            latency: &latency,
            now,
        };
        handler.progress(&progress);
        rates.maybe_log(&progress, tally.kept);
    };
    handler.finish(&mut tally).map_err(|error| JobError {
        frame: "(end of input)".to_string(),
        error,
        after: frames,
    })?;
    Ok(Summary {
        frames,
        failed,
        uniform,
        frozen,
        dropped: source.dropped(),
        tally,
        latency,
        elapsed: started.elapsed(),
        stop,
    })
}

/// The loop's periodic log line: rates over the last period, so a live run shows whether it
/// keeps up (input fps, handled fps, the share dropped) and how long decisions take.
struct RateLog {
    every: Option<Duration>,
    last: Instant,
    /// frames_in, handled (frames - uniform - frozen), dropped at the last line.
    counts: (u64, u64, u64),
}

impl RateLog {
    fn new(started: Instant, every: Option<Duration>) -> RateLog {
        RateLog {
            every,
            last: started,
            counts: (0, 0, 0),
        }
    }

    fn maybe_log(&mut self, p: &Progress<'_>, kept: u64) {
        let Some(every) = self.every else { return };
        let span = p.now.duration_since(self.last);
        if span < every {
            return;
        }
        let counts = (p.frames_in(), p.frames - p.uniform - p.frozen, p.dropped);
        let (d_in, d_handled, d_dropped) = (
            counts.0 - self.counts.0,
            counts.1 - self.counts.1,
            counts.2 - self.counts.2,
        );
        let secs = span.as_secs_f64();
        let ms = |q| p.latency.quantile(q).unwrap_or_default().as_secs_f64() * 1e3;
        log::info!(
            "last {secs:.0} s: {:.1} frames/s in, {:.1} handled/s, {:.1}% dropped; {kept} kept of \
             {} in; decision latency p50 {:.0} ms, p99 {:.0} ms",
            d_in as f64 / secs,
            d_handled as f64 / secs,
            100.0 * d_dropped as f64 / (d_in.max(1)) as f64,
            counts.0,
            ms(0.5),
            ms(0.99)
        );
        self.last = p.now;
        self.counts = counts;
    }
}

/// Pixels sampled per frame by the camera-fault checks.
const FAULT_SAMPLES: usize = 1024;

/// A camera fault found in a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Luma standard deviation of the sample below the threshold (the value found).
    Uniform(f64),
    /// The sample and size are those of the previous frame.
    Frozen,
}

/// The camera-fault checks of the loop: a sparse, evenly spaced sample of pixels per frame,
/// its luma spread, and the previous frame's sample for the repeat check. Buffers are reused.
struct FaultCheck {
    checks: FaultChecks,
    sample: Vec<u8>,
    previous: Vec<u8>,
    previous_dims: Option<(u32, u32)>,
}

impl FaultCheck {
    fn new(checks: FaultChecks) -> FaultCheck {
        FaultCheck {
            checks,
            sample: Vec::with_capacity(FAULT_SAMPLES * 3),
            previous: Vec::with_capacity(FAULT_SAMPLES * 3),
            previous_dims: None,
        }
    }

    fn check(&mut self, frame: &Frame) -> Option<Fault> {
        let pixels = frame.width as usize * frame.height as usize;
        if pixels == 0 || frame.rgb.len() < pixels * 3 {
            return None;
        }
        if self.checks.uniform_stddev <= 0.0 && !self.checks.skip_frozen {
            return None;
        }
        // Evenly spaced pixels; an odd step so that columns vary from row to row.
        let step = (pixels / FAULT_SAMPLES).max(1) | 1;
        self.sample.clear();
        let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
        for px in frame.rgb.chunks_exact(3).step_by(step) {
            self.sample.extend_from_slice(px);
            let luma = (77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2]))
                as f64
                / 256.0;
            sum += luma;
            sum_sq += luma * luma;
            n += 1.0;
        }
        let dims = (frame.width, frame.height);
        let repeat = self.previous_dims == Some(dims) && self.sample == self.previous;
        std::mem::swap(&mut self.sample, &mut self.previous);
        self.previous_dims = Some(dims);
        let mean = sum / n;
        let sd = (sum_sq / n - mean * mean).max(0.0).sqrt();
        if sd < self.checks.uniform_stddev {
            return Some(Fault::Uniform(sd));
        }
        if self.checks.skip_frozen && repeat {
            return Some(Fault::Frozen);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames from a list of results: Ok(()) decodes a 2x2 frame, Err(fatal) ends the stream.
    struct Scripted {
        steps: Vec<Option<bool>>,
        pos: usize,
    }

    impl FrameSource for Scripted {
        fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
            let step = self.steps.get(self.pos)?;
            self.pos += 1;
            frame.index = self.pos as u64 - 1;
            frame.time_ms = frame.index * 100;
            frame.name = format!("f{}", frame.index);
            Some(match step {
                None => Ok(()),
                Some(fatal) => Err(if *fatal {
                    SourceError::Header {
                        source_name: "s".into(),
                        message: "broken".into(),
                    }
                } else {
                    SourceError::ImageDecode {
                        path: "x".into(),
                        index: frame.index,
                        message: "bad".into(),
                    }
                }),
            })
        }

        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[derive(Default)]
    struct KeepEven {
        seen: Vec<u64>,
        limit: Option<usize>,
    }

    #[derive(Debug)]
    struct Never;
    impl fmt::Display for Never {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("never")
        }
    }
    impl std::error::Error for Never {}

    impl FrameHandler for KeepEven {
        type Error = Never;
        fn handle(
            &mut self,
            frame: &Frame,
            info: &FrameInfo,
            tally: &mut Tally,
        ) -> Result<(), Never> {
            self.seen.push(info.timestamp_ms);
            if frame.index % 2 == 0 {
                tally.kept(&[Reason::Value, Reason::Explore]);
            }
            Ok(())
        }
        fn wants_more(&self) -> bool {
            self.limit.is_none_or(|l| self.seen.len() < l)
        }
    }

    #[test]
    fn skips_bad_frames_counts_reasons_and_stamps_time() {
        let mut src = Scripted {
            steps: vec![None, Some(false), None, None, Some(true), None],
            pos: 0,
        };
        let mut h = KeepEven::default();
        let s = run_job(
            &mut src,
            &mut h,
            &JobOptions {
                start_ms: 1000,
                shutdown: None,
                ..JobOptions::default()
            },
        )
        .unwrap();
        assert_eq!((s.frames, s.failed), (3, 1));
        assert_eq!(h.seen, vec![1000, 1200, 1300]);
        assert_eq!(s.tally.kept, 2);
        assert_eq!(s.tally.reasons.value, 2);
        assert_eq!(s.tally.reasons.explore, 2);
        assert!(matches!(s.stop, Stop::SourceFailed(_)));
        assert!(s.input_result().is_err());
    }

    #[test]
    fn all_frames_bad_is_an_input_error_and_enough_stops() {
        let mut src = Scripted {
            steps: vec![Some(false), Some(false)],
            pos: 0,
        };
        let s = run_job(&mut src, &mut KeepEven::default(), &JobOptions::default()).unwrap();
        assert!(matches!(s.stop, Stop::EndOfInput));
        assert!(s
            .input_result()
            .unwrap_err()
            .to_string()
            .contains("none of the 2 frames"));

        let mut src = Scripted {
            steps: vec![None; 10],
            pos: 0,
        };
        let mut h = KeepEven {
            limit: Some(4),
            ..KeepEven::default()
        };
        let s = run_job(&mut src, &mut h, &JobOptions::default()).unwrap();
        assert_eq!(s.frames, 4);
        assert!(matches!(s.stop, Stop::Enough));
        assert!(s.input_result().is_ok());
    }

    /// Frames given as pictures, with the fault checks a config would set.
    struct Pictures {
        frames: Vec<(u32, u32, Vec<u8>)>,
        pos: usize,
        checks: FaultChecks,
    }

    impl FrameSource for Pictures {
        fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
            let (w, h, rgb) = self.frames.get(self.pos)?;
            frame.index = self.pos as u64;
            frame.time_ms = frame.index * 100;
            frame.name = format!("p{}", self.pos);
            frame.width = *w;
            frame.height = *h;
            frame.rgb.clone_from(rgb);
            self.pos += 1;
            Some(Ok(()))
        }

        fn describe(&self) -> String {
            "pictures".into()
        }

        fn fault_checks(&self) -> FaultChecks {
            self.checks
        }
    }

    fn textured(w: u32, h: u32, seed: u32) -> (u32, u32, Vec<u8>) {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        let rgb = (0..w * h * 3)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (s >> 16) as u8
            })
            .collect();
        (w, h, rgb)
    }

    fn flat(w: u32, h: u32, v: u8) -> (u32, u32, Vec<u8>) {
        (w, h, vec![v; (w * h * 3) as usize])
    }

    #[test]
    fn uniform_and_frozen_frames_are_counted_not_handled() {
        let a = textured(64, 48, 1);
        // Grey with a faint sensor noise of +-1: still uniform.
        let mut grey = flat(64, 48, 128);
        for (i, v) in grey.2.iter_mut().enumerate() {
            *v = 127 + (i % 3) as u8;
        }
        let frames = vec![
            a.clone(),
            a.clone(),
            textured(64, 48, 2),
            flat(64, 48, 0),
            flat(64, 48, 0),
            grey,
            textured(64, 48, 3),
            // Same pixels as the one before but another size: not a repeat.
            textured(48, 64, 3),
        ];
        let mut src = Pictures {
            frames: frames.clone(),
            pos: 0,
            checks: FaultChecks::default(),
        };
        let mut h = KeepEven::default();
        let s = run_job(&mut src, &mut h, &JobOptions::default()).unwrap();
        assert_eq!((s.frames, s.uniform, s.frozen, s.failed), (8, 3, 1, 0));
        assert_eq!(s.handled(), 4);
        assert_eq!(h.seen, vec![0, 200, 600, 700]);
        assert!(matches!(s.stop, Stop::EndOfInput));

        // Both checks off: every frame is handed on.
        let mut src = Pictures {
            frames,
            pos: 0,
            checks: FaultChecks {
                uniform_stddev: 0.0,
                skip_frozen: false,
            },
        };
        let mut h = KeepEven::default();
        let s = run_job(&mut src, &mut h, &JobOptions::default()).unwrap();
        assert_eq!((s.frames, s.uniform, s.frozen), (8, 0, 0));
        assert_eq!(h.seen.len(), 8);
    }

    #[test]
    fn too_small_images_are_skipped_and_the_others_handled() {
        use image::codecs::png::PngEncoder;
        use image::{ExtendedColorType, ImageEncoder};
        let dir = std::env::temp_dir().join(format!("edgesieve-run-small-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write_png = |name: &str, (w, h, rgb): (u32, u32, Vec<u8>)| {
            let mut out = Vec::new();
            PngEncoder::new(&mut out)
                .write_image(&rgb, w, h, ExtendedColorType::Rgb8)
                .unwrap();
            std::fs::write(dir.join(name), out).unwrap();
        };
        write_png("000.png", textured(64, 48, 1));
        write_png("001.png", textured(1, 1, 2));
        write_png("002.png", textured(64, 48, 3));
        let mut src = crate::source::open_with(
            dir.to_str().unwrap(),
            &crate::source::InputConfig::default(),
        )
        .unwrap();
        let mut h = KeepEven::default();
        let s = run_job(src.as_mut(), &mut h, &JobOptions::default()).unwrap();
        assert_eq!((s.frames, s.failed, s.uniform, s.frozen), (2, 1, 0, 0));
        assert_eq!(h.seen.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
