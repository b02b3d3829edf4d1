//! `edgesieve detect` as a user runs it: JSON lines out, bad frames named and counted, fatal
//! input errors give a non-zero exit.

use std::process::Stdio;

mod common;
use common::{edgesieve, f64s, temp_dir};

const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);

#[test]
fn detect_prints_json_lines_and_skips_a_corrupt_frame() {
    let dir = temp_dir("cli-detect");
    // Two city frames with people and cars, and a truncated JPEG between them.
    std::fs::copy(format!("{FRAMES}/000001.jpg"), dir.join("a.jpg")).unwrap();
    let bytes = std::fs::read(format!("{FRAMES}/000002.jpg")).unwrap();
    std::fs::write(dir.join("b.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::copy(format!("{FRAMES}/000003.jpg"), dir.join("c.jpg")).unwrap();

    let out = edgesieve()
        .args(["detect", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("b.jpg"),
        "corrupt frame not named: {stderr}"
    );
    assert!(stderr.contains("2 frames, 1 failed"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(!lines.is_empty(), "a downtown frame has detections");
    for l in &lines {
        let frame = l["frame"].as_str().unwrap();
        assert!(frame == "a.jpg" || frame == "c.jpg", "{l}");
        assert!(l["score"].as_f64().unwrap() >= 0.3);
        let b = f64s(&l["box"]);
        assert!(
            b[0] <= b[2] && b[1] <= b[3] && b[2] <= 640.0 && b[3] <= 360.0,
            "{l}"
        );
        assert!(l["class"].is_string());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_stream_on_stdin_is_fatal_and_names_the_frame() {
    // A 4x2 4:2:0 stream: 8 + 2 + 2 bytes per frame. One whole frame, then half of the second.
    let mut y4m = b"YUV4MPEG2 W4 H2 F30:1 C420jpeg\n".to_vec();
    y4m.extend(b"FRAME\n");
    y4m.extend([128u8; 12]);
    y4m.extend(b"FRAME\n");
    y4m.extend([128u8; 5]);
    let mut child = edgesieve()
        .args(["detect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&y4m).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("after 1 frames"), "{stderr}");
    assert!(stderr.to_lowercase().contains("truncated"), "{stderr}");
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let out = edgesieve()
        .args(["detect", "--threshhold", "0.5", FRAMES])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threshhold"));

    let out = edgesieve()
        .args(["detect", "--precision", "int4", FRAMES])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("int4"));
}

#[test]
fn version_names_the_target() {
    let out = edgesieve().arg("--version").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("edgesieve "), "{s}");
    assert!(s.contains(std::env::consts::ARCH), "{s}");
}

#[test]
fn subcommand_help_prints_usage_and_succeeds() {
    for cmd in ["run", "detect", "bench", "inspect"] {
        let out = edgesieve().args([cmd, "--help"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help: {out:?}");
        assert!(stdout.contains("edgesieve run --input"), "{cmd}: {stdout}");
    }
    // An unknown option is still an error.
    let out = edgesieve().args(["run", "--frobnicate"]).output().unwrap();
    assert!(!out.status.success());
}
