//! The accuracy report: the converted bundle against its fp32 original on a
//! calibration set, in owlet itself (the same runtime the board runs), plus file
//! sizes and speed before and after.

use std::path::{Path, PathBuf};
use std::time::Instant;

use owlet_runtime::bundle::{Bundle, ModelKind};
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::blip2::Blip2;
use owlet_runtime::models::clip::Clip;
use serde::Serialize;

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
    /// BLIP-2: share of caption tokens equal to fp32's, and the first position
    /// where a caption differs (None: all identical).
    pub caption_token_agreement: Option<f64>,
    pub first_divergence: Option<(String, usize)>,
    /// Image encoder, batch 1, median ms, before and after.
    pub vision_ms: (f64, f64),
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
    std::fs::read_dir(dir).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0)
}

pub fn compare(original: &Path, converted: &Path, images: &[PathBuf], labels: &[String], graph_bytes: (u64, u64)) -> Result<Report> {
    let imgs = images
        .iter()
        .map(|p| load_rgb(p, DecodeLimits::default()))
        .collect::<owlet_runtime::Result<Vec<_>>>()?;
    let kind = Bundle::open(original)?.manifest.kind;
    let mut r = Report {
        original: original.to_path_buf(),
        converted: converted.to_path_buf(),
        precision: "fp16",
        images: imgs.len(),
        graph_bytes,
        bundle_bytes: (folder_bytes(original), folder_bytes(converted)),
        image_cosine_mean: 0.0,
        image_cosine_worst: 1.0,
        text_cosine_worst: None,
        zero_shot_agreement: None,
        caption_token_agreement: None,
        first_divergence: None,
        vision_ms: (0.0, 0.0),
    };
    let mut cosines = Vec::new();
    match kind {
        ModelKind::Clip => {
            let (a, b) = (Clip::load(original)?, Clip::load(converted)?);
            let (ea, eb) = (a.embed_images(&imgs)?, b.embed_images(&imgs)?);
            cosines = ea.rows().zip(eb.rows()).map(|(x, y)| cosine(x, y)).collect();
            if !labels.is_empty() {
                let t = vec!["a photo of a {}".to_string()];
                let (sa, sb) = (a.label_set(labels, &t)?, b.label_set(labels, &t)?);
                r.text_cosine_worst =
                    Some(sa.embeddings.rows().zip(sb.embeddings.rows()).map(|(x, y)| cosine(x, y)).fold(1.0, f64::min));
                let (ca, cb) = (a.classify_embeddings(&ea, &sa), b.classify_embeddings(&eb, &sb));
                let same = ca.iter().zip(&cb).filter(|(x, y)| x.top().0 == y.top().0).count();
                r.zero_shot_agreement = Some(same as f64 / imgs.len() as f64);
            }
            r.vision_ms = (median_ms(|| a.embed_images(&imgs[..1]).map(|_| ()))?, median_ms(|| b.embed_images(&imgs[..1]).map(|_| ()))?);
        }
        ModelKind::Blip2 => {
            let (a, b) = (Blip2::load(original)?, Blip2::load(converted)?);
            let cfg = a.default_config();
            let (mut same, mut total) = (0, 0);
            for (img, path) in imgs.iter().zip(images) {
                let (qa, qb) = (a.encode_image(img)?, b.encode_image(img)?);
                cosines.push(cosine(&qa.data, &qb.data));
                let (ga, gb) = (a.caption(&qa, &cfg, &mut |_| {})?, b.caption(&qb, &cfg, &mut |_| {})?);
                total += ga.ids.len().max(gb.ids.len());
                same += ga.ids.iter().zip(&gb.ids).take_while(|(x, y)| x == y).count();
                if r.first_divergence.is_none() && ga.ids != gb.ids {
                    let k = ga.ids.iter().zip(&gb.ids).take_while(|(x, y)| x == y).count();
                    r.first_divergence = Some((path.display().to_string(), k));
                }
            }
            r.caption_token_agreement = Some(if total == 0 { 1.0 } else { same as f64 / total as f64 });
            r.vision_ms = (median_ms(|| a.encode_image(&imgs[0]).map(|_| ()))?, median_ms(|| b.encode_image(&imgs[0]).map(|_| ()))?);
        }
    }
    if cosines.is_empty() {
        return Err(Error::Invalid("no calibration image could be compared".into()));
    }
    r.image_cosine_mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    r.image_cosine_worst = cosines.iter().copied().fold(1.0, f64::min);
    Ok(r)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        writeln!(f, "{} -> {} ({}), {} calibration images", self.original.display(), self.converted.display(), self.precision, self.images)?;
        writeln!(f, "  graphs       {:.2} MB -> {:.2} MB ({:.2}x smaller)", mb(self.graph_bytes.0), mb(self.graph_bytes.1), self.graph_bytes.0 as f64 / self.graph_bytes.1.max(1) as f64)?;
        writeln!(f, "  bundle       {:.2} MB -> {:.2} MB", mb(self.bundle_bytes.0), mb(self.bundle_bytes.1))?;
        writeln!(f, "  embeddings   cosine to fp32: mean {:.6}, worst {:.6}", self.image_cosine_mean, self.image_cosine_worst)?;
        if let Some(t) = self.text_cosine_worst {
            writeln!(f, "  label texts  cosine to fp32: worst {t:.6}")?;
        }
        if let Some(z) = self.zero_shot_agreement {
            writeln!(f, "  zero-shot    same top label as fp32: {:.1}%", z * 100.0)?;
        }
        if let Some(c) = self.caption_token_agreement {
            writeln!(f, "  captions     tokens equal to fp32's: {:.1}%", c * 100.0)?;
            match &self.first_divergence {
                None => writeln!(f, "               every caption identical")?,
                Some((img, k)) => writeln!(f, "               first divergence: {img}, token {k}")?,
            }
        }
        write!(f, "  image graph  {:.2} ms -> {:.2} ms (CPU, batch 1, median)", self.vision_ms.0, self.vision_ms.1)
    }
}
