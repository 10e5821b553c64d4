//! The outbox's format before SQLite (owlet 0.1's `queue.log` and `queue.head`),
//! read once so that an upgrade delivers what the old bridge had queued.
//!
//! `queue.log`: records `[len u32][crc32 u32][seq u64][retain u8][topic_len u16]
//! [topic][payload]` (little-endian; len and crc cover from seq on). `queue.head`:
//! `[offset u64][next_seq u64][crc32 u32]`, the offset of the first record not yet
//! acknowledged (u64::MAX: "the log restarts at 0", a compaction in progress).
//!
//! Unlike the old reader, a damaged record does not end the reading: the reader
//! looks for the next record whose checksum holds and goes on from there.

use std::path::Path;

use crate::outbox::Record;

const HEADER: usize = 8; // len + crc
const FIXED: usize = 8 + 1 + 2; // seq + retain + topic_len

/// What the old files held.
#[derive(Debug, Default)]
pub(crate) struct LegacyQueue {
    pub records: Vec<Record>,
    /// The next sequence number the old outbox would have given.
    pub next_seq: u64,
    /// Bytes that were no record (damaged, or a torn last write).
    pub unreadable_bytes: u64,
}

/// Read `queue.log` and `queue.head` in `dir`; None when there is no `queue.log`.
pub(crate) fn read(dir: &Path) -> std::io::Result<Option<LegacyQueue>> {
    let log = dir.join("queue.log");
    if !log.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&log)?;
    let (head, next_seq) = read_head(&dir.join("queue.head"));
    let start = if head > bytes.len() as u64 { 0 } else { head as usize };
    let mut q = LegacyQueue { next_seq, ..Default::default() };
    let mut pos = start;
    while pos < bytes.len() {
        match decode(&bytes[pos..]) {
            Some((rec, n)) => {
                q.next_seq = q.next_seq.max(rec.seq.saturating_add(1));
                q.records.push(rec);
                pos += n;
            }
            None => {
                q.unreadable_bytes += 1;
                pos += 1;
            }
        }
    }
    Ok(Some(q))
}

/// Remove the old files once their records are safely in the new store.
pub(crate) fn remove(dir: &Path) -> std::io::Result<()> {
    for name in ["queue.head", "queue.head.tmp", "queue.log.tmp", "queue.log"] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn read_head(path: &Path) -> (u64, u64) {
    let Ok(b) = std::fs::read(path) else { return (0, 0) };
    if b.len() != 20 || crc32fast::hash(&b[..16]).to_le_bytes() != b[16..20] {
        return (0, 0);
    }
    let head = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    (if head == u64::MAX { 0 } else { head }, seq)
}

/// One record from the front of `buf` and its encoded length, or None.
fn decode(buf: &[u8]) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let body = buf.get(HEADER..HEADER.checked_add(len)?)?;
    if len < FIXED || crc32fast::hash(body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let retain = body[8] != 0;
    let tlen = u16::from_le_bytes(body[9..11].try_into().ok()?) as usize;
    let topic = std::str::from_utf8(body.get(FIXED..FIXED + tlen)?).ok()?.to_string();
    let payload = body[FIXED + tlen..].to_vec();
    Some((Record { seq, topic, retain, payload }, HEADER + len))
}

/// The old writer, for tests that make old files.
#[cfg(test)]
pub(crate) fn encode(r: &Record) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&r.seq.to_le_bytes());
    body.push(r.retain as u8);
    body.extend_from_slice(&(r.topic.len() as u16).to_le_bytes());
    body.extend_from_slice(r.topic.as_bytes());
    body.extend_from_slice(&r.payload);
    let mut out = Vec::new();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
pub(crate) fn encode_head(offset: u64, next_seq: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&next_seq.to_le_bytes());
    b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
    b
}
