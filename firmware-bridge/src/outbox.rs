//! The on-disk outbox: results wait here until the broker has acknowledged them.
//!
//! Two files in the outbox folder:
//! - `queue.log`, append-only records `[len u32][crc32 u32][seq u64][retain u8]
//!   [topic_len u16][topic][payload]` (little-endian; len and crc cover from seq on);
//! - `queue.head`, the byte offset of the first unacknowledged record and the next
//!   sequence number, replaced atomically (write + rename) on each acknowledgement.
//!
//! A torn append (power cut, kill) leaves a record whose length or checksum does not
//! match: it and anything after it are cut off at open, the rest is kept. The
//! unacknowledged records are mirrored in memory (the queue is bounded), so sending
//! never reads the disk. When the queue is bounded out, the oldest records go first:
//! on a camera, the newest results matter most.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8; // len + crc
const FIXED: usize = 8 + 1 + 2; // seq + retain + topic_len
/// Rewrite the log once this many acknowledged bytes precede the first pending record.
const COMPACT_AT: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Record {
    fn encoded_len(&self) -> usize {
        HEADER + FIXED + self.topic.len() + self.payload.len()
    }

    fn encode(&self) -> Vec<u8> {
        let body_len = FIXED + self.topic.len() + self.payload.len();
        let mut body = Vec::with_capacity(body_len);
        body.extend_from_slice(&self.seq.to_le_bytes());
        body.push(self.retain as u8);
        body.extend_from_slice(&(self.topic.len() as u16).to_le_bytes());
        body.extend_from_slice(self.topic.as_bytes());
        body.extend_from_slice(&self.payload);
        let mut out = Vec::with_capacity(HEADER + body_len);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// One record from the front of `buf`: the record and its encoded length, or
    /// None when the bytes are torn or corrupt.
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
}

/// What opening an outbox found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records still waiting from an earlier run.
    pub pending: usize,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub cut_bytes: u64,
}

pub struct Outbox {
    dir: PathBuf,
    log: File,
    /// Offset in queue.log of `pending[0]`.
    head: u64,
    /// Length of queue.log.
    end: u64,
    pending: VecDeque<Record>,
    pending_bytes: u64,
    next_seq: u64,
    max_bytes: u64,
    dropped: u64,
}

impl Outbox {
    /// Open (or create) the outbox in `dir`, keeping what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Outbox, Recovered)> {
        fs::create_dir_all(dir)?;
        let (mut head, mut next_seq) = read_head(&dir.join("queue.head"));
        let mut log =
            OpenOptions::new().read(true).append(true).create(true).open(dir.join("queue.log"))?;
        let mut bytes = Vec::new();
        log.seek(SeekFrom::Start(0))?;
        log.read_to_end(&mut bytes)?;
        if head > bytes.len() as u64 {
            // The log was replaced or cut behind our back: trust the log, not the head.
            head = 0;
        }
        let mut pending = VecDeque::new();
        let mut pos = head as usize;
        let mut pending_bytes = 0;
        while pos < bytes.len() {
            match Record::decode(&bytes[pos..]) {
                Some((rec, n)) => {
                    next_seq = next_seq.max(rec.seq + 1);
                    pending_bytes += n as u64;
                    pending.push_back(rec);
                    pos += n;
                }
                None => break,
            }
        }
        let cut_bytes = (bytes.len() - pos) as u64;
        if cut_bytes > 0 {
            log.set_len(pos as u64)?;
        }
        let recovered = Recovered { pending: pending.len(), cut_bytes };
        let mut ob = Outbox {
            dir: dir.to_path_buf(),
            log,
            head,
            end: pos as u64,
            pending,
            pending_bytes,
            next_seq,
            max_bytes,
            dropped: 0,
        };
        if ob.pending.is_empty() && ob.end > 0 {
            ob.reset()?;
        }
        Ok((ob, recovered))
    }

    /// Append a message; returns its sequence number. The oldest records are dropped
    /// when the queue would grow past its bound.
    pub fn push(&mut self, topic: &str, retain: bool, payload: Vec<u8>) -> io::Result<u64> {
        self.push_with(topic, retain, |_| payload)
    }

    /// Like push, with the payload built from the sequence number it gets.
    pub fn push_with(
        &mut self,
        topic: &str,
        retain: bool,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> io::Result<u64> {
        let seq = self.next_seq;
        let rec = Record { seq, topic: topic.to_string(), retain, payload: payload(seq) };
        if rec.topic.len() > u16::MAX as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "topic too long"));
        }
        let bytes = rec.encode();
        let dropped_before = self.dropped;
        while !self.pending.is_empty() && self.pending_bytes + bytes.len() as u64 > self.max_bytes {
            let old = self.pending.pop_front().expect("not empty");
            let n = old.encoded_len() as u64;
            self.head += n;
            self.pending_bytes -= n;
            self.dropped += 1;
        }
        if self.dropped != dropped_before {
            self.write_head()?;
        }
        // No fsync: a write survives a crash of the daemon, not a power cut of the
        // board (fsync per result would wear SD cards).
        self.log.write_all(&bytes)?;
        self.next_seq += 1;
        self.end += bytes.len() as u64;
        self.pending_bytes += bytes.len() as u64;
        self.pending.push_back(rec);
        Ok(seq)
    }

    /// The oldest unacknowledged record.
    pub fn front(&self) -> Option<&Record> {
        self.pending.front()
    }

    /// The broker acknowledged record `seq`: forget it (if it is still the oldest;
    /// it may have been dropped by the bound meanwhile).
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        if self.pending.front().map(|r| r.seq) != Some(seq) {
            return Ok(());
        }
        let rec = self.pending.pop_front().expect("front checked");
        let n = rec.encoded_len() as u64;
        self.head += n;
        self.pending_bytes -= n;
        if self.pending.is_empty() {
            self.reset()
        } else if self.head >= COMPACT_AT {
            self.compact()
        } else {
            self.write_head()
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records dropped by the bound since the outbox was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Nothing pending: empty the log.
    fn reset(&mut self) -> io::Result<()> {
        self.log.set_len(0)?;
        self.head = 0;
        self.end = 0;
        self.write_head()
    }

    /// Rewrite the pending records into a fresh log (write, then rename over).
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.dir.join("queue.log.tmp");
        let mut f = File::create(&tmp)?;
        for r in &self.pending {
            f.write_all(&r.encode())?;
        }
        f.sync_all()?;
        // Mark the head "log restarts at 0" before the rename: a crash in between
        // then re-sends acknowledged records (duplicates, QoS 1 allows them) rather
        // than reading the new log from an offset into the old one.
        self.head = 0;
        self.write_head_raw(u64::MAX)?;
        fs::rename(&tmp, self.dir.join("queue.log"))?;
        self.log = OpenOptions::new().read(true).append(true).open(self.dir.join("queue.log"))?;
        self.end = self.pending_bytes;
        self.write_head()
    }

    fn write_head(&self) -> io::Result<()> {
        self.write_head_raw(self.head)
    }

    fn write_head_raw(&self, head: u64) -> io::Result<()> {
        let tmp = self.dir.join("queue.head.tmp");
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&head.to_le_bytes());
        b.extend_from_slice(&self.next_seq.to_le_bytes());
        b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
        fs::write(&tmp, &b)?;
        fs::rename(&tmp, self.dir.join("queue.head"))
    }
}

/// (head offset, next seq) from queue.head; (0, 0) if missing or corrupt.
fn read_head(path: &Path) -> (u64, u64) {
    let Ok(b) = fs::read(path) else { return (0, 0) };
    if b.len() != 20 || crc32fast::hash(&b[..16]).to_le_bytes() != b[16..20] {
        return (0, 0);
    }
    let head = u64::from_le_bytes(b[0..8].try_into().unwrap());
    let seq = u64::from_le_bytes(b[8..16].try_into().unwrap());
    // u64::MAX marks a compaction in progress: the log on disk starts at 0.
    (if head == u64::MAX { 0 } else { head }, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("owlet-outbox-").tempdir().unwrap()
    }

    #[test]
    fn records_come_back_in_order_across_reopen_and_acks_persist() {
        let d = dir();
        {
            let (mut ob, rec) = Outbox::open(d.path(), 1 << 20).unwrap();
            assert_eq!(rec, Recovered::default());
            for i in 0..5 {
                assert_eq!(ob.push("t/a", i == 0, format!("m{i}").into_bytes()).unwrap(), i);
            }
            ob.ack(0).unwrap();
            ob.ack(3).unwrap(); // not the oldest: ignored
        }
        let (mut ob, rec) = Outbox::open(d.path(), 1 << 20).unwrap();
        assert_eq!(rec.pending, 4);
        let got: Vec<_> = std::iter::from_fn(|| {
            let r = ob.front().cloned()?;
            ob.ack(r.seq).unwrap();
            Some(String::from_utf8(r.payload).unwrap())
        })
        .collect();
        assert_eq!(got, ["m1", "m2", "m3", "m4"]);
        // Sequence numbers keep counting after the queue emptied and reopened.
        drop(ob);
        let (mut ob, _) = Outbox::open(d.path(), 1 << 20).unwrap();
        assert_eq!(ob.push("t", false, vec![]).unwrap(), 5);
    }

    #[test]
    fn a_torn_tail_loses_only_the_last_record_wherever_the_cut_falls() {
        let d = dir();
        let mut sizes = Vec::new();
        {
            let (mut ob, _) = Outbox::open(d.path(), 1 << 20).unwrap();
            for i in 0..6u64 {
                ob.push("owlet/dev/cam/labels", false, vec![i as u8; 10 + i as usize * 7]).unwrap();
                sizes.push(fs::metadata(d.path().join("queue.log")).unwrap().len());
            }
        }
        let full = fs::read(d.path().join("queue.log")).unwrap();
        for cut in 0..full.len() {
            let c = dir();
            fs::write(c.path().join("queue.log"), &full[..cut]).unwrap();
            let (ob, rec) = Outbox::open(c.path(), 1 << 20).unwrap();
            let whole = sizes.iter().filter(|&&s| s as usize <= cut).count();
            assert_eq!(ob.len(), whole, "cut at {cut}");
            assert_eq!(
                rec.cut_bytes as usize,
                cut - if whole == 0 { 0 } else { sizes[whole - 1] as usize }
            );
            for (i, r) in ob.pending.iter().enumerate() {
                assert_eq!(r.payload, vec![i as u8; 10 + i * 7]);
            }
        }
    }

    #[test]
    fn a_flipped_byte_is_caught_by_the_checksum() {
        let d = dir();
        {
            let (mut ob, _) = Outbox::open(d.path(), 1 << 20).unwrap();
            for _ in 0..3 {
                ob.push("t", false, b"payload".to_vec()).unwrap();
            }
        }
        let p = d.path().join("queue.log");
        let mut b = fs::read(&p).unwrap();
        let one = b.len() / 3;
        b[one + 20] ^= 0x40;
        fs::write(&p, &b).unwrap();
        let (ob, rec) = Outbox::open(d.path(), 1 << 20).unwrap();
        assert_eq!(ob.len(), 1);
        assert_eq!(rec.cut_bytes as usize, 2 * one);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_them() {
        let d = dir();
        let (mut ob, _) = Outbox::open(d.path(), 200).unwrap();
        for i in 0..10u8 {
            ob.push("t", false, vec![i; 40]).unwrap();
        }
        assert!(ob.pending_bytes <= 200);
        assert_eq!(ob.dropped() as usize + ob.len(), 10);
        assert_eq!(ob.pending.back().unwrap().payload[0], 9);
        let first = ob.front().unwrap().seq;
        drop(ob);
        let (ob, _) = Outbox::open(d.path(), 200).unwrap();
        assert_eq!(ob.front().unwrap().seq, first, "the dropped ones stay dropped after a restart");
    }

    #[test]
    fn compaction_keeps_pending_records() {
        let d = dir();
        let (mut ob, _) = Outbox::open(d.path(), 64 << 20).unwrap();
        let big = vec![7u8; 100_000];
        for _ in 0..30 {
            ob.push("t", false, big.clone()).unwrap();
        }
        for s in 0..20 {
            ob.ack(s).unwrap();
        }
        // Acknowledged bytes are reclaimed once they pass COMPACT_AT.
        let len = fs::metadata(d.path().join("queue.log")).unwrap().len();
        assert!(len <= ob.pending_bytes + COMPACT_AT, "{len}");
        assert!(len < 30 * 100_000);
        drop(ob);
        let (ob, _) = Outbox::open(d.path(), 64 << 20).unwrap();
        assert_eq!(ob.len(), 10);
        assert_eq!(ob.front().unwrap().seq, 20);
    }
}
