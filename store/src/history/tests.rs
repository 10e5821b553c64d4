use super::*;

fn retention(max_bytes: u64) -> Retention {
    Retention { max_bytes, max_age: None }
}

fn frame(i: u64, camera: &str) -> NewFrame {
    NewFrame {
        time_ms: 1_700_000_000_000 + i * 1000,
        camera: camera.into(),
        trigger: "interval".into(),
        source: None,
        caption: Some(format!("a parcel {i} at the door")),
        labels: vec![("package".into(), 0.25 + (i % 4) as f32 * 0.2), ("person".into(), 0.1)],
        embedding: Some((0..16).map(|b| (b + i) as u8).collect()),
        thumbnail: Some(vec![i as u8; 1000]),
        frame: None,
    }
}

fn space() -> Space {
    Space { model: "clip-test".into(), dim: 12, precision: "i8".into(), vector_bytes: 16 }
}

fn open(path: &Path, max_bytes: u64) -> History {
    History::open(path, retention(max_bytes)).unwrap().0
}

#[test]
fn a_frame_comes_back_as_it_was_stored_with_its_labels() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let s = h.space(&space()).unwrap();
    assert_eq!(h.space(&space()).unwrap(), s, "the same space twice is one space");
    let ids: Vec<i64> = (0..5).map(|i| h.insert(Some(s), &frame(i, "door")).unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]));
    drop(h);
    let (h, opened) = History::open(&path, retention(64 << 20)).unwrap();
    assert_eq!((opened.frames, opened.migrated_from), (5, None));
    let got = h.get(ids[3]).unwrap().unwrap();
    assert_eq!(got.frame, frame(3, "door"));
    assert!(h.get(9999).unwrap().is_none());
    let mut seen = Vec::new();
    h.embeddings(s, |id, v| seen.push((id, v.to_vec()))).unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[2], (ids[2], frame(2, "door").embedding.unwrap()));
}

#[test]
fn queries_filter_by_camera_time_label_and_caption_newest_first() {
    let d = tempfile::tempdir().unwrap();
    let mut h = open(&d.path().join("history.db"), 64 << 20);
    let s = h.space(&space()).unwrap();
    for i in 0..40 {
        h.insert(Some(s), &frame(i, if i % 2 == 0 { "door" } else { "shelf" })).unwrap();
    }
    let q = |f: Filter| h.query(&f).unwrap();
    let door = q(Filter { camera: Some("door".into()), ..Filter::default() });
    assert_eq!(door.len(), 20);
    assert!(door.iter().all(|f| f.frame.camera == "door"));
    assert!(door.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(door[0].frame.labels.len(), 2, "labels come with the rows");
    assert!(door[0].frame.thumbnail.is_none(), "no images in a timeline query");

    let t0 = frame(10, "").time_ms;
    let window = q(Filter { since_ms: Some(t0), until_ms: Some(t0 + 4000), ..Filter::default() });
    assert_eq!(window.len(), 5);
    // package scores 0.25, 0.45, 0.65, 0.85 in turn: 0.8 or more is one in four.
    let sure = q(Filter { label: Some("package".into()), min_score: 0.8, ..Filter::default() });
    assert_eq!(sure.len(), 10);
    assert!(sure.iter().all(|f| f.frame.labels[0].1 >= 0.8));
    let words = q(Filter { caption_contains: Some("PARCEL 17 ".into()), ..Filter::default() });
    assert_eq!(words.len(), 1);
    // The user's % and _ are characters, not patterns.
    assert!(q(Filter { caption_contains: Some("%".into()), ..Filter::default() }).is_empty());
    let page1 = q(Filter { limit: 15, ..Filter::default() });
    let page2 = q(Filter { limit: 15, before_id: Some(page1[14].id), ..Filter::default() });
    assert_eq!((page1.len(), page2.len()), (15, 15));
    assert_eq!(page2[0].id, page1[14].id - 1);
}

#[test]
fn an_embedding_must_fit_its_space() {
    let d = tempfile::tempdir().unwrap();
    let mut h = open(&d.path().join("history.db"), 64 << 20);
    let s = h.space(&space()).unwrap();
    let mut f = frame(0, "door");
    f.embedding = Some(vec![0; 15]);
    let e = h.insert(Some(s), &f).unwrap_err().to_string();
    assert!(e.contains("15-byte embedding") && e.contains("16-byte"), "{e}");
    assert!(h.insert(None, &frame(0, "door")).is_err(), "an embedding without a space");
    assert!(h.insert(Some(s + 7), &frame(0, "door")).is_err(), "an unknown space");
    let e = h.space(&Space { vector_bytes: 48, ..space() }).unwrap_err().to_string();
    assert!(e.contains("16-byte vectors"), "{e}");
    assert_eq!(h.count().unwrap(), 0);
}

#[test]
fn retention_keeps_the_files_under_their_limit_over_ten_thousand_frames() {
    let d = tempfile::tempdir().unwrap();
    let limit = 2 << 20;
    let mut h = open(&d.path().join("history.db"), limit);
    let s = h.space(&space()).unwrap();
    let mut last = 0;
    for i in 0..10_000 {
        last = h.insert(Some(s), &frame(i, "door")).unwrap();
        assert!(h.disk_bytes() <= limit, "frame {i}: {} bytes on disk", h.disk_bytes());
    }
    let n = h.count().unwrap();
    assert!(n > 500 && n < 2100, "{n} frames of about 1 KB kept in 2 MiB");
    // The newest stay, the oldest went.
    assert!(h.get(last).unwrap().is_some());
    assert!(h.get(1).unwrap().is_none());
    assert_eq!(h.integrity_check().unwrap(), "ok");
}

#[test]
fn retention_by_age_removes_old_frames_with_their_labels() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let now = unix_ms();
    for (i, age_h) in [(0, 50), (1, 30), (2, 1)] {
        h.insert(
            None,
            &NewFrame { time_ms: now - age_h * 3_600_000, embedding: None, ..frame(i, "door") },
        )
        .unwrap();
    }
    drop(h);
    let day = Retention { max_bytes: 64 << 20, max_age: Some(Duration::from_secs(86_400)) };
    let (h, opened) = History::open(&path, day).unwrap();
    assert_eq!((opened.frames, h.count().unwrap()), (3, 1));
    let labels: i64 = h.conn.query_row("SELECT count(*) FROM labels", [], |r| r.get(0)).unwrap();
    assert_eq!(labels, 2, "the labels of removed frames went with them");
}

#[test]
fn a_flipped_byte_in_a_frame_is_found_and_its_neighbours_are_read() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let s = h.space(&space()).unwrap();
    let ids: Vec<i64> = (0..10).map(|i| h.insert(Some(s), &frame(i, "door")).unwrap()).collect();
    drop(h);
    // The thumbnail of frame 5 is 1000 bytes of 5: change one of them in the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(1000).position(|w| w.iter().all(|&b| b == 5)).unwrap();
    bytes[at + 500] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let h = open(&path, 64 << 20);
    let e = h.get(ids[5]).unwrap_err().to_string();
    assert!(e.contains(&format!("frame {} fails its checksum", ids[5])), "{e}");
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(h.get(*id).unwrap().unwrap().frame, frame(i as u64, "door"));
    }
}

#[test]
fn a_file_that_is_not_sqlite_is_set_aside_and_a_new_history_started() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    std::fs::write(&path, b"this is not a database, it is a shopping list: eggs, milk").unwrap();
    let (mut h, opened) = History::open(&path, retention(64 << 20)).unwrap();
    let aside = opened.set_aside.expect("set aside");
    assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not a database"));
    assert!(opened.set_aside_why.unwrap().contains("not a database"));
    assert_eq!(opened.migrated_from, Some(0), "a new file");
    h.insert(None, &NewFrame { embedding: None, ..frame(1, "door") }).unwrap();
    assert_eq!(h.count().unwrap(), 1);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    drop(open(&path, 64 << 20));
    let c = Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    let e = History::open(&path, retention(64 << 20)).err().unwrap().to_string();
    assert!(e.contains("schema version 99 is newer"), "{e}");
    assert!(path.exists() && std::fs::read_dir(d.path()).unwrap().count() <= 3);
}

/// The writer that `committed_frames_survive_sigkill` kills: it stores frames as
/// fast as it can and prints each id once `insert` has returned. A no-op unless
/// that test started it.
#[test]
fn history_writer_child() {
    let Some(path) = std::env::var_os("OWLET_HISTORY_WRITER") else { return };
    let mut h = open(Path::new(&path), 4 << 20);
    let s = h.space(&space()).unwrap();
    use std::io::Write;
    let mut out = std::io::stdout();
    for i in 0.. {
        let id = h.insert(Some(s), &frame(i, "door")).unwrap();
        writeln!(out, "committed {id} {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Issue 23: the writer SIGKILLed 50 times mid-write. Each time the file passes
/// SQLite's integrity_check, and every frame whose insert had returned is there,
/// whole (its checksum holds).
#[test]
fn committed_frames_survive_sigkill() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut committed: Vec<(i64, u64)> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..50 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "history::tests::history_writer_child", "--nocapture"])
            .env("OWLET_HISTORY_WRITER", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Kill after a random number of commits (1..=40), mid-way through the next.
        let lines = 1 + rng % 40;
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut seen = 0;
        while seen < lines && reader.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("committed ") {
                let (id, i) = rest.split_once(' ').unwrap();
                committed.push((id.parse().unwrap(), i.parse().unwrap()));
                seen += 1;
            }
            line.clear();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (h, opened) = History::open(&path, retention(4 << 20)).unwrap();
        assert_eq!(opened.set_aside, None, "round {round}: the file was set aside");
        assert_eq!(h.integrity_check().unwrap(), "ok", "round {round}");
        for &(id, i) in &committed {
            let got =
                h.get(id).unwrap().unwrap_or_else(|| panic!("round {round}: frame {id} lost"));
            assert_eq!(got.frame, frame(i, "door"), "round {round}: frame {id}");
        }
    }
    assert!(committed.len() >= 50);
}

#[test]
fn matching_ids_are_every_frame_a_filter_accepts_lowest_first() {
    let d = tempfile::tempdir().unwrap();
    let mut h = open(&d.path().join("history.db"), 64 << 20);
    let s = h.space(&space()).unwrap();
    let ids: Vec<i64> = (0..300)
        .map(|i| h.insert(Some(s), &frame(i, if i % 3 == 0 { "door" } else { "shelf" })).unwrap())
        .collect();
    let door = h
        .matching_ids(&Filter { camera: Some("door".into()), limit: 5, ..Filter::default() })
        .unwrap();
    // No limit, no page: all 100 of them.
    assert_eq!(door, ids.iter().copied().step_by(3).collect::<Vec<_>>());
    let sure = h
        .matching_ids(&Filter {
            label: Some("package".into()),
            min_score: 0.8,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(sure, ids.iter().copied().skip(3).step_by(4).collect::<Vec<_>>());
    let one = h.summary(ids[7]).unwrap().unwrap();
    assert_eq!((one.frame.camera.as_str(), one.frame.thumbnail.as_ref()), ("shelf", None));
    assert_eq!(one.frame.labels, frame(7, "shelf").labels);
    assert!(h.summary(-1).unwrap().is_none());
}

#[test]
fn an_import_is_all_or_nothing_and_remembered_with_its_frames() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let s = h.space(&space()).unwrap();
    let mut frames: Vec<NewFrame> = (0..20).map(|i| frame(i, "door")).collect();
    // One bad embedding refuses the whole batch: nothing stored, no import recorded.
    frames[13].embedding = Some(vec![0; 3]);
    let e = h.insert_batch(Some(s), &frames, Some("/old/index")).unwrap_err().to_string();
    assert!(e.contains("3-byte embedding"), "{e}");
    assert_eq!((h.count().unwrap(), h.imported("/old/index").unwrap()), (0, false));
    frames[13] = frame(13, "door");
    let ids = h.insert_batch(Some(s), &frames, Some("/old/index")).unwrap();
    assert_eq!(ids.len(), 20);
    drop(h);
    let h = open(&path, 64 << 20);
    assert!(h.imported("/old/index").unwrap());
    assert!(!h.imported("/another").unwrap());
    assert_eq!(h.spaces().unwrap(), vec![(s, space(), 20)]);
}

#[test]
fn a_version_1_file_is_migrated_keeping_its_frames() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    {
        // A file as the first schema left it.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!("BEGIN; {} PRAGMA user_version = 1; COMMIT;", MIGRATIONS[0]))
            .unwrap();
        c.execute(
            "INSERT INTO frames (time_ms, camera, trigger, crc) VALUES (5, 'door', 'interval', 0)",
            [],
        )
        .unwrap();
    }
    let (h, opened) = History::open(&path, retention(64 << 20)).unwrap();
    assert_eq!((opened.frames, opened.migrated_from), (1, Some(1)));
    assert!(!h.imported("x").unwrap(), "the imports table exists");
}

#[test]
fn a_damage_report_is_one_line_and_short() {
    let report = "*** in database main ***\nPage 2: btree page\n\nPage 3: never used";
    assert_eq!(
        crate::check_report(report),
        "*** in database main ***; Page 2: btree page; Page 3: never used"
    );
    let long = "x\n".repeat(500);
    assert_eq!(crate::check_report(&long).chars().count(), 301);
}

/// Flip one byte inside a stored vector, as a bad SD card sector would: SQLite's
/// pages stay consistent, so only the vector's own checksum can see it.
fn flip_embedding_byte(path: &Path, id: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut e: Vec<u8> =
        c.query_row("SELECT embedding FROM frames WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    e[3] ^= 0x10;
    c.execute("UPDATE frames SET embedding = ?2 WHERE id = ?1", rusqlite::params![id, e]).unwrap();
}

#[test]
fn a_vector_that_fails_its_checksum_is_reported_and_not_handed_on() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let s = h.space(&space()).unwrap();
    let ids: Vec<i64> = (0..6).map(|i| h.insert(Some(s), &frame(i, "door")).unwrap()).collect();
    drop(h);
    flip_embedding_byte(&path, ids[4]);
    let h = open(&path, 64 << 20);
    let mut seen = Vec::new();
    let read = h.embeddings(s, |id, _| seen.push(id)).unwrap();
    assert_eq!(read, VectorsRead { read: 5, damaged: vec![ids[4]] });
    assert!(!seen.contains(&ids[4]));
    assert!(h.get(ids[4]).is_err(), "the whole row fails its checksum too");
}

/// A version 2 file (no per-vector checksums): migrating gives every vector whose
/// row checksum holds its checksum, and a damaged row -1, never searched.
#[test]
fn migrating_a_version_2_file_checks_each_row_before_trusting_its_vector() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut h = open(&path, 64 << 20);
    let s = h.space(&space()).unwrap();
    let ids: Vec<i64> = (0..4).map(|i| h.insert(Some(s), &frame(i, "shelf")).unwrap()).collect();
    drop(h);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("ALTER TABLE frames DROP COLUMN embedding_crc; PRAGMA user_version = 2;")
            .unwrap();
    }
    flip_embedding_byte(&path, ids[1]);
    let (h, opened) = History::open(&path, retention(64 << 20)).unwrap();
    assert_eq!(opened.migrated_from, Some(2));
    let mut seen = Vec::new();
    let read = h.embeddings(s, |id, v| seen.push((id, v.to_vec()))).unwrap();
    assert_eq!(read.damaged, vec![ids[1]]);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], (ids[3], frame(3, "shelf").embedding.unwrap()));
    assert_eq!(h.integrity_check().unwrap(), "ok");
}
