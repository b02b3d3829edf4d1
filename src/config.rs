//! The `edgesieve run` configuration: one TOML file, every knob with a sane default. Each stage
//! owns its section's typed config and checks it; this module gathers them, reads the file and
//! prints the reference (`edgesieve config`). An unknown key or an invalid value is refused with
//! its dotted name, in one error shape for every section ([`KeyError`]).

use crate::detect::gate::GateConfig;
use crate::detect::manifest::Precision;
use crate::detect::DetectorConfig;
use crate::run::status::StatusConfig;
use crate::select::policy::PolicyConfig;
use crate::select::uncertainty::UncertaintyConfig;
use crate::select::EmbeddingConfig;
use crate::source::InputConfig;
use crate::store::context::ContextConfig;
use crate::store::spool::SpoolConfig;
use crate::upload::UploadConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/config_docs.rs"));

/// A configuration value that cannot be used: its key (dotted from the file's top once the
/// loader has placed it, e.g. `policy.target_keep_ratio`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl KeyError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its key placed in `section` (`within("policy")`: `policy.<key>`).
    pub fn within(mut self, section: &str) -> KeyError {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for KeyError {}

/// The whole configuration, one section per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log level on stderr: error, warn, info, debug or trace (the EDGESIEVE_LOG environment
    /// variable wins; default info).
    pub log_level: Option<String>,
    pub detector: DetectorConfig,
    pub input: InputConfig,
    pub uncertainty: UncertaintyConfig,
    pub embedding: EmbeddingConfig,
    pub policy: PolicyConfig,
    pub spool: SpoolConfig,
    pub upload: UploadConfig,
    pub gate: GateConfig,
    pub status: StatusConfig,
    pub context: ContextConfig,
}

/// Why a configuration file cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type where no key could be named.
    Parse { path: PathBuf, message: String },
    /// A key that is unknown, of the wrong type or out of range.
    Invalid { path: PathBuf, error: KeyError },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, .. } => write!(f, "cannot read config {}", path.display()),
            ConfigError::Parse { path, message } => {
                write!(f, "config {} is not valid: {message}", path.display())
            }
            ConfigError::Invalid { path, error } => {
                write!(f, "config {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => None,
        }
    }
}

/// Command-line overrides of the `[detector]` section (`--model`, `--precision`, `--threads`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOverrides {
    pub model: Option<PathBuf>,
    pub precision: Option<Precision>,
    pub threads: Option<usize>,
    pub input_shape: Option<crate::detect::InputShape>,
    pub kernels: Option<crate::detect::Kernels>,
    pub matmul_kernel: Option<String>,
}

impl Config {
    /// Applies command-line overrides; the values are checked by [`Config::validate`].
    pub fn apply_overrides(&mut self, o: &ModelOverrides) {
        if let Some(m) = &o.model {
            self.detector.model = Some(m.clone());
        }
        if let Some(p) = o.precision {
            self.detector.precision = p;
        }
        if let Some(shape) = o.input_shape {
            self.detector.input_shape = shape;
        }
        if let Some(t) = o.threads {
            self.detector.threads = t;
        }
        if let Some(k) = o.kernels {
            self.detector.kernels = k;
        }
        if let Some(k) = &o.matmul_kernel {
            self.detector.matmul_kernel = Some(k.clone());
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_at(&text, path)
    }

    /// Parses and checks a configuration given as text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_at(text, Path::new("(text)"))
    }

    fn parse_at(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span().and_then(|span| key_at(text, span.start)) {
                Some(key) => ConfigError::Invalid {
                    path: path.to_path_buf(),
                    error: KeyError::new(key, message),
                },
                None => ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string().trim().to_string(),
                },
            }
        })?;
        config.validate().map_err(|error| ConfigError::Invalid {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(config)
    }

    /// Checks every section, naming the first bad key with its section.
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Some(level) = &self.log_level {
            if crate::util::logger::parse_level(level).is_none() {
                return Err(KeyError::new(
                    "log_level",
                    format!("expected error, warn, info, debug or trace, got {level:?}"),
                ));
            }
        }
        self.detector.validate().map_err(|e| e.within("detector"))?;
        self.input.validate().map_err(|e| e.within("input"))?;
        self.uncertainty
            .validate()
            .map_err(|e| e.within("uncertainty"))?;
        self.embedding
            .validate()
            .map_err(|e| e.within("embedding"))?;
        self.policy.validate().map_err(|e| e.within("policy"))?;
        self.spool.validate().map_err(|e| e.within("spool"))?;
        self.upload.validate().map_err(|e| e.within("upload"))?;
        self.gate.validate().map_err(|e| e.within("gate"))?;
        self.status.validate().map_err(|e| e.within("status"))?;
        self.context.validate().map_err(|e| e.within("context"))?;
        Ok(())
    }

    /// The configuration as a commented TOML file: each section and key with its doc comment,
    /// numbers in their shortest form (`edgesieve config` prints the defaults this way, so the
    /// output is the configuration reference).
    pub fn to_toml(&self) -> String {
        let value = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render the configuration: {e}\n"),
        };
        let mut out = String::from(
            "# edgesieve configuration (edgesieve run --config FILE). Every key is optional;\n\
             # the values below are the defaults.\n",
        );
        render_struct(&mut out, "Config", value.as_table(), "");
        out
    }
}

/// The dotted key whose definition covers byte `offset` of a TOML text: the `key = …` line it
/// falls on, inside the last `[section]` header above it; or that header itself.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut section = String::new();
    let mut pos = 0usize;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let end = pos + line.len();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            section = name.trim_matches(['[', ' ']).to_string();
            if offset < end {
                return Some(section);
            }
        } else if offset < end {
            let key = t.split('=').next()?.trim().trim_matches('"');
            if key.is_empty() || t.starts_with('#') {
                return None;
            }
            return Some(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
        pos = end;
    }
    None
}

fn docs_of(
    st: &str,
) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str, &'static str)> + '_ {
    CONFIG_DOCS.iter().filter(move |d| d.0 == st)
}

fn comment(out: &mut String, doc: &str) {
    for line in doc.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// Renders the fields of config struct `st` (values from `table`): plain keys first, each after
/// its doc, then each nested config struct as a `[section]`.
fn render_struct(out: &mut String, st: &str, table: Option<&toml::Table>, prefix: &str) {
    let mut sections = Vec::new();
    for &(_, field, ty, doc) in docs_of(st).filter(|d| !d.1.is_empty()) {
        if docs_of(ty).next().is_some() {
            sections.push((field, ty, doc));
            continue;
        }
        comment(out, doc);
        match table.and_then(|t| t.get(field)) {
            Some(v) => {
                out.push_str(field);
                out.push_str(" = ");
                render_value(out, v);
                out.push('\n');
            }
            None => {
                out.push_str("# ");
                out.push_str(field);
                out.push_str(" = (not set)\n");
            }
        }
        out.push('\n');
    }
    for (field, ty, doc) in sections {
        let name = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        out.push('\n');
        let struct_doc = docs_of(ty).find(|d| d.1.is_empty()).map_or("", |d| d.3);
        comment(out, if doc.is_empty() { struct_doc } else { doc });
        out.push('[');
        out.push_str(&name);
        out.push_str("]\n");
        let sub = table
            .and_then(|t| t.get(field))
            .and_then(toml::Value::as_table);
        render_struct(out, ty, sub, &name);
    }
}

/// A value in TOML syntax; floats in the shortest form that reads back to the same number (an
/// `f32` setting of 0.1 prints as 0.1, not as its widened 0.10000000149011612).
fn render_value(out: &mut String, v: &toml::Value) {
    match v {
        toml::Value::Float(x) => {
            let narrow = *x as f32;
            let s = if f64::from(narrow) == *x {
                format!("{narrow:?}")
            } else {
                format!("{x:?}")
            };
            out.push_str(&s);
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_value(out, item);
            }
            out.push(']');
        }
        toml::Value::Table(t) => {
            out.push('{');
            for (i, (k, item)) in t.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                out.push_str(k);
                out.push_str(" = ");
                render_value(out, item);
            }
            out.push_str(" }");
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_defaults_read_back_as_the_defaults() {
        let text = Config::default().to_toml();
        let back = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, Config::default());
    }

    #[test]
    fn printed_config_has_docs_and_short_numbers() {
        let text = Config::default().to_toml();
        assert!(text.contains("\nmin_score = 0.1\n"), "{text}");
        assert!(!text.contains("0.10000000149011612"), "{text}");
        assert!(text.contains("[detector]"), "{text}");
        assert!(text.contains("[policy]"), "{text}");
        // Each key comes after its doc comment.
        let i = text.find("\nthreads = 1\n").expect("threads key");
        assert!(
            text[..i].ends_with("keeps the detector on one core."),
            "{text}"
        );
        // Every key of every section is printed.
        for (st, field, _, _) in CONFIG_DOCS.iter().filter(|d| !d.1.is_empty()) {
            if *st == "TriggerConfig" {
                continue;
            }
            assert!(
                text.contains(&format!("\n{field} = "))
                    || text.contains(&format!("[{field}]"))
                    || text.contains(&format!(".{field}]"))
                    || text.contains(&format!("# {field} = ")),
                "{st}.{field} missing:\n{text}"
            );
        }
    }

    /// `detector.kernels` reaches the detector's options; the default is ours.
    #[test]
    fn detector_kernels_reach_the_options() {
        use crate::detect::Kernels;
        assert_eq!(
            Config::default().detector.options().kernels,
            Kernels::Edgesieve
        );
        let c = Config::parse("[detector]\nkernels = \"tract\"\n").unwrap();
        assert_eq!(
            c.detector.options_for(Some((640, 360))).kernels,
            Kernels::Tract
        );
    }

    /// `detector.matmul_kernel` names a kernel this machine runs, which reaches the detector's
    /// options; not set, tract picks; a name it does not run is refused, with what it runs.
    #[test]
    fn detector_matmul_kernel_reaches_the_options() {
        assert_eq!(Config::default().detector.options().matmul_kernel, None);
        let runs = crate::detect::model::matmul_kernels();
        let name = runs.last().expect("matrix kernels on this machine");
        let c = Config::parse(&format!("[detector]\nmatmul_kernel = \"{name}\"\n")).unwrap();
        assert_eq!(
            c.detector
                .options_for(Some((640, 360)))
                .matmul_kernel
                .as_deref(),
            Some(name.as_str())
        );
        let e = Config::parse("[detector]\nmatmul_kernel = \"fast_mmm\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("detector.matmul_kernel"), "{text}");
        assert!(
            text.contains("\"fast_mmm\" is not \"tract\" nor a matrix kernel this machine runs"),
            "{text}"
        );
        assert!(text.contains(name.as_str()), "{text}");
        // "tract": tract's pick, whatever plan the tuning folder holds, which is its key's.
        let c = Config::parse("[detector]\nmatmul_kernel = \"tract\"\ntuning_dir = \"/plans\"\n")
            .unwrap();
        let o = c.detector.options();
        assert_eq!(o.matmul_kernel.as_deref(), Some("tract"));
        assert_eq!(o.tuning_dir.as_deref(), Some(Path::new("/plans")));
    }

    #[test]
    fn errors_name_the_dotted_key() {
        for (text, key) in [
            (
                "[policy]\ntarget_keep_ratoi = 0.1\n",
                "policy.target_keep_ratoi",
            ),
            (
                "[policy]\ntarget_keep_ratio = 1.5\n",
                "policy.target_keep_ratio",
            ),
            ("[detector]\nprecision = \"int4\"\n", "detector.precision"),
            ("[detector]\nthreads = 100000\n", "detector.threads"),
            ("[detector]\nthreads = \"x\"\n", "detector.threads"),
            ("[detector]\nkernels = \"mine\"\n", "detector.kernels"),
            (
                "[detector]\nmatmul_kernel = \"mine\"\n",
                "detector.matmul_kernel",
            ),
            ("[sketchy]\nx = 1\n", "sketchy"),
            ("[policy]\nlook_radius = 300\n", "policy.look_radius"),
            ("[policy]\nlook_radius = -1\n", "policy.look_radius"),
            (
                "[embedding]\nsurprise_margin = 11\n",
                "embedding.surprise_margin",
            ),
            (
                "[embedding]\njitter_horizon = 1000000\n",
                "embedding.jitter_horizon",
            ),
            ("[embedding]\nsmoothing = 0\n", "embedding.smoothing"),
            ("log_level = \"loud\"\n", "log_level"),
        ] {
            match Config::parse(text) {
                Err(ConfigError::Invalid { error, .. }) => assert_eq!(error.key, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = Config::parse("[detector]\nprecision = \"int4\"\n").unwrap_err();
        assert!(
            e.to_string().contains("expected auto, int8, fp32 or f16"),
            "{e}"
        );
        assert!(matches!(
            Config::parse("= 1\n"),
            Err(ConfigError::Parse { .. })
        ));
    }
}
