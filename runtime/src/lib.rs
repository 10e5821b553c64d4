//! owlet-runtime: CLIP and BLIP-2 model bundles on tract, for edge devices.
//!
//! The runtime knows nothing of cameras or MQTT: it turns images and texts into
//! embeddings, labels and captions. Start with [`models::clip::Clip::load`] or
//! [`models::blip2::Blip2::load`].

pub mod bundle;
pub mod device;
pub mod engine;
pub mod error;
pub mod generate;
mod graph_file;
pub mod image_io;
pub mod index;
pub mod kernels;
pub mod memory;
pub mod models;
pub mod ops;
pub mod options;
pub mod preprocess;
pub mod similarity;
pub mod tokenize;

pub use error::{Error, Result};
pub use options::{Kernels, RuntimeOptions};
