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
use tract_onnx::tract_hir::tract_core::ops::konst::Const;

use crate::kernels::int8::{self, PackedWeights, QGemmKernel, XScale};

pub use owlet_formats::int8_op::{OP_TYPE, X_SCALE_ATTR};

/// The ONNX loader's builder for `OwletMatMulInt8`.
pub fn onnx_builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if !(3..=4).contains(&node.input.len()) {
        bail!(
            "{OP_TYPE} `{}` needs 3 or 4 inputs (X, W, W_scale[, B]), found {}",
            node.name,
            node.input.len()
        );
    }
    let x_scale = node.get_attr_opt::<f32>(X_SCALE_ATTR)?;
    if let Some(s) = x_scale {
        if !(s > 0.0 && s.is_finite()) {
            bail!(
                "{OP_TYPE} `{}`: {X_SCALE_ATTR} must be a positive finite number, found {s}",
                node.name
            );
        }
    }
    Ok((
        expand(MatMulInt8Inference { x_scale_bits: x_scale.map(f32::to_bits), packed: None }),
        vec![],
    ))
}

/// The op as the ONNX loader sees it: checks types, infers shapes, and when the
/// graph is typed, packs the constant weights into a `MatMulInt8` (unless
/// `pack_before_typing` packed them already).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct MatMulInt8Inference {
    /// The static activation scale's bits (f32 is neither Hash nor Eq).
    x_scale_bits: Option<u32>,
    packed: Option<Prepacked>,
}

/// Weights packed before typing; the op's W input is then an empty [N, 0] constant.
#[derive(Clone)]
struct Prepacked(Arc<PackedWeights>);

impl std::fmt::Debug for Prepacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepacked({}x{})", self.0.n, self.0.k)
    }
}
impl PartialEq for Prepacked {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Prepacked {}
impl std::hash::Hash for Prepacked {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

/// Packs every int8 layer's weights while the model is still an inference model, one
/// layer at a time, and puts an empty [N, 0] constant in place of the int8 weight it
/// read (where no other node reads it). Typing packs them otherwise, and tract's
/// inference model keeps every original alive until typing ends: the int8 weights
/// twice over at the peak (ViT-L/14: 1.5x the graphs' bytes). Shapes and types
/// still infer: the op's rules read N from the empty constant, K from the packing.
pub fn pack_before_typing(model: &mut InferenceModel) -> TractResult<usize> {
    let mut packed_layers = 0;
    let kernel = int8::FAMILY.chosen();
    for id in 0..model.nodes.len() {
        let Some(op) = inference_op(model, id) else { continue };
        if op.packed.is_some() {
            continue;
        }
        let inputs = model.nodes[id].inputs.clone();
        let w_outlet = inputs[1];
        let konst =
            |outlet: OutletId| model.nodes[outlet.node].op_as::<Const>().map(|c| c.val().clone());
        // Anything unusual (a weight that is not a constant, or shared) is left to
        // `wire`, which packs it or says what is wrong.
        let (Some(w), Some(scales)) = (konst(w_outlet), konst(inputs[2])) else { continue };
        let bias = match inputs.get(3) {
            Some(&b) => match konst(b) {
                Some(b) => Some(b),
                None => continue,
            },
            None => None,
        };
        if model.nodes[w_outlet.node].outputs[w_outlet.slot].successors.len() != 1 {
            continue;
        }
        let name = model.nodes[id].name.clone();
        let packed = pack_layer(&kernel, &name, &w, &scales, bias.as_deref())?;
        let n = packed.n;
        drop(w);
        let empty = Tensor::zero::<i8>(&[n, 0])?.into_arc_tensor();
        let fact = TypedFact::try_from(empty.clone())?;
        model.nodes[w_outlet.node].op = Box::new(Const::new(empty)?);
        model.set_outlet_fact(w_outlet, fact.into())?;
        let op = inference_op_mut(model, id).expect("found above");
        op.packed = Some(Prepacked(Arc::new(packed)));
        packed_layers += 1;
    }
    Ok(packed_layers)
}

fn inference_op(model: &InferenceModel, id: usize) -> Option<&MatMulInt8Inference> {
    model.nodes[id].op_as::<Box<dyn Expansion>>()?.as_any().downcast_ref::<MatMulInt8Inference>()
}

fn inference_op_mut(model: &mut InferenceModel, id: usize) -> Option<&mut MatMulInt8Inference> {
    model.nodes[id]
        .op_as_mut::<Box<dyn Expansion>>()?
        .as_any_mut()
        .downcast_mut::<MatMulInt8Inference>()
}

/// One layer's weights [N, K] int8, scales [N] and bias [N], checked and packed.
fn pack_layer(
    kernel: &QGemmKernel,
    prefix: &str,
    w: &Tensor,
    scales: &Tensor,
    bias: Option<&Tensor>,
) -> TractResult<PackedWeights> {
    let (n, k) = match w.shape() {
        [n, k] => (*n, *k),
        other => bail!("{OP_TYPE} `{prefix}`: W must be [N, K], found {other:?}"),
    };
    if scales.shape() != [n] {
        bail!(
            "{OP_TYPE} `{prefix}`: W_scale must be [{n}] (one per output channel), found {:?}",
            scales.shape()
        );
    }
    let bias = match bias {
        Some(b) if b.shape() != [n] => {
            bail!("{OP_TYPE} `{prefix}`: B must be [{n}], found {:?}", b.shape())
        }
        Some(b) => Some(b.to_plain_array_view::<f32>()?.iter().copied().collect()),
        None => None,
    };
    let w = w.to_plain_array_view::<i8>()?;
    let w = w.as_slice().context("a constant tensor is contiguous")?;
    let scales: Vec<f32> = scales.to_plain_array_view::<f32>()?.iter().copied().collect();
    Ok(PackedWeights::pack(kernel, w, n, k, scales, bias))
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

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |ix: usize, what: &str| -> TractResult<Arc<Tensor>> {
            model.outlet_fact(inputs[ix])?.konst.clone().with_context(|| {
                format!("{OP_TYPE} `{prefix}`: {what} must be a constant (an initializer)")
            })
        };
        let kernel = int8::FAMILY.chosen();
        let packed = match &self.packed {
            Some(Prepacked(p)) => p.clone(),
            None => {
                let bias = if inputs.len() == 4 { Some(konst(3, "B")?) } else { None };
                let (w, scales) = (konst(1, "W")?, konst(2, "W_scale")?);
                Arc::new(pack_layer(&kernel, prefix, &w, &scales, bias.as_deref())?)
            }
        };
        let x_fact = model.outlet_fact(inputs[0])?;
        let k = packed.k;
        if x_fact.shape.last().and_then(|d| d.to_usize().ok()).is_some_and(|xk| xk != k) {
            bail!(
                "{OP_TYPE} `{prefix}`: X's last axis is {:?}, W has K = {k}",
                x_fact.shape.last()
            );
        }
        model.wire_node(
            prefix,
            MatMulInt8 { kernel, weights: packed, x_scale: self.x_scale() },
            &inputs[..1],
        )
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
        write!(
            f,
            "MatMulInt8({}x{}, {}, {:?})",
            self.weights.n, self.weights.k, self.kernel.name, self.x_scale
        )
    }
}

impl PartialEq for MatMulInt8 {
    fn eq(&self, other: &Self) -> bool {
        self.kernel.name == other.kernel.name
            && Arc::ptr_eq(&self.weights, &other.weights)
            && self.x_scale == other.x_scale
    }
}
impl Eq for MatMulInt8 {}

impl Op for MatMulInt8 {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} x {} int8, kernel {:?}, activations {:?}",
            self.weights.n, self.weights.k, self.kernel, self.x_scale
        )])
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
        // One output per layer (several where fuse_siblings joined layers).
        let mut ys = self
            .weights
            .parts()
            .iter()
            .map(|&n| {
                let mut y_shape = shape.clone();
                *y_shape.last_mut().unwrap() = n;
                // SAFETY: qmatmul_parts writes every element of every output.
                unsafe { Tensor::uninitialized::<f32>(&y_shape) }
            })
            .collect::<TractResult<TVec<Tensor>>>()?;
        let mut slices = ys
            .iter_mut()
            .map(|y| {
                y.to_plain_array_view_mut::<f32>()?
                    .into_slice()
                    .context("a new tensor is contiguous")
            })
            .collect::<TractResult<Vec<&mut [f32]>>>()?;
        int8::qmatmul_parts(
            &self.kernel,
            x.as_slice().context("standard layout")?,
            m,
            &self.weights,
            self.x_scale,
            &mut slices,
        );
        Ok(ys.into_iter().map(Tensor::into_tvalue).collect())
    }
}

impl TypedOp for MatMulInt8 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.last().context("OwletMatMulInt8 on a scalar")?;
        Ok(self
            .weights
            .parts()
            .iter()
            .map(|&n| {
                let mut shape = shape.clone();
                *shape.last_mut().unwrap() = n.into();
                f32::fact(shape)
            })
            .collect())
    }
}

/// Join the int8 layers that read the same tensor (attention's Q, K and V; the
/// Q-Former's cross-attention K and V) into one `MatMulInt8` with an output per
/// layer: x is quantized once instead of three times, and the pool forks and
/// joins once, which at batch 1 (77 text tokens, one decoder token) is a
/// noticeable part of each product. Outputs are bit-identical to the separate
/// layers'. Returns how many groups were joined. `RuntimeOptions::int8_fuse` off
/// leaves them apart (to A/B it).
pub fn fuse_siblings(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    if !crate::options::current().int8_fuse {
        return Ok(fused);
    }
    let outlets: Vec<OutletId> = model
        .nodes
        .iter()
        .flat_map(|n| (0..n.outputs.len()).map(move |slot| OutletId::new(n.id, slot)))
        .collect();
    for outlet in outlets {
        // An earlier patch may have emptied this node (replaced layers lose their
        // outputs).
        if outlet.slot >= model.nodes[outlet.node].outputs.len() {
            continue;
        }
        // Single-layer int8 nodes fed by this outlet, grouped by activation scale;
        // whole-panel layers first, so that at most one ragged one can end a group.
        let mut groups: Vec<(XScale, Vec<usize>)> = Vec::new();
        for inlet in model.outlet_successors(outlet) {
            let node = &model.nodes[inlet.node];
            let Some(op) = node.op_as::<MatMulInt8>() else { continue };
            if inlet.slot != 0 || op.weights.parts().len() != 1 {
                continue;
            }
            match groups.iter_mut().find(|(xs, _)| *xs == op.x_scale) {
                Some((_, ids)) => ids.push(node.id),
                None => groups.push((op.x_scale, vec![node.id])),
            }
        }
        for (_, mut ids) in groups {
            let op =
                |id: usize| model.nodes[id].op_as::<MatMulInt8>().expect("collected as MatMulInt8");
            ids.sort_by_key(|&id| op(id).weights.n % op(id).kernel.nr != 0);
            // Keep one ragged layer at most, at the end.
            while ids.len() > 1
                && ids[ids.len() - 2..].iter().all(|&id| op(id).weights.n % op(id).kernel.nr != 0)
            {
                ids.pop();
            }
            if ids.len() < 2 {
                continue;
            }
            let first = op(ids[0]);
            if ids.iter().any(|&id| op(id).kernel.name != first.kernel.name) {
                continue;
            }
            let parts: Vec<&PackedWeights> = ids.iter().map(|&id| &*op(id).weights).collect();
            let Some(weights) = PackedWeights::concat(&parts) else { continue };
            let joined = MatMulInt8 {
                kernel: first.kernel,
                weights: Arc::new(weights),
                x_scale: first.x_scale,
            };
            let name = format!("{}.fused_with_{}", model.nodes[ids[0]].name, ids.len() - 1);
            let mut patch = TypedModelPatch::new("owlet: int8 layers on one input, fused");
            let x = patch.tap_model(model, outlet)?;
            let outs = patch.wire_node(name, joined, &[x])?;
            for (&id, &out) in ids.iter().zip(&outs) {
                patch.shunt_outside(model, OutletId::new(id, 0), out)?;
                patch.obliterate(id)?;
            }
            patch.apply(model)?;
            fused += 1;
        }
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(kernel: &QGemmKernel, n: usize, k: usize, seed: usize, x_scale: XScale) -> MatMulInt8 {
        let w: Vec<f32> =
            (0..n * k).map(|i| (((i + seed) * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let (wq, scales) = int8::quantize_weights(&w, n, k);
        let bias = (seed & 1 == 0).then(|| (0..n).map(|i| i as f32 / 10.0).collect());
        MatMulInt8 {
            kernel: *kernel,
            weights: Arc::new(PackedWeights::pack(kernel, &wq, n, k, scales, bias)),
            x_scale,
        }
    }

    fn run(model: &TypedModel, x: &Tensor) -> Vec<Tensor> {
        let plan = model.clone().into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into_tvalue()))
            .unwrap()
            .into_iter()
            .map(|t| t.into_tensor())
            .collect()
    }

    fn int8_nodes(model: &TypedModel) -> usize {
        model
            .clone()
            .into_optimized()
            .unwrap()
            .nodes
            .iter()
            .filter(|n| n.op_is::<MatMulInt8>())
            .count()
    }

    #[test]
    fn layers_reading_one_tensor_become_one_node_with_the_same_outputs() {
        let kernel = int8::FAMILY.chosen();
        let (k, nr) = (40, kernel.nr);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 5, k])).unwrap();
        // Q, K, V-like layers (one ragged), and one with a static scale: a group of
        // its own, left alone.
        let mut outs = vec![];
        for (i, (n, xs)) in [
            (nr, XScale::PerRow),
            (nr + 3, XScale::PerRow),
            (2 * nr, XScale::PerRow),
            (nr, XScale::Static(0.02)),
        ]
        .into_iter()
        .enumerate()
        {
            outs.push(
                model.wire_node(format!("l{i}"), layer(&kernel, n, k, i, xs), &[x]).unwrap()[0],
            );
        }
        model.select_output_outlets(&outs).unwrap();
        let data: Vec<f32> =
            (0..2 * 5 * k).map(|i| ((i * 104729 % 1000) as f32 / 250.0) - 2.0).collect();
        let input = Tensor::from_shape(&[2, 5, k], &data).unwrap();
        let want = run(&model, &input);
        assert_eq!(int8_nodes(&model), 4);

        assert_eq!(fuse_siblings(&mut model).unwrap(), 1);
        assert_eq!(int8_nodes(&model), 2, "the three per-row layers joined, the static one alone");
        let got = run(&model, &input);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.shape(), w.shape(), "output {i}");
            let bits = |t: &Tensor| {
                t.to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(g), bits(w), "output {i}");
        }
    }
}
