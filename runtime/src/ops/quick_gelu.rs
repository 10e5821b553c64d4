//! `OwletQuickGelu`: CLIP's MLP activation `x · sigmoid(α·x)` as one op with
//! owlet's kernel (crate::kernels::quick_gelu), as a rewrite of the decluttered
//! model (not an ONNX op).
//!
//! The ONNX export writes it as `Mul(x, Sigmoid(Mul(x, α)))`; tract runs three
//! passes over the MLP's widest tensor for it. `rewrite` finds that pattern in f32
//! (α a constant scalar, the same `x` on both sides) and wires this op to `x` in
//! the outer Mul's place; the inner nodes, read by nothing else, are pruned when
//! tract optimises the model.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_hir::internal::*;

use crate::kernels::quick_gelu::{QuickGeluFn, FAMILY};

pub const OP_NAME: &str = "OwletQuickGelu";

/// `x · sigmoid(alpha · x)`, elementwise, f32.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuickGelu {
    /// α's bits (f32 is neither Eq nor Hash).
    alpha_bits: u32,
}

impl QuickGelu {
    pub fn new(alpha: f32) -> QuickGelu {
        QuickGelu { alpha_bits: alpha.to_bits() }
    }

    fn alpha(&self) -> f32 {
        f32::from_bits(self.alpha_bits)
    }
}

impl Op for QuickGelu {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("alpha {}, {}", self.alpha(), FAMILY.chosen().name)])
    }

    op_as_typed_op!();
}

impl EvalOp for QuickGelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let row_len = input.shape().last().copied().unwrap_or(1).max(1);
        let mut t = input.into_tensor(); // in place when the value is not shared
        let mut view = t.to_plain_array_view_mut::<f32>()?;
        let data = view.as_slice_mut().context("a plan's tensors are contiguous")?;
        let (kernel, alpha): (QuickGeluFn, f32) = (FAMILY.chosen().run, self.alpha());
        let total = data.len();
        // Rows in chunks over tract's pool (inline when small or single-threaded).
        tract_linalg::multithread::par_chunks_mut(data, row_len, total, |_, rows| {
            kernel(rows, alpha);
            Ok(())
        })?;
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for QuickGelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// The `Mul` (TypedBinOp) node behind `outlet`, if it is one.
fn mul_node(model: &TypedModel, outlet: OutletId) -> Option<&TypedNode> {
    let node = &model.nodes[outlet.node];
    node.op_as::<TypedBinOp>().filter(|op| op.0.name() == "Mul").map(|_| node)
}

/// A constant holding one value (any rank), as f32.
fn scalar_const(model: &TypedModel, outlet: OutletId) -> TractResult<Option<f32>> {
    let fact = model.outlet_fact(outlet)?;
    match &fact.konst {
        Some(k) if k.len() == 1 && k.datum_type() == f32::datum_type() => {
            Ok(k.to_plain_array_view::<f32>()?.iter().next().copied())
        }
        _ => Ok(None),
    }
}

/// If `node` is the outer `Mul(x, Sigmoid(Mul(x, α)))` of a quick GELU in f32:
/// α and x.
fn candidate(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(f32, OutletId)>> {
    if mul_node(model, node.id.into()).is_none() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let out = model.outlet_fact(node.id.into())?;
    if out.datum_type != f32::datum_type() {
        return Ok(None);
    }
    for (x, s) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
        let sig = &model.nodes[s.node];
        let is_sigmoid = sig.op_as::<ElementWiseOp>().is_some_and(|op| op.0.name() == "Sigmoid");
        if !is_sigmoid || sig.inputs.len() != 1 {
            continue;
        }
        let Some(inner) = mul_node(model, sig.inputs[0]) else { continue };
        if inner.inputs.len() != 2 || model.outlet_fact(x)?.shape != out.shape {
            continue;
        }
        for (a, c) in [(inner.inputs[0], inner.inputs[1]), (inner.inputs[1], inner.inputs[0])] {
            if a == x {
                if let Some(alpha) = scalar_const(model, c)? {
                    return Ok(Some((alpha, x)));
                }
            }
        }
    }
    Ok(None)
}

/// Replace every quick GELU of a decluttered f32 model by `QuickGelu`. Returns
/// how many were replaced.
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    super::replace_each(model, |model, node| {
        Ok(candidate(model, node)?.map(|(alpha, x)| (QuickGelu::new(alpha), tvec![x])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::{math, nn};

    /// `Mul(x, Sigmoid(Mul(x, α)))` on a source shaped `shape` (α a constant of
    /// the same rank, as typed ops want), `swap` putting each Mul's operands the
    /// other way round.
    fn pattern(shape: &[usize], alpha: f32, swap: bool) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(shape)).unwrap();
        let c =
            m.add_const("alpha", tensor0(alpha).broadcast_into_rank(shape.len()).unwrap()).unwrap();
        let ins = |a: OutletId, b: OutletId| if swap { [b, a] } else { [a, b] };
        let ax = m.wire_node("ax", math::mul(), &ins(x, c)).unwrap();
        let s = m.wire_node("sig", nn::sigmoid(), &ax).unwrap();
        let y = m.wire_node("y", math::mul(), &ins(x, s[0])).unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }

    fn run(model: TypedModel, x: &Tensor) -> Tensor {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into_tvalue())).unwrap().remove(0).into_tensor()
    }

    #[test]
    fn the_pattern_becomes_one_op_that_matches_tracts_three() {
        let shape = [2, 77, 40];
        let data: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| ((i * 7919 % 1000) as f32 / 50.0) - 10.0)
            .collect();
        let x = Tensor::from_shape(&shape, &data).unwrap();
        for swap in [false, true] {
            let model = pattern(&shape, 1.702, swap);
            let want = run(model.clone(), &x);
            let mut model = model.into_decluttered().unwrap();
            assert_eq!(rewrite(&mut model).unwrap(), 1, "swap {swap}");
            let got = run(model.clone(), &x);
            let ops: Vec<String> = model
                .into_optimized()
                .unwrap()
                .nodes
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            assert!(
                ops.contains(&OP_NAME.to_string()) && !ops.iter().any(|o| o == "Sigmoid"),
                "{ops:?}"
            );
            // Against the f64 reference, closely; against tract's three ops, within
            // the error of tract's sigmoid (a rational approximation, ~4e-6 off
            // in the far tails, where owlet's is ~1e-7 relative).
            let mut exact = data.clone();
            crate::kernels::quick_gelu::reference(&mut exact, 1.702);
            let (got, want) = (
                got.to_plain_array_view::<f32>().unwrap(),
                want.to_plain_array_view::<f32>().unwrap(),
            );
            for ((g, w), e) in got.iter().zip(want.iter()).zip(&exact) {
                assert!((g - e).abs() <= 1e-7 + 1e-6 * e.abs(), "{g} vs exact {e}");
                assert!((g - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{g} vs tract's {w}");
            }
        }
    }

    #[test]
    fn near_misses_stay_tracts() {
        // x · sigmoid(α·z) with z another input: not a quick GELU.
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4, 8])).unwrap();
        let z = m.add_source("z", f32::fact([4, 8])).unwrap();
        let c = m.add_const("alpha", tensor0(1.702f32).broadcast_into_rank(2).unwrap()).unwrap();
        let az = m.wire_node("az", math::mul(), &[z, c]).unwrap();
        let s = m.wire_node("sig", nn::sigmoid(), &az).unwrap();
        let y = m.wire_node("y", math::mul(), &[x, s[0]]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let mut m = m.into_decluttered().unwrap();
        assert_eq!(rewrite(&mut m).unwrap(), 0);
        // α not a constant.
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4, 8])).unwrap();
        let a = m.add_source("a", f32::fact([1, 1])).unwrap();
        let ax = m.wire_node("ax", math::mul(), &[x, a]).unwrap();
        let s = m.wire_node("sig", nn::sigmoid(), &ax).unwrap();
        let y = m.wire_node("y", math::mul(), &[x, s[0]]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let mut m = m.into_decluttered().unwrap();
        assert_eq!(rewrite(&mut m).unwrap(), 0);
    }
}
