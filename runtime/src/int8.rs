//! What owlet-quantize needs from the runtime to write int8 graphs and measure
//! them: one layer computed as the runtime computes it, and each graph's inputs for
//! a calibration set (built here, where the models' inputs are defined, not rebuilt
//! by the quantizer). The op itself (its ONNX domain, type and attribute) is the
//! bundle format's (`owlet_formats::int8_op`), and the weight quantization both
//! sides agree on is the kernels' (`owlet_kernels::int8::quantize_weights`).

use std::path::{Path, PathBuf};

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, ModelKind};
use crate::device::Placement;
use crate::error::{Error, Result};
use crate::kernels::int8::{self as kernels, PackedWeights, QGemmKernel, XScale};
use crate::models::blip2::Blip2;
use crate::tokenize::TextTokenizer;

/// A linear layer Y = X·Wᵀ with W quantized to int8 per output channel and X per
/// row, computed by the int8 kernel this CPU runs: what a graph's `MatMulInt8` node
/// computes without a static `x_scale`.
pub struct Int8Linear {
    kernel: QGemmKernel,
    weights: PackedWeights,
}

impl Int8Linear {
    /// Quantizes and packs `w_nk` (n output channels of k values each, row-major).
    pub fn new(w_nk: &[f32], n: usize, k: usize) -> Int8Linear {
        let kernel = kernels::FAMILY.chosen();
        let (q, scales) = kernels::quantize_weights(w_nk, n, k);
        let weights = PackedWeights::pack(&kernel, &q, n, k, scales, None);
        Int8Linear { kernel, weights }
    }

    /// `out` (m × n) = `x` (m × k) · Wᵀ.
    pub fn apply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        kernels::qmatmul(&self.kernel, x, m, &self.weights, XScale::PerRow, out);
    }
}

/// One graph of a bundle with the inputs of every calibration run.
pub struct GraphRuns {
    /// The graph's manifest section: "vision", "text" or "decoder".
    pub section: &'static str,
    /// The graph file.
    pub path: PathBuf,
    /// Each run's inputs, in the graph's input order.
    pub runs: Vec<TVec<TValue>>,
}

/// Images per run of the vision graph while calibrating.
const BATCH: usize = 8;

/// The calibration set as the inputs of the bundle's graphs. CLIP: the images
/// through the bundle's preprocessing, the prompts through its tokenizer, in batches
/// of 8 (the prompts must not be empty). BLIP-2: each image for the vision graph;
/// for the decoder, one call per image on [its queries, `caption prompt`, the
/// caption the bundle generates] with an empty KV cache, which computes at every
/// position what the token-by-token loop computes there.
pub fn calibration_runs(
    bundle: &Bundle,
    images: &[RgbImage],
    prompts: &[String],
) -> Result<Vec<GraphRuns>> {
    match bundle.manifest.kind {
        ModelKind::Clip => clip_runs(bundle, images, prompts),
        ModelKind::Blip2 => blip2_runs(bundle, images),
    }
}

fn graph_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Graph { path: path.to_path_buf(), reason: format!("calibration: {e:#}") }
}

/// One image through the bundle's preprocessing, [3, S, S].
fn pixel_values(bundle: &Bundle, img: &RgbImage) -> Vec<f32> {
    let mut pixels = Vec::new();
    crate::preprocess::pixel_values_into(&bundle.manifest.vision.preprocess, img, &mut pixels);
    pixels
}

fn clip_runs(bundle: &Bundle, images: &[RgbImage], prompts: &[String]) -> Result<Vec<GraphRuns>> {
    if prompts.is_empty() {
        return Err(Error::Invalid("calibrating CLIP's text graph needs prompts".into()));
    }
    let v = &bundle.manifest.vision;
    let vision_path = bundle.path_of(&v.file);
    let mut vision = Vec::new();
    for chunk in images.chunks(BATCH) {
        let pixels: Vec<f32> = chunk.iter().flat_map(|img| pixel_values(bundle, img)).collect();
        let t = crate::preprocess::pixel_tensor(&v.preprocess, &pixels, chunk.len())
            .map_err(|e| graph_error(&vision_path, e))?;
        vision.push(tvec!(t.into()));
    }

    let t = bundle.text();
    let text_path = bundle.path_of(&t.file);
    let tokenizer = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t)?;
    let mut text = Vec::new();
    for chunk in prompts.chunks(BATCH) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let enc = tokenizer.encode_batch(&texts)?;
        text.push(enc.graph_inputs().map_err(|e| graph_error(&text_path, e))?);
    }
    Ok(vec![
        GraphRuns { section: "vision", path: vision_path, runs: vision },
        GraphRuns { section: "text", path: text_path, runs: text },
    ])
}

fn blip2_runs(bundle: &Bundle, images: &[RgbImage]) -> Result<Vec<GraphRuns>> {
    let blip2 = Blip2::load(&bundle.dir)?;
    let cfg = blip2.default_config();
    let prompt = blip2.generation_spec().caption_prompt.clone();
    let (vision_path, d) = (bundle.path_of(&bundle.manifest.vision.file), bundle.decoder());
    let decoder_path = bundle.path_of(&d.file);
    let spec = &bundle.manifest.vision.preprocess;
    let (mut vision, mut decoder) = (Vec::new(), Vec::new());
    for img in images {
        let pixels = pixel_values(bundle, img);
        let t = crate::preprocess::pixel_tensor(spec, &pixels, 1)
            .map_err(|e| graph_error(&vision_path, e))?;
        vision.push(tvec!(t.into()));
        let queries = blip2.encode_pixels(pixels)?;
        let caption = blip2.caption(&queries, &cfg, &mut |_| {})?;
        let mut ids = blip2.prompt_ids(&prompt)?;
        ids.extend(&caption.ids);
        let embeds = blip2.prefix(&queries, &ids);
        let len = queries.len + ids.len();
        let bad = |e: TractError| graph_error(&decoder_path, e);
        let embeds =
            Tensor::from_shape(&[1, len, embeds.len() / len.max(1)], &embeds).map_err(bad)?;
        let inputs = crate::models::blip2::decoder_inputs(d, embeds, 1, len, std::iter::empty());
        decoder.push(inputs.map_err(bad)?);
    }
    Ok(vec![
        GraphRuns { section: "vision", path: vision_path, runs: vision },
        GraphRuns { section: "decoder", path: decoder_path, runs: decoder },
    ])
}

/// Runs the fp32 graph at `path` (on the CPU, owlet's ops known) on each of `runs`
/// with the tensors `names` as its outputs, in that order, handing each run's
/// outputs to `visit`: how calibration sees the activations inside a graph.
pub fn run_with_outputs<E: From<Error>>(
    path: &Path,
    names: &[String],
    runs: Vec<TVec<TValue>>,
    visit: &mut dyn FnMut(&TVec<TValue>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if names.is_empty() {
        return Ok(());
    }
    let bad = |e: TractError| E::from(graph_error(path, e));
    let mut model = crate::ops::onnx(Placement::CPU)
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(bad)?;
    model.select_outputs_by_name(names).map_err(bad)?;
    let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(bad)?;
    for inputs in runs {
        visit(&plan.run(inputs).map_err(bad)?)?;
    }
    Ok(())
}
