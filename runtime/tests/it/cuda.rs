//! The GPU path (feature cuda-12 / cuda-13) against the CPU path, on the repository's
//! bundles and on random-weight bundles with the real ViT-B/32 and OPT-125m
//! dimensions. The tests that need an NVIDIA GPU are ignored; scripts/gpu-test
//! builds them, makes the large bundles and runs them where the GPU is:
//!
//!     scripts/gpu-test            # on a machine with an NVIDIA GPU and CUDA 12/13
//!
//! Thresholds (issue 9): cosine >= 0.9999 in fp32 and >= 0.999 in fp16; greedy
//! captions identical in fp32.

use std::path::PathBuf;

use owlet_runtime::device::{Device, GpuPrecision, Placement};
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::Blip2;
use owlet_runtime::models::Clip;

use crate::common::*;

fn min_cosine(precision: GpuPrecision) -> f64 {
    match precision {
        GpuPrecision::F32 => 0.9999,
        GpuPrecision::F16 => 0.999,
    }
}

/// The random-weight bundles with real dimensions, made by scripts/gpu-test.
fn large(name: &str) -> PathBuf {
    let dir = std::env::var("OWLET_GPU_BUNDLES")
        .expect("OWLET_GPU_BUNDLES: folder of the large bundles (scripts/gpu-test)");
    PathBuf::from(dir).join(name)
}

fn frames() -> Vec<image::RgbImage> {
    let dir = repo().join("models/scenes/demo");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| load_rgb(p, DecodeLimits::default()).unwrap())
        .collect()
}

fn clip_matches(bundle: PathBuf, precision: GpuPrecision) {
    let cpu = Clip::load_on(&bundle, Placement::CPU).unwrap();
    let gpu = Clip::load_on(&bundle, Placement::cuda(precision)).unwrap();
    assert_eq!(gpu.device(), Device::Cuda);
    for (role, g) in gpu.graphs() {
        eprintln!(
            "{} {role} {precision:?}: nodes on the CPU: {:?}",
            bundle.display(),
            g.cpu_nodes()
        );
    }
    let images = frames();
    // Batch 8 and batch 1: both shapes of the symbolic batch run on the GPU.
    for batch in [&images[..], &images[..1]] {
        let (a, b) = (cpu.embed_images(batch).unwrap(), gpu.embed_images(batch).unwrap());
        for (i, (x, y)) in a.rows().zip(b.rows()).enumerate() {
            let c = cosine(x, y);
            assert!(
                c >= min_cosine(precision),
                "{}: image {i} of {}: cosine {c}",
                bundle.display(),
                batch.len()
            );
        }
    }
    let texts = ["a photo of a car", "a red car next to a blue person", "a dog", ""];
    let (a, b) = (cpu.embed_texts(&texts).unwrap(), gpu.embed_texts(&texts).unwrap());
    for (t, (x, y)) in texts.iter().zip(a.rows().zip(b.rows())) {
        let c = cosine(x, y);
        assert!(c >= min_cosine(precision), "{}: text {t:?}: cosine {c}", bundle.display());
    }
}

/// Captions: `None` must be identical; `Some(gap)` may split where the CPU's logits of
/// the two tokens are within `gap` (random weights give flat logits).
fn blip2_matches(bundle: PathBuf, precision: GpuPrecision, caption_gap: Option<f32>) {
    let cpu = Blip2::load_on(&bundle, Placement::CPU).unwrap();
    let gpu = Blip2::load_on(&bundle, Placement::cuda(precision)).unwrap();
    assert_eq!(gpu.device(), Device::Cuda);
    for (role, g) in gpu.graphs() {
        eprintln!(
            "{} {role} {precision:?}: nodes on the CPU: {:?}",
            bundle.display(),
            g.cpu_nodes()
        );
    }
    let ids = cpu.prompt_ids("Question: what colour is the car? Answer:").unwrap();
    let mut cfg = cpu.default_config();
    cfg.max_new_tokens = 20;
    for (i, img) in frames().iter().enumerate() {
        let (qa, qb) = (cpu.encode_image(img).unwrap(), gpu.encode_image(img).unwrap());
        let c = cosine(&qa.data, &qb.data);
        assert!(
            c >= min_cosine(precision),
            "{}: frame {i}: query embeddings cosine {c}",
            bundle.display()
        );
        // The decoder: prefill and five steps, both fed the CPU's image queries and
        // the same tokens, so each step compares the decoder alone.
        let steps: Vec<u32> = (0..5).map(|k| ids[k % ids.len()]).collect();
        let (la, lb) = (
            cpu.step_logits(&qa, &ids, &steps).unwrap(),
            gpu.step_logits(&qa, &ids, &steps).unwrap(),
        );
        for (s, (x, y)) in la.iter().zip(&lb).enumerate() {
            let c = cosine(x, y);
            assert!(
                c >= min_cosine(precision),
                "{}: frame {i}: decoder call {s}: logits cosine {c}",
                bundle.display()
            );
        }
        let a = cpu.caption(&qa, &cfg, &mut |_| {}).unwrap();
        let b = gpu.caption(&qb, &cfg, &mut |_| {}).unwrap();
        if let Some(k) = a
            .ids
            .iter()
            .zip(&b.ids)
            .position(|(x, y)| x != y)
            .or((a.ids.len() != b.ids.len()).then_some(a.ids.len().min(b.ids.len())))
        {
            // Trained bundles must agree token for token. Random weights give flat
            // logits: a split is accepted only at a near-tie of the CPU's own logits.
            let why = format!(
                "{}: frame {i}: caption {:?} on the CPU, {:?} on the GPU (token {k})",
                bundle.display(),
                a.text,
                b.text
            );
            let Some(allowed) = caption_gap else { panic!("{why}") };
            let prompt = cpu.prompt_ids(&cpu.generation_spec().caption_prompt).unwrap();
            let logits = cpu.step_logits(&qa, &prompt, &a.ids[..k]).unwrap().pop().unwrap();
            let pick = |ids: &[u32]| ids.get(k).map(|&t| logits[t as usize]).unwrap_or(f32::NAN);
            let gap = (pick(&a.ids) - pick(&b.ids)).abs();
            eprintln!("{why}: logit gap {gap}");
            assert!(gap < allowed, "{why}: not a near-tie (gap {gap})");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-test"]
fn clip_on_cuda_matches_the_cpu_fp32() {
    clip_matches(clip_bundle(), GpuPrecision::F32);
    clip_matches(repo().join("models/clip-demo"), GpuPrecision::F32);
    clip_matches(large("clip-vitb32"), GpuPrecision::F32);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-test"]
fn clip_on_cuda_matches_the_cpu_fp16() {
    clip_matches(repo().join("models/clip-demo"), GpuPrecision::F16);
    clip_matches(large("clip-vitb32"), GpuPrecision::F16);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-test"]
fn blip2_on_cuda_matches_the_cpu_fp32_with_identical_captions() {
    blip2_matches(repo().join("models/blip2-test"), GpuPrecision::F32, None);
    blip2_matches(repo().join("models/blip2-demo"), GpuPrecision::F32, None);
    blip2_matches(large("blip2-opt125m"), GpuPrecision::F32, Some(1e-3));
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-test"]
fn blip2_on_cuda_matches_the_cpu_fp16() {
    // fp16 captions need not be identical (issue 9): splits are printed.
    blip2_matches(repo().join("models/blip2-demo"), GpuPrecision::F16, Some(f32::INFINITY));
    blip2_matches(large("blip2-opt125m"), GpuPrecision::F16, Some(f32::INFINITY));
}

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-test"]
fn exact_gelu_runs_on_the_gpu() {
    // BLIP-2's vision encoder and Q-Former use exact GELU, which tract fuses into
    // an op tract-cuda lacks; owlet spells it out again (device::cuda).
    let m = Blip2::load_on(repo().join("models/blip2-demo"), Placement::cuda(GpuPrecision::F32))
        .unwrap();
    for (role, g) in m.graphs() {
        let cpu = g.cpu_nodes();
        assert!(!cpu.iter().any(|(op, _)| op.contains("Gelu")), "{role}: GELU on the CPU: {cpu:?}");
    }
}

#[test]
fn spelling_exact_gelu_out_again_computes_the_same_on_the_cpu() {
    // No GPU needed: the rewrite that keeps GELU on the GPU, checked on the CPU.
    use owlet_runtime::device::cuda::unfuse_gelu_exact;
    use tract_onnx::prelude::*;
    let path = repo().join("models/blip2-demo/vision.onnx");
    let fused = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(&path)
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap();
    let count = |m: &TypedModel| {
        m.nodes().iter().filter(|n| format!("{:?}", n.op).contains("GeluExact")).count()
    };
    assert!(count(&fused) > 0, "the graph has no fused exact GELU to test on");
    let mut unfused = fused.clone();
    assert_eq!(unfuse_gelu_exact(&mut unfused).unwrap(), count(&fused));
    assert_eq!(count(&unfused), 0);
    let side = 96;
    let px: Vec<f32> =
        (0..3 * side * side).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let input = || tvec!(Tensor::from_shape(&[1, 3, side, side], &px).unwrap().into_tvalue());
    let run = |m: TypedModel| {
        m.into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(input())
            .unwrap()
            .remove(0)
            .into_tensor()
    };
    let (a, b) = (run(fused), run(unfused));
    let (a, b) = (a.to_plain_array_view::<f32>().unwrap(), b.to_plain_array_view::<f32>().unwrap());
    let worst = a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "max |fused - unfused| = {worst}");
}
