//! owlet-bridge: the device daemon. Camera frames in, labels and captions out over
//! MQTT (or stdout), commands in. It knows nothing of graphs or tensors: models are
//! owlet-runtime's business.
//!
//! source (thread per camera) -> motion -> inbox (newest frame wins) -> worker
//! (triggers, gate, models) -> sink (outbox -> MQTT thread, or stdout)

pub mod analyze;
pub mod camera;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod error;
pub mod fleet;
pub mod gpio;
pub mod history;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod prompts;
pub mod publish;
pub mod search;
pub mod source;
pub mod trigger;
pub mod web;

pub use error::{Error, Result};
pub use owlet_protocol::topics;
