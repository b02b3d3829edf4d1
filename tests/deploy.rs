//! deploy/: the systemd unit says what the car needs, the shipped config loads, and
//! deploy/install lays out a root filesystem without overwriting a car's own config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// `Key=Value` lines of one section of a unit file (a key given twice keeps every value).
fn unit_section(text: &str, section: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

#[test]
fn unit_restarts_runs_unprivileged_and_stops_with_sigterm() {
    let text = std::fs::read_to_string(Path::new(DEPLOY).join("edgesieve.service")).unwrap();
    let service = unit_section(&text, "Service");
    let one = |k: &str| -> &str {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("[Service] has no {k}="));
        assert_eq!(v.len(), 1, "{k}= given {} times", v.len());
        &v[0]
    };
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("User"), "edgesieve");
    assert_ne!(one("User"), "root");
    assert_eq!(one("StateDirectory"), "edgesieve"); // /var/lib/edgesieve
    assert_eq!(one("KillSignal"), "SIGTERM");
    let stop: u64 = one("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!((10..=120).contains(&stop), "TimeoutStopSec={stop}");
    let exec = one("ExecStart");
    assert!(exec.starts_with("/usr/bin/edgesieve run "), "{exec}");
    assert!(
        exec.contains("--config /etc/edgesieve/edgesieve.toml"),
        "{exec}"
    );
    assert!(exec.contains("--spool /var/lib/edgesieve/"), "{exec}");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert!(
        unit_section(&text, "Install").contains_key("WantedBy"),
        "no [Install] WantedBy="
    );
}

#[test]
fn shipped_config_loads() {
    let path = Path::new(DEPLOY).join("edgesieve.toml");
    edgesieve::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
}

fn install(dest: &Path) -> String {
    let out = Command::new("bash")
        .arg(Path::new(DEPLOY).join("install"))
        .arg(env!("CARGO_BIN_EXE_edgesieve"))
        .env("DESTDIR", dest)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy/install failed:\n{text}");
    text
}

#[test]
fn install_into_an_image_keeps_an_existing_config() {
    let dest: PathBuf =
        std::env::temp_dir().join(format!("edgesieve-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    install(&dest);
    for f in [
        "usr/bin/edgesieve",
        "usr/share/edgesieve/models/yolox_nano.toml",
        "usr/share/edgesieve/models/yolox_nano.onnx",
        "usr/share/edgesieve/models/yolox_nano.int8.onnx",
        "usr/share/edgesieve/models/yolox_nano.nnef.tar",
        "usr/share/edgesieve/models/yolox_nano.int8.nnef.tar",
        "usr/share/edgesieve/models/yolox_nano.f16.nnef.tar",
        "usr/share/edgesieve/models/yolox_nano.embed.toml",
        "etc/edgesieve/edgesieve.toml",
        "etc/systemd/system/edgesieve.service",
    ] {
        assert!(dest.join(f).is_file(), "{f} not installed");
    }
    // The installed manifest finds its models (paths are relative to the manifest).
    let manifest = edgesieve::detect::manifest::Manifest::load(
        &dest.join("usr/share/edgesieve/models/yolox_nano.toml"),
    )
    .unwrap();
    // ... the ONNX files, and the NNEF files the car's build reads (it reads no ONNX).
    for p in [
        edgesieve::detect::manifest::Precision::Int8,
        edgesieve::detect::manifest::Precision::Fp32,
        edgesieve::detect::manifest::Precision::F16,
    ] {
        assert!(manifest.model_path(p).unwrap().is_file());
        let nnef = manifest.nnef_path(p).unwrap().expect("an NNEF file named");
        assert!(nnef.is_file(), "{} not installed", nnef.display());
    }
    let spec = manifest.embedding.as_ref().unwrap();
    edgesieve::select::embedding::Projector::from_calibration(
        &manifest.dir.join(spec.calibration.as_ref().unwrap()),
        &spec.tensor,
        spec.channels,
        edgesieve::select::embedding::EMBED_DIM,
    )
    .expect("the installed embedding calibration loads");

    // A second install (an update) leaves the car's tuned config alone.
    let config = dest.join("etc/edgesieve/edgesieve.toml");
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let text = install(&dest);
    assert!(text.contains("keeping the existing"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "log_level = \"debug\"\n"
    );
    let _ = std::fs::remove_dir_all(&dest);
}
