//! The 3x3 depthwise convolutions, vectorised (issue 11: where a frame's time goes).
//!
//! YOLOX downsamples with 3x3 depthwise convolutions of stride 2 (six of them). tract's NEON
//! depthwise kernel vectorises a stride of 2 only up to four taps; a 3x3 kernel has nine, so
//! tract runs these with a scalar loop. The first (`Conv_44`: 16 channels, 128x208 in at 416x256)
//! took 8.3 M instructions per frame on aarch64, more than the 24 stride-1 depthwise
//! convolutions together. [`Depthwise3x3`] copies each channel inside its zero padding and, on
//! aarch64, computes four output points at a time with `vld2q_f32` (one instruction loads four
//! stride-2 samples) and fused multiply-adds: the six take 4.2 M instead of 11.6 M
//! (`qemu-aarch64 -cpu neoverse-n1`, qemu-insncount, per node with `examples/kernels.rs
//! --marks`). The small ones alone are slower than tract's (0.4-0.8 M against 0.1-0.6 M: the
//! copy and the per-row work), but whether tract's path is fast depends on the layout it picks
//! for a node in the optimised model (two convolutions of the same shape took 0.28 M and
//! 2.16 M), so all six are replaced.
//!
//! On x86_64 tract's AVX depthwise kernel has no stride 2 either, and its stride 1 is slow: the
//! 30 took 4.4 ms of a ~20 ms frame (`examples/kernels --profile`, AMD EPYC). There the op runs
//! both strides, with AVX2 and FMA (checked at run time): stride 2 splits each padded row by
//! column parity so that every tap is a contiguous stream the compiler vectorises (see
//! [`Padded`]), stride 1 takes 8 points per 9 fused multiply-adds. The 30 take 1.4-1.7 ms.
//!
//! It replaces tract's convolution before tract optimises the model, for the convolutions it can
//! run (f32, NCHW, OIHW weights, 3x3, one group per channel, stride 1 or 2, no dilation, one
//! pixel of zero padding on every side, constant weights; `detect/simd.rs`): stride 2 on
//! aarch64, both strides on x86_64 with AVX2 and FMA. Elsewhere tract's own kernels stay
//! (armv7's NEON intrinsics are not stable Rust). The unit test compares the op with tract's on
//! x86_64 (the AVX2 loops and the portable ones); on aarch64 the same test checks the NEON one
//! (`scripts/test-arm` runs the library's tests under qemu).

use crate::detect::simd::{self, Conv3x3Of};
use crate::detect::stem;
use tract_core::internal::*;

/// Replaces every convolution of `model` that [`Depthwise3x3`] runs (see the module doc) by it,
/// where it is vectorised for the convolution's stride (see the module doc; everywhere with
/// `all_targets`, for the tests). Returns how many.
pub fn use_depthwise(model: &mut TypedModel, all_targets: bool) -> TractResult<usize> {
    simd::replace_convs(model, |conv| {
        Depthwise3x3::for_conv(conv).filter(|op| all_targets || vectorised(op.stride))
    })
}

/// Whether this machine runs [`Depthwise3x3`] of `stride` vectorised: stride 2 on aarch64,
/// both strides on x86_64 with AVX2 and FMA.
fn vectorised(stride: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = stride;
        simd::x86_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        stride == 2 && cfg!(target_arch = "aarch64")
    }
}

/// A depthwise 3x3 convolution of stride 1 or 2 with one pixel of zero padding, NCHW f32, its
/// weights (`[C, 1, 3, 3]`) held by the op. Inputs: the picture and the bias (`C` values or
/// one, any shape).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Depthwise3x3 {
    kernel: Arc<Tensor>,
    stride: usize,
    /// Runs the portable loops even where the vectorised ones run (their unit test; aarch64's
    /// stride 2 has no other).
    portable: bool,
}

impl Depthwise3x3 {
    /// The op for `conv`, when it is one this op runs: one group per channel, as many out as in.
    fn for_conv(conv: Conv3x3Of) -> Option<Depthwise3x3> {
        let channels = conv.shape[1];
        let fits = conv.conv.group == channels
            && conv.conv.pool_spec.output_channels == channels
            && conv.kernel.shape() == [channels, 1, 3, 3];
        fits.then_some(Depthwise3x3 {
            kernel: conv.kernel,
            stride: conv.stride,
            portable: false,
        })
    }
}

impl Op for Depthwise3x3 {
    fn name(&self) -> StaticName {
        "Depthwise3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("stride {}", self.stride)])
    }

    op_as_typed_op!();
}

impl EvalOp for Depthwise3x3 {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, bias) = args_2!(inputs);
        let &[n, c, h, w] = input.shape() else {
            bail!("Depthwise3x3: input shape {:?}, not NCHW", input.shape());
        };
        let (oh, ow) = match self.stride {
            1 => (h, w),
            _ => (out_len(h), out_len(w)),
        };
        // SAFETY: every output element is written by `plane` or `stride1_plane` (each row, each
        // block of points).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&[n, c, oh, ow])? };
        if h == 0 || w == 0 {
            return Ok(tvec!(output.into_tvalue()));
        }
        let (kernel, stride, vector) = (&self.kernel, self.stride, !self.portable);
        simd::with_slices(
            "Depthwise3x3",
            &input,
            kernel,
            &bias,
            &mut output,
            |x, k, bias, y| {
                let planes = x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow));
                let of = |ix: usize| -> TractResult<(&[f32; 9], f32)> {
                    let ch = ix % c;
                    let b = if bias.len() == 1 { bias[0] } else { bias[ch] };
                    Ok((k[ch * 9..ch * 9 + 9].try_into()?, b))
                };
                if stride == 1 {
                    let mut padded = stem::Padded::new(1, h, w);
                    for (ix, (xp, yp)) in planes.enumerate() {
                        let (k, b) = of(ix)?;
                        padded.fill(xp);
                        stride1_plane(&padded, k, b, yp, vector);
                    }
                    padded.done();
                } else {
                    let mut padded = Padded::new(h, w);
                    for (ix, (xp, yp)) in planes.enumerate() {
                        let (k, b) = of(ix)?;
                        padded.fill(xp, w);
                        plane(&padded, ow, k, b, yp, vector);
                    }
                    simd::give_back(padded.cells);
                }
                Ok(())
            },
        )?;
        Ok(tvec!(output.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for Depthwise3x3 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "Depthwise3x3: input of rank {}",
            shape.rank()
        );
        let mut dims: TVec<TDim> = shape.iter().cloned().collect();
        if self.stride == 2 {
            // (len - 1) / 2 + 1 points, which is len / 2 rounded up (0 for 0).
            dims[2] = dims[2].clone().divceil(2);
            dims[3] = dims[3].clone().divceil(2);
        }
        Ok(tvec!(f32::fact(dims)))
    }

    as_op!();
}

/// One channel of a stride-1 convolution, from its padded plane into the output plane `y` (the
/// input's size): 8 points at a time with AVX2 and FMA, else point by point.
/// `vector`: the AVX2 loop where the CPU has it.
fn stride1_plane(padded: &stem::Padded, k: &[f32; 9], bias: f32, y: &mut [f32], vector: bool) {
    #[cfg(target_arch = "x86_64")]
    let fma = vector && simd::x86_fma();
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    let w = padded.width();
    for (oy, out) in y.chunks_exact_mut(w).enumerate() {
        // Output row oy reads input rows oy - 1 ..= oy + 1: padded rows oy ..= oy + 2.
        let rows = [
            padded.row(0, oy),
            padded.row(0, oy + 1),
            padded.row(0, oy + 2),
        ];
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { stride1_row_fma(&rows, k, bias, out) };
            continue;
        }
        for (ox, o) in out.iter_mut().enumerate() {
            let mut sum = bias;
            for (ky, row) in rows.iter().enumerate() {
                let taps = &row[ox..ox + 3];
                sum += k[ky * 3] * taps[0] + k[ky * 3 + 1] * taps[1] + k[ky * 3 + 2] * taps[2];
            }
            *o = sum;
        }
    }
}

/// One output row of a stride-1 convolution, 8 points at a time: `rows` are its three padded
/// input rows, each at least `out.len()` rounded up to 8, plus 2, long.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn stride1_row_fma(rows: &[&[f32]; 3], k: &[f32; 9], bias: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = out.len();
    assert!(rows.iter().all(|r| r.len() >= n.next_multiple_of(8) + 2));
    let mut last = [0f32; 8];
    for x0 in (0..n).step_by(8) {
        // SAFETY: AVX2 and FMA are present (the caller's contract). Loads read 8 values from
        // column x0 + kx ≤ x0 + 2 of each row, so up to n rounded up to 8, plus 2 (asserted);
        // a whole block is stored into `out`, a partial one into `last`.
        unsafe {
            let mut acc = _mm256_set1_ps(bias);
            for (ky, row) in rows.iter().enumerate() {
                let p = row.as_ptr().add(x0);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(p), _mm256_set1_ps(k[ky * 3]), acc);
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(p.add(1)),
                    _mm256_set1_ps(k[ky * 3 + 1]),
                    acc,
                );
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(p.add(2)),
                    _mm256_set1_ps(k[ky * 3 + 2]),
                    acc,
                );
            }
            if x0 + 8 <= n {
                _mm256_storeu_ps(out.as_mut_ptr().add(x0), acc);
            } else {
                _mm256_storeu_ps(last.as_mut_ptr(), acc);
                out[x0..].copy_from_slice(&last[..n - x0]);
            }
        }
    }
}

/// Output points along an axis of `len` input points (3 taps, stride 2, one pixel of padding on
/// each side).
fn out_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len - 1) / 2 + 1
    }
}

/// The planes of one image laid out with their zero padding, reused from plane to plane: one
/// row and one column of zeros before the picture, zeros after it up to what the last block of
/// four output points reads. Only the picture's cells are written per plane, so the padding
/// stays zero.
#[cfg(target_arch = "aarch64")]
struct Padded {
    cells: Vec<f32>,
    /// Values per padded row.
    stride: usize,
}

#[cfg(target_arch = "aarch64")]
impl Padded {
    fn new(h: usize, w: usize) -> Padded {
        // Four points from `ox` read padded columns 2·ox .. 2·ox + 9 (kx ≤ 2, eight loaded).
        let stride = (2 * out_len(w).next_multiple_of(4) + 8).max(w + 2);
        Padded {
            cells: simd::take_zeroed((h + 2) * stride),
            stride,
        }
    }

    /// Copies the `h` x `w` plane `x` inside the padding.
    fn fill(&mut self, x: &[f32], w: usize) {
        for (iy, row) in x.chunks_exact(w).enumerate() {
            let at = (iy + 1) * self.stride + 1;
            self.cells[at..at + w].copy_from_slice(row);
        }
    }

    fn row(&self, py: usize) -> &[f32] {
        &self.cells[py * self.stride..(py + 1) * self.stride]
    }
}

/// One channel, from its padded plane into the output plane `y` (`ow` points per row).
/// (`vector`: aarch64 has only the NEON loop.)
#[cfg(target_arch = "aarch64")]
fn plane(padded: &Padded, ow: usize, k: &[f32; 9], bias: f32, y: &mut [f32], _vector: bool) {
    let blocks = ow / 4;
    for (oy, out) in y.chunks_exact_mut(ow).enumerate() {
        // Output row oy reads input rows 2·oy - 1 ..= 2·oy + 1: padded rows 2·oy ..= 2·oy + 2.
        let rows = [
            padded.row(2 * oy),
            padded.row(2 * oy + 1),
            padded.row(2 * oy + 2),
        ];
        row_blocks(&rows, blocks, k, bias, &mut out[..blocks * 4]);
        if blocks * 4 < ow {
            // The last points: a block computed aside (the padded rows are long enough).
            let mut last = [0f32; 4];
            let tail: [&[f32]; 3] = std::array::from_fn(|ky| &rows[ky][blocks * 8..]);
            row_blocks(&tail, 1, k, bias, &mut last);
            out[blocks * 4..].copy_from_slice(&last[..ow - blocks * 4]);
        }
    }
}

/// `blocks` blocks of four output points of a row into `out` (`4 · blocks` values): `rows` are
/// its three padded input rows from the first point's column, each at least `8 · blocks + 2`
/// long (four points read columns 0 .. 10 of their stretch).
#[cfg(target_arch = "aarch64")]
fn row_blocks(rows: &[&[f32]; 3], blocks: usize, k: &[f32; 9], bias: f32, out: &mut [f32]) {
    use std::arch::aarch64::*;
    assert!(out.len() >= 4 * blocks);
    assert!(rows.iter().all(|r| r.len() >= 8 * blocks + 2));
    // SAFETY: NEON is part of the aarch64 baseline. Block b reads eight values from columns
    // 8·b + kx (kx ≤ 2) of each row, so up to column 8·b + 9 < 8 · blocks + 2 (asserted), and
    // writes out[4·b .. 4·b + 4], inside `out` (asserted).
    unsafe {
        let biasv = vdupq_n_f32(bias);
        let (r0, r1, r2) = (rows[0].as_ptr(), rows[1].as_ptr(), rows[2].as_ptr());
        let o = out.as_mut_ptr();
        for b in 0..blocks {
            let (p0, p1, p2) = (r0.add(8 * b), r1.add(8 * b), r2.add(8 * b));
            // vld2q de-interleaves: .0 holds p[0], p[2], p[4], p[6], the stride-2 samples.
            let mut acc = vfmaq_n_f32(biasv, vld2q_f32(p0).0, k[0]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p0.add(1)).0, k[1]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p0.add(2)).0, k[2]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p1).0, k[3]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p1.add(1)).0, k[4]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p1.add(2)).0, k[5]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p2).0, k[6]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p2.add(1)).0, k[7]);
            acc = vfmaq_n_f32(acc, vld2q_f32(p2.add(2)).0, k[8]);
            vst1q_f32(o.add(4 * b), acc);
        }
    }
}

/// Elsewhere (x86_64; the portable code the unit test also checks), each padded row is split
/// into its even and its odd columns when the plane is copied in, so that the three taps of
/// output point `ox` in a row are `even[ox]`, `odd[ox]` and `even[ox + 1]`: contiguous streams
/// the compiler vectorises (8 points at a time with AVX2 and FMA, picked at run time). On
/// x86_64 with AVX-512 the six took 2.65 ms per frame in tract (its AVX depthwise kernel does
/// not cover stride 2) and take ~0.4 ms this way (`examples/kernels --profile`, 416x256).
#[cfg(not(target_arch = "aarch64"))]
struct Padded {
    /// Per padded row: `ow + 1` even columns, then `ow + 1` odd ones.
    cells: Vec<f32>,
    /// Output points per row.
    ow: usize,
}

#[cfg(not(target_arch = "aarch64"))]
impl Padded {
    fn new(h: usize, w: usize) -> Padded {
        let ow = out_len(w);
        Padded {
            cells: simd::take_zeroed((h + 2) * 2 * (ow + 1)),
            ow,
        }
    }

    /// Copies the `h` x `w` plane `x` inside the padding, split by column parity. Input column
    /// `ix` is padded column `ix + 1`: odd `ix` go to the even half, at `(ix + 1) / 2`; even
    /// `ix` to the odd half, at `ix / 2`. Even column 0 (the left padding) and, for an odd
    /// width, even column `ow` (the right padding) are never written and stay zero.
    fn fill(&mut self, x: &[f32], w: usize) {
        let half = self.ow + 1;
        for (iy, row) in x.chunks_exact(w).enumerate() {
            let at = (iy + 1) * 2 * half;
            let (even, odd) = self.cells[at..at + 2 * half].split_at_mut(half);
            let pairs = row.chunks_exact(2);
            if let [v] = pairs.remainder() {
                odd[w / 2] = *v;
            }
            for (pair, (o, e)) in pairs.zip(odd.iter_mut().zip(&mut even[1..])) {
                *o = pair[0];
                *e = pair[1];
            }
        }
    }

    /// Padded row `py`: its even and its odd columns.
    fn row(&self, py: usize) -> (&[f32], &[f32]) {
        let half = self.ow + 1;
        self.cells[py * 2 * half..(py + 1) * 2 * half].split_at(half)
    }
}

/// One channel, from its padded plane into the output plane `y` (`ow` points per row).
/// `vector`: the AVX2 loop where the CPU has it.
#[cfg(not(target_arch = "aarch64"))]
fn plane(padded: &Padded, ow: usize, k: &[f32; 9], bias: f32, y: &mut [f32], vector: bool) {
    #[cfg(target_arch = "x86_64")]
    let fma = vector && simd::x86_fma();
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    for (oy, out) in y.chunks_exact_mut(ow).enumerate() {
        // Output row oy reads input rows 2·oy - 1 ..= 2·oy + 1: padded rows 2·oy ..= 2·oy + 2.
        let rows = [
            padded.row(2 * oy),
            padded.row(2 * oy + 1),
            padded.row(2 * oy + 2),
        ];
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { row_fma(&rows, k, bias, out) };
            continue;
        }
        row_points::<false>(&rows, k, bias, out);
    }
}

/// [`row_points`] compiled for AVX2 with fused multiply-adds.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_fma(rows: &[(&[f32], &[f32]); 3], k: &[f32; 9], bias: f32, out: &mut [f32]) {
    row_points::<true>(rows, k, bias, out)
}

/// The points of one output row into `out`, from its three padded rows split by parity (each
/// half at least `out.len() + 1` long). With `FMA` every tap is a fused multiply-add (the
/// aarch64 kernel's rounding); without, a multiply and an add.
#[cfg(not(target_arch = "aarch64"))]
#[inline(always)]
fn row_points<const FMA: bool>(
    rows: &[(&[f32], &[f32]); 3],
    k: &[f32; 9],
    bias: f32,
    out: &mut [f32],
) {
    let n = out.len();
    let tap = |acc: f32, x: f32, k: f32| if FMA { x.mul_add(k, acc) } else { acc + x * k };
    // Exact lengths up front, so the loop below runs without bounds checks.
    let [(e0, o0), (e1, o1), (e2, o2)] = rows;
    let (e0, e1, e2) = (&e0[..n + 1], &e1[..n + 1], &e2[..n + 1]);
    let (o0, o1, o2) = (&o0[..n], &o1[..n], &o2[..n]);
    for (i, o) in out.iter_mut().enumerate() {
        let mut acc = tap(bias, e0[i], k[0]);
        acc = tap(acc, o0[i], k[1]);
        acc = tap(acc, e0[i + 1], k[2]);
        acc = tap(acc, e1[i], k[3]);
        acc = tap(acc, o1[i], k[4]);
        acc = tap(acc, e1[i + 1], k[5]);
        acc = tap(acc, e2[i], k[6]);
        acc = tap(acc, o2[i], k[7]);
        acc = tap(acc, e2[i + 1], k[8]);
        *o = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::{Conv, PaddingSpec};

    /// A model of one depthwise conv (`stride`, pad 1) of `c` channels on `h` x `w`.
    fn model(c: usize, h: usize, w: usize, stride: usize) -> TypedModel {
        simd::conv_model(c, c, c, stride, h, w)
    }

    /// The op gives tract's results (within float rounding) on even and odd sizes, narrow
    /// inputs (no vector block fits) and wide ones (the NEON path on aarch64, AVX2 on x86_64),
    /// for both strides, with the vectorised loops and the portable ones, and the model holds it
    /// in place of the convolution.
    #[test]
    fn matches_tract_on_every_border() {
        let shapes = [
            (3, 8, 8),
            (2, 7, 9),
            (4, 16, 40),
            (2, 5, 3),
            (1, 1, 1),
            (16, 12, 208),
        ];
        let cases = shapes
            .into_iter()
            .flat_map(|s| [(s, 1), (s, 2)])
            .flat_map(|c| [(c, false), (c, true)]);
        for (((c, h, w), stride), portable) in cases {
            let mut ours = model(c, h, w, stride);
            assert_eq!(use_depthwise(&mut ours, true).unwrap(), 1);
            for node in ours.nodes_mut() {
                if let Some(op) = node.op_as_mut::<Depthwise3x3>() {
                    op.portable = portable;
                }
            }
            let (oh, ow) = match stride {
                1 => (h, w),
                _ => (out_len(h), out_len(w)),
            };
            let case = format!("{c}x{h}x{w} stride {stride}, portable {portable}");
            let shape = ours
                .output_fact(0)
                .unwrap()
                .shape
                .as_concrete()
                .map(|s| s.to_vec());
            assert_eq!(shape, Some(vec![1, c, oh, ow]), "{case}");
            let values: Vec<f32> = (0..c * h * w).map(|i| ((i as f32) * 0.37).cos()).collect();
            let input = Tensor::from_shape(&[1, c, h, w], &values).unwrap();
            let reference = model(c, h, w, stride);
            simd::assert_same_as::<Depthwise3x3>(reference, ours, input, 1e-5, &case);
        }
    }

    /// Convolutions it does not run keep tract's op: stride 3, or padding other than one pixel.
    #[test]
    fn leaves_other_convolutions_alone() {
        let mut m = model(2, 8, 8, 2);
        let id = m.nodes().iter().find(|n| n.name == "conv").unwrap().id;
        let mut conv = m.node(id).op_as::<Conv>().unwrap().clone();
        conv.pool_spec.strides = Some(tvec![3, 3]);
        m.node_mut(id).op = Box::new(conv.clone());
        assert_eq!(use_depthwise(&mut m, true).unwrap(), 0);
        conv.pool_spec.strides = Some(tvec![2, 2]);
        conv.pool_spec.padding = PaddingSpec::Explicit(tvec![0, 0], tvec![1, 1]);
        m.node_mut(id).op = Box::new(conv);
        assert_eq!(use_depthwise(&mut m, true).unwrap(), 0);
    }

    /// Where it runs is per stride: stride 2 on aarch64 and x86_64 with AVX2 and FMA, stride 1
    /// on the latter only.
    #[test]
    fn replaces_per_target() {
        for stride in [1, 2] {
            let mut m = model(2, 8, 8, stride);
            let expected = if cfg!(target_arch = "x86_64") {
                vectorised(2)
            } else {
                stride == 2 && cfg!(target_arch = "aarch64")
            };
            assert_eq!(use_depthwise(&mut m, false).unwrap(), usize::from(expected));
        }
    }
}
