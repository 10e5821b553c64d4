//! `owlet index add`, `owlet search`, `owlet cluster`: an embedding index from the shell.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use owlet_runtime::image_io::{self, DecodeLimits, IMAGE_EXTENSIONS};
use owlet_runtime::index::kmeans::kmeans;
use owlet_runtime::index::{Filter, Index, IndexInfo, Meta, Precision};
use serde_json::json;

use crate::args::Common;
use crate::load_clip;

/// Files as given, and the images inside folders (sorted), in order.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn add(
    common: &Common,
    dir: &Path,
    precision: &str,
    batch: usize,
    camera: Option<String>,
    paths: &[PathBuf],
) -> Result<ExitCode> {
    let precision = Precision::parse(precision).map_err(anyhow::Error::msg)?;
    let clip = load_clip(common)?;
    let files = expand(paths)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no image files in {}",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let probe = clip.embed_texts(&["probe"])?;
    let info =
        IndexInfo { model: clip.bundle.manifest.name.clone(), dim: probe.row(0).len(), precision };
    let (mut ix, rep) = Index::open_or_create(dir, &info)?;
    if let Some(what) = rep.describe() {
        eprintln!("owlet: index {}: {what}", dir.display());
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    if !std::io::stderr().is_terminal() || common.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .expect("template"),
    );
    let (mut added, mut failed) = (0usize, 0usize);
    for chunk in files.chunks(batch.max(1)) {
        let mut images = Vec::new();
        let mut metas = Vec::new();
        for f in chunk {
            match image_io::load_rgb(f, DecodeLimits::default()) {
                Ok(img) => {
                    let time_ms = std::fs::metadata(f)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64);
                    images.push(img);
                    metas.push(Meta {
                        source: f.display().to_string(),
                        camera: camera.clone(),
                        time_ms,
                        caption: None,
                    });
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("owlet: skipping image: {e}"));
                    failed += 1;
                }
            }
        }
        if !images.is_empty() {
            let emb = clip.embed_images(&images)?;
            for (i, m) in metas.into_iter().enumerate() {
                ix.add(emb.row(i), m)?;
                added += 1;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if common.json {
        println!(
            "{}",
            json!({"index": dir.display().to_string(), "added": added, "failed": failed, "entries": ix.len(), "precision": precision})
        );
    } else {
        println!(
            "{}: added {added} image(s), {} in all ({:?}, {} KiB of vectors)",
            dir.display(),
            ix.len(),
            precision,
            ix.vector_memory() / 1024
        );
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn search(
    common: &Common,
    dir: &Path,
    text: Option<&str>,
    image: Option<&Path>,
    k: usize,
    camera: Option<String>,
) -> Result<ExitCode> {
    let clip = load_clip(common)?;
    let ix = open_to_read(dir)?;
    anyhow::ensure!(
        ix.info.model == clip.bundle.manifest.name,
        "index {} was built with model {:?}, not {:?}",
        dir.display(),
        ix.info.model,
        clip.bundle.manifest.name
    );
    let query = match (text, image) {
        (Some(t), _) => clip.embed_texts(&[t])?.row(0).to_vec(),
        (None, Some(p)) => {
            clip.embed_images(&[image_io::load_rgb(p, DecodeLimits::default())?])?.row(0).to_vec()
        }
        (None, None) => anyhow::bail!("give a text or --image"),
    };
    let hits = ix.search(&query, k, &Filter { camera, ..Default::default() })?;
    if common.json {
        let rows: Vec<_> = hits
            .iter()
            .map(|h| {
                let m = ix.meta(h.entry);
                json!({"entry": h.entry, "score": h.score, "source": m.source, "camera": m.camera, "time_ms": m.time_ms, "caption": m.caption})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for h in &hits {
            println!("{:.4}  {}", h.score, ix.meta(h.entry).source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cluster(
    common: &Common,
    dir: &Path,
    k: usize,
    keywords: Option<&Path>,
    sheet: Option<&Path>,
    seed: u64,
) -> Result<ExitCode> {
    anyhow::ensure!(k >= 1, "--k must be at least 1");
    let clip = load_clip(common)?;
    let ix = open_to_read(dir)?;
    anyhow::ensure!(!ix.is_empty(), "index {} is empty: `owlet index add` first", dir.display());
    let d = ix.info.dim;
    let points: Vec<f32> = (0..ix.len()).flat_map(|i| ix.vector(i)).collect();
    let c = kmeans(&points, d, k, 100, seed);
    let k = c.centroids.len() / d;
    let words: Vec<String> = match keywords {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading keywords {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => vec![],
    };
    let word_emb = if words.is_empty() {
        None
    } else {
        Some(clip.embed_texts(&words.iter().map(String::as_str).collect::<Vec<_>>())?)
    };
    let mut clusters = Vec::new();
    for ci in 0..k {
        let centre = &c.centroids[ci * d..(ci + 1) * d];
        let members: Vec<usize> = (0..ix.len()).filter(|&i| c.assignment[i] == ci).collect();
        let mut named: Vec<(String, f32)> = match &word_emb {
            Some(e) => words
                .iter()
                .enumerate()
                .map(|(w, name)| (name.clone(), owlet_runtime::similarity::dot(centre, e.row(w))))
                .collect(),
            None => vec![],
        };
        named.sort_by(|a, b| b.1.total_cmp(&a.1));
        named.truncate(3);
        clusters.push((members, named));
    }
    if let Some(out) = sheet {
        contact_sheet(&ix, &clusters.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), out)?;
    }
    if common.json {
        let rows: Vec<_> = clusters
            .iter()
            .enumerate()
            .map(|(i, (m, n))| {
                json!({"cluster": i, "keywords": n.iter().map(|(w, s)| json!({"keyword": w, "score": s})).collect::<Vec<_>>(),
                       "members": m.iter().map(|&e| ix.meta(e).source.clone()).collect::<Vec<_>>()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"k": k, "iterations": c.iterations, "clusters": rows})
            )?
        );
    } else {
        for (i, (m, n)) in clusters.iter().enumerate() {
            let names =
                n.iter().map(|(w, s)| format!("{w} ({s:.3})")).collect::<Vec<_>>().join(", ");
            println!(
                "cluster {i}: {} image(s){}",
                m.len(),
                if names.is_empty() { String::new() } else { format!(": {names}") }
            );
            for &e in m.iter().take(5) {
                println!("    {}", ix.meta(e).source);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of up to 8 thumbnails (96 px) per cluster, in cluster order.
fn contact_sheet(ix: &Index, clusters: &[Vec<usize>], out: &Path) -> Result<()> {
    const T: u32 = 96;
    const PER_ROW: usize = 8;
    let mut sheet = image::RgbImage::from_pixel(
        T * PER_ROW as u32,
        T * clusters.len().max(1) as u32,
        image::Rgb([32, 32, 32]),
    );
    for (row, members) in clusters.iter().enumerate() {
        for (col, &e) in members.iter().take(PER_ROW).enumerate() {
            let Ok(img) =
                image_io::load_rgb(Path::new(&ix.meta(e).source), DecodeLimits::default())
            else {
                continue;
            };
            let thumb = image::imageops::thumbnail(&img, T, T);
            let (x, y) = (
                col as u32 * T + (T - thumb.width()) / 2,
                row as u32 * T + (T - thumb.height()) / 2,
            );
            image::imageops::overlay(&mut sheet, &thumb, x as i64, y as i64);
        }
    }
    sheet.save(out).with_context(|| format!("writing contact sheet {}", out.display()))?;
    Ok(())
}

/// Open an index to read, saying on stderr what damage was skipped.
fn open_to_read(dir: &Path) -> Result<Index> {
    let (ix, rep) = Index::open(dir)?;
    if let Some(what) = rep.describe() {
        eprintln!("owlet: index {}: {what} (nothing was changed)", dir.display());
    }
    Ok(ix)
}
