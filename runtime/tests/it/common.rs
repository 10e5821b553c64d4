use std::path::PathBuf;

use owlet_runtime::models::Clip;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn clip_bundle() -> PathBuf {
    repo().join("models/clip-test")
}

pub fn reference() -> Value {
    let p = clip_bundle().join("reference/reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn reference_image(name: &str) -> PathBuf {
    clip_bundle().join("reference/images").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn load_clip() -> Clip {
    Clip::load(clip_bundle()).expect("the test bundle loads")
}

pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// A fresh copy of the test bundle in a temp dir (removed on drop), for tests
/// that break it.
pub fn bundle_copy(tag: &str) -> tempfile::TempDir {
    let dst = tempfile::Builder::new().prefix(&format!("owlet-it-{tag}-")).tempdir().unwrap();
    for f in ["owlet.toml", "vision.onnx", "text.onnx", "tokenizer.json"] {
        std::fs::copy(clip_bundle().join(f), dst.path().join(f)).unwrap();
    }
    dst
}
