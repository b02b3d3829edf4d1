//! Fixed memory for hours (issue 12 item 5): in steady state the hot path allocates nothing per
//! frame outside the model, shown with a counting global allocator on real frames, stage by
//! stage (source decode, gate, detector, selection), for a whole pipeline frame that is not
//! kept, and for the job loop around it.
//!
//! Only allocations made on the measuring thread, while it measures, are counted (a thread-local
//! switch); measured sections of the tests in this binary take turns (a lock), because the
//! counters are shared. Steady state: after a few warm-up frames (buffers grow to the frame
//! size, lazily built tables fill), every further frame allocates nothing, or, where a
//! dependency allocates (tract's inference, the `image` crate's JPEG decoder), the same count
//! every frame, all of it freed again: the live bytes do not grow. `cargo test --test
//! alloc_steady -- --nocapture` prints each stage's figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use edgesieve::config::Config;
use edgesieve::detect::gate::{Gate, GateConfig};
use edgesieve::detect::manifest::Manifest;
use edgesieve::detect::model::Detector;
use edgesieve::detect::postprocess::Detections;
use edgesieve::run::pipeline::Pipeline;
use edgesieve::run::status::{Counters, StatusConfig, StatusWriter};
use edgesieve::run::{run_job, FrameHandler, FrameInfo, JobOptions, Tally};
use edgesieve::select::Selector;
use edgesieve::source::{self, Frame, FrameSource, InputConfig, SourceError};
use edgesieve::store::Discard;

mod common;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn measuring() -> bool {
    MEASURING.try_with(Cell::get).unwrap_or(false)
}

fn count_alloc(size: usize) {
    if measuring() {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Relaxed);
    }
}

fn count_free(size: usize) {
    if measuring() {
        FREES.fetch_add(1, Relaxed);
        FREED_BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counting touches only atomics and
// a const-initialised thread-local without destructor, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        System.dealloc(ptr, layout)
    }

    /// A reallocation counts as one allocation of the new size and one free of the old.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        count_free(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the measuring thread allocated and freed over a stretch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    allocs: u64,
    bytes: u64,
    frees: u64,
    freed: u64,
}

impl Counts {
    fn now() -> Counts {
        Counts {
            allocs: ALLOCS.load(Relaxed),
            bytes: ALLOC_BYTES.load(Relaxed),
            frees: FREES.load(Relaxed),
            freed: FREED_BYTES.load(Relaxed),
        }
    }

    fn since(self, start: Counts) -> Counts {
        Counts {
            allocs: self.allocs - start.allocs,
            bytes: self.bytes - start.bytes,
            frees: self.frees - start.frees,
            freed: self.freed - start.freed,
        }
    }

    /// Bytes allocated and not freed (negative: more freed than allocated).
    fn live(&self) -> i64 {
        self.bytes as i64 - self.freed as i64
    }
}

/// Measured sections take turns: the counters are shared by the threads of this binary.
static TURN: Mutex<()> = Mutex::new(());

/// Runs `f` with counting on for this thread; returns its result and what it allocated.
fn measure<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let start = Counts::now();
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, Counts::now().since(start))
}

/// Frames of warm-up before measuring: the first frame sizes the buffers, the model's first
/// inferences size its scratch; a few more for margin.
const WARMUP: usize = 4;

/// Runs `frame(i)` for `WARMUP` frames, then measures it on `n` more, one count per frame.
fn per_frame(stage: &str, n: usize, mut frame: impl FnMut(usize)) -> Vec<Counts> {
    for i in 0..WARMUP {
        frame(i);
    }
    let counts: Vec<Counts> = (WARMUP..WARMUP + n)
        .map(|i| measure(|| frame(i)).1)
        .collect();
    report(stage, &counts);
    counts
}

/// Prints a stage's figures (cargo test -- --nocapture shows them).
fn report(stage: &str, counts: &[Counts]) {
    let allocs: Vec<u64> = counts.iter().map(|c| c.allocs).collect();
    let bytes: Vec<u64> = counts.iter().map(|c| c.bytes).collect();
    let live: i64 = counts.iter().map(Counts::live).sum();
    println!(
        "{stage}: {} frames, allocations per frame {:?}..={:?}, bytes per frame {:?}..={:?}, \
         live bytes over the frames {live:+}",
        counts.len(),
        allocs.iter().min(),
        allocs.iter().max(),
        bytes.iter().min(),
        bytes.iter().max(),
    );
}

/// Every measured frame allocated and freed nothing.
fn assert_no_allocation(stage: &str, counts: &[Counts]) {
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(
            *c,
            Counts::default(),
            "{stage}: steady-state frame {i} allocated (all: {counts:?})"
        );
    }
}

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
const TMO324: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);
/// The size of the drives' frames (both drives are 640x360).
const FRAME_SIZE: (u32, u32) = (640, 360);

fn manifest() -> Manifest {
    Manifest::load(Path::new(MANIFEST)).expect("default manifest")
}

/// `n` consecutive real frames of the tmo324 drive, from frame `first` (1-based), decoded.
fn frames(first: usize, n: usize) -> Vec<Frame> {
    let list: Vec<String> = (first..first + n)
        .map(|i| format!("{TMO324}/{i:06}.jpg"))
        .collect();
    let mut src = source::open(&list.join(",")).expect("drive frames");
    let mut out = Vec::with_capacity(n);
    let mut f = Frame::new();
    while let Some(r) = src.next_frame(&mut f) {
        r.expect("a drive frame decodes");
        out.push(f.clone());
    }
    assert_eq!(out.len(), n);
    out
}

/// The detector as `run` loads it for 640x360 frames (416x256 input, int8, one thread).
fn detector() -> Detector {
    let options = Config::default().detector.options_for(Some(FRAME_SIZE));
    Detector::load(manifest(), &options).expect("the model loads (models/fetch)")
}

/// What one inference of the model allocates, every frame, in tract's CPU runtime
/// (`SimpleState::run`, measured on x86_64 for the 416x256 YOLOX-nano at the default precision,
/// `auto`, which is fp32 on x86_64): each node of the plan returns freshly allocated output
/// tensors (tract's ops own their outputs; its memory arena, which would reuse them, exists only
/// for its GPU back ends), and the previous frame's are freed as the next ones are made. Neither
/// `SimpleState` nor `run_plan_with_eval` can hand an op a buffer to write into, so this is the
/// floor without patching tract. Other architectures pick other kernels (other packing buffers):
/// there only the constancy and the live bytes are checked. Two figures: the model loaded from
/// its NNEF file (what models/fetch writes and the detector prefers; tract's plan from it has a
/// few nodes fewer) and from the ONNX file (a checkout whose models/fetch predates the NNEF
/// files). History (int8, the default until `auto`): 1850 and 1862; 1848 and 1860 with the SPP
/// max-pools cascaded (`detect/rewrite.rs`); 1814 and 1826 with the stem as im2col and a matrix
/// product instead of tract's direct spatial convolution (`TRACT_DISABLE_DIRECT_SPATIAL`,
/// `detect/model.rs`); 1820 and 1832 with the SPP max-pools ours (`detect/maxpool.rs`: two more
/// per pool than tract's op, its scratch planes). fp32 (`auto` on x86_64): 1345 and 1357 with
/// tract's stem and depthwise kernels, on an x86_64 without AVX2 and FMA.
const MODEL_ALLOCS_PER_FRAME: [u64; 2] = [1345, 1357];
/// The same where our stem and depthwise kernels run (x86_64 with AVX2 and FMA,
/// `detect/stem.rs`, `detect/depthwise.rs`: one output each, their padded copies in a reused
/// buffer, where tract's padding, im2col and packing allocated), from either file.
const MODEL_ALLOCS_OUR_KERNELS: [u64; 1] = [1078];
/// The bytes those allocations take depend on the kernels tract picks for the CPU (their
/// packing buffers). int8: 55,245,808 (NNEF) and 55,247,728 (ONNX) with AVX2 before the
/// max-pool rewrite; 58,768,240 (NNEF) and 58,770,160 (ONNX) with AVX-512 (an AMD EPYC) after
/// it; 61,379,648 (NNEF, AVX-512) with the stem as im2col (its patch buffer). fp32, AVX-512:
/// 63,019,032 (NNEF) and 63,020,952 (ONNX). The band holds those with room for other kernels' packing, and no more.
const MODEL_BYTES_PER_FRAME: std::ops::RangeInclusive<u64> = 55_000_000..=65_000_000;

/// Whether our x86_64 kernels run here (AVX2 and FMA; see [`MODEL_ALLOCS_OUR_KERNELS`]).
fn our_x86_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Asserts the model's per-frame figure: the same count and bytes every frame (on x86_64: the
/// measured ones), and nothing left live across frames.
fn assert_model_bound(stage: &str, counts: &[Counts]) {
    let first = counts[0];
    for (i, c) in counts.iter().enumerate() {
        assert!(
            (c.allocs, c.bytes) == (first.allocs, first.bytes),
            "{stage}: frame {i} allocated {} times, {} bytes, frame 0 {} times, {} bytes \
             (all: {counts:?})",
            c.allocs,
            c.bytes,
            first.allocs,
            first.bytes
        );
        assert_eq!(
            c.live(),
            0,
            "{stage}: frame {i} left bytes live ({counts:?})"
        );
    }
    if cfg!(target_arch = "x86_64") {
        let expected: &[u64] = if our_x86_kernels() {
            &MODEL_ALLOCS_OUR_KERNELS
        } else {
            &MODEL_ALLOCS_PER_FRAME
        };
        assert!(
            expected.contains(&first.allocs) && MODEL_BYTES_PER_FRAME.contains(&first.bytes),
            "{stage}: the model's allocations per frame changed (tract, the model or its input \
             shape): measure anew and update the constants: {} allocations of {} bytes, not one \
             of {expected:?} in {MODEL_BYTES_PER_FRAME:?} bytes",
            first.allocs,
            first.bytes,
        );
    }
}

/// What the `image` crate's JPEG decoding allocates per file (measured on x86_64): its
/// `JpegDecoder` copies the file into a new `Vec` and parses the headers twice, and zune-jpeg
/// allocates its Huffman and quantisation tables and per-component row buffers for each picture;
/// none of it takes a caller's buffer. Freed before the next frame. The camera path (y4m) does
/// not decode JPEG.
const JPEG_ALLOCS_PER_FILE: u64 = 19;

#[test]
fn folder_of_jpegs_allocates_only_in_the_jpeg_decoder() {
    let mut src = source::open(TMO324).expect("drive folder");
    let mut frame = Frame::new();
    let counts = per_frame("source: folder of JPEGs", 24, |_| {
        src.next_frame(&mut frame)
            .expect("a frame")
            .expect("decodes");
    });
    // Ours (file buffer, picture) allocates nothing; the decoder the same count every file, the
    // bytes following the file's size, all freed.
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(
            (c.allocs, c.live()),
            (JPEG_ALLOCS_PER_FILE, 0),
            "source: folder of JPEGs: frame {i} ({counts:?})"
        );
    }
}

#[test]
fn y4m_stream_decodes_without_allocating() {
    let dir = common::temp_dir("alloc-y4m");
    let path = dir.join("drive.y4m");
    common::ffmpeg_y4m(WARMUP + 24, "yuv420p", &path);
    let mut src = source::open(path.to_str().expect("utf-8 path")).expect("y4m file");
    let mut frame = Frame::new();
    let counts = per_frame("source: y4m 4:2:0 stream", 24, |_| {
        src.next_frame(&mut frame)
            .expect("a frame")
            .expect("decodes");
    });
    assert_no_allocation("source: y4m 4:2:0 stream", &counts);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gate_does_not_allocate() {
    let frames = frames(1, WARMUP + 24);
    let mut gate = Gate::new(&GateConfig {
        max_difference: 3.0,
        max_skip_s: 10.0,
    });
    let mut skipped = 0;
    let counts = per_frame("gate", 24, |i| {
        // Each frame twice: the copy is skipped, the next frame passes.
        let f = &frames[i];
        for t in [0, 1] {
            skipped += usize::from(gate.skips(&f.rgb, f.width, f.height, f.time_ms + t));
        }
    });
    assert!(skipped > 0, "the gate never skipped, so never compared");
    assert_no_allocation("gate", &counts);
}

#[test]
fn detector_allocates_only_in_the_model_and_the_same_each_frame() {
    let frames = frames(1, WARMUP + 12);
    let mut det = detector();
    let mut out = Detections::new();
    let mut split = |i: usize| {
        let f = &frames[i];
        let pre = measure(|| det.preprocess(&f.rgb, f.width, f.height)).1;
        let infer = measure(|| det.infer()).1;
        let post = measure(|| det.postprocess(&mut out)).1;
        (pre, infer, post)
    };
    for i in 0..WARMUP {
        split(i);
    }
    let parts: Vec<_> = (WARMUP..frames.len()).map(split).collect();
    let pre: Vec<Counts> = parts.iter().map(|p| p.0).collect();
    let infer: Vec<Counts> = parts.iter().map(|p| p.1).collect();
    let post: Vec<Counts> = parts.iter().map(|p| p.2).collect();
    report("detector: preprocess", &pre);
    report("detector: inference (tract)", &infer);
    report("detector: postprocess", &post);
    let whole = per_frame("detector: detect", 12, |i| {
        let f = &frames[i];
        det.detect(&f.rgb, f.width, f.height, &mut out)
            .expect("detect");
    });
    assert_no_allocation("detector: preprocess", &pre);
    assert_no_allocation("detector: postprocess", &post);
    assert_model_bound("detector: inference", &infer);
    assert_model_bound("detector: detect", &whole);
}

#[test]
fn selection_does_not_allocate() {
    let frames = frames(1, WARMUP + 12);
    let config = Config::default();
    let m = manifest();
    let mut selector = Selector::new(
        &config.uncertainty,
        &config.embedding,
        &config.policy,
        config.detector.max_detections,
        &m,
    )
    .expect("selector");
    let mut det = detector();
    let mut dets = Detections::new();
    let mut boxes = 0;
    let counts: Vec<Counts> = (0..frames.len())
        .map(|i| {
            let f = &frames[i];
            det.detect(&f.rgb, f.width, f.height, &mut dets)
                .expect("detect");
            boxes += dets.len();
            let features = det.embedding().expect("the manifest names an embedding");
            let (selection, counts) = measure(|| {
                selector
                    .select(&dets, features, f.time_ms)
                    .map(|s| s.decision)
            });
            if selection.expect("select").keep {
                selector.commit_kept(1000);
            }
            counts
        })
        .skip(WARMUP)
        .collect();
    report("selection", &counts);
    assert!(boxes > 0, "no detections: the selection saw no boxes");
    assert_no_allocation("selection", &counts);
}

/// A configuration that keeps the first frame (the policy always keeps the first one, to seed
/// its sketch) and nothing after: one keep a day of stream time, no exploration.
fn keep_nothing_after_the_first() -> Config {
    let mut config = Config::default();
    config.policy.max_per_day = 1;
    config.policy.explore_probability = 0.0;
    config
}

fn pipeline() -> Pipeline<Discard> {
    Pipeline::new(
        &keep_nothing_after_the_first(),
        manifest(),
        Discard,
        Some(FRAME_SIZE),
    )
    .expect("pipeline")
}

#[test]
fn a_pipeline_frame_not_kept_allocates_only_in_the_model() {
    let frames = frames(1, WARMUP + 12);
    let mut p = pipeline();
    let mut tally = Tally::default();
    let counts = per_frame("pipeline: frame not kept", 12, |i| {
        let f = &frames[i];
        let info = FrameInfo {
            timestamp_ms: 1_800_000_000_000 + f.time_ms,
            read_time: Default::default(),
        };
        p.handle(f, &info, &mut tally).expect("pipeline frame");
    });
    assert_eq!(tally.kept, 1, "only the first frame is kept");
    assert_eq!(p.stats().frames as usize, frames.len(), "none gated");
    assert_model_bound("pipeline: frame not kept", &counts);
}

/// A source that notes the counters each time the job loop asks it for a frame: the difference
/// between two notes is everything the loop did for one frame (the decode, the camera-fault
/// checks, the handler).
struct Noting<'a> {
    inner: Box<dyn FrameSource>,
    notes: &'a mut Vec<Counts>,
}

impl FrameSource for Noting<'_> {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        // Within capacity (reserved by the test): pushing does not allocate.
        assert!(self.notes.len() < self.notes.capacity());
        self.notes.push(Counts::now());
        self.inner.next_frame(frame)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn the_job_loop_over_a_y4m_stream_allocates_only_in_the_model() {
    const N: usize = 12;
    let dir = common::temp_dir("alloc-job");
    let path = dir.join("drive.y4m");
    common::ffmpeg_y4m(WARMUP + N, "yuv420p", &path);
    let inner = source::open_with(path.to_str().expect("utf-8 path"), &InputConfig::default())
        .expect("y4m file");
    let mut notes = Vec::with_capacity(WARMUP + N + 2);
    let mut p = pipeline();
    let mut source = Noting {
        inner,
        notes: &mut notes,
    };
    let (summary, _) =
        measure(|| run_job(&mut source, &mut p, &JobOptions::default()).expect("job"));
    assert_eq!(summary.frames as usize, WARMUP + N);
    // Notes 0..=WARMUP+N are taken before each read; the last read finds the end.
    let counts: Vec<Counts> = notes
        .windows(2)
        .map(|w| w[1].since(w[0]))
        .skip(WARMUP)
        .collect();
    assert_eq!(counts.len(), N);
    report("job loop: y4m frame through the pipeline", &counts);
    assert_model_bound("job loop: y4m frame through the pipeline", &counts);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_status_file_is_written_without_allocating() {
    let dir = common::temp_dir("alloc-status");
    let mut writer = StatusWriter::new(&StatusConfig {
        path: Some(dir.join("edgesieve.prom")),
        period_s: 0.1,
        ..StatusConfig::default()
    })
    .expect("a path is set");
    let counts = per_frame("status file write", 12, |i| {
        let c = Counters {
            frames_in: 1000 * i as u64,
            processed: 100 * i as u64,
            now_s: 1.8e9 + i as f64,
            ..Counters::default()
        };
        writer
            .write(&c, std::time::Instant::now())
            .expect("status write");
    });
    assert_no_allocation("status file write", &counts);
    let _ = std::fs::remove_dir_all(dir);
}
