//! `edgesieve run` stops cleanly on SIGTERM (what systemd sends on `systemctl stop`): it finishes
//! the frame in hand, keeps every spool entry whole, saves the sketch, prints the summary and
//! exits 0.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{edgesieve, temp_dir, Watched};

const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);
/// Generous: under qemu-user the model takes tens of seconds to load and a frame seconds.
const START_TIMEOUT: Duration = Duration::from_secs(600);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The number before `label` in the summary line ("12 frames seen, 3 kept ...").
fn count_before(summary: &str, label: &str) -> u64 {
    let at = summary
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {summary:?}"));
    summary[..at]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in {summary:?}"))
}

fn stop_cleanly_on(signal: &str) {
    let total_frames = std::fs::read_dir(FRAMES).unwrap().count() as u64;
    let dir = temp_dir(&format!("sigterm-{signal}"));
    let spool = dir.join("spool");
    let config = dir.join("edgesieve.toml");
    // Keep often, so the spool has entries to check when the signal lands.
    std::fs::write(
        &config,
        "[policy]\ntarget_keep_ratio = 0.5\nexplore_probability = 0.25\n",
    )
    .unwrap();

    let mut cmd = edgesieve();
    cmd.args(["run", "--input", FRAMES, "--spool"])
        .arg(&spool)
        .arg("--config")
        .arg(&config)
        .env("EDGESIEVE_LOG", "debug");
    let mut run = Watched::spawn(cmd);
    let pid = run.pid();

    // Wait until a frame has been processed and kept (the run logs "kept <frame>" at debug).
    if !run.wait_for_line(": kept ", START_TIMEOUT) {
        panic!(
            "no frame was kept before the timeout or exit:\n{}",
            run.kill()
        );
    }

    let kill = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -{signal} {pid} failed");
    let sent = Instant::now();
    let Some(status) = run.wait(STOP_TIMEOUT) else {
        panic!(
            "still running {STOP_TIMEOUT:?} after SIG{signal}:\n{}",
            run.kill()
        );
    };
    let stop_s = sent.elapsed().as_secs_f64();
    let (log, stdout) = run.output();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; log:\n{log}"
    );
    assert!(
        log.contains(&format!("SIG{signal}: stopping after the frame in hand")),
        "{log}"
    );

    // The summary, on stdout as at any normal end; the run stopped early.
    let summary = stdout
        .lines()
        .find(|l| l.contains("frames seen"))
        .unwrap_or_else(|| panic!("no summary on stdout {stdout:?}; log:\n{log}"));
    let seen = count_before(summary, "frames seen");
    let kept = count_before(summary, "kept");
    assert!(
        seen >= 1 && seen < total_frames,
        "{summary}: expected a stop part-way through {total_frames} frames"
    );
    assert!(kept >= 1, "{summary}");
    eprintln!("stopped {stop_s:.2} s after SIG{signal}: {summary}");

    // Every entry whole: `inspect` reads them all, and there is one per kept frame.
    let inspect = edgesieve().arg("inspect").arg(&spool).output().unwrap();
    let inspect_err = String::from_utf8_lossy(&inspect.stderr);
    assert!(inspect.status.success(), "inspect failed: {inspect_err}");
    let records = String::from_utf8(inspect.stdout).unwrap();
    assert_eq!(
        records.lines().count() as u64,
        kept,
        "spool entries vs kept frames ({summary})"
    );
    for line in records.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("record is JSON");
        assert!(v["frame_name"].is_string(), "{line}");
    }
    assert!(
        !inspect_err.contains("WARN"),
        "inspect found damaged entries: {inspect_err}"
    );
    // No interrupted writes left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The sketch was saved, and a restart picks it up.
    let sketch = spool.join("sketch.bin");
    let len = std::fs::metadata(&sketch)
        .unwrap_or_else(|e| panic!("{}: {e}", sketch.display()))
        .len();
    assert!(len > 0, "empty {}", sketch.display());
    assert!(
        edgesieve::select::sketch_file::load_sketch(Path::new(&sketch))
            .expect("sketch loads")
            .is_some_and(|s| !s.is_empty())
    );

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_finishes_the_frame_saves_and_exits_0() {
    stop_cleanly_on("TERM");
}

#[test]
fn sigint_does_the_same() {
    stop_cleanly_on("INT");
}
