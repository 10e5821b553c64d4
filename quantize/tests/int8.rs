//! owlet-quantize --to int8 on the repository's bundles: the files shrink ~3.4x
//! (the demo models are small, so LayerNorm and position tables weigh more than in
//! ViT-B/32, where it is 3.9x), the graphs run on owlet's int8 op, and they say
//! what the fp32 bundle says within int8's error; bad input is a clear error.

use std::path::{Path, PathBuf};

use owlet_quantize::{
    calibration_images, layer_errors, quantize_bundle, report, sensitive_layers, Options, Target,
    DEFAULT_MAX_LAYER_ERROR,
};
use owlet_runtime::{Bundle, Precision};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The held-out frames (200 natively; OWLET_DEMO_FRAMES under qemu, as the
/// runtime's demo tests do).
fn heldout() -> Vec<PathBuf> {
    let all = calibration_images(&repo().join("models/scenes/heldout")).unwrap();
    let n =
        std::env::var("OWLET_DEMO_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(all.len());
    all.into_iter().take(n).collect()
}

fn convert(name: &str, opts: &Options) -> (tempfile::TempDir, PathBuf, u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(format!("{name}-int8"));
    let stats = quantize_bundle(&repo().join("models").join(name), &out, opts, &mut || {}).unwrap();
    for (g, s) in &stats {
        eprintln!("{g}: {}", s.detail);
    }
    let before = stats.iter().map(|(_, s)| s.bytes_before).sum();
    let after = stats.iter().map(|(_, s)| s.bytes_after).sum();
    (tmp, out, before, after)
}

fn graph_ops(path: &Path) -> Vec<String> {
    use prost::Message;
    let bytes = std::fs::read(path).unwrap();
    let m = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    m.graph.unwrap().node.into_iter().map(|n| n.op_type).collect()
}

const LABELS: [&str; 6] = ["car", "person", "dog", "bird", "bicycle", "package"];

#[test]
fn clip_int8_shrinks_the_graphs_and_keeps_embeddings_and_decided_labels() {
    let (_tmp, out, before, after) = convert("clip-demo", &Options::new(Target::Int8));
    assert!((after as f64) < 0.32 * before as f64, "{before} -> {after} bytes");
    let b = Bundle::open(&out).unwrap();
    assert_eq!(
        (b.manifest.vision.precision, b.text().precision),
        (Precision::Int8, Precision::Int8)
    );
    assert_eq!(b.manifest.name, "clip-demo-int8");
    for g in ["vision.onnx", "text.onnx"] {
        let ops = graph_ops(&out.join(g));
        assert_eq!(
            ops.iter().filter(|o| *o == "OwletMatMulInt8").count(),
            24,
            "{g}: every encoder linear layer is int8"
        );
        assert!(
            ops.iter().filter(|o| *o == "MatMul").count() >= 1,
            "{g}: the projection stays float by default"
        );
    }
    // When loaded, each layer's Q, K and V (one input) run as one int8 product.
    let clip = owlet_runtime::models::Clip::load(&out).unwrap();
    for (role, counts) in
        [("vision", clip.vision().graph().op_counts()), ("text", clip.text().graph().op_counts())]
    {
        assert_eq!(
            counts.get("OwletMatMulInt8"),
            Some(&16),
            "{role}: 4 layers x (qkv, out, fc1, fc2): {counts:?}"
        );
    }
    let labels: Vec<String> = LABELS.map(String::from).to_vec();
    let r = report::compare(
        &repo().join("models/clip-demo"),
        &out,
        Target::Int8,
        &heldout(),
        &labels,
        (before, after),
    )
    .unwrap();
    eprintln!("{r}");
    assert!(r.image_cosine_mean >= 0.999 && r.image_cosine_worst >= 0.999, "{r}");
    assert!(r.text_cosine_worst.unwrap() >= 0.999, "{r}");
    // Frames where fp32 itself is decided: int8 must agree on (at least 99% of) them.
    // Two-thing frames that fp32 splits ~50/50 between the two things flip with any
    // perturbation; the report counts them apart.
    let decided = r.zero_shot_decided.unwrap();
    assert!(decided.0 >= 0.99, "{r}");
    // Every disagreement is such a near-tie.
    assert!(
        r.zero_shot_largest_flipped_lead.is_none_or(|l| l < report::DECIDED_MARGIN as f64),
        "{r}"
    );
    assert!(r.zero_shot_agreement.unwrap() >= 0.9, "{r}");
    assert!(r.peak_rss_mb.1 > 0.0, "{r}");

    // Each int8 layer's own error: all 48 (24 a graph), worst first, small but not
    // zero, named as the int8 graphs name their nodes.
    let mut r = r;
    owlet_quantize::add_layer_errors(
        &mut r,
        &heldout(),
        &labels,
        &Options::new(Target::Int8).keep_float,
    )
    .unwrap();
    eprintln!("{r}");
    assert_eq!(r.layer_errors.len(), 48, "{r}");
    assert!(r.layer_errors.windows(2).all(|w| w[0].relative_error >= w[1].relative_error), "{r}");
    assert!(
        r.layer_errors.iter().all(|e| e.relative_error > 0.0 && e.relative_error < 0.05),
        "{r}"
    );
    let int8_nodes: Vec<String> = ["vision.onnx", "text.onnx"]
        .iter()
        .flat_map(|g| x_scales(&out.join(g)))
        .map(|(n, _)| n)
        .collect();
    assert!(r.layer_errors.iter().all(|e| int8_nodes.contains(&e.layer)), "{r}");
}

#[test]
fn blip2_int8_captions_as_fp32_does() {
    let (_tmp, out, before, after) = convert("blip2-demo", &Options::new(Target::Int8));
    assert!((after as f64) < 0.35 * before as f64, "{before} -> {after} bytes");
    // 3 layers x (q, k, v, out, fc1, fc2) + the LM head, which is int8 by default.
    let ops = graph_ops(&out.join("decoder.onnx"));
    assert_eq!(ops.iter().filter(|o| *o == "OwletMatMulInt8").count(), 19, "{ops:?}");
    // Loaded, q, k and v (one input) are one product: 3 x 4 + the head.
    let blip2 = owlet_runtime::models::Blip2::load(&out).unwrap();
    let decoder = blip2
        .graphs()
        .into_iter()
        .find(|(role, _)| role.contains("decoder"))
        .expect("a decoder graph")
        .1
        .op_counts();
    assert_eq!(decoder.get("OwletMatMulInt8"), Some(&13), "{decoder:?}");
    let frames = calibration_images(&repo().join("models/scenes/demo")).unwrap();
    let r = report::compare(
        &repo().join("models/blip2-demo"),
        &out,
        Target::Int8,
        &frames,
        &[],
        (before, after),
    )
    .unwrap();
    eprintln!("{r}");
    assert!(r.image_cosine_mean >= 0.999, "{r}");
    assert!(r.caption_token_agreement.unwrap() >= 0.9, "{r}");
    // Per-layer errors, on the captions fp32 writes: every int8 layer of both graphs.
    let mut r = r;
    owlet_quantize::add_layer_errors(&mut r, &frames, &[], &Options::new(Target::Int8).keep_float)
        .unwrap();
    assert_eq!(r.layer_errors.len(), 36 + 19, "{r}");
}

/// (op type, node name) of every node.
fn graph_nodes(path: &Path) -> Vec<(String, String)> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    m.graph.unwrap().node.into_iter().map(|n| (n.op_type, n.name)).collect()
}

#[test]
fn layers_whose_own_error_is_above_the_limit_stay_float() {
    let labels: Vec<String> = LABELS.map(String::from).to_vec();
    let mut opts = Options::new(Target::Int8);
    let errors =
        layer_errors(&repo().join("models/clip-demo"), &heldout(), &labels, &opts.keep_float)
            .unwrap();
    assert_eq!(errors.len(), 48);
    // The demo's layers are all well-behaved: the default limit keeps none.
    assert!(sensitive_layers(&errors, DEFAULT_MAX_LAYER_ERROR).is_empty(), "{errors:?}");
    // A limit between the third and fourth worst keeps exactly the three worst.
    assert!(errors[2].relative_error > errors[3].relative_error, "{errors:?}");
    let kept =
        sensitive_layers(&errors, (errors[2].relative_error + errors[3].relative_error) / 2.0);
    assert_eq!(
        kept,
        errors[..3].iter().map(|e| format!("{}:{}", e.graph, e.layer)).collect::<Vec<_>>()
    );
    opts.keep_float.extend(kept.iter().cloned());
    let (_tmp, out, _, _) = convert("clip-demo", &opts);
    let nodes: Vec<(String, String)> =
        ["vision.onnx", "text.onnx"].iter().flat_map(|g| graph_nodes(&out.join(g))).collect();
    assert_eq!(nodes.iter().filter(|(op, _)| op == "OwletMatMulInt8").count(), 45);
    for e in &errors[..3] {
        let graph = graph_nodes(&out.join(format!("{}.onnx", e.graph)));
        assert!(
            graph.contains(&("MatMul".to_string(), e.layer.clone())),
            "{} is not a float MatMul in {graph:?}",
            e.layer
        );
    }
}

#[test]
fn blip2_layers_are_measured_on_the_captions_fp32_writes_and_kept_in_their_graph_only() {
    let frames = calibration_images(&repo().join("models/scenes/demo")).unwrap();
    let mut opts = Options::new(Target::Int8);
    let errors =
        layer_errors(&repo().join("models/blip2-demo"), &frames, &[], &opts.keep_float).unwrap();
    // vision: 2 Q-Former layers' linear layers and the ViT's; decoder: 3 x 6 + the head.
    let count = |g: &str| errors.iter().filter(|e| e.graph == g).count();
    assert_eq!((count("vision"), count("decoder")), (36, 19), "{errors:?}");
    assert!(errors.iter().all(|e| e.relative_error > 0.0 && e.relative_error < 0.05), "{errors:?}");
    // The decoder's worst layer, kept by name: a name (`/fc1/MatMul` and the like)
    // that the vision graph's layers contain too, so it must stay in its graph.
    let worst = errors.iter().find(|e| e.graph == "decoder").unwrap();
    let limit = worst.relative_error - 1e-9;
    let kept: Vec<String> = sensitive_layers(&errors, limit)
        .into_iter()
        .filter(|k| k.starts_with("decoder:"))
        .collect();
    assert_eq!(kept, vec![format!("decoder:{}", worst.layer)]);
    opts.keep_float.extend(kept);
    let (_tmp, out, _, _) = convert("blip2-demo", &opts);
    let int8 = |g: &str| {
        graph_nodes(&out.join(g)).iter().filter(|(op, _)| op == "OwletMatMulInt8").count()
    };
    assert_eq!((int8("vision.onnx"), int8("decoder.onnx")), (36, 18));
}

#[test]
fn keep_float_by_name_keeps_those_layers_and_none_quantizes_all() {
    let mut opts = Options::new(Target::Int8);
    opts.keep_float = vec!["fc2".into()];
    let (_tmp, out, _, _) = convert("clip-demo", &opts);
    let ops = graph_ops(&out.join("vision.onnx"));
    // 4 layers x (q, k, v, out, fc1) + the projection; fc2 x 4 stay MatMul.
    assert_eq!(ops.iter().filter(|o| *o == "OwletMatMulInt8").count(), 21);
    opts.keep_float = vec![];
    let (_tmp2, out, _, _) = convert("clip-demo", &opts);
    assert_eq!(
        graph_ops(&out.join("vision.onnx")).iter().filter(|o| *o == "OwletMatMulInt8").count(),
        25
    );
}

fn expect_error(input: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let e = quantize_bundle(input, &out, &Options::new(Target::Int8), &mut || {})
        .unwrap_err()
        .to_string();
    assert!(!out.join("owlet.toml").exists(), "a failed conversion left a bundle behind: {e}");
    e
}

#[test]
fn bad_input_is_a_clear_error() {
    // An int8 bundle is not converted again.
    let (_tmp, int8, _, _) = convert("clip-demo", &Options::new(Target::Int8));
    let e = expect_error(&int8);
    assert!(e.contains("only fp32 bundles"), "{e}");
    // A graph that is not ONNX, named.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for f in ["owlet.toml", "tokenizer.json", "vision.onnx"] {
        std::fs::copy(repo().join("models/clip-demo").join(f), bad.join(f)).unwrap();
    }
    std::fs::write(bad.join("text.onnx"), b"\x0a\x05hello\xff\xff").unwrap();
    let e = expect_error(&bad);
    assert!(e.contains("text.onnx") && e.contains("not an ONNX model"), "{e}");
}

#[test]
fn owlet_refuses_a_graph_with_an_unknown_op_or_a_broken_int8_node_by_name() {
    use prost::Message;
    let (_tmp, out, _, _) = convert("clip-demo", &Options::new(Target::Int8));
    let path = out.join("vision.onnx");
    let original = std::fs::read(&path).unwrap();
    let edit = |f: &dyn Fn(&mut tract_onnx::pb::NodeProto)| {
        let mut m = tract_onnx::pb::ModelProto::decode(original.as_slice()).unwrap();
        let node = m
            .graph
            .as_mut()
            .unwrap()
            .node
            .iter_mut()
            .find(|n| n.op_type == "OwletMatMulInt8")
            .unwrap();
        f(node);
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        match owlet_runtime::models::Clip::load(&out) {
            Ok(_) => panic!("a broken int8 graph loaded"),
            Err(e) => e.to_string(),
        }
    };
    let e = edit(&|n| n.op_type = "OwletMatMulInt4".into());
    assert!(e.contains("vision.onnx") && e.contains("OwletMatMulInt4"), "{e}");
    let e = edit(&|n| n.input.truncate(2));
    assert!(
        e.contains("vision.onnx") && e.contains("OwletMatMulInt8") && e.contains("3 or 4 inputs"),
        "{e}"
    );
    let e = edit(&|n| n.input.swap(1, 2));
    assert!(e.contains("vision.onnx"), "{e}");
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = edit(&|n| {
            n.attribute.push(tract_onnx::pb::AttributeProto {
                name: "x_scale".into(),
                r#type: 1,
                f: bad,
                ..Default::default()
            })
        });
        assert!(
            e.contains("vision.onnx") && e.contains("x_scale must be a positive finite number"),
            "{bad}: {e}"
        );
    }
}

/// Each int8 node's static `x_scale`, by node name (None: per-row scales).
fn x_scales(path: &Path) -> Vec<(String, Option<f32>)> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    m.graph
        .unwrap()
        .node
        .into_iter()
        .filter(|n| n.op_type == "OwletMatMulInt8")
        .map(|n| (n.name.clone(), n.attribute.iter().find(|a| a.name == "x_scale").map(|a| a.f)))
        .collect()
}

fn static_options(images: Vec<PathBuf>) -> Options {
    let mut opts = Options::new(Target::Int8);
    let labels: Vec<String> = LABELS.map(String::from).to_vec();
    opts.static_activations = Some(owlet_quantize::calibrate::CalibrationSet::new(images, &labels));
    opts
}

#[test]
fn clip_int8_with_static_activation_scales_from_a_calibration_set() {
    let frames = heldout();
    let (_tmp, out, before, after) = convert("clip-demo", &static_options(frames.clone()));
    for g in ["vision.onnx", "text.onnx"] {
        let scales = x_scales(&out.join(g));
        assert_eq!(scales.len(), 24, "{g}");
        for (name, s) in &scales {
            assert!(
                s.is_some_and(|s| s > 0.0 && s.is_finite()),
                "{g}: {name} has no usable static scale: {s:?}"
            );
        }
    }
    // A layer's scale is the maximum over the set: a subset never finds a larger one,
    // and the first layer's input (a layer norm's output) differs from frame to frame.
    let (_tmp2, few, _, _) = convert("clip-demo", &static_options(frames[..2].to_vec()));
    let (all, sub) = (x_scales(&out.join("vision.onnx")), x_scales(&few.join("vision.onnx")));
    for ((name, a), (_, s)) in all.iter().zip(&sub) {
        assert!(s.unwrap() <= a.unwrap(), "{name}: 2 frames {s:?} > all frames {a:?}");
    }
    assert!(
        all.iter().zip(&sub).any(|((_, a), (_, s))| s.unwrap() < a.unwrap()),
        "the set changed no scale"
    );

    // Per-tensor scales cost accuracy against per-row ones (the report measures it);
    // they must still meet the bar on average and keep every decided label.
    let labels: Vec<String> = LABELS.map(String::from).to_vec();
    let r = report::compare(
        &repo().join("models/clip-demo"),
        &out,
        Target::Int8,
        &frames,
        &labels,
        (before, after),
    )
    .unwrap();
    eprintln!("{r}");
    assert!(r.image_cosine_mean >= 0.999 && r.image_cosine_worst >= 0.99, "{r}");
    assert!(r.text_cosine_worst.unwrap() >= 0.999, "{r}");
    assert!(r.zero_shot_decided.unwrap().0 >= 0.99, "{r}");
}

#[test]
fn blip2_int8_with_static_activation_scales_from_the_captions_fp32_writes() {
    let frames = calibration_images(&repo().join("models/scenes/demo")).unwrap();
    let (_tmp, out, before, after) = convert("blip2-demo", &static_options(frames.clone()));
    for (g, n) in [("vision.onnx", 36), ("decoder.onnx", 19)] {
        let scales = x_scales(&out.join(g));
        assert_eq!(scales.len(), n, "{g}");
        assert!(
            scales.iter().all(|(_, s)| s.is_some_and(|s| s > 0.0 && s.is_finite())),
            "{g}: {scales:?}"
        );
    }
    let r = report::compare(
        &repo().join("models/blip2-demo"),
        &out,
        Target::Int8,
        &frames,
        &[],
        (before, after),
    )
    .unwrap();
    eprintln!("{r}");
    assert!(r.image_cosine_mean >= 0.999, "{r}");
    assert!(r.caption_token_agreement.unwrap() >= 0.9, "{r}");
}

#[test]
fn static_activations_refuse_fp16_and_a_clip_set_without_labels_clearly() {
    let images = calibration_images(&repo().join("models/scenes/demo")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut opts = static_options(images.clone());
    opts.to = Target::Fp16;
    let e = quantize_bundle(&repo().join("models/clip-demo"), &out, &opts, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("int8"), "{e}");
    assert!(!out.exists(), "a refused conversion left a folder behind");
    let mut opts = Options::new(Target::Int8);
    opts.static_activations = Some(owlet_quantize::calibrate::CalibrationSet::new(images, &[]));
    let e = quantize_bundle(&repo().join("models/clip-demo"), &out, &opts, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--labels"), "{e}");
    assert!(!out.exists());
}
