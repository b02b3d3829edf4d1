//! Helpers shared by the integration tests that run the `edgesieve` binary.
// Each test crate uses a subset.
#![allow(dead_code)]

pub mod label_studio;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first `n` frames of the tmo324 drive as a YUV4MPEG2 file at `out`, in `pix_fmt`
/// (ffmpeg's name, e.g. yuv420p), written by ffmpeg. Fails (does not skip) without ffmpeg.
pub fn ffmpeg_y4m(n: usize, pix_fmt: &str, out: &Path) {
    ffmpeg_frames(n, pix_fmt, "yuv4mpegpipe", out);
}

/// The first `n` frames of the tmo324 drive (640x360 JPEGs) written by ffmpeg to `out` with
/// muxer `format` (`yuv4mpegpipe`, or `rawvideo` for header-less frames) in `pix_fmt` (ffmpeg's
/// name: yuv420p, nv12, rgb24 ..). Fails (does not skip) without ffmpeg.
pub fn ffmpeg_frames(n: usize, pix_fmt: &str, format: &str, out: &Path) {
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-start_number",
            "1",
            "-i",
            DRIVE_FRAMES,
        ])
        .args(["-frames:v", &n.to_string(), "-pix_fmt", pix_fmt])
        .args(["-f", format])
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("ffmpeg failed ({s}) writing {}", out.display()),
        Err(e) => panic!(
            "cannot run ffmpeg ({e}); this test needs ffmpeg on PATH \
             (e.g. apt-get install -y ffmpeg, as scripts/setup does)"
        ),
    }
}

/// The frames of the tmo324 drive as an ffmpeg input pattern.
pub const DRIVE_FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames/%06d.jpg"
);

/// The `edgesieve` binary of this build, run from the repository root (models/ resolves).
pub fn edgesieve() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgesieve"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A JSON array of numbers as f64s (a box, say).
pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A fresh, empty directory for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgesieve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits for `child` to exit; None when it is still running after `timeout`.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// A running process whose stderr lines arrive one by one (and are all kept for failure
/// messages) and whose stdout is collected.
pub struct Watched {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Watched {
    pub fn spawn(mut cmd: Command) -> Watched {
        use std::io::{BufRead, Read};
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Watched {
            child,
            lines,
            stderr,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; false when the timeout passes, the
    /// process exits or closes stderr first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: std::time::Duration) -> bool {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match self
                .lines
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if self.child.try_wait().unwrap().is_some() {
                        return false;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    }

    /// Kills the process and returns its stderr, for a failure message.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.join().unwrap()
    }

    /// Waits for the exit (None after `timeout`, the process still running).
    pub fn wait(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }

    /// (stderr, stdout) once the process has exited.
    pub fn output(self) -> (String, String) {
        (self.stderr.join().unwrap(), self.stdout.join().unwrap())
    }
}
