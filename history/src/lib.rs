//! owlet-history: the history of analysed frames as the CLI (`owlet index add`,
//! `owlet search`, `owlet cluster`) and the bridge use it.
//!
//! The rows live in SQLite ([`owlet_store::history`]: labels, caption, thumbnail,
//! filters in SQL, retention); the embeddings of one space (a model, a dimension,
//! a precision) are also held in memory in a [`VectorSet`] and searched exactly with
//! owlet-runtime's dot kernels (`owlet_runtime::similarity`), as the entries.log
//! index was. This crate joins the two so that neither the runtime nor the store
//! knows about the other.
//!
//! Modules: [`vectors`] (the in-memory vectors and their exact search), [`kmeans`]
//! (`owlet cluster`), [`old_index`] (the entries.log folders of older owlets, read
//! once to import them).
//!
//! - Row `i` of the vectors is the frame `ids[i]`; both grow together on every add,
//!   and when retention removes frames the rows of the gone ids are dropped.
//! - A search narrowed by SQL filters (camera, time, label, caption words) asks the
//!   store for the ids that pass, then scores only those rows.
//! - One model per history: vectors of two models are never compared, and a
//!   history that holds another model's vectors is refused, naming both.
//! - An index folder of an older owlet (`index.json` + `entries.log`) is imported on
//!   first open, in one transaction recorded in the store (an interrupted import is
//!   done once, never twice); its files are then renamed `*.migrated`, kept.

use std::path::{Path, PathBuf};

pub mod kmeans;
pub mod old_index;
pub mod vectors;

use old_index::Index;
pub use old_index::IndexInfo;
/// How vectors are stored (f32, f16 or int8).
pub use owlet_formats::choices::VectorPrecision as Precision;
pub use owlet_store::history::{Filter, NewFrame, Retention, StoredFrame};
use owlet_store::history::{History, Opened, Space};
pub use vectors::{Hit, VectorSet};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] owlet_store::Error),
    /// The history cannot serve this model, or an old index cannot be imported.
    #[error("{0}")]
    Refused(String),
    /// A vector, query or index file that is not what it must be (the message
    /// names which and why).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What opening found besides the frames.
#[derive(Debug, Default)]
pub struct Opening {
    pub store: Opened,
    /// An old index folder imported by this open.
    pub imported: Option<Import>,
    /// Stored vectors of the wrong size for their space, not searchable.
    pub unreadable_vectors: usize,
    /// Frames whose stored vector failed its checksum: not searchable (their
    /// rows, thumbnails and labels stay).
    pub damaged_vectors: Vec<i64>,
}

#[derive(Debug)]
pub struct Import {
    pub from: PathBuf,
    pub frames: usize,
    /// What reading the old log found (damaged stretches skipped), if anything.
    pub damage: Option<String>,
}

impl Opening {
    /// Lines for a log: what a user should know about this open.
    pub fn describe(&self, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(aside), Some(why)) = (&self.store.set_aside, &self.store.set_aside_why) {
            out.push(format!(
                "{} could not be read ({why}); kept as {} and a new history started",
                path.display(),
                aside.display()
            ));
        }
        if let Some(i) = &self.imported {
            out.push(format!(
                "imported {} frame(s) from the index {} (its files are kept as *.migrated){}",
                i.frames,
                i.from.display(),
                i.damage.as_ref().map(|d| format!("; in its log: {d}")).unwrap_or_default()
            ));
        }
        if !self.damaged_vectors.is_empty() {
            let shown: Vec<String> =
                self.damaged_vectors.iter().take(10).map(i64::to_string).collect();
            out.push(format!(
                "{} stored vector(s) fail their checksum (frames {}{}): not searchable",
                self.damaged_vectors.len(),
                shown.join(", "),
                if self.damaged_vectors.len() > 10 { ", ..." } else { "" }
            ));
        }
        if self.unreadable_vectors > 0 {
            out.push(format!(
                "{} stored vector(s) have the wrong size for their space: not searchable",
                self.unreadable_vectors
            ));
        }
        out
    }
}

/// A search hit: the frame, its id and cosine similarity.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: i64,
    pub score: f32,
    /// The frame's row without its images or embedding.
    pub frame: NewFrame,
}

pub struct FrameHistory {
    store: History,
    space: i64,
    info: IndexInfo,
    vectors: VectorSet,
    /// The frame id of each row of `vectors`, ascending.
    ids: Vec<i64>,
    /// `store.removed()` when `ids` was last brought in line with the store.
    removed_seen: u64,
}

impl FrameHistory {
    /// Open (or create) the history at `path` for the embeddings `want` describes.
    /// If the history has vectors of this model already, their precision stays
    /// (`want.precision` is for a new history). With `legacy`, an index folder
    /// there is imported first (see the crate's notes).
    pub fn open(
        path: &Path,
        retention: Retention,
        want: &IndexInfo,
        legacy: Option<&Path>,
    ) -> Result<(FrameHistory, Opening)> {
        let (mut store, opened) = History::open(path, retention)?;
        let mut opening = Opening { store: opened, ..Opening::default() };
        let old = match legacy.filter(|d| d.join("index.json").exists()) {
            Some(dir) => Some((dir, Index::open(dir)?)),
            None => None,
        };
        let mut want = want.clone();
        if let Some((dir, (ix, _))) = &old {
            same_model(&dir.display().to_string(), &ix.info, &want)?;
            // The user chose the old index's precision; keep it.
            want.precision = ix.info.precision;
        }
        let info = choose_space(&store, path, &want)?;
        let space = store.space(&space_of(&info))?;
        if let Some((dir, (ix, report))) = old {
            opening.imported = import(&mut store, space, &info, dir, &ix, report.describe())?;
        }
        let mut vectors = VectorSet::new(info.dim, info.precision);
        let stored = store.count()? as usize;
        vectors.reserve(stored);
        let mut ids = Vec::with_capacity(stored);
        let read = store.embeddings(space, |id, bytes| match vectors.push_encoded(bytes) {
            Ok(()) => ids.push(id),
            Err(_) => opening.unreadable_vectors += 1,
        })?;
        opening.damaged_vectors = read.damaged;
        let removed_seen = store.removed();
        Ok((FrameHistory { store, space, info, vectors, ids, removed_seen }, opening))
    }

    /// Open the history at `path` to search the vectors of `model` (as stored:
    /// dimension and precision come from the file). Nothing is removed or changed.
    pub fn open_to_search(path: &Path, model: &str, dim: usize) -> Result<FrameHistory> {
        if !path.exists() {
            return Err(Error::Refused(format!(
                "{}: no history here (`owlet index add` makes one)",
                path.display()
            )));
        }
        let unlimited = Retention { max_bytes: u64::MAX, max_age: None };
        let want = IndexInfo { model: model.into(), dim, precision: Precision::F32 };
        let (history, opening) = FrameHistory::open(path, unlimited, &want, None)?;
        for line in opening.describe(path) {
            log::warn!("history: {line}");
        }
        Ok(history)
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The store itself: timelines, whole frames, counts.
    pub fn store(&self) -> &History {
        &self.store
    }

    /// Searchable frames (those with an embedding of this history's space).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The frame id of row `i`.
    pub fn id(&self, i: usize) -> i64 {
        self.ids[i]
    }

    /// Row `i`'s vector, widened to f32.
    pub fn vector(&self, i: usize) -> Vec<f32> {
        self.vectors.vector(i)
    }

    /// The stored vector of frame `id` (widened to f32), if it is searchable.
    pub fn vector_of(&self, id: i64) -> Option<Vec<f32>> {
        self.ids.binary_search(&id).ok().map(|i| self.vectors.vector(i))
    }

    /// Bytes the vectors take in memory.
    pub fn vector_memory(&self) -> usize {
        self.vectors.memory_bytes()
    }

    /// Store frames with their embeddings (normalised and encoded here), in one
    /// transaction; returns their ids.
    pub fn add(&mut self, frames: Vec<(NewFrame, Option<Vec<f32>>)>) -> Result<Vec<i64>> {
        let mut rows = Vec::with_capacity(frames.len());
        let mut encoded = Vec::with_capacity(frames.len());
        for (mut f, embedding) in frames {
            let e = embedding.map(|e| self.vectors.encode(&e)).transpose()?;
            f.embedding = e.clone();
            encoded.push(e);
            rows.push(f);
        }
        let ids = self.store.insert_batch(Some(self.space), &rows, None)?;
        for (id, e) in ids.iter().zip(encoded) {
            if let Some(e) = e {
                self.vectors.push_encoded(&e)?;
                self.ids.push(*id);
            }
        }
        self.forget_removed()?;
        Ok(ids)
    }

    /// The `k` frames most similar to `query` among those `filter` accepts, best
    /// first (its limit and page are ignored: `k` is the limit).
    pub fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Found>> {
        let allowed = if narrows(filter) {
            Some(row_mask(&self.ids, &self.store.matching_ids(filter)?))
        } else {
            None
        };
        let hits = self.vectors.search(query, k, |i| allowed.as_ref().is_none_or(|a| a[i]))?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            let id = self.ids[h.entry];
            // None: removed since this history was opened (another process's
            // retention); not a hit any more.
            if let Some(row) = self.store.summary(id)? {
                out.push(Found { id, score: h.score, frame: row.frame });
            }
        }
        Ok(out)
    }

    /// Drop the rows of frames retention removed.
    fn forget_removed(&mut self) -> Result<()> {
        if self.store.removed() == self.removed_seen {
            return Ok(());
        }
        let live = self.store.matching_ids(&Filter::default())?;
        let keep: Vec<bool> = self.ids.iter().map(|id| live.binary_search(id).is_ok()).collect();
        self.vectors.retain(|i| keep[i]);
        self.ids.retain(|id| live.binary_search(id).is_ok());
        self.removed_seen = self.store.removed();
        Ok(())
    }
}

/// Which rows hold one of `ids`: both lists ascend (rows are added in id order
/// and only ever dropped), so one walk over the two does it.
fn row_mask(rows: &[i64], ids: &[i64]) -> Vec<bool> {
    debug_assert!(rows.windows(2).all(|w| w[0] < w[1]) && ids.windows(2).all(|w| w[0] < w[1]));
    let mut mask = vec![false; rows.len()];
    let mut next = ids.iter().peekable();
    for (m, row) in mask.iter_mut().zip(rows) {
        while next.next_if(|id| *id < row).is_some() {}
        *m = next.peek().is_some_and(|id| *id == row);
    }
    mask
}

/// A JPEG thumbnail (quality 80) whose longest side is `px`, aspect ratio kept,
/// never enlarged; `None` for `px` 0 or an empty image.
pub fn thumbnail_jpeg(img: &image::RgbImage, px: u32) -> Option<Vec<u8>> {
    let (w, h) = img.dimensions();
    if px == 0 || w == 0 || h == 0 {
        return None;
    }
    let scale = (px as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) =
        (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let t = image::imageops::thumbnail(img, tw, th);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&t).ok()?;
    Some(out)
}

/// Whether `filter` leaves out any frame (its limit and page aside).
fn narrows(f: &Filter) -> bool {
    f.camera.is_some()
        || f.since_ms.is_some()
        || f.until_ms.is_some()
        || f.label.is_some()
        || f.caption_contains.is_some()
        || f.ids.is_some()
}

fn same_model(what: &str, have: &IndexInfo, want: &IndexInfo) -> Result<()> {
    if have.model != want.model || have.dim != want.dim {
        return Err(Error::Refused(format!(
            "{what} holds {}-d vectors of model {:?}; these are {}-d from {:?}: one model per history",
            have.dim, have.model, want.dim, want.model
        )));
    }
    Ok(())
}

/// The space to use for `want`: the stored one of its model if there is one,
/// else a new one; refused if another model's vectors are stored.
fn choose_space(store: &History, path: &Path, want: &IndexInfo) -> Result<IndexInfo> {
    let spaces = store.spaces()?;
    let mine = spaces
        .iter()
        .filter(|(_, s, _)| s.model == want.model && s.dim == want.dim)
        .max_by_key(|(_, _, frames)| *frames);
    if let Some((_, s, _)) = mine {
        let precision = Precision::parse(&s.precision).map_err(|e| {
            Error::Refused(format!(
                "{}: space {} of model {:?}: {e}",
                path.display(),
                s.precision,
                s.model
            ))
        })?;
        return Ok(IndexInfo { model: s.model.clone(), dim: s.dim, precision });
    }
    if let Some((_, s, _)) = spaces.iter().find(|(_, _, frames)| *frames > 0) {
        let have = IndexInfo { model: s.model.clone(), dim: s.dim, precision: want.precision };
        same_model(&format!("history {}", path.display()), &have, want)?;
    }
    Ok(want.clone())
}

fn space_of(info: &IndexInfo) -> Space {
    Space {
        model: info.model.clone(),
        dim: info.dim,
        precision: info.precision.name().into(),
        vector_bytes: info.precision.vector_bytes(info.dim),
    }
}

/// Import the entries of the old index `ix` (in `dir`) into `space`, once.
fn import(
    store: &mut History,
    space: i64,
    info: &IndexInfo,
    dir: &Path,
    ix: &Index,
    damage: Option<String>,
) -> Result<Option<Import>> {
    let log = dir.join("entries.log");
    let name = std::fs::canonicalize(&log).unwrap_or_else(|_| log.clone()).display().to_string();
    let mut frames = 0;
    if !store.imported(&name)? {
        let reencode = VectorSet::new(info.dim, info.precision);
        let rows: Vec<NewFrame> = (0..ix.len())
            .map(|i| {
                let m = ix.meta(i);
                let embedding = if ix.info.precision == info.precision {
                    ix.stored_vector(i)
                } else {
                    reencode.encode(&ix.vector(i))?
                };
                Ok(NewFrame {
                    time_ms: m.time_ms.unwrap_or(0),
                    camera: m.camera.clone().unwrap_or_default(),
                    trigger: "import".into(),
                    source: Some(m.source.clone()),
                    caption: m.caption.clone(),
                    embedding: Some(embedding),
                    ..NewFrame::default()
                })
            })
            .collect::<Result<_>>()?;
        frames = rows.len();
        store.insert_batch(Some(space), &rows, Some(&name))?;
    }
    // Committed: the old files are kept under another name so that they are not
    // read again. A crash before this leaves them, and the next open only renames.
    for f in ["entries.log", "index.json"] {
        let from = dir.join(f);
        let to = dir.join(format!("{f}.migrated"));
        if from.exists() {
            if let Err(e) = std::fs::rename(&from, &to) {
                log::warn!("history: could not rename {} after importing it: {e}", from.display());
            }
        }
    }
    Ok((frames > 0 || damage.is_some()).then(|| Import { from: dir.to_path_buf(), frames, damage }))
}

#[cfg(test)]
mod tests;
