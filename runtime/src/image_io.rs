//! Reading images from files and bytes, safely: owlet-formats' `image`, with
//! runtime errors.

use std::path::Path;

use image::RgbImage;
pub use owlet_formats::image::{DecodeLimits, IMAGE_EXTENSIONS};

use crate::error::Result;

/// Decode an image file (JPEG, PNG, WebP, BMP; the format is sniffed from the
/// bytes, not the extension) to RGB with its EXIF orientation applied.
pub fn load_rgb(path: &Path, limits: DecodeLimits) -> Result<RgbImage> {
    Ok(owlet_formats::image::load_rgb(path, limits)?)
}

/// Decode encoded image bytes (a camera frame, an MQTT payload); `name` says where
/// they came from in errors.
pub fn decode_rgb(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<RgbImage> {
    Ok(owlet_formats::image::decode_rgb(bytes, name, limits)?)
}

/// A small grey version of an image, for cheap work on every frame (motion
/// detection); see owlet-formats' `decode_gray_thumbnail`.
pub fn decode_gray_thumbnail(
    bytes: &[u8],
    name: &str,
    min_side: u32,
    limits: DecodeLimits,
) -> Result<image::GrayImage> {
    Ok(owlet_formats::image::decode_gray_thumbnail(bytes, name, min_side, limits)?)
}
