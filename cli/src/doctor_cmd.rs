//! `owlet doctor`: can this build use the GPU here, and what would stay on the CPU?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use owlet_runtime::bundle::{Bundle, ModelKind};
use owlet_runtime::device::{self, GpuPrecision, Placement};
use owlet_runtime::engine::Graph;
use owlet_runtime::models::blip2::Blip2;
use owlet_runtime::models::clip::Clip;
use serde_json::json;

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
    let mut bundles = Vec::new();
    for dir in models {
        bundles.push((
            dir.clone(),
            if usable { graphs_on_gpu(dir, precision) } else { Err("no usable GPU".into()) },
        ));
    }

    if as_json {
        let b: Vec<_> = bundles
            .iter()
            .map(|(dir, r)| match r {
                Ok(graphs) => json!({"bundle": dir, "graphs": graphs.iter().map(|(role, nodes)| json!({
                    "graph": role, "cpu_nodes": nodes.iter().map(|(op, n)| json!({"op": op, "count": n})).collect::<Vec<_>>()
                })).collect::<Vec<_>>()}),
                Err(e) => json!({"bundle": dir, "error": e}),
            })
            .collect();
        crate::output::print_json(&json!({
            "cuda": report, "problems": problems, "auto_uses": if usable { "cuda" } else { "cpu" },
            "warm_seconds": warmed.as_ref().and_then(|w| w.as_ref().ok()).map(|d| d.as_secs_f64()),
            "bundles": b,
        }));
    } else {
        println!("owlet {} doctor", env!("CARGO_PKG_VERSION"));
        match report.api {
            None => println!(
                "cuda: not built in (build with --features cuda-13, or cuda-12 for JetPack 6)"
            ),
            Some(api) => println!(
                "cuda: built in, for CUDA driver API >= {}.{}",
                api / 1000,
                api % 1000 / 10
            ),
        }
        for (lib, found, _) in &report.libraries {
            println!("  {lib:<18} {}", if *found { "found" } else { "MISSING (LD_LIBRARY_PATH?)" });
        }
        if report.built_in {
            println!(
                "  {:<18} {}",
                "driver",
                report.driver.as_ref().map_or_else(|e| format!("PROBLEM: {e}"), |s| s.clone())
            );
            println!(
                "  {:<18} {}",
                "toolkit headers",
                report
                    .headers
                    .as_ref()
                    .map_or_else(|e| format!("MISSING: {e}"), |p| p.display().to_string())
            );
        }
        if let Some((dir, warm_now)) = &report.kernel_cache {
            let state =
                if *warm_now { "warm" } else { "cold: `owlet doctor --warm` compiles it (~100 s)" };
            println!(
                "  {:<18} {} ({state}; moves with XDG_CACHE_HOME)",
                "kernel cache",
                dir.display()
            );
        }
        match &warmed {
            Some(Ok(d)) => println!("  warmed the kernel cache in {:.1} s", d.as_secs_f64()),
            Some(Err(e)) => println!("  could not warm the kernel cache: {e}"),
            None => {}
        }
        println!("--device auto uses: {}", if usable { "cuda" } else { "cpu" });
        for (dir, r) in &bundles {
            match r {
                Ok(graphs) => {
                    for (role, nodes) in graphs {
                        let list = if nodes.is_empty() {
                            "every node on the GPU".to_string()
                        } else {
                            let l: Vec<String> =
                                nodes.iter().map(|(op, n)| format!("{op} x{n}")).collect();
                            format!("on the CPU: {}", l.join(", "))
                        };
                        println!("{} {role} ({precision:?}): {list}", dir.display());
                    }
                }
                Err(e) => println!("{}: {e}", dir.display()),
            }
        }
    }
    let failed =
        !usable || matches!(warmed, Some(Err(_))) || bundles.iter().any(|(_, r)| r.is_err());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

type GraphNodes = Vec<(&'static str, Vec<(String, usize)>)>;

/// Prepare a bundle's graphs for the GPU and list the node kinds left on the CPU.
fn graphs_on_gpu(
    dir: &PathBuf,
    precision: GpuPrecision,
) -> std::result::Result<GraphNodes, String> {
    let on = Placement::cuda(precision);
    let list = |graphs: Vec<(&'static str, &Graph)>| {
        graphs.into_iter().map(|(r, g)| (r, g.cpu_nodes())).collect()
    };
    let kind = Bundle::open(dir).map_err(|e| e.to_string())?.manifest.kind;
    match kind {
        ModelKind::Clip => {
            Clip::load_on(dir, on).map(|m| list(m.graphs())).map_err(|e| e.to_string())
        }
        ModelKind::Blip2 => {
            Blip2::load_on(dir, on).map(|m| list(m.graphs())).map_err(|e| e.to_string())
        }
    }
}
