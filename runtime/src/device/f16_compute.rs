//! Computing a graph in f16 instead of f32: on the GPU when asked
//! (`--gpu-precision f16`), and on the CPU for fp16 bundles (owlet-quantize --to
//! fp16) where the CPU has f16 arithmetic: aarch64 with FEAT_FP16 (Raspberry Pi 5's
//! Cortex-A76, Jetson Orin's A78AE), on which tract has f16 matmul kernels with
//! twice the lanes of its f32 ones. Elsewhere fp16 bundles are computed in f32 (the
//! weights widened once, at load: `widen_f16_constants`): only the file is smaller.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::transform::ModelTransform;

/// Whether fp16 bundles compute in f16 on this CPU: aarch64 with f16 arithmetic as
/// tract detects it (`asimdhp` in /proc/cpuinfo; under qemu, whose cpuinfo is the
/// host's, `TRACT_CPU_ISA=+fp16` says what the board would). `RuntimeOptions::cpu_f16`
/// off keeps f32 compute, to compare both on one machine.
pub fn cpu_computes_f16() -> bool {
    if !crate::options::current().cpu_f16 {
        return false;
    }
    // x86-64's AVX512-FP16 is also f16 arithmetic, but tract has no f16 matmul
    // kernels for it: f16 there would run generic code, slower than f32.
    cfg!(target_arch = "aarch64")
        && tract_linalg::isa::native().has(tract_linalg::isa::Isa::Aarch64Fp16)
}

/// Turn a typed f32 graph into an f16 one: f32 constants beyond f16's range are
/// clamped first (`clamp_constants_to_f16`), then every f32 tensor becomes f16. The
/// graph's float inputs and outputs become f16 too (engine::Graph casts at the edges).
pub fn translate(model: &mut TypedModel) -> TractResult<()> {
    clamp_constants_to_f16(model)?;
    FloatPrecisionTranslator::new(f32::datum_type(), f16::datum_type()).transform(model)
}

/// Exporters bake "minus infinity" into attention masks as f32::MIN, used as
/// (1 - mask) · f32::MIN. Cast to f16 that is -inf, and 0 · -inf is NaN: every
/// output NaN (seen on BLIP-2's Q-Former). Constants beyond f16's range are
/// clamped to ±65504 first, which still masks (exp(-65504) is 0); the same rule
/// as onnxconverter-common's fp16 conversion. Returns how many were clamped.
pub fn clamp_constants_to_f16(model: &mut TypedModel) -> TractResult<usize> {
    const F16_MAX: f32 = 65504.0;
    let mut clamped = 0;
    for id in 0..model.nodes().len() {
        let Some(k) = model.node(id).op_as::<Const>() else { continue };
        if k.val().datum_type() != f32::datum_type() {
            continue;
        }
        let Ok(view) = k.val().to_plain_array_view::<f32>() else { continue };
        if !view.iter().any(|x| x.abs() > F16_MAX) {
            continue;
        }
        let t = view.mapv(|x| x.clamp(-F16_MAX, F16_MAX)).into_tensor().into_arc_tensor();
        let node = model.node_mut(id);
        node.op = Box::new(Const::new(t.clone())?);
        node.outputs[0].fact = TypedFact::try_from(t)?;
        clamped += 1;
    }
    Ok(clamped)
}

/// fp16 bundles store weights as f16 constants behind Cast(f16 -> f32) nodes. tract
/// folds such a cast at load only while the f32 result stays within its constant
/// folding budget (4 MiB): the large ones (ViT-B/32's MLP and patch weights, 9.4 MB
/// in f32) stayed in the plan and were cast and packed again on every run, 1.2-3.2x
/// fp32's time (BENCHMARKS.md). Widening every one of them here, once, makes the
/// plan the fp32 one. Returns how many were widened.
pub fn widen_f16_constants(model: &mut TypedModel) -> TractResult<usize> {
    let mut widened = 0;
    // Patches append their new nodes and leave the old ones for the optimiser to
    // prune, so the ids below stay valid while the model grows.
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(cast) = node.op_as::<Cast>() else { continue };
        if cast.to != f32::datum_type() || node.inputs.len() != 1 {
            continue;
        }
        let Some(k) = model.outlet_fact(node.inputs[0])?.konst.clone() else { continue };
        if k.datum_type() != f16::datum_type() {
            continue;
        }
        let wide = k.cast_to::<f32>()?.into_owned().into_arc_tensor();
        let name = node.name.clone();
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(name, wide)?;
        patch.shunt_outside(model, id.into(), wire)?;
        patch.apply(model)?;
        widened += 1;
    }
    Ok(widened)
}
