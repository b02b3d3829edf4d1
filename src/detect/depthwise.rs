//! The stride-2 3x3 depthwise convolution, vectorised for aarch64 (issue 11: where a frame's
//! time goes).
//!
//! YOLOX downsamples with 3x3 depthwise convolutions of stride 2 (six of them). tract's NEON
//! depthwise kernel vectorises a stride of 2 only up to four taps; a 3x3 kernel has nine, so
//! tract runs these with a scalar loop. The first (`Conv_44`: 16 channels, 128x208 in at 416x256)
//! took 8.3 M instructions per frame on aarch64, more than the 24 stride-1 depthwise
//! convolutions together. [`Stride2Depthwise`] copies each channel inside its zero padding and
//! computes four output points at a time with `vld2q_f32` (one instruction loads four stride-2
//! samples) and fused multiply-adds: the six take 4.2 M instead of 11.6 M (`qemu-aarch64 -cpu
//! neoverse-n1`, qemu-insncount, per node with `examples/kernels.rs --marks`). The small ones
//! alone are slower than tract's (0.4-0.8 M against 0.1-0.6 M: the copy and the per-row work),
//! but whether tract's path is fast depends on the layout it picks for a node in the optimised
//! model (two convolutions of the same shape took 0.28 M and 2.16 M), so all six are replaced.
//!
//! It replaces tract's convolution before tract optimises the model, for the convolutions it can
//! run (f32, NCHW, OIHW weights, 3x3, stride 2, no dilation, one pixel of zero padding on every
//! side, constant weights), on aarch64 only: elsewhere tract's own kernels stay (x86_64 is not
//! the car, and armv7's NEON intrinsics are not stable Rust). The portable `row_blocks` (every
//! target but aarch64) is what the unit test compares with tract's on x86_64; on aarch64 the
//! same test checks the NEON one (`scripts/test-arm` runs the library's tests under qemu).

use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_core::ops::nn::DataFormat;

/// Replaces every convolution of `model` that [`Stride2Depthwise`] runs (see the module doc)
/// by it, on aarch64 (or everywhere with `all_targets`, for the tests). Returns how many.
pub fn use_stride2_depthwise(model: &mut TypedModel, all_targets: bool) -> TractResult<usize> {
    if !(all_targets || cfg!(target_arch = "aarch64")) {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = Stride2Depthwise::for_conv(model, node, conv)? else {
            continue;
        };
        let inputs = [node.inputs[0], node.inputs[2]];
        let patch = TypedModelPatch::replace_single_op(model, node, &inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A depthwise 3x3 convolution of stride 2 with one pixel of zero padding, NCHW f32, its
/// weights (`[C, 1, 3, 3]`) held by the op. Inputs: the picture and the bias (`C` values or
/// one, any shape).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Stride2Depthwise {
    kernel: Arc<Tensor>,
}

impl Stride2Depthwise {
    /// The op for `conv` (the op of `node`), when it is one this op runs.
    fn for_conv(
        model: &TypedModel,
        node: &TypedNode,
        conv: &Conv,
    ) -> TractResult<Option<Stride2Depthwise>> {
        let spec = &conv.pool_spec;
        let input = model.outlet_fact(node.inputs[0])?;

        let Some(shape) = input.shape.as_concrete() else {
            return Ok(None);
        };
        let channels = shape.get(1).copied().unwrap_or(0);
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
        let padded_by_one = match &spec.padding {
            PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false) => {
                b.len() == 2 && b.iter().chain(a.iter()).all(|&p| p == 1) && a.len() == 2
            }
            _ => false,
        };
        let fits = conv.q_params.is_none()
            && input.datum_type == f32::datum_type()
            && input.is_plain()
            && shape.len() == 4
            && spec.data_format == DataFormat::NCHW
            && conv.kernel_fmt == KernelFormat::OIHW
            && channels > 0
            && conv.group == channels
            && spec.output_channels == channels
            && spec.kernel_shape.as_slice() == [3, 3]
            && spec
                .strides
                .as_ref()
                .is_some_and(|s| s.as_slice() == [2, 2])
            && ones(&spec.dilations)
            && padded_by_one
            && node.inputs.len() == 3;
        if !fits {
            return Ok(None);
        }
        let Some(kernel) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
            return Ok(None);
        };
        let bias = model.outlet_fact(node.inputs[2])?;
        let bias_len = bias
            .shape
            .as_concrete()
            .map(|s| s.iter().product::<usize>());
        if kernel.datum_type() != f32::datum_type()
            || !kernel.is_plain()
            || kernel.shape() != [channels, 1, 3, 3]
            || bias.datum_type != f32::datum_type()
            || !bias.is_plain()
            || !(bias_len == Some(channels) || bias_len == Some(1))
        {
            return Ok(None);
        }
        Ok(Some(Stride2Depthwise { kernel }))
    }
}

impl Op for Stride2Depthwise {
    fn name(&self) -> StaticName {
        "Stride2Depthwise".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Stride2Depthwise {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, bias) = args_2!(inputs);
        let &[n, c, h, w] = input.shape() else {
            bail!(
                "Stride2Depthwise: input shape {:?}, not NCHW",
                input.shape()
            );
        };
        let (oh, ow) = (out_len(h), out_len(w));
        // SAFETY: every output element is written by `plane` (each row, each block of points).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&[n, c, oh, ow])? };
        {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut y = output.try_as_plain_ram_mut()?;
            let y = y.as_slice_mut::<f32>()?;
            let kernel = self.kernel.try_as_plain_ram()?;
            let kernel = kernel.as_slice::<f32>()?;
            let bias = bias.try_as_plain_ram()?;
            let bias = bias.as_slice::<f32>()?;
            ensure!(
                bias.len() == 1 || bias.len() == c,
                "Stride2Depthwise: {} bias values for {c} channels",
                bias.len()
            );
            if h == 0 || w == 0 {
                return Ok(tvec!(output.into_tvalue()));
            }
            let mut padded = Padded::new(h, w);
            let planes = x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow));
            for (ix, (xp, yp)) in planes.enumerate() {
                let ch = ix % c;
                let k: &[f32; 9] = kernel[ch * 9..ch * 9 + 9].try_into()?;
                let b = if bias.len() == 1 { bias[0] } else { bias[ch] };
                padded.fill(xp, w);
                plane(&padded, ow, k, b, yp);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for Stride2Depthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "Stride2Depthwise: input of rank {}",
            shape.rank()
        );
        // (len - 1) / 2 + 1 points, which is len / 2 rounded up (0 for 0).
        let mut dims: TVec<TDim> = shape.iter().cloned().collect();
        dims[2] = dims[2].clone().divceil(2);
        dims[3] = dims[3].clone().divceil(2);
        Ok(tvec!(f32::fact(dims)))
    }

    as_op!();
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
struct Padded {
    cells: Vec<f32>,
    /// Values per padded row.
    stride: usize,
}

impl Padded {
    fn new(h: usize, w: usize) -> Padded {
        // Four points from `ox` read padded columns 2·ox .. 2·ox + 9 (kx ≤ 2, eight loaded).
        let stride = (2 * out_len(w).next_multiple_of(4) + 8).max(w + 2);
        Padded {
            cells: vec![0.0; (h + 2) * stride],
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
fn plane(padded: &Padded, ow: usize, k: &[f32; 9], bias: f32, y: &mut [f32]) {
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

#[cfg(not(target_arch = "aarch64"))]
fn row_blocks(rows: &[&[f32]; 3], blocks: usize, k: &[f32; 9], bias: f32, out: &mut [f32]) {
    for (ox, o) in out[..4 * blocks].iter_mut().enumerate() {
        let mut sum = bias;
        for (ky, row) in rows.iter().enumerate() {
            let taps = &row[2 * ox..2 * ox + 3];
            sum += k[ky * 3] * taps[0] + k[ky * 3 + 1] * taps[1] + k[ky * 3 + 2] * taps[2];
        }
        *o = sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::PoolSpec;

    /// A model of one depthwise conv (stride 2, pad 1) on an input of `h` x `w`.
    fn model(c: usize, h: usize, w: usize) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, c, h, w])).unwrap();
        let weights: Vec<f32> = (0..c * 9).map(|i| ((i as f32) * 0.61).sin()).collect();
        let kernel = Tensor::from_shape(&[c, 1, 3, 3], &weights).unwrap();
        let k = model.add_const("k", kernel).unwrap();
        let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.3).collect();
        let b = model
            .add_const("b", Tensor::from_shape(&[c], &bias).unwrap())
            .unwrap();
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![3, 3],
            padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
            dilations: None,
            strides: Some(tvec![2, 2]),
            input_channels: c,
            output_channels: c,
        };
        let conv = Conv::new(spec, KernelFormat::OIHW, c, None);
        let y = model.wire_node("dw", conv, &[x, k, b]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    /// The op gives tract's results (within float rounding) on even and odd sizes, narrow
    /// inputs (no vector block fits) and wide ones (the NEON path on aarch64), and the model
    /// holds it in place of the convolution.
    #[test]
    fn matches_tract_on_every_border() {
        for (c, h, w) in [
            (3, 8, 8),
            (2, 7, 9),
            (4, 16, 40),
            (2, 5, 3),
            (1, 1, 1),
            (16, 12, 208),
        ] {
            let reference = model(c, h, w)
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let mut ours = model(c, h, w);
            assert_eq!(use_stride2_depthwise(&mut ours, true).unwrap(), 1);
            assert!(ours.nodes().iter().any(|n| n.op_is::<Stride2Depthwise>()));
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().any(|n| n.op_is::<Stride2Depthwise>()));
            let ours = ours.into_runnable().unwrap();
            let values: Vec<f32> = (0..c * h * w).map(|i| ((i as f32) * 0.37).cos()).collect();
            let input = Tensor::from_shape(&[1, c, h, w], &values).unwrap();
            let a = reference.run(tvec!(input.clone().into_tvalue())).unwrap();
            let b = ours.run(tvec!(input.into_tvalue())).unwrap();
            assert_eq!(a[0].shape(), b[0].shape(), "{c}x{h}x{w}");
            assert_eq!(b[0].shape(), &[1, c, out_len(h), out_len(w)]);
            let (a, b) = (
                a[0].try_as_plain_ram().unwrap(),
                b[0].try_as_plain_ram().unwrap(),
            );
            let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{c}x{h}x{w}: largest difference {worst}");
        }
    }

    /// Convolutions it does not run keep tract's op: stride 1, or padding other than one pixel.
    #[test]
    fn leaves_other_convolutions_alone() {
        let mut m = model(2, 8, 8);
        let id = m.nodes().iter().find(|n| n.name == "dw").unwrap().id;
        let mut conv = m.node(id).op_as::<Conv>().unwrap().clone();
        conv.pool_spec.strides = Some(tvec![1, 1]);
        m.node_mut(id).op = Box::new(conv.clone());
        assert_eq!(use_stride2_depthwise(&mut m, true).unwrap(), 0);
        conv.pool_spec.strides = Some(tvec![2, 2]);
        conv.pool_spec.padding = PaddingSpec::Explicit(tvec![0, 0], tvec![1, 1]);
        m.node_mut(id).op = Box::new(conv);
        assert_eq!(use_stride2_depthwise(&mut m, true).unwrap(), 0);
    }
}
