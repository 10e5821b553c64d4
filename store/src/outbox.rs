//! The outbox: results wait here until the broker has acknowledged them.
//!
//! One SQLite file, `outbox.db`, in WAL mode with `synchronous = NORMAL`: a commit
//! survives a crash or SIGKILL of the bridge; a power cut may roll back the last
//! commits but never leaves a broken file (no fsync per result: it would wear an SD
//! card). Tables:
//!
//! - `queue(seq, topic, retain, payload, crc)`: the records not yet acknowledged, in
//!   `seq` order. `crc` is a CRC-32 of the other four fields, checked on every read.
//! - `counters('next_seq')`: the next sequence number, written in the same
//!   transaction as the record that used the previous one, so `seq` never goes back.
//! - `damaged`: records whose checksum failed, kept for inspection (the newest 100).
//!
//! The bound (`max_bytes`) counts what is on disk: the database, its WAL and the
//! WAL index. The WAL is checkpointed small (an eighth of the bound) and truncated;
//! free pages are given back (incremental vacuum). When the bound is reached, the
//! oldest records go first: on a camera, the newest results matter most.
//!
//! A full disk is a state, not a loss: a record the disk refuses is held in memory
//! (within an eighth of the bound), delivered like the others, and stored with the
//! next write that succeeds. Every record that does not reach the broker is
//! accounted for: dropped by the bound, damaged on disk, or refused by the disk
//! with the memory full too. Each is a [`Loss`] (a range of sequence numbers and
//! why) for the caller to publish; consumers see the same numbers as a gap in `seq`.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::{io_err, legacy_queue, set_aside, sqlite_err, unix_ms, Error, Result};

/// The schema this code writes; an older file is migrated, a newer one refused.
const SCHEMA_VERSION: i64 = 1;
/// Damaged records kept for inspection.
const DAMAGED_KEPT: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Record {
    fn checksum(&self) -> u32 {
        checksum(self.seq, self.retain, self.topic.as_bytes(), &self.payload)
    }
}

fn checksum(seq: u64, retain: bool, topic: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&[retain as u8]);
    h.update(&(topic.len() as u32).to_le_bytes());
    h.update(topic);
    h.update(payload);
    h.finalize()
}

/// Why records never reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Dropped, oldest first, to keep the outbox within its bound.
    QueueFull,
    /// Their bytes on disk no longer matched their checksum.
    Damaged,
    /// The disk refused them (full, an I/O error) and the memory that holds such
    /// records meanwhile was full too.
    NotStored,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::QueueFull => "queue_full",
            LossReason::Damaged => "damaged",
            LossReason::NotStored => "not_stored",
        }
    }
}

/// Records `first..=last` were lost, for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub first: u64,
    pub last: u64,
    pub reason: LossReason,
}

impl Loss {
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What opening an outbox found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records still waiting from an earlier run.
    pub pending: usize,
    /// Sequence numbers of records whose checksum failed (moved to `damaged`).
    pub damaged: Vec<u64>,
    /// A file SQLite could not read, renamed to this; its readable records were
    /// carried over.
    pub set_aside: Option<PathBuf>,
    /// Why it was set aside.
    pub set_aside_why: Option<String>,
    /// Records imported from the pre-SQLite `queue.log` (a `seq` it holds twice
    /// counts once: the first is kept).
    pub migrated: usize,
    /// Bytes of the old `queue.log` that were no record.
    pub migrated_unreadable_bytes: u64,
    /// The sequence counter was lost with a damaged file: numbering goes on from
    /// the clock (milliseconds since 1970), which is past any earlier number.
    pub seq_from_clock: bool,
}

/// Where a pushed record waits.
#[derive(Debug)]
pub enum Held {
    /// In the database.
    OnDisk,
    /// In memory only, because the disk refused it (full, an I/O error): it is
    /// delivered like the others while the process lives, and stored as soon as
    /// a write succeeds again.
    InMemory(Box<Error>),
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    next_seq: u64,
    /// Rows in `queue`.
    pending: usize,
    /// Delivered records whose deletion failed (a full disk): `front` skips them,
    /// the next `ack` deletes them again. Delivery is in order, so they are the
    /// oldest rows, up to this number.
    delivered_through: Option<u64>,
    undeleted: usize,
    /// Records the disk refused, oldest first, within `memory_max_bytes`.
    unstored: std::collections::VecDeque<Record>,
    unstored_bytes: usize,
    memory_max_bytes: usize,
    dropped: u64,
    losses: Vec<Loss>,
}

impl Outbox {
    /// Open (or create) the outbox in `dir` with at most `max_bytes` on disk,
    /// keeping what an earlier run left, and importing the old `queue.log`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Outbox, Recovered)> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("outbox.db");
        let mut rec = Recovered::default();
        let mut floor = 0;
        let conn = match open_checked(&path, max_bytes) {
            Ok(c) => c,
            Err(Opened::Damaged(why)) => {
                let aside = set_aside(&path)?;
                let salvaged = salvage(&aside);
                let conn = open_checked(&path, max_bytes).map_err(Opened::into_error(&path))?;
                floor = match salvaged.next_seq {
                    Some(n) => n,
                    None => {
                        rec.seq_from_clock = true;
                        unix_ms()
                    }
                };
                insert_all(&conn, &path, &salvaged.records)?;
                rec.set_aside = Some(aside);
                rec.set_aside_why = Some(why);
                conn
            }
            Err(e) => return Err(Opened::into_error(&path)(e)),
        };
        if let Some(old) = legacy_queue::read(dir).map_err(io_err(&dir.join("queue.log")))? {
            rec.migrated = insert_all(&conn, &path, &old.records)?;
            floor = floor.max(old.next_seq);
            rec.migrated_unreadable_bytes = old.unreadable_bytes;
            set_counter(&conn, &path, floor.max(max_seq_plus_one(&conn, &path)?))?;
            legacy_queue::remove(dir).map_err(io_err(dir))?;
        }
        let counter = get_counter(&conn, &path)?;
        if counter.is_none() && floor == 0 {
            // Every outbox is created with its counter: the file was edited.
            rec.seq_from_clock = true;
            floor = unix_ms();
        }
        let next_seq = counter.unwrap_or(0).max(floor).max(max_seq_plus_one(&conn, &path)?);
        let mut ob = Outbox {
            conn,
            path,
            max_bytes,
            next_seq,
            pending: 0,
            delivered_through: None,
            undeleted: 0,
            unstored: Default::default(),
            unstored_bytes: 0,
            // Held in memory when the disk refuses: an eighth of the disk bound.
            memory_max_bytes: (max_bytes / 8).clamp(256 << 10, 8 << 20) as usize,
            dropped: 0,
            losses: Vec::new(),
        };
        ob.pending = ob.count()?;
        rec.damaged = ob.check_all()?;
        rec.pending = ob.pending;
        ob.enforce_bound()?;
        Ok((ob, rec))
    }

    /// Append a message; returns its sequence number and where it waits. The oldest
    /// records are dropped when the outbox would grow past its bound.
    pub fn push(&mut self, topic: &str, retain: bool, payload: Vec<u8>) -> (u64, Held) {
        self.push_with(topic, retain, |_| payload)
    }

    /// Like push, with the payload built from the sequence number it gets.
    pub fn push_with(
        &mut self,
        topic: &str,
        retain: bool,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> (u64, Held) {
        let seq = self.next_seq;
        // Used up whether or not the record is stored: a record lost is a gap.
        self.next_seq += 1;
        let record = Record { seq, topic: topic.to_string(), retain, payload: payload(seq) };
        if let Err(error) = self.insert(&record) {
            self.hold_in_memory(record);
            return (seq, Held::InMemory(Box::new(error)));
        }
        self.pending += 1;
        if let Err(e) = self.enforce_bound() {
            log::warn!("outbox: cannot keep {} within its bound: {e}", self.path.display());
        }
        (seq, Held::OnDisk)
    }

    /// Records waiting in memory only (the disk refused them).
    pub fn in_memory(&self) -> usize {
        self.unstored.len()
    }

    fn hold_in_memory(&mut self, record: Record) {
        self.unstored_bytes += record.payload.len() + record.topic.len();
        self.unstored.push_back(record);
        while self.unstored_bytes > self.memory_max_bytes && self.unstored.len() > 1 {
            let old = self.unstored.pop_front().expect("more than one");
            self.unstored_bytes -= old.payload.len() + old.topic.len();
            add_loss(&mut self.losses, old.seq, old.seq, LossReason::NotStored);
        }
    }

    /// The oldest unacknowledged record. A record whose checksum fails is moved to
    /// `damaged`, counted as a loss, and the next one is returned.
    pub fn front(&mut self) -> Result<Option<Record>> {
        let on_disk = self.front_on_disk()?;
        Ok(match (on_disk, self.unstored.front()) {
            (Some(d), Some(m)) if m.seq < d.seq => Some(m.clone()),
            (None, Some(m)) => Some(m.clone()),
            (d, _) => d,
        })
    }

    fn front_on_disk(&mut self) -> Result<Option<Record>> {
        loop {
            let row = self
                .conn
                .query_row(
                    "SELECT seq, topic, retain, payload, crc FROM queue WHERE seq > ?1
                     ORDER BY seq LIMIT 1",
                    [self.delivered_through.map_or(-1, |d| d as i64)],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u64,
                            r.get_ref(1)?.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                            r.get::<_, i64>(2)? != 0,
                            r.get_ref(3)?.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                            r.get::<_, i64>(4)? as u32,
                        ))
                    },
                )
                .optional()
                .map_err(sqlite_err(&self.path))?;
            let Some((seq, topic, retain, payload, crc)) = row else { return Ok(None) };
            if checksum(seq, retain, &topic, &payload) == crc {
                if let Ok(topic) = String::from_utf8(topic) {
                    return Ok(Some(Record { seq, topic, retain, payload }));
                }
            }
            self.set_damaged_aside(seq)?;
        }
    }

    /// The broker acknowledged record `seq`: forget it. If the disk cannot record
    /// that (full), the record is still never sent again by this process.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        if let Some(i) = self.unstored.iter().position(|r| r.seq == seq) {
            let r = self.unstored.remove(i).expect("found");
            self.unstored_bytes -= r.payload.len() + r.topic.len();
            return Ok(());
        }
        let through = self.delivered_through.map_or(seq, |d| d.max(seq));
        match self.conn.execute("DELETE FROM queue WHERE seq <= ?1", [through as i64]) {
            Ok(n) => {
                self.pending -= n.min(self.pending);
                self.delivered_through = None;
                self.undeleted = 0;
                if self.pending == 0 && n > 0 {
                    // After an outage: give the space back now that it is all delivered.
                    self.shrink()?;
                }
                Ok(())
            }
            Err(e) => {
                if self.delivered_through.is_none_or(|d| seq > d) {
                    self.undeleted += 1;
                }
                self.delivered_through = Some(through);
                Err(sqlite_err(&self.path)(e))
            }
        }
    }

    /// Records waiting for delivery.
    pub fn len(&self) -> usize {
        self.pending - self.undeleted.min(self.pending) + self.unstored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped by the bound since the outbox was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The losses not yet taken, oldest first, as ranges.
    pub fn take_losses(&mut self) -> Vec<Loss> {
        std::mem::take(&mut self.losses)
    }

    /// Put back losses that could not be reported (they go first next time).
    pub fn return_losses(&mut self, mut losses: Vec<Loss>) {
        losses.append(&mut self.losses);
        self.losses = losses;
    }

    /// Bytes the outbox takes on disk: the database, its WAL and the WAL index.
    pub fn disk_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn insert(&mut self, r: &Record) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite_err(&self.path))?;
        tx.execute(
            "INSERT INTO queue (seq, topic, retain, payload, crc) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.seq as i64, r.topic, r.retain as i64, r.payload, r.checksum() as i64],
        )
        .map_err(sqlite_err(&self.path))?;
        set_counter(&tx, &self.path, self.next_seq)?;
        // What the disk refused earlier goes in with this write.
        for u in &self.unstored {
            tx.execute(
                "INSERT OR IGNORE INTO queue (seq, topic, retain, payload, crc)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.seq as i64, u.topic, u.retain as i64, u.payload, u.checksum() as i64],
            )
            .map_err(sqlite_err(&self.path))?;
        }
        // Deliveries a full disk kept from being recorded go in with this write.
        let mut recorded = 0;
        if let Some(d) = self.delivered_through {
            recorded = tx
                .execute("DELETE FROM queue WHERE seq <= ?1", [d as i64])
                .map_err(sqlite_err(&self.path))?;
        }
        tx.commit().map_err(sqlite_err(&self.path))?;
        self.pending += self.unstored.len();
        self.unstored.clear();
        self.unstored_bytes = 0;
        if self.delivered_through.take().is_some() {
            self.pending -= recorded.min(self.pending);
            self.undeleted = 0;
        }
        Ok(())
    }

    fn count(&self) -> Result<usize> {
        self.conn
            .query_row("SELECT count(*) FROM queue", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(sqlite_err(&self.path))
    }

    /// Check every record's checksum (at open); returns the damaged ones' numbers.
    fn check_all(&mut self) -> Result<Vec<u64>> {
        let mut bad = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT seq, topic, retain, payload, crc FROM queue ORDER BY seq")
                .map_err(sqlite_err(&self.path))?;
            let mut rows = stmt.query([]).map_err(sqlite_err(&self.path))?;
            while let Some(r) = rows.next().map_err(sqlite_err(&self.path))? {
                let seq = r.get::<_, i64>(0).unwrap_or(-1) as u64;
                let ok = (|| -> rusqlite::Result<bool> {
                    let topic = r.get_ref(1)?.as_bytes()?;
                    let payload = r.get_ref(3)?.as_bytes()?;
                    let sum = checksum(seq, r.get::<_, i64>(2)? != 0, topic, payload);
                    Ok(sum == r.get::<_, i64>(4)? as u32 && std::str::from_utf8(topic).is_ok())
                })()
                .unwrap_or(false);
                if !ok {
                    bad.push(seq);
                }
            }
        }
        for &seq in &bad {
            self.set_damaged_aside(seq)?;
        }
        Ok(bad)
    }

    fn set_damaged_aside(&mut self, seq: u64) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite_err(&self.path))?;
        tx.execute(
            "INSERT INTO damaged (seq, topic, retain, payload, crc, found_ms)
             SELECT seq, topic, retain, payload, crc, ?2 FROM queue WHERE seq = ?1",
            params![seq as i64, unix_ms() as i64],
        )
        .map_err(sqlite_err(&self.path))?;
        tx.execute("DELETE FROM queue WHERE seq = ?1", [seq as i64])
            .map_err(sqlite_err(&self.path))?;
        tx.execute(
            "DELETE FROM damaged WHERE rowid NOT IN
             (SELECT rowid FROM damaged ORDER BY found_ms DESC LIMIT ?1)",
            [DAMAGED_KEPT],
        )
        .map_err(sqlite_err(&self.path))?;
        tx.commit().map_err(sqlite_err(&self.path))?;
        self.pending = self.pending.saturating_sub(1);
        add_loss(&mut self.losses, seq, seq, LossReason::Damaged);
        log::error!("outbox: record {seq} failed its checksum; kept aside in table `damaged`");
        Ok(())
    }

    /// Drop the oldest records until the files fit the bound (at least one record,
    /// however large, is kept).
    fn enforce_bound(&mut self) -> Result<()> {
        let mut shrunk = false;
        while self.disk_bytes() > self.max_bytes {
            if !shrunk {
                // Free pages and a long WAL first: no record needs to go for those.
                self.shrink()?;
                shrunk = true;
                continue;
            }
            if self.pending <= 1 {
                break;
            }
            let n = (self.pending / 16).max(1);
            let (first, last): (i64, i64) = self
                .conn
                .query_row(
                    "SELECT min(seq), max(seq) FROM
                     (SELECT seq FROM queue ORDER BY seq LIMIT ?1)",
                    [n as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sqlite_err(&self.path))?;
            let gone = self
                .conn
                .execute("DELETE FROM queue WHERE seq <= ?1", [last])
                .map_err(sqlite_err(&self.path))?;
            self.pending -= gone.min(self.pending);
            self.dropped += gone as u64;
            add_loss(&mut self.losses, first as u64, last as u64, LossReason::QueueFull);
            self.shrink()?;
        }
        Ok(())
    }

    /// Give free pages back to the file system and empty the WAL.
    fn shrink(&mut self) -> Result<()> {
        // Both pragmas work a step at a time: run each to its end.
        for pragma in ["PRAGMA incremental_vacuum", "PRAGMA wal_checkpoint(TRUNCATE)"] {
            let mut stmt = self.conn.prepare(pragma).map_err(sqlite_err(&self.path))?;
            let mut rows = stmt.query([]).map_err(sqlite_err(&self.path))?;
            while rows.next().map_err(sqlite_err(&self.path))?.is_some() {}
        }
        Ok(())
    }
}

impl Drop for Outbox {
    /// Last chance for what the disk refused: store it for the next start.
    fn drop(&mut self) {
        if self.unstored.is_empty() {
            return;
        }
        let records: Vec<Record> = self.unstored.iter().cloned().collect();
        match insert_all(&self.conn, &self.path, &records) {
            Ok(_) => {
                log::info!("outbox: {} record(s) held in memory are now stored", records.len())
            }
            Err(e) => log::error!(
                "outbox: {} record(s) held in memory are lost ({e}): seq {}..={}",
                records.len(),
                records[0].seq,
                records[records.len() - 1].seq
            ),
        }
    }
}

fn add_loss(losses: &mut Vec<Loss>, first: u64, last: u64, reason: LossReason) {
    if let Some(l) = losses.last_mut() {
        if l.reason == reason && l.last.checked_add(1) == Some(first) {
            l.last = last;
            return;
        }
    }
    losses.push(Loss { first, last, reason });
}

/// Why a file could not be opened as an outbox.
enum Opened {
    /// Not an SQLite file, or one that fails SQLite's own check: set it aside.
    Damaged(String),
    /// Anything else (permissions, a newer schema): the user must act.
    Refused(Error),
}

impl Opened {
    fn into_error(path: &Path) -> impl Fn(Opened) -> Error + '_ {
        move |o| match o {
            Opened::Refused(e) => e,
            Opened::Damaged(why) => Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("damaged again after a fresh start: {why}")),
            },
        }
    }
}

fn open_checked(path: &Path, max_bytes: u64) -> std::result::Result<Connection, Opened> {
    let damaged_or_refused = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            Opened::Damaged(e.to_string())
        }
        _ => Opened::Refused(sqlite_err(path)(e)),
    };
    let conn = Connection::open(path).map_err(damaged_or_refused)?;
    if let Some(why) = crate::quick_check(&conn).map_err(damaged_or_refused)? {
        return Err(Opened::Damaged(why));
    }
    // The WAL is checkpointed and truncated at an eighth of the bound.
    let wal_bytes = (max_bytes / 8).clamp(64 << 10, 4 << 20);
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = {};
         PRAGMA journal_size_limit = {wal_bytes};",
        wal_bytes / 4096 / 2
    ))
    .map_err(damaged_or_refused)?;
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(damaged_or_refused)?;
    if version > SCHEMA_VERSION {
        return Err(Opened::Refused(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "outbox schema version {version} is newer than this owlet's ({SCHEMA_VERSION}): \
                 it was written by a newer owlet-bridge"
            )),
        }));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS queue (
                 seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, retain INTEGER NOT NULL,
                 payload BLOB NOT NULL, crc INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (
                 name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS damaged (
                 seq INTEGER, topic, retain, payload, crc, found_ms INTEGER);
             INSERT OR IGNORE INTO counters (name, value) VALUES ('next_seq', 0);
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;"
        ))
        .map_err(damaged_or_refused)?;
    }
    Ok(conn)
}

fn get_counter(conn: &Connection, path: &Path) -> Result<Option<u64>> {
    conn.query_row("SELECT value FROM counters WHERE name = 'next_seq'", [], |r| r.get::<_, i64>(0))
        .optional()
        .map(|v| v.map(|v| v.max(0) as u64))
        .map_err(sqlite_err(path))
}

fn set_counter(conn: &Connection, path: &Path, next_seq: u64) -> Result<()> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('next_seq', ?1)
         ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
        [next_seq as i64],
    )
    .map(|_| ())
    .map_err(sqlite_err(path))
}

/// One past the largest sequence number in the queue or among the damaged.
fn max_seq_plus_one(conn: &Connection, path: &Path) -> Result<u64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM queue), -1),
                    coalesce((SELECT max(seq) FROM damaged), -1)) + 1",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|v| v.max(0) as u64)
    .map_err(sqlite_err(path))
}

/// Insert records, keeping the first of any `seq` already there; returns how many
/// were added.
fn insert_all(conn: &Connection, path: &Path, records: &[Record]) -> Result<usize> {
    let tx = conn.unchecked_transaction().map_err(sqlite_err(path))?;
    let mut added = 0;
    for r in records {
        // OR IGNORE: importing again after a crash mid-import adds nothing twice,
        // and an old log that holds a seq twice gives its first record.
        added += tx
            .execute(
                "INSERT OR IGNORE INTO queue (seq, topic, retain, payload, crc)
             VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.seq as i64, r.topic, r.retain as i64, r.payload, r.checksum() as i64],
            )
            .map_err(sqlite_err(path))?;
    }
    tx.commit().map_err(sqlite_err(path))?;
    Ok(added)
}

/// What could still be read from a damaged file.
#[derive(Default)]
struct Salvaged {
    records: Vec<Record>,
    next_seq: Option<u64>,
}

/// Best effort: the records whose checksum holds, up to the first read error, and
/// the sequence counter if it can be read.
fn salvage(path: &Path) -> Salvaged {
    let mut s = Salvaged::default();
    let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return s;
    };
    s.next_seq = get_counter(&conn, path).ok().flatten();
    let Ok(mut stmt) =
        conn.prepare("SELECT seq, topic, retain, payload, crc FROM queue ORDER BY seq")
    else {
        return s;
    };
    let Ok(mut rows) = stmt.query([]) else { return s };
    while let Ok(Some(r)) = rows.next() {
        let rec = (|| -> rusqlite::Result<(Record, u32)> {
            Ok((
                Record {
                    seq: r.get::<_, i64>(0)? as u64,
                    topic: r.get(1)?,
                    retain: r.get::<_, i64>(2)? != 0,
                    payload: r.get(3)?,
                },
                r.get::<_, i64>(4)? as u32,
            ))
        })();
        if let Ok((rec, crc)) = rec {
            if rec.checksum() == crc {
                s.records.push(rec);
            }
        }
    }
    if let Some(last) = s.records.last() {
        s.next_seq = Some(s.next_seq.unwrap_or(0).max(last.seq + 1));
    }
    s
}

#[cfg(test)]
mod tests;
