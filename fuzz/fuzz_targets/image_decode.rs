//! Image bytes as a camera or an MQTT payload hands them over (JPEG, PNG, WebP,
//! BMP, or anything else): decoded within the limits or refused with a reason,
//! never a panic, never past the memory limit (libFuzzer's -rss_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use owlet_formats::image::{decode_gray_thumbnail, decode_rgb, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    // Tighter than the default, so a bomb is refused quickly; the checks are the same.
    let limits = DecodeLimits { max_side: 4096, max_alloc: 64 << 20, max_file: 1 << 20 };
    match decode_rgb(data, "fuzz", limits) {
        Ok(img) => {
            let (w, h) = img.dimensions();
            assert!(w >= 1 && h >= 1 && w.max(h) <= limits.max_side);
            assert!(3 * w as u64 * h as u64 <= limits.max_alloc);
        }
        Err(e) => assert!(!e.reason.is_empty()),
    }
    if let Ok(t) = decode_gray_thumbnail(data, "fuzz", 64, limits) {
        assert!(t.width().max(t.height()) <= limits.max_side);
    }
});
