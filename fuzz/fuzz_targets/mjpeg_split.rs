//! The MJPEG splitter on any byte stream, cut into reads of any sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The bridge's own file, compiled here alone: it uses nothing but std, and the
// bridge crate would bring tract into the instrumented build.
#[path = "../../firmware-bridge/src/source/mjpeg.rs"]
#[allow(dead_code)]
mod mjpeg;

const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let read = usize::from(cut % 64) + 1;
    let mut s = mjpeg::JpegSplitter::new(MAX_FRAME);
    let mut frame_bytes = 0u64;
    for chunk in stream.chunks(read) {
        for f in s.push(chunk) {
            assert!(f.starts_with(&[0xFF, 0xD8]), "a frame starts with SOI");
            assert!(f.ends_with(&[0xFF, 0xD9]), "a frame ends with EOI");
            assert!(f.len() <= MAX_FRAME, "a frame over the limit was passed on");
            frame_bytes += f.len() as u64;
        }
    }
    // Every byte is in a frame, skipped, or still buffered: never more.
    assert!(frame_bytes + s.skipped <= stream.len() as u64);
});
