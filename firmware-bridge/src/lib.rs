//! owlet-bridge: the device daemon. Camera frames in, labels (and soon captions)
//! out. It knows nothing of graphs or tensors: models are owlet-runtime's business.
//!
//! So far: folder sources, CLIP zero-shot labels, results printed as
//! `topic payload` lines (MQTT publishing comes with issue 4).

pub mod analyze;
pub mod config;
pub mod error;
pub mod source;

pub use error::{Error, Result};

/// Topic of a camera's label results.
pub fn labels_topic(device: &str, camera: &str) -> String {
    format!("owlet/{device}/{camera}/labels")
}

/// Topic of a camera's per-frame errors (a corrupt frame, a failed inference).
pub fn error_topic(device: &str, camera: &str) -> String {
    format!("owlet/{device}/{camera}/error")
}
