//! Matrix kernels measured on this machine (issue 11).
//!
//! tract picks the kernel of every matrix product from a cost model fitted on other machines;
//! on some parts its pick is 20-30% slower than another kernel it has. `edgesieve tune`
//! ([`measure`]) optimises the model once with tract's pick and once with each kernel this
//! machine runs, times every product of the model in each, and keeps per product shape
//! `(m, k, n)` the fastest: a *kernel plan*. It is saved as a small text file in the tuning
//! folder (`detector.tuning_dir`), named after what it was measured for ([`plan_key`]: this
//! edgesieve, the CPU and what tract-linalg detected on it, the model file, the precision, the
//! input shape and the kernels setting), and the detector loads it whenever all of these match
//! ([`read_plan`]), at any number of threads (they split the same products). Anything else
//! (no plan, another model or machine, an unreadable file) leaves tract's pick, which computes
//! the same detections up to float rounding.
//!
//! Timing a product includes the packing of its input, which the kernel's tile shape decides.

use crate::detect::manifest::{Manifest, Precision};
use crate::detect::model::{self, DetectorError};
use crate::detect::Kernels;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
pub use tract_core::ops::einsum::kernel_selection::KernelChoice;
use tract_core::ops::matmul::optimized::OptMatMul;
use tract_core::ops::matmul::pack::OptMatMulPack;
use tract_core::prelude::*;

/// A matrix product's shape as tract-linalg sees it: `(m, k, n)`.
pub type ProductShape = (usize, usize, usize);

/// First line of a plan file.
const HEADER: &str =
    "# edgesieve kernel plan (edgesieve tune); delete it to go back to tract's pick";

#[derive(Debug)]
pub enum TuneError {
    /// A plan file could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A plan file is not what [`write_plan`] writes.
    Corrupt { path: PathBuf, line: usize },
}

impl fmt::Display for TuneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuneError::Io { path, .. } => write!(f, "kernel plan {}", path.display()),
            TuneError::Corrupt { path, line } => write!(
                f,
                "kernel plan {} is not a plan edgesieve tune writes (line {line})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TuneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TuneError::Io { source, .. } => Some(source),
            TuneError::Corrupt { .. } => None,
        }
    }
}

/// The folder plans go in when `detector.tuning_dir` is not set: `$XDG_CACHE_HOME/edgesieve`,
/// else `$HOME/.cache/edgesieve`; None when neither variable is set (a service started with an
/// empty environment), and then no plan is read or written.
pub fn default_dir() -> Option<PathBuf> {
    let non_empty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_CACHE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("edgesieve"))
}

/// What a plan is measured for, as the lines of text its file starts with: a plan is used only
/// where every line matches. The model file is named by its full path, size and modification
/// time (a new file, as `models/fetch` writes, needs a new plan).
pub fn plan_key(path: &Path, precision: Precision, shape: (u32, u32), kernels: Kernels) -> String {
    let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let (len, modified) = std::fs::metadata(path).map_or((0, 0), |m| {
        let secs = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        (m.len(), secs)
    });
    format!(
        "edgesieve {}\ncpu {}\nisa {:?}\nmodel {} {len} {modified}\nprecision {precision}\n\
         input {}x{}\nkernels {kernels}",
        env!("CARGO_PKG_VERSION"),
        cpu_name(),
        tract_linalg::isa::native(),
        file.display(),
        shape.0,
        shape.1,
    )
}

/// The CPU's model name from `/proc/cpuinfo` (where there is one): the same instruction set
/// on another part may want other kernels.
fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "CPU part").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The plan file for `key` in `dir`: named by a hash of the key, so that plans for several
/// models, shapes and precisions sit side by side.
pub fn plan_path(dir: &Path, key: &str) -> PathBuf {
    // FNV-1a, 64 bits: stable across builds and Rust versions, unlike std's hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    dir.join(format!("matmul-{hash:016x}.plan"))
}

/// The plan saved in `dir` for `key`: None when there is none, or when the file there was
/// measured for something else.
pub fn read_plan(dir: &Path, key: &str) -> Result<Option<Vec<KernelChoice>>, TuneError> {
    let path = plan_path(dir, key);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TuneError::Io { path, source }),
    };
    let corrupt = |line: usize| TuneError::Corrupt {
        path: path.clone(),
        line,
    };
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, l)| l) != Some(HEADER) {
        return Err(corrupt(1));
    }
    let mut file_key = Vec::new();
    let mut choices = Vec::new();
    for (ix, line) in lines {
        if let Some(k) = line.strip_prefix("key ") {
            file_key.push(k);
        } else if let Some(p) = line.strip_prefix("product ") {
            let parts: Vec<&str> = p.split(' ').collect();
            let [m, k, n, kernel] = parts.as_slice() else {
                return Err(corrupt(ix + 1));
            };
            let dim = |s: &str| s.parse::<usize>().map_err(|_| corrupt(ix + 1));
            choices.push(KernelChoice {
                shape: Some((dim(m)?, dim(k)?, dim(n)?)),
                kernel: kernel.to_string(),
            });
        } else if line != "end" {
            return Err(corrupt(ix + 1));
        }
    }
    // A file cut short (a crash in the middle of a write that did not go through `write_plan`)
    // has no "end" line.
    if text.lines().last() != Some("end") {
        return Err(corrupt(text.lines().count()));
    }
    Ok((file_key.join("\n") == key).then_some(choices))
}

/// Saves `choices` as the plan for `key` in `dir` (created if need be), atomically: a
/// temporary file, synced, renamed over the old plan.
pub fn write_plan(dir: &Path, key: &str, choices: &[KernelChoice]) -> Result<PathBuf, TuneError> {
    let path = plan_path(dir, key);
    let mut text = format!("{HEADER}\n");
    for line in key.lines() {
        text.push_str(&format!("key {line}\n"));
    }
    for c in choices {
        let (m, k, n) = c.shape.unwrap_or_default();
        text.push_str(&format!("product {m} {k} {n} {}\n", c.kernel));
    }
    text.push_str("end\n");
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::util::write_atomic(&path, text.as_bytes()))
        .map_err(|source| TuneError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// The matrix kernels `edgesieve tune` and `edgesieve bench --tune` time for `precision`:
/// those tract-linalg runs on this machine that are written for it (not the portable ones, nor
/// emulated), accumulate in a type the precision's model has products in (i32 and f32 for int8,
/// whose file keeps some convolutions in float) and have more than one column per tile (the
/// matrix-vector products keep theirs whatever `detector.matmul_kernel` says).
pub fn candidates(precision: Precision) -> Vec<String> {
    use tract_core::prelude::{f16, Datum};
    let accumulators = match precision.resolved() {
        Precision::Int8 => vec![i32::datum_type(), f32::datum_type()],
        Precision::F16 => vec![f16::datum_type()],
        _ => vec![f32::datum_type()],
    };
    crate::detect::model::matmul_kernels_where(|k| {
        k.arch().is_some()
            && !k.emulated()
            && k.nr() > 1
            && accumulators.contains(&k.internal_type())
    })
}

/// One product shape in [`measure`]'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeRow {
    pub shape: ProductShape,
    /// Products of this shape in the model.
    pub products: usize,
    /// tract's pick, and its milliseconds per frame on these products (packing included).
    pub tract: (String, f64),
    /// The fastest kernel measured, and its milliseconds per frame.
    pub best: (String, f64),
}

/// What [`measure`] found: per shape its figures, and the plan (a choice for every shape where
/// another kernel beat tract's pick).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub rows: Vec<ShapeRow>,
    pub choices: Vec<KernelChoice>,
}

impl Measured {
    /// Milliseconds per frame in matrix products (packing included): with tract's pick, and
    /// with the plan.
    pub fn totals(&self) -> (f64, f64) {
        let tract = self.rows.iter().map(|r| r.tract.1).sum();
        let best = self.rows.iter().map(|r| r.best.1).sum();
        (tract, best)
    }
}

/// A matrix product of an optimised model: its shape, the kernel it runs, and the nodes whose
/// time is its (itself and the packing of its inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub shape: ProductShape,
    pub kernel: String,
    nodes: Vec<usize>,
}

/// The matrix products of `model` that run one kernel with a known shape.
pub fn products(model: &TypedModel) -> Vec<Product> {
    let mut out = Vec::new();
    for node in model.nodes() {
        let Some(op) = node.op_as::<OptMatMul>() else {
            continue;
        };
        let known = |d: &TDim| d.as_i64().and_then(|v| usize::try_from(v).ok());
        let dim = |axis: Option<usize>| axis.map_or(Some(1), |ix| known(&op.c_fact.shape[ix]));
        let (Some(m), Some(n), Some(k), [mmm]) = (
            dim(op.c_m_axis),
            dim(op.c_n_axis),
            op.guess_k().as_ref().and_then(known),
            op.mmm.as_slice(),
        ) else {
            continue;
        };
        let mut nodes = vec![node.id];
        nodes.extend(
            node.inputs
                .iter()
                .filter(|i| model.node(i.node).op_is::<OptMatMulPack>())
                .map(|i| i.node),
        );
        out.push(Product {
            shape: (m, k, n),
            kernel: mmm.name().to_string(),
            nodes,
        });
    }
    out
}

/// What [`measure`] times.
#[derive(Debug, Clone)]
pub struct TuneSettings {
    pub precision: Precision,
    /// The model input (width, height).
    pub shape: (u32, u32),
    pub kernels: Kernels,
    /// The kernels to try beside tract's pick.
    pub candidates: Vec<String>,
    /// Timed runs per kernel and round (after one untimed).
    pub runs: usize,
    /// Rounds over all kernels; each product's figure is its best round's.
    pub rounds: usize,
}

/// Runs `state` on `input` once untimed, then `runs` times timed; per node id, its time over
/// the timed runs (what `measure` sums per product, and `examples/kernels --profile` per op).
pub fn time_nodes(
    state: &mut TypedSimpleState,
    input: &TValue,
    runs: usize,
) -> TractResult<Vec<Duration>> {
    let mut spent = vec![Duration::ZERO; state.model().nodes().len()];
    for run in 0..=runs {
        state.run_plan_with_eval(tvec!(input.clone()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let out = tract_core::plan::eval(ctx, st, node, inputs);
            if run > 0 {
                spent[node.id] += t.elapsed();
            }
            out
        })?;
    }
    Ok(spent)
}

/// Times every matrix product of the model at `path` (described by `manifest`) with tract's
/// pick and with each candidate kernel, on a grey input, `settings.rounds` times round-robin (a
/// noisy spell of the machine falls on every kernel alike); per shape the fastest kernel. On one
/// thread: a plan is measured for the kernels, and threads split the same products.
pub fn measure(
    manifest: &Manifest,
    path: &Path,
    settings: &TuneSettings,
) -> Result<Measured, DetectorError> {
    let (w, h) = (settings.shape.0 as usize, settings.shape.1 as usize);
    let input: TValue = Tensor::from_shape(&[1, 3, h, w], &vec![114f32; 3 * w * h])
        .map_err(|e| model::load_err(path, e))?
        .into_tvalue();
    // Per shape: products of it, tract's pick, and per kernel the best milliseconds per frame.
    let mut found: BTreeMap<ProductShape, (usize, String, BTreeMap<String, f64>)> = BTreeMap::new();
    let kernels: Vec<Option<&String>> = std::iter::once(None)
        .chain(settings.candidates.iter().map(Some))
        .collect();
    for _ in 0..settings.rounds.max(1) {
        for kernel in &kernels {
            let choices: Vec<KernelChoice> = kernel
                .map(|k| KernelChoice {
                    shape: None,
                    kernel: k.clone(),
                })
                .into_iter()
                .collect();
            let typed = model::optimized_model(
                manifest,
                path,
                settings.shape,
                settings.precision,
                settings.kernels,
                &choices,
            )?;
            let products = products(&typed);
            let spent = typed
                .into_runnable()
                .and_then(|p| p.spawn())
                .and_then(|mut state| time_nodes(&mut state, &input, settings.runs.max(1)))
                .map_err(|e| model::load_err(path, e))?;
            let mut per_shape: BTreeMap<ProductShape, (usize, String, Duration)> = BTreeMap::new();
            for p in &products {
                let e = per_shape
                    .entry(p.shape)
                    .or_insert((0, p.kernel.clone(), Duration::ZERO));
                e.0 += 1;
                e.2 += p.nodes.iter().map(|&n| spent[n]).sum::<Duration>();
            }
            for (shape, (count, used, time)) in per_shape {
                let ms = time.as_secs_f64() * 1e3 / settings.runs.max(1) as f64;
                let e = found
                    .entry(shape)
                    .or_insert_with(|| (count, String::new(), BTreeMap::new()));
                if kernel.is_none() {
                    e.1.clone_from(&used);
                }
                let best = e.2.entry(used).or_insert(f64::INFINITY);
                *best = best.min(ms);
            }
        }
    }
    let mut rows = Vec::new();
    let mut choices = Vec::new();
    for (shape, (products, pick, times)) in found {
        let tract_ms = times.get(&pick).copied().unwrap_or(f64::INFINITY);
        let (best, best_ms) = times
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, ms)| (k.clone(), *ms))
            .unwrap_or((pick.clone(), tract_ms));
        if best != pick {
            choices.push(KernelChoice {
                shape: Some(shape),
                kernel: best.clone(),
            });
        }
        rows.push(ShapeRow {
            shape,
            products,
            tract: (pick, tract_ms),
            best: (best, best_ms),
        });
    }
    Ok(Measured { rows, choices })
}

/// A plan the detector looked for and did not find (or could not read): what measuring it
/// takes ([`measure_in_background`]).
#[derive(Debug, Clone)]
pub struct PlanWanted {
    /// Where it goes (`detector.tuning_dir`).
    pub dir: PathBuf,
    /// What it is for ([`plan_key`]).
    pub key: String,
    /// The model file.
    pub path: PathBuf,
    pub settings: TuneSettings,
}

impl PlanWanted {
    /// What [`measure`] times for a model at `path`, run at `precision` on inputs of `shape` with
    /// `kernels`, whose plan goes in `dir` under `key`: tract's pick and every [`candidates`]
    /// kernel, 5 runs each, 3 rounds (as `edgesieve tune`).
    pub fn new(
        dir: &Path,
        key: String,
        path: &Path,
        precision: Precision,
        shape: (u32, u32),
        kernels: Kernels,
    ) -> PlanWanted {
        PlanWanted {
            dir: dir.to_path_buf(),
            key,
            path: path.to_path_buf(),
            settings: TuneSettings {
                precision,
                shape,
                kernels,
                candidates: candidates(precision),
                runs: 5,
                rounds: 3,
            },
        }
    }
}

/// Measures the plan `wanted` describes on a thread of its own, at the lowest scheduling
/// priority (nice 19: it takes what the rest of the machine leaves), and saves it; the next
/// detector load with its key runs it (`detector.tune_in_background`: a car measures its own
/// kernels once, unattended). What it found, or why it failed, is logged; the handle gives the
/// plan's file. A process that ends first loses nothing: the plan is written atomically, or not
/// at all, and measured again at the next start.
pub fn measure_in_background(
    manifest: Manifest,
    wanted: PlanWanted,
) -> std::io::Result<std::thread::JoinHandle<Option<PathBuf>>> {
    std::thread::Builder::new()
        .name("edgesieve-tune".into())
        .spawn(move || {
            lower_priority();
            let (w, h) = wanted.settings.shape;
            log::info!(
                "matrix kernels: measuring tract's pick and {} kernels on {} ({}, {w}x{h}) in \
                 the background, for the next start",
                wanted.settings.candidates.len(),
                wanted.path.display(),
                wanted.settings.precision
            );
            let measured = match measure(&manifest, &wanted.path, &wanted.settings) {
                Ok(m) => m,
                Err(e) => {
                    log::warn!(
                        "matrix kernels: measuring failed: {}",
                        crate::util::error_chain(&e)
                    );
                    return None;
                }
            };
            match write_plan(&wanted.dir, &wanted.key, &measured.choices) {
                Ok(file) => {
                    let (pick, best) = measured.totals();
                    log::info!(
                        "matrix kernels: plan saved, {} ({} of {} shapes off tract's pick; \
                         products {pick:.2} -> {best:.2} ms per frame); it runs from the next \
                         start",
                        file.display(),
                        measured.choices.len(),
                        measured.rows.len()
                    );
                    Some(file)
                }
                Err(e) => {
                    log::warn!("{}", crate::util::error_chain(&e));
                    None
                }
            }
        })
}

/// Gives the calling thread the lowest scheduling priority (Linux: nice 19 for this thread
/// only); elsewhere nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments; setpriority on this thread's id changes only its
        // own nice value (Linux applies PRIO_PROCESS with a thread id to that thread).
        let done = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19)
        };
        if done != 0 {
            log::debug!(
                "matrix kernels: nice 19 not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::util::testing::TempDir;

    fn choice(shape: ProductShape, kernel: &str) -> KernelChoice {
        KernelChoice {
            shape: Some(shape),
            kernel: kernel.to_string(),
        }
    }

    /// A plan written is read back for its key, and for another key (another model, machine,
    /// shape...) it is not there.
    #[test]
    fn a_plan_is_read_back_for_its_key_only() {
        let dir = TempDir::new("tune-plan");
        let key = "edgesieve 0\ncpu x\ninput 416x256";
        let plan = vec![choice((416, 64, 64), "k_a"), choice((1664, 32, 32), "k_b")];
        let path = write_plan(dir.path(), key, &plan).unwrap();
        assert!(path.starts_with(dir.path()));
        assert_eq!(read_plan(dir.path(), key).unwrap(), Some(plan.clone()));
        let other = "edgesieve 0\ncpu x\ninput 416x416";
        assert_eq!(read_plan(dir.path(), other).unwrap(), None);
        // Another key whose file name is the same (a collision, or a file copied in) is not it.
        std::fs::copy(&path, plan_path(dir.path(), other)).unwrap();
        assert_eq!(read_plan(dir.path(), other).unwrap(), None);
        assert_eq!(read_plan(dir.path(), key).unwrap(), Some(plan));
    }

    /// A damaged or cut short plan file is an error naming the file (the detector logs it and
    /// runs tract's pick), never a plan.
    #[test]
    fn a_damaged_plan_names_its_file() {
        let dir = TempDir::new("tune-corrupt");
        let key = "edgesieve 0";
        let path = write_plan(dir.path(), key, &[choice((1, 2, 3), "k")]).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        for bad in [
            good.replace("product 1 2 3 k", "product 1 two 3 k"),
            good.replace("end\n", ""),
            good.replace(HEADER, "# something else"),
            good.replace("product 1 2 3 k", "garbage"),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let e = read_plan(dir.path(), key).unwrap_err();
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }

    /// The project's fp32 model file at 416x256 (what tests of plans use), and its products with
    /// `choices`.
    pub(crate) fn fp32_products(choices: &[KernelChoice]) -> (Manifest, PathBuf, Vec<Product>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let m = Manifest::load(Path::new(path)).unwrap();
        let file = m.nnef_path(Precision::Fp32).unwrap().unwrap();
        let model = crate::detect::model::optimized_model(
            &m,
            &file,
            (416, 256),
            Precision::Fp32,
            Kernels::Edgesieve,
            choices,
        )
        .unwrap();
        (m, file, products(&model))
    }

    /// `measure` times every product shape of the model with tract's pick and the candidates,
    /// and chooses for a shape only a kernel that beat tract's pick there; the plan it gives
    /// makes those products run their kernel.
    #[test]
    fn measure_chooses_per_shape_what_it_timed_fastest() {
        let shape = (416, 256);
        let optimise = |choices: &[KernelChoice]| fp32_products(choices).2;
        let (m, file, _) = fp32_products(&[]);
        let picked = optimise(&[]);
        let kernels = candidates(Precision::Fp32);
        let settings = TuneSettings {
            precision: Precision::Fp32,
            shape,
            kernels: Kernels::Edgesieve,
            candidates: kernels[..2].to_vec(),
            runs: 1,
            rounds: 1,
        };
        let measured = measure(&m, &file, &settings).unwrap();
        assert_eq!(
            measured.rows.iter().map(|r| r.products).sum::<usize>(),
            picked.len()
        );
        for r in &measured.rows {
            let tract = &picked.iter().find(|p| p.shape == r.shape).unwrap().kernel;
            assert_eq!(&r.tract.0, tract);
            assert!(r.best.1 <= r.tract.1 && r.best.1 > 0.0, "{r:?}");
            let chosen = measured.choices.iter().find(|c| c.shape == Some(r.shape));
            match chosen {
                Some(c) => {
                    assert_eq!(c.kernel, r.best.0);
                    assert!(settings.candidates.contains(&c.kernel), "{c:?}");
                }
                None => assert_eq!(&r.best.0, tract),
            }
        }
        let (pick_ms, best_ms) = measured.totals();
        assert!(best_ms <= pick_ms);
        for p in optimise(&measured.choices) {
            if let Some(c) = measured.choices.iter().find(|c| c.shape == Some(p.shape)) {
                assert_eq!(p.kernel, c.kernel, "{:?}", p.shape);
            }
        }
    }

    /// The key tells apart what a plan depends on.
    #[test]
    fn the_key_names_what_the_plan_was_measured_for() {
        let p = Path::new("models/yolox_nano.toml");
        let a = plan_key(p, Precision::Fp32, (416, 256), Kernels::Edgesieve);
        assert!(
            a.contains("input 416x256") && a.contains("precision fp32"),
            "{a}"
        );
        for b in [
            plan_key(p, Precision::Int8, (416, 256), Kernels::Edgesieve),
            plan_key(p, Precision::Fp32, (416, 416), Kernels::Edgesieve),
            plan_key(p, Precision::Fp32, (416, 256), Kernels::Tract),
            plan_key(
                Path::new("Cargo.toml"),
                Precision::Fp32,
                (416, 256),
                Kernels::Edgesieve,
            ),
        ] {
            assert_ne!(a, b);
            assert_ne!(plan_path(Path::new("d"), &a), plan_path(Path::new("d"), &b));
        }
    }
}
