//! The `edgesieve` command.

use edgesieve::bench;
use edgesieve::cli::{Args, CliError};
use edgesieve::detector::{Detector, DetectorOptions};
use edgesieve::logger;
use edgesieve::manifest::{Manifest, Precision};
use edgesieve::postprocess::Detections;
use edgesieve::source::{Frame, FrameSource};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
edgesieve — keeps the camera frames worth labeling

USAGE:
  edgesieve detect [MODEL OPTIONS] [--threshold T] FRAMES|-
      One JSON line per detection: frame, class, score, box [x1, y1, x2, y2] in frame pixels.
      FRAMES is a folder of JPEG/PNG files or a .y4m file; - reads YUV4MPEG2 from stdin.
  edgesieve bench [MODEL OPTIONS] [--input DIR] [--frames N] [--warmup N]
      Per-stage ms/frame and fps, fp32 and int8, one thread and all cores.
  edgesieve --version | --help

MODEL OPTIONS:
  --model FILE        model manifest (default: $EDGESIEVE_MODEL, else models/yolox_nano.toml)
  --precision P       int8 (default) or fp32
  --onnx FILE         run this ONNX file instead of the manifest's (it must fit the manifest)
  --threads N         inference threads (default 1)

Logging: EDGESIEVE_LOG=error|warn|info|debug|trace (default info), on stderr.
";

const MODEL_FLAGS: [&str; 4] = ["--model", "--precision", "--onnx", "--threads"];

fn main() -> ExitCode {
    logger::init(log::LevelFilter::Info);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("detect") => cmd_detect(&argv[1..]),
        Some("bench") => cmd_bench(&argv[1..]),
        Some("--version") | Some("-V") | Some("version") => {
            println!("{}", version_line());
            Ok(())
        }
        Some("--help") | Some("-h") | Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn version_line() -> String {
    format!(
        "edgesieve {} ({} {}, git {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        option_env!("EDGESIEVE_GIT_REV").unwrap_or("unknown")
    )
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn default_manifest_path() -> PathBuf {
    if let Ok(p) = std::env::var("EDGESIEVE_MODEL") {
        return PathBuf::from(p);
    }
    let candidates = [
        PathBuf::from("models/yolox_nano.toml"),
        PathBuf::from("/usr/share/edgesieve/models/yolox_nano.toml"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

fn model_options(args: &Args) -> Result<(Manifest, DetectorOptions), String> {
    let path = args
        .value("--model")
        .map(PathBuf::from)
        .unwrap_or_else(default_manifest_path);
    let manifest = Manifest::load(&path).map_err(err)?;
    let mut options = DetectorOptions::default();
    if let Some(p) = args.value("--precision") {
        options.precision = Precision::parse(p)
            .ok_or_else(|| format!("--precision: expected int8 or fp32, got {p:?}"))?;
    }
    options.model_file = args.value("--onnx").map(PathBuf::from);
    if let Some(t) = args.parsed::<usize>("--threads").map_err(err)? {
        if t == 0 {
            return Err("--threads must be at least 1".into());
        }
        options.threads = t;
    }
    Ok((manifest, options))
}

fn cmd_detect(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.push("--threshold");
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    let [input] = args.positionals.as_slice() else {
        return Err(CliError(
            "detect takes one FRAMES argument (folder, .y4m file or -)".into(),
        ))
        .map_err(err);
    };
    let threshold: f32 = args.parsed("--threshold").map_err(err)?.unwrap_or(0.3);
    let (manifest, options) = model_options(&args)?;
    let mut detector = Detector::load(manifest, &options).map_err(err)?;
    log::info!(
        "model {} ({})",
        detector.model_path().display(),
        options.precision
    );
    let mut source = FrameSource::open(input).map_err(err)?;
    log::info!("reading {}", source.describe());

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut frame = Frame::new();
    let mut dets = Detections::new();
    let (mut ok, mut failed, mut printed) = (0u64, 0u64, 0u64);
    let mut line = Vec::with_capacity(256);
    while let Some(next) = source.next_frame(&mut frame) {
        if let Err(e) = next {
            if e.is_fatal() {
                out.flush().map_err(err)?;
                return Err(format!("{e} (after {ok} frames)"));
            }
            log::warn!("skipping frame: {e}");
            failed += 1;
            continue;
        }
        detector
            .detect(&frame.rgb, frame.width, frame.height, &mut dets)
            .map_err(|e| format!("frame {}: {e}", frame.name))?;
        ok += 1;
        for d in dets.items().iter().filter(|d| d.score >= threshold) {
            line.clear();
            write_detection_json(&mut line, &frame, d, &detector.manifest().classes);
            out.write_all(&line).map_err(err)?;
            printed += 1;
        }
    }
    out.flush().map_err(err)?;
    log::info!("{ok} frames, {failed} failed, {printed} detections at score >= {threshold}");
    if ok == 0 && failed > 0 {
        return Err(format!("none of the {failed} frames could be decoded"));
    }
    Ok(())
}

fn write_detection_json(
    buf: &mut Vec<u8>,
    frame: &Frame,
    d: &edgesieve::postprocess::Detection,
    classes: &[String],
) {
    let class = classes
        .get(d.class_id as usize)
        .map(String::as_str)
        .unwrap_or("?");
    let b = d.bbox;
    // serde_json for the strings (escaping); numbers rounded for readable lines.
    let _ = write!(
        buf,
        "{{\"frame\":{},\"index\":{},\"class\":{},\"class_id\":{},\"score\":{:.4},\"box\":[{:.1},{:.1},{:.1},{:.1}]}}\n",
        serde_json::Value::from(frame.name.as_str()),
        frame.index,
        serde_json::Value::from(class),
        d.class_id,
        d.score,
        b[0],
        b[1],
        b[2],
        b[3]
    );
}

fn cmd_bench(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.extend(["--input", "--frames", "--warmup"]);
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    let (manifest, base) = model_options(&args)?;
    let input = args
        .value("--input")
        .unwrap_or("../shared/data/drive-tmo324-lane-detecting/frames");
    if !Path::new(input).exists() {
        return Err(format!("--input {input}: no such folder"));
    }
    let frames: usize = args.parsed("--frames").map_err(err)?.unwrap_or(100);
    let warmup: usize = args.parsed("--warmup").map_err(err)?.unwrap_or(5);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let precisions: Vec<Precision> = match args.value("--precision") {
        Some(_) => vec![base.precision],
        None => vec![Precision::Fp32, Precision::Int8],
    };
    let threads: Vec<usize> = match args.value("--threads") {
        Some(_) => vec![base.threads],
        None if cores > 1 => vec![1, cores],
        None => vec![1],
    };
    println!("edgesieve bench: {frames} frames of {input} after {warmup} warm-up, {cores} cores");
    bench::print_header();
    for &precision in &precisions {
        for &t in &threads {
            let options = DetectorOptions {
                precision,
                threads: t,
                ..base.clone()
            };
            let row = bench::bench_one(&manifest, &options, input, frames, warmup).map_err(err)?;
            bench::print_row(&row);
        }
    }
    Ok(())
}
