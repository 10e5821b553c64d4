//! The frame history under the real bridge: SIGKILLed again and again while its
//! camera writes frames into history.db, the file stays sound and keeps every
//! frame a reader has once seen committed.

use std::collections::BTreeMap;
use std::time::Duration;

use owlet_e2e::broker::*;
use owlet_e2e::*;
use owlet_store::history::{Filter, History, NewFrame, Retention};

/// Issue 23: the bridge killed with SIGKILL 50 times while it writes (an
/// analysis every 50 ms, the shortest interval allowed, of an ffmpeg test
/// pattern; int8 embeddings, thumbnails and whole frames kept). After each kill: SQLite's integrity_check is "ok", the file was not set
/// aside, and every frame read after an earlier kill is still there, whole (its
/// row checksum holds) and unchanged.
#[test]
fn the_bridge_killed_50_times_while_writing_its_history_loses_no_committed_frame() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-history-kill-").tempdir().unwrap();
    let cmd = toml_list(&ffmpeg_mjpeg("testsrc=size=320x240", 50, None));
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"car\", \"bird\", \"package\"]\n\
             [index]\nprecision = \"int8\"\nthumbnail_px = 96\nkeep_frames = true\n\
             [[cameras]]\nname = \"pattern\"\nsource = {{ kind = \"process\", command = {cmd} }}\n\
             triggers = {{ interval_s = 0.05 }}\n",
            dir.path().join("state").display(),
            demo_clip_bundle(),
        ),
    )
    .unwrap();
    let db = dir.path().join("state/history.db");
    let mut seen: BTreeMap<i64, NewFrame> = BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..50 {
        let mut d = Daemon::start(&cfg);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Kill after 1 to 6 results and up to 50 ms more: mid-insert, often.
        let results = 1 + (rng % 6) as usize;
        d.wait_printed("results", Duration::from_secs(60), |m| {
            m.iter().filter(|m| m.topic.ends_with("/labels")).count() >= results
        });
        std::thread::sleep(Duration::from_millis(rng % 50));
        d.child.kill().unwrap();
        d.child.wait().unwrap();

        let (h, opened) =
            History::open(&db, Retention { max_bytes: 1 << 30, max_age: None }).unwrap();
        assert_eq!(opened.set_aside, None, "round {round}: {:?}", opened.set_aside_why);
        assert_eq!(h.integrity_check().unwrap(), "ok", "round {round}");
        for (id, frame) in &seen {
            let now = h.get(*id).unwrap_or_else(|e| panic!("round {round}: frame {id}: {e}"));
            let now = now.unwrap_or_else(|| panic!("round {round}: frame {id} was lost"));
            assert_eq!(&now.frame, frame, "round {round}: frame {id} changed");
        }
        let ids = h.matching_ids(&Filter::default()).unwrap();
        assert!(ids.len() >= seen.len(), "round {round}");
        for id in ids {
            let f = h.get(id).unwrap().unwrap_or_else(|| panic!("round {round}: {id} listed"));
            assert!(f.frame.thumbnail.is_some() && f.frame.frame.is_some(), "round {round}: {id}");
            seen.insert(id, f.frame);
        }
    }
    // Every round's results were kept (each is printed only after its frame is
    // analysed; the insert follows), so the history grew through the kills.
    eprintln!("history under SIGKILL: {} frames kept over 50 runs", seen.len());
    assert!(seen.len() >= 25, "{} frames kept over 50 runs", seen.len());
}

/// A bridge over the demo frames (a folder read once: it stops when they are
/// analysed) keeping its history in `state/history.db`.
fn still_frames_bridge(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"car\", \"bird\"]\n[index]\n\
             [[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\n",
            dir.join("state").display(),
            demo_clip_bundle(),
            repo().join("models/scenes/demo").display(),
        ),
    )
    .unwrap();
    cfg
}

fn frames_in(db: &std::path::Path) -> u64 {
    let (h, opened) = History::open(db, Retention { max_bytes: 1 << 30, max_age: None }).unwrap();
    assert_eq!(opened.set_aside, None);
    assert_eq!(h.integrity_check().unwrap(), "ok");
    h.count().unwrap()
}

/// A history file that is not SQLite, then one whose b-tree was overwritten: the
/// bridge says which file could not be read and where it kept it (byte for byte),
/// starts a new one, and analyses and keeps every frame.
#[test]
fn a_history_that_is_not_sqlite_or_is_corrupted_is_kept_aside_and_the_bridge_goes_on() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-history-bad-").tempdir().unwrap();
    let cfg = still_frames_bridge(dir.path());
    let db = dir.path().join("state/history.db");
    let frames = std::fs::read_dir(repo().join("models/scenes/demo"))
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "jpg"))
        .count() as u64;
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();

    let shopping_list = b"not a database: eggs, milk, a new SD card".to_vec();
    let mut damaged = None;
    for (case, bytes) in [("not SQLite", shopping_list), ("corrupted", vec![])] {
        let original = if bytes.is_empty() {
            // The last run's good file, its first table page overwritten.
            let mut b = std::fs::read(&db).unwrap();
            let page = u16::from_be_bytes([b[16], b[17]]) as usize;
            b[page..2 * page].fill(0xA5);
            b
        } else {
            bytes
        };
        std::fs::write(&db, &original).unwrap();
        let mut d = Daemon::start(&cfg);
        assert!(d.wait(Duration::from_secs(120)).success(), "{case}: {}", d.log());
        let log = d.log();
        let line = log
            .lines()
            .find(|l| l.contains("could not be read"))
            .unwrap_or_else(|| panic!("{case}: nothing said about the bad file:\n{log}"));
        assert!(line.contains(&db.display().to_string()), "{case}: {line}");
        let aside = line.split("kept as ").nth(1).and_then(|a| a.split(" and").next());
        let aside = aside.unwrap_or_else(|| panic!("{case}: where was it kept? {line}"));
        let kept = std::fs::read(aside).unwrap();
        let differ = kept.iter().zip(&original).position(|(a, b)| a != b);
        assert!(
            kept.len() == original.len() && differ.is_none(),
            "{case}: the bad file is not kept as it was: {} bytes, {} before; first difference at {differ:?}",
            kept.len(),
            original.len()
        );
        assert_ne!(Some(aside.to_string()), damaged, "{case}: the earlier one is not overwritten");
        damaged = Some(aside.to_string());
        assert_eq!(frames_in(&db), frames, "{case}: every frame kept in the new file");
        assert_eq!(d.printed_on("/labels").len() as u64, frames, "{case}");
    }
}
