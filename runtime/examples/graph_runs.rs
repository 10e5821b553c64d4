//! One graph of a bundle, run a number of times on a prepared input, on one thread:
//! the workload whose guest instructions `benches/qemu/graphs.sh` and `peer.sh`
//! count under qemu. After one uncounted warm-up run, the RUNS runs are marked for
//! the counting plugin (`mark`), which reports their instructions alone: start-up,
//! loading and planning are left out, and so is preparing the input (pixels and
//! token ids are made before the first run, not decoded from a JPEG or tokenized,
//! which would hide a kernel).
//!
//!   graph_runs BUNDLE GRAPH RUNS
//!
//! GRAPH: `vision` or `text` for a CLIP bundle; `vision` or `decoder` (one step of
//! one token, after a prefill of synthetic image queries and a short prompt) for
//! BLIP-2.
//! Built with the runtime's tests (`cargo test` builds examples), so the ARM stage
//! of `scripts/test` has it without building anything else.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use owlet_runtime::engine;
use owlet_runtime::generate::StepDecoder;
use owlet_runtime::models::Clip;
use owlet_runtime::models::{Blip2, ImageQueries};
use owlet_runtime::RuntimeOptions;
use owlet_runtime::{Bundle, ModelKind};

/// Deterministic pixels in [-1, 1): timing and instruction counts do not depend on
/// them, and the same input every time keeps counts comparable across builds.
fn pixels(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect()
}

/// Marks where the counted part starts and ends for benches/qemu/insn_count.c:
/// getppid (which takes no argument, so the kernel ignores it) with "owlet" in the
/// first argument register. The plugin reports the instructions between two marks
/// on their own, without the start-up, loading and planning, whose count varies by
/// millions from process to process (hash maps are seeded per process).
fn mark() {
    // SAFETY: getppid reads no argument and cannot fail.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::syscall(libc::SYS_getppid, 0x006f_776c_6574_u64);
    }
}

/// `runs` calls of `f` between two marks (after one uncounted call: first-run
/// allocations are not what a run costs).
fn counted(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    f()?;
    mark();
    for _ in 0..runs {
        f()?;
    }
    mark();
    Ok(())
}

fn run(dir: &str, graph: &str, runs: usize) -> Result<()> {
    let kind = Bundle::open(dir)?.manifest.kind;
    match (kind, graph) {
        (ModelKind::Clip, "vision") => {
            let clip = Clip::load(dir)?;
            let side = clip.vision().preprocess_spec().crop_size as usize;
            let px = pixels(3 * side * side);
            counted(runs, || Ok(clip.vision().run_pixels(px.clone(), 1).map(drop)?))?;
        }
        (ModelKind::Clip, "text") => {
            let clip = Clip::load(dir)?;
            let enc = clip.text().tokenizer().encode_batch(&["a photo of a red car"])?;
            counted(runs, || Ok(clip.text().run_encoded(&enc).map(drop)?))?;
        }
        (ModelKind::Blip2, "vision") => {
            let m = Blip2::load(dir)?;
            let side = m.bundle.manifest.vision.preprocess.crop_size as usize;
            let px = pixels(3 * side * side);
            counted(runs, || Ok(m.encode_pixels(px.clone()).map(drop)?))?;
        }
        (ModelKind::Blip2, "decoder") => {
            let m = Blip2::load(dir)?;
            // Synthetic image queries, small as the Q-Former's are: the vision graph
            // would cost minutes under qemu, and only the steps are counted.
            let n = m.generation_spec().num_query_tokens;
            let width = m.bundle.manifest.vision.embed_dim;
            let data = pixels(n * width).iter().map(|p| p * 0.1).collect();
            let queries = ImageQueries { data, len: n };
            let ids = m.prompt_ids("a photo of")?;
            let prefix = m.prefix(&queries, &ids);
            let mut session = m.session();
            session.prefill(&prefix, queries.len + ids.len())?;
            // Same token each step: the cache grows by one row a step, as in a caption.
            counted(runs, || Ok(session.step(&[ids[0]]).map(drop)?))?;
        }
        _ => bail!(
            "no {graph} graph in a {kind:?} bundle (clip: vision, text; blip2: vision, decoder)"
        ),
    }
    Ok(())
}

fn main() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, graph, runs] = &args[..] else {
        eprintln!("usage: graph_runs BUNDLE vision|text|decoder RUNS");
        return Ok(ExitCode::from(2));
    };
    let runs: usize = runs.parse().with_context(|| format!("RUNS {runs:?} is not a count"))?;
    // The OWLET_* switches, as the owlet binary reads them (to count an A/B pair).
    let _ = RuntimeOptions::from_env().install();
    engine::set_threads(1);
    run(dir, graph, runs)?;
    Ok(ExitCode::SUCCESS)
}
