//! owlet-bridge's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is unreadable or invalid; `field` is a dotted path.
    #[error("{}: {field}: {reason}", path.display())]
    Config { path: PathBuf, field: String, reason: String },

    /// A frame source failed (folder missing, device gone...).
    #[error("source {camera}: {reason}")]
    Source { camera: String, reason: String },

    #[error(transparent)]
    Runtime(#[from] owlet_runtime::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
