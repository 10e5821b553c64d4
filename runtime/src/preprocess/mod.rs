//! Image -> `pixel_values`, exactly as the model's image processor did it.
//!
//! The steps and their constants come from the bundle's `[vision.preprocess]`, so
//! the CLI, the bridge and the tests share one implementation.

pub mod normalize;
pub mod resize;

use image::RgbImage;

use crate::bundle::{CropMode, PreprocessSpec, ResizeMode};

/// Output (height, width) of the resize step.
///
/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short
/// side becomes `size`, the long side `int(size * long / short)` (truncated).
pub fn resized_dims(spec: &PreprocessSpec, width: u32, height: u32) -> (u32, u32) {
    match spec.resize {
        ResizeMode::Square => (spec.size, spec.size),
        ResizeMode::ShortestEdge => {
            let (short, long) = if width <= height { (width, height) } else { (height, width) };
            let new_long = ((spec.size as u64 * long as u64) as f64 / short as f64) as u32;
            if width <= height {
                (spec.size, new_long.max(1))
            } else {
                (new_long.max(1), spec.size)
            }
        }
    }
}

/// The model's view of an image: resized and cropped, still 8-bit RGB.
pub fn model_view(spec: &PreprocessSpec, img: &RgbImage) -> RgbImage {
    let (w, h) = resized_dims(spec, img.width(), img.height());
    let resized = resize::resize_bicubic_pil(img, w, h);
    match spec.crop {
        CropMode::None => resized,
        CropMode::Center => center_crop(&resized, spec.crop_size, spec.crop_size),
    }
}

/// transformers' `center_crop`: top = int((h - ch) / 2), left likewise; an image
/// smaller than the crop is padded with zeros around its centre.
pub fn center_crop(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let top = (h - ch as i64).div_euclid(2);
    let left = (w - cw as i64).div_euclid(2);
    let mut out = RgbImage::new(cw, ch);
    for y in 0..ch as i64 {
        let sy = y + top;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..cw as i64 {
            let sx = x + left;
            if sx >= 0 && sx < w {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// Append the normalised CHW pixels of one image to `out` (length 3 * side * side).
pub fn pixel_values_into(spec: &PreprocessSpec, img: &RgbImage, out: &mut Vec<f32>) {
    let view = model_view(spec, img);
    normalize::normalize_chw_into(&view, spec, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Resample;

    fn spec() -> PreprocessSpec {
        PreprocessSpec {
            resize: ResizeMode::ShortestEdge,
            size: 224,
            resample: Resample::Bicubic,
            crop: CropMode::Center,
            crop_size: 224,
            rescale: 1.0 / 255.0,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        }
    }

    #[test]
    fn shortest_edge_truncates_the_long_side_like_transformers() {
        // int(224 * 451 / 300) = 336; int(224 * 640 / 427) = 335.
        assert_eq!(resized_dims(&spec(), 451, 300), (336, 224));
        assert_eq!(resized_dims(&spec(), 427, 640), (224, 335));
        assert_eq!(resized_dims(&spec(), 1, 10_000), (224, 2_240_000));
    }

    #[test]
    fn every_image_shape_gives_the_crop_size() {
        for (w, h) in [(1, 1), (1, 500), (500, 1), (224, 224), (225, 223), (3000, 2000)] {
            let v = model_view(&spec(), &RgbImage::new(w, h));
            assert_eq!((v.width(), v.height()), (224, 224), "{w}x{h}");
        }
    }
}
