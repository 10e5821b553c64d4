//! Reading images from files and bytes, safely.
//!
//! Camera frames and user files are untrusted: the decoder gets dimension and
//! allocation limits (a 100-byte PNG can claim to be 100000 x 100000), and the
//! EXIF orientation is applied, because phones and many IP cameras store rotated
//! pixels plus a tag rather than rotating the pixels. Pixels become RGB as PIL makes
//! them for transformers' image processor (to_rgb.rs): transparency over white.

mod to_rgb;

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// An image that cannot be read, decoded or is over the limits; `source_name` says
/// where it came from (a path, a camera, an MQTT payload).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct ImageError {
    pub source_name: String,
    pub reason: String,
}

type Result<T> = std::result::Result<T, ImageError>;

/// File extensions of the image formats owlet decodes (for listing folders).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// Limits against decompression bombs.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
    /// Largest accepted encoded file, in bytes.
    pub max_file: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 16k x 16k covers any camera; 512 MiB is the decoded RGBA size of ~130 MP.
        DecodeLimits { max_side: 16_384, max_alloc: 512 << 20, max_file: 256 << 20 }
    }
}

/// Decode an image file (JPEG, PNG, WebP, BMP; the format is sniffed from the
/// bytes, not the extension) to RGB with its EXIF orientation applied.
pub fn load_rgb(path: &Path, limits: DecodeLimits) -> Result<RgbImage> {
    let name = path.display().to_string();
    let err = |reason: String| ImageError { source_name: name.clone(), reason };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    if meta.len() > limits.max_file {
        return Err(err(format!(
            "file is {} bytes, over the {} byte limit",
            meta.len(),
            limits.max_file
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    decode_rgb(&bytes, &name, limits)
}

/// Decode encoded image bytes (a camera frame, an MQTT payload); `name` says where
/// they came from in errors.
pub fn decode_rgb(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<RgbImage> {
    let err = |reason: String| ImageError { source_name: name.to_string(), reason };
    if bytes.is_empty() {
        return Err(err("empty image data".into()));
    }
    if bytes.len() as u64 > limits.max_file {
        return Err(err(format!("{} bytes, over the {} byte limit", bytes.len(), limits.max_file)));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(err("not a supported image format (JPEG, PNG, WebP or BMP)".into()));
    }
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let is_jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    // Opening the decoder parses the headers only: dimensions, EXIF, limits.
    let mut decoder = reader.into_decoder().map_err(|e| err(describe(e)))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(err(format!("image has no pixels ({w}x{h})")));
    }
    // A broken EXIF block is not worth refusing a frame for: decode unrotated.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    // The limit holds for the whole decode, checked before anything is allocated:
    // the decoded pixels, their RGB copy where the decoder gives another layout,
    // and the rotated copy EXIF may ask for. (The image crate's own max_alloc
    // covers the decoders' working memory, not these buffers.)
    let rgb = 3 * w as u64 * h as u64;
    // A JPEG may be CMYK: four bytes a pixel before its conversion.
    let decoded = if is_jpeg { 4 * w as u64 * h as u64 } else { decoder.total_bytes() };
    let converted = if decoder.color_type() == image::ColorType::Rgb8 { 0 } else { rgb };
    let rotated = if orientation == image::metadata::Orientation::NoTransforms { 0 } else { rgb };
    let needed = decoded + converted + rotated;
    if needed > limits.max_alloc {
        return Err(err(format!(
            "a {w}x{h} image needs {} MiB to decode, over the {} MiB limit",
            needed >> 20,
            limits.max_alloc >> 20
        )));
    }
    let mut img = if is_jpeg && cfg!(feature = "libjpeg-turbo") {
        drop(decoder);
        DynamicImage::ImageRgb8(decode_jpeg_turbo(bytes, (w, h)).map_err(err)?)
    } else {
        DynamicImage::from_decoder(decoder).map_err(|e| err(describe(e)))?
    };
    img.apply_orientation(orientation);
    Ok(to_rgb::to_rgb(img))
}

/// A small grey version of an image, for cheap work on every frame (motion
/// detection): JPEGs are decoded by libjpeg-turbo at 1/8 to 1/1 scale (DCT scaling,
/// much cheaper than a full decode), the smallest scale whose shorter side is at
/// least `min_side`; other formats are decoded fully and converted.
pub fn decode_gray_thumbnail(
    bytes: &[u8],
    name: &str,
    min_side: u32,
    limits: DecodeLimits,
) -> Result<image::GrayImage> {
    #[cfg(feature = "libjpeg-turbo")]
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let err = |reason: String| ImageError { source_name: name.to_string(), reason };
        let header =
            turbojpeg::read_header(bytes).map_err(|e| err(format!("corrupt JPEG: {e}")))?;
        if header.width == 0
            || header.height == 0
            || header.width.max(header.height) > limits.max_side as usize
        {
            return Err(err(format!(
                "JPEG is {}x{}, outside the decoding limits",
                header.width, header.height
            )));
        }
        let mut d = turbojpeg::Decompressor::new().map_err(|e| err(e.to_string()))?;
        let short = header.width.min(header.height);
        let factor = [1usize, 2, 4, 8]
            .into_iter()
            .map(|n| turbojpeg::ScalingFactor::new(n, 8))
            .find(|f| f.scale(short) >= min_side as usize)
            .unwrap_or(turbojpeg::ScalingFactor::ONE);
        d.set_scaling_factor(factor).map_err(|e| err(e.to_string()))?;
        let scaled = header.scaled(factor);
        let mut img = turbojpeg::Image {
            pixels: vec![0u8; scaled.width * scaled.height],
            width: scaled.width,
            pitch: scaled.width,
            height: scaled.height,
            format: turbojpeg::PixelFormat::GRAY,
        };
        d.decompress(bytes, img.as_deref_mut()).map_err(|e| err(format!("corrupt JPEG: {e}")))?;
        return image::GrayImage::from_raw(scaled.width as u32, scaled.height as u32, img.pixels)
            .ok_or_else(|| err("decoded JPEG has the wrong size".into()));
    }
    let _ = min_side;
    Ok(DynamicImage::ImageRgb8(decode_rgb(bytes, name, limits)?).into_luma8())
}

/// libjpeg-turbo, as PIL uses it (ISLOW IDCT, fancy upsampling): identical pixels.
#[cfg(feature = "libjpeg-turbo")]
fn decode_jpeg_turbo(bytes: &[u8], dims: (u32, u32)) -> std::result::Result<RgbImage, String> {
    let header = turbojpeg::read_header(bytes).map_err(|e| format!("corrupt JPEG: {e}"))?;
    if (header.width as u32, header.height as u32) != dims {
        return Err(format!(
            "JPEG header says {}x{}, frame header {}x{}",
            header.width, header.height, dims.0, dims.1
        ));
    }
    // libjpeg does not turn CMYK into RGB; PIL decodes it as CMYK and converts.
    let cmyk =
        matches!(header.colorspace, turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK);
    let (format, bytes_per_pixel) =
        if cmyk { (turbojpeg::PixelFormat::CMYK, 4) } else { (turbojpeg::PixelFormat::RGB, 3) };
    let out = turbojpeg::decompress(bytes, format).map_err(|e| format!("corrupt JPEG: {e}"))?;
    let (w, h) = (out.width as u32, out.height as u32);
    let row = out.width * bytes_per_pixel;
    let mut pixels = out.pixels;
    if out.pitch != row {
        pixels = pixels.chunks(out.pitch).flat_map(|r| r[..row].to_vec()).collect();
    }
    if pixels.len() != row * out.height {
        return Err("decoded JPEG has the wrong size".to_string());
    }
    if cmyk {
        return Ok(to_rgb::adobe_cmyk_to_rgb(w, h, &pixels));
    }
    RgbImage::from_raw(w, h, pixels).ok_or_else(|| "decoded JPEG has the wrong size".to_string())
}

#[cfg(not(feature = "libjpeg-turbo"))]
fn decode_jpeg_turbo(_: &[u8], _: (u32, u32)) -> std::result::Result<RgbImage, String> {
    unreachable!("only called with the libjpeg-turbo feature")
}

fn describe(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => format!("refused by the decoding limits ({l})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::new(w, h).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    /// A PNG that says it is `w` x `h` RGB: its header, and image data that is
    /// never reached.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            c.extend_from_slice(&h.finalize().to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    /// Issue 22: a 16000x16000 PNG of 746 KB decoded at 781 MB peak although the
    /// limit said 512 MiB.
    #[test]
    fn the_memory_limit_refuses_an_image_before_decoding_it() {
        let e = decode_rgb(&png_header_only(16000, 16000), "huge.png", DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("16000x16000") && e.contains("512 MiB limit"), "{e}");
        let tight = DecodeLimits { max_alloc: 1 << 20, ..DecodeLimits::default() };
        let e = decode_rgb(&png(1000, 1000), "big.png", tight).unwrap_err().to_string();
        assert!(e.contains("over the 1 MiB limit"), "{e}");
        assert_eq!(decode_rgb(&png(500, 500), "ok.png", tight).unwrap().dimensions(), (500, 500));
        let mut jpeg = Vec::new();
        RgbImage::new(1000, 1000)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(decode_rgb(&jpeg, "big.jpg", tight).is_err());
    }

    #[test]
    fn a_gray_thumbnail_is_small_and_agrees_with_the_full_decode() {
        let img =
            RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x / 2) as u8, (y / 2) as u8, 100]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        let t = decode_gray_thumbnail(&jpeg, "f.jpg", 40, DecodeLimits::default()).unwrap();
        assert_eq!(t.dimensions(), (80, 60), "1/8 gives 40x30, short of 40: so 2/8");
        let full =
            DynamicImage::ImageRgb8(decode_rgb(&jpeg, "f.jpg", DecodeLimits::default()).unwrap())
                .into_luma8();
        // Same image: the thumbnail pixel at (x, y) is near the full one at (4x, 4y).
        for (x, y) in [(5u32, 5u32), (40, 30), (70, 50)] {
            let a = t.get_pixel(x, y)[0] as i32;
            let b = full.get_pixel(x * 4 + 2, y * 4 + 2)[0] as i32;
            assert!((a - b).abs() < 12, "({x},{y}): {a} vs {b}");
        }
        let png = decode_gray_thumbnail(&png(10, 8), "f.png", 40, DecodeLimits::default()).unwrap();
        assert_eq!(png.dimensions(), (10, 8));
        assert!(decode_gray_thumbnail(
            &jpeg[..jpeg.len() / 3],
            "cut.jpg",
            40,
            DecodeLimits::default()
        )
        .is_err());
    }

    #[test]
    fn a_small_png_decodes() {
        let img = decode_rgb(&png(5, 3), "mem", DecodeLimits::default()).unwrap();
        assert_eq!((img.width(), img.height()), (5, 3));
    }

    #[test]
    fn an_oversized_image_is_refused_by_the_limits() {
        let limits = DecodeLimits { max_side: 4, ..Default::default() };
        let e = decode_rgb(&png(5, 3), "mem", limits).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        let p = png(64, 64);
        for bytes in
            [&p[..p.len() / 2], &p[..8], b"not an image at all", &[0xff, 0xd8, 0xff, 0xe0][..], &[]]
        {
            assert!(decode_rgb(bytes, "mem", DecodeLimits::default()).is_err(), "{bytes:?}");
        }
    }
}
