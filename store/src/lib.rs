//! owlet-store: the state owlet keeps on a board's disk, on SQLite.
//!
//! - [`outbox`]: results waiting for the MQTT broker's acknowledgement, bounded in
//!   bytes on disk, every record checksummed.
//! - [`history`]: every analysed frame (labels, caption, embedding, thumbnail),
//!   for search and for people to look back at, bounded by age and bytes.
//!
//! SQLite checks its own structure, not the contents of a record: each record here
//! carries a CRC-32 of its fields, checked whenever it is read, so a flipped byte in
//! one record is found, reported and set aside without touching its neighbours. A
//! file SQLite cannot read at all is renamed aside (never truncated) and reported.
//!
//! This crate links neither tract nor the models: the fuzzers build it alone.

pub mod history;
mod legacy_queue;
pub mod outbox;

use std::path::{Path, PathBuf};

/// What went wrong with a store, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite { path: path.to_path_buf(), source }
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
/// SQLite's quick_check on a file just opened, before anything writes to it (so
/// that a damaged file is set aside as it was found): the report, on one line,
/// when the file is damaged.
pub(crate) fn quick_check(conn: &rusqlite::Connection) -> rusqlite::Result<Option<String>> {
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    Ok((check != "ok").then(|| format!("SQLite's quick_check: {}", check_report(&check))))
}

/// SQLite's check report as one line of a log (it comes as several), cut short.
pub(crate) fn check_report(check: &str) -> String {
    let line =
        check.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Rename `path` to `<name>.damaged-<ms>` (and SQLite's `-wal` and `-shm` beside
/// it to `<name>.damaged-<ms>-wal`, so that SQLite still finds them together),
/// returning the new name of the main file.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf> {
    let to = PathBuf::from(format!("{}.damaged-{}", path.display(), unix_ms()));
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let side_to = PathBuf::from(format!("{}{suffix}", to.display()));
            std::fs::rename(&side, side_to).map_err(io_err(&side))?;
        }
    }
    std::fs::rename(path, &to).map_err(io_err(path))?;
    Ok(to)
}
