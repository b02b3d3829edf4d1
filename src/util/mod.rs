//! Small tools the binaries share: argument parsing, logging, a seeded RNG.

pub mod cli;
pub mod histogram;
pub mod logger;
pub mod rng;
#[doc(hidden)]
pub mod testing;

/// Writes `bytes` to `path` atomically: to `<path>.tmp` (beside it), synced, then renamed over
/// `path`; on an error the temporary file is removed, and `path` is as it was.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `<path>.tmp`: where [`write_atomic`] (and the status file) write before the rename.
pub fn tmp_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::path::PathBuf::from(tmp)
}

/// An error with its `source()` chain, `: `-separated, for a log line. A cause whose text the
/// message already shows (errors that print their source themselves) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}
