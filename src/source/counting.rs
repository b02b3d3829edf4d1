//! A source for the threaded sources' unit tests: frames 0..n, 1x1, each pixel's value its
//! index, one every `every`; then, when `hold`, it blocks on `hang` (a stream that stopped
//! sending) before ending.

use super::{Frame, FrameSource, SourceError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Counting {
    pub n: u64,
    pub next: u64,
    pub every: Duration,
    pub hang: Arc<Mutex<()>>,
    pub hold: bool,
}

impl Counting {
    /// `n` frames, as fast as they are asked for, then the end.
    pub fn new(n: u64) -> Counting {
        Counting {
            n,
            next: 0,
            every: Duration::ZERO,
            hang: Arc::default(),
            hold: false,
        }
    }
}

impl FrameSource for Counting {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        if self.next == self.n {
            if self.hold {
                let _blocked = self.hang.lock().unwrap();
            }
            return None;
        }
        std::thread::sleep(self.every);
        frame.begin(self.next, 10.0);
        frame.width = 1;
        frame.height = 1;
        frame.rgb.clear();
        frame.rgb.extend_from_slice(&[self.next as u8; 3]);
        self.next += 1;
        Some(Ok(()))
    }

    fn describe(&self) -> String {
        "counting".into()
    }
}
