//! Images with transparency, 16-bit samples, grey and CMYK, against what
//! transformers' `convert_to_rgb` (transparency over white) and CLIPImageProcessorPil
//! made of them (models/reference_pixels.py; never owlet).

use ndarray::{Array3, ArrayView3};
use ndarray_npy::read_npy;
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::preprocess;
use serde_json::Value;

use crate::common::*;

fn dir() -> std::path::PathBuf {
    clip_bundle().join("reference/pixels")
}

fn cases() -> Vec<Value> {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("pixels.json")).unwrap()).unwrap();
    r["cases"].as_array().unwrap().clone()
}

#[test]
fn decoded_rgb_is_identical_to_transformers_convert_to_rgb() {
    let cases = cases();
    assert!(cases.len() >= 12);
    for case in &cases {
        let name = case["image"].as_str().unwrap();
        let expected: Array3<u8> = read_npy(dir().join(case["rgb"].as_str().unwrap())).unwrap();
        let ours = load_rgb(&dir().join(name), DecodeLimits::default()).unwrap();
        let (w, h) = (ours.width() as usize, ours.height() as usize);
        let ours = ArrayView3::from_shape((h, w, 3), ours.as_raw()).unwrap();
        assert_eq!(ours.shape(), expected.shape(), "{name}");
        let differ = ours.iter().zip(expected.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ,
            0,
            "{name} ({}): {differ} of {} samples differ",
            case["what"],
            ours.len()
        );
    }
}

#[test]
fn pixel_values_match_clip_image_processor() {
    let spec = load_clip().vision().preprocess_spec().clone();
    let mut checked = 0;
    for case in cases() {
        let Some(file) = case["pixel_values"].as_str() else { continue };
        let name = case["image"].as_str().unwrap();
        let expected: Array3<f32> = read_npy(dir().join(file)).unwrap();
        let img = load_rgb(&dir().join(name), DecodeLimits::default()).unwrap();
        let mut ours = Vec::new();
        preprocess::pixel_values_into(&spec, &img, &mut ours);
        assert_eq!(ours.len(), expected.len(), "{name}");
        // On the 0..1 scale (the division by std undone): 1/255 is one level.
        let plane = ours.len() / 3;
        let worst = ours
            .iter()
            .zip(expected.iter())
            .enumerate()
            .map(|(i, (a, b))| (a - b).abs() * spec.std[i / plane])
            .fold(0f32, f32::max);
        // At CLIP's own size the resize is the identity: the values must agree to
        // float rounding. Through the bicubic resize, within one level.
        let resized = (img.width(), img.height()) != (224, 224);
        let allowed = if resized { 1.0 / 255.0 + 1e-6 } else { 1e-6 };
        eprintln!("{name}: worst {:.2} levels", worst * 255.0);
        assert!(worst <= allowed, "{name}: worst pixel differs by {} levels", worst * 255.0);
        checked += 1;
    }
    assert_eq!(checked, 4);
}
