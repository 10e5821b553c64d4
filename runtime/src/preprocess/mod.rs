//! Image -> `pixel_values`, exactly as the model's image processor did it.
//!
//! The steps and their constants come from the bundle's `[vision.preprocess]`, so
//! the CLI, the bridge and the tests share one implementation.

pub(crate) mod normalize;
pub(crate) mod resize;

use image::RgbImage;

use crate::bundle::{CropMode, PreprocessSpec, ResizeMode};

/// Output (height, width) of the resize step.
///
/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short
/// side becomes `size`, the long side `int(size * long / short)` (truncated).
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn resized_dims(spec: &PreprocessSpec, width: u32, height: u32) -> (u32, u32) {
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
///
/// Only the pixels the crop keeps are resized (`resize_bicubic_pil_window`): the
/// same pixels as resizing the whole image and then cropping it (`center_crop`),
/// at the crop's cost, whatever the image's shape.
pub fn model_view(spec: &PreprocessSpec, img: &RgbImage) -> RgbImage {
    let (w, h) = resized_dims(spec, img.width(), img.height());
    match spec.crop {
        CropMode::None => resize::resize_bicubic_pil(img, w, h),
        CropMode::Center => {
            let (cw, ch) = (spec.crop_size, spec.crop_size);
            let (left, top) = crop_origin((w, h), (cw, ch));
            // The part of the crop that lies inside the resized image; the rest is
            // padding (zeros), as in `center_crop`.
            let inside = |origin: i64, len: u32, size: u32| {
                origin.clamp(0, size as i64) as u32
                    ..(origin + len as i64).clamp(0, size as i64) as u32
            };
            let (columns, rows) = (inside(left, cw, w), inside(top, ch, h));
            let window =
                resize::resize_bicubic_pil_window(img, w, h, columns.clone(), rows.clone());
            if (window.width(), window.height()) == (cw, ch) {
                return window;
            }
            let mut out = RgbImage::new(cw, ch);
            let (dx, dy) = (columns.start as i64 - left, rows.start as i64 - top);
            image::imageops::replace(&mut out, &window, dx, dy);
            out
        }
    }
}

/// Top-left corner of a centred `crop` in an image of `size`, as transformers
/// computes it: int((h - ch) / 2), negative when the crop is larger.
fn crop_origin(size: (u32, u32), crop: (u32, u32)) -> (i64, i64) {
    ((size.0 as i64 - crop.0 as i64).div_euclid(2), (size.1 as i64 - crop.1 as i64).div_euclid(2))
}

/// transformers' `center_crop`: top = int((h - ch) / 2), left likewise; an image
/// smaller than the crop is padded with zeros around its centre.
#[cfg(any(test, feature = "internals"))]
pub fn center_crop(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (left, top) = crop_origin((img.width(), img.height()), (cw, ch));
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
#[cfg_attr(feature = "internals", visibility::make(pub))]
pub(crate) fn pixel_values_into(spec: &PreprocessSpec, img: &RgbImage, out: &mut Vec<f32>) {
    let view = model_view(spec, img);
    normalize::normalize_chw_into(&view, spec, out);
}

/// `batch` images' preprocessed pixels (`pixel_values_into`, one after the other)
/// as the vision graphs take them: [batch, 3, S, S].
pub(crate) fn pixel_tensor(
    spec: &PreprocessSpec,
    pixels: &[f32],
    batch: usize,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::Tensor> {
    let side = spec.crop_size as usize;
    tract_onnx::prelude::Tensor::from_shape(&[batch, 3, side, side], pixels)
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

    /// The scalar reference: the whole image resized, then cropped.
    fn resize_then_crop(spec: &PreprocessSpec, img: &RgbImage) -> RgbImage {
        let (w, h) = resized_dims(spec, img.width(), img.height());
        let resized = resize::resize_bicubic_pil(img, w, h);
        center_crop(&resized, spec.crop_size, spec.crop_size)
    }

    #[test]
    fn resizing_only_the_crop_gives_the_pixels_of_resizing_everything() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        for _ in 0..60 {
            let (w, h) = (rng.random_range(1..400), rng.random_range(1..400));
            let img = RgbImage::from_fn(w, h, |_, _| image::Rgb(rng.random()));
            let size = rng.random_range(1..64);
            let mut s = spec();
            s.size = size;
            s.crop_size = rng.random_range(1..=size + 8);
            s.resize =
                if rng.random_bool(0.5) { ResizeMode::Square } else { ResizeMode::ShortestEdge };
            assert_eq!(
                model_view(&s, &img),
                resize_then_crop(&s, &img),
                "{w}x{h} -> {size}, crop {}",
                s.crop_size
            );
        }
    }

    #[test]
    fn a_sliver_of_an_image_costs_only_the_crop() {
        // 16384 x 1 resized on its shortest edge is 3.7 M x 224 pixels; the view is
        // made without them (were it not, this test would allocate 2.5 GB).
        let img = RgbImage::from_fn(16384, 1, |x, _| image::Rgb([(x % 251) as u8, 7, 200]));
        let v = model_view(&spec(), &img);
        assert_eq!(v.dimensions(), (224, 224));
        let col = |y| *v.get_pixel(100, y);
        assert!((0..224).all(|y| col(y) == col(0)), "one source row: every output row alike");
    }

    #[test]
    fn every_image_shape_gives_the_crop_size() {
        for (w, h) in [(1, 1), (1, 500), (500, 1), (224, 224), (225, 223), (3000, 2000)] {
            let v = model_view(&spec(), &RgbImage::new(w, h));
            assert_eq!((v.width(), v.height()), (224, 224), "{w}x{h}");
        }
    }
}
