//! BLIP-2: captions, visual question answering and chat about one image.
//!
//! vision.onnx turns the image into `num_query_tokens` embeddings already in the
//! language model's space; they take the place of BLIP-2's `<image>` tokens in
//! front of the prompt (Blip2ForConditionalGeneration.generate), and the OPT
//! decoder generates from there with owlet's loop (crate::generate).

mod decoder;
pub(crate) use decoder::decoder_inputs;

use std::path::Path;

use image::RgbImage;
use ndarray::Array2;
use tokenizers::Tokenizer;
use tract_onnx::prelude::*;

pub use decoder::DecoderStats;
#[cfg(feature = "internals")]
pub use decoder::{Decoder, DecoderSession};
#[cfg(not(feature = "internals"))]
use decoder::{Decoder, DecoderSession};

use crate::bundle::{Bundle, GenerationSpec, ModelKind, PreprocessSpec};
use crate::device::{Device, Placement};
use crate::engine::Graph;
use crate::error::{Error, Result};
use crate::generate::{generate, GenerationConfig, Prefix, Strategy};
use crate::preprocess;
use crate::tokenize::load_plain;

/// Longest question accepted, in characters (a prompt must leave room to answer).
pub(crate) const MAX_QUESTION_CHARS: usize = 1000;

/// A loaded BLIP-2 bundle: the image encoder and the language model planned, ready
/// to caption, answer and chat.
pub struct Blip2 {
    /// The bundle it was loaded from.
    pub bundle: Bundle,
    vision: Graph,
    spec: PreprocessSpec,
    decoder: Decoder,
    embed: Array2<f32>,
    tokenizer: Tokenizer,
    generation: GenerationSpec,
}

/// The image, encoded once, ready to be talked about.
#[derive(Debug, Clone)]
pub struct ImageQueries {
    /// [num_query_tokens, hidden], row-major.
    pub data: Vec<f32>,
    /// num_query_tokens: the rows of `data`.
    pub len: usize,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New token ids, eos excluded.
    pub ids: Vec<u32>,
    /// The new tokens as text.
    pub text: String,
    /// How the decoder's steps went.
    pub stats: DecoderStats,
}

impl Blip2 {
    /// Load a bundle to run on the CPU.
    pub fn load(dir: impl AsRef<Path>) -> Result<Blip2> {
        Blip2::load_on(dir, Placement::CPU)
    }

    /// Where the language model runs (the image graph runs there too, unless
    /// `auto` moved one of them to the CPU).
    pub fn device(&self) -> Device {
        self.decoder.device()
    }

    /// The bundle's graphs by role.
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn graphs(&self) -> Vec<(&'static str, &Graph)> {
        vec![("vision", &self.vision), ("decoder", self.decoder.graph())]
    }

    /// Per graph (by role), the kinds of node left on the CPU and how many of each:
    /// empty on the CPU, a GPU placement's fall-backs otherwise.
    pub fn cpu_nodes(&self) -> Vec<(&'static str, Vec<(String, usize)>)> {
        self.graphs().into_iter().map(|(role, g)| (role, g.cpu_nodes())).collect()
    }

    /// Load a bundle to run where `on` says (crate::device).
    pub fn load_on(dir: impl AsRef<Path>, on: Placement) -> Result<Blip2> {
        let bundle = Bundle::open(dir)?;
        if bundle.manifest.kind != ModelKind::Blip2 {
            return Err(Error::Manifest {
                path: bundle.manifest_path(),
                field: "kind".into(),
                reason: format!(
                    "{:?} bundle given where a blip2 bundle is needed",
                    bundle.manifest.kind
                ),
            });
        }
        let v = &bundle.manifest.vision;
        let hidden = v.embed_dim;
        let vision = crate::models::load_vision(&bundle, on, 3)?;
        let d = bundle.decoder().clone();
        let decoder = Decoder::load(&bundle, on)?;
        let embed = load_embed_tokens(&bundle, hidden, decoder.vocab_size())?;
        let tpath = bundle.path_of(&d.tokenizer);
        let tokenizer = load_plain(&tpath)?;
        // Prompt ids index the table: a tokenizer larger than it is a broken bundle.
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > embed.nrows() {
            return Err(Error::BundleFile {
                path: tpath,
                what: "decoder.tokenizer",
                reason: format!(
                    "{vocab} tokens, but the embedding table has only {} rows",
                    embed.nrows()
                ),
            });
        }
        let generation = bundle.generation().clone();
        // Each special id indexes the table and the logits: out of range, the first
        // caption would panic instead of the bundle being refused here.
        let rows = embed.nrows().min(decoder.vocab_size());
        for (field, id) in [
            ("generation.image_token_id", generation.image_token_id),
            ("generation.bos_token_id", generation.bos_token_id),
            ("generation.eos_token_id", generation.eos_token_id),
            ("generation.pad_token_id", generation.pad_token_id),
        ] {
            if id as usize >= rows {
                return Err(Error::BundleFile {
                    path: bundle.dir.join(crate::bundle::MANIFEST),
                    what: field,
                    reason: format!("token id {id} is outside the vocabulary of {rows}"),
                });
            }
        }
        Ok(Blip2 {
            spec: v.preprocess.clone(),
            bundle,
            vision,
            decoder,
            embed,
            tokenizer,
            generation,
        })
    }

    /// The bundle's generation settings (prompts, query tokens, token ids, limits).
    pub fn generation_spec(&self) -> &GenerationSpec {
        &self.generation
    }

    /// Greedy decoding with the bundle's defaults: transformers' generate() defaults.
    pub fn default_config(&self) -> GenerationConfig {
        GenerationConfig {
            strategy: Strategy::Greedy,
            max_new_tokens: self.generation.max_new_tokens,
            min_new_tokens: 0,
            repetition_penalty: 1.0,
            eos_token_id: self.generation.eos_token_id,
        }
    }

    /// Encode an image into query embeddings (the vision tower, Q-Former and projection).
    pub fn encode_image(&self, img: &RgbImage) -> Result<ImageQueries> {
        let mut pixels = Vec::new();
        preprocess::pixel_values_into(&self.spec, img, &mut pixels);
        self.encode_pixels(pixels)
    }

    /// As `encode_image`, from already preprocessed pixel values [3, S, S].
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn encode_pixels(&self, pixels: Vec<f32>) -> Result<ImageQueries> {
        let input = preprocess::pixel_tensor(&self.spec, &pixels, 1)
            .map_err(|e| Error::Inference { graph: "vision", reason: e.to_string() })?;
        let out = self.vision.run("vision", tvec!(input.into()))?;
        let (q, h) = (self.generation.num_query_tokens, self.embed.ncols());
        if out.shape() != [1, q, h] {
            return Err(Error::Inference {
                graph: "vision",
                reason: format!(
                    "output shape {:?}, expected [1, {q}, {h}] (generation.num_query_tokens)",
                    out.shape()
                ),
            });
        }
        let data: Vec<f32> = out
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference { graph: "vision", reason: e.to_string() })?
            .iter()
            .cloned()
            .collect();
        Ok(ImageQueries { data, len: q })
    }

    /// Prompt ids as the model's tokenizer makes them (OPT prepends `</s>`).
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc =
            self.tokenizer.encode(prompt, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Generate after `[image queries] + prompt`.
    pub fn generate(
        &self,
        image: &ImageQueries,
        prompt: &str,
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let ids = self.prompt_ids(prompt)?;
        let hidden = self.embed.ncols();
        let total = image.len + ids.len() + cfg.max_new_tokens;
        let max = self.bundle.decoder().max_positions;
        if total > max {
            return Err(Error::Invalid(format!(
                "prompt of {} tokens + {} image queries + {} new tokens exceeds the model's {max} positions",
                ids.len(),
                image.len,
                cfg.max_new_tokens
            )));
        }
        let prefix = self.prefix(image, &ids);
        let len = image.len + ids.len();
        debug_assert_eq!(prefix.len(), len * hidden);
        let mut context = vec![self.generation.image_token_id; image.len];
        context.extend(&ids);
        let mut session = self.decoder.session(&self.embed);
        let mut out = generate(
            &mut session,
            &Prefix { embeds: &prefix, len, context_ids: &context },
            cfg,
            on_token,
        )?;
        if out.last() == Some(&cfg.eos_token_id) {
            out.pop();
        }
        let text = self.decode(&out)?;
        Ok(Generated { ids: out, text, stats: session.stats })
    }

    /// `[image queries] + embeddings of ids`, row-major [len, hidden].
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn prefix(&self, image: &ImageQueries, ids: &[u32]) -> Vec<f32> {
        let mut prefix = image.data.clone();
        for &id in ids {
            prefix.extend(self.embed.row(id as usize).iter());
        }
        prefix
    }

    /// Logits of the first generation step after `[image] + ids` (for parity checks).
    #[cfg(any(test, feature = "internals"))]
    pub fn first_logits(&self, image: &ImageQueries, ids: &[u32]) -> Result<Vec<f32>> {
        use crate::generate::StepDecoder;
        let prefix = self.prefix(image, ids);
        self.decoder.session(&self.embed).prefill(&prefix, image.len + ids.len())
    }

    /// A fresh decoder session (KV cache) for driving steps by hand.
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn session(&self) -> DecoderSession<'_> {
        self.decoder.session(&self.embed)
    }

    /// Logits of the prefill and then of each step fed `tokens` one by one (one
    /// row): what device comparisons and step benchmarks look at.
    #[cfg(any(test, feature = "internals"))]
    pub fn step_logits(
        &self,
        image: &ImageQueries,
        ids: &[u32],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>> {
        use crate::generate::StepDecoder;
        let prefix = self.prefix(image, ids);
        let mut session = self.session();
        let mut out = vec![session.prefill(&prefix, image.len + ids.len())?];
        for &t in tokens {
            out.push(session.step(&[t])?);
        }
        Ok(out)
    }

    /// Token ids back to text (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let t = self.tokenizer.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(t.trim().to_string())
    }

    /// A plain caption (the bundle's caption prompt, "" for BLIP-2).
    pub fn caption(
        &self,
        image: &ImageQueries,
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        self.generate(image, &self.generation.caption_prompt, cfg, on_token)
    }

    /// Visual question answering: "Question: {q} Answer:".
    pub fn ask(
        &self,
        image: &ImageQueries,
        question: &str,
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let q = check_question(question)?;
        let prompt = self.generation.question_template.replace("{}", q);
        self.generate(image, &prompt, cfg, on_token)
    }
}

/// The decoder's token embedding table: `hidden` wide, a row for every id the
/// decoder's logits can name.
fn load_embed_tokens(bundle: &Bundle, hidden: usize, vocab: usize) -> Result<Array2<f32>> {
    let epath = bundle.path_of(&bundle.decoder().embed_tokens);
    let embed: Array2<f32> = ndarray_npy::read_npy(&epath).map_err(|e| Error::BundleFile {
        path: epath.clone(),
        what: "decoder.embed_tokens",
        reason: format!("not a 2-D f32 .npy table: {e}"),
    })?;
    if embed.ncols() != hidden || embed.nrows() < vocab {
        return Err(Error::BundleFile {
            path: epath,
            what: "decoder.embed_tokens",
            reason: format!(
                "table is {}x{}, expected at least {vocab}x{hidden} (decoder vocabulary x \
                 vision.embed_dim)",
                embed.nrows(),
                embed.ncols(),
            ),
        });
    }
    Ok(embed)
}

fn check_question(question: &str) -> Result<&str> {
    let q = question.trim();
    if q.is_empty() {
        return Err(Error::Invalid("the question is empty".into()));
    }
    if q.chars().count() > MAX_QUESTION_CHARS {
        return Err(Error::Invalid(format!(
            "the question is {} characters long; at most {MAX_QUESTION_CHARS} are accepted",
            q.chars().count()
        )));
    }
    Ok(q)
}

/// A conversation about one image: earlier turns are folded into the prompt as
/// "Question: {q} Answer: {a}." before the new question (BLIP-2's chat recipe).
pub struct Chat<'a> {
    model: &'a Blip2,
    image: ImageQueries,
    /// The earlier turns: (question, answer).
    pub turns: Vec<(String, String)>,
}

impl<'a> Chat<'a> {
    /// A conversation about `image` with no turns yet.
    pub fn new(model: &'a Blip2, image: ImageQueries) -> Chat<'a> {
        Chat { model, image, turns: Vec::new() }
    }

    /// The prompt the next question would be asked with.
    #[cfg_attr(feature = "internals", visibility::make(pub))]
    pub(crate) fn prompt_for(&self, question: &str) -> String {
        let mut parts: Vec<String> =
            self.turns.iter().map(|(q, a)| format!("Question: {q} Answer: {a}.")).collect();
        parts.push(self.model.generation.question_template.replace("{}", question));
        parts.join(" ")
    }

    /// Asks `question` with the earlier turns in the prompt, and keeps the turn.
    pub fn ask(
        &mut self,
        question: &str,
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let q = check_question(question)?.to_string();
        let prompt = self.prompt_for(&q);
        let out = self.model.generate(&self.image, &prompt, cfg, on_token)?;
        self.turns.push((q, out.text.clone()));
        Ok(out)
    }
}

/// Turns streamed ids into text pieces: decodes the whole answer so far and
/// returns what is new, so multi-byte characters split across tokens print whole.
pub struct TextStream<'a> {
    model: &'a Blip2,
    ids: Vec<u32>,
    printed: String,
}

impl<'a> TextStream<'a> {
    /// A stream for one generation's tokens.
    pub fn new(model: &'a Blip2) -> TextStream<'a> {
        TextStream { model, ids: Vec::new(), printed: String::new() }
    }

    /// Adds the next token; returns the text it completes (may be empty).
    pub fn push(&mut self, id: u32) -> String {
        if id == self.model.generation.eos_token_id {
            return String::new();
        }
        self.ids.push(id);
        let text = self.model.tokenizer.decode(&self.ids, true).unwrap_or_default();
        let text = text.trim_start().to_string();
        if text.starts_with(&self.printed) && !text.ends_with('\u{fffd}') {
            let new = text[self.printed.len()..].to_string();
            self.printed = text;
            new
        } else {
            String::new()
        }
    }
}
