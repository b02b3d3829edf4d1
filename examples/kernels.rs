//! Which tract-linalg kernels the optimized detector runs on this machine.
//!
//!   cargo run --release --example kernels [-- --precision int8|fp32] [--model MANIFEST] [--dump]
//!                                          [--nnef] [--kernels edgesieve|tract]
//!                                          [--matmul-kernel K]
//!                                          [--shape WxH] [--profile N] [--marks]
//!   cargo run --target aarch64-unknown-linux-gnu --example kernels      # under qemu (runner)
//!
//! Loads the model exactly as the detector does (`optimized_model`: same checks, same input shape,
//! same outputs; `--shape WxH` for another input than the manifest's, e.g. 416x256, the fit shape
//! of 640x360 frames; `--kernels tract` without our kernels, as `detector.kernels`;
//! `--matmul-kernel K` with tract-linalg's kernel K for the matrix products, as
//! `detector.matmul_kernel`), then
//! reports:
//!   - the instruction set tract-linalg detected (`isa`),
//!   - every matrix-multiply node (convs and dense layers become OptMatMul; the int8 model's
//!     QLinearConvs become OptMatMuls with i32 accumulators) with the kernel tract picked for it
//!     at optimization, i.e. the kernel that runs: its name (arm64simd_*, armv7neon_*, sve_*,
//!     x86_64_fma_*, avx512*_*, … versus generic_* = portable Rust reference), its accumulator
//!     type, and the architecture tract-linalg says it is written for (none = portable Rust,
//!     which is how the check tells, not by name),
//!   - the element-wise/routine kernels the other ops use (sigmoid, SiLU, lookup table, binary
//!     ops, depthwise conv), as tract's routine registry resolves them for this machine,
//!   - the ops that have no tract-linalg kernel at all (plain Rust loops in tract-core).
//!
//! With `--check` (scripts/test-arm, CI), exit status 1 when a main op (an OptMatMul) runs a
//! portable kernel (no architecture, or an emulated accumulator), or when the int8 model has no
//! i32 matmul at all (its quantized convs did not become int8 matmuls). `--dump` prints every
//! node with tract's own description of it. `--profile N` runs the model N times (after one
//! warm-up) on a grey input and prints where the time goes: milliseconds per run for each kind of
//! op, with its node count and share, the slowest first (issue 11: what to make faster).
//! `--marks` is the same under qemu-user, where time says nothing: it runs the model once more
//! calling `sched_yield` before every node (and after the last), and prints the nodes in order;
//! a qemu plugin that counts instructions and notes the running count at every `sched_yield`
//! (`../shared/tools/qemu-insncount` plus a syscall callback) then gives instructions per node.

use edgesieve::detect::manifest::{Manifest, Precision};
use edgesieve::detect::model::{kernel_choices, optimized_model, DetectorOptions};
use edgesieve::detect::tune;
use edgesieve::detect::Kernels;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tract_core::internal::{bail, format_err};
use tract_core::ops::matmul::optimized::OptMatMul;
use tract_core::prelude::*;
use tract_linalg::isa;
use tract_linalg::routines::{self, Func};

fn main() {
    if let Err(e) = run() {
        eprintln!("kernels: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> TractResult<()> {
    let mut precision = Precision::Int8;
    let mut manifest_path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/yolox_nano.toml"
    ));
    let (mut dump, mut check) = (false, false);
    let mut shape = None;
    let mut profile_runs = 0usize;
    let mut marks = false;
    let mut nnef = false;
    let mut kernels = Kernels::Edgesieve;
    let mut matmul_kernel = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--precision" => {
                let p = args.next().unwrap_or_default();
                precision = Precision::parse(&p).ok_or_else(|| format_err!("precision {p:?}"))?;
            }
            "--kernels" => {
                let v = args.next().unwrap_or_default();
                kernels = v
                    .parse()
                    .map_err(|e: String| format_err!("--kernels: {e}"))?;
            }
            "--matmul-kernel" => matmul_kernel = args.next(),
            "--model" => manifest_path = PathBuf::from(args.next().unwrap_or_default()),
            "--dump" => dump = true,
            "--check" => check = true,
            "--marks" => marks = true,
            "--nnef" => nnef = true,
            "--shape" => {
                let v = args.next().unwrap_or_default();
                let parsed = v
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                shape = Some(parsed.ok_or_else(|| format_err!("--shape {v:?}: not WxH"))?);
            }
            "--profile" => {
                let v = args.next().unwrap_or_default();
                profile_runs = v.parse().map_err(|_| format_err!("--profile {v:?}"))?;
            }
            other => {
                bail!("unknown argument {other:?} (--precision P, --model M, --nnef, --kernels K, --matmul-kernel K, --shape WxH, --profile N, --marks, --dump, --check)")
            }
        }
    }
    let manifest = Manifest::load(&manifest_path)?;
    // --nnef: the NNEF file models/fetch converts, which the device loads; else the ONNX file.
    let path = match nnef {
        true => manifest
            .nnef_path(precision)?
            .ok_or_else(|| format_err!("the manifest names no {precision} NNEF file"))?,
        false => manifest.model_path(precision)?,
    };

    let t0 = std::time::Instant::now();
    let shape = shape.unwrap_or((manifest.input.width, manifest.input.height));
    // The kernels the detector would run: the one named, else the plan `edgesieve tune` saved
    // for this model and machine, else tract's pick.
    let options = DetectorOptions {
        kernels,
        matmul_kernel,
        tuning_dir: tune::default_dir(),
        ..DetectorOptions::default()
    };
    let choices = kernel_choices(&options, &path, shape, precision);
    let model = optimized_model(&manifest, &path, shape, precision, kernels, &choices)?;
    let load_s = t0.elapsed().as_secs_f64();

    let native = isa::native();
    println!(
        "edgesieve kernels: {} model {} ({precision}, input {}x{}), target {}, optimized in {load_s:.1} s",
        manifest.name,
        path.display(),
        shape.0,
        shape.1,
        std::env::consts::ARCH
    );
    println!("isa: {native:?}");

    // Main ops: every matrix multiply, with the kernel(s) picked for its shape.
    let mut mm_kernels: BTreeMap<String, usize> = BTreeMap::new();
    let mut op_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut generic_main = Vec::new();
    let mut int8_matmuls = 0usize;
    for node in model.nodes() {
        *op_counts.entry(node.op().name().to_string()).or_default() += 1;
        if dump {
            println!("node {:>4} {:<32} {}", node.id, node.name, node.op().name());
            for line in node.op().info().unwrap_or_default() {
                println!("           {line}");
            }
        }
        if let Some(mm) = node.op_as::<OptMatMul>() {
            if mm.mmm.iter().any(|k| k.internal_type() == DatumType::I32) {
                int8_matmuls += 1;
            }
            for k in &mm.mmm {
                let arch = k.arch();
                let portable = arch.is_none() || k.emulated();
                if portable {
                    generic_main.push(format!("{} ({})", node.name, k.name()));
                }
                let arch = arch.map_or("portable Rust".to_string(), |a| a.to_string());
                let key = format!("{:<32} {:?} acc, {arch}", k.name(), k.internal_type());
                *mm_kernels.entry(key).or_default() += 1;
            }
        }
    }
    println!(
        "ops after optimization: {}",
        op_counts
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("matmul kernels (OptMatMul nodes, per kernel: accumulator, written for):");
    for (k, n) in &mm_kernels {
        println!("  {k:<56} x{n}");
    }
    println!("int8 matmuls (i32 accumulators): {int8_matmuls}");

    // Routines the other ops dispatch to (resolved once per process by tract-linalg).
    println!("routine kernels for this machine (function, type: kernel [standing]):");
    let funcs = [
        (Func::Sigmoid, DatumType::F32),
        (Func::Silu, DatumType::F32),
        (Func::Lut, DatumType::U8),
        (Func::BinUnicast(tract_linalg::BinOp::Add), DatumType::F32),
        (Func::BinUnicast(tract_linalg::BinOp::Mul), DatumType::F32),
        (Func::BinByScalar(tract_linalg::BinOp::Mul), DatumType::F32),
        (Func::BinByScalar(tract_linalg::BinOp::Add), DatumType::F32),
        (Func::DepthwiseW, DatumType::F32),
        (Func::DepthwiseC, DatumType::F32),
        (Func::ConvW4, DatumType::F32),
        (Func::ReduceMax, DatumType::F32),
    ];
    for (func, dt) in funcs {
        let name = routines::best_for(func, dt, &native).map_or("-", |r| r.name());
        let standing = routines::standing(func, dt, &native);
        println!(
            "  {:<20} {dt:?}: {name} [{standing:?}]",
            format!("{func:?}")
        );
    }

    let mut failed = false;
    if generic_main.is_empty() {
        println!(
            "main ops: every OptMatMul runs a kernel written for {}",
            std::env::consts::ARCH
        );
    } else {
        println!(
            "main ops on portable (reference) kernels: {}",
            generic_main.join(", ")
        );
        failed = true;
    }
    // On armv7, NEON is an extension tract probes at run time (from /proc/cpuinfo): without it,
    // f32 matmuls run VFPv2 kernels that are "written for arm" too, so ask for NEON itself.
    if cfg!(target_arch = "arm") && !native.has(isa::Isa::ArmNeon) {
        println!(
            "no NEON detected (tract reads /proc/cpuinfo's Features; TRACT_CPU_ARM32_NEON=true forces it)"
        );
        failed = true;
    }
    if precision == Precision::Int8 && int8_matmuls == 0 {
        println!("int8 model without int8 matmuls: its quantized convs run in float");
        failed = true;
    }
    if marks {
        return node_marks(model, shape);
    }
    if profile_runs > 0 {
        profile(model, shape, profile_runs)?;
    }
    if check && failed {
        std::process::exit(1);
    }
    Ok(())
}

/// `model` made runnable, and a grey input (114, the letterbox's pad) of `shape` for it.
fn runnable_with_grey_input(
    model: TypedModel,
    shape: (u32, u32),
) -> TractResult<(TypedSimpleState, Tensor)> {
    let state = model.into_runnable()?.spawn()?;
    let (w, h) = (shape.0 as usize, shape.1 as usize);
    let input = Tensor::from_shape(&[1, 3, h, w], &vec![114f32; 3 * w * h])?;
    Ok((state, input))
}

/// Runs `model` twice on a grey input and, in the second run, yields the thread
/// (`sched_yield`) before every node and after the last one, printing the nodes in order: a qemu
/// plugin that counts instructions and notes the count at each `sched_yield` gives instructions
/// per node (the differences between consecutive marks), where wall time under qemu says nothing.
fn node_marks(model: TypedModel, shape: (u32, u32)) -> TractResult<()> {
    let (mut state, input) = runnable_with_grey_input(model, shape)?;
    let mut order = Vec::new();
    for run in 0..2 {
        state.run_plan_with_eval(
            tvec!(input.clone().into_tvalue()),
            |ctx, st, node, inputs| {
                if run == 1 {
                    order.push(format!("{} {} {}", node.id, node.name, node.op().name()));
                    std::thread::yield_now();
                }
                tract_core::plan::eval(ctx, st, node, inputs)
            },
        )?;
    }
    std::thread::yield_now();
    for line in order {
        println!("node {line}");
    }
    Ok(())
}

/// Runs `model` `runs` times on a grey input and prints the time per kind of op.
fn profile(model: TypedModel, shape: (u32, u32), runs: usize) -> TractResult<()> {
    use std::time::{Duration, Instant};
    let (mut state, input) = runnable_with_grey_input(model, shape)?;
    let start = Instant::now();
    let spent = tune::time_nodes(&mut state, &input.into_tvalue(), runs)?;
    let wall = start.elapsed().as_secs_f64() * 1e3 / (runs + 1) as f64;
    // Per op name: total time, node count; per node: total time.
    let mut per_op: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    let mut nodes = Vec::new();
    for &id in state.plan().order_without_consts() {
        let node = state.model().node(id);
        let e = per_op.entry(node.op().name().to_string()).or_default();
        e.0 += spent[id];
        e.1 += 1;
        nodes.push((spent[id], format!("{} ({})", node.name, node.op().name())));
    }
    let total: Duration = per_op.values().map(|(d, _)| *d).sum();
    let total_ms = total.as_secs_f64() * 1e3 / runs as f64;
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
    println!("profile: {runs} runs, {total_ms:.2} ms per run in ops ({wall:.2} ms per run wall)");
    for (name, (d, n)) in rows {
        let ms = d.as_secs_f64() * 1e3 / runs as f64;
        println!(
            "  {name:<28} x{n:<4} {ms:>8.2} ms {:>5.1}%",
            100.0 * ms / total_ms
        );
    }
    nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
    println!("slowest nodes:");
    for (d, name) in nodes.iter().take(8) {
        let ms = d.as_secs_f64() * 1e3 / runs as f64;
        println!("  {name:<60} {ms:>8.2} ms");
    }
    Ok(())
}
