//! Spool stage: the kept frames, on disk, until the uploader has taken them.
//!
//! Each entry is two files in the spool directory (three with context frames), named by a
//! sequence number that only grows, also across restarts:
//!
//! * `<id:012>.jpg`: the frame as a baseline JPEG (quality [`SpoolConfig::jpeg_quality`], longest
//!   side at most [`SpoolConfig::max_side`]; larger frames are downscaled keeping the aspect ratio,
//!   so the record's boxes, which are in frame pixels, scale by `jpeg width / record.width`).
//! * `<id:012>.rec`: the [`KeptRecord`], postcard-encoded between a 24-byte header (magic `ESRC`,
//!   format version [`RECORD_FORMAT_VERSION`], payload length, the length and CRC-32 of the
//!   entry's JPEG) and a CRC-32 trailer of everything before it. The byte layout is documented
//!   next to its code, in `src/store/format.rs`.
//! * `<id:012>.ctx`, when the entry has context frames (`[context]`): their JPEGs back to back;
//!   the record lists each one's offset, frame, time, length and CRC-32.
//!
//! The files are written atomically: to `.tmp-<name>` in the spool directory, fsync, rename into
//! place, fsync the directory. The JPEG and the context file go first; the record's presence marks
//! the entry complete. Removal (ack, eviction, quarantine) goes the other way: record, then JPEG
//! and context file, then a directory fsync: context frames never outlive their kept frame.
//! A third file, `next-id`, holds the next sequence number once the newest entry has been acked,
//! so an id is never handed out twice even when the spool was emptied before a restart.
//!
//! On open the spool recovers from a crash: `.tmp-*` files and JPEGs or context files without a
//! record are removed (`discarded_partial`). Nothing that might be good is deleted: entries whose
//! record fails to decode or whose JPEG or context file is missing, of the wrong length or fails
//! its CRC-32 are moved, all their files, to `quarantine/` in the spool directory (`discarded_corrupt`), each file with a
//! `NAME.reason` text file saying why, and a warning naming it; so are stray files named like
//! entries but not entries (`18446744073709551615.jpg`: entry names are exactly 12 digits, ids
//! at most [`MAX_ID`]) and an unreadable or out-of-range `next-id`. `quarantined` counts the
//! files moved. Entry-named things that are not regular files (a directory) are skipped with a
//! warning; their id is never handed out.
//!
//! Ids never wrap: past [`MAX_ID`], `put` fails with [`SpoolError::IdsExhausted`].
//!
//! Size bound: [`SpoolConfig::max_bytes`] bounds the sum of the entries' file sizes. When a new
//! entry would exceed it, the lowest-valued entries (`scores.value`) are evicted, but only entries
//! valued strictly lower than the new one: if making room would need a better or equal entry to go,
//! the new frame is refused instead. The new entry is written before the victims are removed, so a
//! failed put loses nothing; the bound can thus be exceeded by one entry for the span of a put.
//!
//! Free space: the spool also leaves [`SpoolConfig::min_free_bytes`] free on its filesystem
//! (statvfs before each put): the working bound is `min(max_bytes, spool bytes + available −
//! min_free_bytes)`, with the same value-ordered eviction; a frame that does not fit even then is
//! refused ([`RejectReason::DiskSpace`]). Other writers can still fill the disk between the check
//! and the write: that surfaces as [`SpoolError::DiskFull`] from `put`, with nothing partial left
//! behind.
//!
//! One process owns a spool directory at a time: [`Spool::open`] takes an exclusive `flock` on
//! `.lock` in the directory (writing its pid there) and holds it for the spool's life; a second
//! open fails with [`SpoolError::Locked`] naming the holder. [`Spool::read_records`] (inspect)
//! only reads and takes no lock.
//!
//! This file is the spool itself (open and recovery, put, ack, read); its parts are siblings:
//! `format.rs` (record file format, entry names), `index.rs` (the in-memory index and the eviction
//! policy), `fsio.rs` (atomic writes, directory fsync, free space) and `jpeg.rs` (encoding).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{
    crc32, decode_record, encode_record, entry_file_name, is_stray_entry_name, parse_entry_name,
    DecodedRecord, CTX_EXT, JPG_EXT, REC_EXT,
};
use super::fsio::{self, available_bytes, io_error, remove_if_exists, TMP_PREFIX};
use super::index::{value_key, Entry, Index};
use super::jpeg;
use crate::config::KeyError;
use crate::store::context::ContextSet;
use crate::store::record::{ContextFrame, KeptRecord};

pub use super::format::{MAX_ID, RECORD_FORMAT_VERSION};
pub use super::index::RejectReason;
pub use super::PutOutcome;

const NEXT_ID_FILE: &str = "next-id";
/// Where recovery moves what it cannot use but must not delete.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Extension of the text file next to a quarantined file saying why it is there.
const REASON_EXT: &str = "reason";
const FIRST_ID: u64 = 1;

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Bound on the total size of the spooled files, in bytes.
    pub max_bytes: u64,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// Longest side of the stored JPEG; larger frames are downscaled keeping their aspect ratio.
    pub max_side: u32,
    /// Free space to leave on the spool's filesystem, in bytes (0 = fill it up to `max_bytes`).
    pub min_free_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 2 << 30,
            jpeg_quality: 90,
            max_side: 1920,
            min_free_bytes: 256 << 20,
        }
    }
}

impl SpoolConfig {
    /// Checks the values, naming the first bad key.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |key: &str, message: String| Err(KeyError::new(key, message));
        if self.max_bytes == 0 {
            return bad("max_bytes", "must be greater than 0".into());
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(
                "jpeg_quality",
                format!("must be in 1..=100, got {}", self.jpeg_quality),
            );
        }
        if !(16..=65535).contains(&self.max_side) {
            return bad(
                "max_side",
                format!("must be in 16..=65535, got {}", self.max_side),
            );
        }
        Ok(())
    }
}

/// Spool failures. I/O variants carry the path they concern.
#[derive(Debug)]
pub enum SpoolError {
    /// A configuration value is out of range.
    Config(KeyError),
    /// An I/O error other than a full disk.
    Io { path: PathBuf, source: io::Error },
    /// The filesystem holding the spool is full (ENOSPC).
    DiskFull {
        dir: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    /// A spool file does not decode or does not match its record.
    Corrupt { path: PathBuf, reason: String },
    /// No entry with this id is in the spool.
    NotFound { id: u64 },
    /// The RGB buffer does not match the given size.
    InvalidFrame { message: String },
    /// JPEG or record encoding failed.
    Encode { message: String },
    /// Another process has the spool open (it holds the lock on `dir/.lock`).
    Locked { dir: PathBuf, pid: Option<u32> },
    /// The spool path exists and is not a directory.
    NotADirectory { path: PathBuf },
    /// Every entry id up to [`MAX_ID`] has been handed out; ids never wrap around.
    IdsExhausted { dir: PathBuf },
}

impl SpoolError {
    /// True for [`SpoolError::DiskFull`].
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SpoolError::DiskFull { .. })
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Config(e) => write!(f, "spool.{e}"),
            SpoolError::Io { path, source } => {
                write!(f, "spool I/O error on {}: {source}", path.display())
            }
            SpoolError::DiskFull { dir, path, source } => write!(
                f,
                "spool disk full at {}: writing {}: {source}",
                dir.display(),
                path.display()
            ),
            SpoolError::Corrupt { path, reason } => {
                write!(f, "corrupt spool file {}: {reason}", path.display())
            }
            SpoolError::NotFound { id } => write!(f, "spool entry {id:012} not found"),
            SpoolError::InvalidFrame { message } => write!(f, "invalid frame for spool: {message}"),
            SpoolError::Encode { message } => write!(f, "spool encoding failed: {message}"),
            SpoolError::Locked { dir, pid } => {
                write!(f, "spool {} is in use by ", dir.display())?;
                match pid {
                    Some(pid) => write!(f, "process {pid}")?,
                    None => write!(f, "another process")?,
                }
                write!(f, "; one process per spool")
            }
            SpoolError::NotADirectory { path } => write!(
                f,
                "spool path {} exists and is not a directory",
                path.display()
            ),
            SpoolError::IdsExhausted { dir } => write!(
                f,
                "spool {}: entry ids exhausted (the highest is {MAX_ID}); ids never wrap",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Io { source, .. } | SpoolError::DiskFull { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What opening the spool found and cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RecoveryReport {
    /// Complete entries kept.
    pub kept: usize,
    /// Files of interrupted writes removed: `.tmp-*` files and JPEGs without a record.
    pub discarded_partial: usize,
    /// Entries taken out of the spool (into `quarantine/`) because the record failed to decode
    /// or did not match its JPEG.
    pub discarded_corrupt: usize,
    /// Files moved to `quarantine/` (damaged entries' files, stray files, a bad `next-id`).
    pub quarantined: usize,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries kept, {} partial files and {} corrupt entries discarded, {} files quarantined",
            self.kept, self.discarded_partial, self.discarded_corrupt, self.quarantined
        )
    }
}

/// Spool counters; `evicted` and `rejected` count since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SpoolStats {
    pub entries: usize,
    /// Sum of the entries' file sizes.
    pub bytes: u64,
    pub evicted: u64,
    pub rejected: u64,
}

/// The on-disk spool of kept frames.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    index: Index,
    next_id: u64,
    persisted_next_id: u64,
    evicted: u64,
    rejected: u64,
    recovery: RecoveryReport,
    jpeg_buf: Vec<u8>,
    rec_buf: Vec<u8>,
    /// Bytes available to unprivileged writers on the spool's filesystem (None: unknown).
    free_space: fn(&Path) -> Option<u64>,
    /// The open `.lock` file whose `flock` makes this process the spool's only user.
    _lock: fs::File,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers from an interrupted run;
    /// the report says what recovery found (also kept as [`Spool::recovery_report`]).
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<(Spool, RecoveryReport), SpoolError> {
        config.validate().map_err(SpoolError::Config)?;
        let dir = dir.to_path_buf();
        ensure_dir(&dir)?;
        let lock = fsio::lock_dir(&dir)?;

        let mut report = RecoveryReport::default();
        let mut removed_any = false;
        let mut records = BTreeSet::new();
        // JPEGs and context files: (id, extension).
        let mut attachments = BTreeSet::new();
        let mut strays = Vec::new();
        let mut highest: Option<u64> = None;
        for item in fs::read_dir(&dir).map_err(|e| io_error(&dir, &dir, e))? {
            let item = item.map_err(|e| io_error(&dir, &dir, e))?;
            let path = item.path();
            let is_file = item
                .file_type()
                .map_err(|e| io_error(&dir, &path, e))?
                .is_file();
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_file {
                if let Some((id, _)) = parse_entry_name(name) {
                    // Never handed out again, so no put trips over it.
                    highest = highest.max(Some(id));
                    log::warn!(
                        "spool: ignoring {}: named like an entry but not a regular file",
                        path.display()
                    );
                }
                continue;
            }
            if name.starts_with(TMP_PREFIX) {
                remove_if_exists(&path).map_err(|e| io_error(&dir, &path, e))?;
                log::warn!("spool: removed interrupted write {}", path.display());
                report.discarded_partial += 1;
                removed_any = true;
                continue;
            }
            if let Some((id, ext)) = parse_entry_name(name) {
                highest = highest.max(Some(id));
                if ext == REC_EXT {
                    records.insert(id);
                } else {
                    attachments.insert((id, ext));
                }
            } else if is_stray_entry_name(name) {
                strays.push(name.to_string());
            }
        }
        for name in &strays {
            let reason = format!(
                "named like a spool entry but entry names are exactly 12 digits (ids 1..={MAX_ID})"
            );
            if quarantine(&dir, name, &reason) {
                report.quarantined += 1;
            }
        }

        let mut spool = Spool {
            dir,
            config,
            index: Index::default(),
            next_id: FIRST_ID,
            persisted_next_id: 0,
            evicted: 0,
            rejected: 0,
            recovery: RecoveryReport::default(),
            jpeg_buf: Vec::new(),
            rec_buf: Vec::new(),
            free_space: available_bytes,
            _lock: lock,
        };
        match spool.read_next_id_file() {
            Ok(next) => spool.persisted_next_id = next,
            Err(reason) => {
                log::warn!(
                    "spool: {reason}; ids continue after the highest entry ({})",
                    highest.map_or(0, |h| h)
                );
                if quarantine(&spool.dir, NEXT_ID_FILE, &reason) {
                    report.quarantined += 1;
                }
            }
        }
        // `highest` is at most MAX_ID (entry names are 12 digits): no overflow.
        spool.next_id = highest
            .map_or(FIRST_ID, |h| h + 1)
            .max(spool.persisted_next_id)
            .max(FIRST_ID);

        for &(id, ext) in attachments.iter().filter(|(id, _)| !records.contains(id)) {
            let path = spool.entry_path(id, ext);
            remove_if_exists(&path).map_err(|e| spool.io_error(&path, e))?;
            log::warn!(
                "spool: removed {} without record {} (interrupted write)",
                if ext == JPG_EXT {
                    "JPEG"
                } else {
                    "context file"
                },
                path.display()
            );
            report.discarded_partial += 1;
            removed_any = true;
        }
        for &id in &records {
            match spool.check_entry(id)? {
                Ok(entry) => spool.index.insert(id, entry),
                Err(reason) => {
                    let rec = spool.entry_path(id, REC_EXT);
                    log::warn!(
                        "spool: quarantining damaged entry {}: {reason}",
                        rec.display()
                    );
                    for ext in [REC_EXT, JPG_EXT, CTX_EXT] {
                        let name = entry_file_name(id, ext);
                        if spool.dir.join(&name).exists()
                            && quarantine(&spool.dir, &name, &format!("entry {id:012}: {reason}"))
                        {
                            report.quarantined += 1;
                        }
                    }
                    report.discarded_corrupt += 1;
                    removed_any = true;
                }
            }
        }
        if removed_any {
            spool.sync_dir()?;
        }
        report.kept = spool.index.len();
        spool.recovery = report;
        log::info!(
            "spool {}: {} entries, {} bytes; recovery removed {} partial, took out {} corrupt, quarantined {} files",
            spool.dir.display(),
            report.kept,
            spool.index.bytes(),
            report.discarded_partial,
            report.discarded_corrupt,
            report.quarantined
        );
        Ok((spool, report))
    }

    /// Reads the records of the complete entries in `dir`, oldest first, without changing
    /// anything and without the lock (for `edgesieve inspect`): records that fail to decode or
    /// whose JPEG is missing or fails its length or CRC-32 check are skipped with a warning, as
    /// are entry names that are not regular files.
    pub fn read_records(dir: &Path) -> Result<Vec<(u64, KeptRecord)>, SpoolError> {
        Ok(Self::read_entries(dir)?
            .into_iter()
            .map(|(id, record, _)| (id, record))
            .collect())
    }

    /// [`Spool::read_records`] with each entry's context frames.
    pub fn read_entries(
        dir: &Path,
    ) -> Result<Vec<(u64, KeptRecord, Vec<ContextFrame>)>, SpoolError> {
        let mut ids = BTreeSet::new();
        for item in fs::read_dir(dir).map_err(|e| io_error(dir, dir, e))? {
            let item = item.map_err(|e| io_error(dir, dir, e))?;
            if let Some((id, REC_EXT)) = item.file_name().to_str().and_then(parse_entry_name) {
                if item.file_type().is_ok_and(|t| t.is_file()) {
                    ids.insert(id);
                } else {
                    log::warn!(
                        "spool: skipping {}: not a regular file",
                        item.path().display()
                    );
                }
            }
        }
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = dir.join(entry_file_name(id, REC_EXT));
            let bytes = match fs::read(&rec) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(dir, &rec, e)),
            };
            let decoded = match decode_record(&bytes) {
                Ok(decoded) => decoded,
                Err(reason) => {
                    log::warn!("spool: skipping corrupt record {}: {reason}", rec.display());
                    continue;
                }
            };
            match check_files(dir, id, &decoded) {
                Ok(()) => records.push((id, decoded.record, decoded.context)),
                Err(reason) => log::warn!("spool: skipping {}: {reason}", rec.display()),
            }
        }
        Ok(records)
    }

    /// The JPEG file of entry `id` in the spool directory `dir` (for readers without the lock,
    /// such as `edgesieve export`, after [`Spool::read_records`] checked it).
    pub fn jpeg_path(dir: &Path, id: u64) -> PathBuf {
        dir.join(entry_file_name(id, JPG_EXT))
    }

    /// The context file of entry `id` in the spool directory `dir` (see [`Spool::jpeg_path`]).
    pub fn context_path(dir: &Path, id: u64) -> PathBuf {
        dir.join(entry_file_name(id, CTX_EXT))
    }

    /// The files in `dir/quarantine/` with the reason each was put there, by name (for
    /// `edgesieve inspect`); empty when there is no quarantine.
    pub fn read_quarantine(dir: &Path) -> Result<Vec<(String, String)>, SpoolError> {
        let qdir = dir.join(QUARANTINE_DIR);
        let items = match fs::read_dir(&qdir) {
            Ok(items) => items,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(dir, &qdir, e)),
        };
        let mut out = Vec::new();
        for item in items {
            let item = item.map_err(|e| io_error(dir, &qdir, e))?;
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) || name.ends_with(&format!(".{REASON_EXT}")) {
                continue;
            }
            let reason = fs::read_to_string(qdir.join(format!("{name}.{REASON_EXT}")))
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|_| "(no reason recorded)".into());
            out.push((name, reason));
        }
        out.sort();
        Ok(out)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings the spool was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// What opening the spool found and cleaned.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.recovery
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            entries: self.index.len(),
            bytes: self.index.bytes(),
            evicted: self.evicted,
            rejected: self.rejected,
        }
    }

    /// Stores a kept frame: `rgb` is `width * height` RGB8 pixels, row-major.
    ///
    /// On `Err` nothing of this frame is left on disk and every stored entry is intact.
    pub fn put(
        &mut self,
        record: &KeptRecord,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<PutOutcome, SpoolError> {
        self.put_with_context(record, rgb, width, height, &ContextSet::EMPTY)
    }

    /// [`Spool::put`] with the kept frame's context frames (already JPEG): one entry, all or
    /// nothing, its bytes counted in the bounds together.
    pub fn put_with_context(
        &mut self,
        record: &KeptRecord,
        rgb: &[u8],
        width: u32,
        height: u32,
        context: &ContextSet,
    ) -> Result<PutOutcome, SpoolError> {
        if self.next_id > MAX_ID {
            return Err(SpoolError::IdsExhausted {
                dir: self.dir.clone(),
            });
        }
        let (max_side, quality) = (self.config.max_side, self.config.jpeg_quality);
        jpeg::encode(&mut self.jpeg_buf, rgb, width, height, max_side, quality)?;
        encode_record(&mut self.rec_buf, record, &self.jpeg_buf, &context.frames)?;
        let new_bytes = (self.jpeg_buf.len() + self.rec_buf.len() + context.jpegs.len()) as u64;
        let key = value_key(record.scores.value);
        let plan = self.index.plan_eviction(
            key,
            new_bytes,
            self.config.max_bytes,
            self.config.min_free_bytes,
            || (self.free_space)(&self.dir),
        );
        let victims = match plan {
            Ok(victims) => victims,
            Err(reason) => {
                self.rejected += 1;
                return Ok(PutOutcome::Rejected { reason });
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.write_entry(id, &context.jpegs)?;
        self.index.insert(
            id,
            Entry {
                key,
                bytes: new_bytes,
            },
        );
        let evicted = self.evict(&victims);
        Ok(PutOutcome::Stored {
            id,
            bytes: new_bytes,
            evicted,
        })
    }

    /// Removes an uploaded entry. Returns false if it was not (or no longer) in the spool.
    pub fn ack(&mut self, id: u64) -> Result<bool, SpoolError> {
        if !self.index.contains(id) {
            return Ok(false);
        }
        self.persist_next_id_before_removing(id)?;
        self.remove_files(id)?;
        self.index.forget(id);
        self.sync_dir()?;
        Ok(true)
    }

    /// Removing the newest entry would let a restart hand its id out again: persist the next id
    /// first.
    fn persist_next_id_before_removing(&mut self, id: u64) -> Result<(), SpoolError> {
        if self.index.newest() == Some(id) && self.persisted_next_id < self.next_id {
            self.write_next_id_file(self.next_id)?;
        }
        Ok(())
    }

    /// Ids of the stored entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.ids()
    }

    /// Ids of the stored entries in upload order: highest value first, then newest.
    pub fn upload_order(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.ids_by_value()
    }

    /// Moves entry `id` (record and JPEG) to the quarantine with `reason` (the backend rejected
    /// it, say): it leaves the queue but is kept, and `edgesieve inspect` lists it. Returns false
    /// if the entry was not (or no longer) in the spool.
    pub fn quarantine_entry(&mut self, id: u64, reason: &str) -> Result<bool, SpoolError> {
        if !self.index.contains(id) {
            return Ok(false);
        }
        self.persist_next_id_before_removing(id)?;
        let rec = entry_file_name(id, REC_EXT);
        if !quarantine(&self.dir, &rec, reason) {
            // Still in place and in the index: nothing changed.
            return Err(SpoolError::Corrupt {
                path: self.dir.join(rec),
                reason: format!("could not be moved to the quarantine ({reason})"),
            });
        }
        self.index.forget(id);
        for ext in [JPG_EXT, CTX_EXT] {
            let name = entry_file_name(id, ext);
            if self.dir.join(&name).exists() {
                quarantine(&self.dir, &name, reason);
            }
        }
        Ok(true)
    }

    /// Reads an entry: its record and its JPEG (checked against the record's length and CRC).
    pub fn read(&self, id: u64) -> Result<(KeptRecord, Vec<u8>), SpoolError> {
        let decoded = self.read_record_file(id)?;
        let path = self.entry_path(id, JPG_EXT);
        let jpeg = fs::read(&path).map_err(|e| self.io_error(&path, e))?;
        if jpeg.len() as u64 != decoded.jpeg_len || crc32(&jpeg) != decoded.jpeg_crc {
            return Err(SpoolError::Corrupt {
                path,
                reason: format!(
                    "JPEG ({} bytes) does not match its record ({} bytes, CRC {:08x})",
                    jpeg.len(),
                    decoded.jpeg_len,
                    decoded.jpeg_crc
                ),
            });
        }
        Ok((decoded.record, jpeg))
    }

    /// Reads an entry's context frames: their list and their JPEGs back to back (each checked
    /// against its length and CRC); empty for an entry without context.
    pub fn read_context(&self, id: u64) -> Result<(Vec<ContextFrame>, Vec<u8>), SpoolError> {
        let decoded = self.read_record_file(id)?;
        if decoded.context.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let path = self.entry_path(id, CTX_EXT);
        let bytes = fs::read(&path).map_err(|e| self.io_error(&path, e))?;
        check_context_bytes(&bytes, &decoded)
            .map_err(|reason| SpoolError::Corrupt { path, reason })?;
        Ok((decoded.context, bytes))
    }

    /// Every stored record, oldest first.
    pub fn iter_records(&self) -> impl Iterator<Item = Result<(u64, KeptRecord), SpoolError>> + '_ {
        self.index
            .ids()
            .map(move |id| self.read_record_file(id).map(|d| (id, d.record)))
    }

    fn entry_path(&self, id: u64, ext: &str) -> PathBuf {
        self.dir.join(entry_file_name(id, ext))
    }

    fn io_error(&self, path: &Path, e: io::Error) -> SpoolError {
        io_error(&self.dir, path, e)
    }

    fn read_record_file(&self, id: u64) -> Result<DecodedRecord, SpoolError> {
        if !self.index.contains(id) {
            return Err(SpoolError::NotFound { id });
        }
        let path = self.entry_path(id, REC_EXT);
        let bytes = fs::read(&path).map_err(|e| self.io_error(&path, e))?;
        decode_record(&bytes).map_err(|reason| SpoolError::Corrupt { path, reason })
    }

    /// Loads entry `id` for the index; the inner `Err` is why it is corrupt.
    fn check_entry(&self, id: u64) -> Result<Result<Entry, String>, SpoolError> {
        let rec_path = self.entry_path(id, REC_EXT);
        let bytes = fs::read(&rec_path).map_err(|e| self.io_error(&rec_path, e))?;
        let decoded = match decode_record(&bytes) {
            Ok(d) => d,
            Err(reason) => return Ok(Err(reason)),
        };
        if let Err(reason) = check_files(&self.dir, id, &decoded) {
            return Ok(Err(reason));
        }
        Ok(Ok(Entry {
            key: value_key(decoded.record.scores.value),
            bytes: bytes.len() as u64 + decoded.jpeg_len + decoded.context_len(),
        }))
    }

    fn evict(&mut self, victims: &[u64]) -> usize {
        let mut evicted = 0;
        for &id in victims {
            match self.remove_files(id) {
                Ok(()) => {
                    self.index.forget(id);
                    self.evicted += 1;
                    evicted += 1;
                }
                Err(e) => {
                    log::warn!("spool: eviction of entry {id:012} failed: {e}");
                    break;
                }
            }
        }
        if evicted > 0 {
            if let Err(e) = self.sync_dir() {
                log::warn!("spool: {e}");
            }
        }
        evicted
    }

    /// Removes an entry's files, record first. After `Ok` the entry is gone (a JPEG that
    /// could not be removed is an orphan that the next open cleans).
    fn remove_files(&self, id: u64) -> Result<(), SpoolError> {
        let rec = self.entry_path(id, REC_EXT);
        remove_if_exists(&rec).map_err(|e| self.io_error(&rec, e))?;
        for ext in [JPG_EXT, CTX_EXT] {
            let path = self.entry_path(id, ext);
            if let Err(e) = remove_if_exists(&path) {
                log::warn!("spool: could not remove {}: {e}", path.display());
            }
        }
        Ok(())
    }

    /// Writes the encoded JPEG, the context file (`context`, when not empty) and the record of
    /// entry `id`, in that order, or nothing.
    fn write_entry(&self, id: u64, context: &[u8]) -> Result<(), SpoolError> {
        let jpg = self.entry_path(id, JPG_EXT);
        let ctx = self.entry_path(id, CTX_EXT);
        let rec = self.entry_path(id, REC_EXT);
        let result = fsio::write_atomic(&self.dir, &jpg, &self.jpeg_buf)
            .and_then(|()| {
                if context.is_empty() {
                    Ok(())
                } else {
                    fsio::write_atomic(&self.dir, &ctx, context)
                }
            })
            .and_then(|()| self.sync_dir())
            .and_then(|()| fsio::write_atomic(&self.dir, &rec, &self.rec_buf))
            .and_then(|()| self.sync_dir());
        if let Err(e) = result {
            for path in [&rec, &ctx, &jpg] {
                let _ = remove_if_exists(path);
            }
            let _ = self.sync_dir();
            return Err(e);
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        fsio::sync_dir(&self.dir)
    }

    /// The persisted next id (0 when there is none); `Err` says why the file is unusable (it is
    /// then quarantined). `MAX_ID + 1` is valid: every id was handed out.
    fn read_next_id_file(&self) -> Result<u64, String> {
        let path = self.dir.join(NEXT_ID_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) if n <= MAX_ID + 1 => Ok(n),
                Ok(n) => Err(format!(
                    "{} holds {n}, above the highest id {MAX_ID}",
                    path.display()
                )),
                Err(_) => Err(format!("{} does not hold a number", path.display())),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => {
                log::warn!("spool: ignoring {}: {e}", path.display());
                Ok(0)
            }
        }
    }

    fn write_next_id_file(&mut self, next: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(NEXT_ID_FILE);
        fsio::write_atomic(&self.dir, &path, format!("{next}\n").as_bytes())?;
        self.sync_dir()?;
        self.persisted_next_id = next;
        Ok(())
    }
}

/// Creates the spool directory if needed; a file (or anything not a directory) in its place is
/// [`SpoolError::NotADirectory`].
fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    let not_a_dir = || SpoolError::NotADirectory {
        path: dir.to_path_buf(),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(not_a_dir()),
        Err(_) => {}
    }
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(_) if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) => Err(not_a_dir()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(20) => {
            // EEXIST or ENOTDIR: a file where a parent directory should be.
            Err(SpoolError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(
                    e.kind(),
                    format!(
                        "a path component of {} is not a directory: {e}",
                        dir.display()
                    ),
                ),
            })
        }
        Err(e) => Err(io_error(dir, dir, e)),
    }
}

/// Checks the JPEG at `path` against its record (length, CRC-32); `Err` says what is wrong.
/// Checks entry `id`'s JPEG and context file in `dir` against its record.
fn check_files(dir: &Path, id: u64, decoded: &DecodedRecord) -> Result<(), String> {
    check_jpeg(&dir.join(entry_file_name(id, JPG_EXT)), decoded)?;
    if decoded.context.is_empty() {
        return Ok(());
    }
    let path = dir.join(entry_file_name(id, CTX_EXT));
    match fs::read(&path) {
        Ok(bytes) => check_context_bytes(&bytes, decoded),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("its context file is missing".into()),
        Err(e) => Err(format!(
            "its context file {} cannot be read: {e}",
            path.display()
        )),
    }
}

/// Checks a context file's bytes against the lengths and CRCs its record lists.
fn check_context_bytes(bytes: &[u8], decoded: &DecodedRecord) -> Result<(), String> {
    if bytes.len() as u64 != decoded.context_len() {
        return Err(format!(
            "its context file is {} bytes, the record says {}",
            bytes.len(),
            decoded.context_len()
        ));
    }
    let mut at = 0usize;
    for c in &decoded.context {
        let jpeg = &bytes[at..at + c.jpeg_len as usize];
        at += c.jpeg_len as usize;
        let crc = crc32(jpeg);
        if crc != c.jpeg_crc {
            return Err(format!(
                "context frame {:+} ({}): CRC-32 {crc:08x}, the record says {:08x}",
                c.offset, c.frame_name, c.jpeg_crc
            ));
        }
    }
    Ok(())
}

fn check_jpeg(path: &Path, decoded: &DecodedRecord) -> Result<(), String> {
    let jpeg = match fs::read(path) {
        Ok(jpeg) => jpeg,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("its JPEG is missing".into()),
        Err(e) => return Err(format!("its JPEG {} cannot be read: {e}", path.display())),
    };
    if jpeg.len() as u64 != decoded.jpeg_len {
        return Err(format!(
            "its JPEG is {} bytes, the record says {}",
            jpeg.len(),
            decoded.jpeg_len
        ));
    }
    let crc = crc32(&jpeg);
    if crc != decoded.jpeg_crc {
        return Err(format!(
            "its JPEG's CRC-32 is {crc:08x}, the record says {:08x}",
            decoded.jpeg_crc
        ));
    }
    Ok(())
}

/// Moves the file `name` of the spool directory `dir` to its quarantine with `reason` (see
/// [`Spool::read_quarantine`]); true when moved. For files the spool's users keep beside it
/// (the sketch).
pub fn quarantine_file(dir: &Path, name: &str, reason: &str) -> bool {
    quarantine(dir, name, reason)
}

/// Moves `dir/name` to `dir/quarantine/` (under a fresh name if taken) with a `.reason` file
/// beside it; true when moved. Failures are warnings: the file then stays where it is, unused
/// (never deleted).
fn quarantine(dir: &Path, name: &str, reason: &str) -> bool {
    let qdir = dir.join(QUARANTINE_DIR);
    if let Err(e) = fs::create_dir_all(&qdir) {
        log::warn!("spool: cannot quarantine {name}: {}: {e}", qdir.display());
        return false;
    }
    let mut target = name.to_string();
    let mut n = 1;
    while qdir.join(&target).exists() || qdir.join(format!("{target}.{REASON_EXT}")).exists() {
        target = format!("{name}.{n}");
        n += 1;
    }
    let reason_path = qdir.join(format!("{target}.{REASON_EXT}"));
    if let Err(e) = fsio::write_atomic(&qdir, &reason_path, format!("{reason}\n").as_bytes()) {
        log::warn!("spool: {e} (quarantining {name} without its reason)");
    }
    let from = dir.join(name);
    if let Err(e) = fs::rename(&from, qdir.join(&target)) {
        log::warn!(
            "spool: cannot move {} to quarantine: {e}; left in place, unused",
            from.display()
        );
        let _ = fs::remove_file(&reason_path);
        return false;
    }
    let _ = fsio::sync_dir(&qdir);
    let _ = fsio::sync_dir(dir);
    log::warn!(
        "spool: quarantined {} as {}: {reason}",
        from.display(),
        qdir.join(&target).display()
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::HEADER_LEN;
    use crate::store::jpeg::fit_within;
    use crate::store::record::{FrameScores, Reason, StoredDetection};
    use crate::util::testing::TempDir;

    fn record(index: u64, value: f32) -> KeptRecord {
        KeptRecord {
            frame_index: index,
            frame_name: format!("{index:06}.jpg"),
            source: "frames/".into(),
            timestamp_ms: 1_700_000_000_000 + index,
            width: 64,
            height: 48,
            model: "yolox-nano".into(),
            detections: vec![StoredDetection {
                class_id: 2,
                class_name: "car".into(),
                score: 0.7,
                objectness: 0.9,
                bbox: [1.0, 2.0, 30.0, 40.0],
                class_probs: vec![0.1, 0.2, 0.7],
            }],
            scores: FrameScores {
                uncertainty: 0.4,
                novelty: 0.3,
                value,
                threshold: 0.2,
            },
            embedding: vec![0.25; 16],
            reasons: vec![Reason::Value, Reason::ClassTrigger(2)],
        }
    }

    fn frame(width: u32, height: u32) -> Vec<u8> {
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[(x * 4) as u8, (y * 5) as u8, ((x + y) * 3) as u8]);
            }
        }
        rgb
    }

    fn put(spool: &mut Spool, value: f32) -> PutOutcome {
        spool
            .put(&record(0, value), &frame(64, 48), 64, 48)
            .expect("put")
    }

    /// The outcome of storing one 64x48 entry as `id` after `evicted` evictions.
    fn stored(id: u64, evicted: usize) -> PutOutcome {
        PutOutcome::Stored {
            id,
            bytes: entry_bytes(),
            evicted,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != crate::store::fsio::LOCK_FILE && n != QUARANTINE_DIR)
            .collect();
        names.sort();
        names
    }

    /// Size of one 64x48 entry as `put` writes it.
    fn entry_bytes() -> u64 {
        let tmp = TempDir::new("size");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        put(&mut spool, 0.5);
        spool.stats().bytes
    }

    fn values(spool: &Spool) -> Vec<f32> {
        spool
            .iter_records()
            .map(|r| r.expect("record").1.scores.value)
            .collect()
    }

    #[test]
    fn round_trip() {
        let tmp = TempDir::new("roundtrip");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        let rec = record(7, 0.6);
        let outcome = spool.put(&rec, &frame(64, 48), 64, 48).expect("put");
        assert_eq!(outcome, stored(1, 0));
        assert_eq!(spool.pending().collect::<Vec<_>>(), vec![1]);
        let (back, jpeg) = spool.read(1).expect("read");
        assert_eq!(back, rec);
        let img = image::load_from_memory(&jpeg).expect("jpeg decodes");
        assert_eq!((img.width(), img.height()), (64, 48));
        let on_disk: u64 = ["000000000001.jpg", "000000000001.rec"]
            .iter()
            .map(|n| fs::metadata(tmp.0.join(n)).expect("file").len())
            .sum();
        assert_eq!(
            spool.stats(),
            SpoolStats {
                entries: 1,
                bytes: on_disk,
                evicted: 0,
                rejected: 0
            }
        );
        assert!(matches!(spool.read(2), Err(SpoolError::NotFound { id: 2 })));
    }

    /// Two context frames: two small JPEGs back to back, listed with their lengths and CRCs.
    fn context_set() -> ContextSet {
        let mut set = ContextSet::default();
        for (offset, (w, h)) in [(-1, (32, 24)), (1, (40, 20))] {
            let mut jpeg = Vec::new();
            jpeg::encode(&mut jpeg, &frame(w, h), w, h, 640, 70).expect("encode");
            set.frames.push(ContextFrame {
                offset,
                frame_index: (10 + offset) as u64,
                frame_name: format!("f{offset}"),
                timestamp_ms: 5,
                jpeg_len: jpeg.len() as u32,
                jpeg_crc: crc32(&jpeg),
            });
            set.jpegs.extend_from_slice(&jpeg);
        }
        set
    }

    #[test]
    fn context_frames_are_one_entry_with_their_kept_frame() {
        let tmp = TempDir::new("context");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        let ctx = context_set();
        let outcome = spool
            .put_with_context(&record(10, 0.6), &frame(64, 48), 64, 48, &ctx)
            .expect("put");
        put(&mut spool, 0.7);
        let Some(id) = outcome.id() else {
            panic!("{outcome:?}")
        };
        assert!(tmp.0.join("000000000001.ctx").is_file());
        assert!(!tmp.0.join("000000000002.ctx").exists());
        // Counted in the bounds with the rest of the entry: every file's bytes.
        let on_disk: u64 = names(&tmp.0)
            .iter()
            .map(|n| fs::metadata(tmp.0.join(n)).expect("file").len())
            .sum();
        assert_eq!(spool.stats().bytes, on_disk);
        assert!(on_disk > 2 * entry_bytes() + ctx.jpegs.len() as u64);
        let (frames, jpegs) = spool.read_context(id).expect("read context");
        assert_eq!((&frames, &jpegs), (&ctx.frames, &ctx.jpegs));
        assert_eq!(
            spool.read_context(2).expect("none"),
            (Vec::new(), Vec::new())
        );
        let listed = Spool::read_entries(&tmp.0).expect("entries");
        assert_eq!(listed[0].2, ctx.frames);
        // Reopened: the same, and its bytes counted again.
        let bytes = spool.stats().bytes;
        drop(spool);
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.stats().bytes, bytes);
        // Acked: the context goes with it.
        assert!(spool.ack(id).expect("ack"));
        assert_eq!(names(&tmp.0), vec!["000000000002.jpg", "000000000002.rec"]);
    }

    #[test]
    fn a_damaged_or_orphan_context_file_never_passes_as_good() {
        let tmp = TempDir::new("context-bad");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        let ctx = context_set();
        spool
            .put_with_context(&record(1, 0.6), &frame(64, 48), 64, 48, &ctx)
            .expect("put");
        spool
            .put_with_context(&record(2, 0.6), &frame(64, 48), 64, 48, &ctx)
            .expect("put");
        // Entry 1: a flipped byte in its second context JPEG; read refuses it.
        let path = tmp.0.join("000000000001.ctx");
        let mut bytes = fs::read(&path).expect("ctx");
        let last = bytes.len() - 10;
        bytes[last] ^= 0x55;
        fs::write(&path, &bytes).expect("write");
        let e = spool.read_context(1).expect_err("corrupt");
        assert!(e.to_string().contains("context frame +1"), "{e}");
        // Entry 2: its context file gone. An orphan context file of an entry never written.
        fs::remove_file(tmp.0.join("000000000002.ctx")).expect("rm");
        fs::write(tmp.0.join("000000000009.ctx"), b"partial").expect("orphan");
        drop(spool);
        let (spool, report) = Spool::open(&tmp.0, SpoolConfig::default()).expect("reopen");
        assert_eq!(spool.stats().entries, 0);
        assert_eq!((report.discarded_corrupt, report.discarded_partial), (2, 1));
        let quarantined: Vec<String> = Spool::read_quarantine(&tmp.0)
            .expect("quarantine")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(
            quarantined.contains(&"000000000001.ctx".to_string()),
            "{quarantined:?}"
        );
        assert!(!tmp.0.join("000000000009.ctx").exists());
    }

    #[test]
    fn a_version_1_record_is_still_read() {
        let tmp = TempDir::new("v1");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        put(&mut spool, 0.5);
        drop(spool);
        // Rewrite the record as version 1 wrote it: no context list, version 1, CRCs redone.
        let path = tmp.0.join("000000000001.rec");
        let bytes = fs::read(&path).expect("rec");
        let payload_end = bytes.len() - 4;
        let mut v1 = bytes[..payload_end - 1].to_vec(); // the empty list is one byte (0)
        assert_eq!(bytes[payload_end - 1], 0);
        v1[4..6].copy_from_slice(&1u16.to_le_bytes());
        let len = (v1.len() - HEADER_LEN) as u32;
        v1[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = crc32(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        fs::write(&path, &v1).expect("write v1");
        let (spool, report) = Spool::open(&tmp.0, SpoolConfig::default()).expect("reopen");
        assert_eq!((spool.stats().entries, report.discarded_corrupt), (1, 0));
        assert_eq!(spool.read(1).expect("read").0, record(0, 0.5));
        assert!(spool.read_context(1).expect("no context").0.is_empty());
    }

    #[test]
    fn sequence_continues_after_reopen() {
        let tmp = TempDir::new("seq");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            for want in 1..=3 {
                assert_eq!(put(&mut spool, 0.5).id(), Some(want));
            }
        }
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.recovery_report().kept, 3);
        assert_eq!(put(&mut spool, 0.5).id(), Some(4));
        // Acking everything, the newest included, must not let a restart reuse ids.
        for id in 1..=4 {
            assert!(spool.ack(id).expect("ack"));
        }
        drop(spool);
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.stats().entries, 0);
        assert_eq!(put(&mut spool, 0.5).id(), Some(5));
    }

    #[test]
    fn evicts_lowest_value_first_and_counts() {
        let one = entry_bytes();
        let tmp = TempDir::new("evict");
        let config = SpoolConfig {
            max_bytes: 3 * one + one / 2,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        for v in [0.5, 0.2, 0.8] {
            assert!(put(&mut spool, v).id().is_some());
        }
        assert_eq!(put(&mut spool, 0.6), stored(4, 1));
        assert_eq!(values(&spool), vec![0.5, 0.8, 0.6]);
        assert_eq!(put(&mut spool, 0.9), stored(5, 1));
        assert_eq!(values(&spool), vec![0.8, 0.6, 0.9]);
        let stats = spool.stats();
        assert_eq!((stats.entries, stats.evicted, stats.rejected), (3, 2, 0));
        assert!(stats.bytes <= 3 * one + one / 2);
        assert_eq!(
            names(&tmp.0).len(),
            6,
            "evicted files are gone: {:?}",
            names(&tmp.0)
        );
    }

    #[test]
    fn refuses_low_value_frame_when_full_of_better_ones() {
        let one = entry_bytes();
        let tmp = TempDir::new("reject");
        let config = SpoolConfig {
            max_bytes: 3 * one,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        for v in [0.5, 0.6, 0.7] {
            assert!(put(&mut spool, v).id().is_some());
        }
        let before = names(&tmp.0);
        let rejected = PutOutcome::Rejected {
            reason: RejectReason::LowerValue,
        };
        assert_eq!(put(&mut spool, 0.1), rejected);
        // An equal value does not displace an older entry either.
        assert_eq!(put(&mut spool, 0.5), rejected);
        assert_eq!(names(&tmp.0), before);
        let stats = spool.stats();
        assert_eq!((stats.entries, stats.evicted, stats.rejected), (3, 0, 2));
        assert_eq!(values(&spool), vec![0.5, 0.6, 0.7]);
        // The next stored entry still gets the next id.
        assert_eq!(put(&mut spool, 0.55), stored(4, 1));
    }

    /// A fake filesystem of `FAKE_DISK` bytes holding only the spool directory.
    static FAKE_DISK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn fake_free_space(dir: &Path) -> Option<u64> {
        let used: u64 = fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        Some(
            FAKE_DISK
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(used),
        )
    }

    #[test]
    fn free_space_floor_evicts_lower_values_then_refuses() {
        let one = entry_bytes();
        let tmp = TempDir::new("diskfloor");
        let floor = 10 * one;
        FAKE_DISK.store(
            floor + 3 * one + one / 2,
            std::sync::atomic::Ordering::Relaxed,
        );
        let config = SpoolConfig {
            max_bytes: 100 * one,
            min_free_bytes: floor,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        spool.free_space = fake_free_space;
        for v in [0.5, 0.6, 0.7] {
            assert!(put(&mut spool, v).id().is_some());
        }
        // A fourth would eat into the floor: lower values are refused, naming the disk ...
        let refused = PutOutcome::Rejected {
            reason: RejectReason::DiskSpace,
        };
        assert_eq!(put(&mut spool, 0.1), refused);
        assert_eq!(spool.stats().entries, 3);
        // ... and a better one replaces the lowest.
        assert_eq!(put(&mut spool, 0.9), stored(4, 1));
        assert_eq!(values(&spool), vec![0.6, 0.7, 0.9]);
        assert!(fake_free_space(&tmp.0).unwrap() >= floor);
    }

    #[test]
    fn free_space_floor_reads_the_real_filesystem() {
        let tmp = TempDir::new("statvfs");
        fs::create_dir_all(&tmp.0).unwrap();
        assert!(available_bytes(&tmp.0).is_some_and(|b| b > 0));
        // No disk has an exabyte free: every frame is refused, nothing is written.
        let config = SpoolConfig {
            min_free_bytes: 1 << 60,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        assert_eq!(
            put(&mut spool, 1.0),
            PutOutcome::Rejected {
                reason: RejectReason::DiskSpace
            }
        );
        assert!(names(&tmp.0).is_empty());
    }

    #[test]
    fn refuses_entry_larger_than_the_bound() {
        let tmp = TempDir::new("toolarge");
        let config = SpoolConfig {
            max_bytes: 100,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        assert_eq!(
            put(&mut spool, 1.0),
            PutOutcome::Rejected {
                reason: RejectReason::TooLarge
            }
        );
        assert!(names(&tmp.0).is_empty());
    }

    #[test]
    fn downscales_to_max_side_keeping_aspect() {
        let tmp = TempDir::new("maxside");
        let config = SpoolConfig {
            max_side: 50,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&tmp.0, config).expect("open").0;
        let big = spool
            .put(&record(1, 0.5), &frame(200, 100), 200, 100)
            .expect("put")
            .id()
            .expect("stored");
        let tall = spool
            .put(&record(2, 0.5), &frame(30, 120), 30, 120)
            .expect("put")
            .id()
            .expect("stored");
        let small = spool
            .put(&record(3, 0.5), &frame(40, 20), 40, 20)
            .expect("put")
            .id()
            .expect("stored");
        let dims = |id| {
            let (_, jpeg) = spool.read(id).expect("read");
            let img = image::load_from_memory(&jpeg).expect("decode");
            (img.width(), img.height())
        };
        assert_eq!(dims(big), (50, 25));
        assert_eq!(dims(tall), (13, 50));
        assert_eq!(dims(small), (40, 20), "never upscaled");
        assert_eq!(fit_within(1921, 1, 1920), (1920, 1));
    }

    #[test]
    fn ack_removes_and_is_idempotent() {
        let tmp = TempDir::new("ack");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        put(&mut spool, 0.3);
        put(&mut spool, 0.4);
        assert!(spool.ack(1).expect("ack"));
        assert!(!tmp.0.join("000000000001.rec").exists());
        assert!(!tmp.0.join("000000000001.jpg").exists());
        assert!(!spool.ack(1).expect("second ack"));
        assert!(!spool.ack(99).expect("unknown ack"));
        assert_eq!(spool.pending().collect::<Vec<_>>(), vec![2]);
        assert_eq!(spool.stats().entries, 1);
        drop(spool);
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.pending().collect::<Vec<_>>(), vec![2]);
        assert!(!spool.ack(1).expect("ack after reopen"));
    }

    #[test]
    fn corrupt_records_are_discarded_and_counted() {
        let tmp = TempDir::new("corrupt");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            for v in [0.1, 0.2, 0.3, 0.4, 0.5] {
                put(&mut spool, v);
            }
        }
        let rec = |id: u64| tmp.0.join(format!("{id:012}.rec"));
        // 1: a flipped payload byte; 2: torn (truncated); 3: another format version;
        // 4: its JPEG lost bytes; 5: intact.
        let mut bytes = fs::read(rec(1)).expect("read");
        bytes[HEADER_LEN + 3] ^= 0x40;
        fs::write(rec(1), &bytes).expect("write");
        let bytes = fs::read(rec(2)).expect("read");
        fs::write(rec(2), &bytes[..bytes.len() / 2]).expect("write");
        let mut bytes = fs::read(rec(3)).expect("read");
        bytes[4] = 9;
        fs::write(rec(3), &bytes).expect("write");
        let jpg4 = tmp.0.join("000000000004.jpg");
        let jpeg = fs::read(&jpg4).expect("read");
        fs::write(&jpg4, &jpeg[..jpeg.len() - 10]).expect("write");

        // Inspecting reads only the intact entry and changes nothing.
        let listed = Spool::read_records(&tmp.0).expect("read_records");
        assert_eq!(
            listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(listed[0].1.scores.value, 0.5);
        assert_eq!(names(&tmp.0).len(), 10);

        let spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(
            spool.recovery_report(),
            RecoveryReport {
                kept: 1,
                discarded_partial: 0,
                discarded_corrupt: 4,
                quarantined: 8,
            }
        );
        assert_eq!(spool.pending().collect::<Vec<_>>(), vec![5]);
        assert_eq!(names(&tmp.0), vec!["000000000005.jpg", "000000000005.rec"]);
        // Nothing deleted: the damaged entries' files, intact JPEGs included, are in quarantine
        // with their reasons.
        let q = Spool::read_quarantine(&tmp.0).expect("quarantine");
        assert_eq!(q.len(), 8, "{q:?}");
        assert!(
            q.iter()
                .any(|(n, r)| n == "000000000001.jpg" && r.contains("CRC")),
            "{q:?}"
        );
        assert_eq!(
            fs::read(tmp.0.join("quarantine/000000000004.jpg"))
                .expect("kept")
                .len(),
            jpeg.len() - 10
        );
        assert!(decode_record(&[0u8; 10]).is_err());
    }

    #[test]
    fn read_detects_a_corrupt_jpeg() {
        let tmp = TempDir::new("badjpeg");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        put(&mut spool, 0.5);
        let jpg = tmp.0.join("000000000001.jpg");
        let mut jpeg = fs::read(&jpg).expect("read");
        let mid = jpeg.len() / 2;
        jpeg[mid] ^= 0xFF;
        fs::write(&jpg, &jpeg).expect("write");
        assert!(matches!(spool.read(1), Err(SpoolError::Corrupt { .. })));
    }

    #[test]
    fn tmp_files_and_orphan_jpegs_are_cleaned() {
        let tmp = TempDir::new("partial");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.5);
        }
        fs::write(tmp.0.join(".tmp-000000000002.jpg"), b"half a jpeg").expect("write");
        fs::copy(
            tmp.0.join("000000000001.jpg"),
            tmp.0.join("000000000003.jpg"),
        )
        .expect("copy");
        fs::write(tmp.0.join(".tmp-000000000003.rec"), b"ESRC").expect("write");
        fs::write(tmp.0.join("notes.txt"), b"not ours").expect("write");

        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(
            spool.recovery_report(),
            RecoveryReport {
                kept: 1,
                discarded_partial: 3,
                discarded_corrupt: 0,
                quarantined: 0,
            }
        );
        assert_eq!(
            names(&tmp.0),
            vec!["000000000001.jpg", "000000000001.rec", "notes.txt"]
        );
        assert_eq!(put(&mut spool, 0.5).id(), Some(4), "ids are not reused");
    }

    #[test]
    fn a_second_open_is_locked_out_naming_our_pid() {
        let tmp = TempDir::new("lock");
        let (spool, _) = Spool::open(&tmp.0, SpoolConfig::default()).expect("open");
        let err = Spool::open(&tmp.0, SpoolConfig::default()).expect_err("second open");
        let pid = std::process::id();
        assert!(
            matches!(err, SpoolError::Locked { pid: Some(p), .. } if p == pid),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "is in use by process {pid}; one process per spool"
            )),
            "{text}"
        );
        // Reading (inspect) needs no lock; closing releases it.
        assert!(Spool::read_records(&tmp.0).is_ok());
        drop(spool);
        Spool::open(&tmp.0, SpoolConfig::default()).expect("open after close");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_named() {
        let tmp = TempDir::new("notadir");
        fs::create_dir_all(&tmp.0).expect("mkdir");
        let path = tmp.0.join("spool");
        fs::write(&path, b"x").expect("write");
        let err = Spool::open(&path, SpoolConfig::default()).expect_err("a file");
        assert!(matches!(err, SpoolError::NotADirectory { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "spool path {} exists and is not a directory",
                path.display()
            )
        );
    }

    #[test]
    fn a_stray_huge_id_does_not_wrap_ids_around() {
        let tmp = TempDir::new("wrap-stray");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.1);
            put(&mut spool, 0.2);
        }
        fs::copy(
            tmp.0.join("000000000001.jpg"),
            tmp.0.join("18446744073709551615.jpg"),
        )
        .expect("copy");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.recovery_report().quarantined, 1);
        assert_eq!(put(&mut spool, 0.3).id(), Some(3));
        assert_eq!(values(&spool), vec![0.1, 0.2, 0.3], "nothing overwritten");
        let q = Spool::read_quarantine(&tmp.0).expect("quarantine");
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, "18446744073709551615.jpg");
    }

    #[test]
    fn a_huge_next_id_is_quarantined_and_ids_continue() {
        let tmp = TempDir::new("wrap-nextid");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.1);
            put(&mut spool, 0.2);
        }
        fs::write(tmp.0.join(NEXT_ID_FILE), format!("{}\n", u64::MAX)).expect("write");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(spool.recovery_report().quarantined, 1);
        for want in 3..=5 {
            assert_eq!(put(&mut spool, 0.5).id(), Some(want));
        }
        assert_eq!(values(&spool), vec![0.1, 0.2, 0.5, 0.5, 0.5]);
        assert!(!tmp.0.join(NEXT_ID_FILE).exists());
    }

    #[test]
    fn ids_are_exhausted_not_wrapped() {
        let tmp = TempDir::new("exhausted");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.1);
        }
        fs::write(tmp.0.join(NEXT_ID_FILE), format!("{MAX_ID}\n")).expect("write");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(put(&mut spool, 0.2).id(), Some(MAX_ID));
        let err = spool
            .put(&record(0, 0.3), &frame(64, 48), 64, 48)
            .expect_err("exhausted");
        assert!(matches!(err, SpoolError::IdsExhausted { .. }), "{err:?}");
        assert_eq!(values(&spool), vec![0.1, 0.2]);
        // Acking all and reopening does not restart at 1 either.
        assert!(spool.ack(1).expect("ack"));
        assert!(spool.ack(MAX_ID).expect("ack"));
        drop(spool);
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert!(spool.put(&record(0, 0.3), &frame(64, 48), 64, 48).is_err());
    }

    #[test]
    fn a_jpeg_corrupted_in_place_is_quarantined_and_not_listed() {
        let tmp = TempDir::new("jpegcrc");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.1);
            put(&mut spool, 0.2);
        }
        let jpg = tmp.0.join("000000000001.jpg");
        let mut jpeg = fs::read(&jpg).expect("read");
        let mid = jpeg.len() / 2;
        jpeg[mid] ^= 0x01;
        fs::write(&jpg, &jpeg).expect("write");
        let listed = Spool::read_records(&tmp.0).expect("read_records");
        assert_eq!(
            listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![2]
        );
        let spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        let report = spool.recovery_report();
        assert_eq!(
            (report.kept, report.discarded_corrupt, report.quarantined),
            (1, 1, 2)
        );
        assert_eq!(
            fs::read(tmp.0.join("quarantine/000000000001.jpg")).expect("kept"),
            jpeg
        );
    }

    #[test]
    fn a_directory_named_like_a_record_is_skipped() {
        let tmp = TempDir::new("dirrec");
        {
            let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
            put(&mut spool, 0.1);
        }
        fs::create_dir(tmp.0.join("000000000002.rec")).expect("mkdir");
        let listed = Spool::read_records(&tmp.0).expect("read_records");
        assert_eq!(
            listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1]
        );
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default())
            .expect("reopen")
            .0;
        assert_eq!(
            put(&mut spool, 0.2).id(),
            Some(3),
            "id 2 is taken by the directory"
        );
    }

    #[test]
    fn failed_put_leaves_nothing_partial() {
        let tmp = TempDir::new("failput");
        let mut spool = Spool::open(&tmp.0, SpoolConfig::default()).expect("open").0;
        put(&mut spool, 0.5);
        // A directory where entry 2's record goes makes its rename fail.
        let blocker = tmp.0.join("000000000002.rec");
        fs::create_dir(&blocker).expect("mkdir");
        let err = spool
            .put(&record(2, 0.9), &frame(64, 48), 64, 48)
            .expect_err("put must fail");
        assert!(matches!(err, SpoolError::Io { .. }), "{err}");
        fs::remove_dir(&blocker).expect("rmdir");
        assert_eq!(names(&tmp.0), vec!["000000000001.jpg", "000000000001.rec"]);
        assert_eq!(spool.stats().entries, 1);
        assert_eq!(spool.read(1).expect("intact").0, record(0, 0.5));

        let err = spool
            .put(&record(3, 0.9), &frame(64, 48), 64, 47)
            .expect_err("bad frame");
        assert!(matches!(err, SpoolError::InvalidFrame { .. }));
        assert_eq!(names(&tmp.0).len(), 2);
    }

    #[test]
    fn config_is_checked() {
        let config: SpoolConfig = serde_json::from_str(r#"{"jpeg_quality": 80}"#).expect("parse");
        assert_eq!(config.jpeg_quality, 80);
        assert_eq!(config.max_side, SpoolConfig::default().max_side);
        let err = serde_json::from_str::<SpoolConfig>(r#"{"max_byte": 1}"#).expect_err("unknown");
        assert!(err.to_string().contains("max_byte"), "{err}");
        for (config, key) in [
            (
                SpoolConfig {
                    jpeg_quality: 0,
                    ..SpoolConfig::default()
                },
                "jpeg_quality",
            ),
            (
                SpoolConfig {
                    max_bytes: 0,
                    ..SpoolConfig::default()
                },
                "max_bytes",
            ),
            (
                SpoolConfig {
                    max_side: 8,
                    ..SpoolConfig::default()
                },
                "max_side",
            ),
        ] {
            let err = config.validate().expect_err("invalid");
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains(key));
            let tmp = TempDir::new("config");
            assert!(Spool::open(&tmp.0, config).is_err());
        }
        assert!(SpoolConfig::default().validate().is_ok());
    }
}
