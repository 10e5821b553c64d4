//! The outbox opened on any file: refused or set aside with a reason, never a
//! panic, and afterwards it works (push, front, ack).
#![no_main]

use libfuzzer_sys::fuzz_target;
use owlet_store::outbox::Outbox;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outbox.db"), data).unwrap();
    let Ok((mut ob, _)) = Outbox::open(dir.path(), 1 << 20) else { return };
    let (seq, _) = ob.push("t", false, b"after".to_vec());
    let mut seen = 0;
    while let Ok(Some(r)) = ob.front() {
        assert!(r.seq <= seq);
        ob.ack(r.seq).unwrap();
        seen += 1;
        assert!(seen < 100_000);
    }
    assert!(ob.is_empty());
});
