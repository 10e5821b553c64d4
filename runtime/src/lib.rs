//! owlet-runtime: CLIP and BLIP-2 model bundles on tract, for edge devices.
//!
//! The runtime knows nothing of cameras or MQTT: it turns images and texts into
//! embeddings, labels and captions. Start with [`models::Clip::load`] or
//! [`models::Blip2::load`].
//!
//! The front door is the public modules below and the re-exports at the root;
//! `scripts/public-api` counts it. The kernels, owlet's tract ops and the graph
//! engine are the crate's insides: public only with the `internals` feature, which
//! the crate's own tests and benches (and the tests of quantize and history) turn on.

// Everything public is documented (the insides are exempt when `internals` shows
// them to the tests).
#![cfg_attr(not(feature = "internals"), warn(missing_docs))]

pub mod bench;
mod bundle;
pub mod device;
mod error;
// The generation loop (greedy, sampling, beam search): its configuration is
// re-exported with the model that uses it (`models::GenerationConfig`).
#[cfg(feature = "internals")]
pub mod generate;
#[cfg(not(feature = "internals"))]
mod generate;
mod graph_file;
pub mod image_io;
pub mod int8;
pub mod memory;
pub mod models;
mod options;
mod pool_spin;
pub mod preprocess;
pub mod similarity;
pub mod tokenize;

// The insides: public only to the crate's own tests and benches (the `internals`
// feature, which the crate's dev-dependency on itself turns on).
#[cfg(feature = "internals")]
pub mod engine;
#[cfg(not(feature = "internals"))]
mod engine;
// owlet's SIMD kernels are their own crate (owlet-kernels): `crate::kernels` here.
#[cfg(feature = "internals")]
pub use owlet_kernels as kernels;
#[cfg(not(feature = "internals"))]
use owlet_kernels as kernels;
#[cfg(feature = "internals")]
pub mod ops;
#[cfg(not(feature = "internals"))]
mod ops;

pub use bundle::{Bundle, ModelKind, Precision};
pub use device::{Device, DeviceChoice, GpuPrecision, Placement};
pub use engine::{default_threads, set_threads};
pub use error::{Error, Result};
pub use options::{Kernels, PoolSpin, RuntimeOptions};
/// The bundle manifest's types (owlet-formats), which [`Bundle`]'s accessors return.
pub use owlet_formats::manifest;
