//! Letterbox resize of an RGB8 frame into the detector's planar float input.
//!
//! The frame is scaled to fit the model input keeping its aspect ratio, placed at the top-left
//! corner (as YOLOX was trained) and the rest is filled with the pad value. Sampling tables are
//! cached per frame size, so a stream of same-sized frames allocates nothing.

use crate::detect::manifest::{ChannelOrder, InputSpec};

/// How a frame was mapped into the model input; used to map boxes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Model pixels per frame pixel.
    pub scale: f32,
    /// Size of the resized frame inside the model input.
    pub resized_width: u32,
    pub resized_height: u32,
    pub frame_width: u32,
    pub frame_height: u32,
}

impl Letterbox {
    pub fn new(frame_width: u32, frame_height: u32, input_width: u32, input_height: u32) -> Self {
        // In f64 and truncated, as YOLOX's own (Python) preprocessing: in f32, 360 * 0.65 is
        // 233.99998 and would lose a row. Clamped so a tiny frame still has a pixel.
        let scale = (f64::from(input_width) / f64::from(frame_width))
            .min(f64::from(input_height) / f64::from(frame_height));
        let resized_width = ((f64::from(frame_width) * scale) as u32).clamp(1, input_width);
        let resized_height = ((f64::from(frame_height) * scale) as u32).clamp(1, input_height);
        Letterbox {
            scale: scale as f32,
            resized_width,
            resized_height,
            frame_width,
            frame_height,
        }
    }

    /// Maps a box from model-input pixels back to frame pixels, clipped to the frame.
    pub fn to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        let w = self.frame_width as f32;
        let h = self.frame_height as f32;
        [
            (b[0] / self.scale).clamp(0.0, w),
            (b[1] / self.scale).clamp(0.0, h),
            (b[2] / self.scale).clamp(0.0, w),
            (b[3] / self.scale).clamp(0.0, h),
        ]
    }
}

/// One axis of bilinear sampling: for each destination pixel, two source indices and the weight
/// of the second.
#[derive(Default)]
struct AxisTable {
    lo: Vec<u32>,
    hi: Vec<u32>,
    frac: Vec<f32>,
}

impl AxisTable {
    fn build(&mut self, src: u32, dst: u32) {
        self.lo.clear();
        self.hi.clear();
        self.frac.clear();
        let ratio = src as f32 / dst as f32;
        for d in 0..dst {
            // Half-pixel centres, as cv2.resize INTER_LINEAR.
            let s = ((d as f32 + 0.5) * ratio - 0.5).max(0.0);
            let lo = (s as u32).min(src - 1);
            let hi = (lo + 1).min(src - 1);
            self.lo.push(lo);
            self.hi.push(hi);
            self.frac.push(s - lo as f32);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PreprocessError {
    /// The RGB buffer does not hold width*height*3 bytes.
    BadFrame {
        width: u32,
        height: u32,
        bytes: usize,
    },
}

impl std::fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreprocessError::BadFrame {
                width,
                height,
                bytes,
            } => write!(
                f,
                "frame of {width}x{height} should hold {} RGB bytes, has {bytes}",
                *width as usize * *height as usize * 3
            ),
        }
    }
}

impl std::error::Error for PreprocessError {}

/// Letterboxes frames into a planar (CHW) f32 buffer, reusing its sampling tables.
pub struct Preprocessor {
    spec: InputSpec,
    cached_size: (u32, u32),
    letterbox: Letterbox,
    xs: AxisTable,
    ys: AxisTable,
    /// Two source rows resized horizontally, planar (the frame's R, G and B runs of the resized
    /// width), and which source row each holds this frame: an output row blends two source rows,
    /// and consecutive output rows often share one.
    rows: [Vec<f32>; 2],
    row_of: [Option<u32>; 2],
}

impl Preprocessor {
    pub fn new(spec: InputSpec) -> Self {
        Preprocessor {
            letterbox: Letterbox::new(1, 1, spec.width, spec.height),
            spec,
            cached_size: (0, 0),
            xs: AxisTable::default(),
            ys: AxisTable::default(),
            rows: [Vec::new(), Vec::new()],
            row_of: [None; 2],
        }
    }

    /// Number of f32 values of the model input.
    pub fn input_len(&self) -> usize {
        3 * self.spec.width as usize * self.spec.height as usize
    }

    /// Fills `out` (length `input_len()`) with the letterboxed frame and returns the mapping.
    pub fn run(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
            return Err(PreprocessError::BadFrame {
                width,
                height,
                bytes: rgb.len(),
            });
        }
        assert_eq!(
            out.len(),
            self.input_len(),
            "input buffer of the wrong size"
        );
        if self.cached_size != (width, height) {
            self.letterbox = Letterbox::new(width, height, self.spec.width, self.spec.height);
            self.xs.build(width, self.letterbox.resized_width);
            self.ys.build(height, self.letterbox.resized_height);
            for row in &mut self.rows {
                row.resize(self.letterbox.resized_width as usize * 3, 0.0);
            }
            self.cached_size = (width, height);
        }
        self.row_of = [None; 2];
        let in_w = self.spec.width as usize;
        let plane = in_w * self.spec.height as usize;
        let rw = self.letterbox.resized_width as usize;
        let rh = self.ys.lo.len();
        // Plane index of the frame's R, G and B channels.
        let planes = match self.spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        // The padding, right of the picture and below it (the picture is written over the rest).
        let pad = self.spec.pad_value * self.spec.scale;
        for p in out.chunks_exact_mut(plane) {
            for row in p[..rh * in_w].chunks_exact_mut(in_w) {
                row[rw..].fill(pad);
            }
            p[rh * in_w..].fill(pad);
        }
        let scale = self.spec.scale;
        let stride = width as usize * 3;
        for dy in 0..rh {
            let (y0, y1, fy) = (self.ys.lo[dy], self.ys.hi[dy], self.ys.frac[dy]);
            let top = self.resized_row(rgb, stride, y0, None);
            let bottom = self.resized_row(rgb, stride, y1, Some(top));
            let base = dy * in_w;
            for (c, &p) in planes.iter().enumerate() {
                let t = &self.rows[top][c * rw..][..rw];
                let b = &self.rows[bottom][c * rw..][..rw];
                let dst = &mut out[p * plane + base..][..rw];
                for ((d, &t), &b) in dst.iter_mut().zip(t).zip(b) {
                    *d = (t + (b - t) * fy) * scale;
                }
            }
        }
        Ok(self.letterbox)
    }

    /// The slot of `self.rows` holding source row `y` resized horizontally, computed into a slot
    /// other than `keep` when it is not there yet (rows come in increasing order, so the slot of
    /// the lower row is the one to reuse).
    fn resized_row(&mut self, rgb: &[u8], stride: usize, y: u32, keep: Option<usize>) -> usize {
        if let Some(slot) = self.row_of.iter().position(|&r| r == Some(y)) {
            return slot;
        }
        let slot = match keep {
            Some(k) => 1 - k,
            None => match self.row_of {
                [None, _] => 0,
                [_, None] => 1,
                [a, b] => usize::from(b < a),
            },
        };
        self.row_of[slot] = Some(y);
        let src = &rgb[y as usize * stride..][..stride];
        let rw = self.xs.lo.len();
        let (r, gb) = self.rows[slot].split_at_mut(rw);
        let (g, b) = gb.split_at_mut(rw);
        let xs = self.xs.lo.iter().zip(&self.xs.hi).zip(&self.xs.frac);
        for ((((&x0, &x1), &fx), r), (g, b)) in xs.zip(r).zip(g.iter_mut().zip(b)) {
            let (p, q) = (&src[x0 as usize * 3..][..3], &src[x1 as usize * 3..][..3]);
            let lerp = |c: usize| p[c] as f32 + (q[c] as f32 - p[c] as f32) * fx;
            (*r, *g, *b) = (lerp(0), lerp(1), lerp(2));
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(order: ChannelOrder) -> InputSpec {
        InputSpec {
            name: "images".into(),
            width: 8,
            height: 8,
            channel_order: order,
            pad_value: 114.0,
            scale: 1.0,
        }
    }

    #[test]
    fn letterbox_keeps_aspect_and_maps_back() {
        let lb = Letterbox::new(640, 360, 416, 416);
        assert_eq!(lb.scale, 0.65);
        assert_eq!((lb.resized_width, lb.resized_height), (416, 234));
        let b = lb.to_frame([65.0, 13.0, 130.0, 500.0]);
        assert_eq!(b, [100.0, 20.0, 200.0, 360.0]);
    }

    #[test]
    fn wide_frame_is_padded_below_in_bgr_planes() {
        // 4x2 frame, uniform colour (10, 20, 30) -> 8x4 region, rows 4..8 padded.
        let rgb: Vec<u8> = [10u8, 20, 30].repeat(8);
        let mut p = Preprocessor::new(spec(ChannelOrder::Bgr));
        let mut out = vec![0.0; p.input_len()];
        let lb = p.run(&rgb, 4, 2, &mut out).unwrap();
        assert_eq!((lb.resized_width, lb.resized_height), (8, 4));
        let plane = 64;
        // B plane first.
        assert_eq!(out[0], 30.0);
        assert_eq!(out[plane], 20.0);
        assert_eq!(out[2 * plane], 10.0);
        assert_eq!(out[3 * 8 + 7], 30.0);
        assert_eq!(out[4 * 8], 114.0);
        assert_eq!(out[2 * plane + 63], 114.0);
    }

    #[test]
    fn bilinear_interpolates_between_columns() {
        // 2x1 frame black|white, upscaled to 8x4: values rise monotonically left to right.
        let rgb = [0u8, 0, 0, 255, 255, 255];
        let mut p = Preprocessor::new(spec(ChannelOrder::Rgb));
        let mut out = vec![0.0; p.input_len()];
        p.run(&rgb, 2, 1, &mut out).unwrap();
        let row = &out[0..8];
        assert_eq!(row[0], 0.0);
        assert_eq!(row[7], 255.0);
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
        assert!(row[3] > 0.0 && row[3] < 255.0);
    }

    #[test]
    fn short_buffer_is_an_error() {
        let mut p = Preprocessor::new(spec(ChannelOrder::Rgb));
        let mut out = vec![0.0; p.input_len()];
        let err = p.run(&[0u8; 5], 2, 1, &mut out).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::BadFrame {
                width: 2,
                height: 1,
                bytes: 5
            }
        );
    }
}
