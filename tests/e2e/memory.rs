//! Memory regression: a whole `owlet similarity` process's peak resident memory against
//! the weight bytes of the bundle it loads, fp32 and int8, so that a second copy of
//! the weights that sneaks back into loading fails the build.
//!
//! The bundle (`synthetic_clip`) is made here, without torch: CLIP's interface and
//! its weight-heavy ops (constant-weight MatMuls with bias, a token-embedding Gather),
//! about 380 MB of fp32 weights. Peaks are the whole process's, from `wait4` in
//! `peak-rss` (tests/bin/peak_rss.rs).

use std::path::Path;
use std::process::Command;

use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use owlet_e2e::{bin, reference_image, repo};

/// Runs the binary `name` under `peak-rss` (which see: why not wait4 from here);
/// returns its peak resident set in MiB and its output.
fn run_measured(name: &str, args: &[&str]) -> (f64, std::process::Output) {
    let out = Command::new(bin("peak-rss"))
        .arg(bin(name))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("peak-rss starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak from peak-rss: {stderr}"));
    (kib / 1024.0, out)
}

/// Bytes of a bundle's graphs and their external data (its weights, to within the
/// graphs' few KB of structure).
fn graph_bytes(bundle: &Path) -> u64 {
    std::fs::read_dir(bundle)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".onnx") || name.ends_with(".onnx.data")
        })
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

/// What the same binary holds with the smallest bundle: code, libraries, the
/// tokenizer, the pool. A bundle's weights are measured above this.
fn baseline_mb() -> f64 {
    let image = reference_image("chelsea.png");
    let bundle = owlet_e2e::clip_bundle();
    let (peak, out) = run_measured(
        "owlet",
        &["similarity", "--model", &bundle, "--images", &image, "--texts", "a cat", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    peak
}

/// A whole process's peak with `bundle`, above `base`, as a multiple of its weights;
/// with the peak and the weights in MiB.
fn peak_over_weights(bundle: &Path, base: f64) -> (f64, f64, f64) {
    let image = reference_image("chelsea.png");
    let b = bundle.display().to_string();
    let (peak, out) = run_measured(
        "owlet",
        &["similarity", "--model", &b, "--images", &image, "--texts", "a photo of a cat", "--json"],
    );
    assert!(out.status.success(), "owlet similarity: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
    assert!(v.to_string().contains("chelsea"), "the image is not in {v}");
    let weights_mb = graph_bytes(bundle) as f64 / (1 << 20) as f64;
    ((peak - base) / weights_mb, peak, weights_mb)
}

/// The peak above the baseline, as a multiple of the weight bytes, may not pass these.
/// Measured on x86-64 (2026-12-06): fp32 1.21x (the largest tensor, the token table,
/// is copied once by tract while it builds it), int8 0.99x. Before graph_file.rs,
/// `LoadingAllocations` and `pack_before_typing`: 1.88x and 1.53x, which fail here.
const FP32_LIMIT: f64 = 1.4;
const INT8_LIMIT: f64 = 1.2;

#[test]
fn peak_memory_of_loading_and_running_stays_within_a_multiple_of_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let fp32 = dir.path().join("clip-fp32");
    synthetic_clip(&fp32);
    let base = baseline_mb();
    let (ratio, peak, weights) = peak_over_weights(&fp32, base);
    eprintln!("fp32: weights {weights:.0} MiB, peak {peak:.0} MiB, {ratio:.2}x above the baseline");
    assert!(ratio <= FP32_LIMIT, "fp32 peak {ratio:.2}x the weights (limit {FP32_LIMIT}x)");

    let int8 = dir.path().join("clip-int8");
    let q = Command::new(bin("owlet-quantize"))
        .args([fp32.as_os_str(), int8.as_os_str()])
        .args(["--to", "int8"])
        .output()
        .unwrap();
    assert!(q.status.success(), "owlet-quantize: {}", String::from_utf8_lossy(&q.stderr));
    let (ratio, peak, weights) = peak_over_weights(&int8, base);
    eprintln!("int8: weights {weights:.0} MiB, peak {peak:.0} MiB, {ratio:.2}x above the baseline");
    assert!(ratio <= INT8_LIMIT, "int8 peak {ratio:.2}x the weights (limit {INT8_LIMIT}x)");
}

// ---- the synthetic bundle ----

const BATCH: &str = "batch";
/// CLIP ViT-B/32's widths: 196 patches of 768 values are exactly one 224x224 image.
const VISION: (usize, usize, usize) = (768, 3072, 12); // width, MLP width, layers
const TEXT: (usize, usize, usize) = (512, 2048, 6);
const VOCAB: usize = 49408;
const CONTEXT: usize = 77;
const EMBED: usize = 512;

/// A CLIP bundle with `models/clip-test`'s manifest and tokenizer and graphs of
/// residual MLP blocks at ViT-B/32's widths with random weights: 12 blocks on the
/// image's patches, 6 on the text's token embeddings, mean-pooled and projected.
pub fn synthetic_clip(out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let test = repo().join("models/clip-test");
    std::fs::copy(test.join("tokenizer.json"), out.join("tokenizer.json")).unwrap();
    let manifest = std::fs::read_to_string(test.join("owlet.toml"))
        .unwrap()
        .replace("embed_dim = 16", &format!("embed_dim = {EMBED}"))
        .replace("name = \"clip-test\"", "name = \"clip-synthetic\"");
    std::fs::write(out.join("owlet.toml"), manifest).unwrap();
    let mut rng = Rng(0x5eed);
    write_model(&out.join("vision.onnx"), vision_graph(&mut rng));
    write_model(&out.join("text.onnx"), text_graph(&mut rng));
}

fn vision_graph(rng: &mut Rng) -> GraphProto {
    let mut g = Builder::default();
    let shape = g.const_i64("patches_shape", &[-1, 196, VISION.0 as i64]);
    let h = g.node("Reshape", &["pixel_values", &shape], vec![]);
    g.tower(rng, "vision", h, VISION, "image_embeds");
    g.finish(
        vec![input("pixel_values", DataType::Float, &[None, Some(3), Some(224), Some(224)])],
        vec![input("image_embeds", DataType::Float, &[None, Some(EMBED)])],
    )
}

fn text_graph(rng: &mut Rng) -> GraphProto {
    let mut g = Builder::default();
    let table = g.weight(rng, "text.token_embedding", &[VOCAB, TEXT.0]);
    let tokens = g.node("Gather", &[&table, "input_ids"], vec![int("axis", 0)]);
    // The mask takes part (padding tokens zeroed), so that it is a real input.
    let mask = g.node("Cast", &["attention_mask"], vec![int("to", DataType::Float as i64)]);
    let axes = g.const_i64("mask_axes", &[2]);
    let mask = g.node("Unsqueeze", &[&mask, &axes], vec![]);
    let h = g.node("Mul", &[&tokens, &mask], vec![]);
    g.tower(rng, "text", h, TEXT, "text_embeds");
    g.finish(
        vec![
            input("input_ids", DataType::Int64, &[None, Some(CONTEXT)]),
            input("attention_mask", DataType::Int64, &[None, Some(CONTEXT)]),
        ],
        vec![input("text_embeds", DataType::Float, &[None, Some(EMBED)])],
    )
}

fn write_model(path: &Path, graph: GraphProto) {
    let model = ModelProto {
        ir_version: 8,
        producer_name: "owlet memory test".into(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder {
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        self.node_named(op, inputs, &out);
        self.nodes.last_mut().expect("just pushed").attribute = attrs;
        out
    }

    fn node_named(&mut self, op: &str, inputs: &[&str], output: &str) {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: format!("{op}_{}", self.nodes.len()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        });
    }

    /// A random f32 initializer, scaled as a trained layer's (1/sqrt(fan in)).
    fn weight(&mut self, rng: &mut Rng, name: &str, dims: &[usize]) -> String {
        let scale = 1.0 / (dims[0] as f32).sqrt();
        let n: usize = dims.iter().product();
        let mut raw = Vec::with_capacity(n * 4);
        for _ in 0..n {
            raw.extend_from_slice(&(rng.uniform() * scale).to_le_bytes());
        }
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: raw,
            ..Default::default()
        });
        name.into()
    }

    fn const_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name.into()
    }

    /// `layers` MLP blocks on h, mean-pooled over the tokens and projected to EMBED
    /// as the graph's output `output`.
    fn tower(
        &mut self,
        rng: &mut Rng,
        name: &str,
        mut h: String,
        (w, mlp, layers): (usize, usize, usize),
        output: &str,
    ) {
        for l in 0..layers {
            h = self.mlp_block(rng, &format!("{name}.{l}"), &h, w, mlp);
        }
        let pooled = self.node("ReduceMean", &[&h], vec![ints("axes", &[1]), int("keepdims", 0)]);
        let proj = self.weight(rng, &format!("{name}.proj"), &[w, EMBED]);
        self.node_named("MatMul", &[&pooled, &proj], output);
    }

    /// h + W2 · relu(W1 · h + b1) + b2, the shape of a transformer's MLP.
    fn mlp_block(&mut self, rng: &mut Rng, name: &str, h: &str, w: usize, mlp: usize) -> String {
        let w1 = self.weight(rng, &format!("{name}.fc1.weight"), &[w, mlp]);
        let b1 = self.weight(rng, &format!("{name}.fc1.bias"), &[mlp]);
        let w2 = self.weight(rng, &format!("{name}.fc2.weight"), &[mlp, w]);
        let b2 = self.weight(rng, &format!("{name}.fc2.bias"), &[w]);
        let x = self.node("MatMul", &[h, &w1], vec![]);
        let x = self.node("Add", &[&x, &b1], vec![]);
        let x = self.node("Relu", &[&x], vec![]);
        let x = self.node("MatMul", &[&x, &w2], vec![]);
        let x = self.node("Add", &[&x, &b2], vec![]);
        self.node("Add", &[h, &x], vec![])
    }

    fn finish(self, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> GraphProto {
        GraphProto {
            name: "synthetic".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

/// A graph input or output: element type and dims (`None`: the symbolic batch).
fn input(name: &str, dt: DataType, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = |d: &Option<usize>| tensor_shape_proto::Dimension {
        value: Some(match d {
            Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
            None => tensor_shape_proto::dimension::Value::DimParam(BATCH.into()),
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto { dim: dims.iter().map(dim).collect() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// xorshift64*: weights need no statistical quality, only to be incompressible noise.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1.7, 1.7): unit variance.
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
        (bits as f32 / (1u32 << 24) as f32 - 0.5) * 3.464
    }
}

/// Issue 22: a 16384 x 1 JPEG of 12 KB peaked at 535 MB in `owlet embed` with the
/// demo bundle (shortest edge 96: a 1.6 M x 96 resize, to keep 96 x 96 of it). Now
/// only the crop is resized: such a sliver costs what an ordinary frame costs.
#[test]
fn an_extreme_aspect_ratio_costs_no_more_memory_than_an_ordinary_frame() {
    let dir = tempfile::tempdir().unwrap();
    let sliver = dir.path().join("sliver.jpg");
    image::RgbImage::from_fn(16384, 1, |x, _| image::Rgb([(x % 256) as u8, 90, 160]))
        .save(&sliver)
        .unwrap();
    let tall = dir.path().join("tall.jpg");
    image::RgbImage::from_fn(1, 16384, |_, y| image::Rgb([30, (y % 256) as u8, 60]))
        .save(&tall)
        .unwrap();
    let bundle = repo().join("models/clip-demo").display().to_string();
    let ordinary = repo().join("models/scenes/demo/demo-00004.jpg").display().to_string();
    let (base, out) = run_measured("owlet", &["embed", "--model", &bundle, &ordinary]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for image in [&sliver, &tall] {
        let path = image.display().to_string();
        let (peak, out) = run_measured("owlet", &["embed", "--model", &bundle, &path]);
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            peak < base + 16.0,
            "{path}: {peak:.0} MiB against {base:.0} MiB for a 320x240 frame"
        );
    }
}
