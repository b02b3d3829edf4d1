//! A small `log` backend for journald and terminals: one line per event on stderr with a UTC
//! timestamp, level and module. The level comes from `EDGESIEVE_LOG` (error, warn, info, debug,
//! trace) or the caller.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Error lines logged since the start, and the time of the last (ms since the epoch, 0 = none):
/// what the status file reports as the last error (see `crate::run::status`).
static ERRORS: AtomicU64 = AtomicU64::new(0);
static LAST_ERROR_MS: AtomicU64 = AtomicU64::new(0);
static WARNINGS: AtomicU64 = AtomicU64::new(0);

/// (error lines, warning lines, ms since the epoch of the last error line or 0) logged so far.
pub fn problem_counts() -> (u64, u64, u64) {
    (
        ERRORS.load(Ordering::Relaxed),
        WARNINGS.load(Ordering::Relaxed),
        LAST_ERROR_MS.load(Ordering::Relaxed),
    )
}

/// Counts an error or warning line (whether or not the level shows it).
fn count(level: Level, now: std::time::Duration) {
    match level {
        Level::Error => {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            LAST_ERROR_MS.store(now.as_millis() as u64, Ordering::Relaxed);
        }
        Level::Warn => {
            WARNINGS.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

struct Logger {
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // tract's own info lines (kernel probing) are start-up chatter: show them at debug.
        let level = if metadata.target().starts_with("tract") && metadata.level() == Level::Info {
            Level::Debug
        } else {
            metadata.level()
        };
        level <= self.level
    }

    fn log(&self, record: &Record) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        count(record.level(), now);
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}: {}\n",
            format_utc(now.as_secs(), now.subsec_millis()),
            record.level(),
            record.target(),
            record.args()
        );
        // One write per line so concurrent lines do not interleave; a closed stderr is ignored.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Parses a level name; None for an unknown one.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.trim().parse().ok()
}

/// Installs the logger. `EDGESIEVE_LOG` overrides `default`; a bad value is reported and ignored.
pub fn init(default: LevelFilter) {
    let mut level = default;
    let mut bad = None;
    if let Ok(v) = std::env::var("EDGESIEVE_LOG") {
        match parse_level(&v) {
            Some(l) => level = l,
            None => bad = Some(v),
        }
    }
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
    if let Some(v) = bad {
        log::warn!(
            "EDGESIEVE_LOG={v:?} is not a level (error, warn, info, debug, trace); using {level}"
        );
    }
}

/// Sets the level after start-up (e.g. from the config file).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from Unix seconds, without a date crate.
pub fn format_utc(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_hand_checked() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000Z");
        // 2026-11-23 12:34:56 UTC
        assert_eq!(format_utc(1_795_437_296, 7), "2026-11-23T12:34:56.007Z");
        // Leap day 2024-02-29 00:00:00
        assert_eq!(format_utc(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
