//! owlet-runtime's error type: every variant says where the problem is.

use std::path::PathBuf;

/// A result whose error is owlet-runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where: each variant names the file, graph or input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's owlet.toml is missing, unreadable or says something invalid.
    #[error("{}: {field}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The setting at fault, e.g. `vision.embed_dim`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A file the manifest names is absent or unreadable.
    #[error("{}: {what}: {reason}", path.display())]
    BundleFile {
        /// The file (or folder).
        path: PathBuf,
        /// What the bundle needs it for.
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },

    /// A graph could not be loaded, typed or planned by tract, or has the wrong
    /// inputs / outputs for its role.
    #[error("{}: {reason}", path.display())]
    Graph {
        /// The graph file.
        path: PathBuf,
        /// What tract or owlet's checks said.
        reason: String,
    },

    /// An image could not be read or decoded, or is too large.
    #[error("{source_name}: {reason}")]
    Image {
        /// The file name or source the bytes came from.
        source_name: String,
        /// What the decoder said.
        reason: String,
    },

    /// The tokenizer failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Running a planned graph failed.
    #[error("{graph} graph: {reason}")]
    Inference {
        /// The graph's role: "vision", "text" or "decoder".
        graph: &'static str,
        /// What failed.
        reason: String,
    },

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
