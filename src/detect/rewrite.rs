//! Exact graph rewrites that tract does not do itself, applied to the typed model before tract
//! optimises it (issue 11: where a frame's time goes).
//!
//! **SPP to SPPF.** YOLOX's spatial pyramid pooling max-pools one tensor three times side by
//! side, with 5x5, 9x9 and 13x13 windows (stride 1, "same" padding). tract runs each window
//! directly, so the 13x13 pool alone compares 169 values per output. A stride-1 max-pool with
//! window `a` followed by one with window `b` (both centred, padding never counted) is a max-pool
//! with window `a + b - 1`, so the 9x9 pool is a 5x5 pool of the 5x5 pool's output and the 13x13
//! a 5x5 pool of that: 75 comparisons per output instead of 275, the same values bit for bit (a
//! maximum is exact; the padded border is clipped the same way in both). This is the rewrite
//! YOLOv5 made by hand as SPPF.

use tract_core::internal::*;
use tract_core::ops::cnn::{MaxPool, PaddingSpec};

/// The window of a max-pool that the rewrite may chain: square, odd, stride 1, no dilation,
/// centred padding of `(k - 1) / 2` on every side (explicit, or "same", which is centred for an
/// odd window at stride 1). None otherwise. (Index outputs are checked by the caller: a pool
/// read back from NNEF has one, unused.)
pub(crate) fn chainable_window(pool: &MaxPool) -> Option<usize> {
    let spec = &pool.pool_spec;
    let k = *spec.kernel_shape.first()?;
    if k < 3 || k % 2 == 0 || spec.kernel_shape.iter().any(|&d| d != k) {
        return None;
    }
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&x| x == 1));
    if !ones(&spec.strides) || !ones(&spec.dilations) {
        return None;
    }
    let half = (k - 1) / 2;
    let centred = |before: &TVec<usize>, after: &TVec<usize>| {
        before.len() == spec.kernel_shape.len()
            && before.iter().chain(after.iter()).all(|&p| p == half)
            && after.len() == before.len()
    };
    match &spec.padding {
        PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false) => {
            centred(b, a).then_some(k)
        }
        PaddingSpec::SameUpper | PaddingSpec::SameLower => Some(k),
        _ => None,
    }
}

/// `pool` with a `k` x `k` window and centred padding, without index output.
fn with_window(pool: &MaxPool, k: usize) -> MaxPool {
    let mut pool = pool.clone();
    pool.with_index_outputs = None;
    let rank = pool.pool_spec.kernel_shape.len();
    let half: TVec<usize> = tvec![(k - 1) / 2; rank];
    pool.pool_spec.kernel_shape = tvec![k; rank];
    pool.pool_spec.padding = match &pool.pool_spec.padding {
        PaddingSpec::ExplicitOnnxPool(_, _, ceil) => {
            PaddingSpec::ExplicitOnnxPool(half.clone(), half, *ceil)
        }
        same @ (PaddingSpec::SameUpper | PaddingSpec::SameLower) => same.clone(),
        _ => PaddingSpec::Explicit(half.clone(), half),
    };
    pool
}

/// Whether a pool's index output (the second) is read, or is an output of the model.
pub(crate) fn index_in_use(model: &TypedModel, node: &TypedNode) -> bool {
    node.outputs.iter().enumerate().skip(1).any(|(slot, o)| {
        !o.successors.is_empty()
            || model
                .output_outlets()
                .is_ok_and(|outs| outs.contains(&OutletId::new(node.id, slot)))
    })
}

/// Rewrites every max-pool of window `k` whose input also feeds a max-pool of window `k - 4`
/// (both [`chainable_window`]) into a 5x5 max-pool of that pool's output. Returns how many were
/// rewritten. The model computes the same values.
pub fn cascade_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    let mut rewritten = 0;
    loop {
        // (window, node to rewrite, the smaller pool on the same input, new op), the largest
        // window first: 13 chains onto 9 while 9 still reads the input, then 9 onto 5.
        let mut found: Option<(usize, usize, usize, MaxPool)> = None;
        for node in model.nodes() {
            let Some(pool) = node.op_as::<MaxPool>() else {
                continue;
            };
            let Some(k) = chainable_window(pool) else {
                log::trace!("max-pool {} not chainable: {:?}", node.name, pool);
                continue;
            };
            if k < 9 || node.inputs.len() != 1 || index_in_use(model, node) {
                continue;
            }
            for succ in model.outlet_successors(node.inputs[0]) {
                if succ.node == node.id {
                    continue;
                }
                let other = model.node(succ.node);
                let Some(small) = other.op_as::<MaxPool>() else {
                    continue;
                };
                if chainable_window(small) == Some(k - 4)
                    && small.pool_spec.data_format == pool.pool_spec.data_format
                    && found.as_ref().is_none_or(|f| f.0 < k)
                {
                    found = Some((k, node.id, other.id, with_window(pool, 5)));
                }
            }
        }
        let Some((_, id, small, op)) = found else {
            return Ok(rewritten);
        };
        let name = model.node(id).name.clone();
        let mut patch = TypedModelPatch::default();
        let tap = patch.tap_model(model, OutletId::new(small, 0))?;
        let out = patch.wire_node(format!("{name}.cascaded"), op, &[tap])?;
        patch.shunt_outside(model, OutletId::new(id, 0), out[0])?;
        patch.apply(model)?;
        // The replaced node is left without successors: drop it (and any other dead node).
        model.compact()?;
        rewritten += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::PoolSpec;
    use tract_core::ops::nn::DataFormat;

    fn pool(k: usize, channels: usize) -> MaxPool {
        let half = (k - 1) / 2;
        MaxPool {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![k, k],
                padding: PaddingSpec::Explicit(tvec![half, half], tvec![half, half]),
                dilations: None,
                strides: None,
                input_channels: channels,
                output_channels: channels,
            },
            with_index_outputs: None,
        }
    }

    /// x -> max-pools 5, 9, 13 side by side, as in YOLOX's SPP.
    fn spp(h: usize, w: usize) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 4, h, w])).unwrap();
        let mut outs = tvec![];
        for k in [5, 9, 13] {
            outs.push(m.wire_node(format!("pool{k}"), pool(k, 4), &[x]).unwrap()[0]);
        }
        m.select_output_outlets(&outs).unwrap();
        m
    }

    fn run(model: TypedModel, input: &Tensor) -> TVec<TValue> {
        model
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(tvec![input.clone().into_tvalue()])
            .unwrap()
    }

    #[test]
    fn spp_becomes_sppf_with_the_same_values_bit_for_bit() {
        // Odd sizes smaller than the largest window: the borders are where the padding shows.
        for (h, w) in [(13, 21), (8, 5), (3, 3)] {
            let mut rng = crate::util::rng::SplitMix64::new((h * w) as u64);
            let data: Vec<f32> = (0..4 * h * w)
                .map(|_| (rng.next_f64() as f32 - 0.7) * 10.0)
                .collect();
            let input = Tensor::from_shape(&[1, 4, h, w], &data).unwrap();
            let original = spp(h, w);
            let mut rewritten = original.clone();
            assert_eq!(cascade_max_pools(&mut rewritten).unwrap(), 2);
            let windows: Vec<usize> = rewritten
                .nodes()
                .iter()
                .filter_map(|n| n.op_as::<MaxPool>())
                .map(|p| p.pool_spec.kernel_shape[0])
                .collect();
            assert_eq!(windows, [5, 5, 5], "{h}x{w}");
            let (a, b) = (run(original, &input), run(rewritten, &input));
            for (x, y) in a.iter().zip(&b) {
                let slice = |v: &TValue| {
                    v.try_as_plain_ram()
                        .and_then(|t| t.as_slice::<f32>())
                        .unwrap()
                        .to_vec()
                };
                let (x, y) = (slice(x), slice(y));
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{h}x{w}"
                );
            }
        }
    }

    #[test]
    fn pools_that_do_not_chain_are_left_alone() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 4, 9, 9])).unwrap();
        let mut strided = pool(9, 4);
        strided.pool_spec.strides = Some(tvec![2, 2]);
        let a = m.wire_node("pool5", pool(5, 4), &[x]).unwrap()[0];
        let b = m.wire_node("pool9s2", strided, &[x]).unwrap()[0];
        let c = m.wire_node("pool7", pool(7, 4), &[x]).unwrap()[0];
        m.select_output_outlets(&[a, b, c]).unwrap();
        assert_eq!(cascade_max_pools(&mut m).unwrap(), 0);
    }
}
