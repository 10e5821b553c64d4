//! Beam search, as transformers' `_beam_search` (v5) does it for one input:
//! 2 * num_beams candidates a step, finished hypotheses scored by
//! sum(log p) / generated_len ^ length_penalty, its early-stop heuristic, and its
//! -1e9 masking arithmetic (in f32, as torch does), so that ties and near-ties
//! resolve the same way.

use super::{log_softmax, GenerationConfig, Prefix, Processors, StepDecoder};
use crate::error::Result;

const MASKED: f32 = -1.0e9;

pub struct BeamParams {
    pub num_beams: usize,
    pub length_penalty: f32,
    pub early_stopping: bool,
}

#[derive(Clone)]
struct Hyp {
    tokens: Vec<u32>,
    score: f32,
    finished: bool,
}

/// Indices of the `k` largest values, largest first (stable on ties, as torch.topk
/// on CPU is in practice for distinct values).
fn topk(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        values[b].total_cmp(&values[a]).then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx
}

pub fn search(
    decoder: &mut dyn StepDecoder,
    prefix: &Prefix<'_>,
    cfg: &GenerationConfig,
    procs: &Processors,
    p: BeamParams,
) -> Result<Vec<u32>> {
    let nb = p.num_beams;
    let keep = 2 * nb; // max(2, 1 + number of eos ids) * num_beams, with one eos id
    let vocab = decoder.vocab_size();

    let (mut running, mut done) = (starting_beams(nb), vec![Hyp::empty(MASKED); nb]);
    let mut heuristic_unsatisfied = true;

    let first = decoder.prefill(prefix.embeds, prefix.len)?;
    // Every beam starts from the same prefix: replicate the one cached row.
    decoder.reorder(&vec![0; nb])?;
    let mut logits: Vec<f32> = first.iter().cloned().cycle().take(nb * vocab).collect();

    loop {
        let generated = running[0].tokens.len();
        let acc = accumulated(&running, &mut logits, vocab, procs, prefix.context_ids);
        let cand = topk(&acc, keep);
        let cand_beam: Vec<usize> = cand.iter().map(|&i| i / vocab).collect();
        let cand_tok: Vec<u32> = cand.iter().map(|&i| (i % vocab) as u32).collect();
        let cand_score: Vec<f32> = cand.iter().map(|&i| acc[i]).collect();
        let hits: Vec<bool> = cand_tok
            .iter()
            .map(|&t| t == cfg.eos_token_id || generated + 1 >= cfg.max_new_tokens)
            .collect();

        // Next running beams: the best candidates that did not just stop.
        let run_scores: Vec<f32> =
            cand_score.iter().zip(&hits).map(|(&s, &h)| s + if h { MASKED } else { 0.0 }).collect();
        let next = topk(&run_scores, nb);

        // Finished hypotheses: merge the previous ones with the top-num_beams
        // candidates that stopped, keep the best num_beams.
        let all_done = done.iter().all(|h| h.finished) && p.early_stopping;
        let denom = ((generated + 1) as f32).powf(p.length_penalty);
        let closed = [all_done, !heuristic_unsatisfied];
        let mut merged: Vec<Hyp> = done.clone();
        merged.extend((0..cand.len()).map(|k| {
            let just_finished = hits[k] && k < nb;
            let tokens = extended(&running[cand_beam[k]], cand_tok[k]);
            let score = masked(cand_score[k] / denom, closed, just_finished);
            Hyp { tokens, score, finished: just_finished }
        }));
        let merged_scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
        done = topk(&merged_scores, nb).into_iter().map(|i| merged[i].clone()).collect();

        let new_running: Vec<Hyp> = next
            .iter()
            .map(|&k| Hyp {
                tokens: extended(&running[cand_beam[k]], cand_tok[k]),
                score: run_scores[k],
                finished: false,
            })
            .collect();
        let rows: Vec<usize> = next.iter().map(|&k| cand_beam[k]).collect();
        running = new_running;

        heuristic_unsatisfied &= improvable(&running[0], &done, generated + 1, p.length_penalty);

        let open = !(done.iter().all(|h| h.finished) && p.early_stopping);
        let can_continue = !hits.iter().all(|&h| h);
        if !(heuristic_unsatisfied && open && can_continue) {
            break;
        }
        decoder.reorder(&rows)?;
        let last: Vec<u32> =
            running.iter().map(|h| *h.tokens.last().expect("one token per step")).collect();
        logits = decoder.step(&last)?;
    }
    Ok(done.into_iter().next().map(|h| h.tokens).unwrap_or_default())
}

/// The accumulated score of every (beam, token) continuation, beam-major: each
/// beam's log-probabilities (after the logits processors) plus its score so far.
fn accumulated(
    running: &[Hyp],
    logits: &mut [f32],
    vocab: usize,
    procs: &Processors,
    context: &[u32],
) -> Vec<f32> {
    let mut acc = vec![0f32; running.len() * vocab];
    for (b, beam) in running.iter().enumerate() {
        let row = &mut logits[b * vocab..][..vocab];
        log_softmax(row);
        procs.apply(row, context, &beam.tokens);
        for (a, &lp) in acc[b * vocab..][..vocab].iter_mut().zip(row.iter()) {
            *a = lp + beam.score;
        }
    }
    acc
}

/// The early-stop heuristic (early_stopping=False): can the best running beam, at
/// its current length, still beat the worst finished one?
fn improvable(best: &Hyp, done: &[Hyp], generated: usize, length_penalty: f32) -> bool {
    let best_possible = best.score / (generated as f32).powf(length_penalty);
    let min_done = done.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    done.iter().any(|h| best_possible > if h.finished { min_done } else { MASKED })
}

/// A candidate's score among the finished ones: each reason to leave it out (all
/// finished and early stopping, the heuristic satisfied, not just finished) adds
/// a mask, in that order, as transformers does.
fn masked(score: f32, closed: [bool; 2], just_finished: bool) -> f32 {
    let mut score = score;
    for masked in [closed[0], closed[1], !just_finished] {
        score += if masked { MASKED } else { 0.0 };
    }
    score
}

impl Hyp {
    fn empty(score: f32) -> Hyp {
        Hyp { tokens: Vec::new(), score, finished: false }
    }
}

/// Running beams at the start: only the first is real (the others score -1e9).
fn starting_beams(nb: usize) -> Vec<Hyp> {
    (0..nb).map(|i| Hyp::empty(if i == 0 { 0.0 } else { MASKED })).collect()
}

/// A hypothesis's tokens and one more.
fn extended(h: &Hyp, token: u32) -> Vec<u32> {
    let mut tokens = Vec::with_capacity(h.tokens.len() + 1);
    tokens.extend_from_slice(&h.tokens);
    tokens.push(token);
    tokens
}

#[cfg(test)]
mod tests {
    use super::topk;

    #[test]
    fn topk_is_sorted_and_prefers_lower_index_on_ties() {
        assert_eq!(topk(&[1.0, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
        assert_eq!(topk(&[0.5], 4), vec![0]);
    }
}
