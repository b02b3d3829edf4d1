//! Detect stage: a frame in, scored boxes and the feature map the embedding pools out.
//!
//! [`manifest`] describes a model (input contract, decoder, classes, embedding tensor);
//! [`preprocess`] letterboxes a frame into the model's input; [`model`] runs it with tract;
//! [`nnef`] is the pre-converted form of the model the car loads;
//! [`postprocess`] decodes the YOLOX grid and applies NMS. Before tract optimises the model,
//! `rewrite` cascades its max-pools, `half` makes it compute in f16 (`precision = "f16"`), and
//! `depthwise`, `stem` and `maxpool` put in our kernels where tract's are slow.

mod depthwise;
pub mod gate;
mod half;
pub mod manifest;
mod maxpool;
pub mod model;
pub mod nnef;
mod optimise;
pub mod postprocess;
pub mod preprocess;
mod rewrite;
mod simd;
mod stem;
#[cfg(feature = "onnx")]
mod symbolic;
pub mod tune;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use manifest::Precision;
use model::DetectorOptions;
use postprocess::PostprocessOptions;

/// Most inference threads accepted (`detector.threads`): more than any vehicle computer has
/// cores, far fewer than would exhaust the process.
pub const MAX_THREADS: usize = 64;

/// The `[detector]` section: which model, how it runs, which boxes survive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Model manifest; relative paths resolve against the working directory (default: the
    /// EDGESIEVE_MODEL environment variable, else models/yolox_nano.toml).
    pub model: Option<PathBuf>,
    /// Which model file of the manifest runs, and how: "int8", "fp32", "f16" (the fp32 file
    /// computing in half precision, for ARMv8.2 cores with FEAT_FP16; emulated, and ~17x
    /// slower than fp32, elsewhere: a warning says so at load), or "auto" (the default): f16
    /// where the core computes in it natively, fp32 elsewhere.
    pub precision: Precision,
    /// Inference threads, 1 to 64; 1 keeps the detector on one core.
    pub threads: usize,
    /// Boxes below this score are dropped before NMS (kept low: near-threshold boxes matter).
    pub min_score: f32,
    /// Same-class boxes overlapping a better one by more than this IoU are suppressed.
    pub nms_iou: f32,
    /// Most boxes kept per frame, best first.
    pub max_detections: usize,
    /// How the model input is shaped: "fit" (the source's aspect ratio, fixed from the stream
    /// header or the first image; frames of another size are letterboxed into it) or "square"
    /// (the manifest's input size whatever the frames).
    pub input_shape: InputShape,
    /// Whose kernels run the convolutions tract is slow at: "edgesieve" (the default: ours,
    /// where this machine runs them vectorised) or "tract" (tract's own everywhere, to compare
    /// or to rule ours out).
    pub kernels: Kernels,
    /// The tract-linalg kernels of the matrix products. Not set (the default): the plan
    /// `edgesieve tune` measured on this machine for this model, input shape, precision and
    /// `kernels` (per product shape the fastest kernel; used at any number of threads), when
    /// `tuning_dir` holds one, else tract's pick, from a cost model fitted on other machines.
    /// "tract": tract's pick whatever plan there is. A kernel's name (e.g.
    /// "fma_mmm_f32_24x4"): that kernel wherever it fits (same types; not the matrix-vector
    /// products); a name this machine cannot run is refused. `edgesieve bench --tune` times
    /// each kernel on the whole model.
    pub matmul_kernel: Option<String>,
    /// The folder of the kernel plans `edgesieve tune` writes and the detector reads (a few
    /// hundred bytes each). Not set: `$XDG_CACHE_HOME/edgesieve`, else `$HOME/.cache/edgesieve`,
    /// else none (no plan is read: tract's pick).
    pub tuning_dir: Option<PathBuf>,
    /// When `edgesieve run` starts without a kernel plan for its model and input shape
    /// (`matmul_kernel` unset, a `tuning_dir` to put it in), measure one on a thread of its own
    /// at the lowest priority (nice 19), while frames run on tract's pick, and save it for the
    /// next start: what `edgesieve tune` does, unattended (on x86_64 ~10 s of one core; on an
    /// A72-class core about a minute, estimated). Off by default; the car's config
    /// (`deploy/edgesieve.toml`) turns it on.
    pub tune_in_background: bool,
}

/// `detector.kernels`: see [`DetectorConfig::kernels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Ours where tract's are slow (`detect/depthwise.rs`, `detect/stem.rs`,
    /// `detect/maxpool.rs`), on the targets they are written for.
    #[default]
    Edgesieve,
    /// tract's own kernels for every op.
    Tract,
}

impl std::str::FromStr for Kernels {
    type Err = String;

    fn from_str(s: &str) -> Result<Kernels, String> {
        match s {
            "edgesieve" => Ok(Kernels::Edgesieve),
            "tract" => Ok(Kernels::Tract),
            other => Err(format!("{other:?} is not edgesieve or tract")),
        }
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernels::Edgesieve => "edgesieve",
            Kernels::Tract => "tract",
        })
    }
}

impl std::str::FromStr for InputShape {
    type Err = String;

    fn from_str(s: &str) -> Result<InputShape, String> {
        match s {
            "fit" => Ok(InputShape::Fit),
            "square" => Ok(InputShape::Square),
            other => Err(format!("{other:?} is not fit or square")),
        }
    }
}

impl std::fmt::Display for InputShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputShape::Fit => "fit",
            InputShape::Square => "square",
        })
    }
}

/// `detector.input_shape`: see [`DetectorConfig::input_shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputShape {
    /// The manifest's long side, the short side following the frames' aspect ratio (rounded up
    /// to the largest stride): a 16:9 camera runs YOLOX at 416x256 instead of 416x416.
    #[default]
    Fit,
    /// The manifest's input size as it is.
    Square,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: None,
            precision: Precision::Auto,
            threads: 1,
            min_score: 0.1,
            nms_iou: 0.45,
            max_detections: 100,
            input_shape: InputShape::Fit,
            kernels: Kernels::Edgesieve,
            matmul_kernel: None,
            tuning_dir: None,
            tune_in_background: false,
        }
    }
}

impl DetectorConfig {
    /// Checks the values, naming the first bad key (relative to `[detector]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(KeyError::new(
                "threads",
                format!("must be in 1..={MAX_THREADS}, got {}", self.threads),
            ));
        }
        if !(0.0..1.0).contains(&self.min_score) {
            return Err(KeyError::new(
                "min_score",
                format!("must be in [0, 1), got {}", self.min_score),
            ));
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            return Err(KeyError::new(
                "nms_iou",
                format!("must be in [0, 1], got {}", self.nms_iou),
            ));
        }
        if self.max_detections == 0 {
            return Err(KeyError::new("max_detections", "must be at least 1"));
        }
        if let Some(name) = self
            .matmul_kernel
            .as_ref()
            .filter(|k| *k != model::TRACT_PICK)
        {
            let runs = model::matmul_kernels();
            if !runs.iter().any(|k| k == name) {
                return Err(KeyError::new(
                    "matmul_kernel",
                    format!(
                        "{name:?} is not \"tract\" nor a matrix kernel this machine runs \
                         (edgesieve bench --tune measures them); it runs: {}",
                        runs.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The detector's options for these settings, for frames of `frame_size` (width, height)
    /// when the source knows it.
    pub fn options_for(&self, frame_size: Option<(u32, u32)>) -> DetectorOptions {
        DetectorOptions {
            fit_frame: match self.input_shape {
                InputShape::Fit => frame_size,
                InputShape::Square => None,
            },
            ..self.options()
        }
    }

    /// The detector's options for these settings (the manifest's input shape).
    pub fn options(&self) -> DetectorOptions {
        DetectorOptions {
            precision: self.precision,
            model_file: None,
            threads: self.threads,
            postprocess: PostprocessOptions {
                min_score: self.min_score,
                nms_iou: self.nms_iou,
                max_detections: self.max_detections,
            },
            fit_frame: None,
            kernels: self.kernels,
            matmul_kernel: self.matmul_kernel.clone(),
            tuning_dir: self.tuning_dir.clone().or_else(tune::default_dir),
        }
    }
}
