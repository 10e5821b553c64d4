//! Search over the frame history: N stored embeddings (f32, f16, int8), the same
//! vectors and queries as the entries.log index it replaced (searched here too)
//! and a numpy brute force, same machine, one thread each, in one run. Not a
//! test: run
//!
//!     benches/search.sh                     (1M 512-d vectors; ~8 GB of RAM and disk)
//!     cargo bench -p owlet-history --bench search -- [--n N] [--queries Q] [--dir D]
//!
//! For each precision it prints: ms per query for the history (all frames, and a
//! camera filter that SQL narrows to a quarter), for the old index, and the time
//! the memory's measured read bandwidth allows for the vectors' bytes; bytes per
//! entry on disk (database + WAL) and in RAM (the vectors, and the process's
//! resident memory after opening); the history's insert rate and open time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use owlet_history::old_index::{Filter as IndexFilter, Index, Meta};
use owlet_history::{Filter, FrameHistory, NewFrame, Retention};
use owlet_history::{IndexInfo, Precision};
use rand::{Rng, SeedableRng};

const DIM: usize = 512;
const CAMERAS: [&str; 4] = ["door", "shelf", "feeder", "lathe"];

fn main() {
    let mut n = 1_000_000usize;
    let mut queries = 20usize;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dir = repo.join("target/bench-search");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--queries" => queries = args.next().and_then(|v| v.parse().ok()).expect("--queries Q"),
            "--dir" => dir = args.next().expect("--dir D").into(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    let (data, qs) = vectors(n, queries);
    let raw = dir.join(format!("vectors-{n}.f32"));
    std::fs::write(&raw, bytes(&data)).unwrap();
    std::fs::write(dir.join("queries.f32"), bytes(&qs.concat())).unwrap();
    let gbps = read_bandwidth();

    println!(
        "{n} vectors of {DIM}, {queries} queries, top-10, one thread; memory reads {gbps:.1} GB/s"
    );
    println!(
        "{:>5} | {:>9} {:>9} {:>9} {:>9} | {:>6} {:>9} | {:>8} {:>8} {:>8} | {:>9} {:>7}",
        "",
        "history",
        "1/4 cam",
        "old idx",
        "mem pace",
        "/pace",
        "/old idx",
        "disk B/e",
        "old B/e",
        "vec B/e",
        "insert/s",
        "open s"
    );
    let mut history_ms = Vec::new();
    for p in [Precision::F32, Precision::F16, Precision::I8] {
        let info = IndexInfo { model: "bench".into(), dim: DIM, precision: p };
        let (old_ms, old_bytes) = old_index(&dir, &info, &data, &qs);
        let r = history(&dir, &info, &data, &qs);
        let pace_ms = (n * p.vector_bytes(DIM)) as f64 / (gbps * 1e9) * 1e3;
        println!(
            "{:>5} | {:9.2} {:9.2} {:9.2} {:9.2} | {:5.2}x {:8.2}x | {:8.0} {:8.0} {:8} | {:9.0} {:7.1}",
            format!("{p:?}").to_lowercase(),
            r.ms,
            r.camera_ms,
            old_ms,
            pace_ms,
            r.ms / pace_ms,
            r.ms / old_ms,
            r.disk_bytes as f64 / n as f64,
            old_bytes as f64 / n as f64,
            p.vector_bytes(DIM),
            n as f64 / r.insert.as_secs_f64(),
            r.open.as_secs_f64(),
        );
        println!(
            "      resident memory after opening: +{:.0} MB ({:.0} bytes per entry)",
            r.rss_growth as f64 / 1e6,
            r.rss_growth as f64 / n as f64
        );
        history_ms.push((p, r.ms));
    }
    let np_ms = numpy(&repo, &raw, &dir.join("queries.f32"));
    for (p, ms) in history_ms {
        println!("history {:?} / numpy f32 = {:.2}x (time; < 1: owlet faster)", p, ms / np_ms);
    }
    std::fs::remove_file(&raw).ok();
}

/// Clustered unit vectors (1000 scenes), seeded: the same every run, and the
/// same as the old index's benchmark. The queries are stored vectors.
fn vectors(n: usize, queries: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> =
        (0..1000).map(|_| unit((0..DIM).map(|_| rng.random::<f32>() - 0.5).collect())).collect();
    let mut data = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let c = &centres[rng.random_range(0..centres.len())];
        let spread = 0.02 + 0.18 * rng.random::<f32>();
        data.extend(unit(c.iter().map(|x| x + (rng.random::<f32>() - 0.5) * spread).collect()));
        if i % 200_000 == 0 {
            eprintln!("generating {i}/{n}");
        }
    }
    let qs = (0..queries).map(|i| data[(i * 7919 % n) * DIM..][..DIM].to_vec()).collect();
    (data, qs)
}

/// Single-threaded sequential read bandwidth, bytes summed as u64 words over a
/// buffer well beyond the caches; the best of five passes.
fn read_bandwidth() -> f64 {
    let words: Vec<u64> = (0..(512usize << 20) / 8).map(|i| i as u64).collect();
    let mut best = f64::MAX;
    let mut sink = 0u64;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = [0u64; 8];
        for c in words.chunks_exact(8) {
            for j in 0..8 {
                acc[j] = acc[j].wrapping_add(c[j]);
            }
        }
        sink = sink.wrapping_add(acc.iter().fold(0, |a, &b| a.wrapping_add(b)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    (words.len() * 8) as f64 / best / 1e9
}

fn median_ms(qs: &[Vec<f32>], mut search: impl FnMut(&[f32])) -> f64 {
    search(&qs[0]); // warm
    let mut times: Vec<f64> = qs
        .iter()
        .map(|q| {
            let t = Instant::now();
            search(q);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// The entries.log index of earlier owlets: ms per query and bytes on disk.
fn old_index(dir: &Path, info: &IndexInfo, data: &[f32], qs: &[Vec<f32>]) -> (f64, u64) {
    let d = dir.join(format!("index-{:?}", info.precision));
    let _ = std::fs::remove_dir_all(&d);
    let (mut ix, _) = Index::open_or_create(&d, info).unwrap();
    for (i, v) in data.chunks_exact(DIM).enumerate() {
        ix.add(v, Meta { source: i.to_string(), ..Default::default() }).unwrap();
    }
    let ms =
        median_ms(qs, |q| assert_eq!(ix.search(q, 10, &IndexFilter::default()).unwrap().len(), 10));
    let bytes = dir_bytes(&d);
    drop(ix);
    std::fs::remove_dir_all(&d).unwrap();
    (ms, bytes)
}

struct HistoryRun {
    ms: f64,
    camera_ms: f64,
    disk_bytes: u64,
    insert: Duration,
    open: Duration,
    rss_growth: u64,
}

fn history(dir: &Path, info: &IndexInfo, data: &[f32], qs: &[Vec<f32>]) -> HistoryRun {
    let db = dir.join(format!("history-{:?}.db", info.precision));
    for f in [db.clone(), db.with_extension("db-wal"), db.with_extension("db-shm")] {
        let _ = std::fs::remove_file(f);
    }
    let retention = Retention { max_bytes: 1 << 40, max_age: None };
    let t = Instant::now();
    {
        let (mut h, _) = FrameHistory::open(&db, retention, info, None).unwrap();
        let rows: Vec<_> = data.chunks_exact(DIM).enumerate().collect();
        for batch in rows.chunks(10_000) {
            let frames = batch
                .iter()
                .map(|(i, v)| {
                    let frame = NewFrame {
                        time_ms: 1_780_000_000_000 + *i as u64 * 1000,
                        camera: CAMERAS[i % CAMERAS.len()].into(),
                        trigger: "interval".into(),
                        labels: vec![("person".into(), 0.9), ("parcel".into(), 0.1)],
                        ..Default::default()
                    };
                    (frame, Some(v.to_vec()))
                })
                .collect();
            h.add(frames).unwrap();
        }
    }
    let insert = t.elapsed();
    let rss_before = resident_bytes();
    let t = Instant::now();
    let (h, _) = FrameHistory::open(&db, retention, info, None).unwrap();
    let open = t.elapsed();
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    assert_eq!(h.len(), data.len() / DIM);
    let all = Filter { limit: 10, ..Default::default() };
    let ms = median_ms(qs, |q| assert_eq!(h.search(q, 10, &all).unwrap().len(), 10));
    let one_camera = Filter { camera: Some(CAMERAS[1].into()), limit: 10, ..Default::default() };
    let camera_ms = median_ms(qs, |q| assert_eq!(h.search(q, 10, &one_camera).unwrap().len(), 10));
    let disk_bytes = h.store().disk_bytes();
    drop(h);
    for f in [db.clone(), db.with_extension("db-wal"), db.with_extension("db-shm")] {
        let _ = std::fs::remove_file(f);
    }
    HistoryRun { ms, camera_ms, disk_bytes, insert, open, rss_growth }
}

fn numpy(repo: &Path, vectors: &Path, queries: &Path) -> f64 {
    let out = Command::new("python3")
        .arg("benches/search_numpy.py")
        .arg(std::path::absolute(vectors).unwrap())
        .arg(std::path::absolute(queries).unwrap())
        .arg(DIM.to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .current_dir(repo)
        .output()
        .expect("python3 with numpy");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .find_map(|l| l.strip_prefix("numpy_ms "))
        .and_then(|v| v.trim().parse().ok())
        .expect("numpy timing")
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|r| r.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    owlet_runtime::similarity::l2_normalize(&mut v);
    v
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
