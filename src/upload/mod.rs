//! Upload stage: kept frames leave the spool for the labeling backend, exactly once.
//!
//! The [`Uploader`] takes the spool's entries highest value first, hands each to a [`Backend`]
//! as an [`Item`] (the JPEG, the detections as pre-annotations, the scores as metadata) and acks
//! the entry (deletes it from the spool) only after the backend confirmed all of it. Backends
//! make delivery idempotent: every item carries a stable id (`<device_id>-<spool id:012>`, also
//! in the uploaded file's name), and before creating anything a backend asks the server whether
//! it already has that id, completing what a crash or timeout left missing instead of creating
//! it twice. [`label_studio`] is the Label Studio backend.
//!
//! Faults, by [`UploadError::class`]:
//! * the server unreachable, a timeout, 5xx, 429: [`ErrorClass::Retry`]: the same entry again
//!   after a capped exponential backoff with jitter ([`backoff`]), honouring `Retry-After`;
//!   nothing is dropped;
//! * credentials refused (401/403), the project missing, TLS verification failed:
//!   [`ErrorClass::Pause`]: a clear error naming the cause; the uploader waits
//!   [`UploadConfig::pause_ms`] and tries again (`upload --once` exits non-zero); the spool is
//!   intact;
//! * any other 4xx for one entry: [`ErrorClass::Entry`]: that entry is moved to the spool's
//!   quarantine with the server's reason (`edgesieve inspect` lists it) and the rest continue;
//! * the spool itself failing: [`ErrorClass::Fatal`].
//!
//! One owner: the spool's `flock` allows one process per spool directory. Inside `edgesieve
//! run` the uploader is a thread sharing the run's spool through [`SharedSpool`]; a separate
//! `edgesieve upload` on a spool a running `run` holds is refused with the holder's pid (to
//! upload while selecting, configure `[upload]` for `run`).

pub mod backoff;
pub mod budget;
pub mod export;
pub mod label_studio;
pub mod token;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use crate::source::Frame;
use crate::store::context::ContextSet;
use crate::store::record::{ContextFrame, KeptRecord, Reason};
use crate::store::spool::{Spool, SpoolError};
use crate::store::{PutOutcome, Sink, StoreError};
use backoff::Backoff;
use budget::{Admit, Budget};

/// `[upload]`: where and how kept frames are uploaded. Uploading is off while `url` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Base URL of the Label Studio server, http:// or https:// (empty: no uploading; `run`
    /// only spools).
    pub url: String,
    /// The project: its numeric id, or its title (a bounding-box project for the model's classes
    /// is created when no project has that title).
    pub project: String,
    /// File whose first line is the API token (a legacy token, or a personal access token, which
    /// is exchanged for short-lived access tokens). Never put a token on the command line.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token, when `token_file` is not set.
    pub token_env: Option<String>,
    /// This vehicle's id in uploaded file names, stable ids and task metadata (letters, digits,
    /// '.', '_', '-'; default: the host name).
    pub device_id: Option<String>,
    /// PEM file of the CA certificates trusted for https instead of the built-in public roots
    /// (a private CA). Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request, connection included, in milliseconds.
    pub timeout_ms: u64,
    /// First retry delay after a failure (doubling up to `retry_max_ms`), milliseconds.
    pub retry_min_ms: u64,
    /// Longest retry delay, milliseconds.
    pub retry_max_ms: u64,
    /// Pause after the server refused the credentials or the project, or TLS verification
    /// failed, before trying again, milliseconds.
    pub pause_ms: u64,
    /// How often an idle uploader looks for new entries, milliseconds.
    pub poll_ms: u64,
    /// `upload --once` gives up (exit 1) when the server stayed unreachable this long,
    /// milliseconds.
    pub once_give_up_ms: u64,
    /// Largest JPEG uploaded, bytes; a larger entry is quarantined.
    pub max_file_bytes: u64,
    /// The link the default route goes through: auto (from its interface name and
    /// `metered_interfaces`), metered or unmetered.
    pub link: String,
    /// Interface names of metered links (LTE modems, tethered phones); a trailing `*` matches
    /// any suffix.
    pub metered_interfaces: Vec<String>,
    /// Bytes uploaded per UTC day over a metered link (JPEG plus a 4 KiB allowance per task for
    /// the JSON); 0 = no limit. When spent, uploading waits and selection goes on.
    pub metered_bytes_per_day: u64,
    /// Upload rate cap over a metered link, bytes per second; 0 = none.
    pub metered_bytes_per_second: u64,
    /// Bytes uploaded per UTC day over other links; 0 = no limit.
    pub unmetered_bytes_per_day: u64,
    /// Upload rate cap over other links, bytes per second; 0 = none.
    pub unmetered_bytes_per_second: u64,
    /// Daily upload window, "HH:MM-HH:MM" in UTC (may wrap midnight); empty = always.
    pub window: String,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            url: String::new(),
            project: "edgesieve".into(),
            token_file: None,
            token_env: None,
            device_id: None,
            ca_file: None,
            timeout_ms: 30_000,
            retry_min_ms: 500,
            retry_max_ms: 60_000,
            pause_ms: 300_000,
            poll_ms: 1_000,
            once_give_up_ms: 600_000,
            max_file_bytes: 16 << 20,
            link: "auto".into(),
            metered_interfaces: ["wwan*", "wwp*", "usb*", "rmnet*", "ppp*"]
                .map(String::from)
                .to_vec(),
            metered_bytes_per_day: 50 << 20,
            metered_bytes_per_second: 256 << 10,
            unmetered_bytes_per_day: 0,
            unmetered_bytes_per_second: 0,
            window: String::new(),
        }
    }
}

impl UploadConfig {
    /// True when a backend is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn validate(&self) -> Result<(), KeyError> {
        if self.enabled() {
            let rest = self
                .url
                .strip_prefix("https://")
                .or_else(|| self.url.strip_prefix("http://"));
            match rest {
                Some(r) if !r.is_empty() && !r.contains('@') => {}
                Some(_) => {
                    return Err(KeyError::new(
                        "url",
                        "expected http(s)://host[:port][/path] without credentials in it",
                    ))
                }
                None => return Err(KeyError::new("url", "expected an http:// or https:// URL")),
            }
            if self.token_file.is_none() && self.token_env.is_none() {
                return Err(KeyError::new(
                    "token_file",
                    "uploading needs a token: set token_file or token_env",
                ));
            }
        }
        if self.project.trim().is_empty() {
            return Err(KeyError::new("project", "expected a project id or title"));
        }
        if let Some(id) = &self.device_id {
            check_device_id(id).map_err(|m| KeyError::new("device_id", m))?;
        }
        for (key, v) in [
            ("timeout_ms", self.timeout_ms),
            ("retry_min_ms", self.retry_min_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("poll_ms", self.poll_ms),
            ("max_file_bytes", self.max_file_bytes),
        ] {
            if v == 0 {
                return Err(KeyError::new(key, "must be above 0"));
            }
        }
        if self.retry_max_ms < self.retry_min_ms {
            return Err(KeyError::new(
                "retry_max_ms",
                "must be at least retry_min_ms",
            ));
        }
        Ok(())
    }

    /// The configured device id, else the host name (made safe for file names), else "device".
    pub fn device_id(&self) -> String {
        if let Some(id) = &self.device_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let safe: String = host
            .trim()
            .chars()
            .map(|c| if device_char(c) { c } else { '_' })
            .take(64)
            .collect();
        if safe.is_empty() {
            "device".into()
        } else {
            safe
        }
    }
}

fn device_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_device_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(device_char) {
        return Err(format!(
            "expected 1-64 letters, digits, '.', '_' or '-', got {id:?}"
        ));
    }
    Ok(())
}

/// What a backend receives for one spool entry.
#[derive(Debug)]
pub struct Item<'a> {
    /// `<device_id>-<spool id:012>`: the same on every attempt, unique across the fleet.
    pub stable_id: &'a str,
    pub device_id: &'a str,
    pub spool_id: u64,
    pub jpeg: &'a [u8],
    /// The JPEG's size, which is smaller than the record's frame size when the spool downscaled.
    pub jpeg_width: u32,
    pub jpeg_height: u32,
    pub record: &'a KeptRecord,
    /// The kept frame's context frames (`[context]`), uploaded with it as one event.
    pub context: &'a ContextSet,
}

impl Item<'_> {
    /// The uploaded file's name: the stable id, so the server's copy can be found by it.
    pub fn file_name(&self) -> String {
        format!("{}.jpg", self.stable_id)
    }

    /// A context frame's file name: the stable id and the offset, `b` before and `a` after
    /// (`car-7-000000000012-b02.jpg` is two frames before), never ending in the kept frame's own
    /// name. Letters and digits only: Label Studio drops a `+` from stored file names.
    pub fn context_file_name(&self, frame: &ContextFrame) -> String {
        let side = if frame.offset < 0 { 'b' } else { 'a' };
        format!(
            "{}-{side}{:02}.jpg",
            self.stable_id,
            frame.offset.unsigned_abs()
        )
    }

    /// A context frame's task metadata: the event it belongs to (the kept frame's stable id,
    /// also its `meta.event`), its offset, frame and capture time.
    pub fn context_meta(&self, frame: &ContextFrame) -> serde_json::Value {
        serde_json::json!({
            "event": self.stable_id,
            "role": "context",
            "offset": frame.offset,
            "device_id": self.device_id,
            "spool_id": self.spool_id,
            "capture_time_ms": frame.timestamp_ms,
            "frame_name": frame.frame_name,
            "frame_index": frame.frame_index,
            "source": self.record.source,
        })
    }

    /// The task metadata: scores, reasons, capture time, device, source.
    pub fn meta(&self) -> serde_json::Value {
        let r = self.record;
        let reasons: Vec<String> = r.reasons.iter().map(reason_name).collect();
        serde_json::json!({
            "edgesieve_id": self.stable_id,
            "device_id": self.device_id,
            "spool_id": self.spool_id,
            "uncertainty": r.scores.uncertainty,
            "novelty": r.scores.novelty,
            "value": r.scores.value,
            "threshold": r.scores.threshold,
            "reasons": reasons,
            "capture_time_ms": r.timestamp_ms,
            "source": r.source,
            "frame_name": r.frame_name,
            "frame_index": r.frame_index,
            "frame_width": r.width,
            "frame_height": r.height,
            "model": r.model,
            "event": self.stable_id,
            "role": "kept",
            "context_frames": self.context.frames.len(),
        })
    }
}

fn reason_name(r: &Reason) -> String {
    match r {
        Reason::Value => "value".into(),
        Reason::Explore => "explore".into(),
        Reason::ClassTrigger(c) => format!("class_trigger:{c}"),
        Reason::RareClass(c) => format!("rare_class:{c}"),
    }
}

/// What a delivery found on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Created now, all of it.
    Created,
    /// The server had all of it already (an earlier attempt died before the ack).
    AlreadyThere,
    /// The server had part of it; the missing parts were added.
    Completed,
}

/// A labeling backend.
pub trait Backend {
    /// Where items go, for logs (never a credential).
    fn describe(&self) -> String;

    /// Delivers `item` so that the server ends up with exactly one complete copy of it, whatever
    /// earlier attempts left there.
    fn deliver(&mut self, item: &Item) -> Result<Delivery, UploadError>;
}

/// How the uploader reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same entry again after a backoff (`Retry-After` when the server gave one).
    Retry { retry_after: Option<Duration> },
    /// The server or its configuration refuses us: pause, then try again.
    Pause,
    /// This entry is refused: quarantine it, go on with the others.
    Entry,
    /// The spool failed: stop.
    Fatal,
}

/// Why an upload failed. Never carries the token.
#[derive(Debug)]
pub enum UploadError {
    Config(KeyError),
    Token(token::TokenError),
    /// No answer: connection refused, DNS, timeout, a dropped connection.
    Transport {
        url: String,
        message: String,
    },
    /// TLS failed: the certificate is not trusted, the handshake failed, `ca_file` is unusable.
    Tls {
        url: String,
        message: String,
    },
    /// The server answered with an error status.
    Status {
        method: &'static str,
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the response body (the server's reason).
        body: String,
    },
    /// The server answered something we cannot use.
    Protocol {
        url: String,
        message: String,
    },
    /// The server does not have what the configuration names (the project).
    Missing {
        what: String,
    },
    /// The entry cannot be uploaded as it is (too large, unreadable JPEG).
    Entry {
        message: String,
    },
    Spool(SpoolError),
    /// The uploader thread of `run` panicked (a bug); the spool is intact.
    ThreadPanicked,
}

impl UploadError {
    pub fn class(&self) -> ErrorClass {
        match self {
            UploadError::Transport { .. } | UploadError::Protocol { .. } => {
                ErrorClass::Retry { retry_after: None }
            }
            UploadError::Status {
                status,
                retry_after,
                ..
            } => match status {
                429 | 408 | 500..=599 => ErrorClass::Retry {
                    retry_after: *retry_after,
                },
                401 | 403 | 404 => ErrorClass::Pause,
                _ => ErrorClass::Entry,
            },
            UploadError::Config(_)
            | UploadError::Token(_)
            | UploadError::Tls { .. }
            | UploadError::Missing { .. } => ErrorClass::Pause,
            UploadError::Entry { .. } => ErrorClass::Entry,
            UploadError::Spool(_) | UploadError::ThreadPanicked => ErrorClass::Fatal,
        }
    }
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::Config(e) => write!(f, "upload.{e}"),
            UploadError::Token(e) => e.fmt(f),
            UploadError::Transport { url, message } => {
                write!(f, "backend {url} unreachable: {message}")
            }
            UploadError::Tls { url, message } => write!(
                f,
                "TLS to {url} failed: {message} (a private CA goes in upload.ca_file)"
            ),
            UploadError::Status {
                method,
                url,
                status,
                body,
                ..
            } => {
                let hint = match status {
                    401 => " (the token was refused: check upload.token_file / token_env)",
                    403 => " (the token's user may not do this)",
                    404 => " (check upload.url and upload.project)",
                    429 => " (rate limited)",
                    _ => "",
                };
                write!(f, "{method} {url}: HTTP {status}{hint}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            UploadError::Protocol { url, message } => {
                write!(f, "unexpected answer from {url}: {message}")
            }
            UploadError::Missing { what } => write!(f, "{what}"),
            UploadError::Entry { message } => write!(f, "{message}"),
            UploadError::Spool(e) => e.fmt(f),
            UploadError::ThreadPanicked => write!(f, "the upload thread panicked"),
        }
    }
}

impl std::error::Error for UploadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadError::Config(e) => Some(e),
            UploadError::Token(e) => Some(e),
            UploadError::Spool(e) => Some(e),
            _ => None,
        }
    }
}

/// The spool, shared by the job loop (which puts) and the uploader thread (which acks): one
/// owner of the directory, one lock, short critical sections (no network I/O under the lock).
#[derive(Debug, Clone)]
pub struct SharedSpool(Arc<Mutex<Spool>>);

impl SharedSpool {
    pub fn new(spool: Spool) -> SharedSpool {
        SharedSpool(Arc::new(Mutex::new(spool)))
    }

    /// The spool, locked. A thread that panicked while holding it left it consistent (every
    /// spool operation is crash-safe on disk), so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for SharedSpool {
    fn put(
        &mut self,
        record: &KeptRecord,
        frame: &Frame,
        context: &ContextSet,
    ) -> Result<PutOutcome, StoreError> {
        Sink::put(&mut *self.lock(), record, frame, context)
    }
}

/// Whether the uploader returns when the spool is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload what is pending and return (`edgesieve upload --once`).
    Once,
    /// Keep uploading new entries until asked to stop.
    UntilStopped,
}

/// Counters of an upload session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadStats {
    /// Entries created on the server.
    pub uploaded: u64,
    /// Entries the server already had in full (a crash between its confirmation and our ack).
    pub already_there: u64,
    /// Entries the server had in part, completed.
    pub completed: u64,
    /// JPEG bytes sent.
    pub bytes: u64,
    /// Entries moved to the quarantine (refused by the server, unreadable).
    pub quarantined: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Pauses after refused credentials or configuration.
    pub pauses: u64,
    /// Entries left in the spool because the day's budget was spent or the window closed
    /// (`upload --once` returns then).
    pub held: u64,
}

impl fmt::Display for UploadStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uploaded {} ({} bytes), {} already on the server, {} completed, {} quarantined, {} retries",
            self.uploaded, self.bytes, self.already_there, self.completed, self.quarantined, self.retries
        )?;
        if self.held > 0 {
            write!(f, ", {} held back by the budget or window", self.held)?;
        }
        Ok(())
    }
}

impl UploadStats {
    /// Entries that left the spool for the server.
    pub fn delivered(&self) -> u64 {
        self.uploaded + self.already_there + self.completed
    }
}

/// Drains a spool into a backend (see the module docs).
pub struct Uploader<B: Backend> {
    backend: B,
    config: UploadConfig,
    device_id: String,
    backoff: Backoff,
    stats: UploadStats,
    /// Where the counters are copied after each step, for a status file written by another
    /// thread ([`Uploader::publish_to`]).
    published: Option<Arc<Mutex<UploadStats>>>,
}

/// What one step of the upload loop did.
enum Step {
    /// The entry went (or was gone already); wait this long before the next (the rate cap).
    Done(Duration),
    /// The budget or window holds uploads back, for this reason.
    Wait(String),
}

impl<B: Backend> Uploader<B> {
    pub fn new(backend: B, config: UploadConfig) -> Uploader<B> {
        let device_id = config.device_id();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let backoff = Backoff::new(
            Duration::from_millis(config.retry_min_ms),
            Duration::from_millis(config.retry_max_ms),
            seed,
        );
        Uploader {
            backend,
            config,
            device_id,
            backoff,
            stats: UploadStats::default(),
            published: None,
        }
    }

    pub fn stats(&self) -> UploadStats {
        self.stats
    }

    /// Copies the counters into `cell` as they change (each step of [`Uploader::run`]), so that
    /// another thread can report them while this one uploads.
    pub fn publish_to(&mut self, cell: Arc<Mutex<UploadStats>>) {
        self.published = Some(cell);
    }

    fn publish(&self) {
        if let Some(cell) = &self.published {
            *cell
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats;
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Uploads from `spool` until it is empty ([`Mode::Once`]) or `stop()` says so. Returns the
    /// counters; `Err` for a fatal error, and in [`Mode::Once`] also for a pause-class error or
    /// a server unreachable for [`UploadConfig::once_give_up_ms`]. Entries not confirmed by the
    /// server stay in the spool in every case.
    pub fn run(
        &mut self,
        spool: &SharedSpool,
        mode: Mode,
        stop: &dyn Fn() -> bool,
    ) -> Result<UploadStats, UploadError> {
        log::info!(
            "upload: to {} as device {}",
            self.backend.describe(),
            self.device_id
        );
        let mut budget = Budget::load(spool.lock().dir(), &self.config);
        let mut failing_since: Option<Instant> = None;
        let mut waiting: Option<String> = None;
        while !stop() {
            self.publish();
            let next = spool.lock().upload_order().next();
            let Some(id) = next else {
                if mode == Mode::Once {
                    break;
                }
                sleep_unless(stop, Duration::from_millis(self.config.poll_ms));
                continue;
            };
            let step = self.upload_one(spool, id, &mut budget);
            self.publish();
            match step {
                Ok(Step::Wait(reason)) => {
                    if mode == Mode::Once {
                        self.stats.held = spool.lock().stats().entries as u64;
                        log::info!(
                            "upload: {reason}; {} entries stay in the spool",
                            self.stats.held
                        );
                        break;
                    }
                    if waiting.as_deref() != Some(reason.as_str()) {
                        log::info!("upload: {reason}; waiting (selection goes on)");
                        waiting = Some(reason);
                    }
                    sleep_unless(stop, Duration::from_millis(self.config.poll_ms));
                }
                Ok(Step::Done(pause)) => {
                    if self.backoff.failures() > 0 {
                        log::info!("upload: the backend answers again");
                    }
                    if waiting.take().is_some() {
                        log::info!("upload: resumed");
                    }
                    self.backoff.reset();
                    failing_since = None;
                    sleep_unless(stop, pause);
                }
                Err(e) => match e.class() {
                    ErrorClass::Fatal => return Err(e),
                    ErrorClass::Entry => {
                        let reason = format!("refused by the backend: {e}");
                        log::warn!("upload: entry {id:012} {reason}; quarantining it");
                        if spool
                            .lock()
                            .quarantine_entry(id, &reason)
                            .map_err(UploadError::Spool)?
                        {
                            self.stats.quarantined += 1;
                        }
                    }
                    ErrorClass::Pause => {
                        self.stats.pauses += 1;
                        if mode == Mode::Once {
                            return Err(e);
                        }
                        log::error!(
                            "upload: {e}; pausing {} s (the spool keeps every entry)",
                            self.config.pause_ms / 1000
                        );
                        sleep_unless(stop, Duration::from_millis(self.config.pause_ms));
                    }
                    ErrorClass::Retry { retry_after } => {
                        self.stats.retries += 1;
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if mode == Mode::Once
                            && since.elapsed() >= Duration::from_millis(self.config.once_give_up_ms)
                        {
                            return Err(e);
                        }
                        let delay = self.backoff.next_delay(retry_after);
                        // The first failure of a streak and every doubling are warnings; the rest
                        // would flood the log of a car that is out of coverage for an hour.
                        if self.backoff.failures().is_power_of_two() {
                            log::warn!(
                                "upload: {e}; retry {} in {:.1} s",
                                self.backoff.failures(),
                                delay.as_secs_f64()
                            );
                        } else {
                            log::debug!("upload: {e}; retry in {:.1} s", delay.as_secs_f64());
                        }
                        sleep_unless(stop, delay);
                    }
                },
            }
        }
        self.publish();
        Ok(self.stats)
    }

    /// Delivers entry `id` and acks it, if the budget admits it.
    fn upload_one(
        &mut self,
        spool: &SharedSpool,
        id: u64,
        budget: &mut Budget,
    ) -> Result<Step, UploadError> {
        let read = {
            let spool = spool.lock();
            spool
                .read(id)
                .and_then(|(record, jpeg)| Ok((record, jpeg, spool.read_context(id)?)))
        };
        let (record, jpeg, (frames, jpegs)) = match read {
            Ok(entry) => entry,
            // Acked, evicted or quarantined since we picked it.
            Err(SpoolError::NotFound { .. }) => return Ok(Step::Done(Duration::ZERO)),
            Err(SpoolError::Corrupt { reason, .. }) => {
                return Err(UploadError::Entry {
                    message: format!("entry {id:012} is corrupt: {reason}"),
                })
            }
            Err(e) => return Err(UploadError::Spool(e)),
        };
        if jpeg.len() as u64 > self.config.max_file_bytes {
            return Err(UploadError::Entry {
                message: format!(
                    "entry {id:012}: its JPEG is {} bytes, above upload.max_file_bytes {}",
                    jpeg.len(),
                    self.config.max_file_bytes
                ),
            });
        }
        let Some((jpeg_width, jpeg_height)) = crate::store::jpeg_dimensions(&jpeg) else {
            return Err(UploadError::Entry {
                message: format!("entry {id:012}: its JPEG has no readable size"),
            });
        };
        let context = ContextSet { frames, jpegs };
        let total_bytes = (jpeg.len() + context.jpegs.len()) as u64;
        let class = match budget.admit(total_bytes, budget::now_ms()) {
            Admit::Go(class) => class,
            Admit::Wait(reason) => return Ok(Step::Wait(reason)),
        };
        let started = Instant::now();
        let stable_id = format!("{}-{id:012}", self.device_id);
        let item = Item {
            stable_id: &stable_id,
            device_id: &self.device_id,
            spool_id: id,
            jpeg: &jpeg,
            jpeg_width,
            jpeg_height,
            record: &record,
            context: &context,
        };
        let delivery = self.backend.deliver(&item)?;
        let sent = match delivery {
            Delivery::Created => {
                self.stats.uploaded += 1;
                self.stats.bytes += total_bytes;
                total_bytes
            }
            Delivery::AlreadyThere => {
                self.stats.already_there += 1;
                0
            }
            Delivery::Completed => {
                self.stats.completed += 1;
                0
            }
        };
        log::debug!("upload: {stable_id} {delivery:?}");
        spool.lock().ack(id).map_err(UploadError::Spool)?;
        let pause = budget.record(class, sent, started.elapsed(), budget::now_ms());
        Ok(Step::Done(pause))
    }
}

/// Sleeps `total`, waking every 100 ms to check `stop`.
fn sleep_unless(stop: &dyn Fn() -> bool, total: Duration) {
    let end = Instant::now() + total;
    while !stop() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_name_the_key() {
        let mut c = UploadConfig {
            url: "ftp://x".into(),
            ..UploadConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "url");
        c.url = "https://user:pw@host".into();
        assert_eq!(c.validate().unwrap_err().key, "url");
        c.url = "http://127.0.0.1:8080".into();
        assert_eq!(c.validate().unwrap_err().key, "token_file");
        c.token_env = Some("LS_TOKEN".into());
        c.validate().unwrap();
        c.device_id = Some("car 7".into());
        assert_eq!(c.validate().unwrap_err().key, "device_id");
        c.device_id = Some("car-7".into());
        c.retry_max_ms = 1;
        assert_eq!(c.validate().unwrap_err().key, "retry_max_ms");
        assert!(UploadConfig::default().validate().is_ok());
        assert!(!UploadConfig::default().enabled());
    }

    #[test]
    fn device_id_defaults_to_a_safe_host_name() {
        let id = UploadConfig::default().device_id();
        assert!(check_device_id(&id).is_ok(), "{id}");
    }

    #[test]
    fn errors_are_classed() {
        let status = |s| UploadError::Status {
            method: "POST",
            url: "u".into(),
            status: s,
            retry_after: Some(Duration::from_secs(3)),
            body: String::new(),
        };
        assert_eq!(
            status(429).class(),
            ErrorClass::Retry {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(status(503).class(), ErrorClass::Retry { .. }));
        assert_eq!(status(401).class(), ErrorClass::Pause);
        assert_eq!(status(403).class(), ErrorClass::Pause);
        assert_eq!(status(400).class(), ErrorClass::Entry);
        assert_eq!(status(413).class(), ErrorClass::Entry);
        let tls = UploadError::Tls {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(tls.class(), ErrorClass::Pause);
        assert!(status(401).to_string().contains("token"));
    }
}
