//! `OwletSoftmax`: f32 softmax over the last axis with owlet's rows kernel
//! (crate::kernels::softmax), as a plan rewrite (not an ONNX op).
//!
//! Attention's softmax runs over rows of 50 (CLIP vision), 77 (CLIP text) or the
//! decoder's cache length, where tract's x86-64 path spends more per score than
//! the int8 products around it (see the kernel's notes). `rewrite` swaps this op
//! in for tract's `Softmax` after optimisation, where the axis is the last and
//! the type f32; log-softmax, quantized and f16 softmax stay tract's, and so do
//! rows that tract's own aarch64 rows kernel takes (a multiple of 4 long).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
use tract_onnx::tract_hir::internal::*;

use crate::kernels::softmax::{SoftmaxRows, FAMILY};

pub const OP_NAME: &str = "OwletSoftmax";

/// Softmax over the last axis of an f32 tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastAxisSoftmax;

impl Op for LastAxisSoftmax {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![FAMILY.chosen().name.to_string()])
    }

    op_as_typed_op!();
}

impl EvalOp for LastAxisSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let row_len = input.shape().last().copied().unwrap_or(1);
        let mut t = input.into_tensor(); // in place when the value is not shared
        if row_len == 0 || t.len() == 0 {
            return Ok(tvec!(t.into_tvalue()));
        }
        let mut view = t.to_plain_array_view_mut::<f32>()?;
        let data = view.as_slice_mut().context("a plan's tensors are contiguous")?;
        let kernel: SoftmaxRows = FAMILY.chosen().run;
        let total = data.len();
        // Rows in chunks over tract's pool (inline when small or single-threaded),
        // as tract's own softmax does.
        tract_linalg::multithread::par_chunks_mut(data, row_len, total, |_, rows| {
            kernel(rows, row_len);
            Ok(())
        })?;
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for LastAxisSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Whether `node` is a softmax this op computes: tract's f32 `Softmax` (not
/// log-softmax, not quantized) over exactly the last axis.
fn is_candidate(model: &TypedModel, node: &TypedNode) -> TractResult<bool> {
    let Some(op) = node.op_as::<Softmax>() else { return Ok(false) };
    let input = model.outlet_fact(node.inputs[0])?;
    let rank = input.rank();
    // On aarch64 tract has a one-pass rows kernel of its own (hand-written NEON)
    // for rows a multiple of 4 long: only the other rows are owlet's there.
    if cfg!(target_arch = "aarch64")
        && rank > 0
        && !input.shape[rank - 1].to_usize().is_ok_and(|n| n % 4 != 0)
    {
        return Ok(false);
    }
    Ok(op.kind == SoftmaxKind::Softmax
        && op.quant_output_dt.is_none()
        && rank > 0
        && op.axes.as_slice() == [rank - 1]
        && input.datum_type == f32::datum_type()
        && model.outlet_fact(node.id.into())?.datum_type == f32::datum_type())
}

/// Replace every such `Softmax` of an optimised model by `LastAxisSoftmax`.
/// Returns how many were replaced.
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    super::replace_each(model, |model, node| {
        Ok(is_candidate(model, node)?
            .then(|| (LastAxisSoftmax, node.inputs.iter().copied().collect())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `softmax(x, axis)` of `x [batch, 3, 5, 21]` as a typed model.
    fn softmax_model(axis: usize, kind: SoftmaxKind) -> TypedModel {
        let mut m = TypedModel::default();
        let batch = m.symbols.sym("batch");
        let x = m.add_source("x", f32::fact(dims![batch, 3, 5, 21])).unwrap();
        let op = Softmax { axes: tvec![axis], quant_output_dt: None, kind };
        let y = m.wire_node("softmax", op, &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }

    fn scores() -> Tensor {
        let data: Vec<f32> = (0..2 * 3 * 5 * 21)
            .map(|i| if i % 7 == 2 { -1e9 } else { ((i * 37 % 101) as f32 - 50.0) / 7.0 })
            .collect();
        Tensor::from_shape(&[2, 3, 5, 21], &data).unwrap()
    }

    #[test]
    fn the_rewrite_takes_last_axis_softmax_and_keeps_tracts_values() {
        let model = softmax_model(3, SoftmaxKind::Softmax);
        let mut rewritten = model.clone();
        assert_eq!(rewrite(&mut rewritten).unwrap(), 1);
        assert!(rewritten.nodes.iter().any(|n| n.op.name() == OP_NAME));
        let want = model.into_runnable().unwrap().run(tvec![scores().into()]).unwrap().remove(0);
        let got = rewritten.into_runnable().unwrap().run(tvec![scores().into()]).unwrap().remove(0);
        let want: Vec<f32> = want.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        let got: Vec<f32> = got.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 + 2e-6 * w.abs(), "{g} vs {w}");
        }
    }

    #[test]
    fn rows_a_multiple_of_4_long_stay_tracts_on_aarch64_only() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([6, 20])).unwrap();
        let op = Softmax { axes: tvec![1], quant_output_dt: None, kind: SoftmaxKind::Softmax };
        let y = m.wire_node("softmax", op, &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let want = if cfg!(target_arch = "aarch64") { 0 } else { 1 };
        assert_eq!(rewrite(&mut m).unwrap(), want);
    }

    #[test]
    fn other_axes_and_log_softmax_stay_tracts() {
        for (axis, kind) in [(2, SoftmaxKind::Softmax), (3, SoftmaxKind::LogSoftmax)] {
            let mut model = softmax_model(axis, kind);
            assert_eq!(rewrite(&mut model).unwrap(), 0, "axis {axis} {kind:?}");
        }
    }
}
