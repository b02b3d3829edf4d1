//! Optimising a model read back from the detector's NNEF file (issue 11: start to ready).
//!
//! `edgesieve convert` (run by `models/fetch`) writes the NNEF file from a graph tract has already
//! decluttered. `TypedModel::into_optimized` declutters it all again anyway: a fixed point of nine
//! passes, every op's rules over the whole graph. [`read_back`] runs the two that can still change
//! a graph read back, the declutter rules of `EinSum`, `Cast` and `Identity` nodes and the
//! `ChangeAxes` pass, to their own fixed point, then tract's code generation as usual.
//!
//! Files of the older layout (before `nnef::LAYOUT`: matmul-like einsums written as NNEF
//! `matmul` between reshapes, a cast on each operand of a binary op) needed those two passes for
//! 1,142 patches at every load; a file of the current layout needs few. Either way the optimised
//! graph is the same node for node as after `into_optimized`, for fp32, int8 and f16, on x86_64
//! and on aarch64 (where the stride-2 depthwise rewrite changes what `ChangeAxes` does):
//! `detect::model`'s test `an_nnef_read_back_optimises_to_the_model_a_full_declutter_gives`, and
//! `examples/kernels.rs --nnef --dump`. aarch64, start to ready (`qemu-aarch64 -cpu
//! neoverse-n1`, qemu-insncount, input 416x256, car build), older layout: fp32 509 M -> 462 M,
//! int8 589 M -> 535 M, f16 579 M -> 556 M; instructions per frame unchanged.
//!
//! Skipping the declutter altogether on the older layout started in 299 M (fp32) but left a
//! layout that costs 9 M instructions more per frame on aarch64 (217 M against 208 M): not worth
//! it on a device that starts once and then runs for hours. An ONNX file is not written by us, so
//! it still gets tract's whole declutter.

use tract_core::internal::*;
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::identity::Identity;
use tract_core::optim::change_axes::ChangeAxes;
use tract_core::optim::{OpOptim, Optimizer, OptimizerSession};

/// `model`, read back from an NNEF file `edgesieve convert` wrote, decluttered where reading it
/// back left clutter (module doc) and optimised by tract.
pub fn read_back(mut model: TypedModel) -> TractResult<TypedModel> {
    let declutter = Optimizer {
        passes: vec![
            Box::new(OpOptim("read-back declutter", declutter_read_back, 0)),
            Box::<ChangeAxes>::default(),
        ],
        steps: None,
    };
    declutter.optimize(&mut model)?;
    model.optimize()?;
    Ok(model)
}

/// tract's declutter rules, on the ops an NNEF read-back leaves to declutter only.
fn declutter_read_back(
    op: &dyn TypedOp,
    session: &mut OptimizerSession,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    if node.op_is::<EinSum>() || node.op_is::<Cast>() || node.op_is::<Identity>() {
        op.declutter_with_session(session, model, node)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::model::NodeNames;

    fn names(model: &TypedModel) -> Vec<&str> {
        model.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// A patch that reads the model's output and wires `new` nodes (Identity) after it, in a
    /// chain, as the new output.
    fn after_output(model: &TypedModel, new: &[&str]) -> TractResult<TypedModelPatch> {
        let mut patch = TypedModelPatch::default();
        let output = model.output_outlets()?[0];
        let mut wire = patch.tap_model(model, output)?;
        for name in new {
            wire = patch.wire_node(*name, Identity, &[wire])?[0];
        }
        patch.shunt_outside(model, output, wire)?;
        Ok(patch)
    }

    /// tract-core patch 11 (PATCH.md): the optimiser applies its patches counting the model's
    /// node names, and compares names only where a count says another node may bear one. The
    /// nodes get the names tract's own `apply` gives them, collisions included.
    #[test]
    fn patches_applied_counting_names_name_nodes_as_apply_does() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2])).unwrap();
        let a = model.wire_node("a", Identity, &[x]).unwrap();
        let b = model.wire_node("b", Identity, &a).unwrap();
        model.select_output_outlets(&b).unwrap();
        let (mut plain, mut counted, mut counts) = (model.clone(), model, NodeNames::default());
        let steps: [fn(&TypedModel) -> TractResult<TypedModelPatch>; 4] = [
            // "a" replaced by a new "a": the old one, left with no reader, becomes a dummy.
            |m| {
                let a = m.node(1);
                TypedModelPatch::replace_single_op(m, a, &a.inputs, Identity)
            },
            // A second "b" beside the first: renamed.
            |m| after_output(m, &["b"]),
            // Two "c" in one patch (the second is "c#1" in the patch): both kept, one renamed.
            |m| after_output(m, &["c", "c"]),
            // The names of the new "a" and of the source.
            |m| after_output(m, &["a", "x"]),
        ];
        for step in steps {
            let patch = step(&plain).unwrap();
            patch.clone().apply(&mut plain).unwrap();
            patch.apply_counting(&mut counted, &mut counts).unwrap();
            assert_eq!(names(&plain), names(&counted));
        }
        let expected = "x Dummy-node-1 b a b.1 c c.1 a.1 x.1";
        assert_eq!(names(&counted).join(" "), expected);
    }
}
