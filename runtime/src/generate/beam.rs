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

    // Running beams: only the first is real at the start (the others score -1e9).
    let mut running: Vec<Hyp> = (0..nb)
        .map(|i| Hyp {
            tokens: Vec::new(),
            score: if i == 0 { 0.0 } else { MASKED },
            finished: false,
        })
        .collect();
    let mut done: Vec<Hyp> =
        (0..nb).map(|_| Hyp { tokens: Vec::new(), score: MASKED, finished: false }).collect();
    let mut heuristic_unsatisfied = true;

    let first = decoder.prefill(prefix.embeds, prefix.len)?;
    // Every beam starts from the same prefix: replicate the one cached row.
    decoder.reorder(&vec![0; nb])?;
    let mut logits: Vec<f32> = first.iter().cloned().cycle().take(nb * vocab).collect();

    loop {
        let generated = running[0].tokens.len();
        // Accumulated scores of every (beam, token) continuation.
        let mut acc = vec![0f32; nb * vocab];
        for (b, beam) in running.iter().enumerate() {
            let row = &mut logits[b * vocab..][..vocab];
            log_softmax(row);
            procs.apply(row, prefix.context_ids, &beam.tokens);
            for (a, &lp) in acc[b * vocab..][..vocab].iter_mut().zip(row.iter()) {
                *a = lp + beam.score;
            }
        }
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
        let mut merged: Vec<Hyp> = done.clone();
        for k in 0..cand.len() {
            let just_finished = hits[k] && k < nb;
            let mut s = cand_score[k] / denom;
            s += if all_done { MASKED } else { 0.0 };
            s += if !heuristic_unsatisfied { MASKED } else { 0.0 };
            s += if !just_finished { MASKED } else { 0.0 };
            let mut tokens = running[cand_beam[k]].tokens.clone();
            tokens.push(cand_tok[k]);
            merged.push(Hyp { tokens, score: s, finished: just_finished });
        }
        let merged_scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
        done = topk(&merged_scores, nb).into_iter().map(|i| merged[i].clone()).collect();

        let new_running: Vec<Hyp> = next
            .iter()
            .map(|&k| {
                let mut tokens = running[cand_beam[k]].tokens.clone();
                tokens.push(cand_tok[k]);
                Hyp { tokens, score: run_scores[k], finished: false }
            })
            .collect();
        let rows: Vec<usize> = next.iter().map(|&k| cand_beam[k]).collect();
        running = new_running;

        // Early-stop heuristic (early_stopping=False): can the best running beam,
        // at its current length, still beat the worst finished one?
        let gen_len = (generated + 1) as f32;
        let best_possible = running[0].score / gen_len.powf(p.length_penalty);
        let min_done = done.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        let improvable =
            done.iter().any(|h| best_possible > if h.finished { min_done } else { MASKED });
        heuristic_unsatisfied &= improvable;

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

#[cfg(test)]
mod tests {
    use super::topk;

    #[test]
    fn topk_is_sorted_and_prefers_lower_index_on_ties() {
        assert_eq!(topk(&[1.0, 3.0, 2.0, 3.0], 3), vec![1, 3, 2]);
        assert_eq!(topk(&[0.5], 4), vec![0]);
    }
}
