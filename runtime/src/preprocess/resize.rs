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

use std::ops::Range;

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

/// The coefficients of output indices `outputs` only (index 0 of the result is
/// output `outputs.start`): each output's weights depend on its own index alone,
/// so a window of the resized image costs what its own pixels cost.
fn precompute_coeffs_for(in_size: usize, out_size: usize, outputs: Range<usize>) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(outputs.len());
    let mut weights = vec![0i32; outputs.len() * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in outputs.enumerate() {
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
            weights[i * ksize + x] =
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
    if (src.width(), src.height()) == (width, height) {
        return src.clone();
    }
    resize_bicubic_pil_window(src, width, height, 0..width, 0..height)
}

/// The window `columns` x `rows` of `resize_bicubic_pil(src, width, height)`,
/// computed alone: the same pixels, without the rest of the resized image. A
/// resize followed by a crop (CLIP's shortest edge, then the centre) costs the
/// crop's pixels, not the resized image's: a 16384 x 1 frame would otherwise
/// resize to 3.7 M x 224 pixels (2.5 GB) to keep 224 x 224 of them.
pub fn resize_bicubic_pil_window(
    src: &RgbImage,
    width: u32,
    height: u32,
    columns: Range<u32>,
    rows: Range<u32>,
) -> RgbImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (dw, dh) = (width as usize, height as usize);
    assert!(columns.end <= width && rows.end <= height, "the window lies inside the resized image");
    let (xs, ys) =
        (columns.start as usize..columns.end as usize, rows.start as usize..rows.end as usize);
    let (ow, oh) = (xs.len(), ys.len());
    if ow == 0 || oh == 0 || sw == 0 || sh == 0 {
        return RgbImage::new(ow as u32, oh as u32);
    }
    let need_h = sw != dw;
    let need_v = sh != dh;
    let vert = need_v.then(|| precompute_coeffs_for(sh, dh, ys.clone()));

    // The source rows the vertical pass reads (all of `ys` when it does not run).
    let (rows_first, rows_last) = match &vert {
        Some(v) => {
            let (lmin, ltaps) = v.bounds[oh - 1];
            (v.bounds[0].0, lmin + ltaps)
        }
        None => (ys.start, ys.end),
    };
    let src_px = src.as_raw();
    // Horizontal pass over only those rows, into `ow`-wide rows; without one
    // (same width), the window's columns are copied.
    let rows_read = rows_last - rows_first;
    let mut tmp = vec![0u8; rows_read * ow * 3];
    let horiz = need_h.then(|| precompute_coeffs_for(sw, dw, xs.clone()));
    for y in 0..rows_read {
        let in_row = &src_px[(y + rows_first) * sw * 3..][..sw * 3];
        let out_row = &mut tmp[y * ow * 3..][..ow * 3];
        let Some(horiz) = &horiz else {
            out_row.copy_from_slice(&in_row[xs.start * 3..xs.end * 3]);
            continue;
        };
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
    let Some(vert) = vert else {
        return RgbImage::from_raw(ow as u32, oh as u32, tmp)
            .expect("buffer size is width * height * 3 by construction");
    };

    let mut out = vec![0u8; ow * oh * 3];
    let row_len = ow * 3;
    for (yy, &(ymin, taps)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..][..taps];
        let out_row = &mut out[yy * row_len..][..row_len];
        for (i, o) in out_row.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc += tmp[(ymin - rows_first + y) * row_len + i] as i32 * w;
            }
            *o = clip8(acc);
        }
    }
    RgbImage::from_raw(ow as u32, oh as u32, out)
        .expect("buffer size is width * height * 3 by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_each_output_pixel_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 224), (224, 640), (300, 224), (7, 3), (3, 7)] {
            let c = precompute_coeffs_for(i, o, 0..o);
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
