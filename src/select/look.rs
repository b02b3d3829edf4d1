//! Whether the view has stayed the same since the last kept frame, by the coarse luma grid
//! ([`crate::detect::gate`]'s 32x18 cell averages): a frame is a near-duplicate of the last kept
//! one while every frame since that keep, itself included, changed less than the look radius
//! from it ([`view_change`]: the 99th percentile of the cells' changes, in luma units).
//!
//! Why a second cue beside the embedding: in a scene that does not change (the rain clip of the
//! tmo324 drive: a car waiting in the rain, drops on the windscreen) the detector's pooled
//! features wander from frame to frame, so frames a minute apart lie as far apart in the
//! embedding as frames of a drive through new streets, and a labeler gets twenty copies of one
//! view. The luma grid sees the view: its change stays small until something in the picture
//! really changes (a car passing, the road turning, the light).
//!
//! Why "ever since" and not "looks like a kept frame": at 32x18 cells all night frames look
//! alike (dark, a few lights), so comparing with every kept frame would call a night frame
//! that interrupts a day drive a copy of the last night frame kept, minutes earlier
//! (edgesieve-eval part 2: rare-frame recall 11/12 -> 5/12). Once the view has moved on, the
//! embedding and its sketch judge it.
//!
//! Why it holds only for a while (`policy.look_hold_ms`, 6 s by default): a view that stays
//! put for longer is not a copy of one frame for ever. In the tmo324 rain clip (32 s of a car
//! waiting) frames 25 or more apart differ by more than the median consecutive distance in the
//! eval's independent gradient descriptor as well, and the embedding's coverage of the clip was
//! the worst of the drive with its 4 kept frames; after the hold the embedding and its sketch
//! judge the frame again (edgesieve-eval part 1, fp32, 5%: rain 4 -> 8 kept, mean coverage vs
//! random 1.030x -> 0.971x in the embedding, 0.994x -> 0.973x in the descriptor, redundancy
//! still 0.0%).
//!
//! Memory: one grid (2.3 KiB); one comparison per frame; no allocation.

use crate::detect::gate::{view_change, LumaGrid, GRID_LEN};

/// The last kept frame's look, and whether the view has left it since.
#[derive(Debug, Clone)]
pub struct SameView {
    anchor: LumaGrid,
    /// A frame was kept (and `anchor` is its grid).
    anchored: bool,
    /// A frame since that keep changed by the radius or more.
    left: bool,
    /// Stream time of that keep (ms).
    anchor_ms: u64,
    /// How long the view counts as unchanged after a keep (ms); 0: for as long as it stays.
    hold_ms: u64,
}

impl Default for SameView {
    fn default() -> Self {
        SameView::new(0)
    }
}

impl SameView {
    /// Nothing kept yet; the view counts as unchanged for at most `hold_ms` of stream time
    /// after each keep (0: for as long as it stays).
    pub fn new(hold_ms: u64) -> SameView {
        SameView {
            anchor: [0.0; GRID_LEN],
            anchored: false,
            left: false,
            anchor_ms: 0,
            hold_ms,
        }
    }

    /// True while the view has stayed within `radius` of the last kept frame's since it was
    /// kept (this frame, stamped `now_ms`, included) and the hold has not run out; once a frame
    /// leaves it, false until the next keep.
    pub fn unchanged(&mut self, grid: &LumaGrid, radius: f32, now_ms: u64) -> bool {
        if !self.anchored || self.left {
            return false;
        }
        if self.hold_ms > 0 && now_ms.saturating_sub(self.anchor_ms) >= self.hold_ms {
            return false;
        }
        self.left = view_change(grid, &self.anchor) >= radius;
        !self.left
    }

    /// A frame with this look, stamped `now_ms`, was kept.
    pub fn kept(&mut self, grid: &LumaGrid, now_ms: u64) {
        self.anchor = *grid;
        self.anchor_ms = now_ms;
        self.anchored = true;
        self.left = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(level: f32, spot: f32) -> LumaGrid {
        let mut g = [level; GRID_LEN];
        // More than 1% of the cells change by `spot`: something moved.
        for c in g.iter_mut().take(12) {
            *c += spot;
        }
        g
    }

    #[test]
    fn unchanged_until_the_view_leaves_the_last_kept_look() {
        let mut v = SameView::new(0);
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0, 0), "nothing kept yet");
        v.kept(&grid(100.0, 0.0), 0);
        // Noise everywhere, a small drift: still the same view, for as long as it stays.
        assert!(v.unchanged(&grid(101.0, 0.0), 20.0, 66));
        assert!(v.unchanged(&grid(100.0, 15.0), 20.0, 3_600_000));
        // Something moved: left; coming back does not make it the same view again.
        assert!(!v.unchanged(&grid(100.0, 40.0), 20.0, 3_600_066));
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0, 3_600_132));
        // The next keep anchors anew.
        v.kept(&grid(100.0, 40.0), 3_600_198);
        assert!(v.unchanged(&grid(100.0, 41.0), 20.0, 3_600_264));
    }

    #[test]
    fn the_same_view_holds_only_for_the_hold_after_a_keep() {
        let mut v = SameView::new(6_000);
        v.kept(&grid(100.0, 0.0), 10_000);
        assert!(v.unchanged(&grid(100.0, 0.0), 20.0, 10_066));
        assert!(v.unchanged(&grid(101.0, 0.0), 20.0, 15_999));
        // 6 s after the keep: the embedding judges it again, until the next keep.
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0, 16_000));
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0, 20_000));
        v.kept(&grid(100.0, 0.0), 20_000);
        assert!(v.unchanged(&grid(100.0, 0.0), 20.0, 20_066));
        // A clock that goes back (a restarted stream) does not end the hold.
        assert!(v.unchanged(&grid(100.0, 0.0), 20.0, 5));
    }
}
