//! Store stage: where kept frames go.
//!
//! [`record`] is what is stored of a kept frame (its detections as pre-annotations, scores,
//! embedding, reasons); [`spool`] is the crash-safe on-disk queue that holds kept frames until
//! they are uploaded. Every destination implements [`Sink`], so the job loop does not know which
//! one it feeds; [`Discard`] stores nothing, for the evaluation and benchmarks.
//!
//! The spool's parts are private modules of this one: `format` (the record file format and entry
//! file names), `index` (the in-memory index and the eviction policy), `fsio` (atomic writes,
//! directory fsync, free space) and `jpeg` (encoding with downscaling).

pub mod context;
mod format;
mod fsio;
mod index;
mod jpeg;
pub mod record;
pub mod spool;

use std::fmt;

use serde::Serialize;

use crate::source::Frame;
use context::ContextSet;
pub use format::crc32;
pub use index::RejectReason;
pub use jpeg::dimensions as jpeg_dimensions;
use record::KeptRecord;

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename, directory
/// fsync), as the spool writes its own files; for the files its users keep beside it.
pub fn write_file_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), spool::SpoolError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    fsio::write_atomic(dir, path, bytes)
}

/// A destination for kept frames.
pub trait Sink {
    /// Stores `frame` (RGB8) with its `record` and its `context` frames as one entry.
    /// `Ok(Rejected)` when the sink declines it (a budget, a bound); `Err` when it failed, in
    /// which case nothing of the frame is stored.
    fn put(
        &mut self,
        record: &KeptRecord,
        frame: &Frame,
        context: &ContextSet,
    ) -> Result<PutOutcome, StoreError>;
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PutOutcome {
    /// Stored as entry `id` taking `bytes` on disk (JPEG + record), after evicting `evicted`
    /// lower-valued entries.
    Stored { id: u64, bytes: u64, evicted: usize },
    /// Not stored; the spool is unchanged.
    Rejected { reason: RejectReason },
}

impl PutOutcome {
    /// The id of the stored entry, if stored.
    pub fn id(&self) -> Option<u64> {
        match self {
            PutOutcome::Stored { id, .. } => Some(*id),
            PutOutcome::Rejected { .. } => None,
        }
    }
}

/// Keeps nothing and stores every frame in 0 bytes: the evaluation and benchmarks measure the
/// selection, not the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Sink for Discard {
    fn put(
        &mut self,
        _record: &KeptRecord,
        _frame: &Frame,
        _context: &ContextSet,
    ) -> Result<PutOutcome, StoreError> {
        Ok(PutOutcome::Stored {
            id: 0,
            bytes: 0,
            evicted: 0,
        })
    }
}

impl Sink for spool::Spool {
    fn put(
        &mut self,
        record: &KeptRecord,
        frame: &Frame,
        context: &ContextSet,
    ) -> Result<PutOutcome, StoreError> {
        let (rgb, w, h) = (&frame.rgb, frame.width, frame.height);
        self.put_with_context(record, rgb, w, h, context)
            .map_err(StoreError::Spool)
    }
}

/// Why a sink failed.
#[derive(Debug)]
pub enum StoreError {
    Spool(spool::SpoolError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Spool(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Spool(e) => e.source(),
        }
    }
}
