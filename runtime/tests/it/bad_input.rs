//! Bad input of every kind gets a clear error naming what was wrong, never a panic.

use std::fs;

use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::Clip;
use owlet_runtime::Error;

use crate::common::*;

fn load_err(dir: &std::path::Path) -> String {
    match Clip::load(dir) {
        Ok(_) => panic!("{} loaded but is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_truncated_and_hostile_images_are_errors_naming_the_file() {
    for (name, needle) in [
        ("bad/bomb.png", "limit"),
        ("bad/truncated.jpg", "truncated.jpg"),
        ("bad/not_an_image.jpg", "not a supported image format"),
        ("bad/empty.png", "empty"),
        ("does_not_exist.png", "does_not_exist.png"),
    ] {
        let e = load_rgb(&fixture(name), DecodeLimits::default()).unwrap_err();
        assert!(matches!(e, Error::Image { .. }), "{name}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(needle), "{name}: {msg:?} should mention {needle:?}");
    }
}

#[test]
fn a_folder_is_not_an_image() {
    let e = load_rgb(&fixture("bad"), DecodeLimits::default()).unwrap_err().to_string();
    assert!(e.contains("not a file"), "{e}");
}

#[test]
fn a_missing_bundle_or_manifest_is_named() {
    let e = load_err(std::path::Path::new("/no/such/bundle"));
    assert!(e.contains("/no/such/bundle") && e.contains("not a folder"), "{e}");
    let tmp = bundle_copy("nomanifest");
    let dir = tmp.path();
    fs::remove_file(dir.join("owlet.toml")).unwrap();
    let e = load_err(dir);
    assert!(e.contains("owlet.toml"), "{e}");
}

#[test]
fn a_missing_graph_or_tokenizer_names_the_file_and_field() {
    for (file, field) in [
        ("vision.onnx", "vision.file"),
        ("text.onnx", "text.file"),
        ("tokenizer.json", "text.tokenizer"),
    ] {
        let tmp = bundle_copy(&format!("missing-{file}"));
        let dir = tmp.path();
        fs::remove_file(dir.join(file)).unwrap();
        let e = load_err(dir);
        assert!(e.contains(file) && e.contains(field) && e.contains("missing"), "{e}");
    }
}

#[test]
fn truncated_and_garbage_graphs_are_errors() {
    let tmp = bundle_copy("truncated-onnx");
    let dir = tmp.path();
    let bytes = fs::read(dir.join("vision.onnx")).unwrap();
    for (tag, content) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header only", bytes[..64].to_vec()),
        ("garbage", b"this is not protobuf at all \x00\xff\xfe".to_vec()),
        ("empty", Vec::new()),
    ] {
        fs::write(dir.join("vision.onnx"), &content).unwrap();
        let e = load_err(dir);
        assert!(e.contains("vision.onnx"), "{tag}: {e}");
    }
}

#[test]
fn swapped_graphs_are_refused_with_the_expected_interface() {
    let tmp = bundle_copy("swapped");
    let dir = tmp.path();
    fs::copy(clip_bundle().join("text.onnx"), dir.join("vision.onnx")).unwrap();
    let e = load_err(dir);
    assert!(e.contains("vision") && e.contains("pixel_values"), "{e}");

    let tmp = bundle_copy("swapped2");
    let dir = tmp.path();
    fs::copy(clip_bundle().join("vision.onnx"), dir.join("text.onnx")).unwrap();
    let e = load_err(dir);
    assert!(e.contains("text") && e.contains("input"), "{e}");
}

#[test]
fn a_manifest_that_disagrees_with_the_graph_is_refused() {
    let tmp = bundle_copy("wrong-dim");
    let dir = tmp.path();
    let m = fs::read_to_string(dir.join("owlet.toml"))
        .unwrap()
        .replace("embed_dim = 16", "embed_dim = 32");
    fs::write(dir.join("owlet.toml"), m).unwrap();
    let e = load_err(dir);
    assert!(e.contains("output width 16") && e.contains("embed_dim 32"), "{e}");
}

#[test]
fn a_corrupt_tokenizer_is_an_error() {
    let tmp = bundle_copy("bad-tokenizer");
    let dir = tmp.path();
    fs::write(dir.join("tokenizer.json"), "{\"version\": \"1.0\", \"model\": 3").unwrap();
    let e = load_err(dir);
    assert!(e.contains("tokenizer.json") && e.contains("tokenizer"), "{e}");
}

#[test]
fn broken_manifests_name_the_field() {
    for (tag, from, to, needle) in [
        ("kind", "kind = \"clip\"", "kind = \"bert\"", "unknown variant"),
        (
            "std",
            "std = [0.26862954, 0.26130258, 0.27577711]",
            "std = [0.2, 0.0, 0.2]",
            "vision.preprocess.std",
        ),
        ("crop", "crop_size = 224", "crop_size = 999", "vision.preprocess.crop_size"),
        ("scale", "logit_scale = ", "logit_scale = -", "clip.logit_scale"),
        ("toml", "[text]", "[text", "line"),
    ] {
        let tmp = bundle_copy(&format!("manifest-{tag}"));
        let dir = tmp.path();
        let m = fs::read_to_string(dir.join("owlet.toml")).unwrap();
        assert!(m.contains(from), "{tag}: fixture text moved");
        fs::write(dir.join("owlet.toml"), m.replacen(from, to, 1)).unwrap();
        let e = load_err(dir);
        assert!(e.contains("owlet.toml") && e.contains(needle), "{tag}: {e}");
    }
}

#[test]
fn empty_and_odd_texts_and_labels_do_not_panic() {
    let clip = load_clip();
    let long = "word ".repeat(500);
    let texts = ["", " ", "\u{0}", "\u{202e}\u{fe0f}", long.as_str(), "<|endoftext|><|endoftext|>"];
    let e = clip.embed_texts(&texts).unwrap();
    assert_eq!(e.len(), texts.len());
    assert!(e.data.iter().all(|x| x.is_finite()));
    assert!(clip.label_set(&[], &[]).is_err());
    assert!(clip.label_set(&["cat".into(), " ".into()], &[]).is_err());
    assert!(clip.label_set(&["cat".into()], &["no placeholder".into()]).is_err());
}

#[test]
fn degenerate_image_shapes_embed() {
    let clip = load_clip();
    let imgs: Vec<_> = [(1, 1), (1, 300), (300, 1), (2000, 3)]
        .iter()
        .map(|&(w, h)| image::RgbImage::new(w, h))
        .collect();
    let e = clip.embed_images(&imgs).unwrap();
    assert!(e.data.iter().all(|x| x.is_finite()));
}
