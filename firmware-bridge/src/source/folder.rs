//! Still frames from a folder: every image file, once, in name order.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Frame;
use crate::error::{Error, Result};

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// The image files of `dir`, sorted by name.
pub fn list_images(camera: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let err = |reason: String| Error::Source { camera: camera.to_string(), reason };
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Read one file as a frame; the capture time is the file's modification time.
pub fn read_frame(camera: &str, path: &Path) -> Result<Frame> {
    let err = |reason: String| Error::Source { camera: camera.to_string(), reason: format!("{}: {reason}", path.display()) };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let captured = std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
    Ok(Frame { camera: camera.to_string(), origin: path.display().to_string(), captured, bytes })
}
