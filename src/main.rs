//! The `edgesieve` command.

use edgesieve::config::Config;
use edgesieve::detect::manifest::{self, Manifest, Precision};
use edgesieve::detect::model::{Detector, DetectorOptions};
use edgesieve::detect::tune;
use edgesieve::run::bench;
use edgesieve::run::detections::DetectionWriter;
use edgesieve::run::pipeline::load_manifest;
use edgesieve::run::shutdown::Shutdown;
use edgesieve::run::upload::run_upload;
use edgesieve::run::{job, run_job, JobOptions};
use edgesieve::store::spool::Spool;
use edgesieve::upload::export::{export, ExportFormat};
use edgesieve::upload::Mode;
use edgesieve::util::cli::{model_overrides, Args};
use edgesieve::util::logger;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
edgesieve — keeps the camera frames worth labeling

USAGE:
  edgesieve detect [MODEL OPTIONS] [--threshold T] FRAMES|-
      One JSON line per detection: frame, class, score, box [x1, y1, x2, y2] in frame pixels.
      FRAMES is a folder of JPEG/PNG files, one image file, image files separated by
      commas, or a .y4m file; - reads YUV4MPEG2 from stdin.
  edgesieve run --input FRAMES|- --spool DIR [--config FILE] [MODEL OPTIONS]
      The main job: scores every frame, keeps the valuable few in the spool, prints a summary.
      FRAMES as for detect; raw NV12/I420/RGB24 frames with [input] format, width, height.
  edgesieve upload --spool DIR --config FILE [--once] [--model FILE]
      Uploads the spool's entries to the labeling backend of the config's [upload] section,
      highest value first, exactly once, until stopped; --once: until the spool is empty (exit 0),
      or exit 1 when the backend refuses us or stays unreachable. A spool that a running
      `edgesieve run` holds is refused: configure [upload] for that run instead.
  edgesieve export --spool DIR --out DIR --format label-studio|coco [--config FILE]
                   [--image-prefix P] [--model FILE]
      Writes the spool's entries to DIR/images/ plus DIR/tasks.json (a Label Studio import
      file with predictions and meta; image paths are P + images/NAME, default
      /data/local-files/?d=images/) or DIR/coco.json (predicted boxes with scores). The spool
      is only read.
  edgesieve inspect DIR
      The spool's records as JSON lines, then its quarantined files with their reasons.
  edgesieve config
      Every configuration key with its default, as TOML.
  edgesieve bench [MODEL OPTIONS] [--input DIR] [--frames N] [--warmup N] [--rounds N] [--tune]
      Per-stage ms/frame and fps, fp32 and int8, one thread and all cores, square and fit input
      shapes; side by side with onnxruntime on the same shapes when python3 has it. --tune:
      the detector's configuration only, its inference time with tract's pick and with each
      matrix kernel this machine runs, and the value of --matmul-kernel that is fastest here.
  edgesieve tune [MODEL OPTIONS] [--config FILE] [--input FRAMES] [--runs N] [--rounds N]
                 [--frames N] [--if-missing]
      Measures which matrix kernel is fastest on this machine for each matrix product shape of
      the model (tract's pick and every kernel, on one thread), and saves the result as a kernel
      plan in detector.tuning_dir (default ~/.cache/edgesieve), which the detector then runs
      whenever the model, input shape (from FRAMES, default the sample drive), precision and
      kernels are these (at any --threads); then times inference with tract's pick and with
      the plan, alternating, over --frames frames of FRAMES (0: no check). Run it once per
      machine and model (scripts/setup does, for fp32 and int8); --if-missing: not when a
      plan is saved for this already.
  edgesieve convert [--model FILE] [--precision P]
      Writes the NNEF form of the manifest's ONNX files (fp32_nnef, int8_nnef and f16_nnef, the
      fp32 model translated to half precision; all it names unless --precision), what the
      detector then loads; models/fetch runs it. Builds with the onnx feature only (not the
      car's).
  edgesieve --version | --help

MODEL OPTIONS:
  --model FILE        model manifest (default: $EDGESIEVE_MODEL, else models/yolox_nano.toml)
  --precision P       auto (default: f16 where the core computes in it natively, else fp32),
                      int8, fp32, or f16 (the fp32 model computed in half precision: for ARMv8.2
                      cores with FEAT_FP16, e.g. Cortex-A55/A76; emulated elsewhere)
  --onnx FILE         run this model file (.onnx, or .nnef.tar) instead of the manifest's (it
                      must fit the manifest)
  --threads N         inference threads, 1 to 64 (default 1)
  --input-shape S     fit (default: the model input follows the frames' aspect ratio, e.g.
                      416x256 for 16:9) or square (the manifest's 416x416)
  --kernels K         edgesieve (default: our kernels for the convolutions tract is slow at,
                      where they are vectorised for this machine) or tract (tract's own)
  --matmul-kernel K   the tract-linalg kernel for the matrix products: a kernel's name, or
                      tract (tract's pick); default: the plan edgesieve tune saved for this
                      model and machine, else tract's pick

Logging: EDGESIEVE_LOG=error|warn|info|debug|trace (default info), on stderr.
";

const MODEL_FLAGS: [&str; 7] = [
    "--model",
    "--precision",
    "--onnx",
    "--threads",
    "--input-shape",
    "--kernels",
    "--matmul-kernel",
];

fn main() -> ExitCode {
    // tract creates and drops errors while it loads a model (an op tried one way, then another);
    // with RUST_BACKTRACE set each captured a backtrace: +708 M instructions on an aarch64 int8
    // load (issue 11). Errors we print carry their context chain, not a backtrace, so their
    // capture is off unless RUST_LIB_BACKTRACE asks for it; a panic's backtrace still follows
    // RUST_BACKTRACE. Set before any other thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
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
        Some("tune") => cmd_tune(&argv[1..]),
        Some("run") => cmd_run(&argv[1..]),
        Some("upload") => cmd_upload(&argv[1..]),
        Some("export") => cmd_export(&argv[1..]),
        Some("inspect") => cmd_inspect(&argv[1..]),
        Some("convert") => cmd_convert(&argv[1..]),
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

/// An error with its `source()` chain, for the log line.
fn err(e: impl std::error::Error) -> String {
    edgesieve::util::error_chain(&e)
}

/// A source's frame size (width, height), when it knows it before the first frame.
type FrameSize = Option<(u32, u32)>;

/// The manifest of the model flags, checked like a config file's, and the detector options
/// they give for frames of a size (`detector.input_shape` decides whether the size is used).
fn model_options(args: &Args) -> Result<(Manifest, impl Fn(FrameSize) -> DetectorOptions), String> {
    let mut config = load_config(args)?;
    config.apply_overrides(&model_overrides(args).map_err(err)?);
    config
        .detector
        .validate()
        .map_err(|e| format!("--{}: {}", e.key.replace('_', "-"), e.message))?;
    let path = config
        .detector
        .model
        .clone()
        .unwrap_or_else(manifest::default_manifest_path);
    let manifest = Manifest::load(&path).map_err(err)?;
    let onnx = args.value("--onnx").map(PathBuf::from);
    let detector = config.detector;
    Ok((manifest, move |frame_size| DetectorOptions {
        model_file: onnx.clone(),
        ..detector.options_for(frame_size)
    }))
}

fn cmd_detect(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.push("--threshold");
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    let [input] = args.positionals.as_slice() else {
        return Err(
            "detect takes one FRAMES argument (folder, image file(s), .y4m file or -)".into(),
        );
    };
    let threshold: f32 = args.parsed("--threshold").map_err(err)?.unwrap_or(0.3);
    let (manifest, options_for) = model_options(&args)?;
    let mut source = edgesieve::source::open(input).map_err(err)?;
    let options = options_for(source.frame_size());
    let detector = Detector::load(manifest, &options).map_err(err)?;
    let input_spec = &detector.manifest().input;
    log::info!(
        "model {} ({}, input {}x{})",
        detector.model_path().display(),
        detector.precision(),
        input_spec.width,
        input_spec.height
    );
    log::info!("reading {}", source.describe());
    let stdout = std::io::stdout();
    let mut writer =
        DetectionWriter::new(detector, threshold, std::io::BufWriter::new(stdout.lock()));
    let summary = run_job(source.as_mut(), &mut writer, &JobOptions::default()).map_err(err)?;
    writer.flush().map_err(err)?;
    log::info!(
        "{} frames, {} failed, {} detections at score >= {threshold}",
        summary.frames,
        summary.failed,
        writer.written
    );
    summary.input_result().map_err(err)
}

fn cmd_tune(argv: &[String]) -> Result<(), String> {
    use edgesieve::detect::model::{self, TRACT_PICK};
    let mut flags = MODEL_FLAGS.to_vec();
    flags.extend(["--config", "--input", "--runs", "--rounds", "--frames"]);
    let args = Args::parse(argv, &flags, &["--if-missing"]).map_err(err)?;
    let (manifest, options_for) = model_options(&args)?;
    let input = args
        .value("--input")
        .unwrap_or("../shared/data/drive-tmo324-lane-detecting/frames");
    let frame_size = edgesieve::source::open(input).map_err(err)?.frame_size();
    let options = options_for(frame_size);
    let options = DetectorOptions {
        precision: options.precision.resolved(),
        ..options
    };
    if options.matmul_kernel.is_some() {
        return Err(
            "--matmul-kernel (detector.matmul_kernel) chooses the kernels already: a plan is \
             measured for, and run with, it unset"
                .into(),
        );
    }
    let Some(dir) = options.tuning_dir.clone() else {
        return Err(
            "no folder for kernel plans: set detector.tuning_dir (--config FILE), \
                    or HOME or XDG_CACHE_HOME"
                .into(),
        );
    };
    let runs: usize = args.parsed("--runs").map_err(err)?.unwrap_or(5).max(1);
    let rounds: usize = args.parsed("--rounds").map_err(err)?.unwrap_or(3).max(1);
    let frames: usize = args.parsed("--frames").map_err(err)?.unwrap_or(30);
    let path = model::model_file_for(&manifest, &options).map_err(err)?;
    let shape = model::model_input(&manifest, options.fit_frame);
    let key = tune::plan_key(&path, options.precision, shape, options.kernels);
    if args.switch("--if-missing") {
        // A plan that cannot be read is measured again, and replaced.
        if let Ok(Some(plan)) = tune::read_plan(&dir, &key) {
            println!(
                "edgesieve tune: a plan is saved for this already ({}, {} shapes off tract's \
                 pick)",
                tune::plan_path(&dir, &key).display(),
                plan.len()
            );
            return Ok(());
        }
    }
    let mut wanted =
        tune::PlanWanted::new(&dir, key, &path, options.precision, shape, options.kernels);
    (wanted.settings.runs, wanted.settings.rounds) = (runs, rounds);
    let settings = &wanted.settings;
    let (w, h) = shape;
    println!(
        "edgesieve tune: {} ({}) at {w}x{h}: tract's pick and {} matrix kernels, {runs} runs \
         each on one thread, best of {rounds} rounds",
        path.display(),
        options.precision,
        settings.candidates.len()
    );
    let measured = tune::measure(&manifest, &path, settings).map_err(err)?;
    println!(
        "{:<16} {:>8} {:<26} {:>8} {:<26} {:>8}",
        "product m,k,n", "products", "tract's pick", "ms", "fastest", "ms"
    );
    for r in &measured.rows {
        let (m, k, n) = r.shape;
        println!(
            "{:<16} {:>8} {:<26} {:>8.3} {:<26} {:>8.3}",
            format!("{m},{k},{n}"),
            r.products,
            r.tract.0,
            r.tract.1,
            r.best.0,
            r.best.1
        );
    }
    let (pick_ms, best_ms) = measured.totals();
    println!(
        "matrix products (packing included): {pick_ms:.2} ms per frame with tract's pick, \
         {best_ms:.2} ms with the fastest per shape ({:+.0}%)",
        100.0 * (best_ms / pick_ms - 1.0)
    );
    let written = tune::write_plan(&dir, &wanted.key, &measured.choices).map_err(err)?;
    println!(
        "plan saved: {} ({} of {} shapes off tract's pick)",
        written.display(),
        measured.choices.len(),
        measured.rows.len()
    );
    if frames == 0 {
        return Ok(());
    }
    // The check: the detector as it loads from now on, against tract's pick, alternating.
    let pick = DetectorOptions {
        matmul_kernel: Some(TRACT_PICK.to_string()),
        ..options.clone()
    };
    let (mut pick_best, mut plan_best) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds {
        let a = bench::bench_one(&manifest, &pick, input, frames, 3).map_err(err)?;
        let b = bench::bench_one(&manifest, &options, input, frames, 3).map_err(err)?;
        pick_best = pick_best.min(a.times.inference);
        plan_best = plan_best.min(b.times.inference);
    }
    println!(
        "inference, {frames} frames of {input}, best of {rounds} alternating rounds: \
         {pick_best:.2} ms per frame with tract's pick, {plan_best:.2} ms with the plan ({:+.0}%)",
        100.0 * (plan_best / pick_best - 1.0)
    );
    Ok(())
}

fn cmd_bench(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.extend(["--input", "--frames", "--warmup", "--rounds"]);
    let args = Args::parse(argv, &flags, &["--tune"]).map_err(err)?;
    let (manifest, options_for) = model_options(&args)?;
    let input = args
        .value("--input")
        .unwrap_or("../shared/data/drive-tmo324-lane-detecting/frames");
    if !Path::new(input).exists() {
        return Err(format!("--input {input}: no such folder"));
    }
    let frame_size = edgesieve::source::open(input).map_err(err)?.frame_size();
    let base = options_for(frame_size);
    let frames: usize = args.parsed("--frames").map_err(err)?.unwrap_or(100);
    let warmup: usize = args.parsed("--warmup").map_err(err)?.unwrap_or(5);
    let rounds: usize = args.parsed("--rounds").map_err(err)?.unwrap_or(1).max(1);
    if args.switch("--tune") {
        // One configuration (the detector's, as the flags set it), every matrix kernel.
        let options = DetectorOptions {
            precision: base.precision.resolved(),
            ..base
        };
        let candidates = tune::candidates(options.precision);
        println!(
            "edgesieve bench --tune: {} at {}, {} thread(s), tract's pick and {} matrix kernels, \
             {frames} frames of {input} after {warmup} warm-up, best of {rounds} round(s)",
            options.precision,
            {
                let (w, h) = edgesieve::detect::model::model_input(&manifest, options.fit_frame);
                format!("{w}x{h}")
            },
            options.threads,
            candidates.len()
        );
        let rows = bench::tune(
            &manifest,
            &options,
            &candidates,
            input,
            frames,
            warmup,
            rounds,
        )
        .map_err(err)?;
        bench::print_tune(&rows, 0.03);
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let precisions: Vec<Precision> = match args.value("--precision") {
        Some(_) => vec![base.precision.resolved()],
        // f16 where the core computes in it (elsewhere tract emulates it, ~17x slower than fp32).
        None if edgesieve::detect::model::native_f16() => {
            vec![Precision::Fp32, Precision::Int8, Precision::F16]
        }
        None => vec![Precision::Fp32, Precision::Int8],
    };
    let threads: Vec<usize> = match args.value("--threads") {
        Some(_) => vec![base.threads],
        None if cores > 1 => vec![1, cores],
        None => vec![1],
    };
    // Both shapes unless --input-shape picks one.
    let fits: Vec<Option<(u32, u32)>> = match args.value("--input-shape") {
        Some(_) => vec![base.fit_frame],
        None => vec![None, frame_size],
    };
    println!(
        "edgesieve bench: {frames} frames of {input} after {warmup} warm-up, {cores} cores, \
         {rounds} round(s)"
    );
    let script = manifest.dir.join("ort_bench.py");
    let (mut rows, mut ort) = (Vec::new(), Vec::new());
    let mut no_ort = None;
    // Round by round, tract then onnxruntime, so that both see the same spells of a noisy
    // machine; the comparison takes each side's best round.
    for round in 0..rounds {
        if rounds > 1 {
            println!("round {}:", round + 1);
        }
        bench::print_header();
        let first = rows.len();
        for &precision in &precisions {
            for &fit_frame in &fits {
                for &t in &threads {
                    let options = DetectorOptions {
                        precision,
                        threads: t,
                        fit_frame,
                        ..base.clone()
                    };
                    let row = bench::bench_one(&manifest, &options, input, frames, warmup)
                        .map_err(err)?;
                    bench::print_row(&row);
                    rows.push(row);
                }
            }
        }
        // The same model files, shapes and frames under onnxruntime, when python3 has it.
        if no_ort.is_none() {
            match bench::ort_rows(&script, input, frames, &rows[first..]) {
                Ok(o) if !o.is_empty() => ort.extend(o),
                Ok(_) => no_ort = Some(format!("{} printed no timing", script.display())),
                Err(why) => no_ort = Some(format!("no comparison ({why})")),
            }
        }
    }
    match no_ort {
        None => {
            let best = if rounds > 1 {
                ", each side's best round"
            } else {
                ""
            };
            println!(
                "\ninference side by side (onnxruntime by {}{best}):",
                script.display()
            );
            bench::print_comparison(&bench::best_rows(&rows), &bench::best_ort_rows(&ort));
        }
        Some(why) => println!("\nonnxruntime: {why}"),
    }
    Ok(())
}

fn cmd_run(argv: &[String]) -> Result<(), String> {
    let mut flags = MODEL_FLAGS.to_vec();
    flags.extend(["--input", "--spool", "--config"]);
    // SIGTERM (systemd stop) / SIGINT: a flag checked between frames, so the frame in hand
    // finishes (its spool entry complete on disk) and the end-of-run code still runs; exit 0.
    // Installed first, so a stop during model loading also ends cleanly, with 0 frames.
    let shutdown = Shutdown::install().map_err(err)?;
    let args = Args::parse(argv, &flags, &[]).map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!(
            "run: unexpected argument {extra:?} (frames go after --input)"
        ));
    }
    let input = args.value("--input").ok_or(
        "run needs --input FRAMES|- (a folder, image file(s), a .y4m file or - for stdin)",
    )?;
    let spool_dir = args
        .value("--spool")
        .ok_or("run needs --spool DIR (where kept frames are stored)")?;
    let mut config = load_config(&args)?;
    config.apply_overrides(&model_overrides(&args).map_err(err)?);
    if args.value("--onnx").is_some() {
        return Err("run: use a manifest (--model) rather than --onnx".into());
    }
    config.validate().map_err(err)?;

    let report = job::run_selection(
        input,
        Path::new(spool_dir),
        &config,
        &manifest::default_manifest_path(),
        Some(&shutdown),
    )
    .map_err(err)?;
    log::info!("{report}");
    println!("{report}");
    report.summary.input_result().map_err(err)
}

/// `--config FILE` (else the defaults), with its log level applied unless EDGESIEVE_LOG is set.
fn load_config(args: &Args) -> Result<Config, String> {
    let config = match args.value("--config") {
        Some(p) => Config::load(Path::new(p)).map_err(err)?,
        None => Config::default(),
    };
    if let Some(level) = config.log_level.as_deref().and_then(logger::parse_level) {
        if std::env::var_os("EDGESIEVE_LOG").is_none() {
            logger::set_level(level);
        }
    }
    Ok(config)
}

fn cmd_upload(argv: &[String]) -> Result<(), String> {
    let shutdown = Shutdown::install().map_err(err)?;
    let args = Args::parse(argv, &["--spool", "--config", "--model"], &["--once"]).map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!("upload: unexpected argument {extra:?}"));
    }
    let spool_dir = args
        .value("--spool")
        .ok_or("upload needs --spool DIR (the spool `edgesieve run` filled)")?;
    let mut config = load_config(&args)?;
    config.apply_overrides(&model_overrides(&args).map_err(err)?);
    config.validate().map_err(err)?;
    let mode = if args.switch("--once") {
        Mode::Once
    } else {
        Mode::UntilStopped
    };
    let stats = run_upload(
        Path::new(spool_dir),
        &config,
        &manifest::default_manifest_path(),
        mode,
        Some(&shutdown),
    )
    .map_err(err)?;
    let line = stats.to_string();
    log::info!("{line}");
    println!("{line}");
    Ok(())
}

fn cmd_export(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &[
            "--spool",
            "--out",
            "--format",
            "--config",
            "--image-prefix",
            "--model",
        ],
        &[],
    )
    .map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!("export: unexpected argument {extra:?}"));
    }
    let spool_dir = args.value("--spool").ok_or("export needs --spool DIR")?;
    let out = args
        .value("--out")
        .ok_or("export needs --out DIR (created if needed)")?;
    let format: ExportFormat = args
        .value("--format")
        .ok_or("export needs --format label-studio|coco")?
        .parse()
        .map_err(|e| format!("--format: {e}"))?;
    let mut config = load_config(&args)?;
    config.apply_overrides(&model_overrides(&args).map_err(err)?);
    config.validate().map_err(err)?;
    let manifest = load_manifest(&config, &manifest::default_manifest_path()).map_err(err)?;
    let report = export(
        Path::new(spool_dir),
        Path::new(out),
        format,
        &config.upload.device_id(),
        &manifest.classes,
        args.value("--image-prefix")
            .unwrap_or("/data/local-files/?d="),
    )
    .map_err(err)?;
    println!(
        "exported {} images, {} boxes: {}",
        report.images,
        report.boxes,
        report.file.display()
    );
    Ok(())
}

/// `edgesieve convert`: the NNEF form of the manifest's ONNX files (a build with `onnx`).
#[cfg(feature = "onnx")]
fn cmd_convert(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &["--model", "--precision"], &[]).map_err(err)?;
    if let Some(extra) = args.positionals.first() {
        return Err(format!("convert takes no argument {extra:?}"));
    }
    let path = args
        .value("--model")
        .map(PathBuf::from)
        .unwrap_or_else(manifest::default_manifest_path);
    let manifest = Manifest::load(&path).map_err(err)?;
    let precisions = match args.parsed::<Precision>("--precision").map_err(err)? {
        Some(p) => vec![p],
        None => [
            (Precision::Fp32, true),
            (Precision::Int8, manifest.int8_file.is_some()),
            (Precision::F16, manifest.f16_nnef.is_some()),
        ]
        .into_iter()
        .filter_map(|(p, named)| named.then_some(p))
        .collect(),
    };
    for precision in precisions {
        let precision = precision.resolved();
        let onnx = manifest.model_path(precision).map_err(err)?;
        let Some(nnef) = manifest.nnef_path(precision).map_err(err)? else {
            return Err(format!(
                "{}: the manifest names no {precision} NNEF file ({precision}_nnef)",
                path.display()
            ));
        };
        let started = std::time::Instant::now();
        edgesieve::detect::nnef::convert(&manifest, &onnx, &nnef, precision).map_err(err)?;
        log::info!(
            "{} -> {} ({:.1} s)",
            onnx.display(),
            nnef.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(not(feature = "onnx"))]
fn cmd_convert(_argv: &[String]) -> Result<(), String> {
    Err(
        "convert needs a build with the onnx feature (cargo build, not the car's \
         --no-default-features build)"
            .into(),
    )
}

/// `edgesieve inspect DIR`: one JSON line per intact entry (its record plus `"id"`, and
/// `"context"` listing its context frames when it has any), oldest
/// first; then one line `{"quarantined": "<file>", "reason": "..."}` per file in the spool's
/// `quarantine/` directory. Damaged entries and entry-named non-files are skipped with a warning
/// on stderr. Reads only; needs no lock.
fn cmd_inspect(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, &[], &[]).map_err(err)?;
    let [dir] = args.positionals.as_slice() else {
        return Err("inspect takes one spool DIR".into());
    };
    let records = Spool::read_entries(Path::new(dir)).map_err(err)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (id, record, context) in records {
        let mut value = serde_json::to_value(&record).map_err(err)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("id".into(), serde_json::Value::from(id));
            if !context.is_empty() {
                obj.insert(
                    "context".into(),
                    serde_json::to_value(&context).map_err(err)?,
                );
            }
        }
        if let Err(e) = writeln!(out, "{value}") {
            return quiet_on_closed_pipe(e);
        }
    }
    for (name, reason) in Spool::read_quarantine(Path::new(dir)).map_err(err)? {
        let line = serde_json::json!({ "quarantined": name, "reason": reason });
        if let Err(e) = writeln!(out, "{line}") {
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
