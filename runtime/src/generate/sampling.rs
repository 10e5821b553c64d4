//! Sampling with temperature, top-k and top-p (transformers' warper order), from a
//! seeded RNG: the same seed gives the same text on every run and machine.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

pub struct Sampler {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    rng: StdRng,
}

impl Sampler {
    pub fn new(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
        Sampler { temperature, top_k, top_p, rng: StdRng::seed_from_u64(seed) }
    }

    pub fn sample(&mut self, logits: &mut [f32]) -> Result<u32> {
        for l in logits.iter_mut() {
            *l /= self.temperature;
        }
        let mut order: Vec<usize> =
            (0..logits.len()).filter(|&i| logits[i] > f32::NEG_INFINITY).collect();
        if order.is_empty() {
            return Err(Error::Invalid("every token was masked out; nothing to sample".into()));
        }
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if self.top_k > 0 {
            order.truncate(self.top_k.max(1));
        }
        let max = logits[order[0]];
        let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.top_p < 1.0 {
            // Keep the smallest prefix whose mass reaches top_p (at least one token).
            let mut mass = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                mass += p;
                if mass >= self.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                return Ok(order[i] as u32);
            }
            u -= p;
        }
        Ok(order[order.len() - 1] as u32)
    }
}
