//! The stem convolution, direct (issue 11: tract / onnxruntime on x86_64).
//!
//! YOLOX's first convolution takes the 12 channels of the space-to-depth picture to 16 with a
//! 3x3 kernel of stride 1 (208x128 points at 416x256: 46 M multiply-adds, 7% of the model's).
//! tract runs it as a matrix product over a lazily gathered im2col (m 16, k 108, n 26,624) after
//! a padding copy: on x86_64 with AVX-512 that took 2.77 ms + 0.27 ms of a 20 ms frame
//! (`examples/kernels --profile`), the slowest node by far: gathering 108 values for each of
//! 26,624 points costs more than multiplying them. [`Conv3x3`] copies the input once inside its
//! zero padding, then for each output row, each pair of output channels and each run of 32
//! points sums the 108 taps in 8 AVX2 registers with fused multiply-adds (picked at run time),
//! every tap a contiguous stretch of a padded input row: 1.35-1.8 ms. Four channels by 24 points
//! in 12 registers measured slower (1.65 against 1.36 ms, alternating runs).
//!
//! It replaces, before tract optimises the model, the convolutions it runs: f32, NCHW, OIHW
//! weights, 3x3, stride 1, no dilation, one pixel of zero padding on every side, one group, at
//! most [`MAX_INPUT_CHANNELS`] input channels (where im2col is cheap next to the product, tract's
//! route is the better one), constant weights; on x86_64 with AVX2 and FMA only. On aarch64
//! tract's im2col and NEON product run the stem in 22.5 M instructions per frame against the
//! 11.5 M fused multiply-adds it needs at four lanes, so little is left to win there and the
//! car's arithmetic stays what its parity test holds.

use crate::detect::simd::{self, Conv3x3Of};
use tract_core::internal::*;

/// The most input channels a convolution [`Conv3x3`] replaces may have.
pub const MAX_INPUT_CHANNELS: usize = 16;

/// Output points computed together along a row.
const RUN: usize = 32;

/// Output channels computed together (they share every input load).
const GROUP: usize = 2;

/// Replaces every convolution of `model` that [`Conv3x3`] runs (see the module doc) by it,
/// where it is vectorised (x86_64 with AVX2 and FMA; everywhere with `all_targets`, for the
/// tests). Returns how many.
pub fn use_direct_stem(model: &mut TypedModel, all_targets: bool) -> TractResult<usize> {
    if !(all_targets || vectorised()) {
        return Ok(0);
    }
    simd::replace_convs(model, Conv3x3::for_conv)
}

/// Whether this machine runs [`Conv3x3`] vectorised: x86_64 with AVX2 and FMA.
fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::x86_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A 3x3 convolution of stride 1 with one pixel of zero padding, NCHW f32, its weights
/// (`[O, I, 3, 3]`) held by the op. Inputs: the picture and the bias (`O` values or one).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Conv3x3 {
    kernel: Arc<Tensor>,
    /// Runs the portable loop even where the vectorised one runs (the unit test of the loop).
    portable: bool,
}

impl Conv3x3 {
    /// The op for `conv`, when it is one this op runs: stride 1, one group, few input channels.
    fn for_conv(conv: Conv3x3Of) -> Option<Conv3x3> {
        let (channels, outputs) = (conv.shape[1], conv.conv.pool_spec.output_channels);
        let fits = conv.stride == 1
            && conv.conv.group == 1
            && channels <= MAX_INPUT_CHANNELS
            && conv.kernel.shape() == [outputs, channels, 3, 3];
        fits.then_some(Conv3x3 {
            kernel: conv.kernel,
            portable: false,
        })
    }
}

impl Op for Conv3x3 {
    fn name(&self) -> StaticName {
        "Conv3x3".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3 {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, bias) = args_2!(inputs);
        let &[n, c, h, w] = input.shape() else {
            bail!("Conv3x3: input shape {:?}, not NCHW", input.shape());
        };
        let o = self.kernel.shape()[0];
        ensure!(
            self.kernel.shape()[1] == c,
            "Conv3x3: {c} input channels for a kernel of {:?}",
            self.kernel.shape()
        );
        // SAFETY: every output element is written by `image` (each row, each run of points).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&[n, o, h, w])? };
        if h == 0 || w == 0 {
            return Ok(tvec!(output.into_tvalue()));
        }
        let vector = !self.portable;
        simd::with_slices(
            "Conv3x3",
            &input,
            &self.kernel,
            &bias,
            &mut output,
            |x, k, b, y| {
                let mut padded = Padded::new(c, h, w);
                for (xi, yi) in x.chunks_exact(c * h * w).zip(y.chunks_exact_mut(o * h * w)) {
                    padded.fill(xi);
                    image(&padded, k, b, yi, vector);
                }
                padded.done();
                Ok(())
            },
        )?;
        Ok(tvec!(output.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for Conv3x3 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4, "Conv3x3: input of rank {}", shape.rank());
        let mut dims: TVec<TDim> = shape.iter().cloned().collect();
        dims[1] = self.kernel.shape()[0].into();
        Ok(tvec!(f32::fact(dims)))
    }

    as_op!();
}

/// One image's channels laid out with their zero padding: a row and a column of zeros before
/// the picture, zeros after it up to what the last run of points reads. The stride-1
/// depthwise convolution (`detect/depthwise.rs`) pads its planes one at a time with it.
pub(super) struct Padded {
    cells: Vec<f32>,
    channels: usize,
    h: usize,
    w: usize,
    /// Values per padded row: the runs rounded up, plus the two the taps reach beyond.
    stride: usize,
}

impl Padded {
    pub(super) fn new(channels: usize, h: usize, w: usize) -> Padded {
        let stride = w.next_multiple_of(RUN) + 2;
        Padded {
            cells: simd::take_zeroed(channels * (h + 2) * stride),
            channels,
            h,
            w,
            stride,
        }
    }

    /// Copies the image `x` (`channels` planes of `h` x `w`) inside the padding.
    pub(super) fn fill(&mut self, x: &[f32]) {
        let (h, w, stride) = (self.h, self.w, self.stride);
        for (ci, plane) in x.chunks_exact(h * w).enumerate() {
            for (iy, row) in plane.chunks_exact(w).enumerate() {
                let at = (ci * (h + 2) + iy + 1) * stride + 1;
                self.cells[at..at + w].copy_from_slice(row);
            }
        }
    }

    /// Gives the buffer back for the next frame (`detect/simd.rs`).
    pub(super) fn done(self) {
        simd::give_back(self.cells);
    }

    /// The picture's width.
    pub(super) fn width(&self) -> usize {
        self.w
    }

    /// Padded row `py` of channel `ci`: the picture's width rounded up to 32 values, plus 2.
    pub(super) fn row(&self, ci: usize, py: usize) -> &[f32] {
        let at = (ci * (self.h + 2) + py) * self.stride;
        &self.cells[at..at + self.stride]
    }
}

/// One image: every output channel's plane of `y` from the padded input.
/// `vector`: the AVX2 loop where the CPU has it (else the portable one).
fn image(padded: &Padded, kernel: &[f32], bias: &[f32], y: &mut [f32], vector: bool) {
    #[cfg(target_arch = "x86_64")]
    let fma = vector && simd::x86_fma();
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    let (h, w) = (padded.h, padded.w);
    let taps = padded.channels * 9;
    let outputs = y.len() / (h * w);
    let bias_of = |co: usize| if bias.len() == 1 { bias[0] } else { bias[co] };
    let mut co = 0;
    while co < outputs {
        let group = GROUP.min(outputs - co);
        let weights = &kernel[co * taps..(co + group) * taps];
        let biases: [f32; GROUP] = std::array::from_fn(|i| bias_of(co + i.min(group - 1)));
        let planes = &mut y[co * h * w..(co + group) * h * w];
        for oy in 0..h {
            #[cfg(target_arch = "x86_64")]
            if fma {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { out_row_fma(padded, weights, &biases, oy, planes) };
                continue;
            }
            out_row(padded, weights, &biases, oy, planes);
        }
        co += group;
    }
}

/// [`out_row`] with AVX2 and fused multiply-adds: each channel's run of [`RUN`] points is four
/// 8-lane accumulators, kept in registers through the taps; every tap loads four stretches of
/// a padded row (shared by the channels) and adds them times a broadcast weight.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn out_row_fma(
    padded: &Padded,
    weights: &[f32],
    biases: &[f32; GROUP],
    oy: usize,
    planes: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (h, w) = (padded.h, padded.w);
    let taps = padded.channels * 9;
    let group = weights.len() / taps;
    // The channels past a short last group repeat its last one (computed, not stored).
    let kernels: [&[f32]; GROUP] = std::array::from_fn(|g| {
        let g = g.min(group - 1);
        &weights[g * taps..(g + 1) * taps]
    });
    let mut run = [[0f32; RUN]; GROUP];
    for x0 in (0..w).step_by(RUN) {
        // SAFETY: AVX2 and FMA are present (the caller's contract). Every load reads 8 values
        // from `row[x0 + kx + 8·j ..]` with kx ≤ 2, 8·j < RUN: up to x0 + RUN + 2 ≤ the padded
        // row's stride (`Padded::new`), checked by the slice below; stores go to `run`.
        unsafe {
            let mut acc: [[__m256; RUN / 8]; GROUP] =
                std::array::from_fn(|g| [_mm256_set1_ps(biases[g]); RUN / 8]);
            for ci in 0..padded.channels {
                for ky in 0..3 {
                    // Output row oy reads input rows oy - 1 ..= oy + 1: padded rows oy ..= oy + 2.
                    let row = &padded.row(ci, oy + ky)[x0..x0 + RUN + 2];
                    let p = row.as_ptr();
                    for kx in 0..3 {
                        let at = ci * 9 + ky * 3 + kx;
                        let x: [__m256; RUN / 8] =
                            std::array::from_fn(|j| _mm256_loadu_ps(p.add(kx + 8 * j)));
                        for (a, k) in acc.iter_mut().zip(&kernels) {
                            let k = _mm256_set1_ps(k[at]);
                            for (a, &x) in a.iter_mut().zip(&x) {
                                *a = _mm256_fmadd_ps(x, k, *a);
                            }
                        }
                    }
                }
            }
            for (r, a) in run.iter_mut().zip(&acc) {
                for (j, &a) in a.iter().enumerate() {
                    _mm256_storeu_ps(r.as_mut_ptr().add(8 * j), a);
                }
            }
        }
        let len = RUN.min(w - x0);
        for (g, a) in run.iter().enumerate().take(group) {
            let at = g * h * w + oy * w + x0;
            planes[at..at + len].copy_from_slice(&a[..len]);
        }
    }
}

/// Output row `oy` of one or two output channels (`weights` holds their `[I, 3, 3]` kernels one
/// after the other, `planes` their output planes), point by point: the portable form of
/// [`out_row_fma`], which the unit test checks where AVX2 and FMA are missing.
fn out_row(padded: &Padded, weights: &[f32], biases: &[f32; GROUP], oy: usize, planes: &mut [f32]) {
    let (h, w) = (padded.h, padded.w);
    let taps = padded.channels * 9;
    for (g, kernel) in weights.chunks_exact(taps).enumerate() {
        let out = &mut planes[g * h * w + oy * w..g * h * w + (oy + 1) * w];
        for (ox, o) in out.iter_mut().enumerate() {
            let mut sum = biases[g];
            for ci in 0..padded.channels {
                for ky in 0..3 {
                    let row = &padded.row(ci, oy + ky)[ox..ox + 3];
                    let k = &kernel[ci * 9 + ky * 3..ci * 9 + ky * 3 + 3];
                    sum += row[0] * k[0] + row[1] * k[1] + row[2] * k[2];
                }
            }
            *o = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::Conv;

    /// A model of one 3x3 conv (stride 1, pad 1) of `c` channels to `o` on `h` x `w`.
    fn model(c: usize, o: usize, h: usize, w: usize) -> TypedModel {
        simd::conv_model(c, o, 1, 1, h, w)
    }

    /// The op gives tract's results (within float rounding) on runs that fill a row exactly,
    /// partial runs, one point, output channel counts that leave a short last group and the
    /// stem's own shape, with the vectorised loop and the portable one.
    #[test]
    fn matches_tract() {
        let shapes = [
            (12, 16, 6, 64),
            (3, 5, 7, 9),
            (1, 1, 1, 1),
            (2, 3, 4, 33),
            (12, 16, 5, 208),
        ];
        for ((c, o, h, w), portable) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
            let mut ours = model(c, o, h, w);
            assert_eq!(use_direct_stem(&mut ours, true).unwrap(), 1);
            for node in ours.nodes_mut() {
                if let Some(op) = node.op_as_mut::<Conv3x3>() {
                    op.portable = portable;
                }
            }
            let values: Vec<f32> = (0..c * h * w).map(|i| ((i as f32) * 0.37).cos()).collect();
            let input = Tensor::from_shape(&[1, c, h, w], &values).unwrap();
            let case = format!("{c}x{o}x{h}x{w}, portable {portable}");
            simd::assert_same_as::<Conv3x3>(model(c, o, h, w), ours, input, 1e-4, &case);
        }
    }

    /// Convolutions it does not run keep tract's op: stride 2, too many input channels.
    #[test]
    fn leaves_other_convolutions_alone() {
        let mut m = model(2, 4, 8, 8);
        let id = m.nodes().iter().find(|n| n.name == "conv").unwrap().id;
        let mut conv = m.node(id).op_as::<Conv>().unwrap().clone();
        conv.pool_spec.strides = Some(tvec![2, 2]);
        m.node_mut(id).op = Box::new(conv);
        assert_eq!(use_direct_stem(&mut m, true).unwrap(), 0);
        let mut m = model(MAX_INPUT_CHANNELS + 1, 4, 8, 8);
        assert_eq!(use_direct_stem(&mut m, true).unwrap(), 0);
    }
}
