//! `owlet doctor`: can this build use the GPU here, and what would stay on the CPU?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use owlet_runtime::device::{self, GpuPrecision, Placement};
use owlet_runtime::models::Blip2;
use owlet_runtime::models::Clip;
use owlet_runtime::{Bundle, ModelKind};
use serde_json::json;

/// What `owlet doctor` found, for either printer.
struct Diagnosis {
    report: device::CudaReport,
    problems: Vec<String>,
    /// The GPU can be used (no problems): `--device auto` picks it.
    usable: bool,
    /// `--warm`: how long filling the kernel cache took, or why it failed.
    warmed: Option<std::result::Result<std::time::Duration, String>>,
    /// Each bundle asked about: its graphs' nodes left on the CPU, or why not.
    bundles: Vec<(PathBuf, std::result::Result<GraphNodes, String>)>,
}

pub fn doctor(
    models: &[PathBuf],
    warm: bool,
    precision: GpuPrecision,
    as_json: bool,
) -> Result<ExitCode> {
    let mut report = device::cuda_report();
    let mut warmed = None;
    if warm && report.problems().is_empty() {
        warmed = Some(device::warm_kernel_cache());
        report = device::cuda_report(); // the cache is filled now
    }
    let problems = report.problems();
    let usable = problems.is_empty();
    let bundles = models
        .iter()
        .map(|dir| {
            let graphs =
                if usable { graphs_on_gpu(dir, precision) } else { Err("no usable GPU".into()) };
            (dir.clone(), graphs)
        })
        .collect();
    let d = Diagnosis { report, problems, usable, warmed, bundles };
    if as_json {
        print_json(&d);
    } else {
        print_text(&d, precision);
    }
    let failed =
        !d.usable || matches!(d.warmed, Some(Err(_))) || d.bundles.iter().any(|(_, r)| r.is_err());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_json(d: &Diagnosis) {
    let b: Vec<_> = d
        .bundles
        .iter()
        .map(|(dir, r)| match r {
            Ok(graphs) => json!({"bundle": dir, "graphs": graphs.iter().map(|(role, nodes)| json!({
                "graph": role, "cpu_nodes": nodes.iter().map(|(op, n)| json!({"op": op, "count": n})).collect::<Vec<_>>()
            })).collect::<Vec<_>>()}),
            Err(e) => json!({"bundle": dir, "error": e}),
        })
        .collect();
    crate::output::print_json(&json!({
        "cuda": d.report, "problems": d.problems, "auto_uses": if d.usable { "cuda" } else { "cpu" },
        "warm_seconds": d.warmed.as_ref().and_then(|w| w.as_ref().ok()).map(|t| t.as_secs_f64()),
        "bundles": b,
    }));
}

fn print_text(d: &Diagnosis, precision: GpuPrecision) {
    let report = &d.report;
    println!("owlet {} doctor", env!("CARGO_PKG_VERSION"));
    match report.api {
        None => {
            println!("cuda: not built in (build with --features cuda-13, or cuda-12 for JetPack 6)")
        }
        Some(api) => {
            println!("cuda: built in, for CUDA driver API >= {}.{}", api / 1000, api % 1000 / 10)
        }
    }
    for (lib, found, _) in &report.libraries {
        println!("  {lib:<18} {}", if *found { "found" } else { "MISSING (LD_LIBRARY_PATH?)" });
    }
    if report.built_in {
        let driver = report.driver.as_ref().map_or_else(|e| format!("PROBLEM: {e}"), |s| s.clone());
        println!("  {:<18} {driver}", "driver");
        let headers = report
            .headers
            .as_ref()
            .map_or_else(|e| format!("MISSING: {e}"), |p| p.display().to_string());
        println!("  {:<18} {headers}", "toolkit headers");
    }
    if let Some((dir, warm_now)) = &report.kernel_cache {
        let state =
            if *warm_now { "warm" } else { "cold: `owlet doctor --warm` compiles it (~100 s)" };
        println!("  {:<18} {} ({state}; moves with XDG_CACHE_HOME)", "kernel cache", dir.display());
    }
    match &d.warmed {
        Some(Ok(t)) => println!("  warmed the kernel cache in {:.1} s", t.as_secs_f64()),
        Some(Err(e)) => println!("  could not warm the kernel cache: {e}"),
        None => {}
    }
    println!("--device auto uses: {}", if d.usable { "cuda" } else { "cpu" });
    for (dir, r) in &d.bundles {
        let graphs = match r {
            Ok(graphs) => graphs,
            Err(e) => {
                println!("{}: {e}", dir.display());
                continue;
            }
        };
        for (role, nodes) in graphs {
            let list = if nodes.is_empty() {
                "every node on the GPU".to_string()
            } else {
                let l: Vec<String> = nodes.iter().map(|(op, n)| format!("{op} x{n}")).collect();
                format!("on the CPU: {}", l.join(", "))
            };
            println!("{} {role} ({precision:?}): {list}", dir.display());
        }
    }
}

type GraphNodes = Vec<(&'static str, Vec<(String, usize)>)>;

/// Prepare a bundle's graphs for the GPU and list the node kinds left on the CPU.
fn graphs_on_gpu(
    dir: &PathBuf,
    precision: GpuPrecision,
) -> std::result::Result<GraphNodes, String> {
    let on = Placement::cuda(precision);
    let kind = Bundle::open(dir).map_err(|e| e.to_string())?.manifest.kind;
    match kind {
        ModelKind::Clip => Clip::load_on(dir, on).map(|m| m.cpu_nodes()).map_err(|e| e.to_string()),
        ModelKind::Blip2 => {
            Blip2::load_on(dir, on).map(|m| m.cpu_nodes()).map_err(|e| e.to_string())
        }
    }
}
