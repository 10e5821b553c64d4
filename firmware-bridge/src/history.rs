//! The bridge's side of the frame history (owlet-history): where the file is, and
//! what each analysed frame leaves in it (labels, caption, CLIP embedding, a JPEG
//! thumbnail, optionally the frame). The cameras write; the search thread reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use owlet_formats::bridge_config::{Config, IndexConfig};
use owlet_history::{FrameHistory, NewFrame, Retention};
use owlet_history::{IndexInfo, Precision};
use owlet_runtime::models::Clip;

/// The history, shared by the cameras (adds) and the search thread.
pub type SharedHistory = Arc<Mutex<FrameHistory>>;

/// What a camera needs to record its frames.
#[derive(Clone)]
pub struct Recorder {
    pub history: SharedHistory,
    /// Longest side of the thumbnail (0: none).
    pub thumbnail_px: u32,
    pub keep_frames: bool,
}

impl Recorder {
    /// Store one analysed frame. `jpeg` is the frame as it came (kept only when
    /// the config says so, and only if it is a JPEG).
    pub fn record(
        &self,
        mut frame: NewFrame,
        image: &image::RgbImage,
        jpeg: &[u8],
        embedding: Vec<f32>,
    ) -> owlet_history::Result<i64> {
        frame.thumbnail = owlet_history::thumbnail_jpeg(image, self.thumbnail_px);
        if self.keep_frames && jpeg.starts_with(&[0xFF, 0xD8]) {
            frame.frame = Some(jpeg.to_vec());
        }
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        Ok(h.add(vec![(frame, Some(embedding))])?[0])
    }
}

/// `<dir>/history.db` (`[index] dir`), else `<state_dir>/history.db`; and the
/// folder where an older owlet kept its index (imported on first open).
pub fn paths(ic: &IndexConfig, state_dir: &Path) -> (PathBuf, PathBuf) {
    match &ic.dir {
        Some(dir) => (dir.join("history.db"), dir.clone()),
        None => (state_dir.join("history.db"), state_dir.join("index")),
    }
}

/// Open the history for `clip`'s embeddings, as `[index]` says.
pub fn open(config: &Config, state_dir: &Path, clip: &Clip) -> Result<Option<Recorder>> {
    let Some(ic) = &config.index else { return Ok(None) };
    let (db, legacy) = paths(ic, state_dir);
    let info = IndexInfo {
        model: clip.bundle.manifest.name.clone(),
        dim: clip.embed_texts(&["probe"])?.row(0).len(),
        precision: Precision::parse(&ic.precision).map_err(anyhow::Error::msg)?,
    };
    let retention = Retention {
        max_bytes: ic.max_mb.saturating_mul(1 << 20),
        max_age: ic.max_age_days.map(|d| Duration::from_secs_f64(d * 86400.0)),
    };
    let (history, opening) = FrameHistory::open(&db, retention, &info, Some(&legacy))
        .with_context(|| format!("opening the history {}", db.display()))?;
    log::info!(
        "history {}: {} searchable frame(s), {:?}, {:.1} of {} MiB on disk",
        db.display(),
        history.len(),
        history.info().precision,
        history.store().disk_bytes() as f64 / (1 << 20) as f64,
        ic.max_mb
    );
    for line in opening.describe(&db) {
        log::warn!("history: {line}");
    }
    Ok(Some(Recorder {
        history: Arc::new(Mutex::new(history)),
        thumbnail_px: ic.thumbnail_px,
        keep_frames: ic.keep_frames,
    }))
}
