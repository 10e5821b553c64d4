//! The history: one row per analysed frame, what the models said about it, its
//! embedding for search, and a thumbnail to show.
//!
//! One SQLite file (`history.db` under the state folder), apart from the outbox:
//! it is large, written once per analysed frame and read by people, where the
//! outbox is small and written and deleted per message. WAL with `synchronous =
//! NORMAL`, as the outbox: a committed frame survives a crash or SIGKILL of the
//! writer; a power cut may roll back the last commits, never break the file.
//!
//! Schema (version [`SCHEMA_VERSION`] in `PRAGMA user_version`, reached from any
//! older file by [`MIGRATIONS`], in order; a newer file is refused):
//!
//! - `spaces(id, model, dim, precision, vector_bytes)`: the embedding spaces the
//!   stored vectors belong to (a model and how its vectors are stored). Vectors of
//!   two spaces are never compared.
//! - `frames(id, time_ms, camera, trigger, source, caption, space, embedding,
//!   thumbnail, frame, crc)`: `id`s are never reused (AUTOINCREMENT), so a link to a
//!   frame never shows another one after retention; `crc` is a CRC-32 of the row's
//!   contents and its labels, checked whenever a whole frame is read (SQLite
//!   checks its pages, not what is in them).
//! - `labels(frame, label, score)`: the zero-shot scores, for filtering in SQL.
//! - `imports(name, frames, time_ms)` (version 2): what was imported from older
//!   stores (an index folder's `entries.log`), written in the same transaction as
//!   the frames, so that an import interrupted anywhere is done once, never twice.
//! - `frames.embedding_crc` (version 3): a CRC-32 of the embedding alone, checked
//!   as the vectors are loaded for search (which reads no thumbnail, so the row's
//!   `crc` is not checked there). Rows from version 2 get theirs when the file is
//!   migrated, once their row checksum has held; a row whose checksum fails gets
//!   -1, which no CRC equals: its vector is never searched.
//!
//! Retention: frames older than `max_age` go, and while the database, its WAL and
//! the WAL index together are over `max_bytes`, the oldest frames go first.
//!
//! The vectors themselves are bytes here: how they are encoded (f32, f16, int8)
//! and searched is owlet-runtime's (its SIMD kernels, on vectors held in memory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{set_aside, sqlite_err, unix_ms, Error, Result};

/// The schema this code writes.
pub const SCHEMA_VERSION: i64 = 3;

/// `MIGRATIONS[v]` takes a file from version `v` to `v + 1`, in one transaction.
pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE spaces (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL,
        dim INTEGER NOT NULL CHECK (dim > 0),
        precision TEXT NOT NULL,
        vector_bytes INTEGER NOT NULL CHECK (vector_bytes > 0),
        UNIQUE (model, dim, precision));
    CREATE TABLE frames (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        camera TEXT NOT NULL,
        trigger TEXT NOT NULL,
        source TEXT,
        caption TEXT,
        space INTEGER REFERENCES spaces (id),
        embedding BLOB,
        thumbnail BLOB,
        frame BLOB,
        crc INTEGER NOT NULL);
    CREATE INDEX frames_by_time ON frames (time_ms);
    CREATE INDEX frames_by_camera ON frames (camera, time_ms);
    CREATE TABLE labels (
        frame INTEGER NOT NULL REFERENCES frames (id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        score REAL NOT NULL);
    CREATE INDEX labels_by_frame ON labels (frame);
    CREATE INDEX labels_by_label ON labels (label, score);
",
    "
    CREATE TABLE imports (
        name TEXT PRIMARY KEY,
        frames INTEGER NOT NULL,
        time_ms INTEGER NOT NULL);
",
    "
    ALTER TABLE frames ADD COLUMN embedding_crc INTEGER;
",
];

/// The checksum of an embedding's bytes, as `frames.embedding_crc` holds it.
fn embedding_crc(bytes: &[u8]) -> i64 {
    crc32fast::hash(bytes) as i64
}

/// What reading a space's vectors found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VectorsRead {
    /// Vectors handed on (their checksums held).
    pub read: usize,
    /// Frames whose vector failed its checksum: kept in the store, not searched.
    pub damaged: Vec<i64>,
}

/// What a store may hold.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The database, its WAL and the WAL index together, in bytes.
    pub max_bytes: u64,
    /// Frames older than this go; `None`: kept until the size limit.
    pub max_age: Option<Duration>,
}

/// An embedding space: which model made the vectors and how they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub model: String,
    pub dim: usize,
    /// As owlet-runtime names it (`f32`, `f16`, `i8`).
    pub precision: String,
    /// Bytes of one stored vector: every embedding of the space has this length.
    pub vector_bytes: usize,
}

/// One analysed frame, to be stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewFrame {
    pub time_ms: u64,
    pub camera: String,
    /// What made the camera look: `interval`, `motion`, `command`, `still`...
    pub trigger: String,
    /// Where the frame came from, when it was a file (`owlet index add`).
    pub source: Option<String>,
    pub caption: Option<String>,
    /// (label, score), as the zero-shot classifier ranked them.
    pub labels: Vec<(String, f32)>,
    /// The embedding, encoded in its space's precision (`Space::vector_bytes`).
    pub embedding: Option<Vec<u8>>,
    /// A small JPEG to show.
    pub thumbnail: Option<Vec<u8>>,
    /// The full frame (JPEG), when the user keeps them.
    pub frame: Option<Vec<u8>>,
}

/// A stored frame: its id, and what was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFrame {
    pub id: i64,
    pub frame: NewFrame,
}

/// Which frames a query wants; every field narrows it. Newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub camera: Option<String>,
    /// Inclusive bounds, milliseconds since 1970.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// Frames where this label scored at least `min_score`.
    pub label: Option<String>,
    pub min_score: f32,
    /// Words the caption contains (case-insensitive for ASCII).
    pub caption_contains: Option<String>,
    /// Only frames with an id below this (the next page of a timeline).
    pub before_id: Option<i64>,
    /// Only these frames.
    pub ids: Option<Vec<i64>>,
    /// At most this many (0: 100).
    pub limit: usize,
}

/// What opening a history found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Frames stored by earlier runs.
    pub frames: u64,
    /// A file SQLite could not read, renamed to this; the history starts empty.
    pub set_aside: Option<PathBuf>,
    pub set_aside_why: Option<String>,
    /// The schema version the file had (0: a new file), when it was migrated.
    pub migrated_from: Option<i64>,
}

pub struct History {
    conn: Connection,
    path: PathBuf,
    retention: Retention,
    /// Inserts since retention last ran: it runs every few inserts, not each one.
    since_retention: u32,
    /// Frames retention removed since the store was opened.
    removed: u64,
}

/// Retention by age runs at least every this many inserts (by size: whenever the
/// files are over the limit).
const RETENTION_EVERY: u32 = 16;

impl History {
    /// Open (or create) the history at `path`. A file SQLite cannot read is set
    /// aside (renamed, never truncated) and a new one started; the caller reports it.
    pub fn open(path: &Path, retention: Retention) -> Result<(History, Opened)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
        }
        let mut opened = Opened::default();
        let (conn, from) = match open_checked(path, retention.max_bytes) {
            Ok(c) => c,
            Err(Damage::Damaged(why)) => {
                opened.set_aside = Some(set_aside(path)?);
                opened.set_aside_why = Some(why);
                open_checked(path, retention.max_bytes).map_err(|d| d.into_error(path))?
            }
            Err(d) => return Err(d.into_error(path)),
        };
        opened.migrated_from = (from != SCHEMA_VERSION).then_some(from);
        let mut h =
            History { conn, path: path.to_path_buf(), retention, since_retention: 0, removed: 0 };
        if (1..3).contains(&from) {
            h.fill_embedding_crcs()?;
        }
        opened.frames = h.count()?;
        h.enforce_retention()?;
        Ok((h, opened))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of `space`, added if the store has not seen it.
    pub fn space(&mut self, space: &Space) -> Result<i64> {
        let err = sqlite_err(&self.path);
        self.conn
            .execute(
                "INSERT OR IGNORE INTO spaces (model, dim, precision, vector_bytes)
                 VALUES (?1, ?2, ?3, ?4)",
                params![space.model, space.dim as i64, space.precision, space.vector_bytes as i64],
            )
            .map_err(&err)?;
        let (id, bytes): (i64, i64) = self
            .conn
            .query_row(
                "SELECT id, vector_bytes FROM spaces WHERE model = ?1 AND dim = ?2 AND precision = ?3",
                params![space.model, space.dim as i64, space.precision],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&err)?;
        if bytes as usize != space.vector_bytes {
            return Err(invalid(
                &self.path,
                format!(
                    "space {} ({}-d {}) stores {bytes}-byte vectors, not {}",
                    space.model, space.dim, space.precision, space.vector_bytes
                ),
            ));
        }
        Ok(id)
    }

    /// Store one frame (its labels in the same transaction); returns its id. Once
    /// this returns, the frame survives the process being killed.
    pub fn insert(&mut self, space: Option<i64>, f: &NewFrame) -> Result<i64> {
        let ids = self.insert_batch(space, std::slice::from_ref(f), None)?;
        Ok(ids[0])
    }

    /// Store frames in one transaction: all of them or none. With `import`, the
    /// batch is recorded as that import (see [`History::imported`]) in the same
    /// transaction. Retention runs after the commit.
    pub fn insert_batch(
        &mut self,
        space: Option<i64>,
        frames: &[NewFrame],
        import: Option<&str>,
    ) -> Result<Vec<i64>> {
        let path = self.path.clone();
        let err = sqlite_err(&path);
        self.check_embeddings(space, frames)?;
        let tx = self.conn.transaction().map_err(&err)?;
        let mut ids = Vec::with_capacity(frames.len());
        {
            let mut frame_stmt = tx
                .prepare_cached(
                    "INSERT INTO frames (time_ms, camera, trigger, source, caption, space,
                                         embedding, thumbnail, frame, crc, embedding_crc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(&err)?;
            let mut label_stmt = tx
                .prepare_cached("INSERT INTO labels (frame, label, score) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for f in frames {
                frame_stmt
                    .execute(params![
                        f.time_ms.min(i64::MAX as u64) as i64,
                        f.camera,
                        f.trigger,
                        f.source,
                        f.caption,
                        f.embedding.as_ref().and(space),
                        f.embedding,
                        f.thumbnail,
                        f.frame,
                        checksum(f) as i64,
                        f.embedding.as_deref().map(embedding_crc)
                    ])
                    .map_err(&err)?;
                let id = tx.last_insert_rowid();
                for (label, score) in &f.labels {
                    label_stmt.execute(params![id, label, *score as f64]).map_err(&err)?;
                }
                ids.push(id);
            }
        }
        if let Some(name) = import {
            tx.execute(
                "INSERT INTO imports (name, frames, time_ms) VALUES (?1, ?2, ?3)",
                params![name, frames.len() as i64, unix_ms() as i64],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.since_retention += frames.len().min(u32::MAX as usize) as u32;
        if self.since_retention >= RETENTION_EVERY || self.disk_bytes() > self.retention.max_bytes {
            self.enforce_retention()?;
        }
        Ok(ids)
    }

    /// Every embedding of `frames` fits `space`'s vectors (and has a space).
    fn check_embeddings(&self, space: Option<i64>, frames: &[NewFrame]) -> Result<()> {
        let vector_bytes: Option<i64> = match space {
            Some(space) => Some(
                self.conn
                    .query_row("SELECT vector_bytes FROM spaces WHERE id = ?1", [space], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(sqlite_err(&self.path))?
                    .ok_or_else(|| invalid(&self.path, format!("no embedding space {space}")))?,
            ),
            None => None,
        };
        for f in frames {
            match (vector_bytes, &f.embedding) {
                (Some(b), Some(e)) if b as usize != e.len() => {
                    return Err(invalid(
                        &self.path,
                        format!("a {}-byte embedding in a space of {b}-byte vectors", e.len()),
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(&self.path, "an embedding needs its space".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether an import of this name was committed.
    pub fn imported(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM imports WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(sqlite_err(&self.path))
    }

    /// The embedding spaces stored, with how many frames have a vector in each.
    pub fn spaces(&self) -> Result<Vec<(i64, Space, u64)>> {
        let err = sqlite_err(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id, s.model, s.dim, s.precision, s.vector_bytes,
                        (SELECT count(*) FROM frames f WHERE f.space = s.id)
                 FROM spaces s ORDER BY s.id",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Space {
                        model: r.get(1)?,
                        dim: r.get::<_, i64>(2)? as usize,
                        precision: r.get(3)?,
                        vector_bytes: r.get::<_, i64>(4)? as usize,
                    },
                    r.get::<_, i64>(5)? as u64,
                ))
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Frames removed by retention since this store was opened: a caller holding
    /// ids in memory compares it to know when to drop the ones gone.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// One whole frame, its checksum verified: `None` if there is no such id.
    pub fn get(&self, id: i64) -> Result<Option<StoredFrame>> {
        let err = sqlite_err(&self.path);
        let row = self
            .conn
            .query_row(
                "SELECT time_ms, camera, trigger, source, caption, embedding, thumbnail, frame, crc
                 FROM frames WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        NewFrame {
                            time_ms: r.get::<_, i64>(0)? as u64,
                            camera: r.get(1)?,
                            trigger: r.get(2)?,
                            source: r.get(3)?,
                            caption: r.get(4)?,
                            labels: Vec::new(),
                            embedding: r.get(5)?,
                            thumbnail: r.get(6)?,
                            frame: r.get(7)?,
                        },
                        r.get::<_, i64>(8)? as u32,
                    ))
                },
            )
            .optional()
            .map_err(&err)?;
        let Some((mut frame, crc)) = row else { return Ok(None) };
        frame.labels = self.labels_of(id)?;
        if checksum(&frame) != crc {
            return Err(invalid(&self.path, format!("frame {id} fails its checksum (damaged)")));
        }
        Ok(Some(StoredFrame { id, frame }))
    }

    /// The frames `filter` asks for, newest first, without their images and
    /// embeddings (a timeline's rows; `get` reads one whole).
    pub fn query(&self, filter: &Filter) -> Result<Vec<StoredFrame>> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit.min(10_000) };
        self.rows(filter, &format!(" ORDER BY id DESC LIMIT {limit}"))
    }

    /// One frame as [`History::query`] returns it (no images, no embedding).
    pub fn summary(&self, id: i64) -> Result<Option<StoredFrame>> {
        let filter = Filter { ids: Some(vec![id]), ..Filter::default() };
        Ok(self.rows(&filter, "")?.pop())
    }

    /// The ids of every frame `filter` accepts (its limit and page ignored),
    /// lowest first: what narrows a vector search.
    pub fn matching_ids(&self, filter: &Filter) -> Result<Vec<i64>> {
        let err = sqlite_err(&self.path);
        let filter = Filter { before_id: None, ..filter.clone() };
        let (clause, args) = where_clause(&filter);
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT id FROM frames f WHERE 1{clause} ORDER BY id"))
            .map_err(&err)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0)).map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    fn rows(&self, filter: &Filter, tail: &str) -> Result<Vec<StoredFrame>> {
        let err = sqlite_err(&self.path);
        let (clause, args) = where_clause(filter);
        let sql = format!(
            "SELECT id, time_ms, camera, trigger, source, caption FROM frames f WHERE 1{clause}{tail}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(StoredFrame {
                    id: r.get(0)?,
                    frame: NewFrame {
                        time_ms: r.get::<_, i64>(1)? as u64,
                        camera: r.get(2)?,
                        trigger: r.get(3)?,
                        source: r.get(4)?,
                        caption: r.get(5)?,
                        ..NewFrame::default()
                    },
                })
            })
            .map_err(&err)?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
        for f in &mut out {
            f.frame.labels = self.labels_of(f.id)?;
        }
        Ok(out)
    }

    /// Every stored embedding of `space`, oldest first, with its frame's id: what
    /// a search loads into memory.
    pub fn embeddings(&self, space: i64, mut each: impl FnMut(i64, &[u8])) -> Result<VectorsRead> {
        let err = sqlite_err(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, embedding, embedding_crc FROM frames
                 WHERE space = ?1 AND embedding IS NOT NULL ORDER BY id",
            )
            .map_err(&err)?;
        let mut rows = stmt.query([space]).map_err(&err)?;
        let mut out = VectorsRead::default();
        while let Some(r) = rows.next().map_err(&err)? {
            let id: i64 = r.get(0).map_err(&err)?;
            let blob = r.get_ref(1).map_err(&err)?.as_blob().map_err(|e| err(e.into()))?;
            let crc: Option<i64> = r.get(2).map_err(&err)?;
            if crc == Some(embedding_crc(blob)) {
                each(id, blob);
                out.read += 1;
            } else {
                out.damaged.push(id);
            }
        }
        Ok(out)
    }

    /// Version 3's per-vector checksums for the rows of an older file: each
    /// row's whole checksum is checked first, and a row that fails it gets -1.
    fn fill_embedding_crcs(&mut self) -> Result<()> {
        let err = sqlite_err(&self.path);
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT id FROM frames WHERE embedding IS NOT NULL AND embedding_crc IS NULL",
                )
                .map_err(&err)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(&err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(&err)?
        };
        let mut crcs = Vec::with_capacity(ids.len());
        for id in ids {
            let crc = match self.get(id) {
                Ok(Some(f)) => f.frame.embedding.as_deref().map_or(-1, embedding_crc),
                _ => -1,
            };
            crcs.push((id, crc));
        }
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE frames SET embedding_crc = ?2 WHERE id = ?1")
                .map_err(&err)?;
            for (id, crc) in crcs {
                stmt.execute(params![id, crc]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Frames stored.
    pub fn count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM frames", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sqlite_err(&self.path))
    }

    /// Bytes on disk: the database, its WAL and the WAL index.
    pub fn disk_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum()
    }

    /// SQLite's full `integrity_check` ("ok" when the file is sound).
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(sqlite_err(&self.path))
    }

    /// Drop frames past the age limit, then the oldest until the files fit the size
    /// limit (the newest frame is kept, however large). Returns how many went.
    pub fn enforce_retention(&mut self) -> Result<u64> {
        self.since_retention = 0;
        let path = self.path.clone();
        let err = sqlite_err(&path);
        let mut gone = 0;
        if let Some(age) = self.retention.max_age {
            let cutoff = unix_ms().saturating_sub(age.as_millis() as u64);
            gone += self
                .conn
                .execute("DELETE FROM frames WHERE time_ms < ?1", [cutoff as i64])
                .map_err(&err)? as u64;
        }
        let mut shrunk = false;
        while self.disk_bytes() > self.retention.max_bytes {
            if !shrunk || gone > 0 {
                self.shrink()?;
                shrunk = true;
                if self.disk_bytes() <= self.retention.max_bytes {
                    break;
                }
            }
            let n = self.count()?;
            if n <= 1 {
                break;
            }
            let batch = (n / 16).max(1) as i64;
            gone += self
                .conn
                .execute(
                    "DELETE FROM frames WHERE id IN
                     (SELECT id FROM frames ORDER BY id LIMIT ?1)",
                    [batch],
                )
                .map_err(&err)? as u64;
            self.shrink()?;
        }
        self.removed += gone;
        if gone > 0 {
            self.shrink()?;
            log::info!("history: retention removed {gone} frame(s)");
        }
        Ok(gone)
    }

    fn labels_of(&self, id: i64) -> Result<Vec<(String, f32)>> {
        let err = sqlite_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT label, score FROM labels WHERE frame = ?1 ORDER BY rowid")
            .map_err(&err)?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)? as f32)))
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Give free pages back to the file system and empty the WAL.
    fn shrink(&mut self) -> Result<()> {
        for pragma in ["PRAGMA incremental_vacuum", "PRAGMA wal_checkpoint(TRUNCATE)"] {
            let mut stmt = self.conn.prepare(pragma).map_err(sqlite_err(&self.path))?;
            let mut rows = stmt.query([]).map_err(sqlite_err(&self.path))?;
            while rows.next().map_err(sqlite_err(&self.path))?.is_some() {}
        }
        Ok(())
    }
}

/// The SQL conditions of `filter` (each starting with ` AND`) and their arguments.
fn where_clause(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(c) = &filter.camera {
        arg(&mut sql, " AND camera = ?", c.clone().into());
    }
    if let Some(t) = filter.since_ms {
        arg(&mut sql, " AND time_ms >= ?", (t.min(i64::MAX as u64) as i64).into());
    }
    if let Some(t) = filter.until_ms {
        arg(&mut sql, " AND time_ms <= ?", (t.min(i64::MAX as u64) as i64).into());
    }
    if let Some(b) = filter.before_id {
        arg(&mut sql, " AND id < ?", b.into());
    }
    if let Some(words) = &filter.caption_contains {
        // instr, not LIKE: the user's % and _ are plain characters.
        arg(&mut sql, " AND instr(lower(caption), lower(?)) > 0", words.clone().into());
    }
    if let Some(l) = &filter.label {
        arg(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM labels WHERE frame = f.id AND label = ?",
            l.clone().into(),
        );
        arg(&mut sql, " AND score >= ?)", (filter.min_score as f64).into());
    }
    if let Some(ids) = &filter.ids {
        // Integers, formatted here: no argument per id (SQLite allows 32766).
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        sql.push_str(&format!(" AND id IN ({})", list.join(",")));
    }
    (sql, args)
}

/// CRC-32 of a frame's contents, its labels included, each field length-prefixed
/// (so that moving bytes from one field to the next changes it).
fn checksum(f: &NewFrame) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: Option<&[u8]>| match bytes {
        None => h.update(&[0]),
        Some(b) => {
            h.update(&[1]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
    };
    field(Some(&f.time_ms.to_le_bytes()));
    field(Some(f.camera.as_bytes()));
    field(Some(f.trigger.as_bytes()));
    field(f.source.as_deref().map(str::as_bytes));
    field(f.caption.as_deref().map(str::as_bytes));
    for (label, score) in &f.labels {
        field(Some(label.as_bytes()));
        // Scores are stored as SQLite REAL (f64) and read back as f32: exact.
        field(Some(&score.to_le_bytes()));
    }
    field(f.embedding.as_deref());
    field(f.thumbnail.as_deref());
    field(f.frame.as_deref());
    h.finalize()
}

fn invalid(path: &Path, why: String) -> Error {
    Error::Io { path: path.to_path_buf(), source: std::io::Error::other(why) }
}

/// Why a file could not be opened as a history.
enum Damage {
    /// Not an SQLite file, or one that fails SQLite's own check: set it aside.
    Damaged(String),
    /// Anything else (permissions, a newer schema): the user must act.
    Refused(Error),
}

impl Damage {
    fn into_error(self, path: &Path) -> Error {
        match self {
            Damage::Refused(e) => e,
            Damage::Damaged(why) => {
                invalid(path, format!("damaged again after a fresh start: {why}"))
            }
        }
    }
}

/// Open, configure, check and migrate; returns the connection and the version the
/// file had.
fn open_checked(path: &Path, max_bytes: u64) -> std::result::Result<(Connection, i64), Damage> {
    let damaged_or_refused = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            Damage::Damaged(e.to_string())
        }
        _ => Damage::Refused(sqlite_err(path)(e)),
    };
    let conn = Connection::open(path).map_err(damaged_or_refused)?;
    if let Some(why) = crate::quick_check(&conn).map_err(damaged_or_refused)? {
        return Err(Damage::Damaged(why));
    }
    // The WAL is checkpointed and truncated at a sixteenth of the limit.
    let wal_bytes = (max_bytes / 16).clamp(256 << 10, 16 << 20);
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = {};
         PRAGMA journal_size_limit = {wal_bytes};",
        wal_bytes / 4096 / 2
    ))
    .map_err(damaged_or_refused)?;
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(damaged_or_refused)?;
    if version > SCHEMA_VERSION {
        return Err(Damage::Refused(invalid(
            path,
            format!(
                "history schema version {version} is newer than this owlet's ({SCHEMA_VERSION}): \
                 it was written by a newer owlet"
            ),
        )));
    }
    for (v, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        conn.execute_batch(&format!("BEGIN; {step} PRAGMA user_version = {}; COMMIT;", v + 1))
            .map_err(damaged_or_refused)?;
    }
    Ok((conn, version))
}

#[cfg(test)]
mod tests;
