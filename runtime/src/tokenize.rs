//! Text -> token ids with the bundle's tokenizer.json (Hugging Face `tokenizers`).
//!
//! CLIP's text graph takes a fixed context (77): every text is truncated to it,
//! keeping the start and end tokens, and padded with the pad token.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

/// A batch of encoded texts, row-major `[batch, context_length]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBatch {
    pub batch: usize,
    pub context_length: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

/// A tokenizer for prompts and generated text: no padding, no truncation (the
/// caller checks lengths against the model's positions).
pub fn load_plain(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| Error::BundleFile {
        path: path.to_path_buf(),
        what: "tokenizer",
        reason: format!("not a tokenizers JSON file: {e}"),
    })
}

impl TextTokenizer {
    pub fn load(path: &Path, context_length: usize, pad_token: &str) -> Result<TextTokenizer> {
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
        Ok(TextTokenizer { inner, context_length })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<EncodedBatch> {
        let enc = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
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

    /// Ids and token strings of one text, without padding (for `owlet tokenize`).
    pub fn tokens(&self, text: &str) -> Result<(Vec<u32>, Vec<String>)> {
        let e = self.inner.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let n = e.get_attention_mask().iter().filter(|&&m| m == 1).count();
        Ok((e.get_ids()[..n].to_vec(), e.get_tokens()[..n].to_vec()))
    }
}
