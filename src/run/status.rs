//! The status file for fleet monitoring (issue 12): the run's counters in the Prometheus text
//! exposition format, rewritten atomically every `status.period_s` seconds and at the end of the
//! run, for node_exporter's textfile collector (`--collector.textfile.directory`; the file name
//! must end in `.prom`).
//!
//! Atomic: written to `<path>.tmp` in the same directory, then renamed over `<path>`, so the
//! collector never reads half a file. A failed write is a warning (once per run of failures),
//! never a reason to stop selecting. The text is built in a buffer the writer keeps and reuses
//! from write to write.

use crate::config::KeyError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest and longest period accepted (`status.period_s`).
pub const PERIOD_RANGE_S: (f64, f64) = (0.1, 3600.0);

/// The `[status]` section: where and how often the run writes its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// File the counters are written to in the Prometheus text format, e.g.
    /// /var/lib/node_exporter/textfile/edgesieve.prom; not set = no status file. Its directory
    /// must exist.
    pub path: Option<PathBuf>,
    /// Seconds between two writes, 0.1 to 3600 (also written once at the end of the run).
    pub period_s: f64,
    /// Seconds between two log lines of the run's rates (input and handled frames per second,
    /// the share a live source dropped, decision latency p50/p99), 0.1 to 3600; 0 = none.
    pub log_period_s: f64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            path: None,
            period_s: 10.0,
            log_period_s: 60.0,
        }
    }
}

impl StatusConfig {
    /// Checks the values, naming the first bad key (relative to `[status]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        let (lo, hi) = PERIOD_RANGE_S;
        if !(lo..=hi).contains(&self.period_s) {
            return Err(KeyError::new(
                "period_s",
                format!("must be in {lo}..={hi} seconds, got {}", self.period_s),
            ));
        }
        if self.log_period_s != 0.0 && !(lo..=hi).contains(&self.log_period_s) {
            return Err(KeyError::new(
                "log_period_s",
                format!(
                    "must be 0 (off) or in {lo}..={hi} seconds, got {}",
                    self.log_period_s
                ),
            ));
        }
        if let Some(p) = &self.path {
            if p.file_name().is_none() {
                return Err(KeyError::new(
                    "path",
                    format!("{} names no file", p.display()),
                ));
            }
        }
        Ok(())
    }

    /// The period of the rate log line, None when off.
    pub fn log_every(&self) -> Option<Duration> {
        (self.log_period_s > 0.0).then(|| Duration::from_secs_f64(self.log_period_s))
    }
}

/// What the status file reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Frames the source delivered, decoded or not.
    pub frames_in: u64,
    /// Frames that went through the detector and the selection.
    pub processed: u64,
    /// Frames the gate let skip the detector (near-copies of the last processed frame).
    pub gated: u64,
    /// Frames a live source dropped because the detector was busy.
    pub dropped: u64,
    /// Frames delivered but not processed: undecodable, or set aside as a camera fault
    /// (uniform, frozen).
    pub skipped: u64,
    pub kept: u64,
    /// Kept frames the spool refused (full disk, byte or entry limit).
    pub rejected: u64,
    /// Entries the spool evicted to make room.
    pub evicted: u64,
    /// Entries and bytes in the spool: what waits for upload.
    pub spool_entries: u64,
    pub spool_bytes: u64,
    /// The uploader's counters (0 without `[upload]`): entries uploaded (created, or completed
    /// on the server), JPEG bytes sent, entries quarantined, failed attempts retried.
    pub uploaded: u64,
    pub upload_bytes: u64,
    pub upload_quarantined: u64,
    pub upload_retries: u64,
    /// Median and 99th percentile of the time from a frame's arrival to its keep decision, s.
    pub latency_p50_s: f64,
    pub latency_p99_s: f64,
    /// Error and warning lines logged, and the time of the last error (s since the epoch, 0 =
    /// none).
    pub errors: u64,
    pub warnings: u64,
    pub last_error_s: f64,
    /// When the run started and when these counters were taken (s since the epoch).
    pub start_s: f64,
    pub now_s: f64,
}

/// Appends `c` to `out` in the Prometheus text exposition format (version 0.0.4).
pub fn render(c: &Counters, out: &mut String) {
    let rows: [(&str, &str, &str, f64); 21] = [
        (
            "edgesieve_frames_in_total",
            "counter",
            "Frames the source delivered, decoded or not.",
            c.frames_in as f64,
        ),
        (
            "edgesieve_frames_processed_total",
            "counter",
            "Frames through the detector and the selection.",
            c.processed as f64,
        ),
        (
            "edgesieve_frames_gated_total",
            "counter",
            "Frames that skipped the detector as near-copies of the last processed one.",
            c.gated as f64,
        ),
        (
            "edgesieve_frames_dropped_total",
            "counter",
            "Frames a live camera sent while the detector was busy (the newest is taken).",
            c.dropped as f64,
        ),
        (
            "edgesieve_frames_skipped_total",
            "counter",
            "Frames not processed: undecodable, uniform or frozen.",
            c.skipped as f64,
        ),
        (
            "edgesieve_frames_kept_total",
            "counter",
            "Frames selected and stored in the spool.",
            c.kept as f64,
        ),
        (
            "edgesieve_frames_rejected_total",
            "counter",
            "Kept frames the spool refused (disk full, byte or entry limit).",
            c.rejected as f64,
        ),
        (
            "edgesieve_spool_evicted_total",
            "counter",
            "Spool entries evicted to make room.",
            c.evicted as f64,
        ),
        (
            "edgesieve_spool_entries",
            "gauge",
            "Entries in the spool, waiting for upload.",
            c.spool_entries as f64,
        ),
        (
            "edgesieve_spool_bytes",
            "gauge",
            "Bytes of the spool's entries.",
            c.spool_bytes as f64,
        ),
        (
            "edgesieve_uploaded_total",
            "counter",
            "Spool entries the labeling backend confirmed.",
            c.uploaded as f64,
        ),
        (
            "edgesieve_upload_bytes_total",
            "counter",
            "JPEG bytes uploaded.",
            c.upload_bytes as f64,
        ),
        (
            "edgesieve_upload_quarantined_total",
            "counter",
            "Spool entries the backend refused, moved to the quarantine.",
            c.upload_quarantined as f64,
        ),
        (
            "edgesieve_upload_retries_total",
            "counter",
            "Failed upload attempts that were retried (backend down, timeouts, 5xx, 429).",
            c.upload_retries as f64,
        ),
        (
            "edgesieve_decision_latency_p50_seconds",
            "gauge",
            "Median time from a frame's arrival to its keep decision.",
            c.latency_p50_s,
        ),
        (
            "edgesieve_decision_latency_p99_seconds",
            "gauge",
            "99th percentile of the time from a frame's arrival to its keep decision.",
            c.latency_p99_s,
        ),
        (
            "edgesieve_log_errors_total",
            "counter",
            "Error lines logged.",
            c.errors as f64,
        ),
        (
            "edgesieve_log_warnings_total",
            "counter",
            "Warning lines logged.",
            c.warnings as f64,
        ),
        (
            "edgesieve_last_error_timestamp_seconds",
            "gauge",
            "Time of the last error line logged (0: none).",
            c.last_error_s,
        ),
        (
            "edgesieve_start_timestamp_seconds",
            "gauge",
            "Time the run started.",
            c.start_s,
        ),
        (
            "edgesieve_status_timestamp_seconds",
            "gauge",
            "Time these figures were taken.",
            c.now_s,
        ),
    ];
    for (name, kind, help, value) in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// Writes the status file every period.
#[derive(Debug)]
pub struct StatusWriter {
    path: PathBuf,
    tmp: PathBuf,
    period: Duration,
    last: Option<Instant>,
    text: String,
    failures: u64,
}

impl StatusWriter {
    /// A writer for `config`; None when no path is set.
    pub fn new(config: &StatusConfig) -> Option<StatusWriter> {
        let path = config.path.clone()?;
        Some(StatusWriter {
            tmp: crate::util::tmp_path(&path),
            path,
            period: Duration::from_secs_f64(config.period_s),
            last: None,
            text: String::with_capacity(2048),
            failures: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when a period has passed since the last write (or nothing was written yet).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|t| now.duration_since(t) >= self.period)
    }

    /// Writes `c` now: to the temporary file, then renamed over the status file. A failure is
    /// logged (the first of a series, then at powers of two) and returned.
    pub fn write(&mut self, c: &Counters, now: Instant) -> std::io::Result<()> {
        self.last = Some(now);
        self.text.clear();
        render(c, &mut self.text);
        let result = std::fs::write(&self.tmp, self.text.as_bytes())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        match &result {
            Ok(()) => self.failures = 0,
            Err(e) => {
                self.failures += 1;
                if self.failures.is_power_of_two() {
                    log::warn!(
                        "status file {}: {e} (status.path); selection goes on",
                        self.path.display()
                    );
                }
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let c = Counters {
            frames_in: 12,
            processed: 11,
            skipped: 1,
            kept: 3,
            spool_bytes: 4096,
            upload_bytes: 77,
            latency_p99_s: 0.25,
            last_error_s: 1.5e9,
            ..Counters::default()
        };
        let mut out = String::new();
        render(&c, &mut out);
        let values: Vec<(&str, &str)> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .collect();
        assert_eq!(values.len(), 21);
        assert!(values.contains(&("edgesieve_frames_in_total", "12")));
        assert!(values.contains(&("edgesieve_frames_skipped_total", "1")));
        assert!(values.contains(&("edgesieve_frames_kept_total", "3")));
        assert!(values.contains(&("edgesieve_spool_bytes", "4096")));
        assert!(values.contains(&("edgesieve_upload_bytes_total", "77")));
        assert!(values.contains(&("edgesieve_decision_latency_p99_seconds", "0.25")));
        assert!(values.contains(&("edgesieve_last_error_timestamp_seconds", "1500000000")));
        for (name, _) in &values {
            assert!(out.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(out.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn writes_atomically_and_only_when_due() {
        let dir = crate::util::testing::TempDir::new("status");
        let config = StatusConfig {
            path: Some(dir.path().join("edgesieve.prom")),
            period_s: 60.0,
            ..StatusConfig::default()
        };
        let mut w = StatusWriter::new(&config).unwrap();
        let t0 = Instant::now();
        assert!(w.due(t0));
        let c = Counters {
            kept: 7,
            ..Counters::default()
        };
        w.write(&c, t0).unwrap();
        let text = std::fs::read_to_string(w.path()).unwrap();
        assert!(text.contains("edgesieve_frames_kept_total 7\n"), "{text}");
        assert!(!dir.path().join("edgesieve.prom.tmp").exists());
        assert!(!w.due(t0 + Duration::from_secs(59)));
        assert!(w.due(t0 + Duration::from_secs(60)));
        // A directory that does not exist: an error, nothing left behind, and it goes on.
        let gone = StatusConfig {
            path: Some(dir.path().join("missing/edgesieve.prom")),
            period_s: 1.0,
            ..StatusConfig::default()
        };
        let mut w = StatusWriter::new(&gone).unwrap();
        assert!(w.write(&c, t0).is_err());
        assert!(w.due(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn bad_config_names_the_key() {
        let bad = StatusConfig {
            period_s: 0.0,
            ..StatusConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "period_s");
        let bad = StatusConfig {
            path: Some(PathBuf::from("/")),
            ..StatusConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "path");
        let bad = StatusConfig {
            log_period_s: 0.01,
            ..StatusConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "log_period_s");
        let off = StatusConfig {
            log_period_s: 0.0,
            ..StatusConfig::default()
        };
        assert!(off.validate().is_ok() && off.log_every().is_none());
        assert!(StatusConfig::default().validate().is_ok());
        assert!(StatusConfig::default().path.is_none());
    }
}
