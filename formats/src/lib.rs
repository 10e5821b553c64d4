//! owlet-formats: what owlet reads from its users, parsed and checked before
//! anything acts on it: model bundle manifests ([`manifest`]) and the int8 op in
//! their graphs ([`int8_op`]), images
//! ([`image`]), the bridge's config file ([`bridge_config`]) and the choices they
//! name ([`choices`]).
//!
//! Everything here is untrusted input, so every parser returns an error that names
//! the file and the field, and none may panic: `fuzz/` runs each of them under
//! libFuzzer. That is why this crate is apart from owlet-runtime: it does not pull
//! tract, and the instrumented build stays small.

pub mod bridge_config;
pub mod choices;
pub mod image;
pub mod int8_op;
pub mod manifest;
mod toml_error;
