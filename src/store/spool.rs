//! Spool stage: the kept frames, on disk, until the uploader has taken them.
//!
//! Each entry is two files in the spool directory, named by a sequence number that only grows,
//! also across restarts:
//!
//! * `<id:012>.jpg`: the frame as a baseline JPEG (quality [`SpoolConfig::jpeg_quality`], longest
//!   side at most [`SpoolConfig::max_side`]; larger frames are downscaled keeping the aspect ratio,
//!   so the record's boxes, which are in frame pixels, scale by `jpeg width / record.width`).
//! * `<id:012>.rec`: the [`KeptRecord`] in this layout (integers little-endian):
//!
//! | offset | size | field                                                     |
//! |--------|------|-----------------------------------------------------------|
//! | 0      | 4    | magic `ESRC`                                              |
//! | 4      | 2    | format version ([`RECORD_FORMAT_VERSION`])                |
//! | 6      | 2    | reserved, 0                                               |
//! | 8      | 4    | payload length `n`                                        |
//! | 12     | 8    | length of the entry's JPEG                                |
//! | 20     | 4    | CRC-32 (IEEE) of the entry's JPEG                         |
//! | 24     | n    | postcard encoding of the [`KeptRecord`]                   |
//! | 24 + n | 4    | CRC-32 (IEEE) of bytes `0 .. 24 + n`                      |
//!
//! Both files are written atomically: to `.tmp-<name>` in the spool directory, fsync, rename into
//! place, fsync the directory. The JPEG goes first; the record's presence marks the entry complete.
//! Removal (ack, eviction) goes the other way: record, then JPEG, then a directory fsync.
//! A third file, `next-id`, holds the next sequence number once the newest entry has been acked,
//! so an id is never handed out twice even when the spool was emptied before a restart.
//!
//! On open the spool recovers from a crash: `.tmp-*` files and JPEGs without a record are
//! removed (`discarded_partial`), records that fail to decode or whose JPEG is missing or of the
//! wrong length are removed with their JPEG (`discarded_corrupt`, with a warning naming the file).
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
//! One process owns a spool directory at a time (there is no lock file).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageBuffer, Rgb};
use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use crate::store::record::KeptRecord;

/// Version written in every record header; records of another version are treated as corrupt.
pub const RECORD_FORMAT_VERSION: u16 = 1;

const MAGIC: [u8; 4] = *b"ESRC";
const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 4;
const TMP_PREFIX: &str = ".tmp-";
const NEXT_ID_FILE: &str = "next-id";
const JPG_EXT: &str = "jpg";
const REC_EXT: &str = "rec";
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

const ENOSPC: i32 = 28;

fn io_error(dir: &Path, path: &Path, source: io::Error) -> SpoolError {
    if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(ENOSPC) {
        SpoolError::DiskFull {
            dir: dir.to_path_buf(),
            path: path.to_path_buf(),
            source,
        }
    } else {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why a put stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RejectReason {
    /// Making room would evict entries valued as high as the new frame or higher.
    LowerValue,
    /// The entry alone is larger than `max_bytes`.
    TooLarge,
    /// The filesystem has too little space left above `min_free_bytes`, even after evicting
    /// every lower-valued entry.
    DiskSpace,
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

/// What opening the spool found and cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RecoveryReport {
    /// Complete entries kept.
    pub kept: usize,
    /// Files of interrupted writes removed: `.tmp-*` files and JPEGs without a record.
    pub discarded_partial: usize,
    /// Entries removed because the record failed to decode or did not match its JPEG.
    pub discarded_corrupt: usize,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries kept, {} partial files and {} corrupt entries discarded",
            self.kept, self.discarded_partial, self.discarded_corrupt
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

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    bytes: u64,
}

/// The on-disk spool of kept frames.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    index: BTreeMap<u64, Entry>,
    by_value: BTreeSet<(u32, u64)>,
    bytes: u64,
    next_id: u64,
    persisted_next_id: u64,
    evicted: u64,
    rejected: u64,
    recovery: RecoveryReport,
    jpeg_buf: Vec<u8>,
    rec_buf: Vec<u8>,
    /// Bytes available to unprivileged writers on the spool's filesystem (None: unknown).
    free_space: fn(&Path) -> Option<u64>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers from an interrupted run;
    /// the report says what recovery found (also kept as [`Spool::recovery_report`]).
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<(Spool, RecoveryReport), SpoolError> {
        config.validate().map_err(SpoolError::Config)?;
        let dir = dir.to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &dir, e))?;

        let mut report = RecoveryReport::default();
        let mut removed_any = false;
        let mut records = BTreeSet::new();
        let mut jpegs = BTreeSet::new();
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
                    jpegs.insert(id);
                }
            }
        }

        let mut spool = Spool {
            dir,
            config,
            index: BTreeMap::new(),
            by_value: BTreeSet::new(),
            bytes: 0,
            next_id: FIRST_ID,
            persisted_next_id: 0,
            evicted: 0,
            rejected: 0,
            recovery: RecoveryReport::default(),
            jpeg_buf: Vec::new(),
            rec_buf: Vec::new(),
            free_space: available_bytes,
        };
        spool.persisted_next_id = spool.read_next_id_file();
        spool.next_id = highest
            .map_or(FIRST_ID, |h| h.saturating_add(1))
            .max(spool.persisted_next_id)
            .max(FIRST_ID);

        for &id in jpegs.difference(&records) {
            let path = spool.entry_path(id, JPG_EXT);
            remove_if_exists(&path).map_err(|e| spool.io_error(&path, e))?;
            log::warn!(
                "spool: removed JPEG without record {} (interrupted write)",
                path.display()
            );
            report.discarded_partial += 1;
            removed_any = true;
        }
        for &id in &records {
            match spool.check_entry(id)? {
                Ok(entry) => spool.insert(id, entry),
                Err(reason) => {
                    let rec = spool.entry_path(id, REC_EXT);
                    log::warn!(
                        "spool: discarding corrupt record {}: {reason}",
                        rec.display()
                    );
                    spool.remove_files(id)?;
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
            "spool {}: {} entries, {} bytes; recovery removed {} partial and {} corrupt",
            spool.dir.display(),
            report.kept,
            spool.bytes,
            report.discarded_partial,
            report.discarded_corrupt
        );
        Ok((spool, report))
    }

    /// Reads the records of the complete entries in `dir`, oldest first, without changing
    /// anything (for `edgesieve inspect`): records that fail to decode or lack their JPEG are
    /// skipped with a warning.
    pub fn read_records(dir: &Path) -> Result<Vec<(u64, KeptRecord)>, SpoolError> {
        let mut ids = BTreeSet::new();
        for item in fs::read_dir(dir).map_err(|e| io_error(dir, dir, e))? {
            let item = item.map_err(|e| io_error(dir, dir, e))?;
            if let Some((id, REC_EXT)) = item.file_name().to_str().and_then(parse_entry_name) {
                ids.insert(id);
            }
        }
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = dir.join(format!("{id:012}.{REC_EXT}"));
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
            let jpg = dir.join(format!("{id:012}.{JPG_EXT}"));
            match fs::metadata(&jpg) {
                Ok(m) if m.len() == decoded.jpeg_len => records.push((id, decoded.record)),
                Ok(m) => log::warn!(
                    "spool: skipping {}: its JPEG is {} bytes, the record says {}",
                    rec.display(),
                    m.len(),
                    decoded.jpeg_len
                ),
                Err(e) => log::warn!("spool: skipping {}: {}: {e}", rec.display(), jpg.display()),
            }
        }
        Ok(records)
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
            bytes: self.bytes,
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
        self.encode_jpeg(rgb, width, height)?;
        encode_record(&mut self.rec_buf, record, &self.jpeg_buf)?;
        let new_bytes = (self.jpeg_buf.len() + self.rec_buf.len()) as u64;
        let key = value_key(record.scores.value);
        let victims = match self.plan_eviction(key, new_bytes) {
            Ok(victims) => victims,
            Err(reason) => {
                self.rejected += 1;
                return Ok(PutOutcome::Rejected { reason });
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.write_entry(id)?;
        self.insert(
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
        if !self.index.contains_key(&id) {
            return Ok(false);
        }
        // Removing the newest entry would let a restart hand its id out again: persist first.
        if self.index.keys().next_back() == Some(&id) && self.persisted_next_id < self.next_id {
            self.write_next_id_file(self.next_id)?;
        }
        self.remove_files(id)?;
        self.forget(id);
        self.sync_dir()?;
        Ok(true)
    }

    /// Ids of the stored entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.keys().copied()
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

    /// Every stored record, oldest first.
    pub fn iter_records(&self) -> impl Iterator<Item = Result<(u64, KeptRecord), SpoolError>> + '_ {
        self.index
            .keys()
            .map(move |&id| self.read_record_file(id).map(|d| (id, d.record)))
    }

    fn entry_path(&self, id: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{id:012}.{ext}"))
    }

    fn io_error(&self, path: &Path, e: io::Error) -> SpoolError {
        io_error(&self.dir, path, e)
    }

    fn read_record_file(&self, id: u64) -> Result<DecodedRecord, SpoolError> {
        if !self.index.contains_key(&id) {
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
        let jpg_path = self.entry_path(id, JPG_EXT);
        let jpeg_len = match fs::metadata(&jpg_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err("its JPEG is missing".into()))
            }
            Err(e) => return Err(self.io_error(&jpg_path, e)),
        };
        if jpeg_len != decoded.jpeg_len {
            return Ok(Err(format!(
                "its JPEG is {jpeg_len} bytes, the record says {}",
                decoded.jpeg_len
            )));
        }
        Ok(Ok(Entry {
            key: value_key(decoded.record.scores.value),
            bytes: bytes.len() as u64 + jpeg_len,
        }))
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        self.bytes += entry.bytes;
        self.by_value.insert((entry.key, id));
        self.index.insert(id, entry);
    }

    fn forget(&mut self, id: u64) {
        if let Some(entry) = self.index.remove(&id) {
            self.bytes -= entry.bytes;
            self.by_value.remove(&(entry.key, id));
        }
    }

    /// The entries to evict so that `new_bytes` more fit, lowest value (then oldest) first.
    fn plan_eviction(&self, new_key: u32, new_bytes: u64) -> Result<Vec<u64>, RejectReason> {
        let mut max = self.config.max_bytes;
        if new_bytes > max {
            return Err(RejectReason::TooLarge);
        }
        // The disk bound: what the spool holds plus what it may still take from the filesystem.
        let mut disk_bound = false;
        if self.config.min_free_bytes > 0 {
            if let Some(available) = (self.free_space)(&self.dir) {
                let bound = self
                    .bytes
                    .saturating_add(available.saturating_sub(self.config.min_free_bytes));
                if bound < max {
                    max = bound;
                    disk_bound = true;
                }
            }
        }
        let refuse = if disk_bound {
            RejectReason::DiskSpace
        } else {
            RejectReason::LowerValue
        };
        if new_bytes > max {
            return Err(RejectReason::DiskSpace);
        }
        let mut excess = (self.bytes + new_bytes).saturating_sub(max);
        let mut victims = Vec::new();
        for &(key, id) in &self.by_value {
            if excess == 0 {
                break;
            }
            if key >= new_key {
                return Err(refuse);
            }
            victims.push(id);
            excess = excess.saturating_sub(self.index[&id].bytes);
        }
        Ok(victims)
    }

    fn evict(&mut self, victims: &[u64]) -> usize {
        let mut evicted = 0;
        for &id in victims {
            match self.remove_files(id) {
                Ok(()) => {
                    self.forget(id);
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
        let jpg = self.entry_path(id, JPG_EXT);
        if let Err(e) = remove_if_exists(&jpg) {
            log::warn!("spool: could not remove {}: {e}", jpg.display());
        }
        Ok(())
    }

    /// Writes the encoded JPEG and record of entry `id`, or nothing.
    fn write_entry(&self, id: u64) -> Result<(), SpoolError> {
        let jpg = self.entry_path(id, JPG_EXT);
        let rec = self.entry_path(id, REC_EXT);
        self.write_atomic(&jpg, &self.jpeg_buf)?;
        let result = self
            .sync_dir()
            .and_then(|()| self.write_atomic(&rec, &self.rec_buf))
            .and_then(|()| self.sync_dir());
        if let Err(e) = result {
            let _ = remove_if_exists(&rec);
            let _ = remove_if_exists(&jpg);
            let _ = self.sync_dir();
            return Err(e);
        }
        Ok(())
    }

    /// Writes `bytes` to a temporary file, fsyncs it and renames it to `path` (no dir fsync).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error(path, e));
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io_error(&self.dir, e))
    }

    fn read_next_id_file(&self) -> u64 {
        let path = self.dir.join(NEXT_ID_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    log::warn!("spool: ignoring unreadable {}", path.display());
                    0
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => {
                log::warn!("spool: ignoring {}: {e}", path.display());
                0
            }
        }
    }

    fn write_next_id_file(&mut self, next: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(NEXT_ID_FILE);
        self.write_atomic(&path, format!("{next}\n").as_bytes())?;
        self.sync_dir()?;
        self.persisted_next_id = next;
        Ok(())
    }

    fn encode_jpeg(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<(), SpoolError> {
        if width == 0 || height == 0 {
            return Err(SpoolError::InvalidFrame {
                message: format!("empty frame {width}x{height}"),
            });
        }
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3));
        if expected != Some(rgb.len()) {
            return Err(SpoolError::InvalidFrame {
                message: format!("{} bytes is not a {width}x{height} RGB8 frame", rgb.len()),
            });
        }
        let (w, h) = fit_within(width, height, self.config.max_side);
        let quality = self.config.jpeg_quality;
        self.jpeg_buf.clear();
        let mut encoder = JpegEncoder::new_with_quality(&mut self.jpeg_buf, quality);
        let result = if (w, h) == (width, height) {
            encoder.encode(rgb, width, height, ExtendedColorType::Rgb8)
        } else {
            let src: ImageBuffer<Rgb<u8>, &[u8]> = ImageBuffer::from_raw(width, height, rgb)
                .ok_or_else(|| SpoolError::InvalidFrame {
                    message: format!("{width}x{height} frame does not fit its buffer"),
                })?;
            let small = imageops::resize(&src, w, h, FilterType::Triangle);
            encoder.encode(small.as_raw(), w, h, ExtendedColorType::Rgb8)
        };
        result.map_err(|e| SpoolError::Encode {
            message: format!("JPEG: {e}"),
        })
    }
}

/// `(width, height)` scaled so the longest side is at most `max_side`, keeping the aspect ratio.
fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = |side: u32| -> u32 {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long);
        (scaled as u32).clamp(1, max_side)
    };
    (scale(width), scale(height))
}

/// Order-preserving map of a value to u32 (NaN ranks lowest).
fn value_key(value: f32) -> u32 {
    let value = if value.is_nan() {
        f32::NEG_INFINITY
    } else {
        value
    };
    let bits = value.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// `<12+ digits>.jpg` / `.rec` → (id, extension).
fn parse_entry_name(name: &str) -> Option<(u64, &'static str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ext = match ext {
        JPG_EXT => JPG_EXT,
        REC_EXT => REC_EXT,
        _ => return None,
    };
    if stem.len() < 12 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

struct DecodedRecord {
    record: KeptRecord,
    jpeg_len: u64,
    jpeg_crc: u32,
}

fn encode_record(buf: &mut Vec<u8>, record: &KeptRecord, jpeg: &[u8]) -> Result<(), SpoolError> {
    let mut out = std::mem::take(buf);
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RECORD_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // payload length, patched below
    out.extend_from_slice(&(jpeg.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(jpeg).to_le_bytes());
    let mut out = postcard::to_extend(record, out).map_err(|e| SpoolError::Encode {
        message: format!("record: {e}"),
    })?;
    let payload_len = u32::try_from(out.len() - HEADER_LEN).map_err(|_| SpoolError::Encode {
        message: "record larger than 4 GiB".into(),
    })?;
    out[8..12].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    *buf = out;
    Ok(())
}

fn decode_record(bytes: &[u8]) -> Result<DecodedRecord, String> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(format!("{} bytes is shorter than a header", bytes.len()));
    }
    if bytes[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != RECORD_FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {RECORD_FORMAT_VERSION}"
        ));
    }
    let payload_len = u32_at(8) as usize;
    let expected = HEADER_LEN + payload_len + TRAILER_LEN;
    if bytes.len() != expected {
        return Err(format!(
            "{} bytes, header says {expected} (torn write?)",
            bytes.len()
        ));
    }
    let body_end = HEADER_LEN + payload_len;
    let stored_crc = u32_at(body_end);
    let crc = crc32(&bytes[..body_end]);
    if crc != stored_crc {
        return Err(format!(
            "CRC mismatch: stored {stored_crc:08x}, computed {crc:08x}"
        ));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[12..20]);
    let (record, rest) = postcard::take_from_bytes::<KeptRecord>(&bytes[HEADER_LEN..body_end])
        .map_err(|e| format!("record does not decode: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the record", rest.len()));
    }
    Ok(DecodedRecord {
        record,
        jpeg_len: u64::from_le_bytes(len_bytes),
        jpeg_crc: u32_at(20),
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, as in zlib and PNG).
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Bytes available to unprivileged writers on the filesystem holding `dir` (statvfs), or None
/// when the query fails or the platform has none (then only `max_bytes` bounds the spool).
#[cfg(unix)]
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer; statvfs only writes it.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field widths differ per target
    Some(u64::from(st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn available_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{FrameScores, Reason, StoredDetection};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "edgesieve-spool-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

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
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
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
                discarded_corrupt: 4
            }
        );
        assert_eq!(spool.pending().collect::<Vec<_>>(), vec![5]);
        assert_eq!(names(&tmp.0), vec!["000000000005.jpg", "000000000005.rec"]);
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
                discarded_corrupt: 0
            }
        );
        assert_eq!(
            names(&tmp.0),
            vec!["000000000001.jpg", "000000000001.rec", "notes.txt"]
        );
        assert_eq!(put(&mut spool, 0.5).id(), Some(4), "ids are not reused");
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
    fn disk_full_has_its_own_error() {
        let dir = Path::new("/spool");
        let err = io_error(
            dir,
            &dir.join("x.jpg"),
            io::Error::from_raw_os_error(ENOSPC),
        );
        assert!(err.is_disk_full());
        assert!(
            err.to_string().starts_with("spool disk full at /spool: "),
            "{err}"
        );
        let err = io_error(dir, dir, io::Error::from(io::ErrorKind::StorageFull));
        assert!(err.is_disk_full());
        let err = io_error(dir, dir, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!err.is_disk_full());
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

    #[test]
    fn value_key_orders_like_f32() {
        let vals = [
            f32::NEG_INFINITY,
            -2.0,
            -0.5,
            0.0,
            1e-6,
            0.5,
            3.0,
            f32::INFINITY,
        ];
        for pair in vals.windows(2) {
            assert!(value_key(pair[0]) < value_key(pair[1]), "{pair:?}");
        }
        assert_eq!(value_key(f32::NAN), value_key(f32::NEG_INFINITY));
    }
}
