//! An embedding index for search on the device: append-only, on disk, crash-safe.
//!
//! A folder with `index.json` (model name, dimension, precision: written once, at
//! creation) and `entries.log`, records of `[len u32][crc32 u32][vector][meta JSON]`
//! (little-endian).
//!
//! Reading never changes the files: a stretch that is no record (a flipped byte, a
//! broken length) is skipped, the reader finds the next record whose checksum holds
//! and goes on, and the stretch is reported. Only an open for writing repairs: a
//! torn last append (power cut, kill), shorter than one record, is cut; damage
//! anywhere else makes it keep the log as it was (`entries.log.damaged-<ms>`) and
//! write the readable records to a fresh one. A log of which no record matches
//! `index.json` (an edited dimension or precision) is refused, never emptied.
//!
//! Vectors are L2-normalised embeddings stored as f32, f16 (half the memory,
//! cosine error ~1e-4) or int8 with one f32 scale per vector (a quarter plus 4
//! bytes; symmetric, scale = max|x| / 127), held in memory by a [`VectorSet`].
//! Search is exact: a dot product with every entry that passes the filters, top-k
//! kept in a heap. f32 uses owlet's SIMD dot kernel; f16 is widened row by row then
//! uses it; int8 multiplies the f32 query with the codes (portable code the
//! compiler vectorises; no hand-written int8 kernel yet) and scales.
//!
//! The bridge and the CLI now keep their frames in the SQLite history
//! ([`crate::FrameHistory`]), which searches the same [`VectorSet`]; this log is
//! what they read once, to migrate an index folder of an older owlet. Writing one
//! (and searching it) is left for the tests and the search bench (the
//! `old-index-writer` feature).

use std::fs::{File, OpenOptions};
#[cfg(any(test, feature = "old-index-writer"))]
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "old-index-writer"))]
use crate::vectors::Hit;
use crate::vectors::VectorSet;
use crate::{Error, Precision, Result};

/// What an index holds: which model's vectors, how long, stored how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// The embedding model's name (bundle manifest): vectors of two models do not mix.
    pub model: String,
    /// The embedding width.
    pub dim: usize,
    /// How the vectors are stored.
    pub precision: Precision,
}

/// What an entry is: a file, or a camera frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// A file path or a frame id.
    pub source: String,
    /// The camera a frame came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    /// The frame's caption, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// Which entries a search looks at.
#[cfg(any(test, feature = "old-index-writer"))]
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub camera: Option<String>,
    /// Inclusive range, milliseconds since the Unix epoch.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

#[cfg(any(test, feature = "old-index-writer"))]
impl Filter {
    fn accepts(&self, m: &Meta) -> bool {
        if let Some(c) = &self.camera {
            if m.camera.as_ref() != Some(c) {
                return false;
            }
        }
        if self.since_ms.is_some() || self.until_ms.is_some() {
            let Some(t) = m.time_ms else { return false };
            if self.since_ms.is_some_and(|s| t < s) || self.until_ms.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

/// An index directory of the format before the SQLite history (an append-only
/// log of vectors and metadata): opened to read and import; the writing side is
/// kept for the tests that make such directories.
pub struct Index {
    #[cfg_attr(not(any(test, feature = "old-index-writer")), allow(dead_code))]
    dir: PathBuf,
    /// What the index holds.
    pub info: IndexInfo,
    vectors: VectorSet,
    meta: Vec<Meta>,
    /// The log, opened for appending; None when opened to read.
    log: Option<File>,
}

/// What opening found besides the entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenReport {
    /// Bytes of a torn last append that were cut off (opens for writing only).
    pub cut_bytes: u64,
    /// Stretches of the log that were no record, skipped: (offset, length).
    pub damaged: Vec<(u64, u64)>,
    /// Where the damaged log was kept when an open for writing rewrote it.
    pub kept_aside: Option<PathBuf>,
}

impl OpenReport {
    /// One line for a log, or None when there is nothing to say.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.cut_bytes > 0 {
            parts.push(format!("cut a torn last write of {} byte(s)", self.cut_bytes));
        }
        if !self.damaged.is_empty() {
            let bytes: u64 = self.damaged.iter().map(|d| d.1).sum();
            parts.push(format!(
                "skipped {} damaged stretch(es), {bytes} byte(s), at offset(s) {:?}",
                self.damaged.len(),
                self.damaged.iter().map(|d| d.0).collect::<Vec<_>>()
            ));
        }
        if let Some(p) = &self.kept_aside {
            parts.push(format!("the damaged log is kept as {}", p.display()));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Largest metadata a record may carry; a tail longer than one record of this size
/// is not a torn append.
const MAX_META_BYTES: usize = 64 << 10;

const HEADER: usize = 8;

impl Index {
    /// Open the index in `dir`, creating it for `info` if it does not exist. An
    /// existing index of another model or dimension is refused.
    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn open_or_create(dir: &Path, info: &IndexInfo) -> Result<(Index, OpenReport)> {
        if dir.join("index.json").exists() {
            let (ix, rep) = Index::open_for_writing(dir)?;
            if ix.info.model != info.model || ix.info.dim != info.dim {
                return Err(Error::Invalid(format!(
                    "index {} holds {}-d vectors of model {:?}; these are {}-d from {:?}: one index per model",
                    dir.display(),
                    ix.info.dim,
                    ix.info.model,
                    info.dim,
                    info.model
                )));
            }
            return Ok((ix, rep));
        }
        check_dim(info.dim)?;
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let tmp = dir.join("index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(info).expect("serialisable"))
            .map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, dir.join("index.json")).map_err(|e| io_err(dir, e))?;
        Index::open_for_writing(dir)
    }

    /// Open the index in `dir` to read: nothing on disk is changed, damage is
    /// skipped and reported.
    pub fn open(dir: &Path) -> Result<(Index, OpenReport)> {
        Index::open_with(dir, false)
    }

    /// Open the index in `dir` to read and append (repairing it; see the module).
    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn open_for_writing(dir: &Path) -> Result<(Index, OpenReport)> {
        Index::open_with(dir, true)
    }

    fn open_with(dir: &Path, write: bool) -> Result<(Index, OpenReport)> {
        let info = read_info(&dir.join("index.json"))?;
        let log_path = dir.join("entries.log");
        let bytes = match std::fs::read(&log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&log_path, e)),
        };
        let vb = info.precision.vector_bytes(info.dim);
        let mut ix = Index {
            dir: dir.to_path_buf(),
            vectors: VectorSet::new(info.dim, info.precision),
            info,
            meta: Vec::new(),
            log: None,
        };
        let scan = scan_log(&bytes, vb, |vec, meta| ix.push_decoded(vec, meta));
        if scan.misfits > 0 {
            return Err(Error::Invalid(format!(
                "{}: {} whole record(s) (length and checksum hold) are not {}-d {:?} vectors \
                 as index.json says: index.json was edited or belongs to another log \
                 (nothing was changed)",
                log_path.display(),
                scan.misfits,
                ix.info.dim,
                ix.info.precision
            )));
        }
        let mut report = OpenReport { damaged: scan.damaged, ..Default::default() };
        // A short stretch at the very end is a torn last append, not damage.
        let torn = scan
            .tail
            .filter(|&(_, len)| len as usize <= HEADER + vb + MAX_META_BYTES)
            .map(|(_, len)| len);
        if let Some((at, len)) = scan.tail {
            if torn.is_none() || !write {
                report.damaged.push((at, len));
            }
        }
        if write {
            if !report.damaged.is_empty() {
                report.kept_aside = Some(rewrite_log(&log_path, &bytes, &scan.records)?);
            } else if let Some(cut) = torn {
                report.cut_bytes = cut;
                let keep = bytes.len() as u64 - cut;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .map_err(|e| io_err(&log_path, e))?;
                f.set_len(keep).map_err(|e| io_err(&log_path, e))?;
            }
            ix.log = Some(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&log_path)
                    .map_err(|e| io_err(&log_path, e))?,
            );
        }
        Ok((ix, report))
    }

    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether it holds no entries.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Entry `i`'s metadata.
    pub fn meta(&self, i: usize) -> &Meta {
        &self.meta[i]
    }

    /// Bytes the vectors take in memory.
    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn vector_memory(&self) -> usize {
        self.vectors.memory_bytes()
    }

    /// Append one embedding (normalised here) and its metadata, to disk then memory.
    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn add(&mut self, embedding: &[f32], meta: Meta) -> Result<()> {
        let vec_bytes = self.vectors.encode(embedding)?;
        let meta_bytes = serde_json::to_vec(&meta).expect("serialisable");
        if meta_bytes.len() > MAX_META_BYTES {
            return Err(Error::Invalid(format!(
                "an index entry's metadata is {} bytes; at most {MAX_META_BYTES}",
                meta_bytes.len()
            )));
        }
        let mut body = vec_bytes.clone();
        body.extend_from_slice(&meta_bytes);
        let mut rec = Vec::with_capacity(HEADER + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        rec.extend_from_slice(&body);
        let Some(log) = &mut self.log else {
            return Err(Error::Invalid(format!(
                "index {} was opened to read, not to add to",
                self.dir.display()
            )));
        };
        log.write_all(&rec).map_err(|e| io_err(&self.dir.join("entries.log"), e))?;
        self.push_decoded(vec_bytes, meta);
        Ok(())
    }

    fn push_decoded(&mut self, vec: Vec<u8>, meta: Meta) {
        // scan_log hands on only records of the vector size: this cannot fail.
        if self.vectors.push_encoded(&vec).is_ok() {
            self.meta.push(meta);
        }
    }

    /// Entry `i`'s vector, widened to f32.
    pub fn vector(&self, i: usize) -> Vec<f32> {
        self.vectors.vector(i)
    }

    /// Entry `i`'s vector as stored (see [`VectorSet::stored`]).
    pub fn stored_vector(&self, i: usize) -> Vec<u8> {
        self.vectors.stored(i)
    }

    /// The `k` entries most similar (cosine) to `query` among those `filter`
    /// accepts, best first.
    #[cfg(any(test, feature = "old-index-writer"))]
    pub fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        let filtered =
            filter.camera.is_some() || filter.since_ms.is_some() || filter.until_ms.is_some();
        self.vectors.search(query, k, |i| !filtered || filter.accepts(&self.meta[i]))
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

fn check_dim(dim: usize) -> Result<()> {
    if dim == 0 || dim > 65536 {
        return Err(Error::Invalid(format!("index dimension {dim} is not plausible (1 to 65536)")));
    }
    Ok(())
}

fn read_info(path: &Path) -> Result<IndexInfo> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let info: IndexInfo = serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!("{}: not an owlet index description: {e}", path.display()))
    })?;
    check_dim(info.dim).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    Ok(info)
}

/// Where the records of a log are, and what is no record.
struct Scan {
    records: Vec<std::ops::Range<usize>>,
    /// Stretches followed by a record: (offset, length).
    damaged: Vec<(u64, u64)>,
    /// The stretch at the end, after the last record.
    tail: Option<(u64, u64)>,
    /// Whole records (length and checksum hold) whose contents do not fit the
    /// vector size: the log and index.json disagree.
    misfits: usize,
}

/// Read records from the start; past a stretch that is no record, look for the
/// next offset where a record's length, checksum and metadata all hold. Each
/// record is decoded once, and handed to `on_record`.
fn scan_log(bytes: &[u8], vector_bytes: usize, mut on_record: impl FnMut(Vec<u8>, Meta)) -> Scan {
    let mut scan = Scan { records: Vec::new(), damaged: Vec::new(), tail: None, misfits: 0 };
    let mut pos = 0;
    let mut bad_from: Option<usize> = None;
    while pos < bytes.len() {
        match decode(&bytes[pos..], vector_bytes) {
            Some((vec, meta, n)) => {
                if let Some(b) = bad_from.take() {
                    scan.damaged.push((b as u64, (pos - b) as u64));
                }
                on_record(vec, meta);
                scan.records.push(pos..pos + n);
                pos += n;
            }
            None => {
                if bad_from.is_none() && frame(&bytes[pos..]).is_some() {
                    scan.misfits += 1;
                }
                bad_from.get_or_insert(pos);
                pos += 1;
            }
        }
    }
    scan.tail = bad_from.map(|b| (b as u64, (bytes.len() - b) as u64));
    scan
}

/// Keep the log as it was under `entries.log.damaged-<ms>` and replace it by its
/// readable records. Each step leaves a whole log under the name `entries.log`.
fn rewrite_log(
    log_path: &Path,
    bytes: &[u8],
    records: &[std::ops::Range<usize>],
) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let aside = PathBuf::from(format!("{}.damaged-{stamp}", log_path.display()));
    let tmp = log_path.with_extension("log.tmp");
    let mut clean = Vec::with_capacity(bytes.len());
    for r in records {
        clean.extend_from_slice(&bytes[r.clone()]);
    }
    std::fs::write(&tmp, &clean).map_err(|e| io_err(&tmp, e))?;
    std::fs::hard_link(log_path, &aside).map_err(|e| io_err(&aside, e))?;
    std::fs::rename(&tmp, log_path).map_err(|e| io_err(log_path, e))?;
    Ok(aside)
}

/// The body of the record at the front of `buf`, if its length and checksum hold.
fn frame(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let body = buf.get(HEADER..HEADER.checked_add(len)?)?;
    (crc32fast::hash(body) == crc).then_some(body)
}

/// (vector bytes, metadata, record length) of the record at the front of `buf`.
fn decode(buf: &[u8], vector_bytes: usize) -> Option<(Vec<u8>, Meta, usize)> {
    let body = frame(buf)?;
    let len = body.len();
    if len < vector_bytes {
        return None;
    }
    let meta: Meta = serde_json::from_slice(&body[vector_bytes..]).ok()?;
    Some((body[..vector_bytes].to_vec(), meta, HEADER + len))
}

#[cfg(test)]
mod tests;
