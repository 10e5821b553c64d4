//! `owlet bench`: how fast a bundle's graphs run here, on the device asked for.
//! Inputs are synthetic (timing does not depend on them); each figure is the median
//! of --runs after one warm-up run. benches/ and scripts/gpu-test compare these
//! figures with onnxruntime and PyTorch on the same machine.

use std::process::ExitCode;

use anyhow::Result;
use owlet_runtime::bench::{self, Measured, OpTime};
use owlet_runtime::{Bundle, Device, ModelKind, Precision};
use serde_json::{json, Value};

use crate::args::Common;

pub fn bench(
    common: &Common,
    batches: &[usize],
    runs: usize,
    steps: usize,
    profiled: bool,
) -> Result<ExitCode> {
    bench::profile_ops(profiled);
    let manifest = Bundle::open(&common.model)?.manifest;
    let measured = match manifest.kind {
        ModelKind::Clip => bench::clip(&crate::load_clip(common)?, batches, runs)?,
        ModelKind::Blip2 => bench::blip2(&crate::blip2_cmds::load(common)?, batches, runs, steps)?,
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

/// The threads the graphs ran on (--threads, or the default).
fn threads(common: &Common) -> usize {
    common.threads.map(usize::from).unwrap_or_else(owlet_runtime::default_threads)
}

fn print_json(common: &Common, runs: usize, precision: &str, measured: Measured) {
    let kernels: Vec<Value> = measured
        .owlet_kernels
        .iter()
        .map(|(family, name)| json!({"family": family, "kernel": name}))
        .collect();
    let ops = |ops: &[OpTime]| -> Vec<Value> {
        ops.iter()
            .map(|o| json!({"graph": o.graph, "op": o.op, "ms": o.ms, "calls": o.calls}))
            .collect()
    };
    let rows: Vec<Value> = measured
        .rows
        .iter()
        .map(|r| {
            let mut v = json!({"graph": r.graph, "batch": r.batch, "ms": r.ms, "ops": ops(&r.ops)});
            if let Some((prefix, steps)) = r.decoder {
                v["prefix"] = json!(prefix);
                v["steps"] = json!(steps);
            }
            v
        })
        .collect();
    crate::output::print_json(&json!({
        "model": common.model, "precision": precision, "runs": runs, "results": rows,
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
        measured.owlet_kernels.iter().map(|(f, k)| format!("{f} {k}")).collect();
    println!("  owlet kernels: {}", owlet_kernels.join(", "));
    let tract_kernels: Vec<&str> = measured.tract_kernels.iter().map(String::as_str).collect();
    println!("  tract matmul kernels: {}", tract_kernels.join(", "));
    for r in &measured.rows {
        let (ms, graph) = (r.ms, r.graph);
        // Per item: an image for the encoders, a text for CLIP's, a token (per row
        // of the batch) for a decoder step.
        let unit = match graph {
            "clip text" => "text",
            "blip2 decoder step" => "token",
            _ => "image",
        };
        println!(
            "  {graph:<20} batch {:>2}  {ms:>9.3} ms  ({:.3} ms per {unit})",
            r.batch,
            ms / r.batch.max(1) as f64
        );
        for op in &r.ops {
            // Op time is summed over threads (split batches), so it can exceed the wall time.
            println!("      {:>9.3} ms  {:>5} x  {}", op.ms, op.calls, op.op);
        }
    }
}
