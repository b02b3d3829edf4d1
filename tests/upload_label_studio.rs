//! The uploader against a real Label Studio (installed and started by `scripts/label-studio`,
//! read back through its API): every kept frame arrives once with its boxes and scores, also
//! across 50+ SIGKILLs, a server that goes down mid-run, and refusals (wrong token, wrong
//! project, an untrusted TLS certificate) that leave the spool intact.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::label_studio::Server;
use common::{edgesieve, f64s, temp_dir, Watched};

const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);
const DEVICE: &str = "car-7";
const PROJECT: &str = "edgesieve-test";
/// The spool downscales the 640x360 frames to this longest side, so boxes must be scaled.
const MAX_SIDE: u32 = 320;

/// A folder of `n` consecutive real frames starting at frame `start`.
fn frames_folder(dir: &Path, start: usize, n: usize) -> PathBuf {
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    for i in 0..n {
        std::fs::copy(
            format!("{FRAMES}/{:06}.jpg", start + i),
            out.join(format!("{i:05}.jpg")),
        )
        .unwrap();
    }
    out
}

/// A config keeping about half the frames (fp32: on x86_64 tract runs it ~5x faster than the
/// int8 default, and what is tested here does not depend on the model), downscaling them, and (with `upload`) uploading to
/// `url` with `token_file`; `extra` lines go into `[upload]`.
/// The uploader's tests need many kept frames from few: the duplicate rules (tested in
/// selector_novelty and by edgesieve-eval) are off, the target is half the frames.
fn write_config(dir: &Path, upload: Option<(&str, &Path)>, extra: &str) -> PathBuf {
    let mut text = format!(
        "[detector]\nprecision = \"fp32\"\n\n[policy]\ntarget_keep_ratio = 0.5\nduplicate_radius = 0.0\nlook_radius = 0.0\n\n[spool]\nmax_side = {MAX_SIDE}\n\n[upload]\n\
         project = \"{PROJECT}\"\ndevice_id = \"{DEVICE}\"\nretry_min_ms = 100\nretry_max_ms = 1000\n\
         pause_ms = 1000\ntimeout_ms = 20000\nonce_give_up_ms = 30000\n{extra}\n"
    );
    // Not whatever link this machine's default route happens to be: budgets are tested apart.
    if !extra.contains("link =") {
        text.push_str("link = \"unmetered\"\n");
    }
    if let Some((url, token)) = upload {
        text.push_str(&format!(
            "url = \"{url}\"\ntoken_file = \"{}\"\n",
            token.display()
        ));
    }
    let path = dir.join(format!("config-{}.toml", text.len()));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, input: &Path, spool: &Path) -> (String, String) {
    let out = edgesieve()
        .args(["run", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--spool")
        .arg(spool)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "run failed:\n{stderr}");
    (stdout, stderr)
}

/// `upload --once`: (success, stdout, stderr).
fn upload_once(config: &Path, spool: &Path) -> (bool, String, String) {
    let out = edgesieve()
        .args(["upload", "--once", "--config"])
        .arg(config)
        .arg("--spool")
        .arg(spool)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The spool's entries (`inspect`), by spool id.
fn inspect(spool: &Path) -> HashMap<u64, Value> {
    let out = edgesieve().arg("inspect").arg(spool).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("id").is_some())
        .map(|v| (v["id"].as_u64().unwrap(), v))
        .collect()
}

/// The kept count of a run's summary line ("N frames seen, K kept (…").
fn kept_count(stdout: &str) -> u64 {
    stdout
        .split(" kept ")
        .next()
        .and_then(|s| s.split_whitespace().nth(3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no kept count in {stdout:?}"))
}

fn stable_id(spool_id: u64) -> String {
    format!("{DEVICE}-{spool_id:012}")
}

/// Every entry of `records` is on the server exactly once, nothing else is, and each task has
/// its prediction and meta.
fn assert_each_once(server: &Server, expected: &BTreeSet<u64>) {
    let project = server.project_id(PROJECT).expect("the project was created");
    let counts = server.stable_id_counts(project);
    let want: HashMap<String, usize> = expected.iter().map(|&id| (stable_id(id), 1)).collect();
    let dupes: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dupes.is_empty(), "duplicates on the server: {dupes:?}");
    assert_eq!(counts, want, "tasks on the server vs the spool's entries");
    for t in server.tasks(project) {
        assert!(
            t["total_predictions"].as_u64().unwrap_or(0) >= 1,
            "task without its prediction: {t}"
        );
    }
}

#[test]
fn uploads_each_entry_with_its_boxes_and_scores_and_refusals_keep_the_spool() {
    let dir = temp_dir("upload-roundtrip");
    let server = Server::start(&dir.join("ls"));
    let frames = frames_folder(&dir, 400, 40);
    let spool = dir.join("spool");
    let plain = write_config(&dir, None, "");
    run(&plain, &frames, &spool);
    let records = inspect(&spool);
    assert!(records.len() >= 8, "only {} frames kept", records.len());
    let with_boxes = records
        .values()
        .filter(|r| !r["detections"].as_array().unwrap().is_empty())
        .count();
    assert!(with_boxes >= 4, "kept frames with detections: {with_boxes}");

    // Offline export: a Label Studio import file that Label Studio takes (one task and one
    // prediction per entry), and a COCO file with the boxes in the downscaled JPEG's pixels.
    let export = dir.join("export");
    for format in ["label-studio", "coco"] {
        let out = edgesieve()
            .args([
                "export",
                "--format",
                format,
                "--image-prefix",
                "/data/local-files/?d=export/",
            ])
            .arg("--spool")
            .arg(&spool)
            .arg("--out")
            .arg(&export)
            .arg("--config")
            .arg(&plain)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let total_boxes: usize = records
        .values()
        .map(|r| r["detections"].as_array().unwrap().len())
        .sum();
    let tasks: Value =
        serde_json::from_slice(&std::fs::read(export.join("tasks.json")).unwrap()).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), records.len());
    let project = server.post(
        "/api/projects",
        &serde_json::json!({"title": "imported", "label_config":
            "<View><Image name=\"image\" value=\"$image\"/><RectangleLabels name=\"label\" toName=\"image\"><Label value=\"car\"/></RectangleLabels></View>"}),
    )["id"]
        .as_u64()
        .unwrap();
    let imported = server.post(&format!("/api/projects/{project}/import"), &tasks);
    assert_eq!(
        imported["task_count"].as_u64(),
        Some(records.len() as u64),
        "{imported}"
    );
    assert_eq!(
        imported["prediction_count"].as_u64(),
        Some(records.len() as u64),
        "{imported}"
    );
    assert_eq!(server.tasks(project).len(), records.len());
    let coco: Value =
        serde_json::from_slice(&std::fs::read(export.join("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), records.len());
    assert_eq!(coco["annotations"].as_array().unwrap().len(), total_boxes);
    assert_eq!(coco["categories"].as_array().unwrap().len(), 80);
    for a in coco["annotations"].as_array().unwrap() {
        let b = f64s(&a["bbox"]);
        assert!(
            b[0] >= 0.0 && b[0] + b[2] <= f64::from(MAX_SIDE) + 0.01,
            "{a}"
        );
        assert!(a["score"].as_f64().unwrap() > 0.0);
    }
    for img in coco["images"].as_array().unwrap() {
        assert_eq!(img["width"].as_u64(), Some(u64::from(MAX_SIDE)));
        assert!(export.join(img["file_name"].as_str().unwrap()).is_file());
    }
    assert_eq!(
        inspect(&spool).len(),
        records.len(),
        "export only reads the spool"
    );

    // Refusals: nothing leaves the spool, the error names the cause, the token is never shown.
    let bad_token = dir.join("bad-token");
    std::fs::write(&bad_token, "0123456789abcdef0123456789abcdef01234567\n").unwrap();
    let config = write_config(&dir, Some((&server.url, &bad_token)), "");
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(!ok, "a refused token must fail --once");
    assert!(err.contains("401") && err.contains("token"), "{err}");
    assert!(
        !err.contains("0123456789abcdef0123"),
        "the token is in the log: {err}"
    );
    assert_eq!(inspect(&spool).len(), records.len());

    let config = write_config(
        &dir,
        Some((&server.url, &server.token_file)),
        "project = \"987654\"",
    );
    // `project` twice in [upload] is a TOML error naming the key: use a file of its own.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("project = \"{PROJECT}\"\n"), "");
    std::fs::write(&config, text).unwrap();
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(!ok);
    assert!(err.contains("no project 987654"), "{err}");
    assert_eq!(inspect(&spool).len(), records.len());

    // TLS: a certificate from a CA the uploader does not know is refused; with that CA in
    // upload.ca_file the same server is accepted.
    let tls = TlsProxy::start(&dir.join("tls"), server.port);
    let https = format!("https://127.0.0.1:{}", tls.port);
    let config = write_config(&dir, Some((&https, &server.token_file)), "");
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(!ok);
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    assert!(!err.contains(server.token()), "the token is in the log");
    assert_eq!(inspect(&spool).len(), records.len());

    // Over a metered link with a daily budget that holds a few frames, --once uploads what fits
    // and leaves the rest in the spool (through TLS with the private CA in ca_file).
    let ca = format!("ca_file = \"{}\"", tls.ca.display());
    let budget = 60_000u64;
    let metered = write_config(
        &dir,
        Some((&https, &server.token_file)),
        &format!(
            "{ca}\nlink = \"metered\"\nmetered_bytes_per_day = {budget}\nmetered_bytes_per_second = 0"
        ),
    );
    let (ok, out, err) = upload_once(&metered, &spool);
    assert!(ok, "{err}");
    let counts: Vec<u64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (first, first_bytes) = (counts[0], counts[1]);
    assert!(first >= 1, "{out}");
    assert!(first_bytes + first * 4096 <= budget, "{out}");
    assert!(out.contains("held back by the budget"), "{out}");
    assert_eq!(inspect(&spool).len() as u64, records.len() as u64 - first);

    // The depot's unmetered link: the rest goes.
    let config = write_config(&dir, Some((&https, &server.token_file)), &ca);
    let (ok, out, err) = upload_once(&config, &spool);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("uploaded {}", records.len() as u64 - first)),
        "{out}"
    );
    assert!(!err.contains(server.token()), "the token is in the log");
    assert!(inspect(&spool).is_empty(), "acked entries left the spool");

    let expected: BTreeSet<u64> = records.keys().copied().collect();
    assert_each_once(&server, &expected);

    // Boxes where the spool says, in the downscaled JPEG's percent coordinates; meta with the
    // scores.
    let project = server.project_id(PROJECT).unwrap();
    let predictions = server.predictions(project);
    let tasks = server.tasks(project);
    assert_eq!(tasks.len(), records.len());
    for t in &tasks {
        let meta = &t["meta"];
        let record = &records[&meta["spool_id"].as_u64().unwrap()];
        for key in ["uncertainty", "novelty", "value", "threshold"] {
            let (a, b) = (
                meta[key].as_f64().unwrap(),
                record["scores"][key].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-6, "{key}: {a} vs {b}");
        }
        assert_eq!(meta["capture_time_ms"], record["timestamp_ms"]);
        assert_eq!(meta["device_id"], DEVICE);
        assert!(!meta["reasons"].as_array().unwrap().is_empty());
        let image = t["data"]["image"].as_str().unwrap();
        assert!(
            image.ends_with(&format!("{}.jpg", meta["edgesieve_id"].as_str().unwrap())),
            "{image}"
        );
        let preds = &predictions[&t["id"].as_u64().unwrap()];
        assert_eq!(preds.len(), 1, "one prediction per task");
        let result = preds[0]["result"].as_array().unwrap();
        let detections = record["detections"].as_array().unwrap();
        assert_eq!(result.len(), detections.len());
        let (w, h) = (
            record["width"].as_f64().unwrap(),
            record["height"].as_f64().unwrap(),
        );
        for (r, d) in result.iter().zip(detections) {
            let b = f64s(&d["bbox"]);
            let v = &r["value"];
            let close = |got: &Value, want: f64| (got.as_f64().unwrap() - want).abs() < 0.01;
            assert!(
                close(&v["x"], (b[0] / w * 100.0).clamp(0.0, 100.0)),
                "{r} vs {d}"
            );
            assert!(
                close(&v["y"], (b[1] / h * 100.0).clamp(0.0, 100.0)),
                "{r} vs {d}"
            );
            let x2 = (b[2] / w * 100.0).clamp(0.0, 100.0);
            let y2 = (b[3] / h * 100.0).clamp(0.0, 100.0);
            assert!(close(&v["width"], x2 - v["x"].as_f64().unwrap()), "{r}");
            assert!(close(&v["height"], y2 - v["y"].as_f64().unwrap()), "{r}");
            assert_eq!(v["rectanglelabels"][0], d["class_name"]);
            // The JPEG the labelers see is the downscaled one.
            assert_eq!(r["original_width"].as_u64(), Some(u64::from(MAX_SIDE)));
            assert_eq!(
                r["original_height"].as_u64(),
                Some((h * f64::from(MAX_SIDE) / w).round() as u64)
            );
        }
    }

    // Nothing left: a second pass uploads nothing.
    let (ok, out, _) = upload_once(&config, &spool);
    assert!(ok && out.contains("uploaded 0"), "{out}");
    drop(tls);
}

#[test]
fn sigkill_at_random_points_leaves_each_entry_on_the_server_once() {
    let dir = temp_dir("upload-kill");
    let server = Server::start(&dir.join("ls"));
    let frames = frames_folder(&dir, 1000, 120);
    let spool = dir.join("spool");
    run(&write_config(&dir, None, ""), &frames, &spool);
    let records = inspect(&spool);
    let expected: BTreeSet<u64> = records.keys().copied().collect();
    assert!(expected.len() >= 30, "only {} kept", expected.len());
    // A personal access token this time: refreshed for an access token on every start.
    let config = write_config(&dir, Some((&server.url, &server.pat_file)), "");

    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut restarts, mut killed_mid_work) = (0, 0);
    while restarts < 60 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(30 + rng % 400);
        let mut child = edgesieve()
            .args(["upload", "--once", "--config"])
            .arg(&config)
            .arg("--spool")
            .arg(&spool)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_work += 1;
        }
        child.kill().unwrap_or(()); // SIGKILL
        child.wait().unwrap();
        restarts += 1;
        if inspect(&spool).is_empty() {
            break;
        }
    }
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(ok, "{err}");
    assert!(!err.contains(server.token()));
    assert!(inspect(&spool).is_empty());
    assert!(
        killed_mid_work >= 20,
        "only {killed_mid_work} of {restarts} kills hit a running uploader"
    );
    assert_each_once(&server, &expected);
    println!(
        "FAULT kill -9 loop of the uploader: {restarts} kills ({killed_mid_work} mid-upload), {} entries, each on the server exactly once: frames lost 0, duplicates 0, restarts needed 0",
        expected.len()
    );
}

#[test]
fn server_down_while_run_selects_then_back_loses_nothing_and_duplicates_nothing() {
    let dir = temp_dir("upload-down");
    let server = Server::start(&dir.join("ls"));
    let frames = frames_folder(&dir, 1600, 240);
    let spool = dir.join("spool");
    let config = write_config(&dir, Some((&server.url, &server.token_file)), "");
    let mut cmd = edgesieve();
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&frames)
        .arg("--spool")
        .arg(&spool)
        .env("EDGESIEVE_LOG", "debug");
    let mut job = Watched::spawn(cmd);
    // The first task on the server, then the server goes away while `run` keeps selecting.
    assert!(
        job.wait_for_line(&format!("{DEVICE}-0"), Duration::from_secs(300)) || {
            let _ = job.wait(Duration::from_secs(1));
            false
        },
        "no upload happened"
    );
    server.stop();
    let down_at = Instant::now();
    assert!(
        job.wait_for_line("unreachable", Duration::from_secs(120)),
        "the uploader never noticed the server was down"
    );
    std::thread::sleep(Duration::from_secs(2).saturating_sub(down_at.elapsed()));
    server.restart();
    let status = job.wait(Duration::from_secs(600)).expect("run finished");
    let (stderr, stdout) = job.output();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(server.token()));
    let kept = kept_count(&stdout);
    assert!(kept >= 20, "{stdout}");
    // What the run's thread did not reach is still in the spool; drain it.
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(ok, "{err}");
    assert!(inspect(&spool).is_empty());
    let expected: BTreeSet<u64> = (1..=kept).collect();
    assert_each_once(&server, &expected);
}

/// `tests/support/tls_proxy.py` in front of the server with a certificate signed by a test CA.
struct TlsProxy {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
}

impl TlsProxy {
    fn start(dir: &Path, target_port: u16) -> TlsProxy {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=edgesieve test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/tls_proxy.py"
            ))
            .arg(dir.join("srv.pem"))
            .arg(dir.join("srv.key"))
            .arg(target_port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tls_proxy.py said {line:?}"));
        TlsProxy {
            child,
            port,
            ca: dir.join("ca.pem"),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One owner per spool: `edgesieve upload` on a spool that a running `edgesieve run` holds is
/// refused, naming the holder (to upload while selecting, `run` gets the `[upload]` section).
#[test]
fn upload_on_a_spool_that_run_holds_is_refused_naming_the_holder() {
    let dir = temp_dir("upload-locked");
    let spool = dir.join("spool");
    let token = dir.join("token");
    std::fs::write(&token, "not-a-real-token\n").unwrap();
    // Nothing listens on port 9 of the loopback: the refusal must come before any request.
    let config = write_config(&dir, Some(("http://127.0.0.1:9", &token)), "");
    let mut cmd = edgesieve();
    cmd.args(["run", "--input", "-", "--spool"])
        .arg(&spool)
        .stdin(Stdio::piped());
    let job = Watched::spawn(cmd);
    // The run holds the spool once its lock file names it (it then waits for stdin).
    let lock = spool.join(".lock");
    let pid = job.pid().to_string();
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == pid) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "run did not take the spool"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(!ok, "a second owner of the spool must be refused");
    assert!(err.contains("in use by") && err.contains(&pid), "{err}");
    assert!(!err.contains("not-a-real-token"));
    job.kill();
}

/// `[context]`: each kept frame goes with the frames around it, stored as one spool entry and
/// uploaded as one group of tasks sharing `meta.event`; the status file counts what the run's
/// upload thread sent.
#[test]
fn context_frames_go_with_their_kept_frame_as_one_event() {
    let dir = temp_dir("upload-context");
    let server = Server::start(&dir.join("ls"));
    let frames = frames_folder(&dir, 800, 30);
    let spool = dir.join("spool");
    let status = dir.join("edgesieve.prom");
    let config = write_config(&dir, Some((&server.url, &server.token_file)), "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[context]\nbefore = 2\nafter = 2\nmax_side = 160\njpeg_quality = 60\n\n\
         [status]\npath = {:?}\nperiod_s = 0.5\n",
        status.to_str().unwrap()
    ));
    std::fs::write(&config, text).unwrap();
    let (stdout, _) = run(&config, &frames, &spool);
    let kept = kept_count(&stdout);
    assert!(kept >= 5, "{stdout}");
    // What the run's upload thread did not reach is in the spool, each with its context.
    let left = inspect(&spool);
    for (id, r) in &left {
        let context = r["context"]
            .as_array()
            .unwrap_or_else(|| panic!("{id}: {r}"));
        let index = r["frame_index"].as_u64().unwrap();
        for c in context {
            let offset = c["offset"].as_i64().unwrap();
            assert!((-2..=2).contains(&offset) && offset != 0, "{c}");
            assert_eq!(c["frame_index"].as_i64().unwrap(), index as i64 + offset);
        }
        assert!(spool.join(format!("{id:012}.ctx")).is_file());
    }
    let prom = std::fs::read_to_string(&status).unwrap();
    let uploaded_by_run = prom
        .lines()
        .find_map(|l| l.strip_prefix("edgesieve_uploaded_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{prom}"));
    assert_eq!(uploaded_by_run as u64 + left.len() as u64, kept, "{prom}");
    let (ok, _, err) = upload_once(&config, &spool);
    assert!(ok, "{err}");
    assert!(inspect(&spool).is_empty());

    // On the server: one kept task per kept frame, each with the context tasks it announces,
    // all carrying its event id, and nothing twice.
    let project = server.project_id(PROJECT).unwrap();
    let tasks = server.tasks(project);
    let mut events: HashMap<String, (u64, Vec<i64>)> = HashMap::new();
    for t in &tasks {
        let meta = &t["meta"];
        let event = meta["event"]
            .as_str()
            .unwrap_or_else(|| panic!("{t}"))
            .to_string();
        let entry = events.entry(event).or_default();
        match meta["role"].as_str() {
            Some("kept") => {
                entry.0 += 1;
                assert!(t["total_predictions"].as_u64().unwrap_or(0) >= 1, "{t}");
                assert_eq!(meta["edgesieve_id"], meta["event"]);
            }
            Some("context") => entry.1.push(meta["offset"].as_i64().unwrap()),
            other => panic!("role {other:?}: {t}"),
        }
    }
    assert_eq!(events.len() as u64, kept, "{events:?}");
    let with_context = events
        .values()
        .filter(|(_, offsets)| !offsets.is_empty())
        .count();
    assert!(with_context as u64 >= kept - 1, "{events:?}");
    for (event, (kept_tasks, offsets)) in &events {
        assert_eq!(*kept_tasks, 1, "{event}");
        let mut sorted = offsets.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            offsets.len(),
            "{event}: a context frame twice {offsets:?}"
        );
        assert!(offsets.len() <= 4, "{event}: {offsets:?}");
    }
    // A full event: two before, two after.
    assert!(
        events.values().any(|(_, o)| o.len() == 4),
        "no event with 4 context frames: {events:?}"
    );
}
