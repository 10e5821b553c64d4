//! BLIP-2 benchmark: time to first token (vision + prefill + first token) and decode
//! step time (tokens/s), owlet vs onnxruntime on the same bundle graphs, same loop,
//! same threads, in one run. Not a test: run it with
//!
//!     benches/blip2.sh           (exports a random-weight OPT-125m-sized bundle first)
//!
//! or `cargo bench -p owlet-runtime --bench blip2 -- --model B [--threads N]`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use owlet_runtime::engine;
use owlet_runtime::models::blip2::Blip2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut model = PathBuf::new();
    let mut threads = engine::default_threads();
    let (mut new_tokens, mut runs) = (20usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next().expect("--model B").into(),
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).expect("--threads N"),
            "--new-tokens" => new_tokens = args.next().and_then(|v| v.parse().ok()).expect("--new-tokens N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    engine::set_threads(threads);
    let m = Blip2::load(&model).expect("bundle loads");
    let prompt = "Question: what colour is the car? Answer:";
    let ids = m.prompt_ids(prompt).expect("prompt tokenizes");
    let side = m.bundle.manifest.vision.preprocess.crop_size as usize;
    let pixels: Vec<f32> = (0..3 * side * side).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let mut cfg = m.default_config();
    cfg.max_new_tokens = new_tokens;
    cfg.eos_token_id = u32::MAX; // never stop early: time every step

    let (mut ttft, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let q = m.encode_pixels(pixels.clone()).expect("vision runs");
        let mut last = None::<Instant>;
        m.generate(&q, prompt, &cfg, &mut |_| {
            let now = Instant::now();
            match last {
                None => ttft.push((now - t0).as_secs_f64() * 1e3),
                Some(prev) => steps.push((now - prev).as_secs_f64() * 1e3),
            }
            last = Some(now);
        })
        .expect("generation runs");
    }

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/ort_blip2.py");
    let id_list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--model", &model.display().to_string(), "--threads", &threads.to_string()])
        .args(["--prompt-ids", &id_list, "--new-tokens", &new_tokens.to_string(), "--runs", &runs.to_string()])
        .output()
        .expect("python3 runs benches/ort_blip2.py");
    if !out.status.success() {
        panic!("ort_blip2.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ort: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = |k: &str| ort[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    let (o_ttft, o_step) = (median(list("ttft_ms")), median(list("step_ms")));
    let (w_ttft, w_step) = (median(ttft), median(steps));
    let q = m.generation_spec().num_query_tokens;
    println!("BLIP-2 benchmark: bundle {} ({}), {threads} thread(s), prefix {} positions ({q} queries + {} prompt tokens), {new_tokens} new tokens x {runs} runs, medians",
        model.display(), m.bundle.manifest.source, q + ids.len(), ids.len());
    println!("onnxruntime {}", ort["onnxruntime"].as_str().unwrap_or("?"));
    println!("{:<28} {:>10} {:>12} {:>12}", "", "owlet", "onnxruntime", "owlet / ort");
    println!("{:<28} {w_ttft:>10.1} {o_ttft:>12.1} {:>11.2}x", "time to first token (ms)", w_ttft / o_ttft);
    println!("{:<28} {w_step:>10.2} {o_step:>12.2} {:>11.2}x", "decode step (ms)", w_step / o_step);
    println!("{:<28} {:>10.1} {:>12.1} {:>11.2}x", "tokens/s", 1e3 / w_step, 1e3 / o_step, o_step / w_step);
}
