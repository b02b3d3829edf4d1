//! ONNX graph rewrites that let tract carry a symbolic input height and width through YOLOX
//! (`edgesieve convert`, [`crate::detect::nnef`]): each replaces an op whose tract translation
//! needs concrete sizes by ops computing the same thing that do not.

use std::path::Path;
use tract_core::internal::{bail, TractErrorContext};
use tract_core::prelude::*;
use tract_onnx::prelude::{InferenceFact, InferenceModel};
use tract_onnx::tract_hir::internal::{
    expand, AxisOp, Expansion, InferenceResult, ShapeFactoid, Solver, StaticName, TensorProxy,
};

/// Applies every rewrite to `model` (parsed from the ONNX file at `path`), whose input is
/// 1x3x`input_hw`.
pub(crate) fn rewrite(
    model: &mut InferenceModel,
    path: &Path,
    input_hw: &(TDim, TDim),
) -> TractResult<()> {
    downsample_strided_slices(model, input_hw)?;
    symbolic_space_to_depth(model, path)
}

/// Replaces each ONNX `SpaceToDepth` (the int8 model's Focus, models/quantize.py) by the same
/// reshapes and moves without tract's check that the height and width are multiples of the block
/// size, which needs them concrete (they are multiples: the input is counted in 32-pixel cells).
fn symbolic_space_to_depth(model: &mut InferenceModel, path: &Path) -> TractResult<()> {
    let ids: Vec<usize> = (0..model.nodes.len())
        .filter(|&id| model.node(id).op.name() == "SpaceToDepth")
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    // The block size is private to tract's op: read it from the file.
    let proto = tract_onnx::onnx().proto_model_for_path(path)?;
    let graph = proto.graph.as_ref().context("ONNX file without a graph")?;
    for id in ids {
        let name = &model.node(id).name;
        let node = graph
            .node
            .iter()
            .find(|n| n.op_type == "SpaceToDepth" && &n.name == name)
            .with_context(|| format!("SpaceToDepth node {name} not in the file"))?;
        let blocksize = node.get_attr_opt::<i64>("blocksize")?.unwrap_or(2);
        let blocksize = usize::try_from(blocksize).context("negative blocksize")?;
        model.node_mut(id).op = expand(SpaceToDepth { blocksize });
    }
    Ok(())
}

/// ONNX `SpaceToDepth` (DCR order), as tract-onnx 0.23 builds it, for symbolic sizes.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct SpaceToDepth {
    blocksize: usize,
}

impl Expansion for SpaceToDepth {
    fn name(&self) -> StaticName {
        "SpaceToDepth".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() != 1 || outputs.len() != 1 {
            bail!("SpaceToDepth takes one input and gives one output");
        }
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].shape, move |s, ishape| {
            let b = self.blocksize;
            let oshape: TVec<TDim> = tvec!(
                ishape[0].clone(),
                ishape[1].clone() * b * b,
                ishape[2].clone() / b as u64,
                ishape[3].clone() / b as u64,
            );
            s.equals(&outputs[0].shape, ShapeFactoid::from(oshape))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let shape = model.outlet_fact(inputs[0])?.shape.to_tvec();
        let b = self.blocksize;
        let b_dim = TDim::from(b as i64);
        let ops = [
            AxisOp::Reshape(
                2,
                tvec!(shape[2].clone(), shape[3].clone()),
                tvec!(
                    shape[2].clone() / b as u64,
                    b_dim.clone(),
                    shape[3].clone() / b as u64,
                    b_dim.clone()
                ),
            ),
            AxisOp::Move(3, 1),
            AxisOp::Move(5, 2),
            AxisOp::Reshape(
                1,
                tvec!(b_dim.clone(), b_dim, shape[1].clone()),
                tvec!(shape[1].clone() * b * b),
            ),
        ];
        let mut wire = tvec!(inputs[0]);
        for (ix, op) in ops.into_iter().enumerate() {
            wire = model.wire_node(format!("{prefix}.{ix}"), op, &wire)?;
        }
        Ok(wire)
    }
}

/// Replaces each ONNX `Slice` of the input that takes every n-th row or column from an offset
/// to the end (`x[..., 1::2, :]`, YOLOX's Focus) by tract's `Downsample` (the same selection)
/// followed by a `Slice` to the exact length: tract's slice cannot infer the length of a strided
/// slice of a symbolic dimension, and its downsample gives `(32·h + 1) / 2` where the rows number
/// `16·h`, which tract cannot equate. `input_hw` is the input's height and width; a strided
/// slice elsewhere in the graph is left as it is (tract then refuses the symbolic input).
fn downsample_strided_slices(
    model: &mut InferenceModel,
    input_hw: &(TDim, TDim),
) -> TractResult<()> {
    use tract_core::ops::array::Slice;
    use tract_core::ops::downsample::Downsample;
    use tract_onnx::tract_hir::infer::Factoid;
    use tract_onnx::tract_hir::ops::array::StridedSlice;
    let source = model.input_outlets()?.first().copied();
    // The length of `axis` of `outlet`, when it is the input's, through slices of other axes.
    let input_dim = |model: &InferenceModel, mut outlet: OutletId, axis: usize| loop {
        if Some(outlet) == source {
            return match axis {
                2 => Some(input_hw.0.clone()),
                3 => Some(input_hw.1.clone()),
                _ => None,
            };
        }
        let node = model.node(outlet.node);
        let other_axis = node
            .op_as::<Downsample>()
            .map(|op| op.axis != axis)
            .or_else(|| node.op_as::<Slice>().map(|op| op.axis != axis));
        if other_axis != Some(true) {
            return None;
        }
        outlet = node.inputs[0];
    };
    for id in 0..model.nodes.len() {
        let Some(op) = model.node(id).op_as::<StridedSlice>() else {
            continue;
        };
        let (Some(axes_ix), Some(steps_ix)) = (op.optional_axes_input, op.optional_steps_input)
        else {
            continue;
        };
        if op.begin_mask != 0 || op.end_mask != 0 || op.shrink_axis_mask != 0 {
            continue;
        }
        let inputs = model.node(id).inputs.clone();
        let scalar = |ix: usize| -> Option<i64> {
            let t = model
                .outlet_fact(*inputs.get(ix)?)
                .ok()?
                .value
                .concretize()?;
            let t = t.cast_to::<i64>().ok()?;
            match t.try_as_plain_ram().ok()?.as_slice::<i64>().ok()? {
                [v] => Some(*v),
                _ => None,
            }
        };
        let (Some(begin), Some(end), Some(axis), Some(step)) =
            (scalar(1), scalar(2), scalar(axes_ix), scalar(steps_ix))
        else {
            continue;
        };
        if step < 2 || !(0..step).contains(&begin) || end < i32::MAX as i64 {
            continue;
        }
        let axis = axis as usize;
        let Some(len) = input_dim(model, inputs[0], axis) else {
            continue;
        };
        for &input in &inputs[1..] {
            model.nodes[input.node].outputs[input.slot]
                .successors
                .retain(|s| s.node != id);
        }
        let successors = std::mem::take(&mut model.nodes[id].outputs[0].successors);
        let name = model.node(id).name.clone();
        let node = model.node_mut(id);
        node.inputs.truncate(1);
        node.op = Box::new(Downsample::new(axis, step as isize, begin as usize));
        let exact = Slice::new(axis, 0, len / step as u64);
        let exact = model.add_node(
            format!("{name}.exact"),
            exact,
            tvec!(InferenceFact::default()),
        )?;
        model.add_edge(OutletId::new(id, 0), InletId::new(exact, 0))?;
        for inlet in successors {
            model.add_edge(OutletId::new(exact, 0), inlet)?;
        }
    }
    Ok(())
}
