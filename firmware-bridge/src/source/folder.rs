//! Image files from a folder: every file once, in name order (stills), or new files
//! as they appear (a watched folder, polled: it works on every filesystem,
//! network mounts included, where inotify does not).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Frame, SourceEvents, Stop};
use crate::error::{Error, Result};

use owlet_runtime::image_io::IMAGE_EXTENSIONS;

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
    let err = |reason: String| Error::Source {
        camera: camera.to_string(),
        reason: format!("{}: {reason}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let captured =
        std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
    Ok(Frame {
        camera: camera.to_string(),
        origin: path.display().to_string(),
        captured,
        bytes,
        event_id: None,
    })
}

/// Every image of `dir` once. A file that cannot be read is reported and skipped.
pub fn run_stills(camera: &str, dir: &Path, events: &mut dyn SourceEvents) {
    match list_images(camera, dir) {
        Ok(files) => {
            for f in files {
                match read_frame(camera, &f) {
                    Ok(frame) => {
                        if !events.frame(frame) {
                            return;
                        }
                    }
                    Err(e) => events.failed(&e.to_string()),
                }
            }
        }
        Err(e) => events.failed(&e.to_string()),
    }
}

/// New images of `dir` as they appear. A file is taken once its size has stopped
/// changing between two polls, so a half-copied file is not read.
pub fn run_watch(
    camera: &str,
    dir: &Path,
    poll: Duration,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) {
    let mut seen: HashSet<PathBuf> =
        list_images(camera, dir).unwrap_or_default().into_iter().collect();
    // Said once the folder is listed: a file there before this line is never
    // analysed, one copied in after it is (and tests wait for this line).
    log::info!(
        "camera {camera}: watching {} for new images ({} already there, left alone)",
        dir.display(),
        seen.len()
    );
    let mut growing: std::collections::HashMap<PathBuf, u64> = Default::default();
    let mut reported = false;
    while stop.sleep(poll) {
        let files = match list_images(camera, dir) {
            Ok(f) => {
                reported = false;
                f
            }
            Err(e) => {
                if !reported {
                    events.failed(&e.to_string());
                    reported = true;
                }
                continue;
            }
        };
        for f in files {
            if seen.contains(&f) {
                continue;
            }
            let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            if growing.insert(f.clone(), size) != Some(size) || size == 0 {
                continue; // new or still growing: look again next poll
            }
            growing.remove(&f);
            seen.insert(f.clone());
            match read_frame(camera, &f) {
                Ok(frame) => {
                    if !events.frame(frame) {
                        return;
                    }
                }
                Err(e) => events.failed(&e.to_string()),
            }
        }
    }
}
