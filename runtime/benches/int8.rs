//! int8 kernel throughput: every int8 kernel this CPU has, on the linear layers of
//! CLIP ViT-B/32 (vision at batch 1 and 8, text at batch 1), in GMAC/s, one thread
//! and the pool.
//!
//!     cargo bench -p owlet-runtime --bench int8 [-- --threads N]

use std::time::Instant;

use owlet_runtime::engine;
use owlet_runtime::kernels::int8::{
    qmatmul, quantize_rows, quantize_weights, PackedWeights, XScale, FAMILY,
};

fn main() {
    owlet_runtime::RuntimeOptions::from_env().install().expect("options set once");
    let mut threads = engine::default_threads();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = args.next().and_then(|v| v.parse().ok()).expect("--threads N");
        }
    }
    // (rows, K, N): ViT-B/32 vision, 50 tokens per image: qkv/out, fc1, fc2.
    let shapes = [
        (50, 768, 768),
        (50, 768, 3072),
        (50, 3072, 768),
        (400, 768, 768),
        (400, 768, 3072),
        (400, 3072, 768),
    ];
    // Text, 77 tokens: qkv/out, fc1, fc2.
    let shapes = [&shapes[..], &[(77, 512, 512), (77, 512, 2048), (77, 2048, 512)]].concat();
    // The activations' quantization alone (every product pays it, serially).
    for &(m, k) in &[(400, 768), (400, 3072)] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let iters = 200;
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(quantize_rows(&x, m, k, k, 8, 128, XScale::PerRow));
        }
        let s = start.elapsed().as_secs_f64() / iters as f64;
        println!(
            "quantize_rows m {m:>4} k {k:>5}: {:8.3} ms {:6.2} ns/element",
            s * 1e3,
            s * 1e9 / (m * k) as f64
        );
    }
    for t in [1, threads] {
        engine::set_threads(t);
        println!("{t} thread(s)");
        for &(m, k, n) in shapes.iter() {
            let x: Vec<f32> =
                (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let w: Vec<f32> =
                (0..n * k).map(|i| ((i * 104729 % 1000) as f32 / 500.0) - 1.0).collect();
            let (wq, scales) = quantize_weights(&w, n, k);
            for kernel in FAMILY.candidates().iter().filter(|k| k.name != "scalar_qgemm_i8") {
                let packed = PackedWeights::pack(kernel, &wq, n, k, scales.clone(), None);
                let mut y = vec![0f32; m * n];
                let iters = (2e9 / (m * k * n) as f64).clamp(3.0, 200.0) as usize;
                // On a pool thread, as graphs run (engine::on_pool).
                let s = engine::on_pool(|| {
                    qmatmul(kernel, &x, m, &packed, XScale::PerRow, &mut y);
                    let start = Instant::now();
                    for _ in 0..iters {
                        qmatmul(kernel, &x, m, &packed, XScale::PerRow, &mut y);
                    }
                    start.elapsed().as_secs_f64() / iters as f64
                });
                println!(
                    "  {:<28} m {m:>4} k {k:>5} n {n:>5}: {:8.3} ms {:7.1} GMAC/s",
                    kernel.name,
                    s * 1e3,
                    (m * k * n) as f64 / s / 1e9
                );
            }
        }
    }
}
