//! Context frames (issue 12): the frames just before and after a kept frame, stored with it as
//! one event, so a labeler sees the moment and not only one picture of it.
//!
//! [`Context`] keeps a ring of the last `before` frames the pipeline saw (RGB, buffers reused).
//! When a frame is kept, those frames are encoded (JPEG at `jpeg_quality`, longest side at most
//! `max_side`) into the kept frame's [`Event`], which then waits for the next `after` frames and
//! is stored as one spool entry when it has them ([`Spool::put_with_context`]): the entry appears
//! complete or not at all, and its context files go when it goes.
//!
//! Memory, fixed: the ring holds `before` frames and each of the at most `max_pending` waiting
//! events one frame, all at the camera's size (640x360: 0.69 MB each), plus the events' JPEGs
//! (`before + after` of them each, ~20-40 KB at the defaults). With `before = after = 2` and
//! `max_pending = 4` that is 6 frames, ~4.2 MB for 640x360. The start of a run logs the figure.
//!
//! A keep while `max_pending` events still wait stores the oldest one with the after-frames it
//! has; so does the end of the input or a shutdown. A kill loses the waiting events: they were
//! never acknowledged (not yet in the spool).
//!
//! [`Spool::put_with_context`]: crate::store::spool::Spool::put_with_context

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::jpeg;
use super::record::{ContextFrame, KeptRecord};
use super::spool::SpoolError;
use crate::config::KeyError;
use crate::source::Frame;

/// Most context frames on each side.
pub const MAX_SIDE_FRAMES: u32 = 30;

/// The `[context]` section: which frames around a kept frame are stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// Frames before a kept frame stored with it, 0 to 30 (0 = none). Frames the pipeline saw:
    /// a live source's dropped frames are not among them, gated ones are.
    pub before: u32,
    /// Frames after a kept frame stored with it, 0 to 30 (0 = none). The entry is written once
    /// they arrived (or the input ended).
    pub after: u32,
    /// JPEG quality of the context frames, 1 to 100 (the kept frame's is `spool.jpeg_quality`).
    pub jpeg_quality: u8,
    /// Longest side of a context frame's JPEG in pixels, 16 or more; larger frames are
    /// downscaled.
    pub max_side: u32,
    /// Kept frames that may wait for their after-frames at once, 1 to 16; a keep beyond it
    /// stores the oldest waiting one with what it has.
    pub max_pending: u32,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            before: 0,
            after: 0,
            jpeg_quality: 70,
            max_side: 640,
            max_pending: 4,
        }
    }
}

impl ContextConfig {
    /// Checks the values, naming the first bad key (relative to `[context]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        for (key, v) in [("before", self.before), ("after", self.after)] {
            if v > MAX_SIDE_FRAMES {
                return Err(KeyError::new(
                    key,
                    format!("must be in 0..={MAX_SIDE_FRAMES}, got {v}"),
                ));
            }
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(KeyError::new(
                "jpeg_quality",
                format!("must be in 1..=100, got {}", self.jpeg_quality),
            ));
        }
        if self.max_side < 16 {
            return Err(KeyError::new(
                "max_side",
                format!("must be at least 16, got {}", self.max_side),
            ));
        }
        if !(1..=16).contains(&self.max_pending) {
            return Err(KeyError::new(
                "max_pending",
                format!("must be in 1..=16, got {}", self.max_pending),
            ));
        }
        Ok(())
    }

    /// Whether any context frame is stored.
    pub fn enabled(&self) -> bool {
        self.before > 0 || self.after > 0
    }
}

/// A kept frame's context frames: their list and their JPEGs back to back, in list order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextSet {
    pub frames: Vec<ContextFrame>,
    pub jpegs: Vec<u8>,
}

impl ContextSet {
    /// No context frames.
    pub const EMPTY: ContextSet = ContextSet {
        frames: Vec::new(),
        jpegs: Vec::new(),
    };

    fn clear(&mut self) {
        self.frames.clear();
        self.jpegs.clear();
    }

    /// Appends `frame` at `offset` from the kept frame, encoded with `config`'s quality and
    /// size; `scratch` is a reused encoding buffer.
    fn push(
        &mut self,
        offset: i32,
        frame: &Frame,
        timestamp_ms: u64,
        config: &ContextConfig,
        scratch: &mut Vec<u8>,
    ) -> Result<(), SpoolError> {
        jpeg::encode(
            scratch,
            &frame.rgb,
            frame.width,
            frame.height,
            config.max_side,
            config.jpeg_quality,
        )?;
        let jpeg_len = u32::try_from(scratch.len()).map_err(|_| SpoolError::Encode {
            message: "context JPEG larger than 4 GiB".into(),
        })?;
        self.frames.push(ContextFrame {
            offset,
            frame_index: frame.index,
            frame_name: frame.name.clone(),
            timestamp_ms,
            jpeg_len,
            jpeg_crc: super::crc32(scratch),
        });
        self.jpegs.extend_from_slice(scratch);
        Ok(())
    }

    /// The JPEG of each listed frame, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ContextFrame, &[u8])> + '_ {
        let mut at = 0usize;
        self.frames.iter().map(move |c| {
            let end = (at + c.jpeg_len as usize).min(self.jpegs.len());
            let jpeg = &self.jpegs[at.min(end)..end];
            at = end;
            (c, jpeg)
        })
    }
}

/// A kept frame with its context, waiting for its after-frames or ready to store.
#[derive(Debug, Default)]
pub struct Event {
    pub record: Option<KeptRecord>,
    pub frame: Frame,
    pub context: ContextSet,
    /// After-frames still to come.
    missing_after: u32,
}

/// The ring of recent frames and the events waiting for after-frames (see the module docs).
#[derive(Debug)]
pub struct Context {
    config: ContextConfig,
    /// The last `before` frames seen and their timestamps; `ring_next` is the oldest once full.
    ring: Vec<(Frame, u64)>,
    ring_next: usize,
    ring_len: usize,
    pending: VecDeque<Event>,
    /// Stored events, kept for their buffers.
    spare: Vec<Event>,
    scratch: Vec<u8>,
}

impl Context {
    /// None when `config` asks for no context frames.
    pub fn new(config: &ContextConfig) -> Option<Context> {
        if !config.enabled() {
            return None;
        }
        Some(Context {
            config: config.clone(),
            ring: (0..config.before).map(|_| (Frame::new(), 0)).collect(),
            ring_next: 0,
            ring_len: 0,
            pending: VecDeque::with_capacity(config.max_pending as usize),
            spare: Vec::new(),
            scratch: Vec::new(),
        })
    }

    pub fn config(&self) -> &ContextConfig {
        &self.config
    }

    /// Bytes of frame memory the context holds at most for `width` x `height` frames: the ring
    /// and one frame per waiting event (their JPEGs aside).
    pub fn frame_memory(&self, width: u32, height: u32) -> u64 {
        let frame = u64::from(width) * u64::from(height) * 3;
        frame * (u64::from(self.config.before) + u64::from(self.config.max_pending))
    }

    /// Events waiting for after-frames.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Hands `frame` (seen at `timestamp_ms`) as an after-frame to the waiting events; those
    /// that now have all of theirs go to `ready`, oldest first.
    pub fn feed_after(
        &mut self,
        frame: &Frame,
        timestamp_ms: u64,
        ready: &mut Vec<Event>,
    ) -> Result<(), SpoolError> {
        for event in &mut self.pending {
            let offset = (self.config.after - event.missing_after + 1) as i32;
            event
                .context
                .push(offset, frame, timestamp_ms, &self.config, &mut self.scratch)?;
            event.missing_after -= 1;
        }
        while self.pending.front().is_some_and(|e| e.missing_after == 0) {
            ready.extend(self.pending.pop_front());
        }
        Ok(())
    }

    /// Opens the event of a kept frame: its record, a copy of the frame and the ring's frames
    /// as its before-context. It goes to `ready` at once when no after-frames are asked for;
    /// else it waits, and when `max_pending` already wait, the oldest goes to `ready` as it is.
    pub fn open_event(
        &mut self,
        record: KeptRecord,
        frame: &Frame,
        ready: &mut Vec<Event>,
    ) -> Result<(), SpoolError> {
        let mut event = self.spare.pop().unwrap_or_default();
        event.context.clear();
        event.frame.clone_from(frame);
        event.record = Some(record);
        event.missing_after = self.config.after;
        let n = self.ring_len;
        for k in 0..n {
            // Oldest first: the ring's oldest is at ring_next once it is full.
            let slot = (self.ring_next + self.ring.len() - n + k) % self.ring.len();
            let (f, ts) = &self.ring[slot];
            let offset = k as i32 - n as i32;
            event
                .context
                .push(offset, f, *ts, &self.config, &mut self.scratch)?;
        }
        if event.missing_after == 0 {
            ready.push(event);
            return Ok(());
        }
        if self.pending.len() >= self.config.max_pending as usize {
            ready.extend(self.pending.pop_front());
        }
        self.pending.push_back(event);
        Ok(())
    }

    /// Remembers `frame` in the ring (after its own keep decision: a frame is not its own
    /// context).
    pub fn remember(&mut self, frame: &Frame, timestamp_ms: u64) {
        if self.ring.is_empty() {
            return;
        }
        let slot = &mut self.ring[self.ring_next];
        slot.0.clone_from(frame);
        slot.1 = timestamp_ms;
        self.ring_next = (self.ring_next + 1) % self.ring.len();
        self.ring_len = (self.ring_len + 1).min(self.ring.len());
    }

    /// Every waiting event, oldest first, with the after-frames it has (the input ended).
    pub fn drain(&mut self, ready: &mut Vec<Event>) {
        ready.extend(self.pending.drain(..));
    }

    /// Takes back a stored event's buffers.
    pub fn recycle(&mut self, event: Event) {
        if self.spare.len() < self.config.max_pending as usize + 1 {
            self.spare.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::FrameScores;

    fn frame(index: u64, shade: u8) -> Frame {
        let mut f = Frame::new();
        f.index = index;
        f.name = format!("f{index}");
        f.width = 32;
        f.height = 16;
        f.rgb = vec![shade; 32 * 16 * 3];
        f
    }

    fn record(index: u64) -> KeptRecord {
        KeptRecord {
            frame_index: index,
            frame_name: format!("f{index}"),
            source: "test".into(),
            timestamp_ms: index * 100,
            width: 32,
            height: 16,
            model: "m".into(),
            detections: Vec::new(),
            scores: FrameScores::default(),
            embedding: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// The job's order per frame: after-frames first, then the decision, then the ring.
    fn step(ctx: &mut Context, i: u64, keep: bool, ready: &mut Vec<Event>) {
        let f = frame(i, (i * 10) as u8);
        ctx.feed_after(&f, i * 100, ready).unwrap();
        if keep {
            ctx.open_event(record(i), &f, ready).unwrap();
        }
        ctx.remember(&f, i * 100);
    }

    fn offsets(e: &Event) -> Vec<(i32, u64)> {
        e.context
            .frames
            .iter()
            .map(|c| (c.offset, c.frame_index))
            .collect()
    }

    #[test]
    fn an_event_takes_the_frames_around_it_in_order() {
        let config = ContextConfig {
            before: 2,
            after: 3,
            ..ContextConfig::default()
        };
        let mut ctx = Context::new(&config).unwrap();
        let mut ready = Vec::new();
        for i in 0..5 {
            step(&mut ctx, i, i == 4, &mut ready);
        }
        assert!(ready.is_empty());
        assert_eq!(ctx.pending(), 1);
        for i in 5..8 {
            step(&mut ctx, i, false, &mut ready);
        }
        assert_eq!(ready.len(), 1);
        let e = &ready[0];
        assert_eq!(e.record.as_ref().unwrap().frame_index, 4);
        assert_eq!(e.frame.index, 4);
        assert_eq!(offsets(e), vec![(-2, 2), (-1, 3), (1, 5), (2, 6), (3, 7)]);
        // Each JPEG is where the list says, with its CRC, and decodes to its frame's shade.
        for (c, jpeg) in e.context.iter() {
            assert_eq!(jpeg.len(), c.jpeg_len as usize);
            assert_eq!(crate::store::crc32(jpeg), c.jpeg_crc);
            let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
            let shade = (c.frame_index * 10) as i32;
            assert!((i32::from(img.get_pixel(5, 5)[0]) - shade).abs() <= 3);
        }
        assert_eq!(
            e.context.jpegs.len(),
            e.context
                .frames
                .iter()
                .map(|c| c.jpeg_len as usize)
                .sum::<usize>()
        );
    }

    #[test]
    fn early_keeps_and_the_end_of_input_store_what_they_have() {
        let config = ContextConfig {
            before: 3,
            after: 2,
            max_pending: 1,
            ..ContextConfig::default()
        };
        let mut ctx = Context::new(&config).unwrap();
        let mut ready = Vec::new();
        // Frame 0 kept: no frame before it. Frame 1 kept too while frame 0's event waits (the
        // bound is 1): frame 0's goes with the one after-frame it has.
        step(&mut ctx, 0, true, &mut ready);
        assert!(ready.is_empty());
        step(&mut ctx, 1, true, &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(offsets(&ready[0]), vec![(1, 1)]);
        step(&mut ctx, 2, true, &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(offsets(&ready[1]), vec![(-1, 0), (1, 2)]);
        ready.clear();
        ctx.drain(&mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(offsets(&ready[0]), vec![(-2, 0), (-1, 1)]);
        assert_eq!(ctx.pending(), 0);
    }

    #[test]
    fn before_only_is_ready_at_once_and_buffers_are_reused() {
        let config = ContextConfig {
            before: 1,
            ..ContextConfig::default()
        };
        let mut ctx = Context::new(&config).unwrap();
        let mut ready = Vec::new();
        step(&mut ctx, 0, false, &mut ready);
        step(&mut ctx, 1, true, &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(offsets(&ready[0]), vec![(-1, 0)]);
        let e = ready.pop().unwrap();
        let capacity = e.frame.rgb.capacity();
        ctx.recycle(e);
        step(&mut ctx, 2, true, &mut ready);
        assert_eq!(ready[0].frame.rgb.capacity(), capacity);
        assert_eq!(ctx.frame_memory(640, 360), 640 * 360 * 3 * 5);
    }

    #[test]
    fn bad_config_names_the_key() {
        assert!(Context::new(&ContextConfig::default()).is_none());
        let bad = |c: ContextConfig| c.validate().unwrap_err().key;
        let d = ContextConfig::default;
        assert_eq!(bad(ContextConfig { before: 31, ..d() }), "before");
        assert_eq!(bad(ContextConfig { after: 99, ..d() }), "after");
        assert_eq!(
            bad(ContextConfig {
                jpeg_quality: 0,
                ..d()
            }),
            "jpeg_quality"
        );
        assert_eq!(bad(ContextConfig { max_side: 8, ..d() }), "max_side");
        assert_eq!(
            bad(ContextConfig {
                max_pending: 0,
                ..d()
            }),
            "max_pending"
        );
        assert!(d().validate().is_ok());
    }
}
