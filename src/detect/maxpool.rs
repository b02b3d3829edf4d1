//! The SPP max-pools as separable passes (issue 11: where a frame's time goes).
//!
//! After the SPPF rewrite (`detect/rewrite.rs`) YOLOX's pyramid pooling is three 5x5 max-pools
//! of stride 1 on the stride-32 map (8x13 cells at 416x256). tract runs a max-pool window by window
//! with a scalar loop: 2.1 M instructions each per frame on aarch64. A max over a 5x5 window is
//! the max over 5 rows of the max over 5 columns, so [`SeparableMaxPool`] takes the row maxima,
//! then the column maxima of those, each a plain element-wise `max` over shifted rows that the
//! compiler vectorises (NEON `fmaxnm`, SSE `maxps`): 8 maxima per output (4 per pass) instead
//! of 24, four at a time. A maximum is exact, so the values are tract's, bit for bit (the padding is −∞,
//! which no window's maximum can be: every window holds its centre).
//!
//! It replaces every max-pool the SPPF rewrite can chain (f32, NCHW, odd square window, stride
//! 1, centred padding, index output unused), on every target, before tract optimises the model.

use crate::detect::rewrite::{chainable_window, index_in_use};
use tract_core::internal::*;
use tract_core::ops::cnn::MaxPool;
use tract_core::ops::nn::DataFormat;

/// Replaces every max-pool [`SeparableMaxPool`] runs (see the module doc) by it. Returns how
/// many.
pub fn use_separable_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let Some(window) = chainable_window(pool) else {
            continue;
        };
        let input = model.outlet_fact(node.inputs[0])?;
        if pool.pool_spec.data_format != DataFormat::NCHW
            || input.datum_type != f32::datum_type()
            || !input.is_plain()
            || input.rank() != 4
            || node.inputs.len() != 1
            || index_in_use(model, node)
        {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let tap = patch.tap_model(model, node.inputs[0])?;
        let out = patch.wire_node(&node.name, SeparableMaxPool { window }, &[tap])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), out)?;
        patch.apply(model)?;
        replaced += 1;
    }
    // A pool read back from NNEF has an (unused) index output: the replaced nodes are dead now.
    model.compact()?;
    Ok(replaced)
}

/// A max-pool of stride 1 over a `window` x `window` square (odd), centred, NCHW f32, the
/// output the input's shape.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct SeparableMaxPool {
    window: usize,
}

impl Op for SeparableMaxPool {
    fn name(&self) -> StaticName {
        "SeparableMaxPool".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SeparableMaxPool {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[_, _, h, w] = input.shape() else {
            bail!(
                "SeparableMaxPool: input shape {:?}, not NCHW",
                input.shape()
            );
        };
        // SAFETY: every output element is written by `plane`.
        let mut output = unsafe { Tensor::uninitialized::<f32>(input.shape())? };
        if h > 0 && w > 0 {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut y = output.try_as_plain_ram_mut()?;
            let y = y.as_slice_mut::<f32>()?;
            let mut scratch = Scratch::new(h, w, self.window);
            for (xp, yp) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(h * w)) {
                plane(xp, yp, w, self.window, &mut scratch);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for SeparableMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `out[i] = max(out[i], v[i])`, element-wise: four at a time with NEON on aarch64 (the car's
/// size-optimised build, `--profile car-small`, does not vectorise loops: this one took 3.1 M
/// instructions a frame there, 0.7 M at opt-level 3), by the compiler's vectoriser elsewhere.
/// `f32::max` is IEEE maxNum, as `fmaxnm`: the same values either way.
fn max_into(out: &mut [f32], v: &[f32]) {
    let done = max_into_neon(out, v);
    for (o, v) in out[done..].iter_mut().zip(&v[done..]) {
        *o = o.max(*v);
    }
}

/// The first multiple of four elements of [`max_into`]; returns how many.
#[cfg(target_arch = "aarch64")]
fn max_into_neon(out: &mut [f32], v: &[f32]) -> usize {
    use std::arch::aarch64::{vld1q_f32, vmaxnmq_f32, vst1q_f32};
    let n = out.len().min(v.len()) / 4 * 4;
    for (o, v) in out[..n].chunks_exact_mut(4).zip(v[..n].chunks_exact(4)) {
        // SAFETY: reads the four f32 of `o` and of `v` and writes the four of `o`; NEON is part
        // of every aarch64 core.
        unsafe {
            vst1q_f32(
                o.as_mut_ptr(),
                vmaxnmq_f32(vld1q_f32(o.as_ptr()), vld1q_f32(v.as_ptr())),
            )
        }
    }
    n
}

#[cfg(not(target_arch = "aarch64"))]
fn max_into_neon(_out: &mut [f32], _v: &[f32]) -> usize {
    0
}

/// Scratch for one plane, reused from plane to plane: the plane inside `r` rows and columns of
/// −∞ on every side (rows of `stride`), and the two passes' maxima over it. Both passes run over
/// the whole padded plane as one flat array (a window that crosses a row's end only lands in
/// padding columns no output reads), so the loops are long enough to vectorise even for the
/// SPP's rows of 13.
struct Scratch {
    padded: Vec<f32>,
    rows: Vec<f32>,
    cols: Vec<f32>,
    stride: usize,
}

impl Scratch {
    fn new(h: usize, w: usize, window: usize) -> Scratch {
        let r = window / 2;
        let stride = w + 2 * r;
        let len = (h + 2 * r) * stride;
        Scratch {
            padded: vec![f32::NEG_INFINITY; len],
            rows: vec![f32::NEG_INFINITY; len],
            cols: vec![f32::NEG_INFINITY; len],
            stride,
        }
    }
}

/// One channel: `x` and `y` are planes of rows of `w`.
fn plane(x: &[f32], y: &mut [f32], w: usize, window: usize, s: &mut Scratch) {
    let (r, stride) = (window / 2, s.stride);
    for (iy, row) in x.chunks_exact(w).enumerate() {
        let at = (iy + r) * stride + r;
        s.padded[at..at + w].copy_from_slice(row);
    }
    // Row maxima: rows[i] = max of padded[i ..= i + 2r]; for padded cell (py, px) that is the
    // window centred on column px + r.
    let len = s.padded.len();
    let n = len - (window - 1);
    s.rows[..n].copy_from_slice(&s.padded[..n]);
    for d in 1..window {
        max_into(&mut s.rows[..n], &s.padded[d..d + n]);
    }
    // Column maxima of those: cols[i] = max of rows[i + d · stride], d in 0 ..= 2r: for cell
    // (py, px) the window centred on row py + r.
    let m = len - (window - 1) * stride;
    s.cols[..m].copy_from_slice(&s.rows[..m]);
    for d in 1..window {
        max_into(&mut s.cols[..m], &s.rows[d * stride..d * stride + m]);
    }
    // Output (oy, ox) is centred on padded cell (oy + r, ox + r): cols at (oy, ox).
    for (oy, out) in y.chunks_exact_mut(w).enumerate() {
        out.copy_from_slice(&s.cols[oy * stride..oy * stride + w]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    /// A model of one max-pool of `k` x `k`, stride 1, centred padding, on `c` x `h` x `w`.
    fn model(k: usize, c: usize, h: usize, w: usize) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, c, h, w])).unwrap();
        let half = k / 2;
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![k, k],
            padding: PaddingSpec::Explicit(tvec![half, half], tvec![half, half]),
            dilations: None,
            strides: None,
            input_channels: c,
            output_channels: c,
        };
        let y = model
            .wire_node("pool", MaxPool::new(spec, None), &[x])
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    /// Bit for bit tract's max-pool, on small and odd sizes (windows larger than the plane
    /// included), with negative values (the padding must not win).
    #[test]
    fn is_tracts_max_pool_bit_for_bit() {
        for (k, c, h, w) in [
            (5, 3, 8, 13),
            (5, 2, 1, 1),
            (3, 2, 4, 3),
            (9, 2, 5, 7),
            (5, 4, 2, 9),
        ] {
            let reference = model(k, c, h, w)
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let mut ours = model(k, c, h, w);
            assert_eq!(use_separable_max_pools(&mut ours).unwrap(), 1);
            let ours = ours.into_optimized().unwrap();
            assert!(ours.nodes().iter().any(|n| n.op_is::<SeparableMaxPool>()));
            assert!(!ours
                .nodes()
                .iter()
                .any(|n| n.op().name().contains("MaxPool") && !n.op_is::<SeparableMaxPool>()));
            let ours = ours.into_runnable().unwrap();
            let values: Vec<f32> = (0..c * h * w)
                .map(|i| ((i as f32) * 0.77).sin() - 2.0)
                .collect();
            let input = Tensor::from_shape(&[1, c, h, w], &values).unwrap();
            let a = reference.run(tvec!(input.clone().into_tvalue())).unwrap();
            let b = ours.run(tvec!(input.into_tvalue())).unwrap();
            assert_eq!(a[0], b[0], "{k}x{k} pool on {c}x{h}x{w}");
        }
    }
}
