//! BLIP-2 benchmark: time to first token (vision + prefill + first token) and decode
//! step time (tokens/s), owlet vs onnxruntime on the same bundle graphs, same loop,
//! same threads, in one run. Not a test: run it with
//!
//!     benches/blip2.sh           (exports a random-weight OPT-125m-sized bundle first)
//!
//! or `cargo bench -p owlet-runtime --bench blip2 -- --model B [--int8 B8] [--threads N]`.
//!
//! With `--int8 B8` (B8 = `owlet-quantize B B8 --to int8`) it also times owlet on B8
//! and onnxruntime on its own int8 form of B's graphs (quantize_dynamic, per
//! channel; benches/ort_blip2.py --int8), int8 pair first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use owlet_runtime::engine;
use owlet_runtime::models::Blip2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const PROMPT: &str = "Question: what colour is the car? Answer:";

struct Opts {
    model: PathBuf,
    int8: Option<PathBuf>,
    threads: usize,
    new_tokens: usize,
    runs: usize,
}

/// owlet's medians on `bundle`: (time to first token, decode step), ms.
fn time_owlet(bundle: &Path, o: &Opts) -> (f64, f64) {
    let m = Blip2::load(bundle).expect("bundle loads");
    let side = m.bundle.manifest.vision.preprocess.crop_size as usize;
    let pixels: Vec<f32> =
        (0..3 * side * side).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let mut cfg = m.default_config();
    cfg.max_new_tokens = o.new_tokens;
    cfg.eos_token_id = u32::MAX; // never stop early: time every step

    let (mut ttft, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let t0 = Instant::now();
        let q = m.encode_pixels(pixels.clone()).expect("vision runs");
        let mut last = None::<Instant>;
        m.generate(&q, PROMPT, &cfg, &mut |_| {
            let now = Instant::now();
            match last {
                None => ttft.push((now - t0).as_secs_f64() * 1e3),
                Some(prev) => steps.push((now - prev).as_secs_f64() * 1e3),
            }
            last = Some(now);
        })
        .expect("generation runs");
    }
    (median(ttft), median(steps))
}

/// onnxruntime's medians from benches/ort_blip2.py (`extra`: e.g. `--int8 DIR`).
fn time_ort(o: &Opts, ids: &[u32], extra: &[String]) -> (f64, f64, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/ort_blip2.py");
    let id_list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--model", &o.model.display().to_string(), "--threads", &o.threads.to_string()])
        .args([
            "--prompt-ids",
            &id_list,
            "--new-tokens",
            &o.new_tokens.to_string(),
            "--runs",
            &o.runs.to_string(),
        ])
        .args(extra)
        .output()
        .expect("python3 runs benches/ort_blip2.py");
    if !out.status.success() {
        panic!("ort_blip2.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ort: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = |k: &str| {
        ort[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>()
    };
    (
        median(list("ttft_ms")),
        median(list("step_ms")),
        ort["onnxruntime"].as_str().unwrap_or("?").to_string(),
    )
}

fn rows(label: &str, (w_ttft, w_step): (f64, f64), (o_ttft, o_step): (f64, f64)) {
    println!(
        "{:<34} {w_ttft:>10.1} {o_ttft:>12.1} {:>11.2}x",
        format!("{label} time to first token (ms)"),
        w_ttft / o_ttft
    );
    println!(
        "{:<34} {w_step:>10.2} {o_step:>12.2} {:>11.2}x",
        format!("{label} decode step (ms)"),
        w_step / o_step
    );
    println!(
        "{:<34} {:>10.1} {:>12.1} {:>11.2}x",
        format!("{label} tokens/s"),
        1e3 / w_step,
        1e3 / o_step,
        o_step / w_step
    );
}

fn main() {
    owlet_runtime::RuntimeOptions::from_env().install().expect("options set once");
    let mut o = Opts {
        model: PathBuf::new(),
        int8: None,
        threads: engine::default_threads(),
        new_tokens: 20,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => o.model = args.next().expect("--model B").into(),
            "--int8" => o.int8 = Some(args.next().expect("--int8 B8").into()),
            "--threads" => {
                o.threads = args.next().and_then(|v| v.parse().ok()).expect("--threads N")
            }
            "--new-tokens" => {
                o.new_tokens = args.next().and_then(|v| v.parse().ok()).expect("--new-tokens N")
            }
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    engine::set_threads(o.threads);
    let m = Blip2::load(&o.model).expect("bundle loads");
    let ids = m.prompt_ids(PROMPT).expect("prompt tokenizes");
    let q = m.generation_spec().num_query_tokens;
    let source = m.bundle.manifest.source.clone();
    drop(m);

    let int8 = o.int8.as_ref().map(|b8| {
        let cache = format!("{}-ort-int8", o.model.display());
        eprintln!(
            "onnxruntime int8 graphs (quantize_dynamic of {}): {cache}; owlet int8 bundle: {}",
            o.model.display(),
            b8.display()
        );
        let owlet = time_owlet(b8, &o);
        let (t, s, _) = time_ort(&o, &ids, &["--int8".to_string(), cache]);
        (owlet, (t, s))
    });
    let fp32 = time_owlet(&o.model, &o);
    let (t, s, version) = time_ort(&o, &ids, &[]);

    println!(
        "BLIP-2 benchmark: bundle {} ({source}), {} thread(s), prefix {} positions ({q} queries + {} prompt tokens), {} new tokens x {} runs, medians",
        o.model.display(),
        o.threads,
        q + ids.len(),
        ids.len(),
        o.new_tokens,
        o.runs
    );
    println!("onnxruntime {version}");
    println!("{:<34} {:>10} {:>12} {:>12}", "", "owlet", "onnxruntime", "owlet / ort");
    rows("fp32", fp32, (t, s));
    if let Some((owlet, ort)) = int8 {
        rows("int8", owlet, ort);
        println!(
            "int8 / fp32 decode step: owlet {:.2}x, onnxruntime {:.2}x",
            owlet.1 / fp32.1,
            ort.1 / s
        );
    }
}
