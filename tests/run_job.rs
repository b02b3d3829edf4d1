//! `edgesieve run` end to end on real frames: the kept ratio follows the target, every kept
//! frame is in the spool with its predictions, scores and reasons, a restart resumes from the
//! saved sketch, and a bad config is refused by key name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::temp_dir;

const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);

fn edgesieve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgesieve"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

/// A folder of `n` consecutive real frames from each of two clips (city, then night highway).
fn frames_folder(name: &str, n: usize) -> PathBuf {
    let dir = temp_dir(name);
    for (clip_start, prefix) in [(1usize, "a"), (1800usize, "b")] {
        for i in 0..n {
            let src = format!("{FRAMES}/{:06}.jpg", clip_start + i);
            std::fs::copy(&src, dir.join(format!("{prefix}{i:04}.jpg"))).unwrap();
        }
    }
    dir
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("edgesieve.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn inspect(spool: &Path) -> Vec<serde_json::Value> {
    let out = edgesieve(&["inspect", spool.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_keeps_about_the_target_share_with_full_records() {
    let frames = frames_folder("run-frames", 100);
    let work = temp_dir("run-work");
    let spool = work.join("spool");
    let status = work.join("edgesieve.prom");
    let config = write_config(
        &work,
        &format!(
            "[policy]\ntarget_keep_ratio = 0.1\nexplore_probability = 0.0\n\
             [status]\npath = {:?}\nperiod_s = 0.1\n",
            status.to_str().unwrap()
        ),
    );
    let out = edgesieve(&[
        "run",
        "--input",
        frames.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("200 frames seen"), "{stdout}");

    let records = inspect(&spool);
    // 10% of 200 frames; the adaptive threshold needs a warm-up, so allow a wide band here
    // (the evaluation command measures the ratio over long runs).
    assert!(
        (10..=30).contains(&records.len()),
        "kept {} of 200 at a 10% target",
        records.len()
    );
    assert!(
        stdout.contains(&format!("{} kept", records.len())),
        "{stdout}"
    );
    let mut clips = std::collections::HashSet::new();
    for r in &records {
        let name = r["frame_name"].as_str().unwrap();
        clips.insert(name.chars().next().unwrap());
        assert!(
            !r["reasons"].as_array().unwrap().is_empty(),
            "{name}: no reason"
        );
        assert_eq!(r["embedding"].as_array().unwrap().len(), 64);
        assert_eq!(r["width"], 640);
        for d in r["detections"].as_array().unwrap() {
            assert_eq!(d["class_probs"].as_array().unwrap().len(), 80);
            assert!(d["class_name"].is_string());
        }
        let value = r["scores"]["value"].as_f64().unwrap();
        assert!(value.is_finite());
        let jpg = spool.join(format!("{:012}.jpg", r["id"].as_u64().unwrap()));
        let img = image::open(&jpg).unwrap_or_else(|e| panic!("{}: {e}", jpg.display()));
        assert_eq!((img.width(), img.height()), (640, 360));
    }
    // Diversity: both scenes are represented, not only the busier city clip.
    assert_eq!(clips.len(), 2, "kept frames from one clip only: {clips:?}");

    // The status file (Prometheus text format) holds the run's final counters.
    let text = std::fs::read_to_string(&status).expect("status file written");
    let metric = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(metric("edgesieve_frames_in_total"), 200.0);
    assert_eq!(metric("edgesieve_frames_processed_total"), 200.0);
    assert_eq!(metric("edgesieve_frames_skipped_total"), 0.0);
    assert_eq!(metric("edgesieve_frames_kept_total"), records.len() as f64);
    assert_eq!(metric("edgesieve_spool_entries"), records.len() as f64);
    assert!(metric("edgesieve_spool_bytes") > 0.0);
    assert!(
        metric("edgesieve_status_timestamp_seconds") >= metric("edgesieve_start_timestamp_seconds")
    );
    // Every frame was decided: its latency (arrival to decision) is in the file and the summary.
    let (p50, p99) = (
        metric("edgesieve_decision_latency_p50_seconds"),
        metric("edgesieve_decision_latency_p99_seconds"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 < 60.0, "{p50} {p99}");
    assert!(stdout.contains("decision latency p50 "), "{stdout}");
    assert_eq!(metric("edgesieve_uploaded_total"), 0.0);
    assert_eq!(text.matches("# TYPE ").count(), 21, "{text}");
    assert!(!work.join("edgesieve.prom.tmp").exists());
    assert!(spool.join("sketch.bin").is_file());

    // A second run over the same frames starts from the saved sketch: those scenes are no
    // longer novel, and the spool keeps the first run's records.
    let out = edgesieve(&[
        "run",
        "--input",
        frames.to_str().unwrap(),
        "--spool",
        spool.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("centres from earlier runs"), "{stderr}");
    assert!(inspect(&spool).len() >= records.len());
    let _ = std::fs::remove_dir_all(&frames);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn unknown_or_invalid_config_keys_are_refused_by_name() {
    let work = temp_dir("run-badconfig");
    let spool = work.join("spool");
    for (text, needle) in [
        ("[policy]\ntarget_keep_ratoi = 0.1\n", "target_keep_ratoi"),
        ("[policy]\ntarget_keep_ratio = 1.5\n", "target_keep_ratio"),
        ("[detector]\nprecision = \"int4\"\n", "detector.precision"),
        ("[uncertainty]\nband = -1.0\n", "band"),
        ("[spool]\njpeg_quality = 0\n", "jpeg_quality"),
        ("[sketchy]\nx = 1\n", "sketchy"),
    ] {
        let config = write_config(&work, text);
        let out = edgesieve(&[
            "run",
            "--input",
            FRAMES,
            "--spool",
            spool.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn missing_input_is_a_clear_error() {
    let work = temp_dir("run-noinput");
    let out = edgesieve(&[
        "run",
        "--input",
        "/nonexistent/frames",
        "--spool",
        work.join("spool").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/frames"), "{stderr}");
    let _ = std::fs::remove_dir_all(&work);
}

/// The gate before the detector: a still view (one real frame, re-encoded 24 times at JPEG
/// qualities 84, 85, 86 in turn, so no two consecutive files are identical and the
/// frozen-camera check does not see them)
/// skips the detector, and the moving drive after it is processed in full. With the gate off
/// every frame is processed.
#[test]
fn a_still_view_skips_the_detector_and_a_moving_one_does_not() {
    let frames = temp_dir("gate-frames");
    let still = image::open(format!("{FRAMES}/000200.jpg"))
        .unwrap()
        .to_rgb8();
    for i in 0..24u8 {
        let mut bytes = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 70 + i);
        enc.encode_image(&still).unwrap();
        std::fs::write(frames.join(format!("a{i:04}.jpg")), bytes).unwrap();
    }
    for i in 0..12 {
        let src = format!("{FRAMES}/{:06}.jpg", 1300 + i);
        std::fs::copy(&src, frames.join(format!("b{i:04}.jpg"))).unwrap();
    }
    let work = temp_dir("gate-work");
    let run = |config: &str, spool: &str| {
        let config = write_config(&work, config);
        let out = edgesieve(&[
            "run",
            "--precision",
            "fp32",
            "--input",
            frames.to_str().unwrap(),
            "--spool",
            work.join(spool).to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let gated = |stdout: &str| -> u64 {
        let at = stdout.find(" gated").expect("summary has a gated count");
        stdout[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let on = run("", "spool-on");
    // The still view's copies skip (a few re-encodes differ by more than the default 1.0 at
    // their sharpest edges: 1.7 between qualities 84 and 85); the 12 moving frames (the rain
    // clip, the least textured of the drives) are all processed.
    let n = gated(&on);
    assert!((18..=23).contains(&n), "{n} gated: {on}");
    assert!(on.contains("36 frames seen"), "{on}");
    assert!(on.contains("of detector time saved"), "{on}");
    let off = run("[gate]\nmax_difference = 0\n", "spool-off");
    assert_eq!(gated(&off), 0, "{off}");
    let _ = std::fs::remove_dir_all(&frames);
    let _ = std::fs::remove_dir_all(&work);
}

/// A live camera (`input.live`): a y4m stream written to stdin at 100 fps, faster than the int8
/// detector runs on these machines (~3 frames/s with AVX2, ~27 with AVX-512 VNNI: a 30 fps
/// camera was not fast enough to make the second drop frames). The writer is never blocked (the stream is read as fast as it comes), the
/// loop takes the newest frame, and the frames it had no time for are counted as dropped: every
/// frame sent is either seen or dropped. The same stream as a recording (`live` off) is seen in
/// full.
#[test]
fn a_live_camera_faster_than_the_detector_drops_frames_and_never_waits() {
    use std::io::Write;
    let work = temp_dir("live-work");
    let y4m = work.join("drive.y4m");
    common::ffmpeg_y4m(60, "yuv420p", &y4m);
    let bytes = std::fs::read(&y4m).unwrap();
    let header = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let frame_len = b"FRAME\n".len() + 640 * 360 * 3 / 2;
    assert_eq!(bytes.len(), header + 60 * frame_len);

    let run = |live: bool, precision: &str, spool: &str| -> (String, std::time::Duration) {
        let config = write_config(
            &work,
            &format!("[input]\nlive = {live}\n[status]\nlog_period_s = 0.1\n"),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgesieve"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["run", "--precision", precision, "--input", "-", "--spool"])
            .arg(work.join(spool))
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The camera: the header, then one frame every 10 ms; how long the writes took.
        let started = std::time::Instant::now();
        stdin.write_all(&bytes[..header]).unwrap();
        for chunk in bytes[header..].chunks(frame_len) {
            std::thread::sleep(std::time::Duration::from_millis(10));
            stdin.write_all(chunk).unwrap();
        }
        drop(stdin);
        let writing = started.elapsed();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        // The periodic rate line (status.log_period_s): input and handled rates, drop share.
        assert!(
            stderr.contains(" frames/s in, ") && stderr.contains("% dropped; "),
            "no rate line in the log:\n{stderr}"
        );
        (stdout, writing)
    };
    let count = |stdout: &str, what: &str| -> u64 {
        let at = stdout
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?}: {stdout}"));
        stdout[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };

    let (live, writing) = run(true, "int8", "spool-live");
    let (seen, dropped) = (count(&live, " frames seen"), count(&live, " dropped"));
    assert_eq!(seen + dropped, 60, "{live}");
    assert!(
        dropped >= 20,
        "the int8 detector cannot keep up with 100 fps: {live}"
    );
    assert!(live.contains("% of the frames in)"), "{live}");
    // The camera wrote at its own pace (60 frames in ~0.6 s), not the detector's.
    assert!(
        writing < std::time::Duration::from_secs(6),
        "the writer waited for the detector: {writing:?}"
    );

    let (recorded, _) = run(false, "fp32", "spool-recorded");
    assert_eq!(count(&recorded, " frames seen"), 60, "{recorded}");
    assert_eq!(count(&recorded, " dropped"), 0, "{recorded}");
    let _ = std::fs::remove_dir_all(&work);
}
