//! The detector in NNEF, tract's own format: what the car loads (issue 11, "a lean device
//! runtime"). `models/fetch` converts the manifest's ONNX files once (`edgesieve convert`, a build
//! with the `onnx` feature); the device reads the result with `tract-nnef` and `tract-core` only,
//! skipping the ONNX parser and the type inference (hundreds of milliseconds at start-up and
//! megabytes of binary).
//!
//! The file holds the model parsed, checked against the manifest, reduced to the manifest's outputs
//! (the detections, then the embedding tensor) and decluttered, with the input's height and width
//! left as the symbols `h` and `w`: the loader binds them to the camera's input shape
//! ([`crate::detect::model::input_shape_for`]) and optimises, as it does for an ONNX file, so one
//! file serves every camera.
//!
//! tract's registries have no NNEF form for the int8 model's `QuantizeLinear`/`DequantizeLinear`
//! boundary ops (tract-core's `QuantizeLinearU8`/`I8` and `DequantizeLinearF32`) nor for the
//! 256-byte lookup tables its optimiser makes of a quantized activation (`LookupTable`, the int8
//! model's SiLUs); [`registry`] adds them (`edgesieve_quantize_linear_u8` etc., three scalars each;
//! `edgesieve_lookup_table`, the table as a u8 tensor), so the int8 file converts too and loads
//! to the same ops.

use std::path::Path;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::quant::{
    lookup_table, quantize_linear_i8, quantize_linear_u8, DequantizeLinearF32, LookupTable,
    QuantizeLinearI8, QuantizeLinearU8,
};
use tract_nnef::internal::*;

/// Names of the symbols of the input's height and width in the NNEF files, counted in cells of
/// the manifest's largest stride
/// ([`Manifest::largest_stride`](crate::detect::manifest::Manifest::largest_stride)): the input
/// is 1x3x(32·h)x(32·w) for YOLOX.
pub const HEIGHT_SYMBOL: &str = "h";
pub const WIDTH_SYMBOL: &str = "w";

/// Model property of the NNEF files: the input height and width the ONNX file declared.
pub const DECLARED_INPUT_HW: &str = "edgesieve.declared_input_hw";

/// Model property of the NNEF files: how `edgesieve convert` laid the graph out, [`LAYOUT`].
pub const LAYOUT_PROPERTY: &str = "edgesieve.nnef_layout";

/// The layout `edgesieve convert` writes: the graph tract decluttered, its einsums as
/// `tract_core_einsum` (`Nnef::keeping_einsum`, patches/tract-nnef/PATCH.md). Files from
/// before it wrote matmul-like einsums as NNEF `matmul` between reshapes, which tract has to
/// declutter back at every load: they load the same model, in more instructions
/// (`detect::optimise`). models/fetch rebuilds a file without this value (it looks for the
/// property's text in the archive's `graph.nnef`).
pub const LAYOUT: &str = "einsum-1";

/// Model property of an NNEF file that computes in half precision (`edgesieve convert
/// --precision f16`), value [`HALF`]: its weights and ops are f16 but for the few ops that stay
/// f32 (`detect::half`), its input and outputs f32. A file without it computes in the precision
/// of its ONNX file.
pub const PRECISION_PROPERTY: &str = "edgesieve.precision";

/// The value of [`PRECISION_PROPERTY`] in a half-precision file.
pub const HALF: &str = "f16";

/// Whether `model`, read from an NNEF file, says it computes in half precision
/// ([`PRECISION_PROPERTY`]).
pub fn is_half(model: &TypedModel) -> bool {
    string_property(model, PRECISION_PROPERTY).as_deref() == Some(HALF)
}

/// The text of `model`'s string property `key`, if it has one.
pub fn string_property(model: &TypedModel, key: &str) -> Option<String> {
    model.properties.get(key).and_then(|t| {
        t.try_as_plain_ram()
            .ok()?
            .to_scalar::<String>()
            .ok()
            .cloned()
    })
}

/// Whether `path` names an NNEF model (`.nnef.tar` or `.nnef` directory) rather than ONNX.
pub fn is_nnef(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".nnef.tar") || n.ends_with(".nnef"))
}

/// The NNEF reader the detector loads its model with: the ops of the shipped detectors' files
/// (YOLOX-nano fp32 and int8 as `edgesieve convert` writes them) and edgesieve's quantization
/// boundary ops ([`registry`]), not every op tract knows.
///
/// Why: tract-nnef's default reader registers every tract-core op (scans, recurrent cells,
/// scatter and gather, FFTs, reductions, comparisons...), which makes all their code reachable,
/// so the linker keeps it. Registering only what the detectors use is what lets the car's
/// build drop it: aarch64 musl, `--profile car --no-default-features`, stripped, 12.38 MiB ->
/// 10.30 MiB. A model with another op is refused at load with tract's "No definition for
/// operator" naming it ([`crate::detect::model::Detector::load`] adds which reader this is);
/// add its registration here. `edgesieve convert` writes with tract's full registry
/// ([`writer`]).
pub fn framework() -> tract_nnef::framework::Nnef {
    use tract_core::ops::{math, nn};
    use tract_nnef::ops::core as core_ops;
    use tract_nnef::ops::nnef::deser;
    use tract_nnef::resource::{DatLoader, GraphNnefLoader, GraphQuantLoader, ResourceLoader};

    // NNEF's standard primitives the files use, declared as tract-nnef declares them (their
    // parameters from its stdlib), and the stdlib's fragments they use (NNEF text: max_pool in
    // terms of max_pool_with_index).
    let mut stdlib = stdlib_fragments();
    let mut standard = Registry::new("tract_nnef");
    let primitives: [(&str, ToTract); 11] = [
        ("external", deser::external),
        ("variable", deser::variable),
        ("reshape", deser::reshape),
        ("transpose", deser::transpose),
        ("concat", deser::concat),
        ("squeeze", deser::squeeze),
        ("unsqueeze", deser::unsqueeze),
        ("matmul", deser::matmul),
        ("conv", deser::conv),
        ("max_pool_with_index", deser::max_pool_with_index),
        ("slice", deser::slice),
    ];
    for (id, func) in primitives {
        if let Some(pos) = stdlib.iter().position(|f| f.decl.id.0 == id) {
            let decl = stdlib.remove(pos).decl;
            standard.register_primitive(id, &decl.parameters, &decl.results, func);
        }
    }
    // Shape arithmetic (`64 * (h * w)`) and the detector's own adds and activations.
    standard.register_binary("add", &math::Add {});
    standard.register_binary("sub", &math::Sub {});
    standard.register_binary("mul", &math::Mul {});
    standard.register_binary("div", &math::Div {});
    standard.register_binary("min", &math::Min {});
    standard.register_binary("max", &math::Max {});
    standard.register_unit_element_wise("sigmoid", &nn::Sigmoid {});
    for frag in stdlib {
        if frag.body.is_some() {
            standard.register_fragment(frag);
        }
    }
    // tract-core's ops the files use: tract_core_cast, _downsample, _silu, _external, the
    // int8 model's _einsum_q and _gather, quantized convolutions and products, resize.
    let mut core = Registry::new("tract_core");
    core_ops::cast::register(&mut core);
    core_ops::downsample::register(&mut core);
    core_ops::einsum::register(&mut core);
    core_ops::gather::register(&mut core);
    core_ops::matmul::register(&mut core);
    core_ops::qconv::register(&mut core);
    core_ops::qmatmul::register(&mut core);
    core_ops::resize::register(&mut core);
    core_ops::silu::register(&mut core);
    core_ops::source::register(&mut core);
    tract_nnef::framework::Nnef {
        // Read by tract-nnef's writer only (ops/nnef/ser.rs); this reader writes nothing.
        stdlib: Vec::new(),
        registries: vec![standard, core, registry()],
        resource_loaders: vec![
            GraphNnefLoader.into_boxed(),
            DatLoader.into_boxed(),
            GraphQuantLoader.into_boxed(),
        ],
        allow_extended_identifier_syntax: false,
        extern_all_constants: false,
        bound_symbols: vec![],
        einsum_as_matmul: true,
    }
}

/// The fragments of NNEF's stdlib that [`framework`] uses: the declarations of the primitives
/// it registers and the one fragment with a body the files invoke (`max_pool`;
/// `nearest_upsample` is tract-core's, registered after and so asked first).
const STDLIB_USED: [&str; 12] = [
    "external",
    "variable",
    "reshape",
    "transpose",
    "concat",
    "squeeze",
    "unsqueeze",
    "matmul",
    "conv",
    "max_pool_with_index",
    "slice",
    "max_pool",
];

/// [`STDLIB_USED`], parsed from tract-nnef's stdlib text (the file its `framework::stdlib`
/// parses whole: 105 fragments for these 12, ~6 M instructions at every start; tract's own
/// reader parses it twice).
fn stdlib_fragments() -> Vec<tract_nnef::ast::FragmentDef> {
    // The tract-nnef this crate builds with (Cargo.toml's [patch]); without the patch, the same
    // file of the registry's tract-nnef 0.23.9.
    const TEXT: &str = include_str!("../../patches/tract-nnef/stdlib.nnef");
    let mut picked = String::new();
    for chunk in TEXT.split("\nfragment ").skip(1) {
        let name = chunk
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next();
        if name.is_some_and(|n| STDLIB_USED.contains(&n)) {
            picked.push_str("fragment ");
            picked.push_str(chunk);
            picked.push('\n');
        }
    }
    // The text is tract-nnef's, compiled in: it parses (a unit test holds it).
    tract_nnef::ast::parse::parse_fragments(&picked).expect("tract-nnef's stdlib parses")
}

/// tract's full NNEF framework with edgesieve's quantization boundary ops: what `edgesieve
/// convert` writes with (its serialisers).
#[cfg(feature = "onnx")]
pub fn writer() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef()
        .with_registry(registry())
        .keeping_einsum()
}

/// NNEF forms of the ops tract's own registries do not serialise: the (de)quantization at the
/// edges of the int8 model's quantized regions.
pub fn registry() -> Registry {
    let mut r = Registry::new("edgesieve_quant")
        .with_doc("edgesieve: tract-core's QuantizeLinearU8/I8 and DequantizeLinearF32");
    let q_params = || {
        vec![
            TypeName::Scalar.tensor().named("x"),
            TypeName::Scalar.named("scale"),
            TypeName::Integer.named("zero_point"),
        ]
    };
    r.register_element_wise(
        "edgesieve_quantize_linear_u8",
        TypeId::of::<QuantizeLinearU8>(),
        Box::new(ser_quantize_u8),
        q_params(),
        de_quantize_u8,
    );
    r.register_element_wise(
        "edgesieve_quantize_linear_i8",
        TypeId::of::<QuantizeLinearI8>(),
        Box::new(ser_quantize_i8),
        q_params(),
        de_quantize_i8,
    );
    r.register_element_wise(
        "edgesieve_lookup_table",
        TypeId::of::<LookupTable>(),
        Box::new(ser_lookup_table),
        vec![
            TypeName::Scalar.tensor().named("x"),
            TypeName::Integer.tensor().named("table"),
        ],
        de_lookup_table,
    );
    r.register_dumper(ser_dequantize);
    r.register_primitive(
        "edgesieve_dequantize_linear_f32",
        &q_params(),
        &[("y", TypeName::Scalar.tensor())],
        de_dequantize,
    );
    r
}

fn quant_invocation(
    ast: &IntoAst,
    node: &TypedNode,
    id: &str,
    scale: f32,
    zero_point: i64,
) -> TractResult<Option<Arc<RValue>>> {
    let x = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(
        id,
        &[x],
        &[
            ("scale", numeric(scale)),
            ("zero_point", numeric(zero_point)),
        ],
    )))
}

fn ser_quantize_u8(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = node
        .op_as::<ElementWiseOp>()
        .and_then(|op| op.0.downcast_ref::<QuantizeLinearU8>())
        .context("not a QuantizeLinearU8")?;
    quant_invocation(
        ast,
        node,
        "edgesieve_quantize_linear_u8",
        op.scale,
        op.zero_point.into(),
    )
}

fn ser_quantize_i8(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = node
        .op_as::<ElementWiseOp>()
        .and_then(|op| op.0.downcast_ref::<QuantizeLinearI8>())
        .context("not a QuantizeLinearI8")?;
    quant_invocation(
        ast,
        node,
        "edgesieve_quantize_linear_i8",
        op.scale,
        op.zero_point.into(),
    )
}

fn ser_dequantize(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &DequantizeLinearF32,
) -> TractResult<Option<Arc<RValue>>> {
    quant_invocation(
        ast,
        node,
        "edgesieve_dequantize_linear_f32",
        op.scale,
        op.zero_point.into(),
    )
}

fn ser_lookup_table(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = node
        .op_as::<ElementWiseOp>()
        .and_then(|op| op.0.downcast_ref::<LookupTable>())
        .context("not a LookupTable")?;
    let x = ast.mapping[&node.inputs[0]].clone();
    let table = rctensor1(op.table.table());
    let table = ast.konst(format!("{}.table", node.name), &table)?;
    Ok(Some(invocation("edgesieve_lookup_table", &[x, table], &[])))
}

fn de_lookup_table(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let x = invocation.named_arg_as(builder, "x")?;
    let table: OutletId = invocation.named_arg_as(builder, "table")?;
    let table = builder
        .model
        .outlet_fact(table)?
        .konst
        .clone()
        .context("lookup table is not a constant")?;
    let table = table.cast_to::<u8>()?;
    let table = table.try_as_plain_ram()?;
    let lut = tract_linalg::routines::lut_u8(table.as_slice::<u8>()?)?;
    builder.wire(lookup_table(lut), &[x])
}

fn quant_args(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<(OutletId, f32, i64)> {
    let x = invocation.named_arg_as(builder, "x")?;
    let scale = invocation.named_arg_as(builder, "scale")?;
    let zero_point = invocation.named_arg_as(builder, "zero_point")?;
    Ok((x, scale, zero_point))
}

fn de_quantize_u8(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let (x, scale, zp) = quant_args(builder, invocation)?;
    let zp = u8::try_from(zp).context("u8 zero point out of range")?;
    builder.wire(quantize_linear_u8(scale, zp), &[x])
}

fn de_quantize_i8(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let (x, scale, zp) = quant_args(builder, invocation)?;
    let zp = i8::try_from(zp).context("i8 zero point out of range")?;
    builder.wire(quantize_linear_i8(scale, zp), &[x])
}

fn de_dequantize(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let (x, scale, zp) = quant_args(builder, invocation)?;
    let zp = i32::try_from(zp).context("zero point out of range")?;
    builder.wire(DequantizeLinearF32::new(scale, zp), &[x])
}

/// Writes the NNEF form of the ONNX model at `onnx` to `out` (a `.nnef.tar`, uncompressed so the
/// device needs no gzip): parsed and checked as the detector does, reduced to the manifest's
/// outputs, the input's height and width left symbolic, decluttered; for `precision` f16 (from
/// the fp32 ONNX file) translated to half precision as the detector would at load
/// ([`PRECISION_PROPERTY`]). The same graph, weights and file times at every run, but not always
/// the same bytes: tract numbers the copies it makes of a node that feeds a split
/// (`Sigmoid_63_silu_1`, `_2`) in hash order, which varies between runs. Written beside `out`
/// and renamed into place.
#[cfg(feature = "onnx")]
pub fn convert(
    manifest: &crate::detect::manifest::Manifest,
    onnx: &Path,
    out: &Path,
    precision: crate::detect::manifest::Precision,
) -> Result<(), crate::detect::model::DetectorError> {
    use crate::detect::model::{load_err, onnx_model, DetectorError};
    use tract_onnx::prelude::InferenceModelExt;
    if !onnx.is_file() {
        return Err(DetectorError::MissingModel {
            path: onnx.to_path_buf(),
        });
    }
    let convert_err = |e: &dyn std::fmt::Display| DetectorError::Convert {
        path: out.to_path_buf(),
        message: format!("{e:#}"),
    };
    let mut model = onnx_model(manifest, onnx, None)?
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| load_err(onnx, format!("{e:#}")))?;
    if precision.resolved() == crate::detect::manifest::Precision::F16 {
        // What the detector does at load to an fp32 file it runs in f16, in the same order
        // (detect::model, optimized_model_with): the SPP max-pools cascaded, then the
        // translation (detect::half). Done here, a start skips both.
        crate::detect::rewrite::cascade_max_pools(&mut model)
            .and_then(|_| crate::detect::half::to_half(&mut model))
            .map_err(|e| load_err(onnx, format!("{e:#}")))?;
        model
            .properties
            .insert(PRECISION_PROPERTY.into(), rctensor0(HALF.to_string()));
    }
    // The input size the ONNX file declares (onnx_model checked it is the manifest's): the
    // symbolic file no longer says it, and the loader refuses a manifest it does not fit.
    let (h, w) = (manifest.input.height as i64, manifest.input.width as i64);
    model
        .properties
        .insert(DECLARED_INPUT_HW.into(), rctensor1(&[h, w]));
    model
        .properties
        .insert(LAYOUT_PROPERTY.into(), rctensor0(LAYOUT.to_string()));
    let mut part = out.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let file = std::fs::File::create(&part).map_err(|e| convert_err(&e))?;
    let written = writer()
        .write_to_tar_with_config(&model, std::io::BufWriter::new(file), false, true)
        .map_err(|e| convert_err(&e))
        .and_then(|w| w.into_inner().map_err(|e| convert_err(&e.into_error())))
        .and_then(|f| f.sync_all().map_err(|e| convert_err(&e)))
        .and_then(|()| std::fs::rename(&part, out).map_err(|e| convert_err(&e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fragment the reader uses is found in the stdlib text, once, and no other.
    #[test]
    fn the_reader_parses_the_stdlib_fragments_it_uses() {
        let fragments = stdlib_fragments();
        let mut names: Vec<&str> = fragments.iter().map(|f| f.decl.id.0.as_str()).collect();
        names.sort_unstable();
        let mut want = STDLIB_USED.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
        let with_body: Vec<_> = fragments.iter().filter(|f| f.body.is_some()).collect();
        assert_eq!(with_body.len(), 2, "max_pool and max_pool_with_index");
    }

    /// A one-op NNEF graph in a fresh `.nnef` directory.
    fn graph_with(op: &str) -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("edgesieve-nnef-{}-{n}.nnef", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("graph.nnef"),
            format!(
                "version 1.0;\n\ngraph g(input) -> (output)\n{{\n  input = external<scalar>(shape = [1, 4]);\n  output = {op}(input);\n}}\n"
            ),
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_reader_loads_the_detector_ops_and_names_an_op_it_does_not_know() {
        let known = graph_with("sigmoid");
        let model = framework().model_for_path(&known);
        std::fs::remove_dir_all(&known).unwrap();
        assert_eq!(model.unwrap().nodes.len(), 2);

        // tanh is an NNEF standard op, but no shipped detector uses it.
        let unknown = graph_with("tanh");
        let err = framework().model_for_path(&unknown).unwrap_err();
        std::fs::remove_dir_all(&unknown).unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("No definition for operator") && msg.contains("tanh"),
            "{msg}"
        );
    }

    #[test]
    fn a_graph_with_a_syntax_error_is_refused_naming_the_line() {
        // The op's closing parenthesis is missing, on line 6 of the graph.
        let broken = graph_with("sigmoid(input");
        let err = framework().model_for_path(&broken).unwrap_err();
        std::fs::remove_dir_all(&broken).unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("NNEF syntax error at line 6") && msg.contains("sigmoid(input"),
            "{msg}"
        );
    }
}
