//! The loop against a small fake decoder whose logits are a function of the last
//! token: greedy must follow the argmax chain, beam search must find the best
//! sequence a brute force finds, and the prefix must be run exactly once.

use super::*;

/// Logits for next token = table[last token]; counts the work it is asked to do.
struct Bigram {
    vocab: usize,
    table: Vec<Vec<f32>>,
    rows: Vec<u32>,
    prefills: usize,
    steps: usize,
    fed: usize,
}

impl Bigram {
    fn new(vocab: usize, seed: u64) -> Bigram {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 6.0 - 3.0
        };
        let table = (0..vocab).map(|_| (0..vocab).map(|_| next()).collect()).collect();
        Bigram { vocab, table, rows: vec![], prefills: 0, steps: 0, fed: 0 }
    }
}

impl StepDecoder for Bigram {
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn prefill(&mut self, _: &[f32], len: usize) -> Result<Vec<f32>> {
        self.prefills += 1;
        self.fed += len;
        self.rows = vec![0];
        Ok(self.table[0].clone())
    }
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.steps += 1;
        self.fed += tokens.len();
        self.rows = tokens.to_vec();
        Ok(tokens.iter().flat_map(|&t| self.table[t as usize].clone()).collect())
    }
    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        self.rows = rows.iter().map(|&r| self.rows[r]).collect();
        Ok(())
    }
}

fn cfg(strategy: Strategy, max_new: usize) -> GenerationConfig {
    GenerationConfig {
        strategy,
        max_new_tokens: max_new,
        min_new_tokens: 0,
        repetition_penalty: 1.0,
        eos_token_id: 1,
    }
}

#[test]
fn greedy_follows_the_argmax_chain_and_runs_the_prefix_once() {
    let mut d = Bigram::new(12, 7);
    let mut streamed = vec![];
    let out = generate(
        &mut d,
        &Prefix { embeds: &[0.0; 40], len: 10, context_ids: &[] },
        &cfg(Strategy::Greedy, 8),
        &mut |t| streamed.push(t),
    )
    .unwrap();
    let mut last = 0usize;
    for &t in &out {
        let want = argmax(&d.table[last]);
        assert_eq!(t, want);
        last = t as usize;
        if t == 1 {
            break;
        }
    }
    assert_eq!(streamed, out);
    assert_eq!(d.prefills, 1);
    assert_eq!(d.steps, out.len() - 1, "one decoder call per new token after the prefill");
    assert_eq!(d.fed, 10 + out.len() - 1, "the prefix is never fed again");
}

fn seq_logprob(d: &Bigram, seq: &[u32]) -> f32 {
    let mut last = 0usize;
    let mut total = 0.0;
    for &t in seq {
        let mut row = d.table[last].clone();
        log_softmax(&mut row);
        total += row[t as usize];
        last = t as usize;
    }
    total
}

#[test]
fn wide_beam_search_finds_the_best_fixed_length_sequence_a_brute_force_finds() {
    // Without eos in reach (eos id out of the vocab) every hypothesis has the same
    // length, so a beam as wide as the vocabulary is exact.
    let d0 = Bigram::new(5, 3);
    let mut c = cfg(Strategy::Beam { num_beams: 5, length_penalty: 1.0, early_stopping: false }, 3);
    c.eos_token_id = 99;
    let mut d = Bigram::new(5, 3);
    let out = generate(&mut d, &Prefix { embeds: &[], len: 1, context_ids: &[] }, &c, &mut |_| {})
        .unwrap();
    let mut best = (f32::NEG_INFINITY, vec![]);
    for a in 0..5u32 {
        for b in 0..5u32 {
            for e in 0..5u32 {
                let s = seq_logprob(&d0, &[a, b, e]);
                if s > best.0 {
                    best = (s, vec![a, b, e]);
                }
            }
        }
    }
    assert_eq!(out, best.1);
}

#[test]
fn min_new_tokens_blocks_eos_and_max_new_tokens_bounds_the_output() {
    let mut d = Bigram::new(6, 11);
    // Make eos (1) the argmax everywhere.
    for row in &mut d.table {
        row[1] = 100.0;
    }
    let mut c = cfg(Strategy::Greedy, 5);
    assert_eq!(
        generate(&mut d, &Prefix { embeds: &[], len: 1, context_ids: &[] }, &c, &mut |_| {})
            .unwrap(),
        vec![1]
    );
    c.min_new_tokens = 3;
    let out = generate(&mut d, &Prefix { embeds: &[], len: 1, context_ids: &[] }, &c, &mut |_| {})
        .unwrap();
    assert_eq!(out.len(), 4);
    assert!(out[..3].iter().all(|&t| t != 1) && out[3] == 1);
}

#[test]
fn sampling_is_reproducible_from_its_seed_and_respects_top_k() {
    let run = |seed| {
        let mut d = Bigram::new(30, 5);
        let s = Strategy::Sample { temperature: 0.8, top_k: 3, top_p: 1.0, seed };
        let mut c = cfg(s, 20);
        c.eos_token_id = 99;
        generate(&mut d, &Prefix { embeds: &[], len: 1, context_ids: &[] }, &c, &mut |_| {})
            .unwrap()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    let d = Bigram::new(30, 5);
    let out = run(42);
    let mut last = 0usize;
    for &t in &out {
        let mut order: Vec<usize> = (0..30).collect();
        order.sort_by(|&a, &b| d.table[last][b].total_cmp(&d.table[last][a]));
        assert!(order[..3].contains(&(t as usize)), "token outside the top 3");
        last = t as usize;
    }
}

#[test]
fn invalid_settings_are_errors() {
    let mut d = Bigram::new(4, 1);
    for c in [
        cfg(Strategy::Greedy, 0),
        cfg(Strategy::Beam { num_beams: 0, length_penalty: 1.0, early_stopping: false }, 4),
        cfg(Strategy::Sample { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }, 4),
        cfg(Strategy::Sample { temperature: 1.0, top_k: 0, top_p: 0.0, seed: 0 }, 4),
    ] {
        assert!(
            generate(&mut d, &Prefix { embeds: &[], len: 1, context_ids: &[] }, &c, &mut |_| {})
                .is_err(),
            "{c:?}"
        );
    }
}
