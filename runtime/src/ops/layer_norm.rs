//! `OwletLayerNorm`: ONNX's LayerNormalization over the last axis, in f32, as one
//! op running owlet's rows kernel (crate::kernels::layer_norm) instead of the six
//! ops tract expands it into.
//!
//! It takes the place of tract's own builder for `LayerNormalization` in the
//! loader of CPU f32 plans (`ops::onnx`); a node it does not cover (another axis,
//! another stash type, the optional mean/inv-std outputs) goes to tract's builder
//! as before. GPU and f16 plans keep tract's expansion, which their translators
//! know.

use std::sync::OnceLock;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::kernels::layer_norm::FAMILY;

pub const OP_TYPE: &str = "LayerNormalization";
pub const OP_NAME: &str = "OwletLayerNorm";

/// An ONNX loader's op builder (tract's type for it is private).
type OpBuilder =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own builder, for the nodes this op does not cover.
fn tracts_builder() -> TractResult<OpBuilder> {
    static BUILDER: OnceLock<Option<OpBuilder>> = OnceLock::new();
    BUILDER
        .get_or_init(|| tract_onnx::onnx().op_register.0.get(OP_TYPE).copied())
        .context("tract has no LayerNormalization builder")
}

/// The epsilon of a LayerNormalization node this op covers (`axis = -1`, f32
/// stash type, no optional outputs), or None for tract's builder.
fn covered(node: &NodeProto) -> Option<f32> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let axis = attr("axis").map(|a| a.i).unwrap_or(-1);
    let stash_type = attr("stash_type").map(|a| a.i).unwrap_or(1); // 1: FLOAT
    let extra_outputs = node.output.iter().skip(1).any(|o| !o.is_empty());
    let covered =
        axis == -1 && stash_type == 1 && !extra_outputs && (2..=3).contains(&node.input.len());
    covered.then(|| attr("epsilon").map(|a| a.f).unwrap_or(1e-5))
}

/// The loader's builder: owlet's op where it covers the node, tract's otherwise.
pub fn onnx_builder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    match covered(node) {
        Some(epsilon) => Ok((expand(LayerNormInference { epsilon }), vec![])),
        None => tracts_builder()?(ctx, node),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct LayerNormInference {
    epsilon: f32,
}

impl Expansion for LayerNormInference {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, 1)?;
        for input in inputs {
            s.equals(&input.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let d = model
            .outlet_fact(inputs[0])?
            .shape
            .last()
            .cloned()
            .context("LayerNormalization of a scalar")?;
        for (ix, what) in [(1, "scale"), (2, "bias")] {
            if let Some(&input) = inputs.get(ix) {
                let shape = &model.outlet_fact(input)?.shape;
                if shape.iter().product::<TDim>() != d {
                    bail!("{prefix}: LayerNormalization {what} must hold one value per channel ({d}), found {shape:?}");
                }
            }
        }
        model.wire_node(prefix, LayerNorm { epsilon: self.epsilon }, inputs)
    }
}

/// The typed op: inputs x [..., d], gamma [d] (any shape of d values), and
/// optionally beta.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub epsilon: f32,
}

impl Eq for LayerNorm {}

impl std::hash::Hash for LayerNorm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.epsilon.to_bits().hash(state)
    }
}

impl Op for LayerNorm {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("eps {}, {}", self.epsilon, FAMILY.chosen().name)])
    }

    op_as_typed_op!();
}

impl EvalOp for LayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let d = inputs[0].shape().last().copied().unwrap_or(1);
        let values = |ix: usize| -> TractResult<Vec<f32>> {
            match inputs.get(ix) {
                Some(t) => Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()),
                None => Ok(vec![0f32; d]), // no bias
            }
        };
        let (gamma, beta) = (values(1)?, values(2)?);
        if gamma.len() != d || beta.len() != d {
            bail!(
                "{OP_NAME}: scale and bias must hold {d} values, found {} and {}",
                gamma.len(),
                beta.len()
            );
        }
        // A new output rather than in place: x is usually still needed (a pre-norm
        // layer's residual), and making it ours would be a copy first.
        let x = inputs.swap_remove(0);
        let xv = x.to_plain_array_view::<f32>()?;
        let xs = xv.as_slice().context("a plan's tensors are contiguous")?;
        // SAFETY: f32 has no invalid values, and the kernel writes every row of y
        // (the chunks below cover it) before anything reads it.
        let mut y = unsafe { Tensor::uninitialized::<f32>(x.shape())? };
        if d == 0 || xs.is_empty() {
            return Ok(tvec!(y.into_tvalue()));
        }
        let kernel = FAMILY.chosen().run;
        {
            let mut yv = y.to_plain_array_view_mut::<f32>()?;
            let ys = yv.as_slice_mut().context("a new tensor is contiguous")?;
            let total = ys.len();
            // Rows in chunks over tract's pool (inline when small or single-threaded).
            tract_linalg::multithread::par_chunks_mut(ys, d, total, |first_row, rows| {
                let start = first_row * d;
                kernel(&xs[start..start + rows.len()], &gamma, &beta, self.epsilon, rows);
                Ok(())
            })?;
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for LayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn node(attrs: &[(&str, i64, f32)], inputs: usize, outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: OP_TYPE.into(),
            input: (0..inputs).map(|i| format!("in{i}")).collect(),
            output: outputs.iter().map(|o| o.to_string()).collect(),
            attribute: attrs
                .iter()
                .map(|&(name, i, f)| AttributeProto {
                    name: name.into(),
                    i,
                    f,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn owlet_covers_the_last_axis_in_f32_and_leaves_the_rest_to_tract() {
        assert_eq!(covered(&node(&[], 3, &["y"])), Some(1e-5));
        assert_eq!(
            covered(&node(&[("axis", -1, 0.0), ("epsilon", 0, 1e-6)], 2, &["y"])),
            Some(1e-6)
        );
        assert_eq!(covered(&node(&[("axis", 1, 0.0)], 3, &["y"])), None);
        assert_eq!(covered(&node(&[("stash_type", 10, 0.0)], 3, &["y"])), None);
        assert_eq!(covered(&node(&[], 3, &["y", "mean"])), None);
        assert_eq!(covered(&node(&[], 3, &["y", "", ""])), Some(1e-5));
    }
}
