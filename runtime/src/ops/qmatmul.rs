//! `OwletMatMulInt8`: a linear layer with int8 weights, run by owlet's int8 kernels
//! (crate::kernels::int8) with the activations quantized per row at run time.
//!
//! ONNX form (written by owlet-quantize, domain `owlet`):
//!
//! ```text
//! Y = OwletMatMulInt8(X, W, W_scale[, B])   attribute x_scale: float, optional
//!   X        float32 [..., K]   activations
//!   W        int8    [N, K]     weights, one row per output channel (an initializer)
//!   W_scale  float32 [N]        per-channel scale: W_float ≈ W * W_scale
//!   B        float32 [N]        optional bias
//!   Y        float32 [..., N] = X · (W * W_scale)ᵀ + B
//! ```
//!
//! Without `x_scale`, each row of X is quantized with its own scale and zero
//! point (its range, 0 included, over 254 steps: dynamic, as onnxruntime's
//! DynamicQuantizeLinear). With it (owlet-quantize `--static-activations`: max |x| over a
//! calibration set / 127), every row takes that scale and values past ±127 steps
//! clamp.
//!
//! It replaces `MatMul(X, Wᵀ)` (+ `Add(B)`) with a constant weight. tract's own
//! int8 route is slow for this (a per-run re-sum of the constant weights and a
//! scalar DynamicQuantizeLinear; ../shared/notes/tract.md), hence our own op. The
//! weights are packed for the CPU's kernel once, when the graph is typed.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::kernels::int8::{self, PackedWeights, QGemmKernel, XScale};

pub const OP_TYPE: &str = "OwletMatMulInt8";

/// The ONNX attribute that holds a static activation scale.
pub const X_SCALE_ATTR: &str = "x_scale";

/// The ONNX loader's builder for `OwletMatMulInt8`.
pub fn onnx_builder(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if !(3..=4).contains(&node.input.len()) {
        bail!("{OP_TYPE} `{}` needs 3 or 4 inputs (X, W, W_scale[, B]), found {}", node.name, node.input.len());
    }
    let x_scale = node.get_attr_opt::<f32>(X_SCALE_ATTR)?;
    if let Some(s) = x_scale {
        if !(s > 0.0 && s.is_finite()) {
            bail!("{OP_TYPE} `{}`: {X_SCALE_ATTR} must be a positive finite number, found {s}", node.name);
        }
    }
    Ok((expand(MatMulInt8Inference { x_scale_bits: x_scale.map(f32::to_bits) }), vec![]))
}

/// The op as the ONNX loader sees it: checks types, infers shapes, and when the
/// graph is typed, packs the constant weights into a `MatMulInt8`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct MatMulInt8Inference {
    /// The static activation scale's bits (f32 is neither Hash nor Eq).
    x_scale_bits: Option<u32>,
}

impl MatMulInt8Inference {
    fn x_scale(&self) -> XScale {
        self.x_scale_bits.map_or(XScale::PerRow, |b| XScale::Static(f32::from_bits(b)))
    }
}

impl Expansion for MatMulInt8Inference {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[1].datum_type, i8::datum_type())?;
        s.equals(&inputs[2].datum_type, f32::datum_type())?;
        if inputs.len() == 4 {
            s.equals(&inputs[3].datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, w| {
            let mut y = x.clone();
            if let Some(last) = y.last_mut() {
                *last = w[0].clone();
            }
            s.equals(&outputs[0].shape, y)
        })?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let konst = |ix: usize, what: &str| -> TractResult<Arc<Tensor>> {
            model
                .outlet_fact(inputs[ix])?
                .konst
                .clone()
                .with_context(|| format!("{OP_TYPE} `{prefix}`: {what} must be a constant (an initializer)"))
        };
        let w = konst(1, "W")?;
        let (n, k) = match w.shape() {
            [n, k] => (*n, *k),
            other => bail!("{OP_TYPE} `{prefix}`: W must be [N, K], found {other:?}"),
        };
        let scales = konst(2, "W_scale")?;
        if scales.shape() != [n] {
            bail!("{OP_TYPE} `{prefix}`: W_scale must be [{n}] (one per output channel), found {:?}", scales.shape());
        }
        let bias = if inputs.len() == 4 {
            let b = konst(3, "B")?;
            if b.shape() != [n] {
                bail!("{OP_TYPE} `{prefix}`: B must be [{n}], found {:?}", b.shape());
            }
            Some(b.to_plain_array_view::<f32>()?.iter().copied().collect())
        } else {
            None
        };
        let x_fact = model.outlet_fact(inputs[0])?;
        if x_fact.shape.last().and_then(|d| d.to_usize().ok()).is_some_and(|xk| xk != k) {
            bail!("{OP_TYPE} `{prefix}`: X's last axis is {:?}, W has K = {k}", x_fact.shape.last());
        }
        let kernel = int8::best();
        let w: Vec<i8> = w.to_plain_array_view::<i8>()?.iter().copied().collect();
        let scales: Vec<f32> = scales.to_plain_array_view::<f32>()?.iter().copied().collect();
        let packed = PackedWeights::pack(&kernel, &w, n, k, scales, bias);
        model.wire_node(prefix, MatMulInt8 { kernel, weights: Arc::new(packed), x_scale: self.x_scale() }, &inputs[..1])
    }
}

/// The typed, runnable op: packed weights and the kernel they were packed for.
#[derive(Clone)]
pub struct MatMulInt8 {
    kernel: QGemmKernel,
    weights: Arc<PackedWeights>,
    x_scale: XScale,
}

impl std::fmt::Debug for MatMulInt8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MatMulInt8({}x{}, {}, {:?})", self.weights.n, self.weights.k, self.kernel.name, self.x_scale)
    }
}

impl PartialEq for MatMulInt8 {
    fn eq(&self, other: &Self) -> bool {
        self.kernel.name == other.kernel.name && Arc::ptr_eq(&self.weights, &other.weights) && self.x_scale == other.x_scale
    }
}
impl Eq for MatMulInt8 {}

impl Op for MatMulInt8 {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} x {} int8, kernel {:?}, activations {:?}", self.weights.n, self.weights.k, self.kernel, self.x_scale)])
    }

    op_as_typed_op!();
}

impl EvalOp for MatMulInt8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let x = x.to_plain_array_view::<f32>()?;
        let shape = x.shape().to_vec();
        let k = *shape.last().context("OwletMatMulInt8 on a scalar")?;
        if k != self.weights.k {
            bail!("OwletMatMulInt8: X's last axis is {k}, the weights' K is {}", self.weights.k);
        }
        let m = shape.iter().product::<usize>() / k.max(1);
        let x = x.as_standard_layout();
        let mut y_shape = shape;
        *y_shape.last_mut().unwrap() = self.weights.n;
        // SAFETY: qmatmul writes every element of y.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&y_shape)? };
        let mut y_view = y.to_plain_array_view_mut::<f32>()?;
        let y_slice = y_view.as_slice_mut().context("a new tensor is contiguous")?;
        int8::qmatmul(&self.kernel, x.as_slice().context("standard layout")?, m, &self.weights, self.x_scale, y_slice);
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for MatMulInt8 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        let last = shape.last_mut().context("OwletMatMulInt8 on a scalar")?;
        *last = self.weights.n.into();
        Ok(tvec!(f32::fact(shape)))
    }
}
