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
}

impl Default for SameView {
    fn default() -> Self {
        SameView::new()
    }
}

impl SameView {
    pub fn new() -> SameView {
        SameView {
            anchor: [0.0; GRID_LEN],
            anchored: false,
            left: false,
        }
    }

    /// True while the view has stayed within `radius` of the last kept frame's since it was
    /// kept (this frame included); once a frame leaves it, false until the next keep.
    pub fn unchanged(&mut self, grid: &LumaGrid, radius: f32) -> bool {
        if !self.anchored || self.left {
            return false;
        }
        self.left = view_change(grid, &self.anchor) >= radius;
        !self.left
    }

    /// A frame with this look was kept.
    pub fn kept(&mut self, grid: &LumaGrid) {
        self.anchor = *grid;
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
        let mut v = SameView::new();
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0), "nothing kept yet");
        v.kept(&grid(100.0, 0.0));
        // Noise everywhere, a small drift: still the same view.
        assert!(v.unchanged(&grid(101.0, 0.0), 20.0));
        assert!(v.unchanged(&grid(100.0, 15.0), 20.0));
        // Something moved: left; coming back does not make it the same view again.
        assert!(!v.unchanged(&grid(100.0, 40.0), 20.0));
        assert!(!v.unchanged(&grid(100.0, 0.0), 20.0));
        // The next keep anchors anew.
        v.kept(&grid(100.0, 40.0));
        assert!(v.unchanged(&grid(100.0, 41.0), 20.0));
    }
}
