//! Clean stop on SIGTERM (systemd's stop) and SIGINT (Ctrl-C): the handlers only set a flag, and
//! the frame loop checks it between frames, so the frame in hand is finished, its spool entry is
//! complete on disk, and the normal end of the run (sketch saved, summary printed) follows.
//!
//! A second SIGTERM or SIGINT while the first is being honoured exits at once (status 128 +
//! signal), for a stop that got stuck.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// The stop request, shared between the signal handlers and the loop that polls it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Shutdown {
    /// A flag that only [`Shutdown::request`] sets (no handlers installed).
    pub fn manual() -> Shutdown {
        Shutdown::default()
    }

    /// Installs the SIGTERM and SIGINT handlers and returns the flag they set.
    pub fn install() -> io::Result<Shutdown> {
        let s = Shutdown::default();
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit must see the flag as it was *before* this
            // signal, so it is registered first.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                128 + sig,
                Arc::clone(&s.requested),
            )?;
            signal_hook::flag::register_usize(sig, Arc::clone(&s.signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&s.requested))?;
        }
        Ok(s)
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Asks for a stop, as a signal would.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// What asked for the stop: "SIGTERM", "SIGINT", "request", or None while none did.
    pub fn reason(&self) -> Option<&'static str> {
        if !self.requested() {
            return None;
        }
        Some(match self.signal.load(Ordering::SeqCst) as i32 {
            SIGTERM => "SIGTERM",
            SIGINT => "SIGINT",
            _ => "request",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_request_is_seen_by_clones() {
        let s = Shutdown::manual();
        let seen_by_loop = s.clone();
        assert!(!seen_by_loop.requested());
        assert_eq!(seen_by_loop.reason(), None);
        s.request();
        assert!(seen_by_loop.requested());
        assert_eq!(seen_by_loop.reason(), Some("request"));
    }
}
