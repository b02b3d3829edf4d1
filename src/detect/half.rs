//! Half precision (`detector.precision = "f16"`): the fp32 model computing in f16, for ARMv8.2
//! cores with half-precision arithmetic (FEAT_FP16: Cortex-A55, A75, A76, A78, Neoverse N1 and
//! later), where tract's f16 matrix kernels do 8 multiply-adds per instruction instead of 4.
//!
//! The model is the fp32 one translated by tract's `f32_to_f16` translator ([`to_half`]), once,
//! when `edgesieve convert --precision f16` writes the f16 NNEF file (manifest `f16_nnef`, what
//! f16 loads), or at every load from an fp32 file. The optimised model is the same node for node
//! either way (`detect::model`'s test); translating at start cost 16 M instructions on the car
//! (aarch64, 416x256, start to ready: 311 M from the fp32 file, 295 M from the f16 one). Three
//! kinds of op stay f32 because tract has no f16 kernel for them and runs them several times
//! slower than in f32 (instructions per frame at 416x256 under `qemu-aarch64 -cpu neoverse-n1`,
//! f16 ISA forced): the depthwise convolutions (562 M in f16, 22 M in f32), the nearest-neighbour
//! upsampling (13.4 M, 0.4 M) and the SPP max-pools. The input and outputs stay f32, so the
//! detector's buffers, preprocessing and decoding are those of the other precisions. What stays
//! f32 is written into the f16 file: a change to it (or to [`to_half`]) calls for a new
//! `nnef::LAYOUT`, so that models/fetch rebuilds the files.
//!
//! tract's `Cast` converts one element at a time (~11 instructions per element on aarch64); the
//! casts around the f32 islands are replaced by [`HalfCast`]: eight values per step with
//! `fcvtn`/`fcvtl` on aarch64 (the 63 casts: 42 M instructions per frame with tract's `Cast`,
//! 17 M with the `half` crate's slice conversion, ~4 M now), the `half` crate elsewhere.
//!
//! tract's f16 SiLU on aarch64 looks every value up in a table of its own results (the 104 SiLU
//! nodes, ~5.2 M values per frame at 416x256), one value per loop turn: five instructions per
//! value at opt-level "s". [`fast_silu`] replaces those nodes by [`HalfSilu`]: a table made by
//! running tract's op once on every f16 value at load, looked up eight values per loop turn. The
//! values are tract's, bit for bit.

use tract_core::floats::FloatPrecisionTranslator;
use tract_core::internal::translator::Translate;
use tract_core::internal::*;
use tract_core::ops::cast::{cast, Cast};
use tract_core::ops::cnn::{Conv, MaxPool};
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::konst::Const;
use tract_core::ops::nn::Silu;
use tract_core::ops::source::TypedSource;

/// Whether a node keeps computing in f32 in the half-precision model (see the module doc).
fn stays_f32(node: &TypedNode) -> bool {
    if node.op_as::<Conv>().is_some_and(|conv| conv.group > 1) || node.op_is::<MaxPool>() {
        return true;
    }
    // Resize / upsampling: the ONNX operator set's op (no tract-core type to match).
    let name = node.op().name();
    name.contains("Resize") || name.contains("Upsample")
}

/// Translates `model` (typed, not yet optimised) to compute in f16, but for the nodes that
/// [`stays_f32`], with its input and outputs still f32. Returns the number of nodes that
/// compute in f16.
pub fn to_half(model: &mut TypedModel) -> TractResult<usize> {
    // The nodes that stay f32, and the constants only they read (their weights keep f32).
    let mut keep: std::collections::HashSet<usize> = model
        .nodes()
        .iter()
        .filter(|n| stays_f32(n))
        .map(|n| n.id)
        .collect();
    for node in model.nodes() {
        let successors = node.outputs.iter().flat_map(|o| o.successors.iter());
        if node.op_is::<Const>()
            && successors.clone().next().is_some()
            && successors.clone().all(|inlet| keep.contains(&inlet.node))
        {
            keep.insert(node.id);
        }
    }
    let in_f16 = model.nodes().len() - keep.len();
    let translator = HalfTranslator {
        keep: keep.clone(),
        floats: FloatPrecisionTranslator::with_filter(
            f32::datum_type(),
            f16::datum_type(),
            move |node| !keep.contains(&node.id),
        ),
    };
    let mut half = translator.translate_model(model)?;
    // The translator makes the source f16: it becomes an f32 source followed by a cast.
    for input in half.input_outlets()?.to_vec() {
        let fact = half.outlet_fact(input)?.clone();
        if fact.datum_type != f16::datum_type() {
            continue;
        }
        let successors = half.outlet_successors(input).to_vec();
        let wide = f32::fact(fact.shape.clone());
        half.node_mut(input.node).op = Box::new(TypedSource::new(wide.clone()));
        half.set_outlet_fact(input, wide)?;
        let name = format!("{}.f16", half.node(input.node).name);
        let narrowed = half.wire_node(name, cast(f16::datum_type()), &[input])?[0];
        for inlet in successors {
            half.add_edge(narrowed, inlet)?;
        }
    }
    let mut outputs = half.output_outlets()?.to_vec();
    for output in outputs.iter_mut() {
        if half.outlet_fact(*output)?.datum_type == f16::datum_type() {
            let name = format!("{}.f32", half.node(output.node).name);
            *output = half.wire_node(name, cast(f32::datum_type()), &[*output])?[0];
        }
    }
    half.select_output_outlets(&outputs)?;
    *model = half;
    Ok(in_f16)
}

/// tract's `f32_to_f16` translator, but for the f32 constants it translates: they become f16
/// constants at once, narrowed by [`converted`], where tract's wires a `Cast` after each that its
/// optimiser then evaluates one element at a time (the weights: 12.8 M instructions of a 341 M
/// start on x86_64, and two nodes per weight tensor through every pass until then).
#[derive(Debug)]
struct HalfTranslator {
    /// The nodes that keep f32 ([`stays_f32`] and their constants).
    keep: std::collections::HashSet<usize>,
    floats: FloatPrecisionTranslator,
}

impl Translate<TypedFact, Box<dyn TypedOp>, TypedFact, Box<dyn TypedOp>> for HalfTranslator {
    fn translate_node(
        &self,
        source: &TypedModel,
        node: &TypedNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        if let Some(konst) = node.op_as::<Const>() {
            let val = konst.val();
            if !self.keep.contains(&node.id)
                && val.datum_type() == f32::datum_type()
                && val.is_plain_ram()
            {
                return Ok(tvec!(
                    target.add_const(&node.name, converted(val, f16::datum_type())?)?
                ));
            }
        }
        self.floats.translate_node(source, node, target, mapping)
    }
}

/// Replaces, in an optimised model, every `Cast` between f32 and f16 by [`HalfCast`]. Returns
/// how many.
pub fn fast_casts(model: &mut TypedModel) -> TractResult<usize> {
    let (f32_dt, f16_dt) = (f32::datum_type(), f16::datum_type());
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let (Some(op), Some(&input)) = (node.op_as::<Cast>(), node.inputs.first()) else {
            continue;
        };
        let to = op.to;
        let fact = model.outlet_fact(input)?;
        let from = fact.datum_type;
        if fact.is_plain() && ((from == f32_dt && to == f16_dt) || (from == f16_dt && to == f32_dt))
        {
            model.node_mut(id).op = Box::new(HalfCast { to });
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// A cast between f32 and f16 over the whole tensor at once ([`narrow`], [`widen`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct HalfCast {
    to: DatumType,
}

impl Op for HalfCast {
    fn name(&self) -> StaticName {
        "HalfCast".into()
    }

    op_as_typed_op!();
}

impl EvalOp for HalfCast {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(converted(&input, self.to)?.into_tvalue()))
    }

    op_out_of_plan!();
}

/// `input` (f32 or f16) converted to `to` (f16 or f32): [`narrow`] or [`widen`] over the whole
/// tensor. For [`HalfCast`] and for the weights [`HalfTranslator`] narrows.
fn converted(input: &Tensor, to: DatumType) -> TractResult<Tensor> {
    // SAFETY: every element is written below (the slices have the same length).
    let mut output = unsafe { Tensor::uninitialized_dt(to, input.shape())? };
    {
        let from = input.try_as_plain_ram()?;
        let mut out = output.try_as_plain_ram_mut()?;
        if to == f16::datum_type() {
            narrow(from.as_slice::<f32>()?, out.as_slice_mut::<f16>()?);
        } else {
            widen(from.as_slice::<f16>()?, out.as_slice_mut::<f32>()?);
        }
    }
    Ok(output)
}

/// f32 to f16 (round to nearest even), `to.len() == from.len()`: eight values per step with
/// `fcvtn`/`fcvtn2` on aarch64 (base ARMv8 SIMD: no FEAT_FP16 needed to convert), the `half`
/// crate for the rest and elsewhere.
fn narrow(from: &[f32], to: &mut [f16]) {
    use tract_core::internal::tract_data::half::slice::HalfFloatSliceExt;
    let done = narrow_neon(from, to);
    to[done..].convert_from_f32_slice(&from[done..]);
}

/// f16 to f32 (exact), `to.len() == from.len()`: as [`narrow`], with `fcvtl`/`fcvtl2`.
fn widen(from: &[f16], to: &mut [f32]) {
    use tract_core::internal::tract_data::half::slice::HalfFloatSliceExt;
    let done = widen_neon(from, to);
    from[done..].convert_to_f32_slice(&mut to[done..]);
}

/// Converts the first multiple of eight values; returns how many.
#[cfg(target_arch = "aarch64")]
fn narrow_neon(from: &[f32], to: &mut [f16]) -> usize {
    let n = from.len().min(to.len()) / 8 * 8;
    for (src, dst) in from[..n].chunks_exact(8).zip(to[..n].chunks_exact_mut(8)) {
        // SAFETY: reads the 8 f32 of `src` (32 bytes) and writes the 8 f16 of `dst` (16 bytes);
        // the instructions are base ARMv8 SIMD.
        unsafe {
            std::arch::asm!(
                "ldp {a:q}, {b:q}, [{src}]",
                "fcvtn {a:v}.4h, {a:v}.4s",
                "fcvtn2 {a:v}.8h, {b:v}.4s",
                "str {a:q}, [{dst}]",
                src = in(reg) src.as_ptr(),
                dst = in(reg) dst.as_mut_ptr(),
                a = out(vreg) _,
                b = out(vreg) _,
                options(nostack, preserves_flags),
            );
        }
    }
    n
}

#[cfg(target_arch = "aarch64")]
fn widen_neon(from: &[f16], to: &mut [f32]) -> usize {
    let n = from.len().min(to.len()) / 8 * 8;
    for (src, dst) in from[..n].chunks_exact(8).zip(to[..n].chunks_exact_mut(8)) {
        // SAFETY: reads the 8 f16 of `src` (16 bytes) and writes the 8 f32 of `dst` (32 bytes);
        // the instructions are base ARMv8 SIMD.
        unsafe {
            std::arch::asm!(
                "ldr {a:q}, [{src}]",
                "fcvtl2 {b:v}.4s, {a:v}.8h",
                "fcvtl {a:v}.4s, {a:v}.4h",
                "stp {a:q}, {b:q}, [{dst}]",
                src = in(reg) src.as_ptr(),
                dst = in(reg) dst.as_mut_ptr(),
                a = out(vreg) _,
                b = out(vreg) _,
                options(nostack, preserves_flags),
            );
        }
    }
    n
}

#[cfg(not(target_arch = "aarch64"))]
fn narrow_neon(_from: &[f32], _to: &mut [f16]) -> usize {
    0
}

#[cfg(not(target_arch = "aarch64"))]
fn widen_neon(_from: &[f16], _to: &mut [f32]) -> usize {
    0
}

impl TypedOp for HalfCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.to.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces, in an optimised model, every SiLU on f16 by [`HalfSilu`]. Returns how many.
pub fn fast_silu(model: &mut TypedModel) -> TractResult<usize> {
    let mut table: Option<Arc<SiluTable>> = None;
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(op) = node.op_as::<ElementWiseOp>() else {
            continue;
        };
        let Some(&input) = node.inputs.first() else {
            continue;
        };
        let fact = model.outlet_fact(input)?;
        if !op.0.is::<Silu>() || op.1.is_some() || fact.datum_type != f16::datum_type() {
            continue;
        }
        let table = match &table {
            Some(table) => table.clone(),
            None => table.insert(Arc::new(SiluTable::of(op)?)).clone(),
        };
        model.node_mut(id).op = Box::new(HalfSilu { table });
        replaced += 1;
    }
    Ok(replaced)
}

/// What an f16 SiLU op gives for each of the 65,536 f16 values, by bit pattern.
pub struct SiluTable(Box<[u16; 1 << 16]>);

impl SiluTable {
    /// `op` (tract's element-wise SiLU) run on every f16 value.
    fn of(op: &ElementWiseOp) -> TractResult<SiluTable> {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let mut values = tensor1(&all);
        op.0.eval_in_place(&mut values, None)?;
        let mut table = Box::new([0u16; 1 << 16]);
        let values = values.try_as_plain_ram()?;
        for (slot, value) in table.iter_mut().zip(values.as_slice::<f16>()?) {
            *slot = value.to_bits();
        }
        Ok(SiluTable(table))
    }

    /// Every value of `values` looked up in place, eight per loop turn: tract's loop (a lookup
    /// table too, on aarch64) is five instructions per value at opt-level "s".
    fn apply(&self, values: &mut [f16]) {
        let table = &*self.0;
        let look = |x: f16| f16::from_bits(table[usize::from(x.to_bits())]);
        let mut eights = values.chunks_exact_mut(8);
        for eight in &mut eights {
            let Ok([a, b, c, d, e, f, g, h]) = <&mut [f16; 8]>::try_from(eight) else {
                continue; // never: the chunks are eight long
            };
            let (y0, y1, y2, y3) = (look(*a), look(*b), look(*c), look(*d));
            let (y4, y5, y6, y7) = (look(*e), look(*f), look(*g), look(*h));
            (*a, *b, *c, *d, *e, *f, *g, *h) = (y0, y1, y2, y3, y4, y5, y6, y7);
        }
        for x in eights.into_remainder() {
            *x = look(*x);
        }
    }
}

impl std::fmt::Debug for SiluTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiluTable")
    }
}

/// tract's f16 SiLU, the same values (looked up in a table made by running tract's op on every
/// f16 value once, at load), in a loop that takes fewer instructions per value.
#[derive(Debug, Clone)]
pub struct HalfSilu {
    table: Arc<SiluTable>,
}

impl std::hash::Hash for HalfSilu {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "HalfSilu".hash(state);
    }
}

impl PartialEq for HalfSilu {
    fn eq(&self, other: &HalfSilu) -> bool {
        self.table.0 == other.table.0
    }
}

impl Eq for HalfSilu {}

impl Op for HalfSilu {
    fn name(&self) -> StaticName {
        "HalfSilu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for HalfSilu {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut values = args_1!(inputs).into_tensor();
        self.table
            .apply(values.try_as_plain_ram_mut()?.as_slice_mut::<f16>()?);
        Ok(tvec!(values.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for HalfSilu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].clone().without_value()))
    }

    as_op!();
}

/// Whether this core computes in f16 natively (as tract sees it: on aarch64 FEAT_FP16, from
/// `/proc/cpuinfo` or the core kind; `TRACT_CPU_ISA=+fp16` forces it, e.g. under qemu-user,
/// where the guest reads the host's `/proc/cpuinfo`).
pub fn native_f16() -> bool {
    tract_linalg::isa::native().has(tract_linalg::isa::Isa::Aarch64Fp16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The casts give the `half` crate's scalar conversions bit for bit (round to nearest even
    /// one way, exact the other), on lengths that are and are not multiples of eight, with
    /// values that round, overflow to infinity, underflow to subnormals and zero, and NaN.
    #[test]
    fn casts_are_the_scalar_conversions() {
        let mut values: Vec<f32> = (0..203).map(|i| ((i as f32) * 0.731).sin() * 3.7).collect();
        values.extend([
            65520.0,
            -1e9,
            1e-6,
            6e-8,
            1e-9,
            0.0,
            -0.0,
            1.0009765,
            f32::NAN,
        ]);
        for len in [0, 1, 7, 8, 9, 16, values.len()] {
            let src = &values[..len];
            let mut half = vec![f16::ZERO; len];
            narrow(src, &mut half);
            for (h, v) in half.iter().zip(src) {
                let want = f16::from_f32(*v);
                assert!(
                    h.to_bits() == want.to_bits() || (h.is_nan() && want.is_nan()),
                    "{v}"
                );
            }
            let mut back = vec![0f32; len];
            widen(&half, &mut back);
            for (b, h) in back.iter().zip(&half) {
                let want = h.to_f32();
                assert!(
                    b.to_bits() == want.to_bits() || (b.is_nan() && want.is_nan()),
                    "{h}"
                );
            }
        }
    }

    /// [`fast_silu`] replaces an f16 SiLU (only an f16 one) by [`HalfSilu`], which gives tract's
    /// values bit for bit: on every f16 value, on lengths that are and are not multiples of
    /// eight, and in a model run.
    #[test]
    fn half_silu_gives_tracts_values() {
        let silu = || ElementWiseOp(Box::new(Silu {}), None);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f16::fact([3, 7])).unwrap();
        let y = model.wire_node("silu", silu(), &[x]).unwrap();
        let w = model
            .wire_node("wide", cast(f32::datum_type()), &y)
            .unwrap();
        let z = model.wire_node("silu32", silu(), &w).unwrap();
        model.select_output_outlets(&[y[0], z[0]]).unwrap();
        let tract = model.clone().into_runnable().unwrap();
        assert_eq!(fast_silu(&mut model).unwrap(), 1, "the f16 SiLU only");
        assert!(model.node(1).op_is::<HalfSilu>());
        let ours = model.into_runnable().unwrap();
        let values: Vec<f16> = (0..21)
            .map(|i| f16::from_f32(i as f32 * 0.83 - 9.0))
            .collect();
        let input = || tvec!(Tensor::from_shape(&[3, 7], &values).unwrap().into_tvalue());
        let (a, b) = (tract.run(input()).unwrap(), ours.run(input()).unwrap());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(**a, **b);
        }

        let table = SiluTable::of(&silu()).unwrap();
        for len in [65536, 65535, 3] {
            let all: Vec<f16> = (0..len as u32).map(|b| f16::from_bits(b as u16)).collect();
            let mut theirs = tensor1(&all);
            silu().0.eval_in_place(&mut theirs, None).unwrap();
            let mut mine = all.clone();
            table.apply(&mut mine);
            let theirs = theirs.try_as_plain_ram().unwrap();
            let theirs = theirs.as_slice::<f16>().unwrap();
            let bits = |v: &[f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&mine), bits(theirs), "{len} values");
        }
    }

    /// A small float model: a pointwise conv, a depthwise conv, a max-pool; translated, it
    /// computes the same values within f16 precision, keeps f32 at its edges and in the
    /// depthwise conv and the pool, and its casts are all `HalfCast` once optimised.
    #[test]
    fn half_model_matches_f32_within_half_precision() {
        use tract_core::ops::cnn::{KernelFormat, PaddingSpec, PoolSpec};
        use tract_core::ops::nn::DataFormat;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 4, 6, 6])).unwrap();
        let pool = |k: usize, c: usize, oc: usize| PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![k, k],
            padding: PaddingSpec::Explicit(tvec![k / 2, k / 2], tvec![k / 2, k / 2]),
            dilations: None,
            strides: None,
            input_channels: c,
            output_channels: oc,
        };
        let weights = |shape: &[usize], seed: f32| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.5)
                .collect();
            Tensor::from_shape(shape, &v).unwrap()
        };
        let w1 = model.add_const("w1", weights(&[4, 4, 1, 1], 0.1)).unwrap();
        let b1 = model.add_const("b1", weights(&[4], 0.2)).unwrap();
        let pw = Conv::new(pool(1, 4, 4), KernelFormat::OIHW, 1, None);
        let y = model.wire_node("pointwise", pw, &[x, w1, b1]).unwrap()[0];
        let w2 = model.add_const("w2", weights(&[4, 1, 3, 3], 0.3)).unwrap();
        let b2 = model.add_const("b2", weights(&[4], 0.4)).unwrap();
        let dw = Conv::new(pool(3, 4, 4), KernelFormat::OIHW, 4, None);
        let z = model.wire_node("depthwise", dw, &[y, w2, b2]).unwrap()[0];
        let mp = MaxPool::new(pool(3, 4, 4), None);
        let out = model.wire_node("pool", mp, &[z]).unwrap()[0];
        model.select_output_outlets(&[out]).unwrap();

        let input = weights(&[1, 4, 6, 6], 0.5);
        let reference = model
            .clone()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let reference = reference.run(tvec!(input.clone().into_tvalue())).unwrap();

        let mut half = model.clone();
        assert_eq!(to_half(&mut half).unwrap(), 4, "source, w1, b1, pointwise");
        assert_eq!(half.input_fact(0).unwrap().datum_type, f32::datum_type());
        assert_eq!(half.output_fact(0).unwrap().datum_type, f32::datum_type());
        let mut half = half.into_optimized().unwrap();
        let casts = fast_casts(&mut half).unwrap();
        assert!(casts >= 2, "{casts} casts replaced");
        assert!(half.nodes().iter().all(|n| !n.op_is::<Cast>()));
        let half = half.into_runnable().unwrap();
        let got = half.run(tvec!(input.into_tvalue())).unwrap();

        let (a, b) = (
            reference[0].try_as_plain_ram().unwrap(),
            got[0].try_as_plain_ram().unwrap(),
        );
        let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        // f16 keeps ~3 decimal digits; the values here are of order 1.
        assert!(worst < 5e-3, "largest difference {worst}");
        assert!(worst > 0.0, "the half model computed in f32 throughout");
    }
}
