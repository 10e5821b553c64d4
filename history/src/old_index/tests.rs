use super::*;
use rand::{Rng, SeedableRng};

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("owlet-index-").tempdir().unwrap()
}

fn info(p: Precision, dim: usize) -> IndexInfo {
    IndexInfo { model: "test-clip".into(), dim, precision: p }
}

use crate::vectors::tests::random_unit;

/// Brute force in f64: the reference ranking.
fn reference(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let qn: f64 = q.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let mut s: Vec<(usize, f64)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let vn: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            (i, v.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (vn * qn))
        })
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    s.into_iter().take(k).map(|(i, _)| i).collect()
}

#[test]
fn f32_search_returns_the_planted_neighbours_exactly_like_a_float64_brute_force() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let dim = 77; // ragged: not a multiple of any SIMD width
    let d = dir();
    let (mut ix, _) = Index::open_or_create(d.path(), &info(Precision::F32, dim)).unwrap();
    let mut data = Vec::new();
    for i in 0..500 {
        let v = random_unit(&mut rng, dim);
        ix.add(&v, Meta { source: format!("f{i}"), ..Default::default() }).unwrap();
        data.push(v);
    }
    for _ in 0..20 {
        let q = random_unit(&mut rng, dim);
        // Plant: three near copies of the query.
        let got: Vec<usize> =
            ix.search(&q, 10, &Filter::default()).unwrap().iter().map(|h| h.entry).collect();
        assert_eq!(got, reference(&data, &q, 10));
    }
    let q = data[123].clone();
    let hits = ix.search(&q, 1, &Filter::default()).unwrap();
    assert_eq!(hits[0].entry, 123);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
}

#[test]
fn int8_top10_recall_is_at_least_099_and_f16_higher_on_clip_like_vectors() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let dim = 512;
    // Clustered data as camera embeddings are: 50 scenes, frames near them, some
    // near-duplicates (a still scene) and some far (things moving).
    let centres: Vec<Vec<f32>> = (0..50).map(|_| random_unit(&mut rng, dim)).collect();
    let data: Vec<Vec<f32>> = (0..3000)
        .map(|i| {
            let c = &centres[i % 50];
            let spread = 0.02 + 0.18 * rng.random::<f32>();
            let mut v: Vec<f32> =
                c.iter().map(|x| x + (rng.random::<f32>() - 0.5) * spread).collect();
            owlet_runtime::similarity::l2_normalize(&mut v);
            v
        })
        .collect();
    let mut recall = std::collections::HashMap::new();
    for p in [Precision::F32, Precision::F16, Precision::I8] {
        let d = dir();
        let (mut ix, _) = Index::open_or_create(d.path(), &info(p, dim)).unwrap();
        for (i, v) in data.iter().enumerate() {
            ix.add(v, Meta { source: i.to_string(), ..Default::default() }).unwrap();
        }
        assert_eq!(ix.vector_memory(), 3000 * p.vector_bytes(dim));
        let mut found = 0;
        let queries = 100;
        let mut qrng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..queries {
            let q = &data[qrng.random_range(0..data.len())];
            let want: std::collections::HashSet<usize> =
                reference(&data, q, 10).into_iter().collect();
            found += ix
                .search(q, 10, &Filter::default())
                .unwrap()
                .iter()
                .filter(|h| want.contains(&h.entry))
                .count();
        }
        recall.insert(format!("{p:?}"), found as f64 / (queries * 10) as f64);
    }
    eprintln!("top-10 recall against a float64 brute force: {recall:?}");
    assert_eq!(recall["F32"], 1.0, "{recall:?}");
    assert!(recall["F16"] >= 0.99, "{recall:?}");
    assert!(recall["I8"] >= 0.99, "{recall:?}");
}

#[test]
fn filters_by_camera_and_time_range() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let d = dir();
    let (mut ix, _) = Index::open_or_create(d.path(), &info(Precision::F32, 16)).unwrap();
    for i in 0..100u64 {
        let cam = if i % 2 == 0 { "door" } else { "shed" };
        ix.add(
            &random_unit(&mut rng, 16),
            Meta {
                source: i.to_string(),
                camera: Some(cam.into()),
                time_ms: Some(i * 1000),
                caption: None,
            },
        )
        .unwrap();
    }
    let q = random_unit(&mut rng, 16);
    let f = Filter { camera: Some("shed".into()), since_ms: Some(10_000), until_ms: Some(20_000) };
    let hits = ix.search(&q, 100, &f).unwrap();
    let mut got: Vec<u64> = hits.iter().map(|h| ix.meta(h.entry).time_ms.unwrap() / 1000).collect();
    got.sort();
    assert_eq!(got, vec![11, 13, 15, 17, 19]);
}

#[test]
fn the_index_survives_a_kill_in_the_middle_of_a_write_wherever_it_falls() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let d = dir();
    let dim = 24;
    let mut sizes = Vec::new();
    {
        let (mut ix, _) = Index::open_or_create(d.path(), &info(Precision::I8, dim)).unwrap();
        for i in 0..8 {
            ix.add(
                &random_unit(&mut rng, dim),
                Meta {
                    source: format!("frame-{i}"),
                    caption: Some("a cat".into()),
                    ..Default::default()
                },
            )
            .unwrap();
            sizes.push(std::fs::metadata(d.path().join("entries.log")).unwrap().len() as usize);
        }
    }
    let full = std::fs::read(d.path().join("entries.log")).unwrap();
    let json = std::fs::read(d.path().join("index.json")).unwrap();
    for _ in 0..200 {
        let cut = rng.random_range(0..=full.len());
        let c = dir();
        std::fs::write(c.path().join("index.json"), &json).unwrap();
        std::fs::write(c.path().join("entries.log"), &full[..cut]).unwrap();
        let whole = sizes.iter().filter(|&&s| s <= cut).count();
        let torn = cut - if whole == 0 { 0 } else { sizes[whole - 1] };
        // Reading changes nothing and reports the torn tail as a damaged stretch.
        let (ix, rep) = Index::open(c.path()).unwrap();
        assert_eq!(ix.len(), whole, "cut at {cut}");
        assert_eq!(rep.cut_bytes, 0);
        assert_eq!(rep.damaged.iter().map(|d| d.1).sum::<u64>() as usize, torn);
        assert_eq!(std::fs::metadata(c.path().join("entries.log")).unwrap().len() as usize, cut);
        drop(ix);
        let (mut ix, rep) = Index::open_for_writing(c.path()).unwrap();
        assert_eq!(ix.len(), whole, "cut at {cut}");
        assert_eq!(rep.cut_bytes as usize, torn);
        assert!(rep.damaged.is_empty() && rep.kept_aside.is_none());
        // It goes on: a new entry after the cut is kept.
        ix.add(&random_unit(&mut rng, dim), Meta { source: "after".into(), ..Default::default() })
            .unwrap();
        drop(ix);
        let (ix, _) = Index::open(c.path()).unwrap();
        assert_eq!(ix.len(), whole + 1);
        assert_eq!(ix.meta(whole).source, "after");
    }
}

/// An index of 40 entries with 16-d int8 vectors, and its log's record offsets.
fn forty_entries() -> (tempfile::TempDir, Vec<usize>) {
    let d = dir();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut offsets = vec![0];
    let (mut ix, _) = Index::open_or_create(d.path(), &info(Precision::I8, 16)).unwrap();
    for i in 0..40 {
        ix.add(&random_unit(&mut rng, 16), Meta { source: format!("e{i}"), ..Default::default() })
            .unwrap();
        offsets.push(std::fs::metadata(d.path().join("entries.log")).unwrap().len() as usize);
    }
    (d, offsets)
}

fn sources(ix: &Index) -> Vec<String> {
    (0..ix.len()).map(|i| ix.meta(i).source.clone()).collect()
}

/// Issue 22: one flipped byte in entry 5 of 40 deleted the 35 after it, even for a
/// read-only search; a flipped length field was "a torn last write" and cut 20.
#[test]
fn a_damaged_entry_costs_that_entry_only_and_reading_changes_nothing() {
    // byte 0 of a record is its length field; byte 30 is inside its vector.
    for within in [0usize, 1, 30] {
        let (d, offsets) = forty_entries();
        let log = d.path().join("entries.log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[offsets[5] + within] ^= 0x10;
        std::fs::write(&log, &bytes).unwrap();
        let want: Vec<String> = (0..40).filter(|&i| i != 5).map(|i| format!("e{i}")).collect();

        let (ix, rep) = Index::open(d.path()).unwrap();
        assert_eq!(sources(&ix), want, "flipped byte {within} of entry 5");
        assert_eq!(rep.damaged.len(), 1, "{rep:?}");
        assert_eq!(rep.damaged[0].0 as usize, offsets[5]);
        assert!(rep.describe().unwrap().contains("damaged"));
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "a reader never rewrites");
        drop(ix);

        // Writing keeps the damaged log aside and goes on from a clean one.
        let (mut ix, rep) = Index::open_for_writing(d.path()).unwrap();
        assert_eq!(sources(&ix), want);
        let aside = rep.kept_aside.clone().expect("kept aside");
        assert_eq!(std::fs::read(&aside).unwrap(), bytes);
        ix.add(&[1.0; 16], Meta { source: "new".into(), ..Default::default() }).unwrap();
        drop(ix);
        let (ix, rep) = Index::open(d.path()).unwrap();
        assert_eq!(ix.len(), 40);
        assert!(rep.damaged.is_empty(), "{rep:?}");
    }
}

/// Issue 22: an edited index.json (another precision, dimension 0) emptied the log.
#[test]
fn an_index_json_that_does_not_match_its_log_is_refused_and_nothing_is_changed() {
    let (d, _) = forty_entries();
    let log = d.path().join("entries.log");
    let before = std::fs::read(&log).unwrap();
    let json = d.path().join("index.json");
    for edited in [
        r#"{"model":"test-clip","dim":16,"precision":"f16"}"#,
        r#"{"model":"test-clip","dim":32,"precision":"i8"}"#,
        r#"{"model":"test-clip","dim":0,"precision":"i8"}"#,
    ] {
        std::fs::write(&json, edited).unwrap();
        for write in [false, true] {
            let e = if write { Index::open_for_writing(d.path()) } else { Index::open(d.path()) }
                .err()
                .unwrap_or_else(|| panic!("{edited} accepted"))
                .to_string();
            assert!(e.contains("index.json"), "{e}");
            assert_eq!(std::fs::read(&log).unwrap(), before, "{edited}: the log was changed");
        }
    }
}

#[test]
fn an_index_opened_to_read_refuses_to_add() {
    let (d, _) = forty_entries();
    let (mut ix, _) = Index::open(d.path()).unwrap();
    let e = ix.add(&[1.0; 16], Meta::default()).err().unwrap();
    assert!(e.to_string().contains("opened to read"), "{e}");
}

#[test]
fn another_model_or_dimension_is_refused() {
    let d = dir();
    Index::open_or_create(d.path(), &info(Precision::F32, 8)).unwrap();
    let e = Index::open_or_create(
        d.path(),
        &IndexInfo { model: "other".into(), dim: 8, precision: Precision::F32 },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("one index per model"), "{e}");
    let e = Index::open_or_create(d.path(), &info(Precision::F32, 9)).err().unwrap();
    assert!(e.to_string().contains("8-d"), "{e}");
    std::fs::write(d.path().join("index.json"), b"{ not json").unwrap();
    assert!(Index::open(d.path()).err().unwrap().to_string().contains("index.json"));
}
