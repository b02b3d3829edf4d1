//! `edgesieve-eval`: replays folders of frames through the same pipeline `edgesieve run` uses
//! (no spool: every keep decision counts as stored) and prints how its selection compares with
//! baselines of the same size: coverage and redundancy, recall of rare frames, capture of
//! detection errors, and the cost of selecting. Writes a report folder (timeline.svg,
//! contact_sheet.jpg, summary.txt).

mod data;
mod metrics;
mod report;

use data::{Clip, Labels};
use edgesieve::config::Config;
use edgesieve::detect::manifest;
use edgesieve::run::pipeline::{load_manifest, FrameOutcome, Pipeline};
use edgesieve::source::{self, Frame, FrameSource};
use edgesieve::store::record::Reason;
use edgesieve::store::Discard;
use edgesieve::util::cli::Args;
use edgesieve::util::logger;
use edgesieve::util::rng::SplitMix64;
use metrics::{Coverage, DetBox};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
edgesieve-eval — how well the frame selection does, beside baselines of the same size

USAGE:
  edgesieve-eval [--ratio R] [--data DIR] [--report DIR] [--config FILE] [--model FILE]
                 [--precision int8|fp32] [--threads N] [--seed S] [--only coverage|rare|errors]

  --ratio R       target keep ratio (default 0.05); hard caps are switched off
  --data DIR      data root (default ../shared/data)
  --report DIR    where timeline.svg, contact_sheet.jpg and summary.txt go (default report/)
  --config FILE   run configuration (default: built-in defaults)
  --model FILE    model manifest (default: $EDGESIEVE_MODEL, else models/yolox_nano.toml)
  --precision P   int8 (default) or fp32
  --threads N     inference threads (default 1)
  --seed S        seed of the random baselines and of the splice positions (default 1)
  --only PART     coverage (with cost and report), rare or errors

Parts: 1 coverage/redundancy on drive-tmo324-lane-detecting; 2 recall of 12 night/rain frames
of conditions-mixed spliced into drive-udacity-lanelines; 3 error capture on
labeled-kitti-tiny; 4 cost; 5 report.
";

const TMO_DIR: &str = "drive-tmo324-lane-detecting";
const UDACITY_DIR: &str = "drive-udacity-lanelines";
const RARE_DIR: &str = "conditions-mixed";
const KITTI_DIR: &str = "labeled-kitti-tiny";
/// tmo324 frames are 1/15 s apart (most clips; the rural ones are 1/10 s).
const TMO_FRAME_MS: f64 = 1000.0 / 15.0;
/// Udacity frames: every 2nd frame of 25 fps video.
const UDACITY_FRAME_MS: f64 = 80.0;
const RANDOM_SEEDS: u64 = 10;
const RANDOM_RANKINGS: usize = 1000;
const TOP_FRACTION: f64 = 0.2;
const MATCH_IOU: f32 = 0.5;
/// Most thumbnails on the contact sheet.
const SHEET_MAX: usize = 500;

fn main() -> ExitCode {
    logger::init(log::LevelFilter::Warn);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgesieve-eval: {message}");
            ExitCode::FAILURE
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Coverage,
    Rare,
    Errors,
}

struct Options {
    ratio: f64,
    data: PathBuf,
    report: PathBuf,
    seed: u64,
    only: Option<Part>,
    /// Configuration of every pipeline (policy caps off, ratio set).
    config: Config,
    manifest: PathBuf,
}

impl Options {
    fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|p| p == part)
    }
}

fn parse_options(argv: &[String]) -> Result<Options, String> {
    let flags = [
        "--ratio",
        "--data",
        "--report",
        "--config",
        "--model",
        "--precision",
        "--threads",
        "--seed",
        "--only",
    ];
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!("unexpected argument {extra:?}\n\n{USAGE}"));
    }
    let ratio: f64 = args.parsed("--ratio").map_err(err)?.unwrap_or(0.05);
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(format!("--ratio must be in (0, 1], got {ratio}"));
    }
    let only = match args.value("--only") {
        None => None,
        Some("coverage") => Some(Part::Coverage),
        Some("rare") => Some(Part::Rare),
        Some("errors") => Some(Part::Errors),
        Some(o) => {
            return Err(format!(
                "--only: expected coverage, rare or errors, got {o:?}"
            ))
        }
    };
    let mut config = match args.value("--config") {
        Some(p) => Config::load(Path::new(p)).map_err(err)?,
        None => Config::default(),
    };
    config.apply_overrides(&edgesieve::util::cli::model_overrides(&args).map_err(err)?);
    config.policy.target_keep_ratio = ratio;
    config.policy.max_per_minute = 0;
    config.policy.max_per_hour = 0;
    config.policy.max_per_day = 0;
    config.policy.max_bytes_per_day = 0;
    config.validate().map_err(err)?;
    Ok(Options {
        ratio,
        data: PathBuf::from(args.value("--data").unwrap_or("../shared/data")),
        report: PathBuf::from(args.value("--report").unwrap_or("report")),
        seed: args.parsed("--seed").map_err(err)?.unwrap_or(1),
        only,
        config,
        manifest: manifest::default_manifest_path(),
    })
}

/// Prints lines and keeps them for summary.txt.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }
}

/// The folder `data/sub`, or an error naming it.
fn data_dir(data: &Path, sub: &str) -> Result<PathBuf, String> {
    let p = data.join(sub);
    if p.is_dir() {
        Ok(p)
    } else {
        Err(format!(
            "data folder {} not found (set the data root with --data DIR)",
            p.display()
        ))
    }
}

fn data_file(data: &Path, sub: &str) -> Result<PathBuf, String> {
    let p = data.join(sub);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "data file {} not found (set the data root with --data DIR)",
            p.display()
        ))
    }
}

fn open_source(dir: &Path) -> Result<Box<dyn FrameSource>, String> {
    let spec = dir
        .to_str()
        .ok_or_else(|| format!("{}: path is not UTF-8", dir.display()))?;
    source::open(spec).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Decodes the next frame, skipping (with a warning) files that fail to decode. Ok(false) at
/// the end.
fn next_frame(source: &mut Box<dyn FrameSource>, frame: &mut Frame) -> Result<bool, String> {
    loop {
        match source.next_frame(frame) {
            None => return Ok(false),
            Some(Ok(())) => return Ok(true),
            Some(Err(e)) if e.is_fatal() => return Err(e.to_string()),
            Some(Err(e)) => log::warn!("skipping frame: {e}"),
        }
    }
}

fn new_pipeline(opts: &Options) -> Result<Pipeline<Discard>, String> {
    let manifest = load_manifest(&opts.config, &opts.manifest).map_err(err)?;
    Pipeline::new(&opts.config, manifest, Discard).map_err(err)
}

fn process(
    pipeline: &mut Pipeline<Discard>,
    frame: &Frame,
    timestamp_ms: u64,
) -> Result<FrameOutcome, String> {
    pipeline
        .process(frame, timestamp_ms)
        .map_err(|e| format!("frame {}: {e}", frame.name))
}

fn run(argv: &[String]) -> Result<(), String> {
    let opts = parse_options(argv)?;
    // Check every input up front, so a missing folder fails before minutes of inference.
    if opts.runs(Part::Coverage) {
        data_dir(&opts.data, &format!("{TMO_DIR}/frames"))?;
        data_file(&opts.data, &format!("{TMO_DIR}/clips.json"))?;
    }
    if opts.runs(Part::Rare) {
        data_dir(&opts.data, &format!("{UDACITY_DIR}/frames"))?;
        data_dir(&opts.data, &format!("{RARE_DIR}/images"))?;
    }
    if opts.runs(Part::Errors) {
        data_dir(&opts.data, &format!("{KITTI_DIR}/images"))?;
        data_file(&opts.data, &format!("{KITTI_DIR}/annotations.json"))?;
    }

    let mut out = Out::default();
    let c = &opts.config;
    let p = &c.policy;
    out.line(format!(
        "edgesieve-eval {}: target keep ratio {:.2}%, model {} ({}, {} thread{}), data {}, seed {}",
        env!("CARGO_PKG_VERSION"),
        opts.ratio * 100.0,
        c.detector
            .model
            .as_deref()
            .unwrap_or(&opts.manifest)
            .display(),
        c.detector.precision,
        c.detector.threads,
        if c.detector.threads == 1 { "" } else { "s" },
        opts.data.display(),
        opts.seed
    ));
    out.line(format!(
        "policy: uncertainty_weight {}, explore_probability {}, rare_class_share {} (boost {}, warm-up {}), {} trigger(s), caps off; sketch {} centres",
        p.uncertainty_weight,
        p.explore_probability,
        p.rare_class_share,
        p.rare_class_boost,
        p.rare_class_warmup,
        p.triggers.len(),
        edgesieve::select::SKETCH_CENTRES
    ));
    let u = &c.uncertainty;
    out.line(format!(
        "uncertainty: measure {:?}, aggregation {:?} (top_k {}), detection threshold {}, band ±{} {:?}, empty_frame_value {}, head_weight {}",
        u.measure, u.aggregation, u.top_k, u.threshold, u.band, u.band_shape, u.empty_frame_value, u.head_weight
    ));

    let mut report_files = Vec::new();
    if opts.runs(Part::Coverage) {
        let run = tmo_run(&opts)?;
        coverage_tables(&opts, &run, &mut out);
        cost_table(&run, &mut out);
        report_files = write_report(&opts, &run)?;
    }
    if opts.runs(Part::Rare) {
        rare_recall(&opts, &mut out)?;
    }
    if opts.runs(Part::Errors) {
        error_capture(&opts, &mut out)?;
    }

    std::fs::create_dir_all(&opts.report)
        .map_err(|e| format!("cannot create report folder {}: {e}", opts.report.display()))?;
    let summary = opts.report.join("summary.txt");
    report_files.push(summary.clone());
    out.line("");
    out.line(format!(
        "report: {}",
        report_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    std::fs::write(&summary, &out.text)
        .map_err(|e| format!("cannot write {}: {e}", summary.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Coverage and redundancy (with 4. cost and 5. report)

/// What is recorded of one frame of a replay.
struct FrameRecord {
    name: String,
    embedding: Vec<f32>,
    descriptor: Vec<f32>,
    uncertainty: f32,
    novelty: f32,
    value: f32,
    threshold: f32,
    kept: bool,
    reasons: Vec<Reason>,
    detect: Duration,
    select: Duration,
}

fn record(pipeline: &Pipeline<Discard>, frame: &Frame, o: &FrameOutcome) -> FrameRecord {
    FrameRecord {
        name: frame.name.clone(),
        embedding: pipeline.selector().embedding().to_vec(),
        descriptor: data::descriptor(frame),
        uncertainty: o.uncertainty.value,
        novelty: o.decision.scores.novelty,
        value: o.decision.scores.value,
        threshold: o.decision.scores.threshold,
        kept: o.stored,
        reasons: o.decision.reasons.iter().copied().collect(),
        detect: o.detect_time,
        select: o.select_time,
    }
}

struct TmoRun {
    frames: Vec<FrameRecord>,
    clips: Vec<Clip>,
    /// Clip index of each frame (clips.len() for a frame outside every clip).
    clip_of: Vec<usize>,
    thumbs: Vec<image::RgbImage>,
    wall: Duration,
}

fn tmo_run(opts: &Options) -> Result<TmoRun, String> {
    let dir = data_dir(&opts.data, &format!("{TMO_DIR}/frames"))?;
    let clips = data::load_clips(&opts.data.join(TMO_DIR).join("clips.json"))?;
    let mut pipeline = new_pipeline(opts)?;
    let mut source = open_source(&dir)?;
    eprintln!("part 1: replaying {} …", source.describe());
    let mut frame = Frame::new();
    let mut frames = Vec::with_capacity(source.len_hint().unwrap_or(0));
    let mut thumbs = Vec::new();
    let started = Instant::now();
    while next_frame(&mut source, &mut frame)? {
        let ts = opts.config.input.start_ms + (frame.index as f64 * TMO_FRAME_MS) as u64;
        let o = process(&mut pipeline, &frame, ts)?;
        if o.stored && thumbs.len() < SHEET_MAX {
            if let Some(t) = report::thumbnail(&frame) {
                thumbs.push(t);
            }
        }
        frames.push(record(&pipeline, &frame, &o));
    }
    let wall = started.elapsed();
    if frames.is_empty() {
        return Err(format!("{}: no frame could be decoded", dir.display()));
    }
    let clip_of = frames
        .iter()
        .map(|f| {
            data::frame_number(&f.name)
                .and_then(|n| data::clip_of(&clips, n))
                .unwrap_or(clips.len())
        })
        .collect();
    Ok(TmoRun {
        frames,
        clips,
        clip_of,
        thumbs,
        wall,
    })
}

/// The figures of one selection.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    k: f64,
    emb: Coverage,
    desc: Coverage,
    redundancy: f64,
    clips: f64,
    uncertainty: f64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.k += o.k;
        self.emb.mean += o.emb.mean;
        self.emb.max += o.emb.max;
        self.desc.mean += o.desc.mean;
        self.desc.max += o.desc.max;
        self.redundancy += o.redundancy;
        self.clips += o.clips;
        self.uncertainty += o.uncertainty;
    }

    fn scaled(&self, s: f64) -> Figures {
        Figures {
            k: self.k * s,
            emb: Coverage {
                mean: self.emb.mean * s,
                max: self.emb.max * s,
            },
            desc: Coverage {
                mean: self.desc.mean * s,
                max: self.desc.max * s,
            },
            redundancy: self.redundancy * s,
            clips: self.clips * s,
            uncertainty: self.uncertainty * s,
        }
    }
}

struct Spaces<'a> {
    emb: &'a [Vec<f32>],
    desc: &'a [Vec<f32>],
    uncertainty: &'a [f32],
    clip_of: &'a [usize],
    tau: f32,
}

fn figures(s: &Spaces, selected: &[usize]) -> Figures {
    Figures {
        k: selected.len() as f64,
        emb: metrics::coverage(s.emb, selected),
        desc: metrics::coverage(s.desc, selected),
        redundancy: metrics::redundancy(s.desc, selected, s.tau),
        clips: metrics::groups_covered(selected, s.clip_of) as f64,
        uncertainty: metrics::mean_over(s.uncertainty, selected),
    }
}

fn figures_row(name: &str, f: &Figures, whole: bool) -> String {
    let k = if (f.k - f.k.round()).abs() < 1e-9 {
        format!("{}", f.k as u64)
    } else {
        format!("{:.1}", f.k)
    };
    let clips = if (f.clips - f.clips.round()).abs() < 1e-9 {
        format!("{}", f.clips as u64)
    } else {
        format!("{:.1}", f.clips)
    };
    format!(
        "  {name:<22} {k:>5}  {:>7.4} {:>7.4}   {:>7.4} {:>7.4}   {:>9}   {clips:>5}  {:>8.3}",
        f.emb.mean,
        f.emb.max,
        f.desc.mean,
        f.desc.max,
        if whole {
            "-".to_string()
        } else {
            format!("{:.1}%", f.redundancy * 100.0)
        },
        f.uncertainty
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn coverage_tables(opts: &Options, run: &TmoRun, out: &mut Out) {
    let n = run.frames.len();
    let emb: Vec<Vec<f32>> = run.frames.iter().map(|f| f.embedding.clone()).collect();
    let desc: Vec<Vec<f32>> = run.frames.iter().map(|f| f.descriptor.clone()).collect();
    let unc: Vec<f32> = run.frames.iter().map(|f| f.uncertainty).collect();
    let pairs = (1..n)
        .filter(|&i| run.clip_of[i] == run.clip_of[i - 1])
        .count();
    let tau = metrics::consecutive_median(&desc, &run.clip_of).unwrap_or(0.0);
    let s = Spaces {
        emb: &emb,
        desc: &desc,
        uncertainty: &unc,
        clip_of: &run.clip_of,
        tau,
    };
    let ours: Vec<usize> = (0..n).filter(|&i| run.frames[i].kept).collect();
    let k = ours.len();
    let clips_total = run.clips.len();

    out.line("");
    out.line(format!(
        "== 1. Coverage and redundancy: {TMO_DIR} ({n} frames, {clips_total} clips), target keep ratio {:.2}%",
        opts.ratio * 100.0
    ));
    out.line(format!(
        "independent descriptor: 16x9 RGB thumbnail by area averaging, minus its mean, L2-normalised (432-d, Euclidean); \
         near-duplicate = descriptor distance < tau = {tau:.4} = median distance between consecutive frames of a clip ({pairs} pairs)"
    ));
    out.line(
        "embedding: the pipeline's 64-d unit-norm projected embedding (Euclidean, as the sketch's novelty)",
    );
    let mut reasons = [0usize; 4];
    for i in &ours {
        for r in &run.frames[*i].reasons {
            reasons[match r {
                Reason::Value => 0,
                Reason::Explore => 1,
                Reason::ClassTrigger(_) => 2,
                Reason::RareClass(_) => 3,
            }] += 1;
        }
    }
    out.line(format!(
        "pipeline kept {k} of {n} ({:.2}%): reasons value {}, explore {}, trigger {}, rare class {}",
        100.0 * k as f64 / n as f64,
        reasons[0],
        reasons[1],
        reasons[2],
        reasons[3]
    ));
    if k == 0 {
        out.line("nothing kept: no coverage figures");
        return;
    }

    let pipeline = figures(&s, &ours);
    let mut random = Figures::default();
    for seed in 0..RANDOM_SEEDS {
        let mut rng = SplitMix64::new(opts.seed.wrapping_add(seed));
        let sel = metrics::random_selection(n, k, &mut rng);
        random.add(&figures(&s, &sel));
    }
    let random = random.scaled(1.0 / RANDOM_SEEDS as f64);
    let uniform_sel = metrics::uniform_selection(n, k);
    let uniform = figures(&s, &uniform_sel);
    let kc_emb_sel = metrics::greedy_k_centre(&emb, k, 0);
    let kc_emb = figures(&s, &kc_emb_sel);
    let kc_desc = figures(&s, &metrics::greedy_k_centre(&desc, k, 0));
    let km_emb = metrics::greedy_k_median(&emb, k).map(|sel| figures(&s, &sel));
    let all: Vec<usize> = (0..n).collect();
    let mut everything = figures(&s, &all);
    everything.redundancy = 0.0;

    out.line("");
    out.line("                                 embedding cov.    descriptor cov.                       mean");
    out.line("  selection                  k     mean     max      mean     max   redundancy  clips  uncert.");
    out.line(figures_row("pipeline", &pipeline, false));
    out.line(figures_row(
        &format!("random ({RANDOM_SEEDS} seeds, mean)"),
        &random,
        false,
    ));
    out.line(figures_row("uniform in time", &uniform, false));
    out.line(figures_row("k-centre, embedding", &kc_emb, false));
    out.line(figures_row("k-centre, descriptor", &kc_desc, false));
    if let Some(km) = &km_emb {
        out.line(figures_row("k-median, embedding", km, false));
    }
    out.line(figures_row("(all frames)", &everything, true));
    out.line(format!(
        "  coverage = distance from every frame to its nearest selected frame; clips of {clips_total}; \
         k-centre = offline farthest-first traversal from frame 0 (sees all frames; minimises the max)"
    ));
    out.line(
        "  k-median = offline greedy that minimises the mean distance (the reference for mean coverage)",
    );
    out.line("");
    out.line(
        "  per clip        frames  kept: pipeline uniform k-centre   mean uncert. (=0)  mean novelty  mean value",
    );
    for (c, clip) in run.clips.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&i| run.clip_of[i] == c).collect();
        let count = |sel: &[usize]| sel.iter().filter(|&&i| run.clip_of[i] == c).count();
        let m = members.len().max(1) as f64;
        let mean = |f: &dyn Fn(&FrameRecord) -> f32| {
            members
                .iter()
                .map(|&i| f(&run.frames[i]) as f64)
                .sum::<f64>()
                / m
        };
        let zero = members
            .iter()
            .filter(|&&i| run.frames[i].uncertainty == 0.0)
            .count() as f64
            / m;
        out.line(format!(
            "  {:<15} {:>6}  {:>14} {:>7} {:>8}   {:>12.3} ({:>3.0}%) {:>12.3} {:>11.3}",
            clip.clip,
            members.len(),
            count(&ours),
            count(&uniform_sel),
            count(&kc_emb_sel),
            mean(&|f| f.uncertainty),
            zero * 100.0,
            mean(&|f| f.novelty),
            mean(&|f| f.value)
        ));
    }

    out.line("");
    out.line("targets:");
    let ratio_kc = pipeline.emb.mean / kc_emb.emb.mean;
    out.line(format!(
        "  embedding coverage pipeline / k-centre      {:>7.3}   target <= 1.20   {}",
        ratio_kc,
        verdict(ratio_kc <= 1.2)
    ));
    out.line(format!(
        "    (for reference: max coverage pipeline / k-centre {:.3}{})",
        pipeline.emb.max / kc_emb.emb.max,
        match &km_emb {
            Some(km) => format!(
                "; mean coverage pipeline / k-median {:.3}",
                pipeline.emb.mean / km.emb.mean
            ),
            None => String::new(),
        }
    ));
    let impr = (uniform.emb.mean - pipeline.emb.mean) / uniform.emb.mean;
    let impr_desc = (uniform.desc.mean - pipeline.desc.mean) / uniform.desc.mean;
    out.line(format!(
        "  improvement over uniform (embedding)        {:>6.1}%   target >= 25%    {}   (descriptor space: {:.1}%; random: {:.1}%)",
        impr * 100.0,
        verdict(impr >= 0.25),
        impr_desc * 100.0,
        (uniform.emb.mean - random.emb.mean) / uniform.emb.mean * 100.0
    ));
    if uniform.redundancy > 0.0 {
        let r = pipeline.redundancy / uniform.redundancy;
        out.line(format!(
            "  redundancy pipeline / uniform               {:>7.3}   target <= 0.333  {}   ({:.1}% vs {:.1}%)",
            r,
            verdict(r <= 1.0 / 3.0),
            pipeline.redundancy * 100.0,
            uniform.redundancy * 100.0
        ));
    } else {
        out.line(format!(
            "  redundancy pipeline / uniform                   n/a   target <= 0.333  {}   (uniform has none; pipeline {:.1}%)",
            verdict(pipeline.redundancy == 0.0),
            pipeline.redundancy * 100.0
        ));
    }
    let kept_ratio = k as f64 / n as f64;
    let off = (kept_ratio - opts.ratio) / opts.ratio;
    out.line(format!(
        "  kept ratio {:.2}% vs target {:.2}%           {:>+6.1}%   target within ±10%  {}",
        kept_ratio * 100.0,
        opts.ratio * 100.0,
        off * 100.0,
        verdict(off.abs() <= 0.1)
    ));
}

fn cost_table(run: &TmoRun, out: &mut Out) {
    let n = run.frames.len() as f64;
    let detect: f64 = run
        .frames
        .iter()
        .map(|f| f.detect.as_secs_f64())
        .sum::<f64>()
        / n;
    let select: f64 = run
        .frames
        .iter()
        .map(|f| f.select.as_secs_f64())
        .sum::<f64>()
        / n;
    let max_select = run
        .frames
        .iter()
        .map(|f| f.select.as_secs_f64())
        .fold(0.0, f64::max);
    out.line("");
    out.line(format!(
        "== 4. Cost ({TMO_DIR} run, {} frames)",
        run.frames.len()
    ));
    out.line(format!(
        "  detect (preprocess + inference + decode)   {:>9.2} ms/frame",
        detect * 1e3
    ));
    out.line(format!(
        "  select (scores, embedding, sketch, policy) {:>9.1} µs/frame (max {:.1} µs) = {:.3}% of detect   target < 2%   {}",
        select * 1e6,
        max_select * 1e6,
        select / detect * 100.0,
        verdict(select / detect < 0.02)
    ));
    out.line(format!(
        "  throughput {:.1} frames/s end to end (JPEG decode and the eval's bookkeeping included), {:.1} frames/s detect + select",
        n / run.wall.as_secs_f64().max(1e-9),
        1.0 / (detect + select).max(1e-12)
    ));
}

fn write_report(opts: &Options, run: &TmoRun) -> Result<Vec<PathBuf>, String> {
    let dir = &opts.report;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create report folder {}: {e}", dir.display()))?;
    let u: Vec<f32> = run.frames.iter().map(|f| f.uncertainty).collect();
    let nov: Vec<f32> = run.frames.iter().map(|f| f.novelty).collect();
    let thr: Vec<f32> = run.frames.iter().map(|f| f.threshold).collect();
    let val: Vec<f32> = run.frames.iter().map(|f| f.value).collect();
    let kept: Vec<bool> = run.frames.iter().map(|f| f.kept).collect();
    let clips: Vec<(usize, String)> = run
        .clips
        .iter()
        .enumerate()
        .filter_map(|(c, clip)| {
            run.clip_of
                .iter()
                .position(|&x| x == c)
                .map(|i| (i, clip.clip.clone()))
        })
        .collect();
    let title = format!(
        "{TMO_DIR}: {} frames, {} kept at target {:.2}%",
        run.frames.len(),
        kept.iter().filter(|k| **k).count(),
        opts.ratio * 100.0
    );
    let svg = report::timeline_svg(&report::Timeline {
        title: &title,
        uncertainty: &u,
        novelty: &nov,
        threshold: &thr,
        value: &val,
        kept: &kept,
        clips: &clips,
    });
    let svg_path = dir.join("timeline.svg");
    std::fs::write(&svg_path, svg)
        .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
    let sheet_path = dir.join("contact_sheet.jpg");
    report::contact_sheet(&run.thumbs)
        .save(&sheet_path)
        .map_err(|e| format!("cannot write {}: {e}", sheet_path.display()))?;
    Ok(vec![svg_path, sheet_path])
}

// ---------------------------------------------------------------------------------------------
// 2. Rare-frame recall

/// Positions (sorted, distinct) of `m` spliced frames in a sequence of `n + m` frames.
fn splice_positions(n: usize, m: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    metrics::random_selection(n + m, m, &mut rng)
}

fn rare_recall(opts: &Options, out: &mut Out) -> Result<(), String> {
    let day_dir = data_dir(&opts.data, &format!("{UDACITY_DIR}/frames"))?;
    let rare_dir = data_dir(&opts.data, &format!("{RARE_DIR}/images"))?;
    let mut day = open_source(&day_dir)?;
    let mut rare = open_source(&rare_dir)?;
    let n_day = day.len_hint().unwrap_or(0);
    let n_rare = rare.len_hint().unwrap_or(0);
    if n_rare == 0 {
        return Err(format!("{}: no images", rare_dir.display()));
    }
    let positions = splice_positions(n_day, n_rare, opts.seed);
    eprintln!(
        "part 2: replaying {} with {} spliced in …",
        day.describe(),
        rare.describe()
    );
    let mut pipeline = new_pipeline(opts)?;
    let mut frame = Frame::new();
    let mut kept = Vec::new();
    let mut embeddings = Vec::new();
    let mut is_rare = Vec::new();
    let mut rare_rows = Vec::new();
    let mut scores: Vec<[f32; 3]> = Vec::new();
    let mut pos = 0usize;
    let mut next_rare = positions.iter().peekable();
    let mut day_done = false;
    loop {
        // Once the day frames run out (some failed to decode), the rest of the rare ones follow.
        let from_rare = next_rare.peek().is_some_and(|&&p| p == pos || day_done);
        if day_done && !from_rare {
            break;
        }
        let got = if from_rare {
            next_rare.next();
            next_frame(&mut rare, &mut frame)?
        } else {
            next_frame(&mut day, &mut frame)?
        };
        if !got {
            day_done |= !from_rare;
            continue;
        }
        let index = pos;
        frame.index = index as u64;
        let o = process(
            &mut pipeline,
            &frame,
            (index as f64 * UDACITY_FRAME_MS) as u64,
        )?;
        kept.push(o.stored);
        embeddings.push(pipeline.selector().embedding().to_vec());
        is_rare.push(from_rare);
        let sc = o.decision.scores;
        scores.push([o.uncertainty.value, sc.novelty, sc.value]);
        if from_rare {
            rare_rows.push((index, frame.name.clone(), sc.threshold, o.stored));
        }
        pos += 1;
    }
    let n = kept.len();
    let rare_idx: Vec<usize> = (0..n).filter(|&i| is_rare[i]).collect();
    let spliced = rare_idx.len();
    let k = kept.iter().filter(|k| **k).count();
    let share = |sel: &[usize]| {
        let hit = sel.iter().filter(|&&i| is_rare[i]).count();
        (hit, hit as f64 / spliced.max(1) as f64)
    };
    let ours: Vec<usize> = (0..n).filter(|&i| kept[i]).collect();
    let (ours_hit, ours_share) = share(&ours);
    let (uni_hit, uni_share) = share(&metrics::uniform_selection(n, k));
    let (kc_hit, kc_share) = share(&metrics::greedy_k_centre(&embeddings, k, 0));

    out.line("");
    out.line(format!(
        "== 2. Rare-frame recall: {spliced} night/rain frames of {RARE_DIR} spliced at seeded positions (seed {}) into {UDACITY_DIR} ({} day frames)",
        opts.seed,
        n - spliced
    ));
    let kept_ratio = k as f64 / n.max(1) as f64;
    out.line(format!(
        "  fresh pipeline at target {:.2}%: kept {k} of {n} ({:.2}%, {:+.0}% off target)",
        opts.ratio * 100.0,
        100.0 * kept_ratio,
        100.0 * (kept_ratio - opts.ratio) / opts.ratio
    ));
    out.line("  selection                    k   rare kept   share of rare");
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%",
        "pipeline",
        k,
        ours_hit,
        spliced,
        ours_share * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>9}  {:>9.1}%   (= k/n; target ratio {:.2}%)",
        "random (expected)",
        k,
        format!("{:.2}", k as f64 / n.max(1) as f64 * spliced as f64),
        k as f64 / n.max(1) as f64 * 100.0,
        opts.ratio * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%",
        "uniform in time",
        k,
        uni_hit,
        spliced,
        uni_share * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%   (offline, sees all frames)",
        "k-centre, embedding",
        k,
        kc_hit,
        spliced,
        kc_share * 100.0
    ));
    let random_share = k as f64 / n.max(1) as f64;
    out.line(format!(
        "  recall pipeline / random = {:.1}x",
        if random_share > 0.0 {
            ours_share / random_share
        } else {
            0.0
        }
    ));
    out.line("  spliced frames (pct = percentile among all frames of the sequence):");
    out.line(
        "     pos  name                     uncert (pct)  novelty (pct)   value (pct)  thresh",
    );
    let pct = |col: usize, v: f32| {
        100.0 * scores.iter().filter(|x| x[col] < v).count() as f64 / scores.len().max(1) as f64
    };
    for (index, name, threshold, stored) in rare_rows {
        let [u, nov, val] = scores[index];
        out.line(format!(
            "    {index:>4}  {name:<24} {u:>6.3} ({:>3.0})  {nov:>7.3} ({:>3.0})  {val:>6.3} ({:>3.0})  {threshold:>6.3}  {}",
            pct(0, u),
            pct(1, nov),
            pct(2, val),
            if stored { "KEPT" } else { "-" }
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Error capture

fn error_capture(opts: &Options, out: &mut Out) -> Result<(), String> {
    let dir = data_dir(&opts.data, &format!("{KITTI_DIR}/images"))?;
    let mut pipeline = new_pipeline(opts)?;
    let classes = pipeline.detector().manifest().classes.clone();
    let labels: Labels = data::load_labels(
        &opts.data.join(KITTI_DIR).join("annotations.json"),
        &classes,
    )?;
    let threshold = opts.config.uncertainty.threshold;
    let mut source = open_source(&dir)?;
    eprintln!("part 3: replaying {} …", source.describe());
    let mut frame = Frame::new();
    let mut unc = Vec::new();
    let mut errors = Vec::new();
    let (mut missed, mut false_boxes, mut matched, mut unlabeled) = (0u32, 0u32, 0u32, 0usize);
    let mut i = 0u64;
    while next_frame(&mut source, &mut frame)? {
        let o = process(&mut pipeline, &frame, i * 1000)?;
        i += 1;
        let Some(gt) = labels.by_file.get(&frame.name) else {
            unlabeled += 1;
            continue;
        };
        let dets: Vec<DetBox> = pipeline
            .detections()
            .items()
            .iter()
            .map(|d| DetBox {
                class: d.class_id,
                score: d.score,
                bbox: d.bbox,
            })
            .collect();
        let e = metrics::count_errors(gt, &dets, threshold, &labels.labeled_classes, MATCH_IOU);
        missed += e.missed;
        false_boxes += e.false_boxes;
        matched += e.matched;
        unc.push(o.uncertainty.value);
        errors.push(e.total());
    }
    let n = errors.len();
    let m = metrics::top_count(n, TOP_FRACTION);
    let share = metrics::top_share(&unc, &errors, m);
    let random_mean = metrics::random_top_share(&errors, m, RANDOM_RANKINGS, opts.seed);
    let err_f: Vec<f32> = errors.iter().map(|&e| e as f32).collect();
    let oracle = metrics::top_share(&err_f, &errors, m);
    let nominal = m as f64 / n.max(1) as f64;
    let frames_with = errors.iter().filter(|&&e| e > 0).count();

    out.line("");
    out.line(format!(
        "== 3. Error capture: {KITTI_DIR} ({n} labeled frames{}, {} labeled boxes, {} ignored (Misc))",
        if unlabeled > 0 {
            format!(", {unlabeled} without labels skipped")
        } else {
            String::new()
        },
        labels.boxes,
        labels.ignored_boxes
    ));
    out.line(format!(
        "  classes: {}; other COCO classes ignored",
        labels
            .mapping
            .iter()
            .map(|(k, c)| format!("{k}→{}", c.as_deref().unwrap_or("none")))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let u = &opts.config.uncertainty;
    out.line(format!(
        "  uncertainty used: measure {:?}, aggregation {:?}, band ±{} {:?} around threshold {}",
        u.measure, u.aggregation, u.band, u.band_shape, u.threshold
    ));
    out.line(format!(
        "  errors at IoU {MATCH_IOU}, score >= {threshold} (one-to-one, best score first): missed {missed}, false {false_boxes}, total {} in {frames_with} frames; matched {matched}",
        missed + false_boxes
    ));
    out.line(format!(
        "  share of all errors in the top {:.0}% ({m} frames) by uncertainty value: {:.1}%",
        TOP_FRACTION * 100.0,
        share * 100.0
    ));
    out.line(format!(
        "  random ranking: {:.1}% nominal, {:.1}% mean over {RANDOM_RANKINGS} seeded rankings; oracle (ranked by error count): {:.1}%",
        nominal * 100.0,
        random_mean * 100.0,
        oracle * 100.0
    ));
    let ratio = if nominal > 0.0 { share / nominal } else { 0.0 };
    out.line(format!(
        "  capture ratio uncertainty / random = {:.2}x (vs the 1000-ranking mean {:.2}x)   target >= 1.5x   {}",
        ratio,
        if random_mean > 0.0 {
            share / random_mean
        } else {
            0.0
        },
        verdict(ratio >= 1.5)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_turn_caps_off_and_set_the_ratio() {
        let o = parse_options(&strings(&[
            "--ratio", "0.01", "--only", "rare", "--seed", "9",
        ]))
        .expect("options");
        assert_eq!(o.config.policy.target_keep_ratio, 0.01);
        assert_eq!(o.config.policy.max_per_minute, 0);
        assert_eq!(o.config.policy.max_bytes_per_day, 0);
        assert_eq!(o.only, Some(Part::Rare));
        assert!(o.runs(Part::Rare) && !o.runs(Part::Coverage));
        assert_eq!(o.seed, 9);
        assert!(parse_options(&strings(&["--ratio", "0"])).is_err());
        assert!(parse_options(&strings(&["--only", "all"])).is_err());
        assert!(parse_options(&strings(&["--bogus"])).is_err());
        assert!(parse_options(&strings(&["--precision", "fp16"])).is_err());
    }

    #[test]
    fn missing_data_folder_is_named() {
        let e = data_dir(Path::new("/nonexistent/data"), "x/frames").unwrap_err();
        assert!(e.contains("/nonexistent/data/x/frames"), "{e}");
        assert!(e.contains("--data"));
    }

    #[test]
    fn splice_positions_are_distinct_and_in_range() {
        let p = splice_positions(452, 12, 1);
        assert_eq!(p.len(), 12);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(*p.last().unwrap() < 464);
        assert_eq!(p, splice_positions(452, 12, 1));
        assert_ne!(p, splice_positions(452, 12, 2));
    }
}
