//! The `edgesieve` command.

use edgesieve::bench;
use edgesieve::cli::Args;
use edgesieve::config::Config;
use edgesieve::detector::{Detector, DetectorOptions};
use edgesieve::logger;
use edgesieve::manifest::{self, Manifest, Precision};
use edgesieve::pipeline::{load_manifest, Pipeline};
use edgesieve::postprocess::Detections;
use edgesieve::record::Reason;
use edgesieve::source::{Frame, FrameSource};
use edgesieve::spool::Spool;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
edgesieve — keeps the camera frames worth labeling

USAGE:
  edgesieve detect [MODEL OPTIONS] [--threshold T] FRAMES|-
      One JSON line per detection: frame, class, score, box [x1, y1, x2, y2] in frame pixels.
      FRAMES is a folder of JPEG/PNG files or a .y4m file; - reads YUV4MPEG2 from stdin.
  edgesieve run --input FRAMES|- --spool DIR [--config FILE] [MODEL OPTIONS]
      The main job: scores every frame, keeps the valuable few in the spool, prints a summary.
  edgesieve inspect DIR
      The spool's records as JSON lines.
  edgesieve config
      Every configuration key with its default, as TOML.
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
    // `edgesieve run --help` and the like: the usage, not an "unknown option" error.
    let wants_help = argv.len() > 1 && argv[1..].iter().any(|a| a == "--help" || a == "-h");
    let result = match argv.first().map(String::as_str) {
        Some(_) if wants_help => {
            print!("{USAGE}");
            Ok(())
        }
        Some("detect") => cmd_detect(&argv[1..]),
        Some("bench") => cmd_bench(&argv[1..]),
        Some("run") => cmd_run(&argv[1..]),
        Some("inspect") => cmd_inspect(&argv[1..]),
        Some("config") => {
            print!("{}", Config::default().to_toml());
            Ok(())
        }
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
    // Both set by build.rs: the target triple, and the git revision ("unknown" without git).
    format!(
        "edgesieve {} ({}, git {})",
        env!("CARGO_PKG_VERSION"),
        env!("EDGESIEVE_TARGET"),
        env!("EDGESIEVE_GIT_REV")
    )
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn model_options(args: &Args) -> Result<(Manifest, DetectorOptions), String> {
    let path = args
        .value("--model")
        .map(PathBuf::from)
        .unwrap_or_else(manifest::default_manifest_path);
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
        return Err("detect takes one FRAMES argument (folder, .y4m file or -)".into());
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
    let _ = writeln!(
        buf,
        "{{\"frame\":{},\"index\":{},\"class\":{},\"class_id\":{},\"score\":{:.4},\"box\":[{:.1},{:.1},{:.1},{:.1}]}}",
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

fn cmd_run(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.extend(["--input", "--spool", "--config"]);
    // SIGTERM (systemd stop) / SIGINT: a flag checked between frames, so the frame in hand
    // finishes (its spool entry complete on disk) and the end-of-run code still runs; exit 0.
    // Installed first, so a stop during model loading also ends cleanly, with 0 frames.
    let shutdown = edgesieve::shutdown::Shutdown::install().map_err(err)?;
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!(
            "run: unexpected argument {extra:?} (frames go after --input)"
        ));
    }
    let input = args
        .value("--input")
        .ok_or("run needs --input FRAMES|- (a folder, a .y4m file or - for stdin)")?;
    let spool_dir = args
        .value("--spool")
        .ok_or("run needs --spool DIR (where kept frames are stored)")?;
    let mut config = match args.value("--config") {
        Some(p) => Config::load(Path::new(p)).map_err(err)?,
        None => Config::default(),
    };
    if let Some(level) = config.log_level.as_deref().and_then(logger::parse_level) {
        if std::env::var_os("EDGESIEVE_LOG").is_none() {
            logger::set_level(level);
        }
    }
    config.apply_model_options(&args).map_err(err)?;
    if args.value("--onnx").is_some() {
        return Err("run: use a manifest (--model) rather than --onnx".into());
    }
    config.validate().map_err(err)?;

    let manifest = load_manifest(&config, &manifest::default_manifest_path()).map_err(err)?;
    // Spool::open recovers from an earlier crash and logs what it found.
    let (spool, _recovery) =
        Spool::open(Path::new(spool_dir), config.spool.clone()).map_err(err)?;
    let mut pipeline = Pipeline::new(&config, manifest, Some(spool)).map_err(err)?;
    let sketch_path = Path::new(spool_dir).join("sketch.bin");
    if let Some(sketch) = edgesieve::pipeline::load_sketch(&sketch_path).map_err(err)? {
        log::info!(
            "sketch {}: {} centres from earlier runs",
            sketch_path.display(),
            sketch.len()
        );
        *pipeline.sketch_mut() = sketch;
    }
    let mut source = FrameSource::open(input).map_err(err)?;
    let described = source.describe();
    pipeline.set_source_label(&described);
    log::info!(
        "reading {described}; model {}",
        pipeline.detector().model_path().display()
    );

    let start_ms = if config.input.start_ms > 0 {
        config.input.start_ms
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let frame_ms = 1000.0 / config.input.fps;
    let started = std::time::Instant::now();
    let mut frame = Frame::new();
    let mut failed = 0u64;
    let mut reasons = [0u64; 4];
    let mut fatal = None;
    loop {
        if let Some(why) = shutdown.reason() {
            log::info!("{why}: stopping after the frame in hand");
            break;
        }
        let Some(next) = source.next_frame(&mut frame) else {
            break;
        };
        if let Err(e) = next {
            if e.is_fatal() {
                fatal = Some(e.to_string());
                break;
            }
            log::warn!("skipping frame: {e}");
            failed += 1;
            continue;
        }
        let ts = start_ms + (frame.index as f64 * frame_ms) as u64;
        let outcome = pipeline
            .process(&frame, ts)
            .map_err(|e| format!("frame {}: {e}", frame.name))?;
        log::trace!(
            "frame {} u {:.3} n {:.3} value {:.3} threshold {:.3} keep {}",
            frame.name,
            outcome.decision.scores.uncertainty,
            outcome.decision.scores.novelty,
            outcome.decision.scores.value,
            outcome.decision.scores.threshold,
            outcome.stored
        );
        if outcome.stored {
            for r in &outcome.decision.reasons {
                reasons[match r {
                    Reason::Value => 0,
                    Reason::Explore => 1,
                    Reason::ClassTrigger(_) => 2,
                    Reason::RareClass(_) => 3,
                }] += 1;
            }
            log::debug!(
                "kept {} value {:.3} (u {:.3}, n {:.3}) {:?}",
                frame.name,
                outcome.decision.scores.value,
                outcome.decision.scores.uncertainty,
                outcome.decision.scores.novelty,
                outcome.decision.reasons
            );
        }
    }
    // Whatever happened to the input, what was kept stays kept: save the sketch, then report.
    edgesieve::pipeline::save_sketch(&sketch_path, pipeline.sketch()).map_err(err)?;
    let stats = pipeline.stats();
    let secs = started.elapsed().as_secs_f64();
    let ratio = if stats.frames > 0 {
        stats.kept as f64 / stats.frames as f64
    } else {
        0.0
    };
    let summary = format!(
        "{} frames seen, {} kept ({:.2}%, target {:.2}%), {} failed; reasons: value {}, explore {}, trigger {}, rare class {}; spool rejected {}, evicted {}; {:.1} frames/s",
        stats.frames,
        stats.kept,
        ratio * 100.0,
        config.policy.target_keep_ratio * 100.0,
        failed,
        reasons[0],
        reasons[1],
        reasons[2],
        reasons[3],
        stats.spool_rejected,
        stats.spool_evicted,
        stats.frames as f64 / secs.max(1e-9)
    );
    log::info!("{summary}");
    println!("{summary}");
    if let Some(e) = fatal {
        return Err(format!(
            "input stopped: {e} (after {} frames; kept frames are safe)",
            stats.frames
        ));
    }
    if stats.frames == 0 && failed > 0 {
        return Err(format!("none of the {failed} frames could be decoded"));
    }
    Ok(())
}

fn cmd_inspect(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &[], &[]).map_err(err)?;
    let [dir] = args.positionals.as_slice() else {
        return Err("inspect takes one spool DIR".into());
    };
    let records = Spool::read_records(Path::new(dir)).map_err(err)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (id, record) in records {
        let mut value = serde_json::to_value(&record).map_err(err)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("id".into(), serde_json::Value::from(id));
        }
        if let Err(e) = writeln!(out, "{value}") {
            return quiet_on_closed_pipe(e);
        }
    }
    out.flush().or_else(quiet_on_closed_pipe)
}

/// A reader that stops early (`| head`) is not an error.
fn quiet_on_closed_pipe(e: std::io::Error) -> Result<(), String> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e.to_string())
    }
}
