//! Parity with the reference outputs that models/export.py wrote with transformers
//! (never with owlet) beside the test bundle.

use ndarray_npy::read_npy;
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::preprocess;
use owlet_runtime::tokenize::TextTokenizer;

use crate::common::*;

const COSINE_FP32: f64 = 0.99999;

fn reference_images() -> Vec<String> {
    strings(&reference()["images"])
}

#[test]
fn preprocessing_of_real_photographs_is_within_one_level_of_clip_image_processor() {
    let clip = load_clip();
    let spec = clip.vision().preprocess_spec().clone();
    for name in reference_images() {
        let stem = name.rsplit_once('.').unwrap().0;
        let expected: ndarray::Array3<f32> =
            read_npy(clip_bundle().join(format!("reference/{stem}.pixel_values.npy"))).unwrap();
        let img = load_rgb(&reference_image(&name), DecodeLimits::default()).unwrap();
        let mut ours = Vec::new();
        preprocess::pixel_values_into(&spec, &img, &mut ours);
        assert_eq!(ours.len(), expected.len(), "{name}");
        // Compare on the 0..1 scale (undo the division by std): 1/255 is one level.
        let plane = ours.len() / 3;
        let mut worst = 0f32;
        let mut exact = 0usize;
        for (i, (a, b)) in ours.iter().zip(expected.iter()).enumerate() {
            let d = (a - b).abs() * spec.std[i / plane];
            worst = worst.max(d);
            exact += (d < 1e-6) as usize;
        }
        eprintln!(
            "{name}: worst {:.5} (x255 = {:.2} levels), {:.2}% exact",
            worst,
            worst * 255.0,
            100.0 * exact as f64 / ours.len() as f64
        );
        assert!(
            worst <= 1.0 / 255.0 + 1e-6,
            "{name}: worst pixel differs by {} levels",
            worst * 255.0
        );
    }
}

#[test]
fn vision_graph_matches_transformers_on_its_pixel_values() {
    let clip = load_clip();
    let r = reference();
    let expected = matrix(&r["image_embeds"]);
    let names = reference_images();
    let mut pixels = Vec::new();
    for name in &names {
        let stem = name.rsplit_once('.').unwrap().0;
        let a: ndarray::Array3<f32> =
            read_npy(clip_bundle().join(format!("reference/{stem}.pixel_values.npy"))).unwrap();
        pixels.extend(a.iter().cloned());
    }
    let raw = clip.vision().run_pixels(pixels, names.len()).unwrap();
    let dim = expected[0].len();
    for (i, e) in expected.iter().enumerate() {
        let c = cosine(&raw[i * dim..][..dim], e);
        assert!(c >= COSINE_FP32, "{}: cosine {c}", names[i]);
    }
}

#[test]
fn image_embeddings_from_files_match_transformers() {
    let clip = load_clip();
    let expected = matrix(&reference()["image_embeds"]);
    let imgs: Vec<_> = reference_images()
        .iter()
        .map(|n| load_rgb(&reference_image(n), DecodeLimits::default()).unwrap())
        .collect();
    let e = clip.embed_images(&imgs).unwrap();
    for (i, exp) in expected.iter().enumerate() {
        let c = cosine(e.row(i), exp);
        assert!(c >= COSINE_FP32, "image {i}: cosine {c}");
        let norm: f32 = e.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "embeddings are L2-normalised, got norm {norm}");
    }
}

#[test]
fn batched_and_single_image_embeddings_agree() {
    let clip = load_clip();
    let imgs: Vec<_> = reference_images()
        .iter()
        .map(|n| load_rgb(&reference_image(n), DecodeLimits::default()).unwrap())
        .collect();
    let batch = clip.embed_images(&imgs).unwrap();
    for (i, img) in imgs.iter().enumerate() {
        let one = clip.embed_images(std::slice::from_ref(img)).unwrap();
        assert!(cosine(one.row(0), batch.row(i)) >= 0.999999);
    }
}

#[test]
fn text_embeddings_match_transformers() {
    let clip = load_clip();
    let r = reference();
    let texts = strings(&r["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e = clip.embed_texts(&refs).unwrap();
    for (i, exp) in matrix(&r["text_embeds"]).iter().enumerate() {
        let c = cosine(e.row(i), exp);
        assert!(c >= COSINE_FP32, "{:?}: cosine {c}", texts[i]);
    }
}

#[test]
fn image_text_probabilities_match_clip_model_logits() {
    let clip = load_clip();
    let r = reference();
    let texts = strings(&r["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let imgs: Vec<_> = reference_images()
        .iter()
        .map(|n| load_rgb(&reference_image(n), DecodeLimits::default()).unwrap())
        .collect();
    let cos = clip.embed_images(&imgs).unwrap().dot_matrix(&clip.embed_texts(&refs).unwrap());
    let expected_logits = matrix(&r["logits_per_image"]);
    let expected_probs = matrix(&r["probs_per_image"]);
    for i in 0..imgs.len() {
        let logits: Vec<f32> = cos[i].iter().map(|c| c * clip.logit_scale()).collect();
        let probs = owlet_runtime::similarity::softmax(&logits);
        for j in 0..texts.len() {
            assert!((logits[j] - expected_logits[i][j]).abs() < 2e-3, "logit [{i}][{j}]");
            assert!(
                (probs[j] - expected_probs[i][j]).abs() < 1e-4,
                "prob [{i}][{j}]: {} vs {}",
                probs[j],
                expected_probs[i][j]
            );
        }
    }
}

#[test]
fn zero_shot_probabilities_with_template_averaging_are_within_1e_4() {
    let clip = load_clip();
    let zs = &reference()["zero_shot"];
    let labels = strings(&zs["labels"]);
    let templates = strings(&zs["templates"]);
    let set = clip.label_set(&labels, &templates).unwrap();
    let imgs: Vec<_> = reference_images()
        .iter()
        .map(|n| load_rgb(&reference_image(n), DecodeLimits::default()).unwrap())
        .collect();
    let results = clip.classify(&imgs, &set).unwrap();
    let expected = matrix(&zs["probs"]);
    let mut worst = 0f32;
    for (res, exp) in results.iter().zip(&expected) {
        for (p, e) in res.probs.iter().zip(exp) {
            worst = worst.max((p - e).abs());
        }
    }
    eprintln!("zero-shot: worst probability difference {worst:e}");
    assert!(worst <= 1e-4, "worst probability difference {worst}");
}

#[test]
fn tokenization_ids_are_identical_to_clip_tokenizer() {
    let bundle = owlet_runtime::Bundle::open(clip_bundle()).unwrap();
    let t = bundle.text();
    let tok = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t).unwrap();
    let cases = reference()["tokenization"].as_array().unwrap().clone();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let enc = tok.encode_batch(&[text]).unwrap();
        let ids: Vec<i64> =
            case["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let mask: Vec<i64> = case["attention_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(enc.input_ids, ids, "ids of {text:?}");
        assert_eq!(enc.attention_mask, mask, "attention mask of {text:?}");
        let tokens = tok.tokenize(text).unwrap().tokens;
        assert_eq!(tokens, strings(&case["tokens"]), "tokens of {text:?}");
    }
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 40x20 with a red left half and orientation 6: displayed 20x40, red on top.
    let img = load_rgb(&fixture("exif_orientation_6.jpg"), DecodeLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (20, 40));
    let top = img.get_pixel(10, 5).0;
    let bottom = img.get_pixel(10, 35).0;
    assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom is blue: {bottom:?}");
}
