//! CLIP: image and text embeddings in one space, and zero-shot classification.
//!
//! Loading plans both graphs once; `embed_images` / `embed_texts` then run them on
//! batches. Embeddings come back L2-normalised, so dot products are cosines.

mod text;
mod vision;

use std::path::Path;

use image::RgbImage;

#[cfg(feature = "internals")]
pub use text::TextEncoder;
#[cfg(not(feature = "internals"))]
use text::TextEncoder;
#[cfg(feature = "internals")]
pub use vision::VisionEncoder;
#[cfg(not(feature = "internals"))]
use vision::VisionEncoder;

use crate::bundle::{Bundle, ModelKind};
use crate::device::{Device, Placement};
use crate::error::{Error, Result};
use crate::similarity::{softmax, Embeddings};

/// The prompt used when the caller gives none (CLIP paper, section 3.1.4).
pub(crate) const DEFAULT_TEMPLATE: &str = "a photo of a {}";

/// A loaded CLIP bundle: both towers planned, ready to embed and classify.
pub struct Clip {
    /// The bundle it was loaded from.
    pub bundle: Bundle,
    vision: VisionEncoder,
    text: TextEncoder,
    logit_scale: f32,
}

/// Zero-shot result for one image: labels in the caller's order with their
/// probabilities, and the index of the best one.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The labels, in the caller's order.
    pub labels: Vec<String>,
    /// Each label's probability (they sum to 1).
    pub probs: Vec<f32>,
}

impl Classification {
    /// The most probable label and its probability.
    pub fn top(&self) -> (&str, f32) {
        let (i, p) = self
            .probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("a classification has at least one label");
        (&self.labels[i], *p)
    }

    /// Labels sorted by probability, best first.
    pub fn ranked(&self) -> Vec<(&str, f32)> {
        let mut v: Vec<_> =
            self.labels.iter().map(String::as_str).zip(self.probs.iter().cloned()).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// Label prompts, embedded once and reused for every frame.
#[derive(Debug, Clone)]
pub struct LabelSet {
    /// The labels, in the caller's order.
    pub labels: Vec<String>,
    /// The prompt templates each label was embedded under (`{}` for the label).
    pub templates: Vec<String>,
    /// One normalised embedding per label (the mean over templates, renormalised).
    pub embeddings: Embeddings,
}

impl Clip {
    /// Load a bundle to run on the CPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Clip> {
        Clip::load_on(dir, Placement::CPU)
    }

    /// Where the image graph runs (the text graph runs there too, unless `auto`
    /// moved one of them to the CPU).
    pub fn device(&self) -> Device {
        self.vision.device()
    }

    /// The image tower (preprocessed pixels in, for tests and benches).
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn vision(&self) -> &VisionEncoder {
        &self.vision
    }

    /// The text tower (encoded token batches in, for tests and benches).
    #[cfg(any(test, feature = "internals"))]
    pub fn text(&self) -> &TextEncoder {
        &self.text
    }

    /// The bundle's graphs by role.
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn graphs(&self) -> Vec<(&'static str, &crate::engine::Graph)> {
        vec![("vision", self.vision.graph()), ("text", self.text.graph())]
    }

    /// Per graph (by role), the kinds of node left on the CPU and how many of each:
    /// empty on the CPU, a GPU placement's fall-backs otherwise.
    pub fn cpu_nodes(&self) -> Vec<(&'static str, Vec<(String, usize)>)> {
        self.graphs().into_iter().map(|(role, g)| (role, g.cpu_nodes())).collect()
    }

    /// Load a bundle to run where `on` says (crate::device).
    pub fn load_on(dir: impl AsRef<Path>, on: Placement) -> Result<Clip> {
        let bundle = Bundle::open(dir)?;
        if bundle.manifest.kind != ModelKind::Clip {
            return Err(Error::Manifest {
                path: bundle.manifest_path(),
                field: "kind".into(),
                reason: format!(
                    "{:?} bundle given where a clip bundle is needed",
                    bundle.manifest.kind
                ),
            });
        }
        let vision = VisionEncoder::load(&bundle, on)?;
        let text = TextEncoder::load(&bundle, on)?;
        let logit_scale = bundle.manifest.clip.as_ref().map(|c| c.logit_scale).unwrap_or(100.0);
        Ok(Clip { bundle, vision, text, logit_scale })
    }

    /// The learned temperature cosines are multiplied by before the softmax.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Normalised embeddings, one row per image (preprocessed as the bundle says).
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Embeddings> {
        self.vision.embed(images)
    }

    /// Normalised embeddings, one row per text (cleaned and tokenized as OpenAI's
    /// CLIP does).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings> {
        self.text.embed(texts)
    }

    /// Embed `labels` under every template and average per label: the CLIP paper's
    /// prompt ensembling. Templates contain `{}` where the label goes.
    pub fn label_set(&self, labels: &[String], templates: &[String]) -> Result<LabelSet> {
        if labels.is_empty() {
            return Err(Error::Invalid("no labels given".into()));
        }
        if let Some(l) = labels.iter().find(|l| l.trim().is_empty()) {
            return Err(Error::Invalid(format!("empty label in the label list ({l:?})")));
        }
        let templates: Vec<String> = if templates.is_empty() {
            vec![DEFAULT_TEMPLATE.to_string()]
        } else {
            templates.to_vec()
        };
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::Invalid(format!("template {t:?} has no {{}} for the label")));
        }
        let prompts: Vec<String> =
            labels.iter().flat_map(|l| templates.iter().map(move |t| t.replace("{}", l))).collect();
        let prompt_refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let per_prompt = self.embed_texts(&prompt_refs)?;
        let dim = per_prompt.dim;
        let mut data = vec![0f32; labels.len() * dim];
        for (p, row) in per_prompt.rows().enumerate() {
            let dst = &mut data[(p / templates.len()) * dim..][..dim];
            for (d, &x) in dst.iter_mut().zip(row) {
                *d += x / templates.len() as f32;
            }
        }
        let mut embeddings = Embeddings::new(dim, data);
        embeddings.normalize();
        Ok(LabelSet { labels: labels.to_vec(), templates, embeddings })
    }

    /// Softmax over `logit_scale * cosine` against each label.
    pub fn classify_embeddings(
        &self,
        images: &Embeddings,
        labels: &LabelSet,
    ) -> Vec<Classification> {
        images
            .dot_matrix(&labels.embeddings)
            .into_iter()
            .map(|cos| {
                let logits: Vec<f32> = cos.iter().map(|c| c * self.logit_scale).collect();
                Classification { labels: labels.labels.clone(), probs: softmax(&logits) }
            })
            .collect()
    }

    /// Zero-shot labels for each image against `labels`.
    pub fn classify(&self, images: &[RgbImage], labels: &LabelSet) -> Result<Vec<Classification>> {
        let e = self.embed_images(images)?;
        Ok(self.classify_embeddings(&e, labels))
    }
}
