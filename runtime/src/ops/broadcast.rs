//! `OwletBroadcastBinary`: f32 Add and Mul where one operand repeats along some
//! axes, as a plan rewrite (not an ONNX op).
//!
//! tract runs an element-wise Add or Mul that no matmul absorbed on one of two
//! SIMD paths: operands of the same shape ("unicast") or an operand constant over
//! the trailing axes ("by scalar"). Anything else takes its generic broadcasting
//! path, ~4 ns per element. Attention has exactly such an Add in every layer: the
//! scores `[batch, heads, q, k]` plus the mask `[batch, 1, q, k]`, shared by the
//! heads (CLIP's text encoder, OPT's decoder). Measured on the int8 CLIP text
//! graph: 15% of its time, for one add per score.
//!
//! This op does those in runs: the trailing axes where both shapes agree are one
//! contiguous run in each operand, added (or multiplied) with a loop the compiler
//! vectorises; the leading axes only pick which run of `b` goes with which run of
//! `a`. `rewrite` swaps it in for tract's generic node after optimisation.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_hir::internal::*;

pub const OP_NAME: &str = "OwletBroadcastBinary";

/// Runs shorter than this are left to tract: the per-run overhead would dominate.
const MIN_RUN: i64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arith {
    Add,
    Mul,
}

/// `c = a (op) b`, where `b`'s shape is `a`'s with some axes 1 (broadcast) and
/// `c` has `a`'s shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BroadcastBinary {
    pub arith: Arith,
}

impl Op for BroadcastBinary {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.arith)])
    }

    op_as_typed_op!();
}

impl EvalOp for BroadcastBinary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let (a_shape, b_shape) = (a.shape().to_vec(), b.shape().to_vec());
        if a_shape.len() != b_shape.len()
            || a_shape.iter().zip(&b_shape).any(|(x, y)| y != x && *y != 1)
        {
            bail!("{OP_NAME}: {b_shape:?} does not broadcast to {a_shape:?}");
        }
        let mut c = a.into_tensor(); // in place when the value is not shared
        let b = b.to_plain_array_view::<f32>()?;
        let b = b.as_slice().context("a plan's tensors are contiguous")?;
        let mut c_view = c.to_plain_array_view_mut::<f32>()?;
        let c_slice = c_view.as_slice_mut().context("a plan's tensors are contiguous")?;
        apply(self.arith, c_slice, &a_shape, b, &b_shape);
        Ok(tvec!(c.into_tvalue()))
    }
}

impl TypedOp for BroadcastBinary {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `c[i] (op)= b[broadcast i]` over `c` of shape `shape` (`b_shape` has 1 on the
/// broadcast axes).
pub fn apply(arith: Arith, c: &mut [f32], shape: &[usize], b: &[f32], b_shape: &[usize]) {
    // Trailing axes where the shapes agree: contiguous in both.
    let inner_axes =
        shape.iter().rev().zip(b_shape.iter().rev()).take_while(|(x, y)| x == y).count();
    let lead = shape.len() - inner_axes;
    let run: usize = shape[lead..].iter().product();
    if run == 0 || c.is_empty() {
        return;
    }
    // b's strides on the leading axes, 0 where it repeats.
    let mut b_strides = vec![0usize; lead];
    let mut stride = run;
    for ax in (0..lead).rev() {
        if b_shape[ax] != 1 {
            b_strides[ax] = stride;
        }
        stride *= b_shape[ax];
    }
    let mut index = vec![0usize; lead];
    for c_run in c.chunks_exact_mut(run) {
        let offset: usize = index.iter().zip(&b_strides).map(|(i, s)| i * s).sum();
        let b_run = &b[offset..offset + run];
        match arith {
            Arith::Add => c_run.iter_mut().zip(b_run).for_each(|(x, y)| *x += y),
            Arith::Mul => c_run.iter_mut().zip(b_run).for_each(|(x, y)| *x *= y),
        }
        // Next leading index, last axis fastest.
        for ax in (0..lead).rev() {
            index[ax] += 1;
            if index[ax] < shape[ax] {
                break;
            }
            index[ax] = 0;
        }
    }
}

/// The broadcast that `node` does, if it is one for this op: f32 Add or Mul, the
/// output shaped like one input (`a`, returned first) and the other broadcast to
/// it, with a run of agreeing trailing elements not known to be under `MIN_RUN`.
fn candidate(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(Arith, [OutletId; 2])>> {
    let Some(op) = node.op_as::<TypedBinOp>() else { return Ok(None) };
    let arith = match op.0.name() {
        "Add" => Arith::Add,
        "Mul" => Arith::Mul,
        _ => return Ok(None),
    };
    let facts = model.node_input_facts(node.id)?;
    let out = &model.outlet_fact(node.id.into())?;
    if facts.len() != 2
        || out.datum_type != f32::datum_type()
        || facts.iter().any(|f| f.datum_type != f32::datum_type())
    {
        return Ok(None);
    }
    // Add and Mul commute: `a` is whichever input has the output's shape.
    let (a, b) = if facts[0].shape == out.shape {
        (0, 1)
    } else if facts[1].shape == out.shape {
        (1, 0)
    } else {
        return Ok(None);
    };
    let (sa, sb) = (&facts[a].shape, &facts[b].shape);
    if sa.rank() != sb.rank() || sa.iter().zip(sb.iter()).any(|(x, y)| y != x && !y.is_one()) {
        return Ok(None);
    }
    let run = sa
        .iter()
        .rev()
        .zip(sb.iter().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.clone())
        .product::<TDim>();
    // A symbolic run (the decoder's `total`) is taken: short ones cost little.
    if run.to_i64().is_ok_and(|r| r < MIN_RUN) {
        return Ok(None);
    }
    Ok(Some((arith, [node.inputs[a], node.inputs[b]])))
}

/// Replace every generic f32 broadcasting Add and Mul left in an optimised model
/// by `BroadcastBinary`. Returns how many were replaced.
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    super::replace_each(model, |model, node| {
        Ok(candidate(model, node)?
            .map(|(arith, inputs)| (BroadcastBinary { arith }, inputs.into_iter().collect())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        arith: Arith,
        a: &[f32],
        shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
    ) -> Vec<f32> {
        let a = tract_ndarray::ArrayD::from_shape_vec(shape, a.to_vec()).unwrap();
        let b = tract_ndarray::ArrayD::from_shape_vec(b_shape, b.to_vec()).unwrap();
        let c = match arith {
            Arith::Add => &a + &b,
            Arith::Mul => &a * &b,
        };
        c.iter().copied().collect()
    }

    #[test]
    fn runs_match_ndarray_broadcasting_on_every_pattern() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[2, 3, 5, 17], &[2, 1, 5, 17]), // attention mask over heads
            (&[2, 3, 5, 17], &[1, 1, 5, 17]),
            (&[2, 3, 5, 17], &[2, 3, 1, 17]),
            (&[2, 3, 5, 17], &[1, 3, 1, 1]),
            (&[4, 20], &[1, 20]),
            (&[4, 20], &[4, 20]),
            (&[3, 1, 7], &[1, 1, 7]),
            (&[0, 5], &[1, 5]),
        ];
        let mut seed = 1u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for (shape, b_shape) in shapes {
            for arith in [Arith::Add, Arith::Mul] {
                let a: Vec<f32> = (0..shape.iter().product()).map(|_| rnd()).collect();
                let b: Vec<f32> = (0..b_shape.iter().product()).map(|_| rnd()).collect();
                let mut c = a.clone();
                apply(arith, &mut c, shape, &b, b_shape);
                assert_eq!(
                    c,
                    reference(arith, &a, shape, &b, b_shape),
                    "{arith:?} {shape:?} by {b_shape:?}"
                );
            }
        }
    }

    /// A typed model `x [batch, 4, 8, 8] + mask [batch, 1, 8, 8]`, as attention has
    /// (`swap`: wired as `mask + x`).
    fn masked_scores(swap: bool) -> TypedModel {
        let mut m = TypedModel::default();
        let batch = m.symbols.sym("batch");
        let x = m.add_source("x", f32::fact(dims![batch.clone(), 4, 8, 8])).unwrap();
        let mask = m.add_source("mask", f32::fact(dims![batch, 1, 8, 8])).unwrap();
        let inputs = if swap { [mask, x] } else { [x, mask] };
        let add = m.wire_node("add", tract_onnx::tract_core::ops::math::add(), &inputs).unwrap();
        m.select_output_outlets(&add).unwrap();
        m
    }

    #[test]
    fn the_plan_rewrite_replaces_the_masked_add_and_keeps_its_values() {
        for swap in [false, true] {
            let model = masked_scores(swap);
            let mut rewritten = model.clone();
            assert_eq!(rewrite(&mut rewritten).unwrap(), 1, "swap {swap}");
            assert!(rewritten.nodes.iter().any(|n| n.op.name() == OP_NAME));
            let x = Tensor::from_shape(
                &[2, 4, 8, 8],
                &(0..512).map(|v| v as f32 * 0.5).collect::<Vec<_>>(),
            )
            .unwrap();
            let mask = Tensor::from_shape(
                &[2, 1, 8, 8],
                &(0..128).map(|v| -(v as f32)).collect::<Vec<_>>(),
            )
            .unwrap();
            let inputs: TVec<TValue> = tvec![x.into(), mask.into()]; // the sources' order
            let want = model.into_runnable().unwrap().run(inputs.clone()).unwrap().remove(0);
            let got = rewritten.into_runnable().unwrap().run(inputs).unwrap().remove(0);
            assert_eq!(got, want, "swap {swap}");
        }
    }
}
