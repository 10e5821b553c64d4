//! Text -> token ids with the bundle's tokenizer.json (Hugging Face `tokenizers`).
//!
//! CLIP's text graph takes a fixed context (77): every text is truncated to it,
//! keeping the start and end tokens, and padded with the pad token. Before BPE a text
//! gets the clean-up its bundle names (clean.rs): OpenAI's by default.

mod clean;
mod pieces;

use std::path::Path;

use owlet_formats::manifest::TextSpec;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) use clean::clean;
pub use clean::TextCleanup;
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) use pieces::readable_piece;

use crate::error::{Error, Result};

/// CLIP's tokenizer as OpenAI's code runs it: the text cleaned up (ftfy, HTML
/// unescaping, whitespace), lower-cased, byte-level BPE, padded to the context.
pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    cleanup: TextCleanup,
}

/// One text as `owlet tokenize` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    /// The text after its clean-up, as BPE saw it.
    pub cleaned: String,
    /// The token ids, start and end of text included.
    pub ids: Vec<u32>,
    /// The vocabulary's symbols (byte-level: "cafÃ©</w>").
    pub tokens: Vec<String>,
    /// The same as a person reads them ("café" and a space for the word's end).
    pub pieces: Vec<String>,
}

/// A batch of encoded texts, row-major `[batch, context_length]`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) struct EncodedBatch {
    pub batch: usize,
    pub context_length: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

impl EncodedBatch {
    /// The text graph's inputs: input_ids and attention_mask, [batch, context_length].
    pub(crate) fn graph_inputs(
        &self,
    ) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>>
    {
        use tract_onnx::prelude::{tvec, Tensor};
        let shape = [self.batch, self.context_length];
        let ids = Tensor::from_shape(&shape, &self.input_ids)?;
        let mask = Tensor::from_shape(&shape, &self.attention_mask)?;
        Ok(tvec!(ids.into(), mask.into()))
    }
}

/// A tokenizer for prompts and generated text: no padding, no truncation (the
/// caller checks lengths against the model's positions).
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn load_plain(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| Error::BundleFile {
        path: path.to_path_buf(),
        what: "tokenizer",
        reason: format!("not a tokenizers JSON file: {e}"),
    })
}

impl TextTokenizer {
    /// The tokenizer at `path` (a bundle's tokenizer.json), set up as `spec` says.
    pub fn load(path: &Path, spec: &TextSpec) -> Result<TextTokenizer> {
        let (context_length, pad_token) = (spec.context_length, spec.pad_token.as_str());
        let err = |reason: String| Error::BundleFile {
            path: path.to_path_buf(),
            what: "tokenizer",
            reason,
        };
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| err(format!("not a tokenizers JSON file: {e}")))?;
        let pad_id = inner
            .token_to_id(pad_token)
            .ok_or_else(|| err(format!("pad token `{pad_token}` is not in the vocabulary")))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(context_length),
            pad_id,
            pad_token: pad_token.to_string(),
            ..Default::default()
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        if spec.cleanup == TextCleanup::Openai {
            // OpenAI's clean-up already collapses whitespace and lower-cases, and does
            // no NFC after decoding HTML entities: the tokenizer's own normalizer
            // (NFC, whitespace, lower case) would undo the last.
            inner.with_normalizer(None::<NormalizerWrapper>);
        }
        Ok(TextTokenizer { inner, context_length, cleanup: spec.cleanup })
    }

    /// The clean-up this bundle's texts get before BPE.
    pub fn cleanup(&self) -> TextCleanup {
        self.cleanup
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn encode_batch(&self, texts: &[&str]) -> Result<EncodedBatch> {
        let cleaned: Vec<String> =
            texts.iter().map(|t| clean(self.cleanup, t).into_owned()).collect();
        let enc =
            self.inner.encode_batch(cleaned, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut out = EncodedBatch {
            batch: texts.len(),
            context_length: self.context_length,
            input_ids: Vec::with_capacity(texts.len() * self.context_length),
            attention_mask: Vec::with_capacity(texts.len() * self.context_length),
        };
        for e in &enc {
            if e.get_ids().len() != self.context_length {
                return Err(Error::Tokenizer(format!(
                    "encoded to {} tokens, expected {}",
                    e.get_ids().len(),
                    self.context_length
                )));
            }
            out.input_ids.extend(e.get_ids().iter().map(|&i| i as i64));
            out.attention_mask.extend(e.get_attention_mask().iter().map(|&m| m as i64));
        }
        Ok(out)
    }

    /// One text's clean-up, ids, symbols and readable pieces, without padding (for
    /// `owlet tokenize`).
    pub fn tokenize(&self, text: &str) -> Result<Tokenized> {
        let cleaned = clean(self.cleanup, text).into_owned();
        let e = self
            .inner
            .encode(cleaned.as_str(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let n = e.get_attention_mask().iter().filter(|&&m| m == 1).count();
        let tokens = e.get_tokens()[..n].to_vec();
        let special = &e.get_special_tokens_mask()[..n];
        let pieces = tokens
            .iter()
            .zip(special)
            .map(|(t, &s)| if s == 1 { t.clone() } else { readable_piece(t) })
            .collect();
        Ok(Tokenized { cleaned, ids: e.get_ids()[..n].to_vec(), tokens, pieces })
    }
}
