//! Upload budgets by network link: cars upload over LTE (metered, paid by the byte) and depot
//! Wi-Fi or Ethernet (not). The link class comes from the interface carrying the default route
//! (`/proc/net/route`), matched against [`UploadConfig::metered_interfaces`]; each class has a
//! byte budget per UTC day and a rate cap, and uploading can be held to a daily window.
//!
//! When the budget is spent or the window is closed, uploading waits (selection goes on and the
//! spool's value-ordered eviction decides what survives) and looks again every `poll_ms`: a car
//! that reaches the depot's Wi-Fi starts uploading without a restart. The bytes used today are
//! kept in `upload-usage` in the spool directory, so a restart does not reset the budget.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::UploadConfig;
use crate::config::KeyError;

/// The file in the spool directory holding today's usage.
pub const USAGE_FILE: &str = "upload-usage";
const DAY_MS: u64 = 86_400_000;
/// What a task costs besides its JPEG (the JSON of prediction and meta, headers), counted
/// against the budget.
pub const OVERHEAD_BYTES: u64 = 4096;

/// The kind of link the default route goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkClass {
    Metered,
    Unmetered,
    /// No default route: nothing can be uploaded.
    None,
}

/// Whether an upload of some bytes may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    Go(LinkClass),
    /// Not now; the reason, for the log.
    Wait(String),
}

/// `HH:MM-HH:MM` in UTC; the end may be before the start (a window over midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start_min: u32,
    end_min: u32,
}

impl Window {
    /// `""`: always open.
    pub fn parse(text: &str) -> Result<Option<Window>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let parse_hm = |s: &str| -> Option<u32> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("expected HH:MM-HH:MM (UTC), got {text:?}"))?;
        match (parse_hm(a), parse_hm(b)) {
            (Some(start_min), Some(end_min)) if start_min != end_min => {
                Ok(Some(Window { start_min, end_min }))
            }
            _ => Err(format!(
                "expected HH:MM-HH:MM (UTC) with two different times, got {text:?}"
            )),
        }
    }

    /// Whether the window is open at `now_ms` (Unix milliseconds).
    pub fn contains(&self, now_ms: u64) -> bool {
        let minute = ((now_ms % DAY_MS) / 60_000) as u32;
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }
}

/// `name` matches `pattern` (a trailing `*` matches any suffix).
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The interface of the default route in a `/proc/net/route` text (the lowest metric wins).
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; RTF_UP = 1.
            let up = f
                .get(3)
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .is_some_and(|flags| flags & 1 == 1);
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" && up)
                .then(|| (f[6].parse::<u32>().unwrap_or(u32::MAX), f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Checks the budget keys of `[upload]`.
pub fn validate(config: &UploadConfig) -> Result<(), KeyError> {
    Window::parse(&config.window).map_err(|m| KeyError::new("window", m))?;
    if !matches!(config.link.as_str(), "auto" | "metered" | "unmetered") {
        return Err(KeyError::new(
            "link",
            format!("expected auto, metered or unmetered, got {:?}", config.link),
        ));
    }
    if config
        .metered_interfaces
        .iter()
        .any(|p| p.trim().is_empty())
    {
        return Err(KeyError::new("metered_interfaces", "an empty pattern"));
    }
    Ok(())
}

/// The budget state of one uploader.
#[derive(Debug)]
pub struct Budget {
    config: UploadConfig,
    window: Option<Window>,
    usage_path: PathBuf,
    day: u64,
    metered: u64,
    unmetered: u64,
    route_file: PathBuf,
}

impl Budget {
    /// Loads today's usage from `spool_dir` (a missing or unreadable file is a fresh day).
    pub fn load(spool_dir: &Path, config: &UploadConfig) -> Budget {
        let mut b = Budget {
            config: config.clone(),
            window: Window::parse(&config.window).ok().flatten(),
            usage_path: spool_dir.join(USAGE_FILE),
            day: 0,
            metered: 0,
            unmetered: 0,
            route_file: PathBuf::from("/proc/net/route"),
        };
        if let Ok(text) = std::fs::read_to_string(&b.usage_path) {
            let n: Vec<u64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [day, metered, unmetered] = n[..] {
                (b.day, b.metered, b.unmetered) = (day, metered, unmetered);
            }
        }
        b
    }

    /// The class of the link that carries the default route now.
    pub fn link_class(&self) -> LinkClass {
        match self.config.link.as_str() {
            "metered" => return LinkClass::Metered,
            "unmetered" => return LinkClass::Unmetered,
            _ => {}
        }
        let Ok(table) = std::fs::read_to_string(&self.route_file) else {
            // No route table to read (not Linux): treat as unmetered, as before budgets.
            return LinkClass::Unmetered;
        };
        match default_route_interface(&table) {
            None => LinkClass::None,
            Some(iface)
                if self
                    .config
                    .metered_interfaces
                    .iter()
                    .any(|p| matches(p, &iface)) =>
            {
                LinkClass::Metered
            }
            Some(_) => LinkClass::Unmetered,
        }
    }

    fn roll_day(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            (self.day, self.metered, self.unmetered) = (day, 0, 0);
        }
    }

    /// May an upload of `bytes` start at `now_ms`?
    pub fn admit(&mut self, bytes: u64, now_ms: u64) -> Admit {
        self.roll_day(now_ms);
        if let Some(w) = &self.window {
            if !w.contains(now_ms) {
                return Admit::Wait(format!(
                    "outside the upload window {} (UTC)",
                    self.config.window
                ));
            }
        }
        let class = self.link_class();
        let (used, cap, name) = match class {
            LinkClass::None => return Admit::Wait("no default route".into()),
            LinkClass::Metered => (
                self.metered,
                self.config.metered_bytes_per_day,
                "metered_bytes_per_day",
            ),
            LinkClass::Unmetered => (
                self.unmetered,
                self.config.unmetered_bytes_per_day,
                "unmetered_bytes_per_day",
            ),
        };
        if cap > 0 && used + bytes + OVERHEAD_BYTES > cap {
            return Admit::Wait(format!(
                "today's upload.{name} budget is spent ({used} of {cap} bytes used; the next entry is {bytes} bytes)"
            ));
        }
        Admit::Go(class)
    }

    /// Counts `bytes` sent over `class` and saves the day's usage; returns how long to wait
    /// before the next upload so that the class's rate cap holds, given the upload took `took`.
    pub fn record(
        &mut self,
        class: LinkClass,
        bytes: u64,
        took: Duration,
        now_ms: u64,
    ) -> Duration {
        self.roll_day(now_ms);
        let bytes = bytes + OVERHEAD_BYTES;
        let rate = match class {
            LinkClass::Metered => {
                self.metered += bytes;
                self.config.metered_bytes_per_second
            }
            LinkClass::Unmetered => {
                self.unmetered += bytes;
                self.config.unmetered_bytes_per_second
            }
            LinkClass::None => 0,
        };
        let text = format!("{} {} {}\n", self.day, self.metered, self.unmetered);
        if let Err(e) = crate::store::write_file_atomic(&self.usage_path, text.as_bytes()) {
            log::warn!("upload: cannot save {}: {e}", self.usage_path.display());
        }
        if rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(bytes as f64 / rate as f64).saturating_sub(took)
    }

    /// Bytes used today over metered and unmetered links.
    pub fn used(&self) -> (u64, u64) {
        (self.metered, self.unmetered)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::TempDir;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        wwan0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn default_route_is_the_lowest_metric_up_route() {
        assert_eq!(default_route_interface(ROUTES).as_deref(), Some("wwan0"));
        let no_default =
            "Iface\tDestination\n wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\n";
        assert_eq!(default_route_interface(no_default), None);
    }

    #[test]
    fn windows_parse_and_wrap_midnight() {
        let w = Window::parse("22:00-06:00").unwrap().unwrap();
        let at = |h: u64, m: u64| (h * 60 + m) * 60_000 + 3 * DAY_MS;
        assert!(w.contains(at(23, 0)) && w.contains(at(5, 59)) && !w.contains(at(6, 0)));
        assert!(!w.contains(at(12, 0)));
        let d = Window::parse("09:30-17:00").unwrap().unwrap();
        assert!(d.contains(at(9, 30)) && !d.contains(at(17, 0)) && !d.contains(at(9, 29)));
        assert_eq!(Window::parse("").unwrap(), None);
        for bad in ["9-5", "25:00-01:00", "10:00-10:00", "10:00"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_metered_budget_stops_uploads_until_the_next_day_and_survives_a_restart() {
        let dir = TempDir::new("budget");
        let config = UploadConfig {
            link: "metered".into(),
            metered_bytes_per_day: 100_000,
            metered_bytes_per_second: 0,
            ..UploadConfig::default()
        };
        let day = 20_000 * DAY_MS;
        let mut b = Budget::load(dir.path(), &config);
        assert_eq!(b.admit(40_000, day), Admit::Go(LinkClass::Metered));
        b.record(LinkClass::Metered, 40_000, Duration::ZERO, day);
        assert_eq!(b.admit(40_000, day + 1), Admit::Go(LinkClass::Metered));
        b.record(LinkClass::Metered, 40_000, Duration::ZERO, day + 1);
        let Admit::Wait(why) = b.admit(40_000, day + 2) else {
            panic!("over budget")
        };
        assert!(why.contains("metered_bytes_per_day"), "{why}");
        // A restart reads the day's usage back.
        let mut again = Budget::load(dir.path(), &config);
        assert_eq!(again.used(), (2 * (40_000 + OVERHEAD_BYTES), 0));
        assert!(matches!(again.admit(40_000, day + 3), Admit::Wait(_)));
        // The next UTC day starts from zero.
        assert_eq!(
            again.admit(40_000, day + DAY_MS),
            Admit::Go(LinkClass::Metered)
        );
    }

    #[test]
    fn the_rate_cap_spaces_uploads() {
        let dir = TempDir::new("budget-rate");
        let config = UploadConfig {
            link: "unmetered".into(),
            unmetered_bytes_per_second: 100_000,
            ..UploadConfig::default()
        };
        let mut b = Budget::load(dir.path(), &config);
        let wait = b.record(
            LinkClass::Unmetered,
            200_000 - OVERHEAD_BYTES,
            Duration::from_millis(500),
            0,
        );
        assert_eq!(wait, Duration::from_millis(1500));
    }

    #[test]
    fn link_class_follows_the_default_route() {
        let dir = TempDir::new("budget-route");
        let routes = dir.path().join("route");
        std::fs::write(&routes, ROUTES).unwrap();
        let mut b = Budget::load(dir.path(), &UploadConfig::default());
        b.route_file = routes.clone();
        assert_eq!(b.link_class(), LinkClass::Metered);
        std::fs::write(&routes, ROUTES.replace("wwan0", "eth0")).unwrap();
        assert_eq!(b.link_class(), LinkClass::Unmetered);
    }
}
