//! The pre-SQLite outbox (`queue.log`, `queue.head`) imported from any bytes:
//! whatever is imported comes back intact, and numbering continues past it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owlet_store::outbox::Outbox;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    // The first 20 bytes are queue.head (offset, next seq, checksum), the rest the log.
    let (head, log) = data.split_at(data.len().min(20));
    std::fs::write(dir.path().join("queue.head"), head).unwrap();
    std::fs::write(dir.path().join("queue.log"), log).unwrap();
    let Ok((mut ob, rec)) = Outbox::open(dir.path(), 64 << 20) else { return };
    assert!(!dir.path().join("queue.log").exists());
    let mut last = None;
    let mut n = 0;
    while let Ok(Some(r)) = ob.front() {
        assert!(last.is_none_or(|l| r.seq > l), "in order");
        last = Some(r.seq);
        ob.ack(r.seq).unwrap();
        n += 1;
    }
    assert_eq!(n, rec.migrated);
    let (next, _) = ob.push("t", false, vec![]);
    assert!(last.is_none_or(|l| next > l), "numbering goes on past the imported");
});
