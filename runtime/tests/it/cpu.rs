//! What tract and owlet chose for this CPU, so that a silent fall-back to generic
//! code fails the build. Under qemu, scripts/cross sets OWLET_EXPECT_TRACT_KERNEL (a
//! kernel family every f32 matmul must use, e.g. `arm64simd` on a Cortex-A72) and
//! OWLET_EXPECT_ISA (a feature tract must have detected, e.g. `dotprod` on an A76).

use owlet_runtime::engine::{Graph, InputSpec};
use tract_onnx::prelude::*;

use crate::common::*;

#[test]
fn tract_runs_clip_matmuls_on_simd_kernels_not_generic_code() {
    let g = Graph::load(
        &clip_bundle().join("vision.onnx"),
        "vision",
        &[InputSpec { name: "pixel_values", dtype: f32::datum_type(), rank: 4 }],
        2,
        owlet_runtime::device::Placement::CPU,
    )
    .unwrap();
    let kernels = g.matmul_kernels();
    let isa = format!("{:?}", tract_linalg::isa::native());
    eprintln!("tract ISA: {isa}; CLIP vision matmul kernels: {kernels:?}");
    assert!(!kernels.is_empty(), "no matmul kernel found in the plan");
    assert!(kernels.iter().all(|k| !k.contains("generic")), "generic kernels: {kernels:?}");
    if let Ok(family) = std::env::var("OWLET_EXPECT_TRACT_KERNEL") {
        assert!(
            kernels.iter().all(|k| k.contains(&family)),
            "expected {family} kernels, got {kernels:?}"
        );
    }
    if let Ok(feature) = std::env::var("OWLET_EXPECT_ISA") {
        assert!(
            isa.to_lowercase().contains(&feature.to_lowercase()),
            "expected {feature} in {isa}"
        );
    }
}

/// tract's element-wise ops have SIMD paths for operands of one shape and for
/// per-row constants, and a generic broadcasting path ~10x slower. With the batch
/// axis asserted non-empty (engine.rs), CLIP's residual adds take the SIMD ones;
/// quick-GELU is owlet's one op (ops/quick_gelu.rs); the text encoder's attention mask, broadcast over the heads,
/// takes owlet's `OwletBroadcastBinary` (ops/broadcast.rs). No f32 Add or Mul of
/// real size is left on the generic path (the few left work on shapes, in TDim,
/// or on a layer norm's [batch, tokens, 1] means).
#[test]
fn clip_element_wise_ops_take_simd_paths_not_tracts_generic_broadcast() {
    let clip = owlet_runtime::models::Clip::load(clip_bundle()).unwrap();
    let vision = clip.vision().graph().op_counts();
    let text = clip.text().graph().op_counts();
    eprintln!("vision ops: {vision:?}\ntext ops: {text:?}");
    let layers = 2; // clip-test: num_hidden_layers in models/export.py
    for (role, counts) in [("vision", &vision), ("text", &text)] {
        let simd = counts.get("OptAddUnicast").copied().unwrap_or(0);
        assert!(simd >= 2 * layers, "{role}: residual adds not on the unicast path: {counts:?}");
    }
    // One per layer (the mask) and the position embeddings' add over the batch.
    assert!(
        text.get("OwletBroadcastBinary").is_some_and(|&n| n >= layers),
        "text: the mask adds: {text:?}"
    );
    // quick-GELU, x * sigmoid(1.702 x): one owlet op per layer, tract's three gone.
    for (role, counts) in [("vision", &vision), ("text", &text)] {
        assert_eq!(counts.get("OwletQuickGelu"), Some(&layers), "{role}: quick-GELU: {counts:?}");
        assert_eq!(counts.get("Sigmoid"), None, "{role}: a sigmoid left to tract: {counts:?}");
    }
    // Two layer norms per layer and the final one (vision: also the pre-norm),
    // all owlet's; tract's expansion (its RmsNorm among them) gone.
    for (role, counts) in [("vision", &vision), ("text", &text)] {
        assert!(
            counts.get("OwletLayerNorm").is_some_and(|&n| n > 2 * layers),
            "{role}: layer norms: {counts:?}"
        );
        assert_eq!(counts.get("RmsNorm"), None, "{role}: a layer norm left to tract: {counts:?}");
    }
    // Attention's two products per layer, owlet's where its hand-written kernel is.
    for (role, counts) in [("vision", &vision), ("text", &text)] {
        let want = if owlet_runtime::kernels::small_gemm::beats_tract() {
            Some(&(2 * layers))
        } else {
            None
        };
        assert_eq!(
            counts.get("OwletBatchedMatMul"),
            want,
            "{role}: attention products: {counts:?}"
        );
    }
    // Attention's softmax, one per layer, on owlet's rows kernel, none left to tract.
    for (role, counts) in [("vision", &vision), ("text", &text)] {
        assert_eq!(
            counts.get("OwletSoftmax"),
            Some(&layers),
            "{role}: attention softmax: {counts:?}"
        );
        assert_eq!(counts.get("Softmax"), None, "{role}: a softmax left to tract: {counts:?}");
    }
}

/// The same for OPT's attention mask in the BLIP-2 decoder step, where the mask's
/// run (the cache plus the new tokens) is symbolic.
#[test]
fn blip2_decoder_mask_add_takes_owlets_broadcast() {
    let blip2 = owlet_runtime::models::Blip2::load(repo().join("models/blip2-test")).unwrap();
    let graphs = blip2.graphs();
    let decoder =
        graphs.iter().find(|(role, _)| *role == "decoder").expect("a decoder graph").1.op_counts();
    eprintln!("decoder ops: {decoder:?}");
    assert!(decoder.contains_key("OwletBroadcastBinary"), "decoder: the mask adds: {decoder:?}");
    // The cache's length is symbolic: on aarch64 tract's rows kernel may take it.
    if cfg!(target_arch = "x86_64") {
        assert!(decoder.contains_key("OwletSoftmax"), "decoder: attention softmax: {decoder:?}");
    }
}

/// A batch that `Graph::run_batch_split` cuts into one part per thread gives the
/// rows that running each input alone gives (the rows are independent), for
/// images and texts, with a batch that does not divide evenly.
#[test]
fn a_batch_split_across_threads_gives_the_rows_of_single_runs() {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};
    let clip = load_clip();
    let side = clip.vision().preprocess_spec().crop_size as usize;
    let one = 3 * side * side;
    let pixels: Vec<f32> = (0..5 * one).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let texts = ["a red car", "a dog on the grass", "a bird", "two people", "a parcel"];
    let (batched, batched_text) = multithread_tract_scope(Executor::multithread(2), || {
        (clip.vision().run_pixels(pixels.clone(), 5).unwrap(), clip.text().embed(&texts).unwrap())
    });
    let dim = batched.len() / 5;
    for i in 0..5 {
        let alone = clip.vision().run_pixels(pixels[i * one..(i + 1) * one].to_vec(), 1).unwrap();
        let row = &batched[i * dim..(i + 1) * dim];
        let worst = row.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            worst <= 1e-5 * alone.iter().fold(1f32, |m, v| m.max(v.abs())),
            "image {i}: differs by {worst}"
        );
        let text_alone = clip.text().embed(&texts[i..i + 1]).unwrap();
        assert!(cosine(batched_text.row(i), text_alone.row(0)) > 0.999999, "text {i}");
    }
}
