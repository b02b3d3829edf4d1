//! `edgesieve upload` and the uploader thread of `edgesieve run`: one [`Uploader`] for both.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::pipeline::{load_manifest, PipelineError};
use super::shutdown::Shutdown;
use crate::config::Config;
use crate::store::spool::{Spool, SpoolError};
use crate::upload::label_studio::LabelStudio;
use crate::upload::{Mode, SharedSpool, UploadError, UploadStats, Uploader};

/// Why an upload job could not run or stopped.
#[derive(Debug)]
pub enum UploadJobError {
    /// `[upload]` has no `url`.
    NotConfigured,
    /// The model's manifest (its class names label a project the uploader creates).
    Manifest(PipelineError),
    Spool(SpoolError),
    Upload(UploadError),
}

impl fmt::Display for UploadJobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadJobError::NotConfigured => write!(
                f,
                "upload.url is not set: give a config file with an [upload] section (url, project, token_file or token_env)"
            ),
            UploadJobError::Manifest(e) => e.fmt(f),
            UploadJobError::Spool(e) => e.fmt(f),
            UploadJobError::Upload(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UploadJobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadJobError::NotConfigured => None,
            UploadJobError::Manifest(e) => e.source(),
            UploadJobError::Spool(e) => e.source(),
            UploadJobError::Upload(e) => e.source(),
        }
    }
}

/// The uploader `config` describes (validated), for the model's classes.
pub fn make_uploader(
    config: &Config,
    default_manifest: &Path,
) -> Result<Uploader<LabelStudio>, UploadJobError> {
    if !config.upload.enabled() {
        return Err(UploadJobError::NotConfigured);
    }
    let manifest = load_manifest(config, default_manifest).map_err(UploadJobError::Manifest)?;
    let backend =
        LabelStudio::new(&config.upload, &manifest.classes).map_err(UploadJobError::Upload)?;
    Ok(Uploader::new(backend, config.upload.clone()))
}

/// `edgesieve upload`: opens the spool at `spool_dir` (refused while another process, such as a
/// running `edgesieve run`, holds it) and uploads until it is empty ([`Mode::Once`]) or
/// `shutdown` is asked for.
pub fn run_upload(
    spool_dir: &Path,
    config: &Config,
    default_manifest: &Path,
    mode: Mode,
    shutdown: Option<&Shutdown>,
) -> Result<UploadStats, UploadJobError> {
    let mut uploader = make_uploader(config, default_manifest)?;
    let (spool, _recovery) =
        Spool::open(spool_dir, config.spool.clone()).map_err(UploadJobError::Spool)?;
    let spool = SharedSpool::new(spool);
    let stop = || shutdown.is_some_and(Shutdown::requested);
    uploader
        .run(&spool, mode, &stop)
        .map_err(UploadJobError::Upload)
}

/// The uploader as a thread beside the job loop, sharing its spool.
pub struct UploadThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<UploadStats, UploadError>>,
}

impl UploadThread {
    /// Starts `uploader` on `spool` until [`UploadThread::finish`] or `shutdown`.
    pub fn spawn(
        mut uploader: Uploader<LabelStudio>,
        spool: SharedSpool,
        shutdown: Option<Shutdown>,
    ) -> std::io::Result<UploadThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("upload".into())
            .spawn(move || {
                let stop = || {
                    flag.load(Ordering::SeqCst)
                        || shutdown.as_ref().is_some_and(Shutdown::requested)
                };
                let result = uploader.run(&spool, Mode::UntilStopped, &stop);
                if let Err(e) = &result {
                    log::error!("upload: {e}; uploading stopped (selection goes on)");
                }
                result
            })?;
        Ok(UploadThread { stop, handle })
    }

    /// Stops the thread after the entry in hand and returns its counters.
    pub fn finish(self) -> Result<UploadStats, UploadError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.join() {
            Ok(result) => result,
            Err(_) => Err(UploadError::ThreadPanicked),
        }
    }
}
