//! `owlet index add`, `owlet search`, `owlet cluster`: the frame history (owlet-history)
//! from the shell: the same file the bridge writes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use owlet_history::kmeans::kmeans;
use owlet_history::{Filter, FrameHistory, NewFrame, Retention};
use owlet_history::{IndexInfo, Precision};
use owlet_runtime::image_io::{self, DecodeLimits, IMAGE_EXTENSIONS};
use serde_json::json;

use crate::args::{Common, SearchFilter};
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

/// Where `owlet index add` stores, and how.
pub struct AddTo {
    pub index: PathBuf,
    pub precision: String,
    pub batch: usize,
    pub camera: Option<String>,
    pub thumbnail_px: u32,
    pub max_mb: Option<u64>,
}

pub fn add(common: &Common, to: &AddTo, paths: &[PathBuf]) -> Result<ExitCode> {
    let precision = Precision::parse(&to.precision).map_err(anyhow::Error::msg)?;
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
    let retention = Retention {
        max_bytes: to.max_mb.map_or(u64::MAX, |mb| mb.saturating_mul(1 << 20)),
        max_age: None,
    };
    let (db, legacy) = locate(&to.index);
    let (mut history, opening) = FrameHistory::open(&db, retention, &info, legacy)?;
    for line in opening.describe(&db) {
        eprintln!("owlet: {line}");
    }
    let bar = progress_bar(files.len(), common.json);
    let (mut added, mut failed) = (0usize, 0usize);
    for chunk in files.chunks(to.batch.max(1)) {
        let (images, frames) = read_images(chunk, to, &bar, &mut failed);
        if !images.is_empty() {
            let emb = clip.embed_images(&images)?;
            let rows = frames
                .into_iter()
                .enumerate()
                .map(|(i, f)| (f, Some(emb.row(i).to_vec())))
                .collect::<Vec<_>>();
            added += history.add(rows)?.len();
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let precision = history.info().precision;
    if common.json {
        println!(
            "{}",
            json!({"index": db.display().to_string(), "added": added, "failed": failed,
                   "entries": history.len(), "precision": precision})
        );
    } else {
        println!(
            "{}: added {added} image(s), {} in all ({:?}, {} KiB of vectors)",
            db.display(),
            history.len(),
            precision,
            history.vector_memory() / 1024
        );
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// A progress bar on stderr, drawn only where stderr is a terminal and the output
/// is not JSON.
fn progress_bar(len: usize, json: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    if !std::io::stderr().is_terminal() || json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .expect("template"),
    );
    bar
}

/// The images of `files` that decode, each with its frame row (time from the
/// file, thumbnail); one that does not is said and counted in `failed`.
fn read_images(
    files: &[PathBuf],
    to: &AddTo,
    bar: &indicatif::ProgressBar,
    failed: &mut usize,
) -> (Vec<image::RgbImage>, Vec<NewFrame>) {
    let (mut images, mut frames) = (Vec::new(), Vec::new());
    for f in files {
        match image_io::load_rgb(f, DecodeLimits::default()) {
            Ok(img) => {
                let time_ms = std::fs::metadata(f)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                frames.push(NewFrame {
                    time_ms,
                    camera: to.camera.clone().unwrap_or_default(),
                    trigger: "file".into(),
                    source: Some(f.display().to_string()),
                    thumbnail: owlet_history::thumbnail_jpeg(&img, to.thumbnail_px),
                    ..NewFrame::default()
                });
                images.push(img);
            }
            Err(e) => {
                bar.suspend(|| eprintln!("owlet: skipping image: {e}"));
                *failed += 1;
            }
        }
    }
    (images, frames)
}

pub fn search(
    common: &Common,
    index: &Path,
    text: Option<&str>,
    image: Option<&Path>,
    k: usize,
    only: &SearchFilter,
) -> Result<ExitCode> {
    let clip = load_clip(common)?;
    let query = match (text, image) {
        (Some(t), _) => clip.embed_texts(&[t])?.row(0).to_vec(),
        (None, Some(p)) => {
            clip.embed_images(&[image_io::load_rgb(p, DecodeLimits::default())?])?.row(0).to_vec()
        }
        (None, None) => anyhow::bail!("give a text or --image"),
    };
    let history = open_to_read(index, &clip.bundle.manifest.name, query.len())?;
    let filter = Filter {
        camera: only.camera.clone(),
        since_ms: only.since_ms,
        until_ms: only.until_ms,
        label: only.label.clone(),
        min_score: only.min_score,
        caption_contains: only.caption.clone(),
        ..Filter::default()
    };
    let hits = history.search(&query, k, &filter)?;
    if common.json {
        let rows: Vec<_> = hits
            .iter()
            .map(|h| {
                let f = &h.frame;
                json!({"frame_id": h.id, "score": h.score, "source": f.source, "camera": camera_of(f),
                       "time_ms": f.time_ms, "caption": f.caption,
                       "labels": f.labels.iter().map(|(l, s)| json!({"label": l, "score": s})).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for h in &hits {
            println!("{:.4}  {}", h.score, describe(&h.frame, h.id));
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
    let dim = clip.embed_texts(&["probe"])?.row(0).len();
    let ix = open_to_read(dir, &clip.bundle.manifest.name, dim)?;
    anyhow::ensure!(
        !ix.is_empty(),
        "{} has no images: `owlet index add` first",
        ix.path().display()
    );
    let d = ix.info().dim;
    let points: Vec<f32> = (0..ix.len()).flat_map(|i| ix.vector(i)).collect();
    let names = row_names(&ix);
    let c = kmeans(&points, d, k, 100, seed);
    let k = c.centroids.len() / d;
    let words = match keywords {
        Some(p) => read_keywords(p)?,
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
                       "members": m.iter().map(|&e| names[e].clone()).collect::<Vec<_>>()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"k": k, "iterations": c.iterations, "clusters": rows})
            )?
        );
    } else {
        print_clusters(&clusters, &names);
    }
    Ok(ExitCode::SUCCESS)
}

/// What each row of the history is called: its file, or (a bridge's frame) camera
/// and time.
fn row_names(ix: &FrameHistory) -> Vec<String> {
    (0..ix.len())
        .map(|i| {
            let id = ix.id(i);
            match ix.store().summary(id) {
                Ok(Some(row)) => {
                    row.frame.source.clone().unwrap_or_else(|| describe(&row.frame, id))
                }
                _ => format!("frame {id}"),
            }
        })
        .collect()
}

/// The keywords file: one keyword a line, blank lines skipped.
fn read_keywords(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading keywords {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// A cluster: its members (rows of the history) and its best keywords with their
/// scores.
type Cluster = (Vec<usize>, Vec<(String, f32)>);

/// Each cluster: its size, its best keywords, its first five members.
fn print_clusters(clusters: &[Cluster], names: &[String]) {
    for (i, (m, n)) in clusters.iter().enumerate() {
        let words = n.iter().map(|(w, s)| format!("{w} ({s:.3})")).collect::<Vec<_>>().join(", ");
        println!(
            "cluster {i}: {} image(s){}",
            m.len(),
            if words.is_empty() { String::new() } else { format!(": {words}") }
        );
        for &e in m.iter().take(5) {
            println!("    {}", names[e]);
        }
    }
}

/// One row of up to 8 thumbnails (96 px) per cluster, in cluster order: the
/// stored thumbnail, else the image file the frame came from.
fn contact_sheet(ix: &FrameHistory, clusters: &[Vec<usize>], out: &Path) -> Result<()> {
    const T: u32 = 96;
    const PER_ROW: usize = 8;
    let mut sheet = image::RgbImage::from_pixel(
        T * PER_ROW as u32,
        T * clusters.len().max(1) as u32,
        image::Rgb([32, 32, 32]),
    );
    for (row, members) in clusters.iter().enumerate() {
        for (col, &e) in members.iter().take(PER_ROW).enumerate() {
            let Some(img) = picture_of(ix, ix.id(e)) else { continue };
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

/// A frame's stored thumbnail, or its source file when it has none. A frame that
/// fails its checksum, or whose file is gone, is left blank (and said on stderr).
fn picture_of(ix: &FrameHistory, id: i64) -> Option<image::RgbImage> {
    let row = match ix.store().get(id) {
        Ok(row) => row?.frame,
        Err(e) => {
            eprintln!("owlet: {e}");
            return None;
        }
    };
    if let Some(jpeg) = &row.thumbnail {
        match image_io::decode_rgb(
            jpeg,
            &format!("frame {id}'s thumbnail"),
            DecodeLimits::default(),
        ) {
            Ok(img) => return Some(img),
            Err(e) => eprintln!("owlet: {e}"),
        }
    }
    image_io::load_rgb(Path::new(row.source.as_deref()?), DecodeLimits::default()).ok()
}

/// The history behind `--index`: `<DIR>/history.db` with an older index in DIR
/// imported, or the .db file given.
fn locate(index: &Path) -> (PathBuf, Option<&Path>) {
    if index.is_dir() || index.extension().is_none() {
        (index.join("history.db"), Some(index))
    } else {
        (index.to_path_buf(), None)
    }
}

/// Open the history to search `model`'s vectors, importing an older index in the
/// folder first if there is one.
fn open_to_read(index: &Path, model: &str, dim: usize) -> Result<FrameHistory> {
    let (db, legacy) = locate(index);
    if legacy.is_some_and(|d| d.join("index.json").exists()) {
        let unlimited = Retention { max_bytes: u64::MAX, max_age: None };
        let want = IndexInfo { model: model.into(), dim, precision: Precision::F32 };
        let (h, opening) = FrameHistory::open(&db, unlimited, &want, legacy)?;
        for line in opening.describe(&db) {
            eprintln!("owlet: {line}");
        }
        return Ok(h);
    }
    Ok(FrameHistory::open_to_search(&db, model, dim)?)
}

fn camera_of(f: &NewFrame) -> Option<&str> {
    (!f.camera.is_empty()).then_some(f.camera.as_str())
}

/// A frame in one line: its file, else its camera, time and caption.
fn describe(f: &NewFrame, id: i64) -> String {
    match &f.source {
        Some(s) => s.clone(),
        None => format!(
            "frame {id}: {} at {} ms{}",
            camera_of(f).unwrap_or("-"),
            f.time_ms,
            f.caption.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
        ),
    }
}
