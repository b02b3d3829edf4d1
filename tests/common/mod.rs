//! Helpers shared by the integration tests that run the `edgesieve` binary.
// Each test crate uses a subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The `edgesieve` binary of this build, run from the repository root (models/ resolves).
pub fn edgesieve() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgesieve"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A fresh, empty directory for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgesieve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
