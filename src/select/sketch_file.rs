//! The sketch on disk, so that what earlier runs kept still counts as seen: its versioned byte
//! format ([`Sketch::to_bytes`], [`Sketch::from_bytes`]) and `sketch.bin` in the spool
//! directory, written atomically (temporary file, fsync, rename).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::embedding::EMBED_DIM;
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
        // Distances between unit vectors are at most 2, so a real radius is finite; an infinite
        // one would make every frame "seen" by the seen sketch.
        if !body.radius.is_finite() || body.radius < 0.0 {
            return Err(SketchError::Invalid(format!(
                "radius {} is not a finite non-negative number",
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

/// Version of the sketch *file* written by [`save_sketch_at`]. Version 1 files are the bare
/// [`Sketch::to_bytes`] encoding (still read, with no CRC and high id 0). Version 2 lacks the
/// embedding space (still read, space unknown). Version 3 (integers little-endian):
///
/// | offset | size | field                                                        |
/// |--------|------|--------------------------------------------------------------|
/// | 0      | 4    | magic `ESSF`                                                 |
/// | 4      | 2    | file version, 3                                              |
/// | 6      | 8    | highest spool entry id whose embedding is in the sketch      |
/// | 14     | 8    | embedding space ([`crate::select::embedding::Projector::space_id`]) |
/// | 22     | 4    | length `n` of the sketch bytes                               |
/// | 26     | n    | [`Sketch::to_bytes`]                                         |
/// | 26 + n | 4    | CRC-32 (IEEE) of bytes `0 .. 26 + n`                         |
///
/// (Version 2 is the same without the space field: sketch bytes at offset 18.)
pub const FILE_FORMAT_VERSION: u16 = 3;
const FILE_MAGIC: [u8; 4] = *b"ESSF";
const FILE_HEADER_LEN: usize = 26;
const V2_HEADER_LEN: usize = 18;

/// A decoded sketch file (of the kept frames' sketch unless `K` says otherwise).
#[derive(Debug, Clone)]
pub struct SavedSketch<const K: usize = { super::SKETCH_CENTRES }> {
    pub sketch: Sketch<K, EMBED_DIM>,
    /// Highest spool entry id folded into the sketch.
    pub high_id: u64,
    /// The embedding space its centres live in; None for files older than version 3.
    pub space: Option<u64>,
}

/// Encodes a version-3 sketch file.
pub fn sketch_file_bytes<const K: usize>(
    sketch: &Sketch<K, EMBED_DIM>,
    high_id: u64,
    space: u64,
) -> Vec<u8> {
    let body = sketch.to_bytes();
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + body.len() + 4);
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&FILE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&high_id.to_le_bytes());
    out.extend_from_slice(&space.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crate::store::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Decodes a sketch file of the kept frames' sketch (version 3 or 2, or a version-1 bare
/// sketch).
pub fn parse_sketch_file(bytes: &[u8]) -> Result<SavedSketch, SketchError> {
    parse_sketch_file_of(bytes)
}

/// [`parse_sketch_file`] for a sketch of `K` centres.
pub fn parse_sketch_file_of<const K: usize>(bytes: &[u8]) -> Result<SavedSketch<K>, SketchError> {
    if bytes.len() >= 4 && bytes[..4] == FILE_MAGIC {
        if bytes.len() < 6 {
            return Err(SketchError::Invalid(format!(
                "{} bytes is shorter than a sketch file header",
                bytes.len()
            )));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        let header = match version {
            2 => V2_HEADER_LEN,
            FILE_FORMAT_VERSION => FILE_HEADER_LEN,
            _ => {
                return Err(SketchError::Version {
                    expected: FILE_FORMAT_VERSION,
                    found: version,
                })
            }
        };
        if bytes.len() < header + 4 {
            return Err(SketchError::Invalid(format!(
                "{} bytes is shorter than a sketch file header",
                bytes.len()
            )));
        }
        let high_id = le_u64(&bytes[6..14]);
        let space = (version == FILE_FORMAT_VERSION).then(|| le_u64(&bytes[14..22]));
        let l = &bytes[header - 4..header];
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let end = header.saturating_add(len);
        if bytes.len() != end.saturating_add(4) {
            return Err(SketchError::Invalid(format!(
                "{} bytes, the header says {} (truncated?)",
                bytes.len(),
                end.saturating_add(4)
            )));
        }
        let stored =
            u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        let crc = crate::store::crc32(&bytes[..end]);
        if crc != stored {
            return Err(SketchError::Invalid(format!(
                "CRC mismatch: stored {stored:08x}, computed {crc:08x}"
            )));
        }
        let sketch = Sketch::<K, EMBED_DIM>::from_bytes(&bytes[header..end])?;
        return Ok(SavedSketch {
            sketch,
            high_id,
            space,
        });
    }
    Sketch::<K, EMBED_DIM>::from_bytes(bytes).map(|sketch| SavedSketch {
        sketch,
        high_id: 0,
        space: None,
    })
}

/// Reads a sketch saved by an earlier run; None when there is none yet.
pub fn load_sketch(path: &Path) -> Result<Option<FrameSketch>, SketchFileError> {
    load_sketch_file::<{ super::SKETCH_CENTRES }>(path).map(|o| o.map(|s| s.sketch))
}

/// Reads a sketch file with the highest spool id folded into it and its embedding space; None
/// when there is none.
pub fn load_sketch_file<const K: usize>(
    path: &Path,
) -> Result<Option<SavedSketch<K>>, SketchFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            parse_sketch_file_of(&bytes)
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

/// Saves the sketch atomically (temporary file, fsync, rename) with high id 0, in embedding
/// space `space`.
pub fn save_sketch(path: &Path, sketch: &FrameSketch, space: u64) -> Result<(), SketchFileError> {
    save_sketch_at(path, sketch, 0, space)
}

/// Saves the sketch atomically as a version-3 file recording `high_id`, the highest spool
/// entry id whose embedding it holds, and its embedding `space`.
pub fn save_sketch_at<const K: usize>(
    path: &Path,
    sketch: &Sketch<K, EMBED_DIM>,
    high_id: u64,
    space: u64,
) -> Result<(), SketchFileError> {
    let bytes = sketch_file_bytes(sketch, high_id, space);
    crate::util::write_atomic(path, &bytes).map_err(|source| SketchFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn file_round_trip_and_damage_is_detected() {
        let mut sketch = FrameSketch::new();
        let mut p = [0.0f32; crate::select::embedding::EMBED_DIM];
        p[0] = 1.0;
        sketch.insert(&p);
        let bytes = sketch_file_bytes(&sketch, 42, 0xABCD);
        let back = parse_sketch_file(&bytes).expect("decodes");
        assert_eq!((back.sketch.len(), back.high_id), (1, 42));
        assert_eq!(back.space, Some(0xABCD));
        // Version 1 (bare) still reads, space unknown.
        let v1 = parse_sketch_file(&sketch.to_bytes()).expect("v1");
        assert_eq!((v1.high_id, v1.space), (0, None));
        // Version 2: the same without the space field.
        let mut v2 = Vec::new();
        v2.extend_from_slice(&FILE_MAGIC);
        v2.extend_from_slice(&2u16.to_le_bytes());
        v2.extend_from_slice(&7u64.to_le_bytes());
        let body = sketch.to_bytes();
        v2.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v2.extend_from_slice(&body);
        let crc = crate::store::crc32(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let v2 = parse_sketch_file(&v2).expect("v2");
        assert_eq!((v2.sketch.len(), v2.high_id, v2.space), (1, 7, None));
        assert!(parse_sketch_file(&[]).is_err());
        assert!(parse_sketch_file(&bytes[..bytes.len() - 3]).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(parse_sketch_file(&bad).is_err(), "flip at {i} undetected");
        }
    }
}
