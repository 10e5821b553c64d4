//! Index search benchmark: owlet's exact top-k over N 512-d vectors (f32, f16,
//! int8) against a numpy brute force (matrix-vector product + argpartition) on the
//! same vectors, same machine, one thread each, in one run. Not a test: run
//!
//!     benches/search.sh                      (1M vectors; ~4 GB of disk and RAM)
//!     cargo bench -p owlet-runtime --bench search -- [--n N] [--queries Q] [--dir D]
//!
//! Prints ms per query, vectors/s, memory per 1M entries, and owlet / numpy.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use owlet_runtime::index::{Filter, Index, IndexInfo, Meta, Precision};
use rand::{Rng, SeedableRng};

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
    let dim = 512;
    std::fs::create_dir_all(&dir).unwrap();
    // Clustered unit vectors (1000 scenes), seeded: the same every run.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> =
        (0..1000).map(|_| unit((0..dim).map(|_| rng.random::<f32>() - 0.5).collect())).collect();
    let npy = dir.join(format!("vectors-{n}.f32"));
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[rng.random_range(0..centres.len())];
        let spread = 0.02 + 0.18 * rng.random::<f32>();
        data.extend(unit(c.iter().map(|x| x + (rng.random::<f32>() - 0.5) * spread).collect()));
        if i % 200_000 == 0 {
            eprintln!("generating {i}/{n}");
        }
    }
    let qs: Vec<Vec<f32>> =
        (0..queries).map(|i| data[(i * 7919 % n) * dim..][..dim].to_vec()).collect();
    std::fs::write(&npy, bytes(&data)).unwrap();
    std::fs::write(dir.join("queries.f32"), bytes(&qs.concat())).unwrap();

    println!("{n} vectors of {dim}, {queries} queries, top-10, one thread");
    let mut owlet_ms = Vec::new();
    for p in [Precision::F32, Precision::F16, Precision::I8] {
        let d = dir.join(format!("index-{p:?}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        let (mut ix, _) =
            Index::open_or_create(&d, &IndexInfo { model: "bench".into(), dim, precision: p })
                .unwrap();
        for i in 0..n {
            ix.add(
                &data[i * dim..(i + 1) * dim],
                Meta { source: i.to_string(), ..Default::default() },
            )
            .unwrap();
        }
        ix.search(&qs[0], 10, &Filter::default()).unwrap(); // warm
        let mut times = Vec::new();
        for q in &qs {
            let t = Instant::now();
            let hits = ix.search(q, 10, &Filter::default()).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(hits.len(), 10);
        }
        let ms = median(&mut times);
        println!(
            "owlet {:>4}: {ms:8.2} ms/query  {:6.1} M vectors/s  {:5.0} MB per 1M entries (vectors)",
            format!("{p:?}").to_lowercase(),
            n as f64 / ms / 1e3,
            p.vector_bytes(dim) as f64  // bytes per entry = MB per 1M entries
        );
        owlet_ms.push((p, ms));
        drop(ix);
        std::fs::remove_dir_all(&d).unwrap();
    }
    let out = Command::new("python3")
        .arg("benches/search_numpy.py")
        .arg(std::path::absolute(&npy).unwrap())
        .arg(std::path::absolute(dir.join("queries.f32")).unwrap())
        .arg(dim.to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .current_dir(&repo)
        .output()
        .expect("python3 with numpy");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let np_ms: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("numpy_ms "))
        .and_then(|v| v.trim().parse().ok())
        .expect("numpy timing");
    for (p, ms) in owlet_ms {
        println!("owlet {:?} / numpy f32 = {:.2}x (time; < 1: owlet faster)", p, ms / np_ms);
    }
    std::fs::remove_file(&npy).ok();
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    owlet_runtime::similarity::l2_normalize(&mut v);
    v
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
