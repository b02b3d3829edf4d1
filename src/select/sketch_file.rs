//! The sketch on disk, so that what earlier runs kept still counts as seen: `sketch.bin` in the
//! spool directory, written atomically (temporary file, fsync, rename).

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::sketch::SketchError;
use super::FrameSketch;

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
