//! Frame sources. Each yields encoded frames (JPEG/PNG bytes) with where and when
//! they came from; decoding happens in the runtime, which checks them.

pub mod folder;

use std::time::SystemTime;

/// One encoded frame from a camera.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: String,
    /// Where it came from (a file name, a device), for results and errors.
    pub origin: String,
    pub captured: SystemTime,
    pub bytes: Vec<u8>,
}
