//! The accuracy report: the converted bundle against its fp32 original on a
//! calibration set, in owlet itself (the same runtime the board runs), plus file
//! sizes and speed before and after.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::memory;
use owlet_runtime::models::Blip2;
use owlet_runtime::models::{Classification, Clip};
use owlet_runtime::{Bundle, ModelKind};
use serde::Serialize;

use crate::measures::LayerError;
pub use crate::measures::{LABEL_TEMPLATE, LAYER_ERROR_IMAGES};
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub original: PathBuf,
    pub converted: PathBuf,
    pub precision: &'static str,
    pub images: usize,
    /// Graph file bytes, before and after.
    pub graph_bytes: (u64, u64),
    /// Whole bundle folder bytes, before and after.
    pub bundle_bytes: (u64, u64),
    /// Image (CLIP) or query (BLIP-2) embeddings: cosine to fp32, mean and worst.
    pub image_cosine_mean: f64,
    pub image_cosine_worst: f64,
    /// CLIP: text embeddings of the labels' prompts.
    pub text_cosine_worst: Option<f64>,
    /// CLIP: same top label as fp32, over the calibration images.
    pub zero_shot_agreement: Option<f64>,
    /// CLIP: the same, over the images where fp32 is decided (its top label leads
    /// the next by at least `DECIDED_MARGIN` probability), and how many those are.
    /// A frame that fp32 splits evenly between two things flips with any change.
    pub zero_shot_decided: Option<(f64, usize)>,
    /// CLIP: over the images where the top labels differ, fp32's largest lead
    /// (top minus runner-up probability); None where none differ. Says whether the
    /// disagreements are real or ties that any rounding tips over.
    pub zero_shot_largest_flipped_lead: Option<f64>,
    /// BLIP-2: share of caption tokens equal to fp32's, and the first position
    /// where a caption differs (None: all identical).
    pub caption_token_agreement: Option<f64>,
    pub first_divergence: Option<(String, usize)>,
    /// Image encoder, batch 1, median ms, before and after.
    pub vision_ms: (f64, f64),
    /// Peak resident memory that loading each bundle and running the whole
    /// calibration set added, MB, before and after (0 where the OS doesn't say).
    pub peak_rss_mb: (f64, f64),
    /// int8: each int8 layer's own error on (the first `LAYER_ERROR_IMAGES`
    /// of) the set, worst first (`add_layer_errors`); empty where not measured.
    pub layer_errors: Vec<LayerError>,
    /// int8: the layers kept float (as `GRAPH:NODE`) because their own error was above
    /// `max_layer_error` (owlet-quantize `--max-layer-error`), and that limit
    /// (None: not applied).
    pub kept_float_for_error: Vec<String>,
    pub max_layer_error: Option<f64>,
}

/// Layers the printed report names (the JSON has all).
const LAYER_ERRORS_SHOWN: usize = 5;

/// Top-1 lead over the runner-up (probability) that makes an fp32 label decided.
pub const DECIDED_MARGIN: f32 = 0.1;

/// How far the resident set rose above `base` (a `memory::reset_peak`) since.
fn peak_since(base: Option<memory::Usage>) -> f64 {
    match (base, memory::usage()) {
        (Some(b), Some(now)) => (now.peak_mb - b.rss_mb).max(0.0),
        _ => 0.0,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn median_ms(mut f: impl FnMut() -> owlet_runtime::Result<()>) -> Result<f64> {
    f()?;
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<owlet_runtime::Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[2])
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn compare(
    original: &Path,
    converted: &Path,
    to: crate::Target,
    images: &[PathBuf],
    labels: &[String],
    graph_bytes: (u64, u64),
) -> Result<Report> {
    let imgs = images
        .iter()
        .map(|p| load_rgb(p, DecodeLimits::default()))
        .collect::<owlet_runtime::Result<Vec<_>>>()?;
    let kind = Bundle::open(original)?.manifest.kind;
    let mut r = Report {
        original: original.to_path_buf(),
        converted: converted.to_path_buf(),
        precision: to.name(),
        images: imgs.len(),
        graph_bytes,
        bundle_bytes: (folder_bytes(original), folder_bytes(converted)),
        image_cosine_mean: 0.0,
        image_cosine_worst: 1.0,
        text_cosine_worst: None,
        zero_shot_agreement: None,
        zero_shot_decided: None,
        zero_shot_largest_flipped_lead: None,
        caption_token_agreement: None,
        first_divergence: None,
        vision_ms: (0.0, 0.0),
        peak_rss_mb: (0.0, 0.0),
        layer_errors: Vec::new(),
        kept_float_for_error: Vec::new(),
        max_layer_error: None,
    };
    let cosines = match kind {
        ModelKind::Clip => compare_clip(&mut r, original, converted, &imgs, labels)?,
        ModelKind::Blip2 => compare_blip2(&mut r, original, converted, &imgs, images)?,
    };
    if cosines.is_empty() {
        return Err(Error::Invalid("no calibration image could be compared".into()));
    }
    r.image_cosine_mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    r.image_cosine_worst = cosines.iter().copied().fold(1.0, f64::min);
    Ok(r)
}

/// CLIP: both bundles' image embeddings (their cosines returned), label texts and
/// zero-shot labels, memory and time into `r`.
fn compare_clip(
    r: &mut Report,
    original: &Path,
    converted: &Path,
    imgs: &[RgbImage],
    labels: &[String],
) -> Result<Vec<f64>> {
    let t = vec![LABEL_TEMPLATE.to_string()];
    // One untimed round first: thread pools and allocator arenas are made once per
    // process and would count against whichever bundle came first.
    Clip::load(original)?.embed_images(&imgs[..1])?;
    let run = |dir: &Path| -> Result<_> {
        let base = memory::reset_peak();
        let clip = Clip::load(dir)?;
        let e = clip.embed_images(imgs)?;
        let s = if labels.is_empty() { None } else { Some(clip.label_set(labels, &t)?) };
        Ok((clip, e, s, peak_since(base)))
    };
    let (a, ea, sa, peak_a) = run(original)?;
    let (b, eb, sb, peak_b) = run(converted)?;
    r.peak_rss_mb = (peak_a, peak_b);
    let cosines = ea.rows().zip(eb.rows()).map(|(x, y)| cosine(x, y)).collect();
    if let (Some(sa), Some(sb)) = (sa, sb) {
        r.text_cosine_worst = Some(
            sa.embeddings
                .rows()
                .zip(sb.embeddings.rows())
                .map(|(x, y)| cosine(x, y))
                .fold(1.0, f64::min),
        );
        let (ca, cb) = (a.classify_embeddings(&ea, &sa), b.classify_embeddings(&eb, &sb));
        zero_shot(r, &ca, &cb);
    }
    r.vision_ms = (
        median_ms(|| a.embed_images(&imgs[..1]).map(|_| ()))?,
        median_ms(|| b.embed_images(&imgs[..1]).map(|_| ()))?,
    );
    Ok(cosines)
}

/// How often the converted bundle's top label is fp32's: over all images, over
/// those fp32 decides by DECIDED_MARGIN, and fp32's largest lead where they differ.
fn zero_shot(r: &mut Report, ca: &[Classification], cb: &[Classification]) {
    let same = ca.iter().zip(cb).filter(|(x, y)| x.top().0 == y.top().0).count();
    r.zero_shot_agreement = Some(same as f64 / ca.len().max(1) as f64);
    let lead = |c: &Classification| {
        let ranked = c.ranked();
        if ranked.len() < 2 {
            1.0
        } else {
            (ranked[0].1 - ranked[1].1) as f64
        }
    };
    r.zero_shot_largest_flipped_lead = ca
        .iter()
        .zip(cb)
        .filter(|(x, y)| x.top().0 != y.top().0)
        .map(|(x, _)| lead(x))
        .reduce(f64::max);
    let decided: Vec<bool> = ca
        .iter()
        .zip(cb)
        .filter(|(x, _)| lead(x) >= DECIDED_MARGIN as f64)
        .map(|(x, y)| x.top().0 == y.top().0)
        .collect();
    let n = decided.len();
    let agreed = decided.iter().filter(|d| **d).count();
    r.zero_shot_decided = Some((if n == 0 { 1.0 } else { agreed as f64 / n as f64 }, n));
}

/// BLIP-2: both bundles' image queries (their cosines returned), greedy captions
/// token by token, memory and time into `r`.
fn compare_blip2(
    r: &mut Report,
    original: &Path,
    converted: &Path,
    imgs: &[RgbImage],
    paths: &[PathBuf],
) -> Result<Vec<f64>> {
    let warm = Blip2::load(original)?; // as for CLIP: process-wide set-up, untimed
    warm.encode_image(&imgs[0])?;
    drop(warm);
    let load = |dir: &Path| -> Result<_> {
        let base = memory::reset_peak();
        let m = Blip2::load(dir)?;
        let queries =
            imgs.iter().map(|i| m.encode_image(i)).collect::<owlet_runtime::Result<Vec<_>>>()?;
        Ok((m, queries, peak_since(base)))
    };
    let (a, qs_a, peak_a) = load(original)?;
    let (b, qs_b, peak_b) = load(converted)?;
    r.peak_rss_mb = (peak_a, peak_b);
    let cfg = a.default_config();
    let (mut same, mut total, mut cosines) = (0, 0, Vec::new());
    for ((qa, qb), path) in qs_a.iter().zip(&qs_b).zip(paths) {
        cosines.push(cosine(&qa.data, &qb.data));
        let (ga, gb) = (a.caption(qa, &cfg, &mut |_| {})?, b.caption(qb, &cfg, &mut |_| {})?);
        total += ga.ids.len().max(gb.ids.len());
        let k = ga.ids.iter().zip(&gb.ids).take_while(|(x, y)| x == y).count();
        same += k;
        if r.first_divergence.is_none() && ga.ids != gb.ids {
            r.first_divergence = Some((path.display().to_string(), k));
        }
    }
    r.caption_token_agreement = Some(if total == 0 { 1.0 } else { same as f64 / total as f64 });
    r.vision_ms = (
        median_ms(|| a.encode_image(&imgs[0]).map(|_| ()))?,
        median_ms(|| b.encode_image(&imgs[0]).map(|_| ()))?,
    );
    Ok(cosines)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        writeln!(
            f,
            "{} -> {} ({}), {} calibration images",
            self.original.display(),
            self.converted.display(),
            self.precision,
            self.images
        )?;
        writeln!(
            f,
            "  graphs       {:.2} MB -> {:.2} MB ({:.2}x smaller)",
            mb(self.graph_bytes.0),
            mb(self.graph_bytes.1),
            self.graph_bytes.0 as f64 / self.graph_bytes.1.max(1) as f64
        )?;
        writeln!(
            f,
            "  bundle       {:.2} MB -> {:.2} MB",
            mb(self.bundle_bytes.0),
            mb(self.bundle_bytes.1)
        )?;
        writeln!(
            f,
            "  embeddings   cosine to fp32: mean {:.6}, worst {:.6}",
            self.image_cosine_mean, self.image_cosine_worst
        )?;
        self.fmt_labels(f)?;
        self.fmt_layers(f)?;
        writeln!(
            f,
            "  peak memory  {:.1} MB -> {:.1} MB (load + calibration set)",
            self.peak_rss_mb.0, self.peak_rss_mb.1
        )?;
        write!(
            f,
            "  image graph  {:.2} ms -> {:.2} ms (CPU, batch 1, median)",
            self.vision_ms.0, self.vision_ms.1
        )
    }
}

impl Report {
    /// The label texts, zero-shot labels and captions against fp32.
    fn fmt_labels(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(t) = self.text_cosine_worst {
            writeln!(f, "  label texts  cosine to fp32: worst {t:.6}")?;
        }
        if let Some(z) = self.zero_shot_agreement {
            writeln!(f, "  zero-shot    same top label as fp32: {:.1}% of all images", z * 100.0)?;
        }
        if let Some((z, n)) = self.zero_shot_decided {
            writeln!(
                f,
                "               {:.1}% of the {n} where fp32 leads by >= {DECIDED_MARGIN}",
                z * 100.0
            )?;
        }
        if let Some(l) = self.zero_shot_largest_flipped_lead {
            writeln!(
                f,
                "               where they differ, fp32's top label led by at most {l:.4}"
            )?;
        }
        if let Some(c) = self.caption_token_agreement {
            writeln!(f, "  captions     tokens equal to fp32's: {:.1}%", c * 100.0)?;
            match &self.first_divergence {
                None => writeln!(f, "               every caption identical")?,
                Some((img, k)) => writeln!(f, "               first divergence: {img}, token {k}")?,
            }
        }
        Ok(())
    }

    /// The int8 layers' own errors, worst first, and those kept float.
    fn fmt_layers(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.layer_errors.is_empty() {
            writeln!(f, "  int8 layers  own error (|X·Wq - X·W| / |X·W|), worst {LAYER_ERRORS_SHOWN} of {}:", self.layer_errors.len())?;
            for e in self.layer_errors.iter().take(LAYER_ERRORS_SHOWN) {
                let kept = if self.kept_float_for_error.contains(&e.keep_float_name()) {
                    "  (kept float)"
                } else {
                    ""
                };
                writeln!(
                    f,
                    "               {:.4}  {} {}{kept}",
                    e.relative_error, e.graph, e.layer
                )?;
            }
        }
        if let Some(limit) = self.max_layer_error {
            match self.kept_float_for_error.len() {
                0 => writeln!(
                    f,
                    "               none above {:.1}%: every linear layer int8",
                    limit * 100.0
                )?,
                n => writeln!(f, "               {n} above {:.1}% kept float", limit * 100.0)?,
            }
        }
        Ok(())
    }
}
