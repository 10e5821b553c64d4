//! owlet's own graph ops: `qmatmul` and `layer_norm`, registered into tract's
//! ONNX loader; `batched_matmul` and `quick_gelu`, swapped into decluttered f32
//! CPU models (`rewrite_decluttered`, which also joins int8 layers that share an
//! input: `qmatmul::fuse_siblings`); `broadcast` and `softmax`, swapped into optimised
//! CPU plans (`rewrite_plan`). Each replaces a slow path of tract's.
//!
//! tract looks ONNX ops up by `op_type` alone (the domain is ignored), so owlet's
//! ops carry an `Owlet` prefix in the type as well as the `owlet` domain that
//! owlet-quantize writes; no standard ONNX op can clash with them.

pub mod batched_matmul;
pub mod broadcast;
pub mod layer_norm;
pub mod qmatmul;
pub mod quick_gelu;
pub mod softmax;

use tract_onnx::tract_hir::internal::*;

/// tract's ONNX loader with owlet's ops registered: what every bundle graph is
/// loaded with. Plans computed in f32 on the CPU also get owlet's layer norm; GPU
/// and f16 plans keep tract's, which their translators know.
pub fn onnx(on: crate::device::Placement) -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert(qmatmul::OP_TYPE, qmatmul::onnx_builder);
    let cpu_f32 =
        on.device == crate::device::Device::Cpu && on.precision == crate::device::GpuPrecision::F32;
    if cpu_f32 && rewrites_on() {
        onnx.op_register.insert(layer_norm::OP_TYPE, layer_norm::onnx_builder);
    }
    onnx
}

/// owlet's rewrites of a decluttered f32 CPU model, before tract optimises it
/// (after, its einsums are packing and matmul ops).
pub fn rewrite_decluttered(model: &mut TypedModel) -> TractResult<()> {
    if !rewrites_on() {
        return Ok(());
    }
    batched_matmul::rewrite(model)?;
    quick_gelu::rewrite(model)?;
    qmatmul::fuse_siblings(model)?;
    Ok(())
}

/// owlet's rewrites of an optimised CPU plan: tract's slow paths swapped for
/// owlet's ops. Values stay the same to float rounding (each op's tests).
pub fn rewrite_plan(model: &mut TypedModel) -> TractResult<()> {
    if !rewrites_on() {
        return Ok(());
    }
    broadcast::rewrite(model)?;
    softmax::rewrite(model)?;
    Ok(())
}

/// Replace, one by one, every node of `model` for which `swap` gives an op and
/// the inputs to wire it to (tract's node keeps its outputs' consumers). Each
/// node is asked again just before its patch, since an earlier patch may have
/// rewired its inputs. Returns how many were replaced. The loop every plan
/// rewrite here shares.
pub(crate) fn replace_each<O, F>(model: &mut TypedModel, swap: F) -> TractResult<usize>
where
    O: TypedOp,
    F: Fn(&TypedModel, &TypedNode) -> TractResult<Option<(O, TVec<OutletId>)>>,
{
    let mut ids = Vec::new();
    for node in &model.nodes {
        if swap(model, node)?.is_some() {
            ids.push(node.id);
        }
    }
    for &id in &ids {
        let (op, inputs) = swap(model, &model.nodes[id])?.context("a candidate stays one")?;
        let patch = TypedModelPatch::replace_single_op(model, &model.nodes[id], &inputs, op)?;
        patch.apply(model)?;
    }
    Ok(ids.len())
}

/// Whether owlet swaps its ops in for tract's (layer norm, attention products,
/// softmax, broadcast): yes, unless `RuntimeOptions::rewrites` is off, which leaves
/// plans to tract alone (owlet's int8 op stays: tract has no fast equivalent), to
/// A/B them or to rule one out.
pub fn rewrites_on() -> bool {
    crate::options::current().rewrites
}
