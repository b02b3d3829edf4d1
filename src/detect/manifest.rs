//! Model manifests: what a detector file is and how to feed and decode it.
//!
//! A manifest is a TOML file beside the model (see `models/yolox_nano.toml`). Paths in it are
//! relative to the manifest's own folder, so a checkout works from any working directory.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which of the manifest's model files to run, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// What runs fastest here at no loss of accuracy: f16 where the core computes in half
    /// precision natively (ARMv8.2 FEAT_FP16), fp32 elsewhere (int8 is no faster in tract on
    /// any target measured, and less accurate: README, issue 11). [`Precision::resolved`] says
    /// which.
    #[default]
    Auto,
    Fp32,
    Int8,
    /// The fp32 file computing in half precision (translated at load), for ARMv8.2 cores with
    /// half-precision arithmetic (`detect::half`).
    F16,
}

impl Precision {
    /// The accepted spellings, for error messages.
    pub const ACCEPTED: &'static str = "auto, int8, fp32 or f16";

    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "fp32" | "f32" | "float" => Some(Precision::Fp32),
            "int8" | "i8" | "q8" => Some(Precision::Int8),
            "f16" | "fp16" | "half" => Some(Precision::F16),
            "auto" => Some(Precision::Auto),
            _ => None,
        }
    }

    /// The precision `Auto` stands for on this machine (f16 where [`native_f16`] says the core
    /// computes in it, fp32 elsewhere); any other precision is itself.
    ///
    /// [`native_f16`]: crate::detect::model::native_f16
    pub fn resolved(self) -> Precision {
        match self {
            Precision::Auto if crate::detect::model::native_f16() => Precision::F16,
            Precision::Auto => Precision::Fp32,
            p => p,
        }
    }
}

/// A precision name that is not one of [`Precision::ACCEPTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPrecision(pub String);

impl fmt::Display for UnknownPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, got {:?}", Precision::ACCEPTED, self.0)
    }
}

impl std::error::Error for UnknownPrecision {}

impl std::str::FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Precision, UnknownPrecision> {
        Precision::parse(s).ok_or_else(|| UnknownPrecision(s.to_string()))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        })
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// Anchor-free YOLOX head: per grid point `[x, y, w, h, objectness, class scores…]`.
    Yolox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub channel_order: ChannelOrder,
    pub pad_value: f32,
    #[serde(default = "one")]
    pub scale: f32,
}

fn one() -> f32 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub decoder: DecoderKind,
    pub strides: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// Name of an intermediate tensor (NCHW) read out of the same inference.
    pub tensor: String,
    pub channels: usize,
    /// File (relative to the manifest) with the fixed centre and principal axes of the
    /// embedding, learned from calibration frames (`models/calibrate_embedding.py`); without it
    /// the embedding is a seeded random projection.
    #[serde(default)]
    pub calibration: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreHeadSpec {
    /// Name of a scalar output the model computes itself (e.g. a loss-prediction head).
    pub tensor: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub sha256: Vec<String>,
    pub fp32_file: String,
    #[serde(default)]
    pub int8_file: Option<String>,
    /// NNEF form of `fp32_file` (a `.nnef.tar`, written by `edgesieve convert` in models/fetch):
    /// what the detector loads when present, and the only form a build without the `onnx`
    /// feature (the car's) reads. See [`crate::detect::nnef`].
    #[serde(default)]
    pub fp32_nnef: Option<String>,
    /// NNEF form of `int8_file`, likewise.
    #[serde(default)]
    pub int8_nnef: Option<String>,
    /// NNEF form of `fp32_file` computing in half precision (`edgesieve convert --precision
    /// f16`): what `f16` loads when present. Without it, `f16` loads the fp32 file and translates
    /// it at every start (tens of millions of instructions more on the car).
    #[serde(default)]
    pub f16_nnef: Option<String>,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    #[serde(default)]
    pub embedding: Option<EmbeddingSpec>,
    #[serde(default)]
    pub score_head: Option<ScoreHeadSpec>,
    /// Folder the manifest was read from; model paths resolve against it.
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug)]
pub enum ManifestError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Invalid {
        path: PathBuf,
        message: String,
    },
    NoInt8 {
        path: PathBuf,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Read { path, source } => {
                write!(f, "cannot read model manifest {}: {source}", path.display())
            }
            ManifestError::Parse { path, message } => {
                write!(
                    f,
                    "model manifest {} is not valid: {message}",
                    path.display()
                )
            }
            ManifestError::Invalid { path, message } => {
                write!(f, "model manifest {}: {message}", path.display())
            }
            ManifestError::NoInt8 { path } => write!(
                f,
                "model manifest {} names no int8_file; use --precision fp32",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

/// The manifest commands use without `--model`: `$EDGESIEVE_MODEL`, else the first that exists of
/// `models/yolox_nano.toml` (a checkout) and `/usr/share/edgesieve/models/yolox_nano.toml` (an
/// installed car, see deploy/install), else the checkout path (so the error names it).
pub fn default_manifest_path() -> PathBuf {
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

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut manifest = Manifest::parse(&text).map_err(|message| ManifestError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        manifest.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        manifest
            .validate()
            .map_err(|message| ManifestError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(manifest)
    }

    /// Parses manifest text; paths stay relative until `dir` is set.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn validate(&self) -> Result<(), String> {
        if self.classes.is_empty() {
            return Err("classes is empty".into());
        }
        if self.input.width == 0 || self.input.height == 0 {
            return Err("input width and height must be positive".into());
        }
        if self.output.strides.is_empty() || self.output.strides.contains(&0) {
            return Err("output.strides must be a non-empty list of positive strides".into());
        }
        for &s in &self.output.strides {
            if self.input.width % s != 0 || self.input.height % s != 0 {
                return Err(format!(
                    "input size {}x{} is not a multiple of stride {s}",
                    self.input.width, self.input.height
                ));
            }
        }
        for digest in &self.sha256 {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("sha256 entry {digest:?} is not 64 hex digits"));
            }
        }
        Ok(())
    }

    /// Path of the ONNX model file for `precision` (f16: the fp32 file, which it translates).
    pub fn model_path(&self, precision: Precision) -> Result<PathBuf, ManifestError> {
        let file = match precision.resolved() {
            Precision::Fp32 | Precision::F16 | Precision::Auto => &self.fp32_file,
            Precision::Int8 => self
                .int8_file
                .as_ref()
                .ok_or_else(|| ManifestError::NoInt8 {
                    path: self.dir.clone(),
                })?,
        };
        Ok(self.dir.join(file))
    }

    /// Path of the NNEF file for `precision`, when the manifest names one (it may not exist yet).
    /// f16 without a file of its own loads the fp32 one (`detect::model`, `model_file`).
    pub fn nnef_path(&self, precision: Precision) -> Result<Option<PathBuf>, ManifestError> {
        let file = match precision.resolved() {
            Precision::F16 => &self.f16_nnef,
            Precision::Fp32 | Precision::Auto => &self.fp32_nnef,
            Precision::Int8 => {
                if self.int8_file.is_none() {
                    return Err(ManifestError::NoInt8 {
                        path: self.dir.clone(),
                    });
                }
                &self.int8_nnef
            }
        };
        Ok(file.as_ref().map(|f| self.dir.join(f)))
    }

    /// Number of anchor points the decoder expects: the sum of every stride's grid cells.
    pub fn anchor_count(&self) -> usize {
        self.anchor_count_for((self.input.width, self.input.height))
    }

    /// The same for an input of `size` (width, height), e.g. the fit shape of a camera.
    pub fn anchor_count_for(&self, size: (u32, u32)) -> usize {
        self.output
            .strides
            .iter()
            .map(|&s| ((size.0 / s) * (size.1 / s)) as usize)
            .sum()
    }

    /// The largest output stride, at least 1: every input shape the detector runs is a multiple
    /// of it ([`crate::detect::model::input_shape_for`]), and the NNEF files count their symbolic
    /// height and width in it.
    pub fn largest_stride(&self) -> u32 {
        self.output
            .strides
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1)
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` is f16 where the core computes in half precision natively, fp32 elsewhere; every
    /// other precision is itself, and the names parse back.
    #[test]
    fn auto_resolves_for_this_core() {
        let native = crate::detect::model::native_f16();
        let want = if native {
            Precision::F16
        } else {
            Precision::Fp32
        };
        assert_eq!(Precision::Auto.resolved(), want);
        assert_eq!(Precision::default(), Precision::Auto);
        for p in [
            Precision::Auto,
            Precision::Fp32,
            Precision::Int8,
            Precision::F16,
        ] {
            assert_eq!(Precision::parse(&p.to_string()), Some(p));
            if p != Precision::Auto {
                assert_eq!(p.resolved(), p);
            }
        }
    }

    fn default_manifest() -> Manifest {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
        Manifest::load(Path::new(path)).expect("default manifest loads")
    }

    #[test]
    fn default_manifest_describes_yolox_nano() {
        let m = default_manifest();
        assert_eq!(m.classes.len(), 80);
        assert_eq!(m.classes[2], "car");
        assert_eq!((m.input.width, m.input.height), (416, 416));
        assert_eq!(m.input.channel_order, ChannelOrder::Bgr);
        // 52*52 + 26*26 + 13*13 grid points.
        assert_eq!(m.anchor_count(), 3549);
        assert_eq!(m.sha256.len(), 2);
        assert!(m.model_path(Precision::Int8).is_ok());
    }

    /// Each precision's NNEF file is the one the manifest names for it, f16's too.
    #[test]
    fn each_precision_has_its_own_nnef_file() {
        let mut m = default_manifest();
        let nnef = |m: &Manifest, p| m.nnef_path(p).unwrap();
        let ends = |p: Option<PathBuf>, name: &str| p.is_some_and(|p| p.ends_with(name));
        assert!(ends(nnef(&m, Precision::F16), "yolox_nano.f16.nnef.tar"));
        assert!(ends(nnef(&m, Precision::Fp32), "yolox_nano.nnef.tar"));
        assert!(ends(nnef(&m, Precision::Int8), "yolox_nano.int8.nnef.tar"));
        m.f16_nnef = None;
        assert_eq!(nnef(&m, Precision::F16), None);
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/yolox_nano.toml"
        ))
        .unwrap()
        .replace("[input]", "[input]\nmean = 3");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.contains("mean"), "{err}");
    }

    #[test]
    fn stride_that_does_not_divide_input_is_refused() {
        let mut m = default_manifest();
        m.output.strides = vec![8, 15];
        assert!(m.validate().unwrap_err().contains("stride 15"));
    }
}
