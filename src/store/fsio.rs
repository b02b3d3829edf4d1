//! The spool's filesystem primitives: atomic writes (temporary file, fsync, rename), directory
//! fsync, idempotent removal, the free-space query (statvfs) and the mapping of I/O errors to
//! [`SpoolError`], a full disk (ENOSPC) to its own variant.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::spool::SpoolError;

/// Prefix of the temporary files of atomic writes; such a file found on open is an interrupted
/// write.
pub(super) const TMP_PREFIX: &str = ".tmp-";

const ENOSPC: i32 = 28;

/// `source`, met on `path` in the spool directory `dir`, as a [`SpoolError`]:
/// [`SpoolError::DiskFull`] when the filesystem is full, [`SpoolError::Io`] otherwise.
pub(super) fn io_error(dir: &Path, path: &Path, source: io::Error) -> SpoolError {
    if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(ENOSPC) {
        SpoolError::DiskFull {
            dir: dir.to_path_buf(),
            path: path.to_path_buf(),
            source,
        }
    } else {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to a temporary file in `dir`, fsyncs it and renames it to `path` (no dir
/// fsync). On `Err` the temporary file is gone.
pub(super) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(dir, &tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(dir, path, e));
    }
    Ok(())
}

/// Fsyncs the directory `dir`, making the renames and removals in it durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, dir, e))
}

/// The lock file in the spool directory: `flock`ed by the process that has the spool open, and
/// holding its pid (for the message another process gets).
pub(super) const LOCK_FILE: &str = ".lock";

/// Takes the spool's exclusive lock: `flock(LOCK_EX | LOCK_NB)` on `dir/.lock` (created if
/// needed), then writes our pid into it. The lock lasts as long as the returned file is open
/// (the kernel releases it when the process dies, however it dies). Another holder →
/// [`SpoolError::Locked`] naming its pid.
#[cfg(unix)]
pub(super) fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(dir, &path, e))?;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(SpoolError::Locked {
                dir: dir.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        return Err(io_error(dir, &path, e));
    }
    let pid = std::process::id();
    let write = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()));
    if let Err(e) = write {
        // The lock itself is held; only the pid in the message of a second opener is lost.
        log::warn!(
            "spool: could not write our pid into {}: {e}",
            path.display()
        );
    }
    Ok(file)
}

/// No `flock` on this platform: the spool is not locked.
#[cfg(not(unix))]
pub(super) fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(dir, &path, e))
}

/// Removes the file at `path`; a file that is not there is not an error.
pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `dir` (statvfs), or None
/// when the query fails or the platform has none (then only `max_bytes` bounds the spool).
#[cfg(unix)]
pub(super) fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer; statvfs only writes it.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field widths differ per target
    Some(u64::from(st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Bytes available on the filesystem holding `dir`: unknown on this platform.
#[cfg(not(unix))]
pub(super) fn available_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_has_its_own_error() {
        let dir = Path::new("/spool");
        let err = io_error(
            dir,
            &dir.join("x.jpg"),
            io::Error::from_raw_os_error(ENOSPC),
        );
        assert!(err.is_disk_full());
        assert!(
            err.to_string().starts_with("spool disk full at /spool: "),
            "{err}"
        );
        let err = io_error(dir, dir, io::Error::from(io::ErrorKind::StorageFull));
        assert!(err.is_disk_full());
        let err = io_error(dir, dir, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!err.is_disk_full());
    }
}
