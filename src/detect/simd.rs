//! What our 3x3 convolution kernels (`detect/stem.rs`, `detect/depthwise.rs`) share: which
//! convolutions they take and how they replace them, the check for the x86_64 instructions they
//! use, their operands as slices, and a per-thread scratch buffer for their padded copies.
//!
//! A padded copy of the stem's input is 1.4 MB at 416x256. Allocated afresh at every frame, it is
//! mapped afresh too where large allocations are (musl, the car's libc; glibc after it trims its
//! heap): hundreds of page faults per frame, which measured as the stem taking 2.9 ms instead of
//! 1.8 ms on x86_64. [`take_zeroed`] hands out this thread's buffer, its capacity kept from the
//! last frame, and [`give_back`] returns it: in steady state a frame allocates nothing for it. It
//! holds at most the largest copy one frame needs (a few MB at the largest input the manifest
//! allows), for as long as the thread lives.

use std::cell::RefCell;
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_core::ops::nn::DataFormat;

/// A convolution our 3x3 kernels can take: f32, NCHW of a concrete shape, OIHW weights that are
/// constant, a 3x3 window, no dilation, one pixel of zero padding on every side, a bias of one
/// value or one per output channel, no quantization.
pub(super) struct Conv3x3Of<'a> {
    pub conv: &'a Conv,
    /// The input's shape (N, C, H, W).
    pub shape: [usize; 4],
    /// The weights, `[O, I / group, 3, 3]` (checked by the caller).
    pub kernel: Arc<Tensor>,
    /// The stride, the same on both axes.
    pub stride: usize,
}

impl<'a> Conv3x3Of<'a> {
    /// `node`'s convolution, when it is one our kernels can take.
    pub fn at(model: &TypedModel, node: &'a TypedNode) -> TractResult<Option<Conv3x3Of<'a>>> {
        let Some(conv) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        if node.inputs.len() != 3 {
            return Ok(None);
        }
        let spec = &conv.pool_spec;
        let input = model.outlet_fact(node.inputs[0])?;
        let Some(&[n, c, h, w]) = input.shape.as_concrete() else {
            return Ok(None);
        };
        let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
        let padded_by_one = match &spec.padding {
            PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false) => {
                b.len() == 2 && a.len() == 2 && b.iter().chain(a.iter()).all(|&p| p == 1)
            }
            _ => false,
        };
        let stride = match spec.strides.as_ref().map(|s| s.as_slice()) {
            None | Some([1, 1]) => 1,
            Some([2, 2]) => 2,
            _ => return Ok(None),
        };
        let outputs = spec.output_channels;
        let fits = conv.q_params.is_none()
            && input.datum_type == f32::datum_type()
            && input.is_plain()
            && spec.data_format == DataFormat::NCHW
            && conv.kernel_fmt == KernelFormat::OIHW
            && c > 0
            && outputs > 0
            && spec.kernel_shape.as_slice() == [3, 3]
            && ones(&spec.dilations)
            && padded_by_one;
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
            || bias.datum_type != f32::datum_type()
            || !bias.is_plain()
            || !(bias_len == Some(outputs) || bias_len == Some(1))
        {
            return Ok(None);
        }
        Ok(Some(Conv3x3Of {
            conv,
            shape: [n, c, h, w],
            kernel,
            stride,
        }))
    }
}

/// Replaces every convolution of `model` that `make` gives an op for by that op, its inputs the
/// picture and the bias (the weights are the op's). Returns how many.
pub(super) fn replace_convs<O: TypedOp>(
    model: &mut TypedModel,
    make: impl Fn(Conv3x3Of) -> Option<O>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = Conv3x3Of::at(model, node)?.and_then(&make) else {
            continue;
        };
        let inputs = [node.inputs[0], node.inputs[2]];
        let patch = TypedModelPatch::replace_single_op(model, node, &inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Runs `f` on the values of an op's input, weights, bias (one value or one per output channel,
/// checked) and output, all f32.
pub(super) fn with_slices(
    op: &str,
    input: &Tensor,
    kernel: &Tensor,
    bias: &Tensor,
    output: &mut Tensor,
    f: impl FnOnce(&[f32], &[f32], &[f32], &mut [f32]) -> TractResult<()>,
) -> TractResult<()> {
    let outputs = output.shape().get(1).copied().unwrap_or(0);
    let x = input.try_as_plain_ram()?;
    let mut y = output.try_as_plain_ram_mut()?;
    let kernel = kernel.try_as_plain_ram()?;
    let bias = bias.try_as_plain_ram()?;
    let bias = bias.as_slice::<f32>()?;
    ensure!(
        bias.len() == 1 || bias.len() == outputs,
        "{op}: {} bias values for {outputs} channels",
        bias.len()
    );
    f(
        x.as_slice::<f32>()?,
        kernel.as_slice::<f32>()?,
        bias,
        y.as_slice_mut::<f32>()?,
    )
}

/// Whether this x86_64 CPU has AVX2 and FMA, which our x86_64 kernels use (std caches the
/// detection).
#[cfg(target_arch = "x86_64")]
pub(super) fn x86_fma() -> bool {
    std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `len` zeros, in this thread's scratch buffer when it is there (a nested caller gets a new
/// one).
pub(super) fn take_zeroed(len: usize) -> Vec<f32> {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// Returns `buf` to this thread for the next [`take_zeroed`] (the larger one stays when both are
/// out).
pub(super) fn give_back(buf: Vec<f32>) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if buf.capacity() > s.capacity() {
            *s = buf;
        }
    });
}

/// For the kernels' unit tests: a model of one convolution named "conv" of `c` channels to `o`
/// in `group` groups, 3x3, `stride`, one pixel of zero padding, on an input of `h` x `w`, with
/// weights and biases that differ from channel to channel.
#[cfg(test)]
pub(super) fn conv_model(
    c: usize,
    o: usize,
    group: usize,
    stride: usize,
    h: usize,
    w: usize,
) -> TypedModel {
    use tract_core::ops::cnn::PoolSpec;
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, c, h, w])).unwrap();
    let per_group = c / group;
    let weights: Vec<f32> = (0..o * per_group * 9)
        .map(|i| ((i as f32) * 0.61).sin())
        .collect();
    let kernel = Tensor::from_shape(&[o, per_group, 3, 3], &weights).unwrap();
    let k = model.add_const("k", kernel).unwrap();
    let bias: Vec<f32> = (0..o).map(|i| i as f32 * 0.1 - 0.3).collect();
    let b = model
        .add_const("b", Tensor::from_shape(&[o], &bias).unwrap())
        .unwrap();
    let spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec![3, 3],
        padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
        dilations: None,
        strides: Some(tvec![stride, stride]),
        input_channels: c,
        output_channels: o,
    };
    let conv = Conv::new(spec, KernelFormat::OIHW, group, None);
    let y = model.wire_node("conv", conv, &[x, k, b]).unwrap()[0];
    model.select_output_outlets(&[y]).unwrap();
    model
}

/// For the kernels' unit tests: optimises `reference` and `ours`, asserts that `ours` still holds
/// an `O` op, runs both on one input and asserts the same output shape and values within
/// `tolerance`.
#[cfg(test)]
pub(super) fn assert_same_as<O: Op>(
    reference: TypedModel,
    ours: TypedModel,
    input: Tensor,
    tolerance: f32,
    case: &str,
) {
    let ours = ours.into_optimized().unwrap();
    assert!(ours.nodes().iter().any(|n| n.op_is::<O>()), "{case}");
    let run = |m: TypedModel| {
        m.into_runnable()
            .unwrap()
            .run(tvec!(input.clone().into_tvalue()))
            .unwrap()
    };
    let (a, b) = (run(reference.into_optimized().unwrap()), run(ours));
    assert_eq!(a[0].shape(), b[0].shape(), "{case}");
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
    assert!(worst < tolerance, "{case}: largest difference {worst}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer comes back zeroed, whatever was left in it, and its memory is reused.
    #[test]
    fn reuses_the_buffer_zeroed() {
        let mut a = take_zeroed(1000);
        a.iter_mut().for_each(|v| *v = 7.0);
        let at = a.as_ptr();
        give_back(a);
        let b = take_zeroed(500);
        assert_eq!(b.as_ptr(), at);
        assert!(b.len() == 500 && b.iter().all(|&v| v == 0.0));
        // Taken twice at once: the second is a buffer of its own.
        let c = take_zeroed(10);
        assert_ne!(c.as_ptr(), at);
        give_back(c);
        give_back(b);
    }
}
