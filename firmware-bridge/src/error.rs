//! owlet-bridge's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] owlet_formats::bridge_config::ConfigError),

    /// A frame source failed (folder missing, device gone...).
    #[error("source {camera}: {reason}")]
    Source { camera: String, reason: String },

    #[error(transparent)]
    Runtime(#[from] owlet_runtime::Error),
}

impl From<owlet_formats::image::ImageError> for Error {
    fn from(e: owlet_formats::image::ImageError) -> Error {
        Error::Runtime(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
