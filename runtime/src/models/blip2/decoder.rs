//! The OPT decoder with its KV cache, as the generation loop's `StepDecoder`.
//!
//! decoder.onnx takes inputs_embeds [B,S,H], attention_mask [B,P+S] and the past
//! keys/values [B,heads,P,head_dim] of every layer, and returns the last position's
//! logits [B,V] and the presents [B,heads,P+S,head_dim]. The presents become the
//! next call's past: the prefix is computed once.

use ndarray::{Array2, Axis};
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, DecoderSpec};
use crate::engine::{Graph, InputSpec};
use crate::error::{Error, Result};
use crate::generate::StepDecoder;

pub struct Decoder {
    graph: Graph,
    spec: DecoderSpec,
    vocab: usize,
}

impl Decoder {
    pub fn device(&self) -> crate::device::Device {
        self.graph.device()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn load(bundle: &Bundle, on: crate::device::Placement) -> Result<Decoder> {
        let spec = bundle.decoder().clone();
        let path = bundle.path_of(&spec.file);
        let mut inputs = vec![
            InputSpec { name: "inputs_embeds", dtype: f32::datum_type(), rank: 3 },
            InputSpec { name: "attention_mask", dtype: i64::datum_type(), rank: 2 },
        ];
        let names: Vec<String> = (0..spec.layers)
            .flat_map(|i| [format!("past_key_{i}"), format!("past_value_{i}")])
            .collect();
        for name in &names {
            inputs.push(InputSpec { name, dtype: f32::datum_type(), rank: 4 });
        }
        let graph = Graph::load_with_outputs(
            &path,
            "decoder",
            &inputs,
            1 + 2 * spec.layers,
            2,
            on.for_graph("decoder", spec.precision)?,
        )?;
        let vocab = graph.output_width().ok_or_else(|| Error::Graph {
            path: path.clone(),
            reason: "decoder logits must have a fixed vocabulary size".into(),
        })?;
        Ok(Decoder { graph, spec, vocab })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// A fresh KV cache over this decoder and the token embedding table.
    pub fn session<'a>(&'a self, embed: &'a Array2<f32>) -> DecoderSession<'a> {
        DecoderSession {
            decoder: self,
            embed,
            past: Vec::new(),
            past_len: 0,
            rows: 0,
            stats: DecoderStats::default(),
        }
    }
}

/// How much work a session did: the loop's cost model, checked by tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Decoder graph runs.
    pub calls: usize,
    /// Positions fed, summed over rows (prefix + one per beam per step).
    pub positions: usize,
}

pub struct DecoderSession<'a> {
    decoder: &'a Decoder,
    embed: &'a Array2<f32>,
    past: Vec<Tensor>,
    past_len: usize,
    rows: usize,
    pub stats: DecoderStats,
}

/// The decoder graph's inputs: `embeds` [rows, seq, hidden], a mask of ones over
/// the `total` positions, and the layers' cache: `past` (2 per layer, keys then
/// values) or, when it is empty (a prefill), empty ones.
pub(crate) fn decoder_inputs(
    d: &DecoderSpec,
    embeds: Tensor,
    rows: usize,
    total: usize,
    past: impl ExactSizeIterator<Item = Tensor>,
) -> TractResult<TVec<TValue>> {
    let mask = Tensor::from_shape(&[rows, total], &vec![1i64; rows * total])?;
    let mut inputs: TVec<TValue> = tvec!(embeds.into(), mask.into());
    if past.len() == 0 {
        for _ in 0..2 * d.layers {
            inputs.push(Tensor::zero::<f32>(&[rows, d.heads, 0, d.head_dim])?.into());
        }
    } else {
        inputs.extend(past.map(TValue::from));
    }
    Ok(inputs)
}

impl DecoderSession<'_> {
    fn run(&mut self, embeds: Tensor, rows: usize, seq: usize) -> Result<Vec<f32>> {
        let d = &self.decoder.spec;
        let total = self.past_len + seq;
        if total > d.max_positions {
            return Err(Error::Invalid(format!(
                "sequence of {total} positions exceeds the model's {} (shorten the prompt or max_new_tokens)",
                d.max_positions
            )));
        }
        let inputs =
            decoder_inputs(d, embeds, rows, total, self.past.drain(..)).map_err(inference)?;
        // The cache stays in the plan's type (f16 on an fp16 GPU plan).
        let mut out = self.decoder.graph.run_all_in_plan_types("decoder", inputs)?;
        let logits = crate::engine::to_f32(out.remove(0)).map_err(inference)?;
        self.past = out;
        self.past_len = total;
        self.rows = rows;
        self.stats.calls += 1;
        self.stats.positions += rows * seq;
        if logits.shape() != [rows, self.decoder.vocab] {
            return Err(Error::Inference {
                graph: "decoder",
                reason: format!("logits shape {:?}", logits.shape()),
            });
        }
        Ok(logits.to_plain_array_view::<f32>().map_err(inference)?.iter().cloned().collect())
    }
}

fn inference(e: impl std::fmt::Display) -> Error {
    Error::Inference { graph: "decoder", reason: e.to_string() }
}

impl StepDecoder for DecoderSession<'_> {
    fn vocab_size(&self) -> usize {
        self.decoder.vocab
    }

    fn prefill(&mut self, embeds: &[f32], len: usize) -> Result<Vec<f32>> {
        self.past.clear();
        self.past_len = 0;
        let hidden = self.embed.ncols();
        let t = Tensor::from_shape(&[1, len, hidden], embeds).map_err(inference)?;
        self.run(t, 1, len)
    }

    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() != self.rows {
            return Err(inference(format!("{} tokens for {} cache rows", tokens.len(), self.rows)));
        }
        let hidden = self.embed.ncols();
        let mut data: Vec<f32> = Vec::with_capacity(tokens.len() * hidden);
        for &t in tokens {
            let row = self.embed.row(t as usize);
            data.extend(row.iter());
        }
        let t = Tensor::from_shape(&[tokens.len(), 1, hidden], &data).map_err(inference)?;
        self.run(t, tokens.len(), 1)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        if rows.iter().any(|&r| r >= self.rows) {
            return Err(inference("reorder names a cache row that does not exist"));
        }
        if rows.len() == self.rows && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(()); // beams kept their places: nothing to copy
        }
        for t in self.past.iter_mut() {
            *t = if t.datum_type() == DatumType::F16 {
                Tensor::from(
                    t.to_plain_array_view::<f16>().map_err(inference)?.select(Axis(0), rows),
                )
            } else {
                Tensor::from(
                    t.to_plain_array_view::<f32>().map_err(inference)?.select(Axis(0), rows),
                )
            };
        }
        self.rows = rows.len();
        Ok(())
    }
}
