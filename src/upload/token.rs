//! The backend's API token: read from a file or an environment variable (never the command line),
//! held in a type whose `Debug` and `Display` never show it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A credential. Only [`Secret::expose`] gives its text, for the one header that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The token's text, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for a JSON Web Token (three base64url parts, as Label Studio's personal access
    /// tokens are): it is then a refresh token exchanged for short-lived access tokens.
    pub fn is_jwt(&self) -> bool {
        let parts: Vec<&str> = self.0.split('.').collect();
        parts.len() == 3
            && self.0.starts_with("eyJ")
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Why no token could be had. Names where it was looked for, never what was found.
#[derive(Debug)]
pub enum TokenError {
    /// Neither `upload.token_file` nor `upload.token_env` is set.
    NotConfigured,
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    EmptyFile {
        path: PathBuf,
    },
    /// The variable is unset, empty or not UTF-8.
    Env {
        name: String,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::NotConfigured => write!(
                f,
                "no API token: set upload.token_file (a file holding it) or upload.token_env (an environment variable holding it)"
            ),
            TokenError::File { path, .. } => {
                write!(f, "upload.token_file {}: cannot read it", path.display())
            }
            TokenError::EmptyFile { path } => {
                write!(f, "upload.token_file {}: the file is empty", path.display())
            }
            TokenError::Env { name } => write!(
                f,
                "upload.token_env: the environment variable {name} is unset or empty"
            ),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenError::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The token from `file` (its first line, trimmed) if set, else from the environment variable
/// `env`.
pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Secret, TokenError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(TokenError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        return Ok(Secret::new(token));
    }
    if let Some(name) = env {
        return match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            _ => Err(TokenError::Env {
                name: name.to_string(),
            }),
        };
    }
    Err(TokenError::NotConfigured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::TempDir;

    #[test]
    fn never_printed() {
        let s = Secret::new("abc123");
        assert!(!format!("{s:?} {s}").contains("abc123"));
    }

    #[test]
    fn jwt_is_told_from_a_legacy_token() {
        assert!(Secret::new("eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln").is_jwt());
        assert!(!Secret::new("0123456789abcdef0123456789abcdef01234567").is_jwt());
        assert!(!Secret::new("eyJ.a").is_jwt());
    }

    #[test]
    fn from_file_first_line_and_errors_name_the_key_not_the_token() {
        let dir = TempDir::new("token");
        let path = dir.path().join("t");
        std::fs::write(&path, "  s3cret \nsecond line\n").unwrap();
        assert_eq!(load(Some(&path), None).unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let e = load(Some(&path), None).unwrap_err().to_string();
        assert!(
            e.contains("upload.token_file") && e.contains("empty"),
            "{e}"
        );
        let e = load(Some(&dir.path().join("missing")), None).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let e = load(None, Some("EDGESIEVE_TEST_SURELY_UNSET_VAR")).unwrap_err();
        assert!(
            e.to_string().contains("EDGESIEVE_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
        assert!(matches!(load(None, None), Err(TokenError::NotConfigured)));
    }
}
