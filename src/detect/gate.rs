//! A cheap gate before the detector (issue 12): a frame that is nearly the same view as the last
//! frame the detector ran on is skipped, so a car waiting at a red light does not spend the
//! detector on hundreds of copies of one view.
//!
//! The test: the frame's luma, averaged over a [`THUMB_W`]x[`THUMB_H`] grid (every
//! [`SAMPLE_STEP`]-th pixel of every [`SAMPLE_STEP`]-th row: 57,600 of a 640x360 frame's
//! pixels, well under a millisecond against tens of milliseconds of inference), against the
//! same grid of the last processed frame. The 99th percentile of the cells' absolute changes, in
//! 0-255 luma units, below `gate.max_difference` skips the frame: a moving view changes some
//! cells a lot, sensor noise changes every cell a little. (The mean change does not separate
//! them: consecutive frames of the rain clip differ by 0.10 on average, a still view with
//! per-pixel noise of σ 2 by 0.11.) Compared with the last *processed* frame, not the
//! previous one, so a slow drift adds up until a frame passes. `gate.max_skip_s` bounds how long
//! the gate may skip: the view is looked at again at least that often. No allocation.

use crate::config::KeyError;
use serde::{Deserialize, Serialize};

/// Columns and rows of the luma grid.
pub const THUMB_W: usize = 32;
pub const THUMB_H: usize = 18;
/// Pixel stride of the sampling, in both directions.
pub const SAMPLE_STEP: usize = 2;
/// Cells of the grid.
pub const GRID_LEN: usize = THUMB_W * THUMB_H;
/// A frame's luma grid.
pub type LumaGrid = [f32; GRID_LEN];
/// The rank (from the smallest) of the cell change the gate judges: the 99th percentile.
const PERCENTILE_INDEX: usize = GRID_LEN * 99 / 100;

/// The `[gate]` section: which frames skip the detector as near-copies of the last processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// A frame whose 32x18 luma grid differs from the last processed frame's by less than this
    /// (99th percentile of the cells' absolute changes, 0-255 luma units) skips the detector
    /// and the selection; 0 switches the gate off. Measured: consecutive frames of the sample
    /// drives (moving, 7.5-12.5 fps) differ by at least 1.13 (rain) and 8.1 (highway); a still
    /// view re-encoded with per-pixel noise of σ 1, 2, 3 by at most 0.35, 0.44, 0.56, and
    /// re-encoded at JPEG quality 84/85/86 by 0.2-1.7.
    pub max_difference: f32,
    /// Longest stretch the gate may skip, in seconds of stream time: after it a frame is
    /// processed however similar (a long stop is still looked at now and then).
    pub max_skip_s: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_difference: 1.0,
            max_skip_s: 10.0,
        }
    }
}

impl GateConfig {
    /// Checks the values, naming the first bad key (relative to `[gate]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        if !(0.0..=255.0).contains(&self.max_difference) {
            return Err(KeyError::new(
                "max_difference",
                format!("must be in 0..=255, got {}", self.max_difference),
            ));
        }
        if !(self.max_skip_s.is_finite() && self.max_skip_s >= 0.0) {
            return Err(KeyError::new(
                "max_skip_s",
                format!("must be a number of seconds >= 0, got {}", self.max_skip_s),
            ));
        }
        Ok(())
    }
}

/// The gate's state: the last processed frame's grid and time.
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
    grid: LumaGrid,
    last: LumaGrid,
    counts: [u32; GRID_LEN],
    /// Stream time of the last processed frame; None before the first.
    last_ms: Option<u64>,
    /// The difference the last frame was judged by (for logs and tests).
    last_difference: f32,
}

impl Gate {
    pub fn new(config: &GateConfig) -> Gate {
        Gate {
            config: config.clone(),
            grid: [0.0; GRID_LEN],
            last: [0.0; GRID_LEN],
            counts: [0; GRID_LEN],
            last_ms: None,
            last_difference: f32::INFINITY,
        }
    }

    /// True when the frame (RGB8, `width` x `height`, at stream time `time_ms`) is a near-copy
    /// of the last processed frame and may skip the detector. A frame that passes becomes the
    /// reference. Always false when the gate is off.
    pub fn skips(&mut self, rgb: &[u8], width: u32, height: u32, time_ms: u64) -> bool {
        if self.config.max_difference <= 0.0 {
            return false;
        }
        self.compute_grid(rgb, width, height);
        self.last_difference = match self.last_ms {
            None => f32::INFINITY,
            Some(_) => view_change(&self.grid, &self.last),
        };
        let overdue = self
            .last_ms
            .is_some_and(|t| time_ms.saturating_sub(t) as f64 >= self.config.max_skip_s * 1e3);
        let skip = self.last_difference < self.config.max_difference && !overdue;
        if !skip {
            self.last = self.grid;
            self.last_ms = Some(time_ms);
        }
        skip
    }

    /// The frame's luma grid: while the gate is on, the one [`Gate::skips`] has just computed
    /// for this same frame; while it is off (`skips` computes none), computed here into the
    /// same buffers. No allocation.
    pub fn grid_of(&mut self, rgb: &[u8], width: u32, height: u32) -> &LumaGrid {
        if self.config.max_difference <= 0.0 {
            self.compute_grid(rgb, width, height);
        }
        &self.grid
    }

    /// The frame's luma grid into the gate's buffers.
    fn compute_grid(&mut self, rgb: &[u8], width: u32, height: u32) {
        let (w, h) = (width as usize, height as usize);
        luma_grid(rgb, w, h, &mut self.grid, &mut self.counts);
    }

    /// The difference (99th percentile of the cells' luma changes) the last frame was judged
    /// by; infinite for a first frame, and while the gate is off (it judges nothing).
    pub fn last_difference(&self) -> f32 {
        self.last_difference
    }
}

/// How much a view changed between two luma grids: the 99th percentile of the cells' absolute
/// changes, in 0-255 luma units. A moving view changes some cells a lot, sensor noise changes
/// every cell a little. No allocation.
pub fn view_change(a: &LumaGrid, b: &LumaGrid) -> f32 {
    let mut d = [0f32; GRID_LEN];
    for ((o, x), y) in d.iter_mut().zip(a).zip(b) {
        *o = (x - y).abs();
    }
    *d.select_nth_unstable_by(PERCENTILE_INDEX, |a, b| a.total_cmp(b))
        .1
}

/// Averages the BT.601 luma of a sparse sample of `rgb` over the grid. A buffer that does not
/// hold `w * h` RGB pixels gives a grid of zeros (the preprocessor reports the bad frame).
/// `counts` is scratch.
pub fn luma_grid(
    rgb: &[u8],
    w: usize,
    h: usize,
    grid: &mut LumaGrid,
    counts: &mut [u32; GRID_LEN],
) {
    grid.fill(0.0);
    counts.fill(0);
    if w == 0 || h == 0 || rgb.len() < w * h * 3 {
        return;
    }
    // Column `x` falls in cell `x * THUMB_W / w`, i.e. cell `cx` holds the sampled columns in
    // `[ceil(cx·w / THUMB_W), ceil((cx+1)·w / THUMB_W))`: the bounds once per cell, not a
    // division per pixel (the same cells, summed in the same order).
    let first_col = |cx: usize| {
        let x = (cx * w).div_ceil(THUMB_W);
        x.div_ceil(SAMPLE_STEP) * SAMPLE_STEP
    };
    for y in (0..h).step_by(SAMPLE_STEP) {
        let gy = y * THUMB_H / h;
        let row = &rgb[y * w * 3..(y + 1) * w * 3];
        for cx in 0..THUMB_W {
            let end = ((cx + 1) * w).div_ceil(THUMB_W).min(w);
            let cell = gy * THUMB_W + cx;
            let (mut sum, mut n) = (grid[cell], 0u32);
            for x in (first_col(cx)..end).step_by(SAMPLE_STEP) {
                let p = &row[x * 3..x * 3 + 3];
                sum += 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                n += 1;
            }
            grid[cell] = sum;
            counts[cell] += n;
        }
    }
    for (g, &n) in grid.iter_mut().zip(counts.iter()) {
        if n > 0 {
            *g /= n as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid as first written: a division per sampled pixel.
    fn luma_grid_reference(rgb: &[u8], w: usize, h: usize) -> (LumaGrid, [u32; GRID_LEN]) {
        let (mut grid, mut counts) = ([0.0f32; GRID_LEN], [0u32; GRID_LEN]);
        for y in (0..h).step_by(SAMPLE_STEP) {
            let gy = y * THUMB_H / h;
            for x in (0..w).step_by(SAMPLE_STEP) {
                let p = &rgb[(y * w + x) * 3..][..3];
                let luma =
                    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                let cell = gy * THUMB_W + x * THUMB_W / w;
                grid[cell] += luma;
                counts[cell] += 1;
            }
        }
        for (g, &n) in grid.iter_mut().zip(counts.iter()) {
            if n > 0 {
                *g /= n as f32;
            }
        }
        (grid, counts)
    }

    #[test]
    fn grid_of_is_the_frames_grid_with_the_gate_on_or_off() {
        let (a, b) = (frame(0, 0), frame(9, 0));
        let (mut want, mut counts) = ([0.0f32; GRID_LEN], [0u32; GRID_LEN]);
        luma_grid(&b, 64, 36, &mut want, &mut counts);
        let mut off = Gate::new(&GateConfig {
            max_difference: 0.0,
            ..GateConfig::default()
        });
        assert!(!off.skips(&a, 64, 36, 0));
        assert_eq!(off.grid_of(&b, 64, 36), &want);
        let mut on = Gate::new(&GateConfig::default());
        assert!(!on.skips(&a, 64, 36, 0));
        assert!(!on.skips(&b, 64, 36, 100));
        assert_eq!(on.grid_of(&b, 64, 36), &want);
    }

    #[test]
    fn luma_grid_matches_the_per_pixel_reference_bit_for_bit() {
        for (w, h) in [
            (640, 360),
            (641, 361),
            (64, 36),
            (33, 19),
            (31, 17),
            (1, 1),
            (1920, 1080),
        ] {
            let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
            let (mut grid, mut counts) = ([0.0f32; GRID_LEN], [0u32; GRID_LEN]);
            luma_grid(&rgb, w, h, &mut grid, &mut counts);
            let (want, want_counts) = luma_grid_reference(&rgb, w, h);
            assert_eq!(counts, want_counts, "{w}x{h}");
            assert!(
                grid.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{w}x{h}"
            );
        }
    }

    /// A synthetic 64x36 frame: a horizontal gradient shifted by `shift`, plus `noise` (a fixed
    /// pattern of ±noise).
    fn frame(shift: usize, noise: u8) -> Vec<u8> {
        let (w, h) = (64usize, 36usize);
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let base = (((x + shift) * 4) % 256) as u8;
                let n = if (x * 7 + y * 13) % 2 == 0 { noise } else { 0 };
                let px = base.saturating_add(n);
                v.extend_from_slice(&[px, px / 2, 255 - px]);
            }
        }
        v
    }

    #[test]
    fn near_copies_skip_until_the_view_changes_or_time_is_up() {
        let mut gate = Gate::new(&GateConfig::default());
        let a = frame(0, 0);
        assert!(!gate.skips(&a, 64, 36, 0), "the first frame is processed");
        assert!(gate.skips(&a, 64, 36, 100), "an identical frame skips");
        assert!(
            gate.skips(&frame(0, 1), 64, 36, 200),
            "sensor-level noise skips"
        );
        assert!(gate.last_difference() < 1.0);
        assert!(
            !gate.skips(&frame(5, 0), 64, 36, 300),
            "a moved view is processed"
        );
        assert!(gate.last_difference() > 10.0);
        // Compared with the last processed frame: the moved one is now the reference.
        assert!(gate.skips(&frame(5, 0), 64, 36, 400));
        // A long stop is looked at again after max_skip_s.
        assert!(!gate.skips(&frame(5, 0), 64, 36, 300 + 10_000));
        assert!(gate.skips(&frame(5, 0), 64, 36, 300 + 10_100));
    }

    #[test]
    fn off_and_bad_input_never_skip() {
        let mut off = Gate::new(&GateConfig {
            max_difference: 0.0,
            ..GateConfig::default()
        });
        let a = frame(0, 0);
        assert!(!off.skips(&a, 64, 36, 0));
        assert!(!off.skips(&a, 64, 36, 1));
        // A buffer of the wrong size is a zero grid, not a panic.
        let mut gate = Gate::new(&GateConfig::default());
        assert!(!gate.skips(&a[..10], 64, 36, 0));
    }

    #[test]
    fn bad_config_names_the_key() {
        let bad = GateConfig {
            max_difference: -1.0,
            ..GateConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "max_difference");
        let bad = GateConfig {
            max_skip_s: f64::NAN,
            ..GateConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "max_skip_s");
        assert!(GateConfig::default().validate().is_ok());
    }
}
