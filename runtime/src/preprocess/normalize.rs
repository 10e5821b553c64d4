//! uint8 RGB (HWC) -> rescaled, normalised f32 CHW.
//!
//! Arithmetic follows transformers' PIL image processor: `rescale` multiplies in
//! float64 and casts to float32, `normalize` subtracts and divides in float32.

use image::RgbImage;

use crate::bundle::PreprocessSpec;

pub fn normalize_chw_into(img: &RgbImage, spec: &PreprocessSpec, out: &mut Vec<f32>) {
    // 256 possible values per channel: a lookup table per channel gives the exact
    // float32 result of the reference arithmetic at the cost of one load.
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, slot) in table.iter_mut().enumerate() {
            let rescaled = (v as f64 * spec.rescale) as f32;
            *slot = (rescaled - spec.mean[c]) / spec.std[c];
        }
    }
    let plane = (img.width() * img.height()) as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    let (r, rest) = out[start..].split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = lut[0][px[0] as usize];
        g[i] = lut[1][px[1] as usize];
        b[i] = lut[2][px[2] as usize];
    }
}
