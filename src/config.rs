//! The `edgesieve run` configuration: one TOML file, every knob with a sane default. An unknown
//! key or an invalid value is refused with its name.

use crate::cli::{Args, CliError};
use crate::policy::PolicyConfig;
use crate::score::UncertaintyConfig;
use crate::spool::SpoolConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Model manifest; relative paths resolve against the working directory.
    pub model: Option<PathBuf>,
    /// "int8" (default) or "fp32".
    pub precision: String,
    pub threads: usize,
    /// Boxes below this score are dropped before NMS (kept low: near-threshold boxes matter).
    pub min_score: f32,
    pub nms_iou: f32,
    pub max_detections: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: None,
            precision: "int8".into(),
            threads: 1,
            min_score: 0.1,
            nms_iou: 0.45,
            max_detections: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Frame rate of a folder of frames, for stream timestamps (a y4m stream states its own).
    pub fps: f64,
    /// Timestamp of the first frame, ms since the Unix epoch; 0 = the time the run starts.
    pub start_ms: u64,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            fps: 15.0,
            start_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Seed of the random projection; vehicles whose sketches are merged must share it.
    pub seed: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig { seed: 0x5EED_ED6E }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// error, warn, info, debug or trace.
    pub log_level: Option<String>,
    pub detector: DetectorConfig,
    pub input: InputConfig,
    pub uncertainty: UncertaintyConfig,
    pub embedding: EmbeddingConfig,
    pub policy: PolicyConfig,
    pub spool: SpoolConfig,
}

#[derive(Debug)]
pub enum ConfigError {
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(f, "config {} is not valid: {message}", path.display())
            }
            ConfigError::Invalid { path, message } => {
                write!(f, "config {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Applies the command line's model options (`--model`, `--precision`, `--threads`), which
    /// override the config file; the values are checked later by [`Config::validate`].
    pub fn apply_model_options(&mut self, args: &Args) -> Result<(), CliError> {
        if let Some(m) = args.value("--model") {
            self.detector.model = Some(PathBuf::from(m));
        }
        if let Some(p) = args.value("--precision") {
            self.detector.precision = p.to_string();
        }
        if let Some(t) = args.parsed::<usize>("--threads")? {
            self.detector.threads = t;
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let d = &self.detector;
        if crate::manifest::Precision::parse(&d.precision).is_none() {
            return Err(format!(
                "detector.precision: expected \"int8\" or \"fp32\", got {:?}",
                d.precision
            ));
        }
        if d.threads == 0 {
            return Err("detector.threads must be at least 1".into());
        }
        if !(0.0..1.0).contains(&d.min_score) {
            return Err(format!(
                "detector.min_score must be in [0, 1), got {}",
                d.min_score
            ));
        }
        if !(0.0..=1.0).contains(&d.nms_iou) {
            return Err(format!(
                "detector.nms_iou must be in [0, 1], got {}",
                d.nms_iou
            ));
        }
        if d.max_detections == 0 {
            return Err("detector.max_detections must be at least 1".into());
        }
        if !(self.input.fps > 0.0 && self.input.fps.is_finite()) {
            return Err(format!(
                "input.fps must be positive, got {}",
                self.input.fps
            ));
        }
        if let Some(level) = &self.log_level {
            if crate::logger::parse_level(level).is_none() {
                return Err(format!(
                    "log_level: expected error, warn, info, debug or trace, got {level:?}"
                ));
            }
        }
        self.uncertainty
            .validate()
            .map_err(|e| format!("uncertainty.{e}"))?;
        self.policy.validate().map_err(|e| format!("policy.{e}"))?;
        self.spool.validate().map_err(|e| format!("spool.{e}"))?;
        Ok(())
    }

    /// The whole configuration with its defaults, as TOML (`edgesieve config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}
