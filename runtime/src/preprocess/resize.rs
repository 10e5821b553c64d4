//! Bicubic resampling, a port of Pillow's `ImagingResample` for 8-bit images.
//!
//! CLIP and BLIP-2 were trained on images resized by PIL (OpenAI's `preprocess`
//! and transformers' PIL image processors both call `Image.resize(..., BICUBIC)`),
//! so owlet reproduces PIL bit for bit rather than using a generic filter: the
//! antialiased support (scaled by the downsampling factor), the normalised weights
//! in 22-bit fixed point, and the horizontal pass rounded to 8 bits before the
//! vertical one.
//! Reference: Pillow `src/libImaging/Resample.c` (`precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`, `ImagingResampleInner`).

use image::RgbImage;

/// Fixed-point precision for 8-bit images: 32 bits minus 8 for the value, minus 2
/// for the sign and the overflow of sums of negative weights (Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Keys' cubic with a = -0.5, Pillow's `bicubic_filter`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}
const BICUBIC_SUPPORT: f64 = 2.0;

/// Per output pixel: the first input pixel and the fixed-point weights.
struct Coeffs {
    ksize: usize,
    /// (first input index, number of taps) per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` weights per output index.
    weights: Vec<i32>,
}

fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates towards zero; both values are >= -0.5 here.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let taps = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(taps) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            // normalize_coeffs_8bpc: round half away from zero.
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] =
                if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, taps));
    }
    Coeffs { ksize, bounds, weights }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize an RGB image to `width` x `height` exactly as
/// `PIL.Image.resize((width, height), Image.BICUBIC)` does.
pub fn resize_bicubic_pil(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (dw, dh) = (width as usize, height as usize);
    if (sw, sh) == (dw, dh) || dw == 0 || dh == 0 || sw == 0 || sh == 0 {
        return if (sw, sh) == (dw, dh) { src.clone() } else { RgbImage::new(width, height) };
    }
    let horiz = precompute_coeffs(sw, dw);
    let vert = precompute_coeffs(sh, dh);
    let need_h = sw != dw;
    let need_v = sh != dh;

    // Horizontal pass over only the rows the vertical pass will read.
    let (rows_first, rows_last) = if need_v {
        let first = vert.bounds[0].0;
        let (lmin, ltaps) = vert.bounds[dh - 1];
        (first, lmin + ltaps)
    } else {
        (0, sh)
    };
    let src_px = src.as_raw();
    let (tmp, tmp_w, row_offset): (std::borrow::Cow<[u8]>, usize, usize) = if need_h {
        let rows = rows_last - rows_first;
        let mut tmp = vec![0u8; rows * dw * 3];
        for y in 0..rows {
            let in_row = &src_px[(y + rows_first) * sw * 3..][..sw * 3];
            let out_row = &mut tmp[y * dw * 3..][..dw * 3];
            for (xx, &(xmin, taps)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..][..taps];
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &in_row[(xmin + x) * 3..][..3];
                    acc[0] += p[0] as i32 * w;
                    acc[1] += p[1] as i32 * w;
                    acc[2] += p[2] as i32 * w;
                }
                out_row[xx * 3] = clip8(acc[0]);
                out_row[xx * 3 + 1] = clip8(acc[1]);
                out_row[xx * 3 + 2] = clip8(acc[2]);
            }
        }
        (std::borrow::Cow::Owned(tmp), dw, rows_first)
    } else {
        (std::borrow::Cow::Borrowed(src_px.as_slice()), sw, 0)
    };
    if !need_v {
        return RgbImage::from_raw(width, height, tmp.into_owned())
            .expect("buffer size is width * height * 3 by construction");
    }

    let mut out = vec![0u8; dw * dh * 3];
    let row_len = tmp_w * 3;
    for (yy, &(ymin, taps)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..][..taps];
        let out_row = &mut out[yy * row_len..][..row_len];
        for (i, o) in out_row.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc += tmp[(ymin - row_offset + y) * row_len + i] as i32 * w;
            }
            *o = clip8(acc);
        }
    }
    RgbImage::from_raw(width, height, out)
        .expect("buffer size is width * height * 3 by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_each_output_pixel_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 224), (224, 640), (300, 224), (7, 3), (3, 7)] {
            let c = precompute_coeffs(i, o);
            for (xx, &(_, taps)) in c.bounds.iter().enumerate() {
                let s: i64 = c.weights[xx * c.ksize..][..taps].iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= taps as i64, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_through_up_and_downsampling() {
        let img = RgbImage::from_pixel(97, 61, image::Rgb([10, 128, 250]));
        for (w, h) in [(224, 224), (13, 40), (97, 30), (300, 61)] {
            let r = resize_bicubic_pil(&img, w, h);
            assert_eq!((r.width(), r.height()), (w, h));
            assert!(r.pixels().all(|p| p.0 == [10, 128, 250]));
        }
    }
}
