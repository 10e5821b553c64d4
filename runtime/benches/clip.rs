//! CLIP benchmark: owlet (tract) against onnxruntime on the same bundle graphs, same
//! machine, same thread count, in one run. Not a test: run it with
//!
//!     benches/clip.sh            (exports a random-weight ViT-B/32 bundle first)
//!
//! or directly:
//!
//!     cargo bench -p owlet-runtime --bench clip -- --model B [--threads N] [--iters N]
//!
//! Prints the median of each side and the ratio owlet / onnxruntime (< 1: owlet faster)
//! for the vision and text graphs at batch 1 and 8.
//!
//! With `--int8 BUNDLE8` (BUNDLE8 = `owlet-quantize BUNDLE BUNDLE8 --to int8`) it also
//! times owlet on BUNDLE8 and onnxruntime on its own int8 form of the same fp32
//! graphs (quantize_dynamic, per channel; benches/ort_clip.py --int8), in the same
//! run, and prints that ratio too.
//!
//! With `--fp16 BUNDLE16` (`owlet-quantize BUNDLE BUNDLE16 --to fp16`) it times owlet
//! on BUNDLE16 too and prints owlet fp16 / owlet fp32 (fp16 bundles compute in f32
//! on x86-64, in f16 on aarch64 CPUs with f16 arithmetic).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use owlet_runtime::engine;
use owlet_runtime::models::Clip;
use owlet_runtime::tokenize::EncodedBatch;

struct Opts {
    model: PathBuf,
    int8: Option<PathBuf>,
    fp16: Option<PathBuf>,
    threads: usize,
    iters: usize,
    batches: Vec<usize>,
    /// Time `model` alone and print the medians as JSON (`time_owlet_fresh`).
    owlet_only: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        model: PathBuf::new(),
        int8: None,
        fp16: None,
        threads: engine::default_threads(),
        iters: 10,
        batches: vec![1, 8],
        owlet_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => o.model = args.next().expect("--model BUNDLE").into(),
            "--int8" => o.int8 = Some(args.next().expect("--int8 BUNDLE").into()),
            "--fp16" => o.fp16 = Some(args.next().expect("--fp16 BUNDLE").into()),
            "--threads" => {
                o.threads = args.next().and_then(|v| v.parse().ok()).expect("--threads N")
            }
            "--iters" => o.iters = args.next().and_then(|v| v.parse().ok()).expect("--iters N"),
            "--batches" => {
                o.batches = args
                    .next()
                    .expect("--batches 1,8")
                    .split(',')
                    .map(|b| b.parse().expect("batch"))
                    .collect()
            }
            "--owlet-only" => o.owlet_only = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!o.model.as_os_str().is_empty(), "--model BUNDLE is required");
    o
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_ms(warmup: usize, iters: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// owlet's medians for (graph, batch) on one bundle.
fn time_owlet(clip: &Clip, o: &Opts) -> Vec<(String, usize, f64)> {
    let side = clip.vision().preprocess_spec().crop_size as usize;
    let ctx = clip.text().tokenizer().context_length();
    let mut owlet: Vec<(String, usize, f64)> = Vec::new();
    for &b in &o.batches {
        // Same input distributions as benches/ort_clip.py (values don't change the cost).
        let pixels: Vec<f32> =
            (0..b * 3 * side * side).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let v = time_ms(2, o.iters, || {
            clip.vision().run_pixels(pixels.clone(), b).expect("vision runs");
        });
        owlet.push(("vision".into(), b, median(v)));
        let mut ids = vec![49407i64; b * ctx];
        let mut mask = vec![0i64; b * ctx];
        for r in 0..b {
            ids[r * ctx] = 49406;
            for j in 1..9 {
                ids[r * ctx + j] = 300 + (r * 31 + j * 977) as i64 % 39000;
            }
            mask[r * ctx..r * ctx + 10].fill(1);
        }
        let enc =
            EncodedBatch { batch: b, context_length: ctx, input_ids: ids, attention_mask: mask };
        let t = time_ms(2, o.iters, || {
            clip.text().run_encoded(&enc).expect("text runs");
        });
        owlet.push(("text".into(), b, median(t)));
    }
    owlet
}

/// onnxruntime's medians from benches/ort_clip.py (`extra`: e.g. `--int8 DIR`).
fn time_ort(
    o: &Opts,
    side: usize,
    ctx: usize,
    extra: &[String],
) -> (serde_json::Value, Vec<(String, usize, f64)>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/ort_clip.py");
    let batches = o.batches.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--model", &o.model.display().to_string(), "--threads", &o.threads.to_string()])
        .args(["--batches", &batches, "--iters", &o.iters.to_string()])
        .args(["--side", &side.to_string(), "--context", &ctx.to_string()])
        .args(extra)
        .output()
        .expect("python3 runs benches/ort_clip.py");
    if !out.status.success() {
        panic!("ort_clip.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ort: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ort_clip.py prints JSON");
    let mut meds = Vec::new();
    for graph in ["vision", "text"] {
        for &b in &o.batches {
            let ms: Vec<f64> = ort[graph][b.to_string()]
                .as_array()
                .expect("ort times")
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            meds.push((graph.to_string(), b, median(ms)));
        }
    }
    (ort, meds)
}

fn lookup(v: &[(String, usize, f64)], graph: &str, b: usize) -> f64 {
    v.iter().find(|(g, bb, _)| g == graph && *bb == b).map(|x| x.2).expect("timed")
}

/// owlet's medians for `bundle`, timed in a fresh process (this bench, run with
/// `--owlet-only`), as onnxruntime's are in a fresh python. Timed in one process
/// one after another, a bundle loaded after another was run ran 6-35% slower
/// (measured: int8 text batch 1 6.9 -> 9.3 ms), whatever the allocator and the
/// page mapping were left like; each side gets a clean start instead.
fn time_owlet_fresh(bundle: &std::path::Path, o: &Opts) -> (f64, Vec<(String, usize, f64)>) {
    let batches = o.batches.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new(std::env::current_exe().expect("this bench's path"))
        .args(["--model", &bundle.display().to_string(), "--owlet-only"])
        .args([
            "--threads",
            &o.threads.to_string(),
            "--iters",
            &o.iters.to_string(),
            "--batches",
            &batches,
        ])
        .output()
        .expect("the bench runs itself");
    if !out.status.success() {
        panic!("timing {} failed: {}", bundle.display(), String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).expect("--owlet-only prints JSON")
}

fn main() {
    owlet_runtime::RuntimeOptions::from_env().install().expect("options set once");
    let o = parse();
    engine::set_threads(o.threads);
    if o.owlet_only {
        let t = Instant::now();
        let clip = Clip::load(&o.model).expect("bundle loads");
        let load_s = t.elapsed().as_secs_f64();
        println!("{}", serde_json::to_string(&(load_s, time_owlet(&clip, &o))).expect("JSON"));
        return;
    }
    // The input sizes for onnxruntime's side, from the manifest (the graphs load
    // in the timing processes).
    let bundle = owlet_runtime::Bundle::open(&o.model).expect("bundle opens");
    let side = bundle.manifest.vision.preprocess.crop_size as usize;
    let ctx = bundle.text().context_length;
    // Each comparison's two sides back to back (the machine's speed drifts over
    // minutes); the int8 pair first.
    let (int8, ort8) = match &o.int8 {
        Some(p) => {
            let cache = format!("{}-ort-int8", o.model.display());
            eprintln!(
                "onnxruntime int8 graphs (quantize_dynamic of {}): {cache}; owlet int8 bundle: {}",
                o.model.display(),
                p.display()
            );
            let owlet8 = time_owlet_fresh(p, &o).1;
            (Some(owlet8), Some(time_ort(&o, side, ctx, &["--int8".to_string(), cache]).1))
        }
        None => (None, None),
    };
    // owlet fp16, then fp32 between its two comparisons (fp16 / fp32, owlet / ort).
    let fp16 = o.fp16.as_ref().map(|p| time_owlet_fresh(p, &o).1);
    let (load_s, owlet) = time_owlet_fresh(&o.model, &o);
    let (ort, ort32) = time_ort(&o, side, ctx, &[]);

    println!(
        "CLIP benchmark: bundle {}, {} thread(s), {} iterations, medians in ms",
        o.model.display(),
        o.threads,
        o.iters
    );
    println!(
        "owlet load + plan: {load_s:.2} s; onnxruntime {}",
        ort["onnxruntime"].as_str().unwrap_or("?")
    );
    println!(
        "{:<8} {:>5} {:>12} {:>12} {:>14}",
        "graph", "batch", "owlet", "onnxruntime", "owlet / ort"
    );
    for (graph, b, ms) in &owlet {
        let r = lookup(&ort32, graph, *b);
        println!("{graph:<8} {b:>5} {ms:>12.1} {r:>12.1} {:>13.2}x", ms / r);
    }
    if let (Some(i8s), Some(o8)) = (int8, ort8) {
        println!("int8: owlet (OwletMatMulInt8) vs onnxruntime (quantize_dynamic), same fp32 source graphs");
        println!(
            "{:<8} {:>5} {:>12} {:>12} {:>14} {:>16} {:>14}",
            "graph",
            "batch",
            "owlet int8",
            "ort int8",
            "owlet / ort",
            "owlet int8/fp32",
            "ort int8/fp32"
        );
        for (graph, b, ms) in &i8s {
            let (r, f32_owlet, f32_ort) =
                (lookup(&o8, graph, *b), lookup(&owlet, graph, *b), lookup(&ort32, graph, *b));
            println!(
                "{graph:<8} {b:>5} {ms:>12.1} {r:>12.1} {:>13.2}x {:>15.2}x {:>13.2}x",
                ms / r,
                ms / f32_owlet,
                r / f32_ort
            );
        }
    }
    if let Some(f16s) = fp16 {
        println!("fp16 bundle (weights stored in fp16) vs fp32, owlet");
        println!(
            "{:<8} {:>5} {:>12} {:>12} {:>16}",
            "graph", "batch", "owlet fp16", "owlet fp32", "owlet fp16/fp32"
        );
        for (graph, b, ms) in &f16s {
            let f32_owlet = lookup(&owlet, graph, *b);
            println!("{graph:<8} {b:>5} {ms:>12.1} {f32_owlet:>12.1} {:>15.2}x", ms / f32_owlet);
        }
    }
}
