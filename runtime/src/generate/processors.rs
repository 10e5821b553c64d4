//! Logit processors, in transformers' order: repetition penalty, then min length.

use super::GenerationConfig;

pub struct Processors {
    repetition_penalty: f32,
    min_new_tokens: usize,
    eos: u32,
}

impl Processors {
    pub fn new(cfg: &GenerationConfig) -> Processors {
        Processors {
            repetition_penalty: cfg.repetition_penalty,
            min_new_tokens: cfg.min_new_tokens,
            eos: cfg.eos_token_id,
        }
    }

    /// `context`: the prefix's ids; `generated`: the new ids so far.
    pub fn apply(&self, scores: &mut [f32], context: &[u32], generated: &[u32]) {
        if self.repetition_penalty != 1.0 {
            // RepetitionPenaltyLogitsProcessor: each distinct seen id once.
            let mut seen = std::collections::HashSet::new();
            for &id in context.iter().chain(generated) {
                if let Some(s) = scores.get_mut(id as usize) {
                    if seen.insert(id) {
                        *s = if *s < 0.0 {
                            *s * self.repetition_penalty
                        } else {
                            *s / self.repetition_penalty
                        };
                    }
                }
            }
        }
        if generated.len() < self.min_new_tokens {
            if let Some(s) = scores.get_mut(self.eos as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}
