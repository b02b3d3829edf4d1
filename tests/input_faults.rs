//! Faults of the input and of its settings: a y4m stream on a FIFO that stops sending still
//! honours SIGTERM, and an absurd thread count is refused up front.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{edgesieve, temp_dir, wait_with_timeout, Watched};

const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);
/// Generous: under qemu-user the model takes tens of seconds to load and a frame seconds.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// A stop while blocked on the FIFO must not wait for data.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Refusing a bad setting happens before any model is loaded.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One 4:2:0 frame of `w` x `h` with textured luma (not uniform, not a repeat of the last one).
fn frame_planes(w: usize, h: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::with_capacity(w * h * 3 / 2);
    for _ in 0..w * h {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.push(16 + ((s >> 16) % 220) as u8);
    }
    out.resize(w * h + 2 * w.div_ceil(2) * h.div_ceil(2), 128);
    out
}

#[test]
fn sigterm_while_a_fifo_is_silent_exits_0_with_the_summary() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("cam.y4m");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");

    // The camera: a header and two frames, then silence with the FIFO held open.
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        let (fw, fh) = (96, 64);
        let mut bytes = format!("YUV4MPEG2 W{fw} H{fh} F10:1 C420jpeg\n").into_bytes();
        for i in 0..2 {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend_from_slice(&frame_planes(fw, fh, i));
        }
        w.write_all(&bytes).unwrap();
        w.flush().unwrap();
        let _ = hold_rx.recv_timeout(START_TIMEOUT + STOP_TIMEOUT);
        drop(w);
    });

    let mut cmd = edgesieve();
    cmd.args(["run", "--input"])
        .arg(&fifo)
        .arg("--spool")
        .arg(dir.join("spool"))
        .env("EDGESIEVE_LOG", "trace");
    let mut run = Watched::spawn(cmd);
    let pid = run.pid();

    // Wait until both frames went through (the pipeline traces each frame by name).
    if !run.wait_for_line("frame cam.y4m#1 ", START_TIMEOUT) {
        let _ = hold_tx.send(());
        panic!("the two frames were not processed:\n{}", run.kill());
    }
    // Now the run waits on a FIFO that sends nothing more.
    std::thread::sleep(Duration::from_millis(500));
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    let status = run.wait(STOP_TIMEOUT);
    let _ = hold_tx.send(());
    let Some(status) = status else {
        panic!(
            "still running {STOP_TIMEOUT:?} after SIGTERM with a silent FIFO:\n{}",
            run.kill()
        );
    };
    let (log, stdout) = run.output();
    writer.join().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}; log:\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    let summary = stdout
        .lines()
        .find(|l| l.contains("frames seen"))
        .unwrap_or_else(|| panic!("no summary on stdout {stdout:?}; log:\n{log}"));
    assert!(summary.starts_with("2 frames seen"), "{summary}");
    eprintln!(
        "stopped {:.2} s after SIGTERM: {summary}",
        sent.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_refused_quickly(mut cmd: Command, what: &str) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = wait_with_timeout(&mut child, REFUSE_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: still running after {REFUSE_TIMEOUT:?}");
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{what}: accepted; stderr: {err}");
    assert!(err.contains("threads"), "{what}: {err}");
}

#[test]
fn huge_thread_counts_are_refused_naming_threads() {
    let dir = temp_dir("threads");
    let mut cmd = edgesieve();
    cmd.args(["run", "--input", FRAMES, "--spool"])
        .arg(dir.join("spool"))
        .args(["--threads", "100000"]);
    assert_refused_quickly(cmd, "--threads 100000");

    let config = dir.join("edgesieve.toml");
    std::fs::write(&config, "[detector]\nthreads = 100000\n").unwrap();
    let mut cmd = edgesieve();
    cmd.args(["run", "--input", FRAMES, "--spool"])
        .arg(dir.join("spool"))
        .arg("--config")
        .arg(&config);
    assert_refused_quickly(cmd, "[detector] threads = 100000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn max_pixels_zero_is_refused_naming_the_key() {
    let dir = temp_dir("max-pixels");
    let config = dir.join("edgesieve.toml");
    std::fs::write(&config, "[input]\nmax_pixels = 0\n").unwrap();
    let out = edgesieve()
        .args(["run", "--input", FRAMES, "--spool"])
        .arg(dir.join("spool"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("max_pixels"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The camera-fault checks must not set aside any frame of a real drive: every frame of the
/// shared drive reaches the handler.
#[test]
fn a_real_drive_has_no_uniform_or_frozen_frames() {
    use edgesieve::run::{run_job, FrameHandler, FrameInfo, JobOptions, Tally};
    use edgesieve::source::{open_with, Frame, InputConfig};

    struct Count(u64);
    impl FrameHandler for Count {
        type Error = std::fmt::Error;
        fn handle(&mut self, _: &Frame, _: &FrameInfo, _: &mut Tally) -> Result<(), Self::Error> {
            self.0 += 1;
            Ok(())
        }
    }
    let total = std::fs::read_dir(FRAMES).unwrap().count() as u64;
    let mut src = open_with(FRAMES, &InputConfig::default()).unwrap();
    let mut h = Count(0);
    let s = run_job(src.as_mut(), &mut h, &JobOptions::default()).unwrap();
    eprintln!(
        "{} frames, {} failed, {} uniform, {} frozen",
        s.frames, s.failed, s.uniform, s.frozen
    );
    assert_eq!((s.uniform, s.frozen, s.failed), (0, 0, 0));
    assert_eq!((s.frames, h.0), (total, total));
}
