//! owlet's generation loop: greedy, beam search and sampling over a decoder with a
//! KV cache. The prefix (image queries + prompt) is run once; every step after that
//! feeds one token per beam and reuses the cache, so a step's cost does not grow
//! with the prefix beyond the attention over it.
//!
//! Greedy and beam search follow transformers' `GenerationMixin._sample` and
//! `_beam_search` (v5) decision for decision, so that outputs are token-for-token
//! identical; sampling follows its processor order with owlet's own seeded RNG.

mod beam;
mod processors;
mod sampling;

use crate::error::{Error, Result};

pub(crate) use processors::Processors;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The most probable token at each step.
    Greedy,
    /// Beam search as transformers' generate() does it.
    Beam {
        /// Hypotheses kept at each step.
        num_beams: usize,
        /// Scores are divided by (generated length ^ length_penalty): > 0 favours longer.
        length_penalty: f32,
        /// Stop as soon as `num_beams` hypotheses are finished.
        early_stopping: bool,
    },
    /// Sampling from the softmax, after temperature, top-k and top-p.
    Sample {
        /// Logits are divided by it before the softmax.
        temperature: f32,
        /// 0 disables top-k.
        top_k: usize,
        /// 1.0 disables top-p.
        top_p: f32,
        /// The random generator's seed: a seed repeats its text.
        seed: u64,
    },
}

/// How a generation runs and when it stops (transformers' GenerationConfig, the
/// parts owlet implements).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// How the next token is chosen.
    pub strategy: Strategy,
    /// The most tokens generated.
    pub max_new_tokens: usize,
    /// End-of-sequence is suppressed until this many tokens are generated.
    pub min_new_tokens: usize,
    /// 1.0 disables it (transformers' RepetitionPenaltyLogitsProcessor).
    pub repetition_penalty: f32,
    /// The token that ends a generation.
    pub eos_token_id: u32,
}

impl GenerationConfig {
    /// Refuses settings that cannot run (no tokens, beams or temperature out of
    /// range...), naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.min_new_tokens > self.max_new_tokens {
            return bad(format!(
                "min_new_tokens ({}) exceeds max_new_tokens ({})",
                self.min_new_tokens, self.max_new_tokens
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        match self.strategy {
            Strategy::Beam { num_beams, length_penalty, .. } => {
                if !(1..=32).contains(&num_beams) {
                    return bad(format!("num_beams must be in 1..=32, got {num_beams}"));
                }
                if !length_penalty.is_finite() {
                    return bad("length_penalty must be finite".into());
                }
            }
            Strategy::Sample { temperature, top_p, .. } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return bad(format!("temperature must be > 0, got {temperature}"));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return bad(format!("top_p must be in (0, 1], got {top_p}"));
                }
            }
            Strategy::Greedy => {}
        }
        Ok(())
    }
}

/// What generation starts from: the prefix's embeddings (image queries + prompt),
/// its length in positions, and the ids it stands for (image placeholders +
/// prompt), which the repetition penalty counts as transformers does.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) struct Prefix<'a> {
    pub embeds: &'a [f32],
    pub len: usize,
    pub context_ids: &'a [u32],
}

/// A decoder with a KV cache that the loop drives. Rows are beams.
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) trait StepDecoder {
    fn vocab_size(&self) -> usize;
    /// Run the prefix (one row) and start a cache; returns the last position's logits.
    fn prefill(&mut self, embeds: &[f32], len: usize) -> Result<Vec<f32>>;
    /// Feed one token per row; returns logits, row-major [rows, vocab].
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;
    /// Reorder (and resize) the cache rows: row i becomes old row `rows[i]`.
    fn reorder(&mut self, rows: &[usize]) -> Result<()>;
}

/// Generate new tokens after a prefix. `on_token` sees each token when it is
/// final: as it is produced for greedy and sampling, at the end for beam search.
/// Returns the new tokens, eos included when generation stopped on it.
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn generate(
    decoder: &mut dyn StepDecoder,
    prefix: &Prefix<'_>,
    cfg: &GenerationConfig,
    on_token: &mut dyn FnMut(u32),
) -> Result<Vec<u32>> {
    cfg.validate()?;
    let procs = Processors::new(cfg);
    match &cfg.strategy {
        Strategy::Greedy => {
            let mut pick = |logits: &mut [f32]| Ok(argmax(logits));
            single_row(decoder, prefix, cfg, &procs, &mut pick, on_token)
        }
        Strategy::Sample { temperature, top_k, top_p, seed } => {
            let mut sampler = sampling::Sampler::new(*temperature, *top_k, *top_p, *seed);
            let mut pick = |logits: &mut [f32]| sampler.sample(logits);
            single_row(decoder, prefix, cfg, &procs, &mut pick, on_token)
        }
        Strategy::Beam { num_beams, length_penalty, early_stopping } => {
            let out = beam::search(
                decoder,
                prefix,
                cfg,
                &procs,
                beam::BeamParams {
                    num_beams: *num_beams,
                    length_penalty: *length_penalty,
                    early_stopping: *early_stopping,
                },
            )?;
            for &t in &out {
                on_token(t);
            }
            Ok(out)
        }
    }
}

/// Chooses the next token from processed logits.
type Pick<'a> = dyn FnMut(&mut [f32]) -> Result<u32> + 'a;

/// Greedy and sampling: one row, each token final when chosen.
fn single_row(
    decoder: &mut dyn StepDecoder,
    prefix: &Prefix<'_>,
    cfg: &GenerationConfig,
    procs: &Processors,
    pick: &mut Pick<'_>,
    on_token: &mut dyn FnMut(u32),
) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut logits = decoder.prefill(prefix.embeds, prefix.len)?;
    loop {
        procs.apply(&mut logits, prefix.context_ids, &out);
        let t = pick(&mut logits)?;
        out.push(t);
        on_token(t);
        if t == cfg.eos_token_id || out.len() >= cfg.max_new_tokens {
            return Ok(out);
        }
        logits = decoder.step(&[t])?;
    }
}

/// Index of the largest value; the first on ties (torch.argmax).
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// log(softmax(v)) in place, accumulated in f64.
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn log_softmax(v: &mut [f32]) {
    let max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = v.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    for x in v.iter_mut() {
        *x = (*x as f64 - lse) as f32;
    }
}

#[cfg(test)]
mod tests;
