//! A model bundle's manifest, `owlet.toml`: what the bundle holds and how its
//! images are prepared. (owlet-runtime's `bundle` opens the folder and its files.)
//!
//! The manifest is parsed into typed structs (`deny_unknown_fields`, so a typo is
//! an error, not a silently ignored option) and then validated field by field, so
//! that a broken bundle says which field of which file is wrong.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A manifest that cannot be read or says something invalid: `field` is a dotted
/// path (`vision.preprocess.mean`) or `line N` for TOML that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {field}: {reason}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub field: String,
    pub reason: String,
}

type Result<T> = std::result::Result<T, ManifestError>;

pub const MANIFEST: &str = "owlet.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Clip,
    Blip2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale so that the shorter side is `size` (CLIPImageProcessor).
    ShortestEdge,
    /// Scale both sides to `size` (BlipImageProcessor).
    Square,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    Bicubic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropMode {
    Center,
    None,
}

/// How an image becomes `pixel_values`, as the model's image processor did it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    pub resize: ResizeMode,
    pub size: u32,
    pub resample: Resample,
    pub crop: CropMode,
    pub crop_size: u32,
    pub rescale: f64,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionSpec {
    pub file: PathBuf,
    pub precision: Precision,
    #[serde(default = "default_pixel_values")]
    pub input: String,
    #[serde(default = "default_image_embeds")]
    pub output: String,
    pub embed_dim: usize,
    pub preprocess: PreprocessSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub file: PathBuf,
    pub precision: Precision,
    pub tokenizer: PathBuf,
    /// Texts are padded with this token to `context_length` (CLIP: `<|endoftext|>`).
    pub pad_token: String,
    pub context_length: usize,
    pub embed_dim: usize,
    /// The clean-up texts get before BPE. Absent: OpenAI's, which CLIP was trained on.
    #[serde(default)]
    pub cleanup: TextCleanup,
}

/// What is done to a text before its BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TextCleanup {
    /// OpenAI's CLIP tokenizer: ftfy's `fix_text`, HTML entities decoded, whitespace
    /// collapsed, lower case.
    #[default]
    Openai,
    /// transformers' CLIPTokenizer: only the tokenizer's own normalizer (NFC,
    /// whitespace, lower case).
    Transformers,
}

impl TextCleanup {
    /// How `owlet tokenize` and the docs name it.
    pub fn describe(self) -> &'static str {
        match self {
            TextCleanup::Openai => {
                "OpenAI's (ftfy fix_text, HTML entities, whitespace, lower case)"
            }
            TextCleanup::Transformers => "transformers' CLIPTokenizer (its normalizer only)",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSpec {
    /// exp() of the trained temperature: zero-shot logits are `logit_scale * cosine`.
    pub logit_scale: f32,
}

/// BLIP-2's language model: one decoder call per generation step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderSpec {
    pub file: PathBuf,
    pub precision: Precision,
    /// Token embedding table [vocab, hidden], f32 .npy.
    pub embed_tokens: PathBuf,
    pub tokenizer: PathBuf,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Longest sequence (prompt + image queries + generated) the positions allow.
    pub max_positions: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationSpec {
    pub num_query_tokens: usize,
    /// The placeholder id the image queries stand in for (the repetition penalty
    /// sees it, as in transformers).
    pub image_token_id: u32,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
    pub max_new_tokens: usize,
    /// Prompt for plain captions ("" in BLIP-2).
    #[serde(default)]
    pub caption_prompt: String,
    /// VQA prompt with {} for the question.
    pub question_template: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: ModelKind,
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub vision: VisionSpec,
    pub text: Option<TextSpec>,
    pub clip: Option<ClipSpec>,
    pub decoder: Option<DecoderSpec>,
    pub generation: Option<GenerationSpec>,
}

fn default_pixel_values() -> String {
    "pixel_values".into()
}
fn default_image_embeds() -> String {
    "image_embeds".into()
}

impl Manifest {
    /// Parse and validate a manifest; `path` is only used in error messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text).map_err(|e| {
            let (field, reason) = crate::toml_error::locate(text, &e);
            ManifestError { path: path.to_path_buf(), field, reason }
        })?;
        m.validate(path)?;
        Ok(m)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let err = |(field, reason): (&str, String)| ManifestError {
            path: path.to_path_buf(),
            field: field.into(),
            reason,
        };
        self.check_vision().map_err(err)?;
        match self.kind {
            ModelKind::Clip => self.check_clip().map_err(err),
            ModelKind::Blip2 => self.check_blip2().map_err(err),
        }
    }

    /// `[vision]` and its preprocessing: the field that is wrong and why.
    fn check_vision(&self) -> std::result::Result<(), (&'static str, String)> {
        let p = &self.vision.preprocess;
        for (field, v) in [("vision.preprocess.mean", &p.mean), ("vision.preprocess.std", &p.std)] {
            if v.len() != 3 {
                return Err((field, format!("expected 3 values, got {}", v.len())));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err((field, "values must be finite".into()));
            }
        }
        if p.std.iter().any(|&s| s <= 0.0) {
            return Err(("vision.preprocess.std", "values must be > 0".into()));
        }
        const MAX_SIDE: u32 = 4096;
        if p.size == 0 || p.size > MAX_SIDE {
            return Err((
                "vision.preprocess.size",
                format!("must be in 1..={MAX_SIDE}, got {}", p.size),
            ));
        }
        if p.crop_size == 0 || p.crop_size > p.size {
            return Err((
                "vision.preprocess.crop_size",
                format!("must be in 1..=size ({}), got {}", p.size, p.crop_size),
            ));
        }
        if !(p.rescale.is_finite() && p.rescale > 0.0) {
            return Err(("vision.preprocess.rescale", format!("must be > 0, got {}", p.rescale)));
        }
        if self.vision.embed_dim == 0 {
            return Err(("vision.embed_dim", "must be > 0".into()));
        }
        Ok(())
    }

    /// A CLIP bundle's `[text]` and `[clip]`.
    fn check_clip(&self) -> std::result::Result<(), (&'static str, String)> {
        let t =
            self.text.as_ref().ok_or(("text", "a clip bundle needs a [text] section".into()))?;
        if t.context_length == 0 || t.context_length > 4096 {
            return Err((
                "text.context_length",
                format!("must be in 1..=4096, got {}", t.context_length),
            ));
        }
        if t.embed_dim != self.vision.embed_dim {
            return Err((
                "text.embed_dim",
                format!("{} differs from vision.embed_dim {}", t.embed_dim, self.vision.embed_dim),
            ));
        }
        let c =
            self.clip.as_ref().ok_or(("clip", "a clip bundle needs a [clip] section".into()))?;
        if !(c.logit_scale.is_finite() && c.logit_scale > 0.0) {
            return Err(("clip.logit_scale", format!("must be > 0, got {}", c.logit_scale)));
        }
        Ok(())
    }

    /// A BLIP-2 bundle's `[decoder]` and `[generation]`.
    fn check_blip2(&self) -> std::result::Result<(), (&'static str, String)> {
        let d = self
            .decoder
            .as_ref()
            .ok_or(("decoder", "a blip2 bundle needs a [decoder] section".into()))?;
        for (field, v) in [
            ("decoder.layers", d.layers),
            ("decoder.heads", d.heads),
            ("decoder.head_dim", d.head_dim),
        ] {
            if v == 0 || v > 1024 {
                return Err((field, format!("must be in 1..=1024, got {v}")));
            }
        }
        let g = self
            .generation
            .as_ref()
            .ok_or(("generation", "a blip2 bundle needs a [generation] section".into()))?;
        if g.num_query_tokens == 0 || g.num_query_tokens >= d.max_positions {
            return Err((
                "generation.num_query_tokens",
                format!(
                    "must be in 1..{} (decoder.max_positions), got {}",
                    d.max_positions, g.num_query_tokens
                ),
            ));
        }
        if !g.question_template.contains("{}") {
            return Err((
                "generation.question_template",
                "must contain {} where the question goes".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../models/clip-test/owlet.toml");

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::from_str(text, Path::new("b/owlet.toml"))
    }

    #[test]
    fn the_test_bundle_manifest_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.kind, ModelKind::Clip);
        assert_eq!(m.vision.preprocess.crop_size, 224);
    }

    #[test]
    fn a_wrong_mean_names_the_field() {
        let bad = GOOD.replace("mean = [0.48145466, 0.4578275, 0.40821073]", "mean = [0.5]");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("vision.preprocess.mean: expected 3 values, got 1"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_an_error_with_its_line() {
        let bad = GOOD.replace("[clip]", "[clip]\nlogit_scael = 3.0");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field") && e.contains("line"), "{e}");
    }

    #[test]
    fn mismatched_embedding_dims_are_refused() {
        let bad = GOOD.replacen("embed_dim = 16", "embed_dim = 8", 1);
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("text.embed_dim"), "{e}");
    }

    #[test]
    fn garbage_is_a_manifest_error_not_a_panic() {
        for junk in ["", "\u{0}\u{1}", "kind = 3", "[[[", "kind = \"clip\"\nname = 1"] {
            assert!(matches!(parse(junk), Err(ManifestError { .. })), "{junk:?}");
        }
    }
}
