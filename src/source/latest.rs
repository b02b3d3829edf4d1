//! A live stream's latest frame (issue 12): [`Latest`] reads a camera stream (y4m on stdin or a
//! FIFO) on its own thread as fast as the camera sends, and hands the job loop the newest frame
//! whenever it asks for one.
//!
//! The reader decodes every frame into a spare buffer, stamps it with the capture clock (wall
//! time since the reader started, when the frame was read) and swaps it into a one-frame slot.
//! When the loop is busy (inference slower than the camera), a frame still waiting in the slot is
//! replaced by the newer one and counted as dropped: the camera process is never blocked and
//! nothing queues without bound. Three frame buffers circulate (the reader's spare, the slot's,
//! the caller's), swapped, never allocated per frame.
//!
//! A stream that stops sending leaves the loop waiting in short slices, checking the shutdown
//! flag between them, so SIGTERM ends the run cleanly; the reader thread stays blocked in its
//! read and ends with the process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{FaultChecks, Frame, FrameSource, SourceError};
use crate::run::shutdown::Shutdown;

/// How long the consumer waits for a frame before checking the stop flag again.
const POLL: Duration = Duration::from_millis(100);

/// The one-frame slot between the reader and the loop.
struct Slot {
    frame: Frame,
    /// The slot's frame is new (not yet taken), with this result.
    fresh: Option<Result<(), SourceError>>,
    /// The stream ended (or the reader could not start).
    ended: bool,
    /// Frames replaced in the slot before the loop took them.
    dropped: u64,
    /// The loop is gone: the reader stops after its current read.
    closed: bool,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, Slot> {
    // A panic while holding the lock leaves a consistent slot (swaps and counters only).
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live [`FrameSource`] read on a background thread, newest frame first (see the module docs).
pub struct Latest {
    shared: Shared,
    description: String,
    frame_size: Option<(u32, u32)>,
    checks: FaultChecks,
    shutdown: Option<Shutdown>,
    done: bool,
}

impl Latest {
    /// Starts reading `inner` on a new thread.
    pub fn new(inner: Box<dyn FrameSource>) -> Latest {
        let description = format!(
            "{} (live: newest frame, older ones dropped)",
            inner.describe()
        );
        let frame_size = inner.frame_size();
        let checks = inner.fault_checks();
        let shared: Shared = Arc::new((
            Mutex::new(Slot {
                frame: Frame::new(),
                fresh: None,
                ended: false,
                dropped: 0,
                closed: false,
            }),
            Condvar::new(),
        ));
        let theirs = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("edgesieve-live".into())
            .spawn(move || read_live(inner, theirs));
        if let Err(e) = spawned {
            log::error!("cannot start the reader thread: {e}");
            lock(&shared).ended = true;
        }
        Latest {
            shared,
            description,
            frame_size,
            checks,
            shutdown: None,
            done: false,
        }
    }
}

/// The reader thread: every frame into the spare buffer, stamped, then into the slot.
fn read_live(mut inner: Box<dyn FrameSource>, shared: Shared) {
    let started = Instant::now();
    let mut spare = Frame::new();
    loop {
        let read = inner.next_frame(&mut spare);
        let mut slot = lock(&shared);
        if slot.closed {
            return;
        }
        let Some(result) = read else {
            slot.ended = true;
            shared.1.notify_all();
            return;
        };
        // The capture clock: when this frame arrived, not its position in the stream.
        let now = Instant::now();
        spare.time_ms = now.duration_since(started).as_millis() as u64;
        spare.arrived = Some(now);
        if slot.fresh.is_some() {
            slot.dropped += 1;
        }
        spare.dropped_before = slot.dropped;
        std::mem::swap(&mut slot.frame, &mut spare);
        slot.fresh = Some(result);
        shared.1.notify_all();
    }
}

impl Drop for Latest {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
    }
}

impl FrameSource for Latest {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        let mut slot = lock(&self.shared);
        while !self.done {
            if self.shutdown.as_ref().is_some_and(Shutdown::requested) {
                return None;
            }
            if let Some(result) = slot.fresh.take() {
                std::mem::swap(frame, &mut slot.frame);
                return Some(result);
            }
            if slot.ended {
                self.done = true;
                break;
            }
            slot = self
                .shared
                .1
                .wait_timeout(slot, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        None
    }

    fn describe(&self) -> String {
        self.description.clone()
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

    /// Frames the camera sent that the loop never took (replaced by newer ones).
    fn dropped(&self) -> u64 {
        lock(&self.shared).dropped
    }
}

#[cfg(test)]
mod tests {
    use super::super::counting::Counting;
    use super::*;

    /// A camera: `n` frames, one every `every_ms`.
    fn camera(n: u64, every_ms: u64) -> Counting {
        Counting {
            every: Duration::from_millis(every_ms),
            ..Counting::new(n)
        }
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frames_and_the_rest_are_counted_dropped() {
        let mut live = Latest::new(Box::new(camera(60, 2)));
        let mut frame = Frame::new();
        let mut got = Vec::new();
        while let Some(r) = live.next_frame(&mut frame) {
            r.unwrap();
            got.push(frame.index);
            // Inference, five times slower than the camera.
            thread::sleep(Duration::from_millis(10));
        }
        let dropped = live.dropped();
        // Every frame is either taken or counted dropped, in order, none twice.
        assert_eq!(
            got.len() as u64 + dropped,
            60,
            "got {got:?}, dropped {dropped}"
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        assert!(dropped > 20, "a busy consumer must drop frames: {dropped}");
        // The last frame the camera sent is the last one taken: nothing stale is left queued.
        assert_eq!(got.last(), Some(&59));
        // The frame says how many were dropped before it, and carries the capture clock.
        assert!(frame.dropped_before <= dropped && frame.dropped_before > 0);
        assert!(
            frame.time_ms >= 60 * 2 - 5,
            "capture clock {}",
            frame.time_ms
        );
    }

    #[test]
    fn a_fast_consumer_drops_nothing() {
        let mut live = Latest::new(Box::new(camera(20, 5)));
        let mut frame = Frame::new();
        let mut n = 0;
        while let Some(r) = live.next_frame(&mut frame) {
            r.unwrap();
            n += 1;
        }
        assert_eq!((n, live.dropped()), (20, 0));
    }
}
