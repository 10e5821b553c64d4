//! Decoded pixels to 8-bit RGB exactly as transformers' CLIP image processor gets
//! them from PIL (`convert_to_rgb` in transformers' image_transforms.py), the
//! reference owlet's parity is measured against:
//!
//! - an image with alpha (RGBA, LA, a palette or colour key with transparency) is
//!   composited on opaque white with `Image.alpha_composite`, whose integer rounding
//!   is ported below; OpenAI's own preprocessing drops alpha instead;
//! - 16-bit colour keeps each sample's high byte (PIL unpacks "RGB;16B" so);
//! - 16-bit grey ("I;16") saturates at 255, as PIL's I;16 -> RGB conversion does:
//!   such an image comes out mostly white in transformers, and so it does here;
//! - CMYK (JPEG) is converted with PIL's `cmyk2rgb`, after undoing the inversion
//!   Adobe's CMYK JPEGs store, which PIL assumes of every CMYK JPEG.

use image::{DynamicImage, RgbImage};

/// PIL's `alpha_composite` of `(r, g, b, a)` over opaque white, one channel.
///
/// With an opaque white destination Pillow's coefficients reduce to
/// `coef1 = a << 7` and `coef2 = (255 - a) << 7` (7 bits of precision), and the
/// result is `SHIFTFORDIV255(tmp + (0x80 << 7)) >> 7`.
fn over_white(value: u8, alpha: u8) -> u8 {
    if alpha == 0 {
        return 255;
    }
    let (v, a) = (value as u32, alpha as u32);
    let tmp = v * (a << 7) + 255 * ((255 - a) << 7) + (0x80 << 7);
    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
}

/// PIL's `cmyk2rgb` for one channel: `nk - MULDIV255(ink, nk)` with `nk = 255 - k`.
fn cmyk_channel(ink: u8, k: u8) -> u8 {
    let nk = 255 - k as i32;
    let tmp = ink as i32 * nk + 128;
    let muldiv = ((tmp >> 8) + tmp) >> 8;
    (nk - muldiv).clamp(0, 255) as u8
}

fn from_pixels(w: u32, h: u32, pixels: Vec<u8>) -> RgbImage {
    RgbImage::from_raw(w, h, pixels).expect("three bytes per pixel")
}

/// `samples` of `channels` per pixel (grey or grey+alpha, or RGB or RGBA) to RGB
/// over white; `value` turns one stored sample into PIL's 8-bit one.
fn composite<T: Copy>(
    w: u32,
    h: u32,
    samples: &[T],
    channels: usize,
    value: impl Fn(T) -> u8,
) -> RgbImage {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in samples.chunks_exact(channels) {
        let (colour, alpha) = match channels {
            1 => ([px[0]; 3], 255),
            2 => ([px[0]; 3], value(px[1])),
            3 => ([px[0], px[1], px[2]], 255),
            _ => ([px[0], px[1], px[2]], value(px[3])),
        };
        out.extend(colour.map(|c| over_white(value(c), alpha)));
    }
    from_pixels(w, h, out)
}

/// Any decoded image to RGB as PIL and transformers would make it.
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let high_byte = |v: u16| (v >> 8) as u8;
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => composite(w, h, rgba.as_raw(), 4, |v| v),
        DynamicImage::ImageLuma8(l) => composite(w, h, l.as_raw(), 1, |v| v),
        DynamicImage::ImageLumaA8(la) => composite(w, h, la.as_raw(), 2, |v| v),
        DynamicImage::ImageRgb16(rgb) => composite(w, h, rgb.as_raw(), 3, high_byte),
        DynamicImage::ImageRgba16(rgba) => composite(w, h, rgba.as_raw(), 4, high_byte),
        DynamicImage::ImageLumaA16(la) => composite(w, h, la.as_raw(), 2, high_byte),
        DynamicImage::ImageLuma16(l) => composite(w, h, l.as_raw(), 1, |v| v.min(255) as u8),
        // Float images come from no decoder owlet enables; the image crate's rounding.
        other => other.into_rgb8(),
    }
}

/// Inverted (Adobe) CMYK samples, as a CMYK JPEG stores them, to RGB as PIL makes it.
pub fn adobe_cmyk_to_rgb(w: u32, h: u32, cmyk: &[u8]) -> RgbImage {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in cmyk.chunks_exact(4) {
        let k = 255 - px[3];
        out.extend([0, 1, 2].map(|i| cmyk_channel(255 - px[i], k)));
    }
    from_pixels(w, h, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow's general alpha_composite (AlphaComposite.c), any destination alpha.
    fn pillow_alpha_composite(src: [u8; 4], dst: [u8; 4]) -> [u8; 3] {
        if src[3] == 0 {
            return [dst[0], dst[1], dst[2]];
        }
        let (sa, da) = (src[3] as u32, dst[3] as u32);
        let blend = da * (255 - sa);
        let outa255 = sa * 255 + blend;
        let coef1 = sa * 255 * 255 * (1 << 7) / outa255;
        let coef2 = 255 * (1 << 7) - coef1;
        [0, 1, 2].map(|i| {
            let tmp = src[i] as u32 * coef1 + dst[i] as u32 * coef2 + (0x80 << 7);
            ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
        })
    }

    #[test]
    fn over_white_is_pillows_composite_for_every_value_and_alpha() {
        for a in 0..=255u8 {
            for v in 0..=255u8 {
                let want = pillow_alpha_composite([v, v, v, a], [255, 255, 255, 255])[0];
                assert_eq!(over_white(v, a), want, "value {v} alpha {a}");
            }
        }
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn cmyk_matches_pillows_formula_at_the_corners() {
        // No ink: white; full black: black; full cyan: no red.
        assert_eq!(cmyk_channel(0, 0), 255);
        assert_eq!(cmyk_channel(0, 255), 0);
        assert_eq!(cmyk_channel(255, 0), 0);
        assert_eq!(cmyk_channel(128, 128), 63);
    }

    #[test]
    fn sixteen_bit_grey_saturates_and_colour_keeps_its_high_byte() {
        let l16 = image::ImageBuffer::from_raw(3, 1, vec![0u16, 200, 40_000]).unwrap();
        let rgb = to_rgb(DynamicImage::ImageLuma16(l16));
        assert_eq!(rgb.as_raw(), &[0, 0, 0, 200, 200, 200, 255, 255, 255]);
        let rgb16 = image::ImageBuffer::from_raw(1, 1, vec![0x12ffu16, 0xff00, 0x00ff]).unwrap();
        assert_eq!(to_rgb(DynamicImage::ImageRgb16(rgb16)).as_raw(), &[0x12, 0xff, 0x00]);
    }
}
