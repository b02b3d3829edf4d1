//! Fuzzing of every parser that reads outside input (issue 8): the YUV4MPEG2 header and FRAME
//! lines ([`source::open`] over a .y4m file), the spool's record, JPEG and `next-id` files
//! ([`Spool::open`] with its crash recovery, [`Spool::read_records`]), the sketch file
//! ([`FrameSketch::from_bytes`]) and the TOML configuration ([`Config::parse`]). One `#[test]` per
//! target: `y4m_stream`, `spool_record`, `sketch_file`, `config_text`.
//!
//! Structured, seeded, mutation-based, and part of the normal test suite: no nightly, no
//! sanitizer or coverage build (the crate links tract, far too heavy to rebuild instrumented).
//! Each target builds valid inputs itself (small y4m streams, a real spool, real sketches, real
//! configs), mutates them with format-aware edits (y4m header tokens and FRAME lines; record
//! header fields and payloads with the CRC repaired so that the payload decoder is reached; file
//! names and the `next-id` file; sketch counts, weights and floats; TOML values, keys and
//! sections) and with generic byte edits, and keeps every input whose outcome was not seen
//! before as a new starting point (outcome-guided: there is no coverage feedback).
//!
//! Every input runs under `catch_unwind`. A finding is a panic, a broken invariant, one
//! allocation request over [`ALLOC_BUDGET`] while reading one input (inputs are at most a few
//! KB, a full sketch 66 KB), or an input that stays over the target's time budget when run
//! again. The first input of each distinct finding is printed (seed, iteration, message and
//! location, the `src/` frames of the backtrace when symbols are available, a hex dump), saved
//! as `target/fuzz-crashes/<target>-<iteration>.bin` with a minimised copy `…-min.bin`, and the
//! test fails at the end of its run. Advisories (a documented behaviour that does not hold, an
//! operation failing where it could go on) are reported the same way but do not fail the test.
//! An input that hangs (over `EDGESIEVE_FUZZ_HANG_SECS` seconds, default 60) is saved by a
//! watchdog thread, which then aborts the process.
//!
//! Environment:
//! * `EDGESIEVE_FUZZ_SEED`: base seed, decimal or `0x` hex, or `random` (default fixed);
//! * `EDGESIEVE_FUZZ_SECS`: seconds per target (default 3);
//! * `EDGESIEVE_FUZZ_ITERS`: exactly this many inputs per target instead of a time bound, which
//!   makes a run reproducible (seed + iteration);
//! * `EDGESIEVE_FUZZ_REPLAY`: a file saved in `target/fuzz-crashes/`, run alone through the
//!   target its name starts with.
//!
//! Per target one summary line starting with `FUZZ ` (executions, distinct outcomes, crashes,
//! findings). `scripts/fuzz [SECONDS]` runs the four targets for longer, optimised.

use edgesieve::util::testing::TempDir;
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgesieve::config::Config;
use edgesieve::select::embedding::EMBED_DIM;
use edgesieve::select::FrameSketch;
use edgesieve::source::{self, Frame};
use edgesieve::store::record::{FrameScores, KeptRecord, Reason, StoredDetection};
use edgesieve::store::spool::{Spool, SpoolConfig};
use edgesieve::store::PutOutcome;

// ------------------------------------------------------------------------------------------------
// The four targets.

#[test]
fn y4m_stream() {
    fuzz(&mut Y4mTarget::new());
}

#[test]
fn spool_record() {
    fuzz(&mut SpoolTarget::new());
}

#[test]
fn sketch_file() {
    fuzz(&mut SketchTarget);
}

#[test]
fn config_text() {
    fuzz(&mut ConfigTarget::default());
}

// ------------------------------------------------------------------------------------------------
// Settings, RNG.

/// One allocation request larger than this while reading one input is a finding.
const ALLOC_BUDGET: usize = 64 << 20;
/// Default base seed (`EDGESIEVE_FUZZ_SEED`).
const DEFAULT_SEED: u64 = 0x0ED6_E51E_7E00_0008;
/// Inputs kept as starting points, per target.
const CORPUS_CAP: usize = 1024;
/// Time spent minimising one finding's input: a tenth of the run, between 0.5 and 5 s.
fn minimise_for() -> Duration {
    Duration::from_secs_f64((settings().secs / 10.0).clamp(0.5, 5.0))
}

struct Settings {
    seed: u64,
    secs: f64,
    iters: Option<u64>,
    hang_secs: u64,
    replay: Option<PathBuf>,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str| {
            var(name)
                .map(|v| parse_u64(&v).unwrap_or_else(|| panic!("{name}={v:?}: expected a number")))
        };
        let seed = match var("EDGESIEVE_FUZZ_SEED") {
            None => DEFAULT_SEED,
            Some(v) if v.trim() == "random" => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                mix(nanos, u64::from(std::process::id()))
            }
            Some(v) => parse_u64(&v).unwrap_or_else(|| {
                panic!("EDGESIEVE_FUZZ_SEED={v:?}: expected a number, 0x hex or 'random'")
            }),
        };
        let secs = match var("EDGESIEVE_FUZZ_SECS") {
            None => 3.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s >= 0.0 && s.is_finite() => s,
                _ => panic!("EDGESIEVE_FUZZ_SECS={v:?}: expected a number of seconds"),
            },
        };
        Settings {
            seed,
            secs,
            iters: number("EDGESIEVE_FUZZ_ITERS"),
            hang_secs: number("EDGESIEVE_FUZZ_HANG_SECS").unwrap_or(60).max(1),
            replay: var("EDGESIEVE_FUZZ_REPLAY").map(PathBuf::from),
        }
    })
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// SplitMix64.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Uniform in [-1, 1).
    fn signed_unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.wrapping_mul(0xD605_BBB5_8C8A_BBFD)).next_u64()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

// ------------------------------------------------------------------------------------------------
// Instrumentation: largest allocation request per thread, panic capture, hang watchdog.

struct CountingAlloc;

thread_local! {
    static MAX_REQUEST: Cell<usize> = const { Cell::new(0) };
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

fn note_request(size: usize) {
    let _ = MAX_REQUEST.try_with(|m| {
        if size > m.get() {
            m.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches a const-initialised thread-local Cell (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_request(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

struct PanicReport {
    message: String,
    location: String,
    backtrace: Option<Backtrace>,
}

/// While a thread runs an input, its panics are recorded (not printed); other panics (a test
/// failing) go to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_FUZZ.with(Cell::get) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".to_string());
            let location = info.location().map_or_else(
                || "(unknown location)".to_string(),
                |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
            );
            let report = PanicReport {
                message,
                location,
                backtrace: Some(Backtrace::force_capture()),
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(report));
        }));
    });
}

/// The frames of a backtrace that are in this crate's `src/`, function and location.
fn src_frames(bt: &Backtrace) -> String {
    let text = bt.to_string();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(src) || line.trim_start().starts_with("at ./src/") {
            let function = if i > 0 { lines[i - 1].trim() } else { "" };
            let at = line
                .trim()
                .replace(concat!(env!("CARGO_MANIFEST_DIR"), "/"), "");
            let _ = writeln!(out, "      {function}\n        {at}");
            if out.lines().count() >= 16 {
                break;
            }
        }
    }
    if out.is_empty() {
        out.push_str(
            "      (no src/ frames: the binary has no symbols, e.g. a stripped --release build)\n",
        );
    }
    out
}

struct InFlight {
    target: &'static str,
    iteration: u64,
    seed: u64,
    started: Instant,
    input: Vec<u8>,
}

static IN_FLIGHT: Mutex<Vec<InFlight>> = Mutex::new(Vec::new());

fn in_flight_set(target: &'static str, iteration: u64, seed: u64, input: &[u8]) {
    let mut slots = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    slots.retain(|s| s.target != target);
    slots.push(InFlight {
        target,
        iteration,
        seed,
        started: Instant::now(),
        input: input.to_vec(),
    });
}

fn in_flight_clear(target: &'static str) {
    let mut slots = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    slots.retain(|s| s.target != target);
}

/// A thread that saves an input running longer than `hang_secs` and aborts the process (a hang
/// cannot be caught).
fn start_watchdog(hang_secs: u64) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let slots = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
            for s in slots.iter() {
                if s.started.elapsed() > Duration::from_secs(hang_secs) {
                    let path = crash_dir().join(format!("{}-{}-hang.bin", s.target, s.iteration));
                    let _ = fs::create_dir_all(crash_dir());
                    let _ = fs::write(&path, &s.input);
                    eprintln!(
                        "FUZZ {} HANG: iteration {} (seed {:#x}) still running after {} s; input \
                         saved to {}\n{}",
                        s.target,
                        s.iteration,
                        s.seed,
                        hang_secs,
                        path.display(),
                        hexdump(&s.input, 512)
                    );
                    std::process::abort();
                }
            }
        });
    });
}

fn crash_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
    } else {
        target
    };
    target.join("fuzz-crashes")
}

// ------------------------------------------------------------------------------------------------
// The driver.

/// What one input did, and which invariants it broke.
#[derive(Default)]
struct Outcome {
    label: String,
    violations: Vec<Violation>,
}

struct Violation {
    signature: String,
    detail: String,
    severe: bool,
}

impl Outcome {
    fn new(label: impl Into<String>) -> Outcome {
        Outcome {
            label: label.into(),
            violations: Vec::new(),
        }
    }

    /// An invariant: a violation fails the test.
    fn check(&mut self, ok: bool, signature: &str, detail: impl FnOnce() -> String) {
        if !ok {
            self.violations.push(Violation {
                signature: signature.to_string(),
                detail: detail(),
                severe: true,
            });
        }
    }

    /// Reported, does not fail the test.
    fn advise(&mut self, signature: String, detail: String) {
        self.violations.push(Violation {
            signature,
            detail,
            severe: false,
        });
    }
}

trait Target {
    const NAME: &'static str;
    /// Longest input generated.
    const MAX_LEN: usize;
    /// An input slower than this, twice, is a finding.
    const TIME_BUDGET: Duration;

    /// Valid inputs to start from (also run as they are).
    fn seeds(&mut self, rng: &mut Rng) -> Vec<Vec<u8>>;

    /// Edge cases run once as they are, not mutated.
    fn probes(&mut self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// A new input from the corpus.
    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8>;

    /// Runs one input through the parser and checks what it returned.
    fn run(&mut self, input: &[u8]) -> Outcome;

    /// A smaller input for which `still` holds.
    fn minimise(input: &[u8], still: &mut dyn FnMut(&[u8]) -> bool, deadline: Instant) -> Vec<u8> {
        minimise_bytes(input, still, deadline)
    }

    /// Saves an input as `<stem>.bin` (and whatever else helps a reader).
    fn save(stem: &Path, input: &[u8]) -> PathBuf {
        let path = stem.with_extension("bin");
        let _ = fs::write(&path, input);
        path
    }

    /// The input for a human.
    fn show(input: &[u8]) -> String {
        hexdump(input, 768)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Panic,
    Invariant,
    Alloc,
    Slow,
    Advisory,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Panic => "panic",
            Kind::Invariant => "invariant",
            Kind::Alloc => "alloc",
            Kind::Slow => "slow",
            Kind::Advisory => "advisory",
        }
    }

    fn fails(self) -> bool {
        self != Kind::Advisory
    }
}

struct Finding {
    kind: Kind,
    signature: String,
    count: u64,
    first_iteration: u64,
    saved: PathBuf,
    minimised: Option<(PathBuf, usize)>,
    /// Largest allocation (Alloc) or slowest time in ms (Slow) seen.
    worst: u64,
}

struct Exec {
    result: Result<Outcome, PanicReport>,
    elapsed: Duration,
    max_request: usize,
}

fn run_guarded<T: Target>(target: &mut T, iteration: u64, seed: u64, input: &[u8]) -> Exec {
    in_flight_set(T::NAME, iteration, seed, input);
    MAX_REQUEST.with(|m| m.set(0));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    IN_FUZZ.with(|f| f.set(true));
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let elapsed = start.elapsed();
    IN_FUZZ.with(|f| f.set(false));
    let max_request = MAX_REQUEST.with(Cell::get);
    in_flight_clear(T::NAME);
    let result = result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or(PanicReport {
                message: "(panic not captured)".into(),
                location: "(unknown location)".into(),
                backtrace: None,
            })
    });
    Exec {
        result,
        elapsed,
        max_request,
    }
}

/// The findings of one execution (kind, signature, detail), before the time check.
/// With `backtrace`, a panic's detail has the `src/` frames (slow: symbols are resolved).
fn findings_of(exec: &Exec, backtrace: bool) -> Vec<(Kind, String, String)> {
    let mut out = Vec::new();
    match &exec.result {
        Err(p) => {
            let mut detail = format!("    message: {}\n", p.message);
            if let (true, Some(bt)) = (backtrace, &p.backtrace) {
                let _ = write!(detail, "    backtrace, src/ frames:\n{}", src_frames(bt));
            }
            out.push((Kind::Panic, format!("panic at {}", p.location), detail));
        }
        Ok(o) => {
            for v in &o.violations {
                let kind = if v.severe {
                    Kind::Invariant
                } else {
                    Kind::Advisory
                };
                out.push((kind, v.signature.clone(), format!("    {}\n", v.detail)));
            }
        }
    }
    if exec.max_request > ALLOC_BUDGET {
        out.push((
            Kind::Alloc,
            format!("allocation over {} MiB", ALLOC_BUDGET >> 20),
            format!(
                "    one allocation request of {} bytes ({} MiB) while reading this input; {:.3} s\n",
                exec.max_request,
                exec.max_request >> 20,
                exec.elapsed.as_secs_f64()
            ),
        ));
    }
    out
}

#[derive(Default)]
struct Stats {
    execs: u64,
    crashes: u64,
    outcomes: BTreeMap<String, u64>,
    findings: Vec<Finding>,
}

fn fuzz<T: Target>(target: &mut T) {
    install_panic_hook();
    let s = settings();
    start_watchdog(s.hang_secs);
    if let Some(path) = &s.replay {
        replay(target, path);
        return;
    }
    let target_seed = mix(s.seed, fnv1a(T::NAME.as_bytes()));
    let mut rng = Rng::new(target_seed);
    let mut corpus = target.seeds(&mut rng);
    assert!(!corpus.is_empty(), "{}: no seeds", T::NAME);
    let mut fixed = target.probes();
    fixed.extend(corpus.iter().cloned());

    let mut stats = Stats::default();
    let started = Instant::now();
    let limit = Duration::from_secs_f64(s.secs);
    // The time bound counts from the first generated input: probes and seeds always run.
    let mut fuzzing_since: Option<Instant> = None;
    let mut iteration = 0u64;
    loop {
        if iteration as usize == fixed.len() {
            fuzzing_since = Some(Instant::now());
        }
        let done = match s.iters {
            Some(n) => iteration >= n,
            None => fuzzing_since.is_some_and(|t| t.elapsed() >= limit),
        };
        if done {
            break;
        }
        let input = match fixed.get(iteration as usize) {
            Some(input) => input.clone(),
            None => {
                let mut r = Rng::new(mix(target_seed, iteration));
                let mut input = target.generate(&mut r, &corpus);
                input.truncate(T::MAX_LEN);
                input
            }
        };
        let exec = run_guarded(target, iteration, s.seed, &input);
        stats.execs += 1;
        let label = match &exec.result {
            Ok(o) => o.label.clone(),
            Err(p) => format!("PANIC at {}", p.location),
        };
        if exec.result.is_err() {
            stats.crashes += 1;
        }
        let mut found = findings_of(&exec, false);
        let new = found.iter().any(|(kind, signature, _)| {
            !stats
                .findings
                .iter()
                .any(|f| f.kind == *kind && f.signature == *signature)
        });
        if new {
            found = findings_of(&exec, true);
        }
        // An input over the allocation budget is slow for that reason: not confirmed twice.
        if exec.elapsed > T::TIME_BUDGET && exec.max_request <= ALLOC_BUDGET {
            // Confirm: a busy machine can stall one run.
            let again = run_guarded(target, iteration, s.seed, &input);
            if again.elapsed > T::TIME_BUDGET {
                found.push((
                    Kind::Slow,
                    format!("slower than {:?}", T::TIME_BUDGET),
                    format!(
                        "    {:.3} s and {:.3} s for this input ({label})\n",
                        exec.elapsed.as_secs_f64(),
                        again.elapsed.as_secs_f64()
                    ),
                ));
            }
        }
        for (kind, signature, detail) in found {
            let worst = match kind {
                Kind::Alloc => exec.max_request as u64,
                Kind::Slow => exec.elapsed.as_millis() as u64,
                _ => 0,
            };
            record(
                target, &mut stats, iteration, &input, kind, signature, detail, worst,
            );
        }
        let count = stats.outcomes.entry(label).or_insert(0);
        *count += 1;
        if *count == 1 && (iteration as usize) >= fixed.len() {
            if corpus.len() < CORPUS_CAP {
                corpus.push(input);
            } else {
                let i = rng.below(corpus.len());
                corpus[i] = input;
            }
        }
        iteration += 1;
    }
    summarise::<T>(&stats, started.elapsed(), corpus.len());
}

#[allow(clippy::too_many_arguments)]
fn record<T: Target>(
    target: &mut T,
    stats: &mut Stats,
    iteration: u64,
    input: &[u8],
    kind: Kind,
    signature: String,
    detail: String,
    worst: u64,
) {
    if let Some(f) = stats
        .findings
        .iter_mut()
        .find(|f| f.kind == kind && f.signature == signature)
    {
        f.count += 1;
        f.worst = f.worst.max(worst);
        return;
    }
    let s = settings();
    let dir = crash_dir();
    let _ = fs::create_dir_all(&dir);
    let saved = T::save(&dir.join(format!("{}-{iteration}", T::NAME)), input);
    // Minimise panics and broken invariants (cheap to reproduce); not allocations or timings.
    let minimised = if matches!(kind, Kind::Panic | Kind::Invariant | Kind::Advisory) {
        let deadline = Instant::now() + minimise_for();
        let mut still = |candidate: &[u8]| {
            let exec = run_guarded(target, iteration, s.seed, candidate);
            findings_of(&exec, false)
                .iter()
                .any(|(k, sig, _)| *k == kind && *sig == signature)
        };
        let small = T::minimise(input, &mut still, deadline);
        (small.len() < input.len()).then(|| {
            let path = T::save(&dir.join(format!("{}-{iteration}-min", T::NAME)), &small);
            (path, small)
        })
    } else {
        None
    };
    let mut text = format!(
        "FUZZ {} FINDING {}: {signature} (seed {:#x}, iteration {iteration})\n{detail}",
        T::NAME,
        kind.name(),
        s.seed
    );
    let _ = writeln!(
        text,
        "    input: {} bytes, saved to {}",
        input.len(),
        saved.display()
    );
    let shown = match &minimised {
        Some((path, small)) => {
            let _ = writeln!(
                text,
                "    minimised: {} bytes, saved to {}",
                small.len(),
                path.display()
            );
            small.as_slice()
        }
        None => input,
    };
    let _ = writeln!(text, "{}", indent(&T::show(shown), "    "));
    let _ = writeln!(
        text,
        "    replay: EDGESIEVE_FUZZ_REPLAY={} cargo test --test fuzz_parsers {} -- --nocapture",
        minimised.as_ref().map_or(&saved, |(p, _)| p).display(),
        T::NAME
    );
    println!("{text}");
    stats.findings.push(Finding {
        kind,
        signature,
        count: 1,
        first_iteration: iteration,
        saved,
        minimised: minimised.map(|(p, small)| (p, small.len())),
        worst,
    });
}

fn summarise<T: Target>(stats: &Stats, elapsed: Duration, corpus: usize) {
    let s = settings();
    let count = |k: Kind| stats.findings.iter().filter(|f| f.kind == k).count();
    let distinct_crashes = count(Kind::Panic);
    println!(
        "FUZZ {}: {} execs in {:.1} s ({:.0}/s), seed {:#x}, corpus {corpus}, {} distinct \
         outcomes, {} crashes ({distinct_crashes} distinct), findings: {} invariant, {} alloc, \
         {} slow, {} advisory",
        T::NAME,
        stats.execs,
        elapsed.as_secs_f64(),
        stats.execs as f64 / elapsed.as_secs_f64().max(1e-9),
        s.seed,
        stats.outcomes.len(),
        stats.crashes,
        count(Kind::Invariant),
        count(Kind::Alloc),
        count(Kind::Slow),
        count(Kind::Advisory),
    );
    let mut outcomes: Vec<(&String, &u64)> = stats.outcomes.iter().collect();
    outcomes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("  outcomes (most frequent first):");
    for (label, n) in outcomes.iter().take(40) {
        println!("    {n:>9}  {label}");
    }
    if outcomes.len() > 40 {
        println!("    … and {} more", outcomes.len() - 40);
    }
    let mut findings: Vec<&Finding> = stats.findings.iter().collect();
    findings.sort_by_key(|f| (f.kind, f.first_iteration));
    for f in &findings {
        let worst = match f.kind {
            Kind::Alloc => format!(", largest {} MiB", f.worst >> 20),
            Kind::Slow => format!(", slowest {} ms", f.worst),
            _ => String::new(),
        };
        println!(
            "FUZZ {} {} {}: {} inputs{worst}, first at iteration {} -> {}",
            T::NAME,
            f.kind.name(),
            f.signature,
            f.count,
            f.first_iteration,
            f.minimised.as_ref().map_or_else(
                || f.saved.display().to_string(),
                |(p, n)| format!("{} ({n} bytes)", p.display())
            )
        );
    }
    let failing: Vec<String> = findings
        .iter()
        .filter(|f| f.kind.fails())
        .map(|f| format!("{} {}", f.kind.name(), f.signature))
        .collect();
    assert!(
        failing.is_empty(),
        "{}: {} finding(s) (seed {:#x}), details above:\n  {}",
        T::NAME,
        failing.len(),
        s.seed,
        failing.join("\n  ")
    );
}

fn replay<T: Target>(target: &mut T, path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with(T::NAME) {
        println!("FUZZ {}: replay of {name} is for another target", T::NAME);
        return;
    }
    let input = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    println!(
        "FUZZ {}: replaying {} ({} bytes)\n{}",
        T::NAME,
        path.display(),
        input.len(),
        indent(&T::show(&input), "    ")
    );
    let exec = run_guarded(target, 0, settings().seed, &input);
    if let Ok(o) = &exec.result {
        println!("  outcome: {}", o.label);
    }
    println!(
        "  {:.3} s, largest allocation {} bytes",
        exec.elapsed.as_secs_f64(),
        exec.max_request
    );
    let found = findings_of(&exec, true);
    for (kind, signature, detail) in &found {
        println!("  {}: {signature}\n{detail}", kind.name());
    }
    assert!(
        found.iter().all(|(k, _, _)| !k.fails()),
        "{}: the replayed input still fails",
        T::NAME
    );
}

/// Removes chunks (halving sizes down to single bytes) while `still` holds.
fn minimise_bytes(
    input: &[u8],
    still: &mut dyn FnMut(&[u8]) -> bool,
    deadline: Instant,
) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = (best.len() / 2).max(1);
    loop {
        let mut i = 0;
        while i < best.len() {
            if Instant::now() > deadline {
                return best;
            }
            let end = (i + chunk).min(best.len());
            let mut candidate = Vec::with_capacity(best.len());
            candidate.extend_from_slice(&best[..i]);
            candidate.extend_from_slice(&best[end..]);
            if still(&candidate) {
                best = candidate;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 {
            return best;
        }
        chunk /= 2;
    }
}

fn hexdump(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes[..bytes.len().min(limit)].chunks(16).enumerate() {
        let mut hex = String::new();
        for (i, b) in chunk.iter().enumerate() {
            let _ = write!(hex, "{b:02x}{}", if i == 7 { "  " } else { " " });
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(out, "{:06x}  {hex:<49} |{ascii}|", row * 16);
    }
    if bytes.len() > limit {
        let _ = writeln!(out, "… {} more bytes", bytes.len() - limit);
    }
    if bytes.is_empty() {
        out.push_str("(empty)\n");
    }
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A short outcome label from an error: its variant and its message with quoted parts removed,
/// numbers as `#`, `strip` (a temporary path) as `<dir>`.
fn error_label<E: fmt::Debug + fmt::Display>(e: &E, strip: &str) -> String {
    let debug = format!("{e:?}");
    let variant: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let mut text = e.to_string();
    if !strip.is_empty() {
        text = text.replace(strip, "<dir>");
    }
    format!("{variant}: {}", normalise(&text))
}

fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                out.push('…');
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '0'..='9' => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
        if out.chars().count() >= 100 {
            break;
        }
    }
    out.trim().to_string()
}

fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        3..=9 => "3-9",
        10..=255 => "10-255",
        256 => "256",
        _ => ">256",
    }
}

// ------------------------------------------------------------------------------------------------
// Generic byte mutations.

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\r', b' ', b'\t', b'0', b'1', b'9', b':', b'=', b'#', b'[',
    b']', b'"', 0xc3, 0xe2,
];

const INTERESTING_INTS: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// One generic edit of `data`: bit flips, interesting bytes and integers, insertions, deletions,
/// truncation, duplication, dictionary tokens, splicing with another corpus entry.
fn havoc(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]], corpus: &[Vec<u8>]) {
    let len = data.len();
    let pos = rng.below(len + 1);
    match rng.below(13) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.byte();
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(INTERESTING_BYTES);
        }
        3 => {
            let n = rng.range(1, 8);
            let bytes = rng.bytes(n);
            data.splice(pos..pos, bytes);
        }
        4 if !dict.is_empty() => {
            let token = rng.pick(dict).to_vec();
            data.splice(pos..pos, token);
        }
        5 if !dict.is_empty() => {
            let token = *rng.pick(dict);
            let end = (pos + token.len()).min(len);
            data.splice(pos..end, token.iter().copied());
        }
        6 if len > 0 => {
            let n = rng.range(1, len.min(64));
            let at = rng.below(len - n + 1);
            data.drain(at..at + n);
        }
        7 => data.truncate(pos),
        8 if len > 0 => {
            let n = rng.range(1, len.min(64));
            let at = rng.below(len - n + 1);
            let piece = data[at..at + n].to_vec();
            data.splice(pos..pos, piece);
        }
        9 if len > 0 => {
            let width = *rng.pick(&[1usize, 2, 4, 8]);
            let value = rng.pick(INTERESTING_INTS).to_le_bytes();
            let at = rng.below(len);
            for (i, b) in value[..width].iter().enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        10 if !corpus.is_empty() => {
            let other = rng.pick(corpus);
            let from = rng.below(other.len() + 1);
            data.truncate(pos);
            data.extend_from_slice(&other[from..]);
        }
        11 if len > 0 => {
            let i = rng.below(len);
            let delta = rng.range(1, 16) as u8;
            data[i] = if rng.one_in(2) {
                data[i].wrapping_add(delta)
            } else {
                data[i].wrapping_sub(delta)
            };
        }
        _ => {
            let n = rng.range(1, 4);
            let bytes: Vec<u8> = (0..n).map(|_| *rng.pick(INTERESTING_BYTES)).collect();
            data.splice(pos..pos, bytes);
        }
    }
}

fn havoc_n(rng: &mut Rng, data: &mut Vec<u8>, n: usize, dict: &[&[u8]], corpus: &[Vec<u8>]) {
    for _ in 0..n {
        havoc(rng, data, dict, corpus);
    }
}

// ------------------------------------------------------------------------------------------------
// Target 1: YUV4MPEG2 streams through source::open.

const Y4M_MAX_FRAMES: usize = 10_000;
/// Largest width or height a y4m header may claim (src/source/y4m.rs MAX_DIM).
const Y4M_MAX_DIM: u32 = 16384;

const Y4M_DICT: &[&[u8]] = &[
    b"YUV4MPEG2",
    b"YUV4MPEG2 ",
    b"FRAME\n",
    b"FRAME",
    b"FRAME ",
    b" W",
    b" H",
    b" F",
    b" C444",
    b" Cmono",
    b" C420jpeg",
    b" C422",
    b" Ip",
    b" A1:1",
    b" XCOLORRANGE=FULL",
    b":",
    b"\n",
    b"\r\n",
    b" ",
    b"  ",
    "é".as_bytes(),
    "€".as_bytes(),
    b"\xff",
    b"\x00",
    b"16384",
    b"16385",
    b"4294967295",
    b"0",
];

const DIMS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "7",
    "8",
    "9",
    "15",
    "16",
    "17",
    "33",
    "255",
    "256",
    "1000",
    "16385",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "-1",
    "+3",
    "03",
    "00000000004",
    "",
    "1.5",
    "1e3",
    "0x10",
    "3,",
    "٣",
    "３",
    "½",
];
/// Large dimensions, picked rarely: 16384x16384 claims a frame of up to 805 MB.
const HUGE_DIMS: &[&str] = &["2048", "4096", "8191", "16383", "16384"];
const FPS: &[&str] = &[
    "30000:1001",
    "25:1",
    "0:0",
    "1:0",
    "0:1",
    ":",
    "1",
    "4294967295:1",
    "1:4294967295",
    "4294967296:1",
    "-1:1",
    "a:b",
    "1:1:1",
    "",
    "30:",
    ":1",
];
const CHROMAS: &[&str] = &[
    "420jpeg",
    "420paldv",
    "420mpeg2",
    "420",
    "444",
    "mono",
    "422",
    "420p10",
    "444alpha",
    "mono16",
    "",
    "4",
    "420JPEG",
    "44",
    "ä",
    "420jpeg\u{0}",
];
const INTERLACE: &[&str] = &["p", "t", "b", "m", "?", "", "xyz"];
const ASPECT: &[&str] = &["1:1", "0:0", "", "x", "128:117"];
const XTAGS: &[&str] = &[
    "COLORRANGE=FULL",
    "COLORRANGE=LIMITED",
    "COLORRANGE=",
    "COLORRANGE=full",
    "COLORRANGE",
    "COLORRANGE=FULL=FULL",
    "YSCSS=420JPEG",
    "",
    "é",
];
/// Tokens, several starting with a multi-byte character (valid UTF-8, not ASCII).
const WEIRD_TOKENS: &[&str] = &[
    "é",
    "éW3",
    "€",
    "Ŵ5",
    "😀",
    "\u{a0}",
    "W",
    "H",
    "F",
    "C",
    "X",
    "I",
    "A",
    "Z",
    "\u{0}",
    "FRAME",
    "YUV4MPEG2",
    "W3\tH3",
    "\r",
];
const MAGICS: &[&str] = &[
    "YUV4MPEG2",
    "YUV4MPEG",
    "YUV4MPEG2X",
    "yuv4mpeg2",
    "",
    " YUV4MPEG2",
    "YUV4MPEG2\r",
    "\u{feff}YUV4MPEG2",
];
const FRAME_LINES: &[&[u8]] = &[
    b"FRAME\n",
    b"FRAME Ixyz\n",
    b"FRAME\r\n",
    b"FRAME \n",
    b"FRAME",
    b"FRAM\n",
    b"FRAMEX\n",
    b"frame\n",
    b"\n",
    b"",
    b"FRAME\0\n",
    b" FRAME\n",
    b"FRAME X\xc3\xa9\n",
    b"FRAME \xff\n",
    b"JUNK\n",
    b"FRAME\n\n",
];

/// A y4m stream as parts, so that mutations can edit the header tokens and the frames.
#[derive(Clone)]
struct Y4mModel {
    magic: String,
    tokens: Vec<String>,
    sep: &'static str,
    eol: &'static [u8],
    /// FRAME line (with its newline) and plane data.
    frames: Vec<(Vec<u8>, Vec<u8>)>,
    tail: Vec<u8>,
}

impl Y4mModel {
    /// A valid small stream: 4:2:0 (all tags), 4:4:4 or mono, 1 to 4 frames.
    fn valid(rng: &mut Rng) -> Y4mModel {
        let chroma = *rng.pick(&["420jpeg", "420paldv", "420mpeg2", "420", "", "444", "mono"]);
        let (w, h) = (rng.range(1, 9), rng.range(1, 7));
        let luma = w * h;
        let per_frame = match chroma {
            "444" => 3 * luma,
            "mono" => luma,
            _ => luma + 2 * w.div_ceil(2) * h.div_ceil(2),
        };
        let mut tokens = vec![format!("W{w}"), format!("H{h}")];
        if !chroma.is_empty() {
            tokens.push(format!("C{chroma}"));
        }
        for extra in [
            "F30000:1001",
            "F25:1",
            "Ip",
            "A1:1",
            "XYSCSS=420JPEG",
            "XCOLORRANGE=FULL",
            "XCOLORRANGE=LIMITED",
        ] {
            if rng.one_in(3) {
                tokens.push(extra.to_string());
            }
        }
        shuffle(rng, &mut tokens);
        let frames = (0..rng.range(1, 4))
            .map(|_| {
                let line = if rng.one_in(4) {
                    b"FRAME Ixyz\n".to_vec()
                } else {
                    b"FRAME\n".to_vec()
                };
                (line, rng.bytes(per_frame))
            })
            .collect();
        Y4mModel {
            magic: "YUV4MPEG2".into(),
            tokens,
            sep: " ",
            eol: b"\n",
            frames,
            tail: Vec::new(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.magic.clone().into_bytes();
        for t in &self.tokens {
            out.extend_from_slice(self.sep.as_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(self.eol);
        for (line, data) in &self.frames {
            out.extend_from_slice(line);
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// Sets tag `tag` to `value`: replaces its token (usually) or adds another one.
    fn set_tag(&mut self, rng: &mut Rng, tag: char, value: &str) {
        let token = format!("{tag}{value}");
        match self.tokens.iter().position(|t| t.starts_with(tag)) {
            Some(i) if !rng.one_in(5) => self.tokens[i] = token,
            _ => {
                let at = rng.below(self.tokens.len() + 1);
                self.tokens.insert(at, token);
            }
        }
    }

    fn dim(rng: &mut Rng) -> String {
        if rng.one_in(40) {
            rng.pick(HUGE_DIMS).to_string()
        } else if rng.one_in(3) {
            rng.range(1, 40).to_string()
        } else {
            rng.pick(DIMS).to_string()
        }
    }

    fn mutate(&mut self, rng: &mut Rng) {
        match rng.below(19) {
            0 => {
                let v = Self::dim(rng);
                self.set_tag(rng, 'W', &v);
            }
            1 => {
                let v = Self::dim(rng);
                self.set_tag(rng, 'H', &v);
            }
            2 => {
                let v = *rng.pick(FPS);
                self.set_tag(rng, 'F', v);
            }
            3 => {
                let v = *rng.pick(CHROMAS);
                self.set_tag(rng, 'C', v);
            }
            4 => {
                if rng.one_in(2) {
                    let v = *rng.pick(INTERLACE);
                    self.set_tag(rng, 'I', v);
                } else {
                    let v = *rng.pick(ASPECT);
                    self.set_tag(rng, 'A', v);
                }
            }
            5 => {
                let v = *rng.pick(XTAGS);
                self.set_tag(rng, 'X', v);
            }
            6 => {
                let at = rng.below(self.tokens.len() + 1);
                let t = rng.pick(WEIRD_TOKENS).to_string();
                self.tokens.insert(at, t);
            }
            7 if !self.tokens.is_empty() => {
                let i = rng.below(self.tokens.len());
                self.tokens.remove(i);
            }
            8 if !self.tokens.is_empty() => {
                let i = rng.below(self.tokens.len());
                let t = self.tokens[i].clone();
                self.tokens.insert(rng.below(self.tokens.len() + 1), t);
            }
            9 => shuffle(rng, &mut self.tokens),
            10 => self.sep = *rng.pick(&[" ", "  ", "\t", " \t", "\u{a0}"]),
            11 => self.eol = *rng.pick(&[&b"\n"[..], b"\r\n", b"", b"\n\n", b" \n", b"\r"]),
            12 => self.magic = rng.pick(MAGICS).to_string(),
            13 if !self.frames.is_empty() => {
                let i = rng.below(self.frames.len());
                self.frames[i].0 = if rng.one_in(8) {
                    let mut long = b"FRAME ".to_vec();
                    long.resize(rng.range(4090, 4200), b'a');
                    long.push(b'\n');
                    long
                } else {
                    rng.pick(FRAME_LINES).to_vec()
                };
            }
            14 if !self.frames.is_empty() => {
                let i = rng.below(self.frames.len());
                let len = self.frames[i].1.len();
                let new_len = match rng.below(4) {
                    0 => len.saturating_sub(rng.range(1, 3)),
                    1 => len + rng.range(1, 3),
                    2 => 0,
                    _ => len * 2,
                };
                let extra = rng.bytes(new_len.saturating_sub(len));
                self.frames[i].1.truncate(new_len);
                self.frames[i].1.extend(extra);
            }
            15 => match rng.below(3) {
                0 if !self.frames.is_empty() => {
                    let i = rng.below(self.frames.len());
                    self.frames.remove(i);
                }
                1 if !self.frames.is_empty() => {
                    let i = rng.below(self.frames.len());
                    let f = self.frames[i].clone();
                    self.frames.push(f);
                }
                _ => {
                    let n = self.frames.first().map_or(3, |f| f.1.len());
                    let data = rng.bytes(n);
                    self.frames.push((b"FRAME\n".to_vec(), data));
                }
            },
            16 => {
                self.tail = match rng.below(4) {
                    0 => b"FRAME\n".to_vec(),
                    1 => b"FRA".to_vec(),
                    2 => {
                        let n = rng.range(1, 16);
                        rng.bytes(n)
                    }
                    _ => Vec::new(),
                }
            }
            17 => {
                // A header longer than the longest line the reader accepts (4096).
                let mut t = String::from("X");
                t.extend(std::iter::repeat_n('a', rng.range(4000, 4200)));
                let at = rng.below(self.tokens.len() + 1);
                self.tokens.insert(at, t);
            }
            _ => {
                // A stream of many tiny frames.
                self.tokens
                    .retain(|t| !(t.starts_with('W') || t.starts_with('H') || t.starts_with('C')));
                self.tokens
                    .extend(["W1".into(), "H1".into(), "Cmono".into()]);
                let n = rng.range(10, 400);
                self.frames = (0..n)
                    .map(|i| (b"FRAME\n".to_vec(), vec![i as u8]))
                    .collect();
            }
        }
    }
}

struct Y4mTarget {
    _dir: TempDir,
    path: PathBuf,
    name: String,
}

impl Y4mTarget {
    fn new() -> Y4mTarget {
        let dir = TempDir::new("y4m");
        let path = dir.0.join("in.y4m");
        Y4mTarget {
            _dir: dir,
            path,
            name: "in.y4m".into(),
        }
    }
}

impl Target for Y4mTarget {
    const NAME: &'static str = "y4m_stream";
    const MAX_LEN: usize = 8192;
    const TIME_BUDGET: Duration = Duration::from_secs(1);

    fn seeds(&mut self, rng: &mut Rng) -> Vec<Vec<u8>> {
        (0..32).map(|_| Y4mModel::valid(rng).to_bytes()).collect()
    }

    fn probes(&mut self) -> Vec<Vec<u8>> {
        let mut probes: Vec<Vec<u8>> = [
            &b"YUV4MPEG2 W16384 H16384 C444\nFRAME\n\x10\x10\x10\x10"[..],
            b"YUV4MPEG2 W16384 H16384 C444\n",
            b"YUV4MPEG2 W16385 H1\nFRAME\n",
            b"YUV4MPEG2 W0 H1\nFRAME\n",
            b"YUV4MPEG2 W4294967295 H4294967295\nFRAME\n",
            b"YUV4MPEG2 W1 H1 Cmono\nFRAME",
            b"YUV4MPEG2 W1 H1 Cmono\n",
            b"YUV4MPEG2",
            b"",
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let mut long = b"YUV4MPEG2 W1 H1 Cmono X".to_vec();
        long.resize(5000, b'a');
        long.extend_from_slice(b"\nFRAME\n\x80");
        probes.push(long);
        probes
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        if rng.below(10) < 5 {
            let mut model = Y4mModel::valid(rng);
            for _ in 0..rng.range(1, 4) {
                model.mutate(rng);
            }
            let mut bytes = model.to_bytes();
            let n = if rng.one_in(2) { 0 } else { rng.range(1, 3) };
            havoc_n(rng, &mut bytes, n, Y4M_DICT, corpus);
            bytes
        } else {
            let mut bytes = rng.pick(corpus).clone();
            let n = rng.range(1, 8);
            havoc_n(rng, &mut bytes, n, Y4M_DICT, corpus);
            bytes
        }
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        fs::write(&self.path, input).expect("write the y4m input");
        let spec = self.path.to_str().expect("UTF-8 temporary path");
        let mut src = match source::open(spec) {
            Ok(src) => src,
            Err(e) => {
                let mut o = Outcome::new(format!("open Err({})", error_label(&e, &self.name)));
                o.check(e.is_fatal(), "y4m-open-error-not-fatal", || {
                    format!("open failed with a non-fatal error: {e}")
                });
                return o;
            }
        };
        let mut o = Outcome::default();
        let _ = src.describe();
        o.check(src.len_hint().is_none(), "y4m-len-hint", || {
            "a y4m stream announced a length".into()
        });
        let mut frame = Frame::new();
        let mut frames = 0usize;
        let mut end = "end".to_string();
        let mut dims: Option<(u32, u32)> = None;
        let mut last_time = 0u64;
        for _ in 0..Y4M_MAX_FRAMES {
            match src.next_frame(&mut frame) {
                None => break,
                Some(Ok(())) => {
                    let (w, h) = (frame.width, frame.height);
                    o.check(
                        w >= 1 && h >= 1 && w <= Y4M_MAX_DIM && h <= Y4M_MAX_DIM,
                        "y4m-frame-dims",
                        || format!("frame {frames} is {w}x{h}"),
                    );
                    o.check(
                        frame.rgb.len() == w as usize * h as usize * 3,
                        "y4m-frame-rgb-len",
                        || format!("frame {w}x{h} has {} RGB bytes", frame.rgb.len()),
                    );
                    o.check(
                        dims.is_none_or(|d| d == (w, h)),
                        "y4m-frame-dims-change",
                        || format!("frame {frames} is {w}x{h}, an earlier one {dims:?}"),
                    );
                    dims = Some((w, h));
                    o.check(
                        frame.index == frames as u64
                            && frame.name == format!("{}#{frames}", self.name),
                        "y4m-frame-index",
                        || format!("frame {frames} came as {} {:?}", frame.index, frame.name),
                    );
                    o.check(frame.time_ms >= last_time, "y4m-frame-time", || {
                        format!(
                            "frame {frames} at {} ms after {last_time} ms",
                            frame.time_ms
                        )
                    });
                    last_time = frame.time_ms;
                    frames += 1;
                }
                Some(Err(e)) => {
                    end = format!("Err({})", error_label(&e, &self.name));
                    o.check(e.is_fatal(), "y4m-stream-error-not-fatal", || {
                        format!("a y4m stream error is not fatal: {e}")
                    });
                    break;
                }
            }
        }
        o.check(
            src.next_frame(&mut frame).is_none(),
            "y4m-after-end",
            || "next_frame after the end or after a fatal error returned Some".into(),
        );
        o.label = format!("{} frames, then {end}", bucket(frames));
        o
    }
}

// ------------------------------------------------------------------------------------------------
// Target 2: a real spool's files, through Spool::open (recovery) and Spool::read_records.

const SPOOL_W: u32 = 64;
const SPOOL_H: u32 = 48;
/// Archive member holding the number of puts to try after a successful open (not a file).
const PUTS: &[u8] = b"!puts";
const ARCHIVE_MAGIC: &[u8] = b"ESFUZSP1";

/// The spool directory as a list of (name, content); a name ending in '/' is a directory.
type Files = Vec<(Vec<u8>, Vec<u8>)>;

fn pack(files: &Files) -> Vec<u8> {
    let mut out = ARCHIVE_MAGIC.to_vec();
    for (name, data) in files {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn unpack(bytes: &[u8]) -> Option<Files> {
    let mut rest = bytes.strip_prefix(ARCHIVE_MAGIC)?;
    let mut files = Vec::new();
    while !rest.is_empty() {
        let n = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let name = rest.get(2..2 + n)?.to_vec();
        rest = &rest[2 + n..];
        let m = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let data = rest.get(4..4 + m)?.to_vec();
        rest = &rest[4 + m..];
        files.push((name, data));
    }
    Some(files)
}

/// Where archive member `name` goes in `dir`; None for names that are not one plain component.
fn member_path(dir: &Path, name: &[u8]) -> Option<PathBuf> {
    let plain = name.strip_suffix(b"/").unwrap_or(name);
    if plain.is_empty()
        || plain == b"."
        || plain == b".."
        || plain.contains(&b'/')
        || plain.contains(&0)
        || plain.starts_with(b"!")
    {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(dir.join(std::ffi::OsStr::from_bytes(plain)))
    }
    #[cfg(not(unix))]
    {
        Some(dir.join(String::from_utf8_lossy(plain).into_owned()))
    }
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE), as the record format uses.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Record file layout (src/store/format.rs): 24-byte header, payload, CRC-32 trailer.
const REC_HEADER: usize = 24;
const REC_TRAILER: usize = 4;

/// Checks a record file independently of the spool: magic, version, length, CRC. Returns the
/// JPEG length and CRC it states.
fn check_record_bytes(rec: &[u8]) -> Result<(u64, u32), String> {
    if rec.len() < REC_HEADER + REC_TRAILER {
        return Err(format!(
            "{} bytes, shorter than header + trailer",
            rec.len()
        ));
    }
    if &rec[0..4] != b"ESRC" {
        return Err("bad magic".into());
    }
    // Version 1 (no context list) and 2 (a context list after the record) are read.
    let version = u16::from_le_bytes([rec[4], rec[5]]);
    if !(1..=2).contains(&version) {
        return Err(format!("version {version}"));
    }
    let payload = u32::from_le_bytes(rec[8..12].try_into().unwrap()) as usize;
    if rec.len() != REC_HEADER + payload + REC_TRAILER {
        return Err(format!(
            "{} bytes, header says payload {payload}",
            rec.len()
        ));
    }
    let body = &rec[..rec.len() - REC_TRAILER];
    let stored = u32::from_le_bytes(rec[rec.len() - 4..].try_into().unwrap());
    let crc = crc32(body);
    if crc != stored {
        return Err(format!(
            "CRC mismatch: stored {stored:08x}, computed {crc:08x}"
        ));
    }
    Ok((
        u64::from_le_bytes(rec[12..20].try_into().unwrap()),
        u32::from_le_bytes(rec[20..24].try_into().unwrap()),
    ))
}

/// Entry `id` of `dir` as the spool would name it: its record must pass [`check_record_bytes`]
/// and its JPEG must have the stated length.
fn check_entry_files(dir: &Path, id: u64) -> Result<(u64, u32), String> {
    let rec_path = dir.join(format!("{id:012}.rec"));
    let rec = fs::read(&rec_path).map_err(|e| format!("cannot read its record: {e}"))?;
    let (jpeg_len, jpeg_crc) =
        check_record_bytes(&rec).map_err(|why| format!("its record fails the check: {why}"))?;
    let jpg = dir.join(format!("{id:012}.jpg"));
    let len = fs::metadata(&jpg)
        .map_err(|e| format!("its JPEG: {e}"))?
        .len();
    if len != jpeg_len {
        return Err(format!(
            "its JPEG is {len} bytes, the record says {jpeg_len}"
        ));
    }
    Ok((jpeg_len, jpeg_crc))
}

/// The spool's own naming rule: exactly 12 ASCII digits (ids never exceed 999_999_999_999),
/// then .jpg or .rec. Other names are not entries (the spool quarantines them).
fn entry_id(name: &str) -> Option<u64> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !matches!(ext, "jpg" | "rec")
        || stem.len() != 12
        || !stem.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    stem.parse().ok()
}

/// Highest entry id among the regular files of `dir`, and the `next-id` file's number.
fn ids_before(dir: &Path) -> (Option<u64>, Option<u64>) {
    let mut highest = None;
    if let Ok(items) = fs::read_dir(dir) {
        for item in items.flatten() {
            let is_file = item.file_type().is_ok_and(|t| t.is_file());
            if let (true, Some(name)) = (is_file, item.file_name().to_str()) {
                highest = highest.max(entry_id(name));
            }
        }
    }
    // A next-id beyond the id space (MAX_ID + 1 means "all used") is quarantined by the spool.
    let next = fs::read_to_string(dir.join("next-id"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|&n| n <= 1_000_000_000_000);
    (highest, next)
}

fn kept_record(i: u64, value: f32) -> KeptRecord {
    let probs =
        |hot: usize| -> Vec<f32> { (0..8).map(|k| if k == hot { 0.72 } else { 0.04 }).collect() };
    KeptRecord {
        frame_index: 1200 + i,
        frame_name: format!("drive-0042.y4m#{}", 1200 + i),
        source: "y4m drive-0042.y4m 64x48 30000:1001 C420jpeg limited".into(),
        timestamp_ms: 1_764_480_000_000 + i * 33,
        width: SPOOL_W,
        height: SPOOL_H,
        model: "yolox-nano int8".into(),
        detections: vec![
            StoredDetection {
                class_id: 2,
                class_name: "car".into(),
                score: 0.41,
                objectness: 0.77,
                bbox: [3.5, 7.25, 40.0, 33.0],
                class_probs: probs(2),
            },
            StoredDetection {
                class_id: 0,
                class_name: "person".into(),
                score: 0.33,
                objectness: 0.52,
                bbox: [44.0, 10.0, 52.5, 30.0],
                class_probs: probs(0),
            },
        ],
        scores: FrameScores {
            uncertainty: 0.62,
            novelty: 0.35,
            value,
            threshold: 0.4,
        },
        embedding: (0..EMBED_DIM)
            .map(|k| ((k as f32 + i as f32) * 0.37).sin() / 5.66)
            .collect(),
        reasons: vec![Reason::Value, Reason::RareClass(0)],
    }
}

fn synthetic_rgb() -> Vec<u8> {
    let mut rgb = Vec::with_capacity((SPOOL_W * SPOOL_H * 3) as usize);
    for y in 0..SPOOL_H {
        for x in 0..SPOOL_W {
            rgb.extend_from_slice(&[(x * 4) as u8, (y * 5) as u8, ((x + y) * 3) as u8]);
        }
    }
    rgb
}

fn spool_config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 64 << 20,
        min_free_bytes: 0,
        ..SpoolConfig::default()
    }
}

const FLOATS: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MIN_POSITIVE,
    f32::EPSILON,
    f32::MAX,
    f32::MIN,
    1e20,
    -1e20,
    1e-3,
];

fn weird_float(rng: &mut Rng) -> f32 {
    match rng.below(4) {
        0 => f32::from_bits(1), // smallest subnormal
        1 => f32::from_bits(0x7fc0_0001 | ((rng.byte() as u32 & 1) << 31)), // NaN payloads
        _ => *rng.pick(FLOATS),
    }
}

const WEIRD_STRINGS: &[&str] = &[
    "",
    "é",
    "\u{0}",
    "../../etc/passwd",
    "\u{202e}gnp.exe",
    "a\nb",
    "😀😀😀",
    "FRAME",
];

fn weird_string(rng: &mut Rng) -> String {
    if rng.one_in(5) {
        "x".repeat(rng.range(100, 2000))
    } else {
        rng.pick(WEIRD_STRINGS).to_string()
    }
}

/// Edits one field of a record (the payload of a .rec file).
fn mutate_kept_record(rng: &mut Rng, r: &mut KeptRecord) {
    match rng.below(12) {
        0 => r.frame_name = weird_string(rng),
        1 => r.source = weird_string(rng),
        2 => {
            r.width = *rng.pick(&[0, 1, u32::MAX, 65535]);
            r.height = *rng.pick(&[0, 1, u32::MAX, 65535]);
        }
        3 => {
            r.timestamp_ms = *rng.pick(&[0, u64::MAX, i64::MAX as u64]);
            r.frame_index = *rng.pick(&[0, u64::MAX]);
        }
        4 => r.detections.clear(),
        5 => {
            let n = rng.range(1, 60);
            let d = r.detections.first().cloned();
            if let Some(d) = d {
                r.detections.extend(std::iter::repeat_n(d, n));
            }
        }
        6 => {
            if let Some(d) = r.detections.first_mut() {
                d.bbox = [
                    weird_float(rng),
                    weird_float(rng),
                    weird_float(rng),
                    weird_float(rng),
                ];
                d.class_id = *rng.pick(&[u16::MAX, 80, 0]);
                d.score = weird_float(rng);
                d.class_probs = vec![weird_float(rng); rng.range(0, 100)];
                d.class_name = weird_string(rng);
            }
        }
        7 => r.scores.value = weird_float(rng),
        8 => {
            let n = *rng.pick(&[0usize, 1, 63, 65, 500]);
            r.embedding = (0..n).map(|_| weird_float(rng)).collect();
        }
        9 => {
            r.reasons = match rng.below(4) {
                0 => Vec::new(),
                1 => vec![Reason::ClassTrigger(u16::MAX), Reason::Explore],
                2 => vec![Reason::Value; rng.range(2, 40)],
                _ => vec![Reason::RareClass(u16::MAX), Reason::ClassTrigger(0)],
            }
        }
        10 => r.model = weird_string(rng),
        _ => {
            r.scores.threshold = weird_float(rng);
            r.scores.novelty = weird_float(rng);
            r.scores.uncertainty = weird_float(rng);
        }
    }
}

/// Makes a record file consistent again after an edit: payload length (when `fix_len`) and the
/// trailing CRC, so that the decoder gets past its checks.
fn repair_record(rec: &mut [u8], fix_len: bool) {
    if rec.len() < REC_HEADER + REC_TRAILER {
        return;
    }
    let n = rec.len();
    if fix_len {
        let payload = (n - REC_HEADER - REC_TRAILER) as u32;
        rec[8..12].copy_from_slice(&payload.to_le_bytes());
    }
    let crc = crc32(&rec[..n - REC_TRAILER]);
    rec[n - REC_TRAILER..].copy_from_slice(&crc.to_le_bytes());
}

/// A record file from a header (its first 24 bytes are reused) and a new payload.
fn rebuild_record(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = header[..REC_HEADER].to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0; REC_TRAILER]);
    repair_record(&mut out, true);
    out
}

fn mutate_record_file(rng: &mut Rng, rec: &mut Vec<u8>, jpeg_len: Option<u64>) {
    let valid_header = rec.len() >= REC_HEADER + REC_TRAILER;
    match rng.below(9) {
        0 | 1 => {
            let n = rng.range(1, 4);
            havoc_n(rng, rec, n, &[b"ESRC", &[1, 0]], &[]);
            if rng.one_in(2) {
                let fix_len = rng.one_in(2);
                repair_record(rec, fix_len);
            }
        }
        2 if valid_header => {
            match rng.below(6) {
                0 => {
                    rec[0..4].copy_from_slice(*rng.pick(&[b"ESRD", b"esrc", b"\0\0\0\0", b"ESSK"]))
                }
                1 => rec[4..6].copy_from_slice(&rng.pick(&[0u16, 2, 0xffff]).to_le_bytes()),
                2 => rec[6..8].copy_from_slice(&[rng.byte(), rng.byte()]),
                3 => {
                    let n = (rec.len() - REC_HEADER - REC_TRAILER) as u32;
                    let v = *rng.pick(&[
                        0,
                        n.wrapping_sub(1),
                        n + 1,
                        u32::MAX,
                        u32::MAX - 27,
                        1 << 31,
                    ]);
                    rec[8..12].copy_from_slice(&v.to_le_bytes());
                }
                4 => {
                    let actual = jpeg_len.unwrap_or(0);
                    let v = *rng.pick(&[0, actual.wrapping_sub(1), actual + 1, u64::MAX, 1 << 40]);
                    rec[12..20].copy_from_slice(&v.to_le_bytes());
                }
                _ => rec[20..24].copy_from_slice(&rng.bytes(4)),
            }
            if !rng.one_in(3) {
                repair_record(rec, false);
            }
        }
        3 | 4 if valid_header => {
            let payload = &rec[REC_HEADER..rec.len() - REC_TRAILER];
            if let Ok(mut r) = postcard::from_bytes::<KeptRecord>(payload) {
                for _ in 0..rng.range(1, 3) {
                    mutate_kept_record(rng, &mut r);
                }
                if let Ok(p) = postcard::to_allocvec(&r) {
                    *rec = rebuild_record(rec, &p);
                }
            }
        }
        5 if valid_header => {
            let n = rng.range(0, 64);
            let p = rng.bytes(n);
            *rec = rebuild_record(rec, &p);
        }
        6 => {
            // Torn write.
            let n = rng.below(rec.len() + 1);
            rec.truncate(n);
        }
        7 if valid_header && rec.len() > REC_HEADER + REC_TRAILER => {
            // A varint or length inside the payload.
            let at = rng.range(REC_HEADER, rec.len() - REC_TRAILER - 1);
            rec[at] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff]);
            repair_record(rec, true);
        }
        _ => {
            // Payload cut or extended, length and CRC repaired.
            if valid_header {
                let mut payload = rec[REC_HEADER..rec.len() - REC_TRAILER].to_vec();
                let keep = rng.below(payload.len() + 1);
                payload.truncate(keep);
                if rng.one_in(2) {
                    let extra = rng.range(1, 8);
                    payload.extend(rng.bytes(extra));
                }
                *rec = rebuild_record(rec, &payload);
            }
        }
    }
}

fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Names an entry's copy may take: regular, 12-digit extremes, more digits, over u64.
const ID_STEMS: &[&str] = &[
    "000000000009",
    "000000000000",
    "999999999999",
    "1000000000000",
    "0000000000002",
    "18446744073709551614",
    "18446744073709551615",
    "18446744073709551616",
    "00000000001",
];

const NEXT_IDS: &[&[u8]] = &[
    b"0",
    b"1",
    b"5\n",
    b"3\n",
    b"100\n",
    b"18446744073709551614\n",
    b"18446744073709551615\n",
    b"18446744073709551616\n",
    b"-1\n",
    b"",
    b" 7 \n",
    b"abc",
    b"\xff\xfe",
    b"99999999999999999999",
    b"1e3",
    b"+8",
    b"0x10",
];

fn mutate_spool(rng: &mut Rng, files: &mut Files) {
    let is_kind = |n: &[u8], ext: &[u8]| n.ends_with(ext);
    let recs: Vec<usize> = (0..files.len())
        .filter(|&i| is_kind(&files[i].0, b".rec"))
        .collect();
    let jpgs: Vec<usize> = (0..files.len())
        .filter(|&i| is_kind(&files[i].0, b".jpg"))
        .collect();
    let set = |files: &mut Files, name: &[u8], data: Vec<u8>| match files
        .iter_mut()
        .find(|f| f.0 == name)
    {
        Some(f) => f.1 = data,
        None => files.push((name.to_vec(), data)),
    };
    match rng.below(18) {
        0..=6 if !recs.is_empty() => {
            let i = *rng.pick(&recs);
            let jpg_name = [&files[i].0[..files[i].0.len() - 4], b".jpg"].concat();
            let jpeg_len = files
                .iter()
                .find(|f| f.0 == jpg_name)
                .map(|f| f.1.len() as u64);
            mutate_record_file(rng, &mut files[i].1, jpeg_len);
        }
        7 | 8 if !jpgs.is_empty() => {
            let i = *rng.pick(&jpgs);
            let jpg = &mut files[i].1;
            match rng.below(4) {
                0 => {
                    let n = rng.below(jpg.len() + 1);
                    jpg.truncate(n);
                }
                1 => {
                    let n = rng.range(1, 16);
                    jpg.extend(rng.bytes(n));
                }
                2 if !jpg.is_empty() => {
                    // Same length, other bytes: only the JPEG CRC can tell.
                    let at = rng.below(jpg.len());
                    jpg[at] ^= 0x5a;
                }
                _ => jpg.clear(),
            }
            if rng.one_in(2) {
                // The record follows the JPEG's new length, CRC repaired.
                let new_len = files[i].1.len() as u64;
                let rec_name = [&files[i].0[..files[i].0.len() - 4], b".rec"].concat();
                if let Some(r) = files.iter_mut().find(|f| f.0 == rec_name) {
                    if r.1.len() >= REC_HEADER + REC_TRAILER {
                        r.1[12..20].copy_from_slice(&new_len.to_le_bytes());
                        repair_record(&mut r.1, false);
                    }
                }
            }
        }
        9 => {
            let data = if rng.one_in(4) {
                let n = rng.range(0, 24);
                rng.bytes(n)
            } else {
                rng.pick(NEXT_IDS).to_vec()
            };
            set(files, b"next-id", data);
        }
        10 if !files.is_empty() => {
            let i = rng.below(files.len());
            files.remove(i);
        }
        11 if !recs.is_empty() => {
            // Copy an entry (record, JPEG or both) to another id.
            let i = *rng.pick(&recs);
            let stem = files[i].0[..files[i].0.len() - 4].to_vec();
            let new_stem = rng.pick(ID_STEMS).as_bytes().to_vec();
            let which = rng.below(3);
            for (ext, wanted) in [(&b".rec"[..], which != 1), (&b".jpg"[..], which != 2)] {
                let from = [&stem[..], ext].concat();
                if let (true, Some(data)) = (
                    wanted,
                    files.iter().find(|f| f.0 == from).map(|f| f.1.clone()),
                ) {
                    set(files, &[&new_stem[..], ext].concat(), data);
                }
            }
        }
        12 if !files.is_empty() => {
            // Rename a file.
            let i = rng.below(files.len());
            let name = files[i].0.clone();
            files[i].0 = match rng.below(5) {
                0 => [b"0", &name[..]].concat(),
                1 => [b".tmp-", &name[..]].concat(),
                2 => name.to_ascii_uppercase(),
                3 => [&name[..], b"~"].concat(),
                _ => name.get(1..).map_or(name.clone(), <[u8]>::to_vec),
            };
        }
        13 => {
            // Odd directory members.
            let (name, data): (&[u8], Vec<u8>) = match rng.below(8) {
                0 => (b".tmp-000000000003.rec", rng.bytes(20)),
                1 => (b".tmp-next-id", b"9\n".to_vec()),
                2 => (b"000000000007.jpg", rng.bytes(100)),
                3 => (b"000000000008.rec", Vec::new()),
                4 => (b"000000000010.rec/", Vec::new()),
                5 => (b"000000000001.jpg/", Vec::new()),
                6 => (b"\xff00000000004.rec", rng.bytes(8)),
                _ => (b"next-id/", Vec::new()),
            };
            if name.ends_with(b"/") {
                // A directory replaces a file of the same name.
                let plain = &name[..name.len() - 1];
                files.retain(|f| f.0 != plain);
            }
            set(files, name, data);
        }
        14 => {
            let n = *rng.pick(&[0u8, 1, 2, 3]);
            set(files, PUTS, vec![n]);
        }
        _ if !files.is_empty() => {
            let i = rng.below(files.len());
            let n = rng.range(1, 4);
            havoc_n(rng, &mut files[i].1, n, &[], &[]);
        }
        _ => {}
    }
}

struct SpoolTarget {
    base: TempDir,
    rgb: Vec<u8>,
}

impl SpoolTarget {
    fn new() -> SpoolTarget {
        SpoolTarget {
            base: TempDir::new("spool"),
            rgb: synthetic_rgb(),
        }
    }

    /// The directory's files as an archive (regular files only).
    fn pack_dir(dir: &Path) -> Vec<u8> {
        let mut files: Files = Vec::new();
        for item in fs::read_dir(dir)
            .expect("read the spool directory")
            .flatten()
        {
            if item.file_type().is_ok_and(|t| t.is_file()) {
                let name = item.file_name().to_string_lossy().into_owned().into_bytes();
                files.push((name, fs::read(item.path()).expect("read a spool file")));
            }
        }
        files.sort();
        pack(&files)
    }

    fn read_records_checked(dir: &Path, strip: &str, o: &mut Outcome, when: &str) -> String {
        match Spool::read_records(dir) {
            Ok(list) => {
                for (id, _) in &list {
                    if let Err(why) = check_entry_files(dir, *id) {
                        o.check(false, "spool-read-records-bad-entry", || {
                            format!("read_records ({when}) reported entry {id}: {why}")
                        });
                    }
                }
                format!("Ok({})", bucket(list.len()))
            }
            Err(e) => {
                let label = error_label(&e, strip);
                o.advise(
                    format!("read_records failed: {label}"),
                    format!("Spool::read_records ({when}) failed: {e}"),
                );
                format!("Err({label})")
            }
        }
    }
}

impl Target for SpoolTarget {
    const NAME: &'static str = "spool_record";
    const MAX_LEN: usize = 64 << 10;
    const TIME_BUDGET: Duration = Duration::from_secs(5);

    fn seeds(&mut self, _rng: &mut Rng) -> Vec<Vec<u8>> {
        let dir = self.base.0.join("template");
        let (mut spool, _) = Spool::open(&dir, spool_config()).expect("open a new spool");
        for i in 0..4 {
            let outcome = spool
                .put(
                    &kept_record(i, 0.3 + 0.1 * i as f32),
                    &self.rgb,
                    SPOOL_W,
                    SPOOL_H,
                )
                .expect("put");
            assert!(matches!(outcome, PutOutcome::Stored { .. }), "{outcome:?}");
        }
        // Acking the newest entry writes next-id.
        let newest = spool.pending().last().expect("entries");
        assert!(spool.ack(newest).expect("ack"));
        drop(spool);
        let plain = Self::pack_dir(&dir);
        let mut files = unpack(&plain).expect("archive");
        let mut seeds = vec![plain];
        files.push((PUTS.to_vec(), vec![2]));
        seeds.push(pack(&files));
        files.push((b".tmp-000000000005.jpg".to_vec(), vec![0xff, 0xd8, 0xff]));
        files.push((b"000000000006.jpg".to_vec(), vec![0xff, 0xd8, 0xff, 0xd9]));
        seeds.push(pack(&files));
        let _ = fs::remove_dir_all(&dir);
        seeds
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let base: &Vec<u8> = rng.pick(corpus);
        let mut files = unpack(base).unwrap_or_default();
        for _ in 0..rng.range(1, 3) {
            mutate_spool(rng, &mut files);
        }
        pack(&files)
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let Some(files) = unpack(input) else {
            return Outcome::new("not an archive");
        };
        let dir = self.base.0.join("spool");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the spool directory");
        let mut puts = 0u8;
        for (name, data) in &files {
            if name == PUTS {
                puts = data.first().copied().unwrap_or(0) % 4;
                continue;
            }
            let Some(path) = member_path(&dir, name) else {
                continue;
            };
            if name.ends_with(b"/") {
                let _ = fs::create_dir_all(&path);
            } else if !path.is_dir() {
                fs::write(&path, data).expect("write a spool file");
            }
        }
        let strip = dir.to_string_lossy().into_owned();
        let mut o = Outcome::default();
        let (highest, next_id_file) = ids_before(&dir);

        // 1. The read-only listing, on the directory as found.
        let rr1 = Self::read_records_checked(&dir, &strip, &mut o, "before open");

        // 2. Open with crash recovery; then what it kept, reads and puts.
        let mut open_label = String::new();
        let mut put_labels: Vec<String> = Vec::new();
        match Spool::open(&dir, spool_config()) {
            Err(e) => {
                let label = error_label(&e, &strip);
                o.advise(
                    format!("open failed: {label}"),
                    format!("Spool::open failed instead of recovering: {e}"),
                );
                open_label = format!("Err({label})");
            }
            Ok((mut spool, report)) => {
                let _ = write!(
                    open_label,
                    "Ok(kept {}, partial {}, corrupt {})",
                    bucket(report.kept),
                    bucket(report.discarded_partial),
                    bucket(report.discarded_corrupt)
                );
                let pending: Vec<u64> = spool.pending().collect();
                o.check(report.kept == pending.len(), "spool-report-kept", || {
                    format!(
                        "report says {} kept, {} pending",
                        report.kept,
                        pending.len()
                    )
                });
                for &id in &pending {
                    let checked = check_entry_files(&dir, id);
                    if let Err(why) = &checked {
                        o.check(false, "spool-open-kept-bad-entry", || {
                            format!("Spool::open kept entry {id}: {why}")
                        });
                    }
                    match spool.read(id) {
                        Ok((_, jpeg)) => {
                            let crc_ok = checked.as_ref().is_ok_and(|&(len, crc)| {
                                len == jpeg.len() as u64 && crc == crc32(&jpeg)
                            });
                            o.check(crc_ok, "spool-read-unchecked-jpeg", || {
                                format!("Spool::read({id}) returned a JPEG that does not match its record")
                            });
                        }
                        Err(e) => {
                            let label = error_label(&e, &strip);
                            o.check(
                                label.starts_with("Corrupt"),
                                "spool-read-kept-entry",
                                || format!("Spool::read({id}) of an entry open kept: {e}"),
                            );
                        }
                    }
                }
                for r in spool.iter_records() {
                    if let Err(e) = r {
                        o.check(false, "spool-iter-records", || {
                            format!("iter_records of an entry open kept: {e}")
                        });
                    }
                }
                // What recovery promises to remove.
                if let Ok(items) = fs::read_dir(&dir) {
                    for item in items.flatten() {
                        let name = item.file_name().to_string_lossy().into_owned();
                        let is_file = item.file_type().is_ok_and(|t| t.is_file());
                        if is_file && name.starts_with(".tmp-") {
                            o.advise(
                                "open left a .tmp- file".into(),
                                format!("{name} is still there after Spool::open"),
                            );
                        }
                        if let (true, Some(id)) =
                            (is_file && name.ends_with(".jpg"), entry_id(&name))
                        {
                            if name == format!("{id:012}.jpg") && !pending.contains(&id) {
                                o.advise(
                                    "open left a JPEG without an entry".into(),
                                    format!("{name} is still there after Spool::open"),
                                );
                            }
                        }
                    }
                }
                // Puts: ids only grow, also across restarts.
                let mut floor = highest;
                for p in 0..puts {
                    let rec = kept_record(100 + u64::from(p), 0.9);
                    match spool.put(&rec, &self.rgb, SPOOL_W, SPOOL_H) {
                        Ok(PutOutcome::Stored { id, .. }) => {
                            o.check(
                                floor.is_none_or(|m| id > m)
                                    && next_id_file.is_none_or(|n| id >= n),
                                "spool-put-id-not-fresh",
                                || {
                                    format!(
                                        "put stored entry {id}, but the directory already had \
                                         ids up to {floor:?} (next-id file {next_id_file:?})"
                                    )
                                },
                            );
                            floor = Some(floor.map_or(id, |m| m.max(id)));
                            match spool.read(id) {
                                Ok((back, _)) => {
                                    o.check(back == rec, "spool-put-read-back", || {
                                        format!("entry {id} reads back another record")
                                    })
                                }
                                Err(e) => o.check(false, "spool-put-read-back", || {
                                    format!("entry {id} just stored does not read back: {e}")
                                }),
                            }
                            put_labels.push("Stored".into());
                        }
                        Ok(PutOutcome::Rejected { reason }) => {
                            put_labels.push(format!("Rejected({reason:?})"));
                        }
                        Err(e) => {
                            let label = error_label(&e, &strip);
                            o.advise(
                                format!("put failed: {label}"),
                                format!("Spool::put after a successful open failed: {e}"),
                            );
                            put_labels.push(format!("Err({label})"));
                        }
                    }
                }
            }
        }

        // 3. The listing again, after recovery (and puts).
        let rr2 = Self::read_records_checked(&dir, &strip, &mut o, "after open");
        o.label = format!(
            "read_records {rr1} | open {open_label} | puts [{}] | read_records {rr2}",
            put_labels.join(",")
        );
        o
    }

    fn minimise(input: &[u8], still: &mut dyn FnMut(&[u8]) -> bool, deadline: Instant) -> Vec<u8> {
        let Some(mut files) = unpack(input) else {
            return input.to_vec();
        };
        let mut i = 0;
        while i < files.len() && Instant::now() < deadline {
            let mut candidate = files.clone();
            candidate.remove(i);
            if still(&pack(&candidate)) {
                files = candidate;
            } else {
                i += 1;
            }
        }
        for k in 0..files.len() {
            let snapshot = files.clone();
            let smaller = minimise_bytes(
                &snapshot[k].1,
                &mut |data: &[u8]| {
                    let mut candidate = snapshot.clone();
                    candidate[k].1 = data.to_vec();
                    still(&pack(&candidate))
                },
                deadline,
            );
            files[k].1 = smaller;
        }
        pack(&files)
    }

    fn save(stem: &Path, input: &[u8]) -> PathBuf {
        let path = stem.with_extension("bin");
        let _ = fs::write(&path, input);
        // Also as a directory, for `edgesieve inspect` and friends.
        if let Some(files) = unpack(input) {
            let dir = stem.with_extension("dir");
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::create_dir_all(&dir);
            for (name, data) in &files {
                if let Some(p) = member_path(&dir, name) {
                    if name.ends_with(b"/") {
                        let _ = fs::create_dir_all(&p);
                    } else {
                        let _ = fs::write(&p, data);
                    }
                }
            }
        }
        path
    }

    fn show(input: &[u8]) -> String {
        let Some(files) = unpack(input) else {
            return hexdump(input, 256);
        };
        let mut out = String::new();
        for (name, data) in &files {
            let _ = writeln!(out, "{} ({} bytes)", name_str(name), data.len());
            let is_jpeg = name.ends_with(b".jpg");
            let _ = writeln!(
                out,
                "{}",
                indent(&hexdump(data, if is_jpeg { 32 } else { 256 }), "  ")
            );
        }
        out
    }
}

// ------------------------------------------------------------------------------------------------
// Target 3: sketch files through FrameSketch::from_bytes.

/// postcard's unsigned varint (LEB128).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A sketch file spelled out field by field (src/select/sketch_file.rs): header (magic,
/// version, K, D), radius, centres (weight, point); counts can claim more than is there.
struct SketchSpec {
    magic: [u8; 4],
    version: u64,
    k: u64,
    d: u64,
    radius: f32,
    claimed_centres: Option<u64>,
    centres: Vec<(u64, Option<u64>, Vec<f32>)>,
}

impl SketchSpec {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        put_varint(&mut out, self.version);
        put_varint(&mut out, self.k);
        put_varint(&mut out, self.d);
        out.extend_from_slice(&self.radius.to_le_bytes());
        put_varint(
            &mut out,
            self.claimed_centres.unwrap_or(self.centres.len() as u64),
        );
        for (weight, claimed, point) in &self.centres {
            put_varint(&mut out, *weight);
            put_varint(&mut out, claimed.unwrap_or(point.len() as u64));
            for v in point {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    fn of(sketch: &FrameSketch) -> SketchSpec {
        SketchSpec {
            magic: *b"ESSK",
            version: 1,
            k: sketch.capacity() as u64,
            d: EMBED_DIM as u64,
            radius: sketch.radius(),
            claimed_centres: None,
            centres: sketch
                .centres()
                .iter()
                .map(|c| (c.weight(), None, c.point().to_vec()))
                .collect(),
        }
    }

    fn random(rng: &mut Rng) -> SketchSpec {
        let k = edgesieve::select::SKETCH_CENTRES as u64;
        let d = EMBED_DIM as u64;
        let n = match rng.below(20) {
            0..=11 => rng.range(0, 4),
            12..=17 => rng.range(5, 40),
            _ => rng.range(k as usize - 1, k as usize + 1),
        };
        let centres = (0..n)
            .map(|_| {
                let weight = match rng.below(10) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.next_u64(),
                    _ => rng.range(1, 9) as u64,
                };
                let len = if rng.one_in(25) {
                    *rng.pick(&[0usize, 1, 63, 65, 128])
                } else {
                    d as usize
                };
                let point = (0..len)
                    .map(|_| {
                        if rng.one_in(40) {
                            weird_float(rng)
                        } else {
                            rng.signed_unit() * 0.25
                        }
                    })
                    .collect();
                let claimed = rng
                    .one_in(40)
                    .then(|| *rng.pick(&[u64::MAX, 1 << 40, d + 1]));
                (weight, claimed, point)
            })
            .collect();
        SketchSpec {
            magic: if rng.one_in(15) {
                *rng.pick(&[*b"ESSJ", *b"\0\0\0\0", *b"KSSE", *b"ESRC"])
            } else {
                *b"ESSK"
            },
            version: if rng.one_in(15) {
                *rng.pick(&[0, 2, 0xffff, 0x1_0000, u64::MAX])
            } else {
                1
            },
            k: if rng.one_in(15) {
                *rng.pick(&[0, 1, k - 1, k + 1, u64::MAX])
            } else {
                k
            },
            d: if rng.one_in(15) {
                *rng.pick(&[0, 1, d - 1, d + 1, u64::MAX])
            } else {
                d
            },
            radius: if rng.one_in(3) {
                weird_float(rng)
            } else {
                rng.signed_unit().abs()
            },
            claimed_centres: rng
                .one_in(30)
                .then(|| *rng.pick(&[u64::MAX, 1 << 40, k + 1, n as u64 + 1])),
            centres,
        }
    }
}

fn unit_vector(rng: &mut Rng) -> [f32; EMBED_DIM] {
    let mut x = [0f32; EMBED_DIM];
    for v in &mut x {
        *v = rng.signed_unit() + rng.signed_unit() + rng.signed_unit();
    }
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    for v in &mut x {
        *v /= norm;
    }
    x
}

const SKETCH_DICT: &[&[u8]] = &[
    b"ESSK",
    &[0x01],
    &[0x80, 0x02],
    &[0x40],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x00, 0x00, 0xc0, 0x7f],
    &[0x00, 0x00, 0x80, 0x7f],
    &[0x00, 0x00, 0x80, 0xff],
    &[0x01, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0x7f, 0x7f],
    &[0x00, 0x00, 0x00, 0x80],
];

struct SketchTarget;

impl Target for SketchTarget {
    const NAME: &'static str = "sketch_file";
    /// A full sketch (256 centres of 64 floats) is about 66 KB.
    const MAX_LEN: usize = 96 << 10;
    const TIME_BUDGET: Duration = Duration::from_secs(1);

    fn seeds(&mut self, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        let empty = FrameSketch::new();
        seeds.push(empty.to_bytes());
        let mut few = FrameSketch::new();
        for _ in 0..3 {
            few.insert(&unit_vector(rng));
        }
        seeds.push(few.to_bytes());
        // 256 distinct points: full, radius still 0.
        let mut full = FrameSketch::new();
        for _ in 0..full.capacity() {
            full.insert(&unit_vector(rng));
        }
        seeds.push(full.to_bytes());
        // Past capacity: clusters, radius > 0.
        let clusters: Vec<[f32; EMBED_DIM]> = (0..300).map(|_| unit_vector(rng)).collect();
        let mut over = FrameSketch::new();
        for i in 0..600 {
            let mut p = clusters[i % clusters.len()];
            for v in &mut p {
                *v += rng.signed_unit() * 0.01;
            }
            over.insert(&p);
        }
        seeds.push(over.to_bytes());
        // The field-by-field encoder must agree with to_bytes, else the structured inputs miss.
        for s in [&empty, &few, &full, &over] {
            if SketchSpec::of(s).encode() != s.to_bytes() {
                println!(
                    "FUZZ sketch_file: warning: the test's encoder no longer matches \
                     Sketch::to_bytes; structured inputs are off-format"
                );
            }
        }
        for _ in 0..8 {
            let mut spec = SketchSpec::random(rng);
            spec.magic = *b"ESSK";
            spec.version = 1;
            spec.k = full.capacity() as u64;
            spec.d = EMBED_DIM as u64;
            seeds.push(spec.encode());
        }
        seeds
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        match rng.below(10) {
            0..=3 => {
                let mut bytes = SketchSpec::random(rng).encode();
                if rng.one_in(3) {
                    let n = rng.range(1, 2);
                    havoc_n(rng, &mut bytes, n, SKETCH_DICT, corpus);
                }
                bytes
            }
            4 | 5 => {
                // A float of a real sketch (radius or coordinate) replaced.
                let mut bytes = rng.pick(corpus).clone();
                for _ in 0..rng.range(1, 3) {
                    if bytes.len() >= 4 {
                        let at = rng.below(bytes.len() - 3);
                        bytes[at..at + 4].copy_from_slice(&weird_float(rng).to_le_bytes());
                    }
                }
                bytes
            }
            _ => {
                let mut bytes = rng.pick(corpus).clone();
                let n = rng.range(1, 6);
                havoc_n(rng, &mut bytes, n, SKETCH_DICT, corpus);
                bytes
            }
        }
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let s = match FrameSketch::from_bytes(input) {
            Ok(s) => s,
            Err(e) => return Outcome::new(format!("Err({})", error_label(&e, ""))),
        };
        let mut o = Outcome::default();
        o.check(s.len() <= s.capacity(), "sketch-over-capacity", || {
            format!("{} centres, capacity {}", s.len(), s.capacity())
        });
        let r = s.radius();
        o.check(!r.is_nan() && r >= 0.0, "sketch-bad-radius", || {
            format!("accepted radius {r}")
        });
        if !r.is_finite() {
            // Not a crash: such a sketch merges every centre into one at its next overflow.
            o.advise(
                "accepted an infinite radius".into(),
                format!("from_bytes accepted radius {r}"),
            );
        }
        for (i, c) in s.centres().iter().enumerate() {
            o.check(
                c.weight() >= 1 && c.point().iter().all(|v| v.is_finite()),
                "sketch-bad-centre",
                || {
                    format!(
                        "accepted centre {i}: weight {}, non-finite point",
                        c.weight()
                    )
                },
            );
        }
        let bytes = s.to_bytes();
        match FrameSketch::from_bytes(&bytes) {
            Ok(back) => {
                o.check(back == s, "sketch-roundtrip", || {
                    "decode(encode(sketch)) differs from the sketch".into()
                });
                o.check(back.to_bytes() == bytes, "sketch-reencode", || {
                    "encode(decode(encode(sketch))) differs from encode(sketch)".into()
                });
            }
            Err(e) => o.check(false, "sketch-reencode-refused", || {
                format!("to_bytes of an accepted sketch does not decode: {e}")
            }),
        }
        // An accepted file must be usable: novelty, insert (the run loop's calls).
        let mut rng = Rng::new(fnv1a(input));
        let x = unit_vector(&mut rng);
        let n = s.novelty(&x);
        o.check(!n.is_nan() && n >= 0.0, "sketch-novelty", || {
            format!("novelty {n} on an accepted sketch")
        });
        let mut t = s.clone();
        t.insert(&x);
        o.check(
            t.len() <= t.capacity() && t.novelty(&x) == 0.0,
            "sketch-insert",
            || {
                format!(
                    "after insert: {} centres, novelty {}",
                    t.len(),
                    t.novelty(&x)
                )
            },
        );
        o.label = format!(
            "Ok({} centres, radius {}, {}canonical)",
            bucket(s.len()),
            if r == 0.0 {
                "0"
            } else if r.is_infinite() {
                "inf"
            } else {
                "finite"
            },
            if bytes == input { "" } else { "non-" }
        );
        o
    }
}

// ------------------------------------------------------------------------------------------------
// Target 4: configuration text through Config::parse.

const SECTIONS: &[&str] = &[
    "[detector]",
    "[input]",
    "[uncertainty]",
    "[embedding]",
    "[policy]",
    "[spool]",
    "[[policy.triggers]]",
    "[policy.triggers]",
    "[[detector]]",
    "[detector.model]",
    "[unknown]",
    "[]",
    "[ policy ]",
    "[\"policy\"]",
    "['spool']",
    "[policy.triggers.x]",
    "[a.b.c]",
    "[policy]]",
    "[[policy]]",
    "[policy",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "16",
    "15",
    "255",
    "256",
    "65535",
    "65536",
    "100000",
    "0.0",
    "-0.0",
    "1.0",
    "0.5",
    "1e309",
    "-1e309",
    "inf",
    "-inf",
    "nan",
    "+nan",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "1_000",
    "0x10",
    "0o7",
    "0b1",
    "true",
    "false",
    "\"\"",
    "\"int8\"",
    "\"fp32\"",
    "\"int4\"",
    "\"info\"",
    "\"trace\"",
    "\" debug \"",
    "\"loud\"",
    "\"é\"",
    "'lit'",
    "\"\"\"multi\nline\"\"\"",
    "\"a\\u0000b\"",
    "[]",
    "[1, 2]",
    "[[1]]",
    "{}",
    "{ class = \"car\", min_count = 2 }",
    "[{ class = \"car\" }]",
    "[{ class = \"car\", min_count = 0 }]",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "0.10000000149011612",
    "0.30000001192092896",
    "0.05000000074505806",
    "1e-45",
    "3.4028234663852886e38",
    "1.0000001",
    "0.9999999",
    "1e-7",
    "\"least_confidence\"",
    "\"margin\"",
    "\"entropy\"",
    "\"ratio\"",
    "\"max\"",
    "\"mean\"",
    "\"sum\"",
    "\"top_k_mean\"",
    "\"triangular\"",
    "\"gaussian\"",
    "\"flat\"",
    "\"models/yolox_nano.onnx\"",
];

const UNKNOWN_KEYS: &[&str] = &[
    "unknown",
    "\"target_keep_ratio\"",
    "'seed'",
    "policy.seed",
    "detector.threads",
    "spool.max_bytes",
    "a.b.c",
    "é",
    "\"\"",
    "log-level",
    "LOG_LEVEL",
];

const CONFIG_DICT: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b" = ",
    b"=",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"\"",
    b"'",
    b"\"\"\"",
    b"#",
    b"{",
    b"}",
    b",",
    b".",
    b"\\",
    b"\\u",
    b"e",
    b"_",
    b"inf",
    b"nan",
    b"\xef\xbb\xbf",
];

/// A valid configuration touching every section, a trigger list and a non-default value of
/// each kind (written by hand: these are the keys a user writes).
const FULL_CONFIG: &str = r#"log_level = "debug"

[detector]
model = "models/yolox_nano.onnx"
precision = "fp32"
threads = 2
min_score = 0.25
nms_iou = 0.5
max_detections = 50

[input]
fps = 30.0
start_ms = 1764480000000

[uncertainty]
measure = "entropy"
aggregation = "top_k_mean"
top_k = 3
threshold = 0.4
band = 0.2
band_shape = "gaussian"
empty_frame_value = 0.1
head_weight = 0.5

[embedding]
seed = 7

[policy]
target_keep_ratio = 0.02
uncertainty_weight = 0.6
uncertainty_floor = 0.1
explore_probability = 0.005
rare_class_share = 0.05
rare_class_boost = 2.0
rare_class_warmup = 50
max_per_minute = 10
max_per_hour = 200
max_per_day = 2000
max_bytes_per_day = 1000000000
seed = 3

[[policy.triggers]]
class = "person"
min_count = 2

[[policy.triggers]]
class = "bicycle"

[spool]
max_bytes = 1073741824
jpeg_quality = 85
max_side = 1280
min_free_bytes = 0
"#;

#[derive(Default)]
struct ConfigTarget {
    /// `key = value` lines seen in the seeds.
    key_lines: Vec<String>,
    keys: Vec<String>,
    /// Sections, keys and dotted keys of the configuration, for outcome labels.
    known: Vec<String>,
}

impl ConfigTarget {
    fn mutate_lines(&self, rng: &mut Rng, text: &str) -> String {
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
        let key_line = |l: &str| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with('[') && t.contains('=')
        };
        let key_lines: Vec<usize> = (0..lines.len()).filter(|&i| key_line(&lines[i])).collect();
        let value = |rng: &mut Rng| -> String {
            if rng.one_in(6) {
                // An f32 widened to f64: its shortest f32 and f64 spellings differ.
                let f = rng.signed_unit().abs();
                format!("{:?}", f64::from(f))
            } else {
                rng.pick(VALUES).to_string()
            }
        };
        match rng.below(12) {
            0..=2 if !key_lines.is_empty() => {
                let i = *rng.pick(&key_lines);
                let key = lines[i].split('=').next().unwrap_or("").trim().to_string();
                lines[i] = format!("{key} = {}\n", value(rng));
            }
            3 if !key_lines.is_empty() => {
                let i = *rng.pick(&key_lines);
                let v = lines[i]
                    .split_once('=')
                    .map_or("1\n", |(_, v)| v)
                    .to_string();
                let key = if rng.one_in(2) && !self.keys.is_empty() {
                    rng.pick(&self.keys).clone()
                } else {
                    rng.pick(UNKNOWN_KEYS).to_string()
                };
                lines[i] = format!("{key} ={v}");
            }
            4 => {
                let at = rng.below(lines.len() + 1);
                let line = if rng.one_in(2) || self.key_lines.is_empty() {
                    format!("{}\n", rng.pick(SECTIONS))
                } else {
                    rng.pick(&self.key_lines).clone()
                };
                lines.insert(at, line);
            }
            5 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                lines.remove(i);
            }
            6 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                let l = lines[i].clone();
                lines.insert(rng.below(lines.len() + 1), l);
            }
            7 if lines.len() > 1 => {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
            }
            8 => {
                let section = rng.pick(&["policy", "detector", "spool", "uncertainty", "input"]);
                let key = if self.keys.is_empty() {
                    "seed".to_string()
                } else {
                    rng.pick(&self.keys).clone()
                };
                lines.insert(0, format!("{section}.{key} = {}\n", value(rng)));
            }
            9 => {
                let class = rng.pick(&["car", "person", "", "é", "car\u{0}"]);
                let n = rng.pick(&["0", "1", "3", "-1", "4294967296", "\"2\""]);
                lines.push(format!(
                    "\n[[policy.triggers]]\nclass = \"{class}\"\nmin_count = {n}\n"
                ));
            }
            10 => {
                // Commented keys uncommented, and the other way round.
                if let Some(i) = (0..lines.len())
                    .filter(|&i| lines[i].starts_with("# ") && lines[i].contains(" = "))
                    .nth(rng.below(4))
                {
                    lines[i] = lines[i][2..].to_string();
                } else if !key_lines.is_empty() {
                    let i = *rng.pick(&key_lines);
                    lines[i] = format!("# {}", lines[i]);
                }
            }
            _ => {
                return match rng.below(4) {
                    0 => text.replace('\n', "\r\n"),
                    1 => format!("\u{feff}{text}"),
                    2 => text.replacen('\n', "", 1),
                    _ => text.replace(" = ", "="),
                };
            }
        }
        lines.concat()
    }

    /// Deep nesting: arrays, inline tables, dotted keys.
    fn nesting(rng: &mut Rng) -> String {
        let n = *rng.pick(&[10usize, 64, 127, 128, 129, 256, 1000, 2000]);
        match rng.below(4) {
            0 => format!("x = {}{}\n", "[".repeat(n), "]".repeat(n)),
            1 => format!("x = {}1{}\n", "{a=".repeat(n), "}".repeat(n)),
            2 => format!("[{}]\nx = 1\n", vec!["a"; n].join(".")),
            _ => format!("{} = 1\n", vec!["a"; n].join(".")),
        }
    }
}

impl Target for ConfigTarget {
    const NAME: &'static str = "config_text";
    const MAX_LEN: usize = 24 << 10;
    const TIME_BUDGET: Duration = Duration::from_secs(1);

    fn seeds(&mut self, _rng: &mut Rng) -> Vec<Vec<u8>> {
        let defaults = Config::default().to_toml();
        let seeds: Vec<String> = vec![
            defaults.clone(),
            FULL_CONFIG.to_string(),
            String::new(),
            "[policy]\ntarget_keep_ratio = 0.05\n".to_string(),
            "log_level = \"warn\"\n[spool]\nmax_bytes = 4096\n".to_string(),
            "[policy]\ntriggers = [{ class = \"car\", min_count = 2 }]\n".to_string(),
            defaults.replace('\n', "\r\n"),
        ];
        for s in &seeds {
            let mut section = String::new();
            for line in s.lines() {
                let t = line.trim();
                if let Some(name) = t.strip_prefix('[').map(|r| r.trim_matches(['[', ']'])) {
                    section = name.to_string();
                    self.known.push(section.clone());
                } else if let Some((k, _)) = t.trim_start_matches("# ").split_once(" = ") {
                    self.known.push(k.to_string());
                    if !section.is_empty() {
                        self.known.push(format!("{section}.{k}"));
                    }
                }
            }
            for line in s.lines() {
                let t = line.trim();
                if !t.starts_with('#') && !t.starts_with('[') {
                    if let Some((k, _)) = t.split_once(" = ") {
                        self.key_lines.push(format!("{t}\n"));
                        if !self.keys.iter().any(|x| x == k) {
                            self.keys.push(k.to_string());
                        }
                    }
                }
            }
        }
        seeds.into_iter().map(String::into_bytes).collect()
    }

    fn generate(&mut self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let base = rng.pick(corpus).clone();
        match rng.below(10) {
            0..=5 => {
                let mut text = String::from_utf8_lossy(&base).into_owned();
                for _ in 0..rng.range(1, 3) {
                    text = self.mutate_lines(rng, &text);
                }
                text.into_bytes()
            }
            6 => {
                let text = String::from_utf8_lossy(&base);
                let nest = Self::nesting(rng);
                let at = text.find("\n[").map_or(text.len(), |i| i + 1);
                format!("{}{nest}{}", &text[..at], &text[at..]).into_bytes()
            }
            _ => {
                let mut bytes = base;
                let n = rng.range(1, 6);
                havoc_n(rng, &mut bytes, n, CONFIG_DICT, corpus);
                bytes
            }
        }
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        // Config::load reads a String, so the parser only ever sees UTF-8.
        let text = String::from_utf8_lossy(input);
        let lossy = if matches!(text, Cow::Owned(_)) {
            " (lossy UTF-8)"
        } else {
            ""
        };
        match Config::parse(&text) {
            Err(e) => {
                let debug = format!("{e:?}");
                let variant: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
                // TOML errors quote the input: keep the description lines only.
                // TOML errors quote the input: keep the description lines, and a key only when
                // it is one of the configuration's own (others are whatever the mutation made).
                let description: Vec<String> = e
                    .to_string()
                    .lines()
                    .map(|l| {
                        l.trim()
                            .trim_start_matches("config (text) is not valid:")
                            .trim_start_matches("config (text):")
                            .trim()
                            .to_string()
                    })
                    .filter(|l| {
                        let snippet = l
                            .trim_start_matches(|c: char| c.is_ascii_digit())
                            .trim_start();
                        !l.is_empty()
                            && !snippet.starts_with('|')
                            && !l.starts_with("TOML parse error")
                    })
                    .map(|l| match l.split_once(": ") {
                        Some((key, rest)) if variant == "Invalid" => {
                            let key = if self.known.iter().any(|k| k == key) {
                                key
                            } else {
                                "<other key>"
                            };
                            format!("{key}: {rest}")
                        }
                        _ => l,
                    })
                    .collect();
                Outcome::new(format!(
                    "Err({variant}: {}){lossy}",
                    normalise(&description.join("; "))
                ))
            }
            Ok(config) => {
                let mut o = Outcome::new(format!("Ok{lossy}"));
                if let Err(e) = config.validate() {
                    o.check(false, "config-ok-but-invalid", || {
                        format!("Config::parse returned Ok, but validate says: {e}")
                    });
                }
                // to_toml promises numbers "in the shortest form that reads back to the same number".
                let printed = config.to_toml();
                match Config::parse(&printed) {
                    Ok(back) if back == config => {}
                    Ok(back) => {
                        let a = format!("{config:#?}");
                        let b = format!("{back:#?}");
                        let diff: Vec<String> = a
                            .lines()
                            .zip(b.lines())
                            .filter(|(x, y)| x != y)
                            .take(3)
                            .map(|(x, y)| format!("{} -> {}", x.trim(), y.trim()))
                            .collect();
                        o.advise(
                            "to_toml does not read back to the same config".into(),
                            format!("parse(to_toml(c)) != c: {}", diff.join("; ")),
                        );
                    }
                    Err(e) => o.advise(
                        "to_toml output does not parse".into(),
                        format!("Config::parse(to_toml(c)) failed: {e}"),
                    ),
                }
                o
            }
        }
    }

    fn show(input: &[u8]) -> String {
        match std::str::from_utf8(input) {
            Ok(text) if input.len() <= 4096 => format!("text:\n{text}"),
            _ => hexdump(input, 1024),
        }
    }
}
