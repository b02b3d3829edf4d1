//! The sketch on disk, so that what earlier runs kept still counts as seen: its versioned byte
//! format ([`Sketch::to_bytes`], [`Sketch::from_bytes`]) and `sketch.bin` in the spool
//! directory, written atomically (temporary file, fsync, rename).

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sketch::{is_finite, Sketch};
use super::FrameSketch;

/// Version of the byte format written by [`Sketch::to_bytes`].
pub const FORMAT_VERSION: u16 = 1;

pub(super) const MAGIC: [u8; 4] = *b"ESSK";

#[derive(Debug, Clone, PartialEq)]
pub enum SketchError {
    /// The bytes do not start with the sketch magic.
    NotASketch { found: [u8; 4] },
    /// Written by another format version.
    Version { expected: u16, found: u16 },
    /// Written by a build with other `K` (capacity) or `D` (dimension).
    Shape {
        expected_k: u64,
        expected_d: u64,
        found_k: u64,
        found_d: u64,
    },
    /// postcard could not decode a part (truncated or corrupt bytes).
    Decode {
        part: &'static str,
        source: postcard::Error,
    },
    /// Decoded, but a field is invalid.
    Invalid(String),
}

impl fmt::Display for SketchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SketchError::NotASketch { found } => write!(
                f,
                "not a sketch: expected magic {:?}, found {:?}",
                MAGIC, found
            ),
            SketchError::Version { expected, found } => write!(
                f,
                "sketch format version mismatch: expected version {expected}, found version {found}"
            ),
            SketchError::Shape {
                expected_k,
                expected_d,
                found_k,
                found_d,
            } => write!(
                f,
                "sketch shape mismatch: expected K={expected_k} centres of dimension \
                 D={expected_d}, found K={found_k}, D={found_d}"
            ),
            SketchError::Decode { part, source } => {
                write!(f, "corrupt or truncated sketch {part}: {source}")
            }
            SketchError::Invalid(what) => write!(f, "invalid sketch: {what}"),
        }
    }
}

impl std::error::Error for SketchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SketchError::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) magic: [u8; 4],
    pub(super) version: u16,
    pub(super) k: u64,
    pub(super) d: u64,
}

#[derive(Serialize)]
pub(super) struct BodyOut<'a> {
    pub(super) radius: f32,
    pub(super) centres: Vec<CentreOut<'a>>,
}

#[derive(Serialize)]
pub(super) struct CentreOut<'a> {
    pub(super) weight: u64,
    pub(super) point: &'a [f32],
}

#[derive(Deserialize)]
struct BodyIn {
    radius: f32,
    centres: Vec<CentreIn>,
}

#[derive(Deserialize)]
struct CentreIn {
    weight: u64,
    point: Vec<f32>,
}

impl<const K: usize, const D: usize> Sketch<K, D> {
    /// Versioned postcard encoding (header with magic, version, K, D; then radius and centres).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            k: K as u64,
            d: D as u64,
        };
        let body = BodyOut {
            radius: self.radius,
            centres: self
                .centres
                .iter()
                .map(|c| CentreOut {
                    weight: c.weight,
                    point: &c.point,
                })
                .collect(),
        };
        // Serialising plain structs into a growable Vec has no failure mode.
        let bytes = postcard::to_allocvec(&header).expect("postcard encodes the header");
        postcard::to_extend(&body, bytes).expect("postcard encodes the body")
    }

    /// Decodes bytes written by [`Sketch::to_bytes`] of a build with the same version, K and D.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let (header, rest) =
            postcard::take_from_bytes::<Header>(bytes).map_err(|source| SketchError::Decode {
                part: "header",
                source,
            })?;
        if header.magic != MAGIC {
            return Err(SketchError::NotASketch {
                found: header.magic,
            });
        }
        if header.version != FORMAT_VERSION {
            return Err(SketchError::Version {
                expected: FORMAT_VERSION,
                found: header.version,
            });
        }
        if header.k != K as u64 || header.d != D as u64 {
            return Err(SketchError::Shape {
                expected_k: K as u64,
                expected_d: D as u64,
                found_k: header.k,
                found_d: header.d,
            });
        }
        let (body, rest) =
            postcard::take_from_bytes::<BodyIn>(rest).map_err(|source| SketchError::Decode {
                part: "body",
                source,
            })?;
        if !rest.is_empty() {
            return Err(SketchError::Invalid(format!(
                "{} unexpected bytes after the centres",
                rest.len()
            )));
        }
        if body.radius.is_nan() || body.radius < 0.0 {
            return Err(SketchError::Invalid(format!(
                "radius {} is not a non-negative number",
                body.radius
            )));
        }
        if body.centres.len() > K {
            return Err(SketchError::Invalid(format!(
                "{} centres, more than the capacity K={K}",
                body.centres.len()
            )));
        }
        let mut sketch = Sketch::new();
        sketch.radius = body.radius;
        for (i, c) in body.centres.into_iter().enumerate() {
            let point: [f32; D] = c.point.as_slice().try_into().map_err(|_| {
                SketchError::Invalid(format!(
                    "centre {i} has {} coordinates, expected D={D}",
                    c.point.len()
                ))
            })?;
            if !is_finite(&point) {
                return Err(SketchError::Invalid(format!(
                    "centre {i} has a non-finite coordinate"
                )));
            }
            if c.weight == 0 {
                return Err(SketchError::Invalid(format!("centre {i} has weight 0")));
            }
            sketch.push(point, c.weight);
        }
        Ok(sketch)
    }

}


/// Why a saved sketch could not be read or written.
#[derive(Debug)]
pub enum SketchFileError {
    Read { path: PathBuf, source: io::Error },
    Decode { path: PathBuf, source: SketchError },
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for SketchFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SketchFileError::Read { path, .. } => {
                write!(f, "cannot read sketch {}", path.display())
            }
            SketchFileError::Decode { path, .. } => {
                write!(f, "sketch {} is not valid", path.display())
            }
            SketchFileError::Write { path, .. } => {
                write!(f, "cannot save sketch {}", path.display())
            }
        }
    }
}

impl std::error::Error for SketchFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SketchFileError::Read { source, .. } | SketchFileError::Write { source, .. } => {
                Some(source)
            }
            SketchFileError::Decode { source, .. } => Some(source),
        }
    }
}

/// Reads a sketch saved by an earlier run; None when there is none yet.
pub fn load_sketch(path: &Path) -> Result<Option<FrameSketch>, SketchFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            FrameSketch::from_bytes(&bytes)
                .map(Some)
                .map_err(|source| SketchFileError::Decode {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SketchFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Saves the sketch atomically (temporary file, fsync, rename).
pub fn save_sketch(path: &Path, sketch: &FrameSketch) -> Result<(), SketchFileError> {
    let tmp = path.with_extension("bin.tmp");
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&sketch.to_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| SketchFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}
