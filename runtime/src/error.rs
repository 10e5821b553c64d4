//! owlet-runtime's error type: every variant says where the problem is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's owlet.toml is missing, unreadable or says something invalid.
    #[error("{}: {field}: {reason}", path.display())]
    Manifest { path: PathBuf, field: String, reason: String },

    /// A file the manifest names is absent or unreadable.
    #[error("{}: {what}: {reason}", path.display())]
    BundleFile { path: PathBuf, what: &'static str, reason: String },

    /// A graph could not be loaded, typed or planned by tract, or has the wrong
    /// inputs / outputs for its role.
    #[error("{}: {reason}", path.display())]
    Graph { path: PathBuf, reason: String },

    /// An image could not be read or decoded, or is too large.
    #[error("{source_name}: {reason}")]
    Image { source_name: String, reason: String },

    /// The tokenizer failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Running a planned graph failed.
    #[error("{graph} graph: {reason}")]
    Inference { graph: &'static str, reason: String },

    /// The caller asked for something that cannot be done (empty label list...).
    #[error("{0}")]
    Invalid(String),
    /// The device asked for cannot be used (no GPU, a CUDA library missing, ...).
    #[error("device: {0}")]
    Device(String),
}

impl From<owlet_formats::manifest::ManifestError> for Error {
    fn from(e: owlet_formats::manifest::ManifestError) -> Error {
        Error::Manifest { path: e.path, field: e.field, reason: e.reason }
    }
}

impl From<owlet_formats::image::ImageError> for Error {
    fn from(e: owlet_formats::image::ImageError) -> Error {
        Error::Image { source_name: e.source_name, reason: e.reason }
    }
}
