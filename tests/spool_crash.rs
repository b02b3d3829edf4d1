//! Crash test of the spool: a child process (this test binary, re-executed in child mode) puts
//! real frames in a loop and is SIGKILLed at random moments; after every kill the spool must
//! reopen cleanly with every entry the child reported as stored, complete and intact.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgesieve::store::record::{FrameScores, KeptRecord, Reason, StoredDetection};
use edgesieve::store::spool::{PutOutcome, Spool, SpoolConfig};

/// Set (to the spool directory) in the child process.
const CHILD_ENV: &str = "EDGESIEVE_SPOOL_CRASH_CHILD";
const TEST_NAME: &str = "spool_survives_sigkill_mid_write";
const FRAME: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames/000001.jpg"
);
const BUDGET: Duration = Duration::from_secs(5);
const MIN_ITERATIONS: usize = 3;
const MAX_ITERATIONS: usize = 60;

fn config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 30,
        ..SpoolConfig::default()
    }
}

fn record(index: u64, width: u32, height: u32) -> KeptRecord {
    KeptRecord {
        frame_index: index,
        frame_name: "000001.jpg".into(),
        source: FRAME.into(),
        timestamp_ms: 1_700_000_000_000 + index * 100,
        width,
        height,
        model: "yolox-nano".into(),
        detections: vec![StoredDetection {
            class_id: 2,
            class_name: "car".into(),
            score: 0.8,
            objectness: 0.9,
            bbox: [10.0, 20.0, 110.0, 90.0],
            class_probs: vec![0.05, 0.15, 0.8],
        }],
        scores: FrameScores {
            uncertainty: 0.5,
            novelty: 0.4,
            value: (index % 97) as f32 / 97.0,
            threshold: 0.3,
        },
        embedding: (0..64).map(|i| (i as f32 * 0.1).sin()).collect(),
        reasons: vec![Reason::Value],
    }
}

/// Child mode: put entries until killed, reporting each stored id on stdout.
fn run_child(dir: &Path) {
    let frame = image::open(FRAME).expect("decode frame").to_rgb8();
    let (width, height) = frame.dimensions();
    let (mut spool, _) = Spool::open(dir, config()).expect("child: open spool");
    let stdout = std::io::stdout();
    let say = |line: String| {
        let mut out = stdout.lock();
        writeln!(out, "{line}").expect("stdout");
        out.flush().expect("stdout");
    };
    say("ready".into());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut index = 0;
    while Instant::now() < deadline {
        let outcome = spool
            .put(&record(index, width, height), frame.as_raw(), width, height)
            .expect("child: put");
        match outcome {
            PutOutcome::Stored { id, .. } => say(format!("stored {id}")),
            PutOutcome::Rejected { reason } => panic!("child: put rejected: {reason:?}"),
        }
        index += 1;
    }
}

/// xorshift64*: kill timings, seeded from the clock (the seed is printed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The spool directory's file names; none when it does not exist yet (the first child can be
/// killed before it has opened the spool).
fn listing(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list spool {}: {e}", dir.display()),
    }
}

fn ids_with(names: &[String], ext: &str) -> BTreeSet<u64> {
    names
        .iter()
        .filter_map(|n| n.strip_suffix(ext)?.parse().ok())
        .collect()
}

#[test]
fn spool_survives_sigkill_mid_write() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&dir));
        return;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "edgesieve-spool-crash-{}-{seed:x}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().expect("current_exe");
    let frame = image::open(FRAME).expect("decode frame");

    let start = Instant::now();
    let mut expected: BTreeSet<u64> = BTreeSet::new();
    let mut iterations = 0;
    let mut reported_total = 0;
    let mut unreported_found = 0;
    let mut partial_cleaned = 0;
    while iterations < MAX_ITERATIONS && (start.elapsed() < BUDGET || iterations < MIN_ITERATIONS) {
        iterations += 1;
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });

        // One kill in four lands anywhere from start-up (recovery included); the others land
        // while the child is putting.
        let mut lines = Vec::new();
        if iterations % 4 == 1 {
            std::thread::sleep(Duration::from_millis(rng.below(80)));
        } else {
            let ready_by = Instant::now() + Duration::from_secs(10);
            loop {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(line) => {
                        // libtest may have printed "test NAME ... " on the same line.
                        let ready = line.ends_with("ready");
                        lines.push(line);
                        if ready {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < ready_by => {}
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(250)));
        }
        child.kill().expect("kill child");
        let status = child.wait().expect("wait child");
        reader.join().expect("stdout reader");
        lines.extend(rx.try_iter());
        let child_err = err_reader.join().expect("stderr reader");
        assert_eq!(
            status.signal(),
            Some(9),
            "child ended on its own ({status}) before the kill:\n{child_err}"
        );
        let reported: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("stored ")?.parse().ok())
            .collect();
        reported_total += reported.len();

        let before = listing(&dir);
        let (spool, report) = Spool::open(&dir, config()).unwrap_or_else(|e| {
            panic!("iteration {iterations}: recovery failed: {e}; files: {before:?}")
        });
        assert_eq!(
            report.discarded_corrupt, 0,
            "iteration {iterations}: a kill must not leave a corrupt record: {report}"
        );
        partial_cleaned += report.discarded_partial;

        let present: BTreeSet<u64> = spool.pending().collect();
        expected.extend(reported.iter().copied());
        let missing: Vec<u64> = expected.difference(&present).copied().collect();
        assert!(
            missing.is_empty(),
            "iteration {iterations}: acknowledged entries lost: {missing:?}"
        );
        // At most the one put that completed as the child was killed, before it could report.
        let extra: Vec<u64> = present.difference(&expected).copied().collect();
        assert!(
            extra.len() <= 1
                && extra
                    .iter()
                    .all(|&e| expected.last().is_none_or(|&l| e > l)),
            "iteration {iterations}: unexpected entries {extra:?} (reported {reported:?})"
        );
        assert!(present.len() == expected.len() || present.len() == expected.len() + 1);
        unreported_found += extra.len();

        for &id in &present {
            let (record, jpeg) = spool
                .read(id)
                .unwrap_or_else(|e| panic!("iteration {iterations}: entry {id}: {e}"));
            assert_eq!(
                (record.width, record.height),
                (frame.width(), frame.height())
            );
            if !expected.contains(&id) || reported.contains(&id) {
                let img = image::load_from_memory(&jpeg).expect("stored JPEG decodes");
                assert_eq!((img.width(), img.height()), (frame.width(), frame.height()));
            }
        }
        let after = listing(&dir);
        let tmp: Vec<&String> = after.iter().filter(|n| n.starts_with(".tmp-")).collect();
        assert!(
            tmp.is_empty(),
            "iteration {iterations}: temp files left: {tmp:?}"
        );
        assert_eq!(ids_with(&after, ".rec"), present, "records on disk");
        assert_eq!(ids_with(&after, ".jpg"), present, "JPEGs on disk");
        expected = present;
    }

    println!(
        "FAULT kill -9 mid-write (seed {seed:#x}): {iterations} kills in {:.1} s, {} entries survive \
         ({reported_total} reported by the children, {unreported_found} completed unreported), \
         {partial_cleaned} partial files cleaned by recovery, acknowledged entries lost 0, restarts needed 0",
        start.elapsed().as_secs_f64(),
        expected.len()
    );
    assert!(iterations >= MIN_ITERATIONS);
    assert!(!expected.is_empty(), "no child stored anything");
    let _ = fs::remove_dir_all(&dir);
}
