//! A small command-line parser: `--flag value`, `--flag=value`, switches and positionals.
//! Every flag a command accepts is declared, so a misspelt flag is refused with its name.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::ModelOverrides;
use crate::detect::manifest::Precision;
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    switches: Vec<String>,
    pub positionals: Vec<String>,
}

impl Args {
    /// `with_value`: flags that take a value; `switches`: flags that do not.
    pub fn parse(
        args: &[String],
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Args, CliError> {
        let mut out = Args::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-" || !a.starts_with('-') {
                out.positionals.push(a.clone());
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (a.as_str(), None),
            };
            if with_value.contains(&name) {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| CliError(format!("{name} needs a value")))?,
                };
                out.values.insert(name.to_string(), v);
            } else if switches.contains(&name) && inline.is_none() {
                out.switches.push(name.to_string());
            } else {
                return Err(CliError(format!("unknown option {name}")));
            }
        }
        Ok(out)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// Parses a flag's value, naming the flag in the error.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, CliError> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| CliError(format!("{name}: cannot parse {v:?}"))),
        }
    }
}

/// The model flags every command takes: `--model FILE`, `--precision P`, `--threads N`, as
/// overrides of the configuration's `[detector]` section.
pub fn model_overrides(args: &Args) -> Result<ModelOverrides, CliError> {
    let precision = match args.value("--precision") {
        Some(p) => Some(
            p.parse::<Precision>()
                .map_err(|e| CliError(format!("--precision: {e}")))?,
        ),
        None => None,
    };
    Ok(ModelOverrides {
        model: args.value("--model").map(PathBuf::from),
        precision,
        threads: args.parsed::<usize>("--threads")?,
        input_shape: match args.value("--input-shape") {
            Some(v) => Some(
                v.parse()
                    .map_err(|e: String| CliError(format!("--input-shape: {e}")))?,
            ),
            None => None,
        },
        matmul_kernel: args.value("--matmul-kernel").map(str::to_string),
        kernels: match args.value("--kernels") {
            Some(v) => Some(
                v.parse()
                    .map_err(|e: String| CliError(format!("--kernels: {e}")))?,
            ),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_switches_and_positionals() {
        let a = Args::parse(
            &strings(&["--model", "m.toml", "--threads=2", "--json", "frames", "-"]),
            &["--model", "--threads"],
            &["--json"],
        )
        .unwrap();
        assert_eq!(a.value("--model"), Some("m.toml"));
        assert_eq!(a.parsed::<usize>("--threads").unwrap(), Some(2));
        assert!(a.switch("--json"));
        assert_eq!(a.positionals, vec!["frames", "-"]);
    }

    #[test]
    fn unknown_and_incomplete_flags_are_refused() {
        let e = Args::parse(&strings(&["--modle", "x"]), &["--model"], &[]).unwrap_err();
        assert_eq!(e.0, "unknown option --modle");
        let e = Args::parse(&strings(&["--model"]), &["--model"], &[]).unwrap_err();
        assert_eq!(e.0, "--model needs a value");
        let a = Args::parse(&strings(&["--threads", "x"]), &["--threads"], &[]).unwrap();
        assert!(a.parsed::<usize>("--threads").is_err());
    }
}
