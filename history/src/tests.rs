use super::*;
use crate::old_index::{Filter as IndexFilter, Meta};
use rand::{Rng, SeedableRng};

fn unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn info(precision: Precision) -> IndexInfo {
    IndexInfo { model: "clip-test".into(), dim: 24, precision }
}

fn unlimited() -> Retention {
    Retention { max_bytes: u64::MAX, max_age: None }
}

/// An index folder as an older owlet wrote it: 300 entries on two cameras.
fn legacy_index(dir: &Path, precision: Precision, rng: &mut impl Rng) -> Vec<Vec<f32>> {
    let (mut ix, _) = Index::open_or_create(dir, &info(precision)).unwrap();
    (0..300)
        .map(|i| {
            let v = unit(rng, 24);
            let meta = Meta {
                source: format!("frame-{i}.jpg"),
                camera: Some(if i % 3 == 0 { "door" } else { "shelf" }.into()),
                time_ms: Some(1_000 + i),
                caption: (i % 2 == 0).then(|| format!("caption {i}")),
            };
            ix.add(&v, meta).unwrap();
            v
        })
        .collect()
}

#[test]
fn an_old_index_is_imported_once_and_ranks_exactly_as_it_did() {
    for precision in [Precision::F32, Precision::F16, Precision::I8] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("index");
        legacy_index(&old, precision, &mut rng);
        let (ix, _) = Index::open(&old).unwrap();
        let db = d.path().join("history.db");
        // Asked for f32, the history keeps the old index's precision.
        let (h, opening) =
            FrameHistory::open(&db, unlimited(), &info(Precision::F32), Some(&old)).unwrap();
        assert_eq!(h.info().precision, precision);
        assert_eq!(opening.imported.as_ref().map(|i| i.frames), Some(300));
        assert_eq!(h.len(), 300);
        assert!(old.join("entries.log.migrated").exists() && !old.join("entries.log").exists());
        for camera in [None, Some("door".to_string())] {
            for _ in 0..10 {
                let q = unit(&mut rng, 24);
                let want = ix
                    .search(&q, 7, &IndexFilter { camera: camera.clone(), ..Default::default() })
                    .unwrap();
                let got = h
                    .search(&q, 7, &Filter { camera: camera.clone(), ..Filter::default() })
                    .unwrap();
                assert_eq!(got.len(), 7);
                for (g, w) in got.iter().zip(&want) {
                    let m = ix.meta(w.entry);
                    assert_eq!(g.frame.source.as_deref(), Some(m.source.as_str()), "{precision:?}");
                    assert_eq!(g.score, w.score, "{precision:?}: the same bytes, the same score");
                    assert_eq!(Some(&g.frame.camera), m.camera.as_ref());
                    assert_eq!(g.frame.caption, m.caption);
                    assert_eq!(Some(g.frame.time_ms), m.time_ms);
                }
            }
        }
        drop(h);
        // The import was recorded with its frames: restoring the old files (a crash
        // between the commit and the renames) does not import them twice.
        for f in ["entries.log", "index.json"] {
            std::fs::rename(old.join(format!("{f}.migrated")), old.join(f)).unwrap();
        }
        let (h, opening) =
            FrameHistory::open(&db, unlimited(), &info(precision), Some(&old)).unwrap();
        assert!(opening.imported.is_none(), "{opening:?}");
        assert_eq!((h.len(), h.store().count().unwrap()), (300, 300));
        assert!(!old.join("entries.log").exists(), "renamed on this open");
    }
}

#[test]
fn a_search_narrowed_by_label_and_caption_scores_only_the_frames_that_pass() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let d = tempfile::tempdir().unwrap();
    let (mut h, _) =
        FrameHistory::open(&d.path().join("history.db"), unlimited(), &info(Precision::I8), None)
            .unwrap();
    let vectors: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut rng, 24)).collect();
    let frames = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = NewFrame {
                time_ms: i as u64,
                camera: "door".into(),
                trigger: "interval".into(),
                caption: Some(
                    if i % 5 == 0 { "a parcel at the door" } else { "an empty porch" }.into(),
                ),
                labels: vec![("package".into(), if i % 4 == 0 { 0.9 } else { 0.1 })],
                ..NewFrame::default()
            };
            (f, Some(v.clone()))
        })
        .collect();
    let ids = h.add(frames).unwrap();
    // "More like this": a frame's own stored vector finds it first.
    let like = h.vector_of(ids[40]).unwrap();
    assert_eq!(h.search(&like, 1, &Filter::default()).unwrap()[0].id, ids[40]);
    assert!(h.vector_of(-5).is_none());
    // Querying with frame 40's own vector: it passes both filters and comes first.
    let q = &vectors[40];
    let parcels = h
        .search(q, 100, &Filter { caption_contains: Some("PARCEL".into()), ..Filter::default() })
        .unwrap();
    assert_eq!(parcels.len(), 40);
    assert_eq!(parcels[0].id, ids[40]);
    assert!(parcels.iter().all(|f| f.frame.caption.as_deref() == Some("a parcel at the door")));
    let sure = Filter { label: Some("package".into()), min_score: 0.5, ..Filter::default() };
    let got = h.search(q, 1000, &sure).unwrap();
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|f| f.frame.labels[0].1 > 0.5));
    assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn retention_drops_the_vectors_of_removed_frames_and_search_never_names_one() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let d = tempfile::tempdir().unwrap();
    let limit = Retention { max_bytes: 1 << 20, max_age: None };
    let (mut h, _) =
        FrameHistory::open(&d.path().join("history.db"), limit, &info(Precision::F32), None)
            .unwrap();
    let mut removed_some = false;
    for i in 0..600 {
        let f = NewFrame {
            time_ms: i,
            camera: "door".into(),
            trigger: "interval".into(),
            thumbnail: Some(vec![i as u8; 4000]),
            ..NewFrame::default()
        };
        h.add(vec![(f, Some(unit(&mut rng, 24)))]).unwrap();
        let stored = h.store().count().unwrap() as usize;
        assert_eq!(h.len(), stored, "after frame {i}: one vector per stored frame");
        removed_some |= stored < i as usize + 1;
    }
    assert!(removed_some, "the limit was reached");
    assert!(h.store().disk_bytes() <= 1 << 20);
    for _ in 0..20 {
        for f in h.search(&unit(&mut rng, 24), 10, &Filter::default()).unwrap() {
            assert!(h.store().get(f.id).unwrap().is_some(), "hit {} was removed", f.id);
        }
    }
}

#[test]
fn another_models_history_or_index_is_refused_naming_both() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("history.db");
    let (mut h, _) = FrameHistory::open(&db, unlimited(), &info(Precision::F32), None).unwrap();
    h.add(vec![(NewFrame::default(), Some(unit(&mut rng, 24)))]).unwrap();
    drop(h);
    let other = IndexInfo { model: "clip-large".into(), dim: 768, precision: Precision::F32 };
    let e = FrameHistory::open(&db, unlimited(), &other, None).err().unwrap().to_string();
    assert!(e.contains("\"clip-test\"") && e.contains("\"clip-large\""), "{e}");
    let old = d.path().join("index");
    legacy_index(&old, Precision::F32, &mut rng);
    let e = FrameHistory::open(&d.path().join("new.db"), unlimited(), &other, Some(&old))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("one model per history"), "{e}");
    assert!(old.join("entries.log").exists(), "a refused import leaves the old files");
    let e = FrameHistory::open_to_search(&d.path().join("none.db"), "clip-test", 24)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no history here"), "{e}");
}

#[test]
fn a_thumbnail_keeps_the_aspect_ratio_within_its_size_and_is_a_jpeg() {
    let img = image::RgbImage::from_fn(640, 360, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let jpeg = thumbnail_jpeg(&img, 160).unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8]));
    let t = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((t.width(), t.height()), (160, 90));
    let tall = image::RgbImage::new(30, 3000);
    let t = image::load_from_memory(&thumbnail_jpeg(&tall, 100).unwrap()).unwrap();
    assert_eq!((t.width(), t.height()), (1, 100));
    assert!(thumbnail_jpeg(&img, 0).is_none());
    // Smaller than the size asked: not enlarged.
    let small = image::RgbImage::new(40, 30);
    let t = image::load_from_memory(&thumbnail_jpeg(&small, 160).unwrap()).unwrap();
    assert_eq!((t.width(), t.height()), (40, 30));
}

#[test]
fn the_row_mask_marks_exactly_the_rows_whose_id_a_filter_kept() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let mut rows: Vec<i64> = (1..300).filter(|_| rng.random_bool(0.7)).collect();
        rows.dedup();
        let ids: Vec<i64> = (0..320).filter(|_| rng.random_bool(0.3)).collect();
        let mask = super::row_mask(&rows, &ids);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(mask[i], ids.binary_search(row).is_ok(), "row {row}");
        }
    }
    assert!(super::row_mask(&[], &[1, 2]).is_empty());
    assert_eq!(super::row_mask(&[1, 2], &[]), [false, false]);
}

/// A byte flipped inside one stored vector (SQLite's pages still consistent):
/// opening says which frame, and no search ever returns it; the others rank as
/// before.
#[test]
fn a_damaged_vector_is_reported_at_open_and_never_found() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let vectors: Vec<Vec<f32>> = (0..20).map(|_| unit(&mut rng, 24)).collect();
    let (mut h, _) = FrameHistory::open(&path, unlimited(), &info(Precision::F32), None).unwrap();
    let frames = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = NewFrame { time_ms: i as u64, camera: "door".into(), ..Default::default() };
            (f, Some(v.clone()))
        })
        .collect();
    let ids = h.add(frames).unwrap();
    drop(h);
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut e: Vec<u8> =
        c.query_row("SELECT embedding FROM frames WHERE id = ?1", [ids[7]], |r| r.get(0)).unwrap();
    e[10] ^= 0x40;
    c.execute("UPDATE frames SET embedding = ?2 WHERE id = ?1", rusqlite::params![ids[7], e])
        .unwrap();
    drop(c);

    let (h, opening) = FrameHistory::open(&path, unlimited(), &info(Precision::F32), None).unwrap();
    assert_eq!(opening.damaged_vectors, vec![ids[7]]);
    let said = opening.describe(&path).join("\n");
    assert!(said.contains(&format!("fail their checksum (frames {})", ids[7])), "{said}");
    assert_eq!(h.len(), 19);
    let hits = h.search(&vectors[7], 20, &Filter::default()).unwrap();
    assert_eq!(hits.len(), 19);
    assert!(hits.iter().all(|f| f.id != ids[7]));
    let best = h.search(&vectors[3], 1, &Filter::default()).unwrap();
    assert_eq!(best[0].id, ids[3]);
}
