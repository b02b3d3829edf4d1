//! The detector stage: loads a model its manifest describes with tract, checks it fits, and turns
//! a frame into detections (and, when the manifest names one, a pooled feature embedding read
//! from the same inference).

use crate::detect::depthwise;
use crate::detect::half;
pub use crate::detect::half::native_f16;
use crate::detect::manifest::{Manifest, ManifestError, Precision};
use crate::detect::maxpool;
use crate::detect::nnef;
use crate::detect::optimise;
use crate::detect::postprocess::{Detections, PostprocessOptions, YoloxDecoder};
use crate::detect::preprocess::{Letterbox, PreprocessError, Preprocessor};
use crate::detect::rewrite;
use crate::detect::stem;
#[cfg(feature = "onnx")]
use crate::detect::symbolic;
use crate::detect::tune::{self, KernelChoice};
use crate::detect::Kernels;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_core::ops::einsum::kernel_selection::with_kernel_choices;
use tract_core::prelude::*;
use tract_core::runtime::RunOptions;
#[cfg(feature = "multithread")]
use tract_linalg::multithread::Executor;
#[cfg(feature = "onnx")]
use tract_onnx::prelude::{InferenceFact, InferenceModel, InferenceModelExt};

#[derive(Debug)]
pub enum DetectorError {
    Manifest(ManifestError),
    /// The model file is missing; says how to get it.
    MissingModel {
        path: PathBuf,
    },
    /// tract could not read or optimise the model.
    Load {
        path: PathBuf,
        message: String,
    },
    /// The NNEF form of a model could not be written (`edgesieve convert`).
    Convert {
        path: PathBuf,
        message: String,
    },
    /// The model does not fit its manifest.
    Mismatch {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
    Preprocess(PreprocessError),
    Inference {
        message: String,
    },
}

impl fmt::Display for DetectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectorError::Manifest(e) => e.fmt(f),
            DetectorError::MissingModel { path } => write!(
                f,
                "model file {} not found: run models/fetch to fetch and quantize it",
                path.display()
            ),
            DetectorError::Load { path, message } => {
                write!(f, "cannot load model {}: {message}", path.display())
            }
            DetectorError::Convert { path, message } => {
                write!(f, "cannot write NNEF model {}: {message}", path.display())
            }
            DetectorError::Mismatch {
                path,
                what,
                expected,
                found,
            } => write!(
                f,
                "model {} does not fit its manifest: {what} expected {expected}, found {found}",
                path.display()
            ),
            DetectorError::Preprocess(e) => write!(f, "preprocess: {e}"),
            DetectorError::Inference { message } => write!(f, "inference failed: {message}"),
        }
    }
}

impl std::error::Error for DetectorError {}

impl From<ManifestError> for DetectorError {
    fn from(e: ManifestError) -> Self {
        DetectorError::Manifest(e)
    }
}

#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub precision: Precision,
    /// Run this model file (ONNX, or NNEF: `.nnef.tar`) instead of the manifest's (it must still
    /// fit the manifest).
    pub model_file: Option<PathBuf>,
    /// Threads for tract's matrix kernels; 1 keeps the detector on one core.
    pub threads: usize,
    pub postprocess: PostprocessOptions,
    /// The frame size the model input is shaped for (see [`input_shape_for`]); None runs the
    /// manifest's input size as it is (a square for YOLOX), letterboxing every frame into it.
    pub fit_frame: Option<(u32, u32)>,
    /// Whose kernels run the convolutions tract is slow at (`detector.kernels`).
    pub kernels: Kernels,
    /// `detector.matmul_kernel`: a kernel's name, "tract" (tract's pick), or None: the plan
    /// `edgesieve tune` measured on this machine for this model, shape, precision and kernels
    /// when `tuning_dir` holds one ([`tune`]), else tract's pick.
    pub matmul_kernel: Option<String>,
    /// Where kernel plans are (`detector.tuning_dir`); None: no plan is read.
    pub tuning_dir: Option<PathBuf>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            precision: Precision::Auto,
            model_file: None,
            threads: 1,
            postprocess: PostprocessOptions::default(),
            fit_frame: None,
            kernels: Kernels::Edgesieve,
            matmul_kernel: None,
            tuning_dir: None,
        }
    }
}

/// The matrix kernels `options` choose for the model at `path`, run at `precision` on inputs of
/// `shape`: see [`DetectorOptions::matmul_kernel`]. A plan that cannot be read is logged and
/// left: tract's pick computes the same detections.
pub fn kernel_choices(
    options: &DetectorOptions,
    path: &Path,
    shape: (u32, u32),
    precision: Precision,
) -> Vec<KernelChoice> {
    resolve_kernels(options, path, shape, precision).0
}

/// [`kernel_choices`], and the plan that was looked for and not found (or not readable), when
/// one was.
fn resolve_kernels(
    options: &DetectorOptions,
    path: &Path,
    shape: (u32, u32),
    precision: Precision,
) -> (Vec<KernelChoice>, Option<tune::PlanWanted>) {
    let dir = match (options.matmul_kernel.as_deref(), &options.tuning_dir) {
        (Some(TRACT_PICK), _) | (None, None) => return (Vec::new(), None),
        (Some(k), _) => {
            let one = KernelChoice {
                shape: None,
                kernel: k.to_string(),
            };
            return (vec![one], None);
        }
        (None, Some(dir)) => dir,
    };
    let key = tune::plan_key(path, precision, shape, options.kernels);
    match tune::read_plan(dir, &key) {
        Ok(Some(plan)) => {
            log::info!(
                "matrix kernels: the plan measured here ({}), {} product shape(s) off tract's \
                 pick",
                tune::plan_path(dir, &key).display(),
                plan.len()
            );
            return (plan, None);
        }
        Ok(None) => log::debug!(
            "matrix kernels: tract's pick (no plan in {} for this model and machine; edgesieve \
             tune measures one)",
            dir.display()
        ),
        Err(e) => log::warn!(
            "{}; running tract's pick (edgesieve tune writes a new plan)",
            crate::util::error_chain(&e)
        ),
    }
    let wanted = tune::PlanWanted::new(dir, key, path, precision, shape, options.kernels);
    (Vec::new(), Some(wanted))
}

/// `detector.matmul_kernel = "tract"`: tract's pick, whatever plan there is.
pub const TRACT_PICK: &str = "tract";

/// The matrix kernels tract-linalg runs on this machine, by name, sorted: what
/// `detector.matmul_kernel` may name.
pub fn matmul_kernels() -> Vec<String> {
    matmul_kernels_where(|_| true)
}

/// The names of the matrix kernels tract-linalg runs on this machine that `keep`, sorted, once
/// each.
pub fn matmul_kernels_where(
    keep: impl Fn(&dyn tract_linalg::mmm::MatMatMul) -> bool,
) -> Vec<String> {
    let mut names: Vec<String> = tract_linalg::MmmDispatch::native()
        .runnable()
        .iter()
        .filter(|k| keep(k.as_ref()))
        .map(|k| k.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The model input `Detector::load` shapes the model for: the manifest's input, or the fit
/// shape for `fit_frame` ([`input_shape_for`]).
pub fn model_input(manifest: &Manifest, fit_frame: Option<(u32, u32)>) -> (u32, u32) {
    fit_frame.map_or((manifest.input.width, manifest.input.height), |f| {
        input_shape_for(manifest, f)
    })
}

/// The model input for frames of `frame` (width, height): the frame scaled to fit the manifest's
/// input, each side plus half the largest stride rounded up to that stride, no larger than the
/// manifest's. A 640x360 frame into YOLOX's 416x416 gives 416x256 (234 rows of picture and 22 of
/// pad, not 182): a fully convolutional detector runs the same weights on 38% fewer cells.
pub fn input_shape_for(manifest: &Manifest, frame: (u32, u32)) -> (u32, u32) {
    let (max_w, max_h) = (manifest.input.width, manifest.input.height);
    let stride = manifest.largest_stride();
    let lb = Letterbox::new(frame.0.max(1), frame.1.max(1), max_w, max_h);
    // At least half a stride of padding past the picture: YOLOX was trained on letterboxed
    // frames, and with only KITTI's 3 rows of pad (125 rows of picture in 128) its car recall
    // fell from 0.598 to 0.574; with 35 rows (416x160) it is 0.589.
    let margin = stride / 2;
    let round =
        |v: u32, max: u32| ((v + margin).div_ceil(stride) * stride).clamp(stride.min(max), max);
    (
        round(lb.resized_width, max_w),
        round(lb.resized_height, max_h),
    )
}

type Plan = Arc<TypedRunnableModel>;

pub struct Detector {
    manifest: Manifest,
    model_path: PathBuf,
    /// What runs (`Auto` resolved).
    precision: Precision,
    state: TypedSimpleState,
    /// The input tensor, handed to tract by reference count and written in place when tract has
    /// let go of it, so frames do not allocate a new one.
    input: Arc<Tensor>,
    preprocessor: Preprocessor,
    decoder: YoloxDecoder,
    letterbox: Letterbox,
    outputs: TVec<TValue>,
    embedding: Vec<f32>,
    has_embedding: bool,
    /// The kernel plan it looked for and did not find.
    plan_wanted: Option<tune::PlanWanted>,
}

impl Detector {
    /// Loads the model of `manifest` at the chosen precision.
    pub fn load(manifest: Manifest, options: &DetectorOptions) -> Result<Detector, DetectorError> {
        let precision = options.precision.resolved();
        let path = model_file_for(&manifest, options)?;
        let shape = model_input(&manifest, options.fit_frame);
        let (plan, plan_wanted) = build_plan(&manifest, &path, shape, options, precision)?;
        // From here on the manifest describes the input the model was specialised for.
        let mut manifest = manifest;
        (manifest.input.width, manifest.input.height) = shape;
        let state = plan.spawn().map_err(|e| load_err(&path, e))?;
        let input = Tensor::zero::<f32>(&[
            1,
            3,
            manifest.input.height as usize,
            manifest.input.width as usize,
        ])
        .map_err(|e| load_err(&path, e))?;
        let decoder = YoloxDecoder::new(
            manifest.input.width,
            manifest.input.height,
            &manifest.output.strides,
            manifest.num_classes(),
            options.postprocess,
        );
        let channels = manifest.embedding.as_ref().map_or(0, |e| e.channels);
        Ok(Detector {
            preprocessor: Preprocessor::new(manifest.input.clone()),
            letterbox: Letterbox::new(1, 1, manifest.input.width, manifest.input.height),
            has_embedding: manifest.embedding.is_some(),
            embedding: vec![0.0; channels],
            manifest,
            model_path: path,
            precision,
            state,
            input: Arc::new(input),
            decoder,
            outputs: TVec::new(),
            plan_wanted,
        })
    }

    /// The kernel plan this detector looked for and did not find (or could not read), when
    /// `detector.matmul_kernel` is unset and there is a tuning folder: what
    /// [`tune::measure_in_background`] measures.
    pub fn plan_wanted(&self) -> Option<&tune::PlanWanted> {
        self.plan_wanted.as_ref()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The precision that runs (`auto` resolved for this machine).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Letterboxes an RGB8 frame into the model input.
    pub fn preprocess(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<(), DetectorError> {
        let input = match Arc::get_mut(&mut self.input) {
            Some(t) => t,
            None => {
                // tract still holds the last input: fall back to a fresh tensor (not expected).
                let fresh = Tensor::zero::<f32>(self.input.shape())
                    .map_err(|e| inference_err("input tensor", e))?;
                self.input = Arc::new(fresh);
                Arc::get_mut(&mut self.input).expect("fresh Arc is unique")
            }
        };
        let mut view = input
            .try_as_plain_ram_mut()
            .map_err(|e| inference_err("input tensor", e))?;
        let buf = view
            .as_slice_mut::<f32>()
            .map_err(|e| inference_err("input tensor", e))?;
        self.letterbox = self
            .preprocessor
            .run(rgb, width, height, buf)
            .map_err(DetectorError::Preprocess)?;
        Ok(())
    }

    /// Runs the model on the prepared input.
    pub fn infer(&mut self) -> Result<(), DetectorError> {
        self.outputs.clear();
        let input = TValue::from_const(self.input.clone());
        self.outputs = self
            .state
            .run(tvec!(input))
            .map_err(|e| inference_err("run", e))?;
        Ok(())
    }

    /// Decodes the last inference into `out` and pools the embedding.
    pub fn postprocess(&mut self, out: &mut Detections) -> Result<(), DetectorError> {
        let raw = self
            .outputs
            .first()
            .ok_or_else(|| inference_err("postprocess", "no inference ran"))?;
        let raw = raw
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|e| inference_err("detection output", e))?;
        self.decoder.decode(raw, &self.letterbox, out);
        if self.has_embedding {
            let fmap = self
                .outputs
                .get(1)
                .ok_or_else(|| inference_err("embedding", "missing output"))?;
            let shape = fmap.shape();
            let (h, w) = match shape {
                [1, _, h, w] => (*h, *w),
                _ => return Err(inference_err("embedding output", "not 1xCxHxW")),
            };
            let data = fmap
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| inference_err("embedding output", e))?;
            let input = &self.manifest.input;
            let picture = PictureCells::new(&self.letterbox, (input.width, input.height), (w, h));
            picture_pool(data, (h, w), picture, &mut self.embedding);
        }
        Ok(())
    }

    /// preprocess + infer + postprocess.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Detections,
    ) -> Result<(), DetectorError> {
        self.preprocess(rgb, width, height)?;
        self.infer()?;
        self.postprocess(out)
    }

    /// The feature map of the last frame, averaged over its spatial positions (one value per
    /// channel); None when the manifest names no embedding tensor.
    pub fn embedding(&self) -> Option<&[f32]> {
        self.has_embedding.then_some(&self.embedding[..])
    }
}

/// The cells of a feature map (`rows` × `cols` from its top-left corner) that cover the picture
/// of a letterboxed frame: a cell of an `H`×`W` map over a `input_w`×`input_h` input counts when
/// it overlaps the resized frame (`ceil(resized_h · H / input_h)` rows, likewise columns). The
/// letterbox padding is the same grey in every frame: pooled in, it would dilute what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureCells {
    pub rows: usize,
    pub cols: usize,
}

impl PictureCells {
    pub fn new(lb: &Letterbox, input: (u32, u32), map: (usize, usize)) -> Self {
        let (input_w, input_h) = (input.0.max(1) as usize, input.1.max(1) as usize);
        let (map_w, map_h) = map;
        let cover = |resized: u32, cells: usize, size: usize| {
            ((resized as usize * cells).div_ceil(size)).clamp(1, cells.max(1))
        };
        PictureCells {
            rows: cover(lb.resized_height, map_h, input_h),
            cols: cover(lb.resized_width, map_w, input_w),
        }
    }
}

/// Averages an NCHW (N=1) map of `(H, W)` cells over the `picture` cells into `out` (C values).
fn picture_pool(data: &[f32], map: (usize, usize), picture: PictureCells, out: &mut [f32]) {
    let (h, w) = map;
    let channels = out.len();
    if channels == 0 || h * w == 0 || data.len() != channels * h * w {
        out.fill(0.0);
        return;
    }
    let (rows, cols) = (picture.rows.min(h), picture.cols.min(w));
    let inv = 1.0 / (rows * cols) as f32;
    for (o, plane) in out.iter_mut().zip(data.chunks_exact(h * w)) {
        let sum: f32 = plane
            .chunks_exact(w)
            .take(rows)
            .map(|row| row[..cols].iter().sum::<f32>())
            .sum();
        *o = sum * inv;
    }
}

pub(crate) fn load_err(path: &Path, e: impl fmt::Display) -> DetectorError {
    DetectorError::Load {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    }
}

fn inference_err(what: &str, e: impl fmt::Display) -> DetectorError {
    DetectorError::Inference {
        message: format!("{what}: {e:#}"),
    }
}

fn mismatch(path: &Path, what: &str, expected: String, found: String) -> DetectorError {
    DetectorError::Mismatch {
        path: path.to_path_buf(),
        what: what.into(),
        expected,
        found,
    }
}

/// The model file `Detector::load` runs for `options`: `options.model_file`, else the manifest's
/// for the precision `options` resolve to (its NNEF file, else its ONNX one; see
/// `model_file`); an error when it is not there.
pub fn model_file_for(
    manifest: &Manifest,
    options: &DetectorOptions,
) -> Result<PathBuf, DetectorError> {
    let path = match &options.model_file {
        Some(p) => p.clone(),
        None => model_file(manifest, options.precision.resolved())?,
    };
    if !path.is_file() {
        return Err(DetectorError::MissingModel { path });
    }
    Ok(path)
}

/// The model file the manifest names for `precision`: its NNEF file (`fp32_nnef`/`int8_nnef`,
/// written by `edgesieve convert` from the ONNX one) when present. A build with the `onnx`
/// feature falls back to the ONNX file when the NNEF file is missing or older than it (a
/// re-quantized model not yet converted); without the feature NNEF is the only choice. f16 loads
/// its own file (`f16_nnef`) when there is one, else the fp32 file, which it translates.
fn model_file(manifest: &Manifest, precision: Precision) -> Result<PathBuf, DetectorError> {
    let mut nnef = manifest.nnef_path(precision)?;
    // f16 without a file of its own (not named, or not converted yet) translates the fp32 one.
    if precision == Precision::F16 && !nnef.as_deref().is_some_and(Path::is_file) {
        if let Some(missing) = &nnef {
            log::warn!(
                "{} is missing: f16 translates the fp32 model at load instead, in more \
                 instructions (models/fetch converts it)",
                missing.display()
            );
        }
        nnef = manifest.nnef_path(Precision::Fp32)?;
    }
    #[cfg(feature = "onnx")]
    {
        let onnx = manifest.model_path(precision)?;
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match nnef {
            Some(nnef) if nnef.is_file() => match (modified(&nnef), modified(&onnx)) {
                (Some(n), Some(o)) if n < o => {
                    log::warn!(
                        "{} is older than {}: loading the ONNX file (models/fetch converts it)",
                        nnef.display(),
                        onnx.display()
                    );
                    Ok(onnx)
                }
                _ => Ok(nnef),
            },
            _ => Ok(onnx),
        }
    }
    #[cfg(not(feature = "onnx"))]
    {
        nnef.ok_or_else(|| DetectorError::Load {
            path: manifest.dir.clone(),
            message: format!(
                "the manifest names no {precision} NNEF file and this build reads no ONNX \
                 (feature onnx)"
            ),
        })
    }
}

/// Parses, checks and optimises the model for an input of `shape` (width, height), then makes
/// it runnable on `threads` threads.
fn build_plan(
    manifest: &Manifest,
    path: &Path,
    shape: (u32, u32),
    options: &DetectorOptions,
    precision: Precision,
) -> Result<(Plan, Option<tune::PlanWanted>), DetectorError> {
    let threads = options.threads;
    let (choices, wanted) = resolve_kernels(options, path, shape, precision);
    let typed = optimized_model(manifest, path, shape, precision, options.kernels, &choices)?;
    #[allow(unused_mut)]
    let mut options = RunOptions::default();
    if threads > 1 {
        #[cfg(feature = "multithread")]
        {
            options.executor = Some(Executor::multithread(threads));
        }
        #[cfg(not(feature = "multithread"))]
        return Err(load_err(
            path,
            format!("{threads} threads asked for, but this build has no multithread feature"),
        ));
    }
    let plan = typed
        .into_runnable_with_options(&options)
        .map_err(|e| load_err(path, e))?;
    Ok((plan, wanted))
}

/// The model file at `path` (ONNX, or NNEF when its name ends in `.nnef.tar`) as the detector
/// runs it: parsed, checked against `manifest` (input, outputs, classes, embedding tensor),
/// specialised for an input of `shape` (width, height), given `kernels`' kernels and optimised by
/// tract, its matrix products on the first of `choices` that fits each ([`kernel_choices`];
/// none: tract's pick). For tools that look inside it (examples/kernels.rs) and [`tune`].
pub fn optimized_model(
    manifest: &Manifest,
    path: &Path,
    shape: (u32, u32),
    precision: Precision,
    kernels: Kernels,
    choices: &[KernelChoice],
) -> Result<TypedModel, DetectorError> {
    let optimise =
        || optimized_model_with(manifest, path, shape, precision, kernels, Declutter::AsRead);
    with_kernel_choices(choices, optimise)
}

/// How much of tract's declutter a model gets before code generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Declutter {
    /// What its format needs: an NNEF file we wrote only what reading it back left
    /// ([`optimise::read_back`]), an ONNX file all of it.
    AsRead,
    /// All of it, whatever the format (the test that the two give the same model).
    #[cfg_attr(not(test), allow(dead_code))]
    Full,
}

fn optimized_model_with(
    manifest: &Manifest,
    path: &Path,
    shape: (u32, u32),
    precision: Precision,
    kernels: Kernels,
    declutter: Declutter,
) -> Result<TypedModel, DetectorError> {
    tract_defaults();
    let started = std::time::Instant::now();
    let is_nnef = nnef::is_nnef(path);
    let read_back = is_nnef && declutter == Declutter::AsRead;
    let model = if is_nnef {
        nnef_model(manifest, path, shape)?
    } else {
        onnx_typed_model(manifest, path, shape)?
    };
    let parsed = started.elapsed();
    let mut model = model;
    let cascaded = rewrite::cascade_max_pools(&mut model).map_err(|e| load_err(path, e))?;
    log::debug!(
        "model {}: {cascaded} max-pools cascaded (SPPF)",
        path.display()
    );
    // tract's errors while rewriting and optimising, with their chain.
    let failed = |e: TractError| load_err(path, format!("{e:#}"));
    // A file `edgesieve convert --precision f16` wrote is translated already (and its max-pools
    // cascaded): it runs as f16 only.
    let half_file = nnef::is_half(&model);
    if half_file && precision != Precision::F16 {
        return Err(load_err(
            path,
            format!(
                "computes in f16 (written by edgesieve convert --precision f16): it runs with \
                 detector.precision f16, not {precision}"
            ),
        ));
    }
    if precision == Precision::F16 {
        if half_file {
            log::debug!("model {}: computes in f16 as written", path.display());
        } else {
            let nodes = half::to_half(&mut model).map_err(failed)?;
            log::debug!("model {}: {nodes} nodes compute in f16", path.display());
        }
        if !half::native_f16() {
            log::warn!(
                "detector.precision f16: this core has no half-precision arithmetic as tract \
                 sees it (aarch64 FEAT_FP16); f16 runs emulated here, several times slower than \
                 fp32 (TRACT_CPU_ISA=+fp16 forces it where /proc/cpuinfo hides it)"
            );
        }
    }
    let (mut depthwise, mut stems, mut pools) = (0, 0, 0);
    if kernels == Kernels::Edgesieve {
        depthwise = depthwise::use_depthwise(&mut model, false).map_err(failed)?;
        stems = stem::use_direct_stem(&mut model, false).map_err(failed)?;
        pools = maxpool::use_separable_max_pools(&mut model).map_err(failed)?;
    }
    log::debug!(
        "model {}: {depthwise} depthwise convolutions vectorised, {stems} 3x3 \
         convolutions direct, {pools} max-pools separable",
        path.display()
    );
    let mut typed = if read_back {
        optimise::read_back(model)
    } else {
        model.into_optimized()
    }
    .map_err(failed)?;
    if precision == Precision::F16 {
        half::fast_casts(&mut typed).map_err(failed)?;
        half::fast_silu(&mut typed).map_err(failed)?;
    }
    log::debug!(
        "model {}: parsed in {:.0} ms, specialised for {}x{} and optimised in {:.0} ms",
        path.display(),
        parsed.as_secs_f64() * 1e3,
        shape.0,
        shape.1,
        (started.elapsed() - parsed).as_secs_f64() * 1e3
    );

    // Output shapes, now that every shape is known.
    let anchors = manifest.anchor_count_for(shape);
    let row = 5 + manifest.num_classes();
    let out_shape = typed
        .output_fact(0)
        .map_err(|e| load_err(path, e))?
        .shape
        .as_concrete()
        .map(|s| s.to_vec());
    if out_shape.as_deref() != Some(&[1, anchors, row][..]) {
        return Err(mismatch(
            path,
            "output shape",
            format!(
                "[1, {anchors}, {row}] ({} classes, strides {:?})",
                manifest.num_classes(),
                manifest.output.strides
            ),
            format!("{out_shape:?}"),
        ));
    }
    if let Some(emb) = &manifest.embedding {
        let fact = typed.output_fact(1).map_err(|e| load_err(path, e))?;
        let channels = fact.shape.as_concrete().and_then(|s| s.get(1).copied());
        if fact.shape.rank() != 4
            || channels != Some(emb.channels)
            || fact.datum_type != f32::datum_type()
        {
            return Err(mismatch(
                path,
                "embedding tensor",
                format!("{} as 1x{}xHxW f32", emb.tensor, emb.channels),
                format!("{:?} {:?}", fact.shape, fact.datum_type),
            ));
        }
    }

    Ok(typed)
}

/// tract settings (its "knobs") that are faster for this detector than tract's defaults, set
/// once per process below the environment, so `TRACT_*` variables still override them:
///
/// - `TRACT_DISABLE_DIRECT_SPATIAL=true`: tract runs the stem convolution (12 channels in, 3x3,
///   an output row of 208) as a direct spatial convolution; im2col and a matrix product run it in
///   fewer instructions. aarch64 (`qemu-aarch64 -cpu neoverse-n1`, qemu-insncount, 416x256):
///   244 M -> 227 M per frame (fp32), 242 M -> 225 M (int8); x86_64 AVX2 (qemu-x86_64): 228 M
///   -> 220 M; AVX-512: the same time.
fn tract_defaults() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = tract_core::knobs::set_config_global("TRACT_DISABLE_DIRECT_SPATIAL", "true")
        {
            log::warn!("tract setting TRACT_DISABLE_DIRECT_SPATIAL not applied: {e:#}");
        }
    });
}

/// The ONNX file at `path`, checked, specialised for `shape` (width, height) and typed.
#[cfg(feature = "onnx")]
fn onnx_typed_model(
    manifest: &Manifest,
    path: &Path,
    shape: (u32, u32),
) -> Result<TypedModel, DetectorError> {
    onnx_model(manifest, path, Some((shape.1 as usize, shape.0 as usize)))?
        .into_typed()
        .map_err(|e| load_err(path, format!("{e:#}")))
}

#[cfg(not(feature = "onnx"))]
fn onnx_typed_model(
    _manifest: &Manifest,
    path: &Path,
    _shape: (u32, u32),
) -> Result<TypedModel, DetectorError> {
    Err(load_err(
        path,
        "this build reads NNEF only (no onnx feature): run models/fetch to convert the model, \
         and name the .nnef.tar file",
    ))
}

/// The ONNX file at `path`, checked against `manifest` (input name and declared shape, output
/// tensors), its input set to 1x3x`hw` (height, width), or 1x3xhxw with the symbols of
/// [`nnef::HEIGHT_SYMBOL`] and [`nnef::WIDTH_SYMBOL`] when `hw` is None, and its outputs reduced
/// to the detections and the embedding tensor.
#[cfg(feature = "onnx")]
pub(crate) fn onnx_model(
    manifest: &Manifest,
    path: &Path,
    hw: Option<(usize, usize)>,
) -> Result<InferenceModel, DetectorError> {
    // The file's intermediate shapes (value_info) are those of its declared input: ignored, so
    // the graph can be specialised for another input size; every shape is inferred anew.
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(|e| load_err(path, e))?;

    // Input: name and, where the file states it, shape must be what the manifest says.
    let (h, w) = (
        manifest.input.height as usize,
        manifest.input.width as usize,
    );
    let expected_input = format!("{} [1, 3, {h}, {w}] f32", manifest.input.name);
    let input_outlet = model.input_outlets().map_err(|e| load_err(path, e))?[0];
    let input_name = model.node(input_outlet.node).name.clone();
    if model.input_outlets().map_err(|e| load_err(path, e))?.len() != 1
        || input_name != manifest.input.name
    {
        return Err(mismatch(
            path,
            "input",
            expected_input,
            format!("{input_name} (of {} inputs)", model.inputs.len()),
        ));
    }
    let declared = model.input_fact(0).map_err(|e| load_err(path, e))?.clone();
    if let Some(shape) = declared.shape.as_concrete_finite().ok().flatten() {
        if shape.as_ref() != [1, 3, h, w] {
            return Err(mismatch(
                path,
                "input shape",
                format!("[1, 3, {h}, {w}]"),
                format!("{shape:?}"),
            ));
        }
    }
    let (in_h, in_w): (TDim, TDim) = match hw {
        Some((h, w)) => (h.into(), w.into()),
        None => {
            // Symbolic: counted in cells of the largest stride (every input shape is a multiple
            // of it), so that halving the input (YOLOX's Focus) and the strided convs give
            // whole multiples of a symbol, which tract can equate across branches.
            let cell = TDim::from(manifest.largest_stride() as i64);
            // Positive: lets tract reduce (16·h + 7) / 8 to 2·h (a strided conv's output).
            for sym in [nnef::HEIGHT_SYMBOL, nnef::WIDTH_SYMBOL] {
                model
                    .symbols
                    .add_assertion(format!("{sym}>=1"))
                    .map_err(|e| load_err(path, e))?;
            }
            let dims = (
                cell.clone() * TDim::from(model.symbols.sym(nnef::HEIGHT_SYMBOL)),
                cell * TDim::from(model.symbols.sym(nnef::WIDTH_SYMBOL)),
            );
            symbolic::rewrite(&mut model, path, &dims)
                .map_err(|e| load_err(path, format!("{e:#}")))?;
            dims
        }
    };
    model
        .set_input_fact(0, f32::fact([1.into(), 3.into(), in_h, in_w]).into())
        .map_err(|e| load_err(path, e))?;
    // The declared output shape pins the anchors of the declared input; inferred instead.
    for i in 0..model.outputs.len() {
        model
            .set_output_fact(i, InferenceFact::default())
            .map_err(|e| load_err(path, e))?;
    }

    let mut outputs = vec![manifest.output.name.clone()];
    if let Some(emb) = &manifest.embedding {
        outputs.push(emb.tensor.clone());
    }
    model.select_outputs_by_name(&outputs).map_err(|e| {
        mismatch(
            path,
            "outputs",
            format!("tensors {outputs:?}"),
            format!("not all present ({e})"),
        )
    })?;
    Ok(model)
}

/// The NNEF file at `path` (written by [`nnef::convert`]), checked against `manifest` (one input
/// of 1x3xHxW, as many outputs as the manifest names) and specialised for `shape` (width,
/// height): its height and width symbols bound to the shape (in cells of the largest stride) as
/// the graph is read, or, where the file has numbers, those numbers checked.
fn nnef_model(
    manifest: &Manifest,
    path: &Path,
    shape: (u32, u32),
) -> Result<TypedModel, DetectorError> {
    let started = std::time::Instant::now();
    let (h, w) = (shape.1 as i64, shape.0 as i64);
    let cell = manifest.largest_stride() as i64;
    if h % cell != 0 || w % cell != 0 {
        return Err(mismatch(
            path,
            "input shape",
            format!("a multiple of {cell}"),
            format!("{w}x{h}"),
        ));
    }
    // The file's height and width symbols are bound before the graph is read, so it is built
    // with concrete shapes: no shape arithmetic on symbols, no second pass to bind them.
    let framework = nnef::framework()
        .with_bound_symbol(nnef::HEIGHT_SYMBOL, h / cell)
        .with_bound_symbol(nnef::WIDTH_SYMBOL, w / cell);
    let model = framework.model_for_path(path).map_err(|e| {
        let e = format!("{e:#}");
        let hint = if e.contains("No definition for operator") {
            " (the detector's NNEF reader knows the ops of the shipped detectors only: \
             src/detect/nnef.rs, framework)"
        } else {
            ""
        };
        load_err(path, format!("{e}{hint}"))
    })?;
    log::debug!(
        "model {}: NNEF read in {:.0} ms",
        path.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let expected_input = format!("{} [1, 3, {h}, {w}] f32", manifest.input.name);
    let input = model.input_outlets().map_err(|e| load_err(path, e))?;
    let fact = model.input_fact(0).map_err(|e| load_err(path, e))?;
    let dims = fact.shape.dims();
    let fits = |d: &TDim, want: i64| d.to_i64().is_ok_and(|v| v == want);
    if input.len() != 1
        || model.node(input[0].node).name != manifest.input.name
        || fact.datum_type != f32::datum_type()
        || dims.len() != 4
        || dims[0] != 1.into()
        || dims[1] != 3.into()
        || !fits(&dims[2], h)
        || !fits(&dims[3], w)
    {
        return Err(mismatch(
            path,
            "input",
            expected_input,
            format!(
                "{} {:?} {:?} (of {} inputs)",
                model.node(input[0].node).name,
                fact.shape,
                fact.datum_type,
                input.len()
            ),
        ));
    }
    let declared = model
        .properties
        .get(nnef::DECLARED_INPUT_HW)
        .and_then(|t| t.cast_to::<i64>().ok().map(|t| t.into_owned()))
        .and_then(|t| {
            t.try_as_plain_ram()
                .ok()?
                .as_slice::<i64>()
                .ok()
                .map(<[i64]>::to_vec)
        });
    let (mh, mw) = (manifest.input.height as i64, manifest.input.width as i64);
    if let Some([dh, dw]) = declared.as_deref() {
        if (*dh, *dw) != (mh, mw) {
            return Err(mismatch(
                path,
                "input shape",
                format!("[1, 3, {mh}, {mw}]"),
                format!("[1, 3, {dh}, {dw}] (as its ONNX file declared it)"),
            ));
        }
    }
    let layout = nnef::string_property(&model, nnef::LAYOUT_PROPERTY);
    if layout.as_deref() != Some(nnef::LAYOUT) {
        log::warn!(
            "model {}: written by an older edgesieve convert (layout {}, now {}): it loads the \
             same detector, in more instructions; models/fetch rebuilds it",
            path.display(),
            layout.as_deref().unwrap_or("unnamed"),
            nnef::LAYOUT
        );
    }
    let wanted = 1 + manifest.embedding.is_some() as usize;
    if model.outputs.len() != wanted {
        return Err(mismatch(
            path,
            "outputs",
            format!("{wanted} (detections, then the embedding tensor)"),
            model.outputs.len().to_string(),
        ));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_pool_averages_the_cells_over_the_picture() {
        // 2 channels of a 2x3 map; the picture covers 1 row and 2 columns.
        let data = [
            1.0, 3.0, 100.0, 100.0, 100.0, 100.0, 10.0, 20.0, 100.0, 100.0, 100.0, 100.0,
        ];
        let mut out = [0.0; 2];
        picture_pool(&data, (2, 3), PictureCells { rows: 1, cols: 2 }, &mut out);
        assert_eq!(out, [2.0, 15.0]);
        picture_pool(&data, (2, 3), PictureCells { rows: 9, cols: 9 }, &mut out);
        assert!((out[0] - 404.0 / 6.0).abs() < 1e-4 && (out[1] - 430.0 / 6.0).abs() < 1e-4);
        // A map that does not match the channel count pools to zeros, not a panic.
        picture_pool(
            &data[..5],
            (2, 3),
            PictureCells { rows: 1, cols: 1 },
            &mut out,
        );
        assert_eq!(out, [0.0, 0.0]);
    }

    /// What a test can compare of an optimised model, node by node: op, its parameters as tract
    /// describes them, inputs and output facts (not names, which the two paths choose apart).
    fn graph_signature(model: &TypedModel) -> Vec<String> {
        model
            .nodes
            .iter()
            .map(|n| {
                let facts: Vec<String> =
                    n.outputs.iter().map(|o| format!("{:?}", o.fact)).collect();
                format!(
                    "{} {} {:?} {:?} {facts:?}",
                    n.id,
                    n.op.name(),
                    n.op.info().unwrap_or_default(),
                    n.inputs
                )
            })
            .collect()
    }

    /// `detector.kernels = "tract"` leaves every op tract's; the default puts ours in where this
    /// machine runs them (the max-pools everywhere; the stem and depthwise ones on x86_64 with
    /// AVX2 and FMA, the stride-2 depthwise ones on aarch64).
    #[test]
    fn kernels_tract_leaves_tracts_ops() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let m = Manifest::load(Path::new(path)).unwrap();
        let file = m.nnef_path(Precision::Fp32).unwrap().unwrap();
        let ours = ["Depthwise3x3", "Conv3x3", "SeparableMaxPool"];
        let count = |kernels| {
            let model =
                optimized_model(&m, &file, (416, 256), Precision::Fp32, kernels, &[]).unwrap();
            ours.map(|name| {
                model
                    .nodes()
                    .iter()
                    .filter(|n| n.op().name() == name)
                    .count()
            })
        };
        assert_eq!(count(Kernels::Tract), [0, 0, 0]);
        let [depthwise, stem, pools] = count(Kernels::Edgesieve);
        assert_eq!(pools, 3);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
        {
            assert_eq!((depthwise, stem), (30, 1));
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!((depthwise, stem), (6, 0));
        let _ = (depthwise, stem);
    }

    /// `detector.matmul_kernel` runs the named kernel on every matrix product it fits (all but
    /// the matrix-vector ones, which keep tract's pick) and the detector finds on a real frame
    /// what it finds with tract's pick (another tile sums in another order: scores within 1e-3).
    #[test]
    fn matmul_kernel_runs_every_product_it_fits() {
        use tract_core::ops::matmul::optimized::OptMatMul;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let m = Manifest::load(Path::new(path)).unwrap();
        let file = m.nnef_path(Precision::Fp32).unwrap().unwrap();
        let kernels_of = |kernel: Option<&str>| -> Vec<(String, usize)> {
            let options = DetectorOptions {
                matmul_kernel: kernel.map(str::to_string),
                ..DetectorOptions::default()
            };
            let choices = kernel_choices(&options, &file, (416, 256), Precision::Fp32);
            let model = optimized_model(
                &m,
                &file,
                (416, 256),
                Precision::Fp32,
                Kernels::Edgesieve,
                &choices,
            )
            .unwrap();
            let products = model.nodes().iter().filter_map(|n| n.op_as::<OptMatMul>());
            products
                .map(|mm| (mm.mmm[0].name().to_string(), mm.mmm[0].nr()))
                .collect()
        };
        let picked = kernels_of(None);
        let uses =
            |kernels: &[(String, usize)], k: &str| kernels.iter().filter(|p| p.0 == k).count();
        // The tile tract's pick uses least (on x86_64 with AVX-512, one it never picks).
        let candidates = crate::detect::tune::candidates(Precision::Fp32);
        let k = candidates
            .iter()
            .min_by_key(|c| uses(&picked, c))
            .expect("f32 tile kernels for this machine");
        let named = kernels_of(Some(k));
        assert_eq!(named.len(), picked.len());
        assert!(named.len() > 90, "{} matrix products", named.len());
        for (a, b) in named.iter().zip(&picked) {
            assert!(
                &a.0 == k || (a == b && a.1 == 1),
                "{a:?} where tract picked {b:?}"
            );
        }
        assert!(uses(&named, k) > uses(&picked, k), "{k} everywhere already");

        let frames = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/drive-tmo324-lane-detecting/frames/000001.jpg"
        );
        let frame = image::open(frames).unwrap().to_rgb8();
        let (w, h) = frame.dimensions();
        let detect = |kernel: Option<&str>| {
            let options = DetectorOptions {
                precision: Precision::Fp32,
                fit_frame: Some((w, h)),
                matmul_kernel: kernel.map(str::to_string),
                ..DetectorOptions::default()
            };
            let mut detector = Detector::load(m.clone(), &options).unwrap();
            let mut out = Detections::new();
            detector.detect(frame.as_raw(), w, h, &mut out).unwrap();
            out.items().to_vec()
        };
        let (a, b) = (detect(None), detect(Some(k)));
        assert!(a.len() >= 3, "{} detections", a.len());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.class_id, y.class_id);
            assert!((x.score - y.score).abs() < 1e-3, "{x:?} {y:?}");
            for (p, q) in x.bbox.iter().zip(&y.bbox) {
                assert!((p - q).abs() < 0.5, "{x:?} {y:?}");
            }
        }
    }

    /// A kernel plan applies per product shape: the products of the shape it names run its
    /// kernel, every other product what tract picked. The detector finds the plan `edgesieve
    /// tune` saved for its key, and with "tract", a damaged file or another key, none.
    #[test]
    fn a_kernel_plan_applies_per_product_shape() {
        let shape = (416, 256);
        let optimise = |choices: &[KernelChoice]| tune::tests::fp32_products(choices).2;
        let (_, file, _) = tune::tests::fp32_products(&[]);
        let picked = optimise(&[]);
        // The shape with most products, and a tile kernel tract did not pick for it.
        let count = |s| picked.iter().filter(|p| p.shape == s).count();
        let busiest = picked
            .iter()
            .map(|p| p.shape)
            .max_by_key(|&s| count(s))
            .unwrap();
        assert!(count(busiest) > 1 && busiest.2 > 1, "{busiest:?}");
        let was = &picked.iter().find(|p| p.shape == busiest).unwrap().kernel;
        let other = crate::detect::tune::candidates(Precision::Fp32)
            .into_iter()
            .find(|k| k != was)
            .expect("more than one f32 tile kernel");
        let plan = vec![KernelChoice {
            shape: Some(busiest),
            kernel: other.clone(),
        }];
        let planned = optimise(&plan);
        assert_eq!(planned.len(), picked.len());
        for (a, b) in planned.iter().zip(&picked) {
            assert_eq!(a.shape, b.shape);
            let want = if a.shape == busiest {
                &other
            } else {
                &b.kernel
            };
            assert_eq!(&a.kernel, want, "{:?}", a.shape);
        }

        let dir = crate::util::testing::TempDir::new("kernel-plan");
        let options = |matmul_kernel: Option<&str>| DetectorOptions {
            matmul_kernel: matmul_kernel.map(str::to_string),
            tuning_dir: Some(dir.path().to_path_buf()),
            ..DetectorOptions::default()
        };
        let choices = |o: &DetectorOptions, shape| kernel_choices(o, &file, shape, Precision::Fp32);
        assert!(choices(&options(None), shape).is_empty());
        let key = tune::plan_key(&file, Precision::Fp32, shape, Kernels::Edgesieve);
        let saved = tune::write_plan(dir.path(), &key, &plan).unwrap();
        assert_eq!(choices(&options(None), shape), plan);
        // At any number of threads; not for the other kernels setting.
        let two = DetectorOptions {
            threads: 2,
            ..options(None)
        };
        assert_eq!(choices(&two, shape), plan);
        let theirs = DetectorOptions {
            kernels: Kernels::Tract,
            ..options(None)
        };
        assert!(choices(&theirs, shape).is_empty());
        assert!(choices(&options(Some(TRACT_PICK)), shape).is_empty());
        assert!(choices(&options(None), (416, 416)).is_empty());
        std::fs::write(&saved, "product 1 2 3\n").unwrap();
        assert!(choices(&options(None), shape).is_empty());
    }

    #[test]
    fn an_nnef_read_back_optimises_to_the_model_a_full_declutter_gives() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let m = Manifest::load(Path::new(path)).unwrap();
        let mut half = vec![];
        // f16 twice: its own file, and the fp32 file translated at load.
        for (precision, file_of) in [
            (Precision::Fp32, Precision::Fp32),
            (Precision::Int8, Precision::Int8),
            (Precision::F16, Precision::F16),
            (Precision::F16, Precision::Fp32),
        ] {
            let file = m.nnef_path(file_of).unwrap().unwrap();
            let load = |declutter| {
                optimized_model_with(
                    &m,
                    &file,
                    (416, 256),
                    precision,
                    Kernels::Edgesieve,
                    declutter,
                )
                .unwrap()
            };
            let (read_back, full) = (load(Declutter::AsRead), load(Declutter::Full));
            let (a, b) = (graph_signature(&read_back), graph_signature(&full));
            assert!(a.len() > 300, "{precision:?}: {} nodes", a.len());
            assert_eq!(a.len(), b.len(), "{precision:?}: node count");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{precision:?}");
            }
            if precision == Precision::F16 {
                half.push(a);
            }
        }
        // Translated when written or at load, the same model.
        assert_eq!(half[0].len(), half[1].len(), "f16 node count");
        for (x, y) in half[0].iter().zip(&half[1]) {
            assert_eq!(x, y, "f16 from its file / from the fp32 file");
        }
    }

    /// A manifest naming no f16 file, or one that is not there (models/fetch not run since): f16
    /// loads the fp32 file instead, and translates it.
    #[test]
    fn f16_without_its_file_loads_the_fp32_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let mut m = Manifest::load(Path::new(path)).unwrap();
        let fp32 = m.nnef_path(Precision::Fp32).unwrap().unwrap();
        m.f16_nnef = None;
        assert_eq!(model_file(&m, Precision::F16).unwrap(), fp32);
        m.f16_nnef = Some("not-converted.f16.nnef.tar".into());
        assert_eq!(model_file(&m, Precision::F16).unwrap(), fp32);
        let options = DetectorOptions {
            precision: Precision::F16,
            ..DetectorOptions::default()
        };
        let detector = Detector::load(m, &options).unwrap();
        assert!(detector.model_path().ends_with("yolox_nano.nnef.tar"));
        assert_eq!(detector.precision(), Precision::F16);
    }

    #[test]
    fn the_fit_input_follows_the_frame_with_half_a_stride_of_pad() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        let m = Manifest::load(Path::new(path)).unwrap();
        let shape = |w, h| input_shape_for(&m, (w, h));
        // 16:9 -> 234 rows of picture + 22 of pad; 1242x375 -> 125 + 35 (not 3: see the doc).
        assert_eq!(shape(640, 360), (416, 256));
        assert_eq!(shape(1920, 1080), (416, 256));
        assert_eq!(shape(1242, 375), (416, 160));
        // Portrait turns it round; square and 4:3 keep the manifest's 416 where it is needed.
        assert_eq!(shape(360, 640), (256, 416));
        assert_eq!(shape(416, 416), (416, 416));
        assert_eq!(shape(640, 480), (416, 352));
        // Extremes stay within one stride and the manifest's size.
        assert_eq!(shape(4000, 10), (416, 32));
        assert_eq!(shape(1, 1), (416, 416));
        for (w, h) in [(640, 360), (1242, 375), (4000, 10), (7, 3000)] {
            let (iw, ih) = shape(w, h);
            assert!(
                iw % 32 == 0 && ih % 32 == 0 && iw <= 416 && ih <= 416,
                "{w}x{h}"
            );
            let lb = Letterbox::new(w, h, iw, ih);
            // The same scale as the square input: the picture is the same, only less padded.
            let square = Letterbox::new(w, h, 416, 416);
            assert_eq!(
                (lb.resized_width, lb.resized_height),
                (square.resized_width, square.resized_height),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn picture_cells_follow_the_letterbox() {
        // 640x360 into 416x416: 416x234 of picture; stride 8 (52x52) -> 30 rows (234/8 = 29.25).
        let lb = Letterbox::new(640, 360, 416, 416);
        assert_eq!(
            PictureCells::new(&lb, (416, 416), (52, 52)),
            PictureCells { rows: 30, cols: 52 }
        );
        // Stride 32: 13x13 -> 8 rows (234/32 = 7.3).
        assert_eq!(
            PictureCells::new(&lb, (416, 416), (13, 13)),
            PictureCells { rows: 8, cols: 13 }
        );
        // KITTI 1242x375: 416x125 -> 16 rows at stride 8; a 1x1 frame keeps one cell.
        let kitti = Letterbox::new(1242, 375, 416, 416);
        assert_eq!(PictureCells::new(&kitti, (416, 416), (52, 52)).rows, 16);
        let tiny = Letterbox::new(1, 1, 416, 416);
        assert_eq!(
            PictureCells::new(&tiny, (416, 416), (52, 52)),
            PictureCells { rows: 52, cols: 52 }
        );
    }
}
