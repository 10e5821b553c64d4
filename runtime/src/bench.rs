//! How fast a loaded model's graphs run here: what `owlet bench` prints and a board
//! owner reports. Inputs are synthetic (timing does not depend on them) and
//! preprocessing is left out; each figure is the median of the timed runs after one
//! warm-up run. Per-op times are recorded when [`profile_ops`] turned them on.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::device::Device;
use crate::engine::profile;
use crate::error::Result;
use crate::generate::StepDecoder;
use crate::models::Blip2;
use crate::models::Clip;

/// What the runs measured, and what a figure needs with it.
pub struct Measured {
    /// Where the graphs ran.
    pub device: Device,
    /// One row per graph and batch.
    pub rows: Vec<Row>,
    /// tract's f32 matrix-product kernels in the plans (e.g.
    /// arm64simd_mmm_f32_16x4_a55 on a Pi 4): with [`Measured::owlet_kernels`], the
    /// code a figure was made with.
    pub tract_kernels: BTreeSet<String>,
    /// owlet's own kernel per family on this CPU (family, kernel).
    pub owlet_kernels: Vec<(&'static str, &'static str)>,
}

/// One graph at one batch size.
pub struct Row {
    /// "clip vision", "clip text", "blip2 vision" or "blip2 decoder step".
    pub graph: &'static str,
    /// Images, texts, or rows of a decoder step (beams).
    pub batch: usize,
    /// Median milliseconds of one run (of one step, for a decoder step).
    pub ms: f64,
    /// A decoder step's cache length before the steps (image queries + prompt), and
    /// the steps timed; `None` for the encoders.
    pub decoder: Option<(usize, usize)>,
    /// Per-op times, per run, heaviest first (empty unless profiling).
    pub ops: Vec<OpTime>,
}

/// One op's share of a run.
pub struct OpTime {
    /// The op's graph role ("vision", "text", "decoder").
    pub graph: &'static str,
    /// tract's name for the op.
    pub op: String,
    /// Milliseconds per run, summed over threads (so it can exceed the wall time).
    pub ms: f64,
    /// Calls per run.
    pub calls: f64,
}

/// Records per-op times in the runs that follow (or stops recording).
pub fn profile_ops(on: bool) {
    profile::enable(on);
}

fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up: first-run allocations, GPU uploads
    profile::take(); // the profile covers the timed runs only
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn pixels(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect()
}

/// The op times recorded since the last take, per run, heaviest first.
fn op_times(runs: usize) -> Vec<OpTime> {
    let per_run = runs.max(1) as f64;
    let mut ops: Vec<OpTime> = profile::take()
        .into_iter()
        .map(|((graph, op), (took, n))| OpTime {
            graph,
            op,
            ms: took.as_secs_f64() * 1e3 / per_run,
            calls: n as f64 / per_run,
        })
        .collect();
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    ops
}

/// CLIP's two towers at each batch size: the vision graph on preprocessed pixels,
/// the text graph on a fixed prompt (tokenizing included: it is microseconds).
pub fn clip(clip: &Clip, batches: &[usize], runs: usize) -> Result<Measured> {
    let mut rows = Vec::new();
    let side = clip.vision().preprocess_spec().crop_size as usize;
    let texts = ["a photo of a red car parked next to a blue person"; 64];
    for &b in batches {
        let px = pixels(b * 3 * side * side);
        let ms = median_ms(runs, || clip.vision().run_pixels(px.clone(), b).map(|_| ()))?;
        rows.push(Row { graph: "clip vision", batch: b, ms, decoder: None, ops: op_times(runs) });
        let b_texts = &texts[..b.min(texts.len())];
        let ms = median_ms(runs, || clip.embed_texts(b_texts).map(|_| ()))?;
        rows.push(Row { graph: "clip text", batch: b, ms, decoder: None, ops: op_times(runs) });
    }
    let tract_kernels = clip.graphs().iter().flat_map(|(_, g)| g.matmul_kernels()).collect();
    Ok(Measured {
        device: clip.device(),
        rows,
        tract_kernels,
        owlet_kernels: crate::kernels::chosen(),
    })
}

/// BLIP-2's vision graph on one image, then, per batch size b, a decoder step of b
/// rows: a prefill of [queries, a question prompt], the cache copied to b rows (as
/// beam search does), then `steps` steps; the figure is one step, the median over
/// ⌈runs/4⌉ such runs, and the profile is of the last run's steps.
pub fn blip2(m: &Blip2, batches: &[usize], runs: usize, steps: usize) -> Result<Measured> {
    let mut rows = Vec::new();
    let side = m.bundle.manifest.vision.preprocess.crop_size as usize;
    let px = pixels(3 * side * side);
    let ms = median_ms(runs, || m.encode_pixels(px.clone()).map(|_| ()))?;
    rows.push(Row { graph: "blip2 vision", batch: 1, ms, decoder: None, ops: op_times(runs) });
    let q = m.encode_pixels(px)?;
    let ids = m.prompt_ids("Question: what colour is the car? Answer:")?;
    let prefix = m.prefix(&q, &ids);
    let len = q.len + ids.len();
    for &b in batches {
        let mut ops = Vec::new();
        let mut run = || -> Result<f64> {
            let mut s = m.session();
            s.prefill(&prefix, len)?;
            s.reorder(&vec![0; b])?;
            profile::take();
            let t = Instant::now();
            for k in 0..steps {
                s.step(&vec![ids[k % ids.len()]; b])?;
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64;
            ops = op_times(steps);
            Ok(ms)
        };
        run()?; // warm-up
        let mut step_ms = Vec::new();
        for _ in 0..runs.div_ceil(4).max(1) {
            step_ms.push(run()?);
        }
        step_ms.sort_by(f64::total_cmp);
        let ms = step_ms[step_ms.len() / 2];
        rows.push(Row {
            graph: "blip2 decoder step",
            batch: b,
            ms,
            decoder: Some((len, steps)),
            ops,
        });
    }
    let tract_kernels = m.graphs().iter().flat_map(|(_, g)| g.matmul_kernels()).collect();
    Ok(Measured {
        device: m.device(),
        rows,
        tract_kernels,
        owlet_kernels: crate::kernels::chosen(),
    })
}
