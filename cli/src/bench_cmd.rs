//! `owlet bench`: how fast a bundle's graphs run here, on the device asked for.
//! Inputs are synthetic (timing does not depend on them); each figure is the median
//! of --runs after one warm-up run. benches/ and scripts/gpu-test compare these
//! figures with onnxruntime and PyTorch on the same machine.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use owlet_runtime::bundle::{Bundle, ModelKind, Precision};
use owlet_runtime::device::Device;
use owlet_runtime::engine::profile;
use owlet_runtime::generate::StepDecoder;
use serde_json::{json, Value};

use crate::args::Common;

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
fn op_times(runs: usize) -> Value {
    let mut ops: Vec<_> = profile::take().into_iter().collect();
    ops.sort_by_key(|(_, (took, _))| std::cmp::Reverse(*took));
    let per_run = runs.max(1) as f64;
    ops.iter()
        .map(|((role, op), (took, n))| {
            json!({"graph": role, "op": op, "ms": took.as_secs_f64() * 1e3 / per_run, "calls": *n as f64 / per_run})
        })
        .collect()
}

/// What the runs measured, and what a figure needs with it.
struct Measured {
    device: Device,
    /// One row per graph and batch: graph, batch, ms, ops (and a decoder's prefix).
    rows: Vec<Value>,
    /// tract's f32 matrix-product kernels in the plans (e.g. arm64simd_mmm_f32_16x4_a55
    /// on a Pi 4): with owlet's own kernels, the code a figure was made with.
    tract_kernels: BTreeSet<String>,
}

pub fn bench(
    common: &Common,
    batches: &[usize],
    runs: usize,
    steps: usize,
    profiled: bool,
) -> Result<ExitCode> {
    profile::enable(profiled);
    let manifest = Bundle::open(&common.model)?.manifest;
    let measured = match manifest.kind {
        ModelKind::Clip => measure_clip(common, batches, runs)?,
        ModelKind::Blip2 => measure_blip2(common, batches, runs, steps)?,
    };
    // What the matrix products compute in: the GPU's float type; on the CPU int8 for
    // an int8 bundle (owlet's int8 op) and f32 otherwise (fp16 weights are widened).
    let precision = if measured.device == Device::Cuda {
        format!("{:?}", common.gpu_precision).to_lowercase()
    } else if manifest.vision.precision == Precision::Int8 {
        "int8".into()
    } else {
        "f32".into()
    };
    if common.json {
        print_json(common, runs, &precision, measured);
    } else {
        print_text(common, runs, &precision, &measured);
    }
    Ok(ExitCode::SUCCESS)
}

fn measure_clip(common: &Common, batches: &[usize], runs: usize) -> Result<Measured> {
    let clip = crate::load_clip(common)?;
    let mut rows = Vec::new();
    let side = clip.vision.preprocess_spec().crop_size as usize;
    let texts = ["a photo of a red car parked next to a blue person"; 64];
    for &b in batches {
        let px = pixels(b * 3 * side * side);
        let ms = median_ms(runs, || Ok(clip.vision.run_pixels(px.clone(), b).map(|_| ())?))?;
        rows.push(json!({"graph": "clip vision", "batch": b, "ms": ms, "ops": op_times(runs)}));
        let ms = median_ms(runs, || Ok(clip.embed_texts(&texts[..b]).map(|_| ())?))?;
        rows.push(json!({"graph": "clip text", "batch": b, "ms": ms, "ops": op_times(runs)}));
    }
    let tract_kernels = clip.graphs().iter().flat_map(|(_, g)| g.matmul_kernels()).collect();
    Ok(Measured { device: clip.device(), rows, tract_kernels })
}

fn measure_blip2(
    common: &Common,
    batches: &[usize],
    runs: usize,
    steps: usize,
) -> Result<Measured> {
    let m = crate::blip2_cmds::load(common)?;
    let mut rows = Vec::new();
    let side = m.bundle.manifest.vision.preprocess.crop_size as usize;
    let px = pixels(3 * side * side);
    let ms = median_ms(runs, || Ok(m.encode_pixels(px.clone()).map(|_| ())?))?;
    rows.push(json!({"graph": "blip2 vision", "batch": 1, "ms": ms, "ops": op_times(runs)}));
    let q = m.encode_pixels(px)?;
    let ids = m.prompt_ids("Question: what colour is the car? Answer:")?;
    let prefix = m.prefix(&q, &ids);
    let len = q.len + ids.len();
    for &b in batches {
        // A prefill, the cache copied to b rows (as beam search does), then `steps`
        // steps of b tokens; the figure is one step. The profile is of the last
        // run's steps, per step.
        let mut ops = Value::Null;
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
        rows.push(json!({"graph": "blip2 decoder step", "batch": b, "prefix": len, "steps": steps,
                         "ms": step_ms[step_ms.len() / 2], "ops": ops}));
    }
    let tract_kernels = m.graphs().iter().flat_map(|(_, g)| g.matmul_kernels()).collect();
    Ok(Measured { device: m.device(), rows, tract_kernels })
}

/// The threads the graphs ran on (--threads, or the default).
fn threads(common: &Common) -> usize {
    common.threads.map(usize::from).unwrap_or_else(owlet_runtime::engine::default_threads)
}

fn print_json(common: &Common, runs: usize, precision: &str, measured: Measured) {
    let kernels: Vec<Value> = owlet_runtime::kernels::chosen()
        .iter()
        .map(|(family, name)| json!({"family": family, "kernel": name}))
        .collect();
    crate::output::print_json(&json!({
        "model": common.model, "precision": precision, "runs": runs, "results": measured.rows,
        "machine": crate::cpu_info::describe(), "threads": threads(common),
        "kernels": kernels, "tract_matmul_kernels": measured.tract_kernels,
    }));
}

fn print_text(common: &Common, runs: usize, precision: &str, measured: &Measured) {
    let device = measured.device;
    println!("{} on {device} ({precision}), median of {runs} runs", common.model.display());
    // What a figure from a board needs with it (BENCHMARKS.md, "Figures from boards").
    let threads = threads(common);
    let plural = if threads == 1 { "" } else { "s" };
    println!("  machine: {}, {threads} thread{plural}", crate::cpu_info::describe());
    let owlet_kernels: Vec<String> =
        owlet_runtime::kernels::chosen().iter().map(|(f, k)| format!("{f} {k}")).collect();
    println!("  owlet kernels: {}", owlet_kernels.join(", "));
    let tract_kernels: Vec<&str> = measured.tract_kernels.iter().map(String::as_str).collect();
    println!("  tract matmul kernels: {}", tract_kernels.join(", "));
    for r in &measured.rows {
        let ms = r["ms"].as_f64().unwrap_or(0.0);
        let batch = r["batch"].as_u64().unwrap_or(1).max(1) as f64;
        let graph = r["graph"].as_str().unwrap_or("");
        // Per item: an image for the encoders, a text for CLIP's, a token (per row
        // of the batch) for a decoder step.
        let unit = match graph {
            "clip text" => "text",
            "blip2 decoder step" => "token",
            _ => "image",
        };
        println!(
            "  {graph:<20} batch {:>2}  {ms:>9.3} ms  ({:.3} ms per {unit})",
            r["batch"],
            ms / batch
        );
        for op in r["ops"].as_array().into_iter().flatten() {
            // Op time is summed over threads (split batches), so it can exceed the wall time.
            println!(
                "      {:>9.3} ms  {:>5} x  {}",
                op["ms"].as_f64().unwrap_or(0.0),
                op["calls"],
                op["op"].as_str().unwrap_or("")
            );
        }
    }
}
