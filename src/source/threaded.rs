//! Reading a stream on its own thread: [`Prefetch`] runs any [`FrameSource`] on a background
//! thread and hands its frames over a bounded channel, so the job loop never blocks in a read.
//!
//! A stream on stdin or a FIFO can block for good (a camera process that stopped writing); the
//! loop then waits for the next frame in short slices and checks the shutdown flag between them,
//! so SIGTERM ends the run cleanly even then. The reader thread is left blocked in its read and
//! ends with the process.
//!
//! Frame buffers circulate: the reader decodes into a recycled [`Frame`], sends it, and the
//! consumer swaps it with the caller's frame and sends the old one back, so the steady state
//! allocates nothing per frame.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::Duration;

use super::{FaultChecks, Frame, FrameSource, SourceError};
use crate::run::shutdown::Shutdown;

/// Frames decoded ahead of the consumer, at most.
const AHEAD: usize = 2;
/// How long the consumer waits for a frame before checking the stop flag again.
const POLL: Duration = Duration::from_millis(100);

enum Item {
    Frame(Frame, Result<(), SourceError>),
    End,
}

/// A [`FrameSource`] read ahead on a background thread (see the module docs).
pub struct Prefetch {
    description: String,
    len_hint: Option<usize>,
    frame_size: Option<(u32, u32)>,
    checks: FaultChecks,
    frames: Receiver<Item>,
    recycle: SyncSender<Frame>,
    shutdown: Option<Shutdown>,
    done: bool,
}

impl Prefetch {
    /// Starts reading `inner` on a new thread; `shutdown`, when given (or set later with
    /// [`FrameSource::watch_shutdown`]), ends [`FrameSource::next_frame`] with None while it
    /// waits.
    pub fn new(inner: Box<dyn FrameSource>, shutdown: Option<Shutdown>) -> Prefetch {
        let description = inner.describe();
        let len_hint = inner.len_hint();
        let frame_size = inner.frame_size();
        let checks = inner.fault_checks();
        let (frame_tx, frames) = mpsc::sync_channel(AHEAD);
        // Never full: AHEAD + 2 frames circulate in all.
        let (recycle, recycle_rx) = mpsc::sync_channel(AHEAD + 2);
        for _ in 0..AHEAD {
            let _ = recycle.send(Frame::new());
        }
        let spawned = thread::Builder::new()
            .name("edgesieve-read".into())
            .spawn(move || read_ahead(inner, frame_tx, recycle_rx));
        if let Err(e) = spawned {
            // Without a thread there is nothing to read: the source ends at once, said so.
            log::error!("cannot start the reader thread: {e}");
        }
        Prefetch {
            description,
            len_hint,
            frame_size,
            checks,
            frames,
            recycle,
            shutdown,
            done: false,
        }
    }
}

/// The reader thread: decodes frames into recycled buffers until the source ends, fails for
/// good, or the consumer is gone.
fn read_ahead(mut inner: Box<dyn FrameSource>, frames: SyncSender<Item>, recycle: Receiver<Frame>) {
    loop {
        let Ok(mut frame) = recycle.recv() else {
            return;
        };
        let Some(result) = inner.next_frame(&mut frame) else {
            let _ = frames.send(Item::End);
            return;
        };
        if frames.send(Item::Frame(frame, result)).is_err() {
            return;
        }
    }
}

impl FrameSource for Prefetch {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        while !self.done {
            if self.shutdown.as_ref().is_some_and(Shutdown::requested) {
                return None;
            }
            match self.frames.recv_timeout(POLL) {
                Ok(Item::Frame(mut got, result)) => {
                    std::mem::swap(frame, &mut got);
                    let _ = self.recycle.send(got);
                    return Some(result);
                }
                Ok(Item::End) | Err(RecvTimeoutError::Disconnected) => self.done = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        None
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn len_hint(&self) -> Option<usize> {
        self.len_hint
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        self.frame_size
    }

    fn watch_shutdown(&mut self, shutdown: &Shutdown) {
        self.shutdown = Some(shutdown.clone());
    }

    fn fault_checks(&self) -> FaultChecks {
        self.checks
    }
}

#[cfg(test)]
mod tests {
    use super::super::counting::Counting;
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    #[test]
    fn passes_frames_through_in_order_and_ends() {
        let src = Counting::new(5);
        let mut p = Prefetch::new(Box::new(src), None);
        assert_eq!(p.describe(), "counting");
        let mut f = Frame::new();
        for i in 0..5u64 {
            p.next_frame(&mut f).unwrap().unwrap();
            assert_eq!((f.index, f.rgb[0]), (i, i as u8));
        }
        assert!(p.next_frame(&mut f).is_none());
        assert!(p.next_frame(&mut f).is_none());
    }

    #[test]
    fn a_stop_ends_a_blocked_source() {
        let hang = Arc::new(Mutex::new(()));
        let guard = hang.lock().unwrap();
        let src = Counting {
            hang: Arc::clone(&hang),
            hold: true,
            ..Counting::new(2)
        };
        let stop = Shutdown::manual();
        let mut p = Prefetch::new(Box::new(src), None);
        p.watch_shutdown(&stop);
        let mut f = Frame::new();
        p.next_frame(&mut f).unwrap().unwrap();
        p.next_frame(&mut f).unwrap().unwrap();
        let asker = stop.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            asker.request();
        });
        let t0 = Instant::now();
        assert!(p.next_frame(&mut f).is_none());
        assert!(t0.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        drop(guard);
    }
}
