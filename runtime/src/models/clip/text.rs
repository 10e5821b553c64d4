//! CLIP's text tower: input_ids, attention_mask [B,77] -> text_embeds [B,D].

use tract_onnx::prelude::*;

use super::vision::check_output;
use crate::bundle::Bundle;
use crate::engine::{Graph, InputSpec};
use crate::error::{Error, Result};
use crate::similarity::Embeddings;
use crate::tokenize::{EncodedBatch, TextTokenizer};

/// Texts per graph run (label sets with templates can be hundreds of prompts).
const MAX_BATCH: usize = 16;

pub struct TextEncoder {
    graph: Graph,
    tokenizer: TextTokenizer,
    dim: usize,
}

impl TextEncoder {
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn load(bundle: &Bundle, on: crate::device::Placement) -> Result<TextEncoder> {
        let t = bundle.text();
        let tokenizer = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t)?;
        let path = bundle.path_of(&t.file);
        let graph = Graph::load(
            &path,
            "text",
            &[
                InputSpec { name: "input_ids", dtype: i64::datum_type(), rank: 2 },
                InputSpec { name: "attention_mask", dtype: i64::datum_type(), rank: 2 },
            ],
            2,
            on.for_graph("text", t.precision)?,
        )?;
        if let Some(w) = graph.output_width() {
            if w != t.embed_dim {
                return Err(Error::Graph {
                    path,
                    reason: format!(
                        "output width {w} differs from text.embed_dim {} in owlet.toml",
                        t.embed_dim
                    ),
                });
            }
        }
        Ok(TextEncoder { graph, tokenizer, dim: t.embed_dim })
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Normalised embeddings, one row per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let mut data = Vec::with_capacity(texts.len() * self.dim);
        for chunk in texts.chunks(MAX_BATCH) {
            let enc = self.tokenizer.encode_batch(chunk)?;
            data.extend(self.run_encoded(&enc)?);
        }
        let mut e = Embeddings::new(self.dim, data);
        e.normalize();
        Ok(e)
    }

    /// Raw (unnormalised) text_embeds for an encoded batch.
    pub fn run_encoded(&self, enc: &EncodedBatch) -> Result<Vec<f32>> {
        let inputs = enc
            .graph_inputs()
            .map_err(|e| Error::Inference { graph: "text", reason: format!("{e:#}") })?;
        let out = self.graph.run_batch_split("text", inputs)?;
        check_output("text", &out, enc.batch, self.dim)
    }
}
