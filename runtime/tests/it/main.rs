//! owlet-runtime's integration tests: parity with transformers' reference outputs
//! on the bundles in models/, and bad input of every kind.

mod bad_input;
mod blip2;
mod common;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod demo;
mod device;
mod parity;
mod pixel_formats;
mod text_cleanup;
