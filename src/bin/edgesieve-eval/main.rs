//! `edgesieve-eval`: replays folders of frames through the same pipeline `edgesieve run` uses
//! (no spool: every keep decision counts as stored) and prints how its selection compares with
//! baselines of the same size: coverage and redundancy, recall of rare frames, capture of
//! detection errors, and the cost of selecting. Writes a report folder (timeline.svg,
//! contact_sheet.jpg, summary.txt).
//!
//! Each part replays its frames with [`replay::replay`] (the library's job loop over the
//! pipeline) and records what its figures need: [`coverage`] (part 1, with 4 cost and 5 report),
//! [`rare`] (part 2) and [`errors`] (part 3). Parts 1 and 2 detect each frame once and replay
//! the library's selector over the records as often as they need ([`detected`]). [`coco`] reads the KITTI labels (shared with
//! tests/detector_kitti.rs).

mod coco;
mod coverage;
mod data;
mod detected;
mod errors;
mod metrics;
mod rare;
mod replay;
mod report;

use edgesieve::config::Config;
use edgesieve::detect::manifest;
use edgesieve::source::{self, FrameSource, InputConfig};
use edgesieve::util::cli::Args;
use edgesieve::util::logger;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
edgesieve-eval — how well the frame selection does, beside baselines of the same size

USAGE:
  edgesieve-eval [--ratio R] [--data DIR] [--report DIR] [--config FILE] [--model FILE]
                 [--precision auto|int8|fp32|f16] [--threads N] [--seed S] [--only coverage|rare|errors]
                 [--cache DIR]

  --ratio R       target keep ratio (default 0.05); hard caps are switched off
  --data DIR      data root (default ../shared/data)
  --report DIR    where timeline.svg, contact_sheet.jpg and summary.txt go (default report/)
  --config FILE   run configuration (default: built-in defaults)
  --model FILE    model manifest (default: $EDGESIEVE_MODEL, else models/yolox_nano.toml)
  --precision P   auto (default: f16 where the core computes in it, else fp32), int8, fp32, f16
  --threads N     inference threads (default 1)
  --seed S        seed of the random baselines and of the splice positions (default 1)
  --only PART     coverage (with cost and report), rare or errors
  --cache DIR     keep each source's detections in DIR and reuse them on the next run with
                  the same model files and detector settings (selection runs again)

Parts: 1 coverage/redundancy on drive-tmo324-lane-detecting; 2 recall of 12 night/rain frames
of conditions-mixed spliced into drive-udacity-lanelines; 3 error capture on
labeled-kitti-tiny; 4 cost; 5 report.
";

const TMO_DIR: &str = "drive-tmo324-lane-detecting";
const UDACITY_DIR: &str = "drive-udacity-lanelines";
const RARE_DIR: &str = "conditions-mixed";
const KITTI_DIR: &str = "labeled-kitti-tiny";

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
    /// Where detections are cached ([`detected`]).
    cache: Option<PathBuf>,
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
        "--cache",
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
    // The report and the detection cache name the precision that runs (auto resolved).
    config.detector.precision = config.detector.precision.resolved();
    config.policy.target_keep_ratio = ratio;
    config.policy.max_per_minute = 0;
    config.policy.max_per_hour = 0;
    config.policy.max_per_day = 0;
    config.policy.max_bytes_per_day = 0;
    // Selection is measured on every frame: the gate before the detector is off (a moving
    // car's frames pass it anyway; the figures would otherwise depend on it).
    config.gate.max_difference = 0.0;
    config.validate().map_err(err)?;
    Ok(Options {
        ratio,
        data: PathBuf::from(args.value("--data").unwrap_or("../shared/data")),
        report: PathBuf::from(args.value("--report").unwrap_or("report")),
        seed: args.parsed("--seed").map_err(err)?.unwrap_or(1),
        only,
        cache: args.value("--cache").map(PathBuf::from),
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

/// The frames of folder `dir`, stamped at `fps` frames per second.
fn open_source(dir: &Path, fps: f64) -> Result<Box<dyn FrameSource>, String> {
    let spec = dir
        .to_str()
        .ok_or_else(|| format!("{}: path is not UTF-8", dir.display()))?;
    let input = InputConfig {
        fps,
        ..InputConfig::default()
    };
    source::open_with(spec, &input).map_err(|e| format!("{}: {e}", dir.display()))
}

/// How a target figure reads in the summary.
fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
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
        let mut run = coverage::tmo_run(&opts)?;
        coverage::second_pass(&opts, &mut run)?;
        coverage::coverage_tables(&opts, &run, &mut out);
        coverage::cost_table(&run, &mut out);
        report_files = coverage::write_report(&opts, &run)?;
    }
    if opts.runs(Part::Rare) {
        rare::rare_recall(&opts, &mut out)?;
    }
    if opts.runs(Part::Errors) {
        errors::error_capture(&opts, &mut out)?;
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
        assert!(parse_options(&strings(&["--precision", "int4"])).is_err());
    }

    #[test]
    fn missing_data_folder_is_named() {
        let e = data_dir(Path::new("/nonexistent/data"), "x/frames").unwrap_err();
        assert!(e.contains("/nonexistent/data/x/frames"), "{e}");
        assert!(e.contains("--data"));
    }
}
