//! Static activation scales (`--static-activations`): the largest |x| that reaches
//! each linear layer on a calibration set, measured in the fp32 graph itself
//! (tract, with those wires made extra outputs). int8.rs writes max / 127 as the
//! layer's `x_scale`, and the runtime then quantizes with it instead of finding
//! each row's maximum as the graph runs (runtime/src/kernels/int8: `XScale`).
//!
//! CLIP's two graphs run once per image and once per prompt. BLIP-2's vision graph
//! runs once per image; its decoder, which the captioner runs token by token
//! against a KV cache, runs here once per image on the whole sequence: the image's
//! queries, the caption prompt and the caption fp32 generates for that image. With
//! an empty cache that call computes, at every position, what the token-by-token
//! loop computes there, so its linear layers see what they see in use.

use std::collections::HashMap;
use std::path::Path;

use owlet_runtime::bundle::{Bundle, ModelKind};
use owlet_runtime::device::Placement;
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::models::blip2::Blip2;
use owlet_runtime::tokenize::TextTokenizer;
use tract_onnx::prelude::*;

pub use crate::measures::{ActivationMax, LayerError};
use crate::{Error, Result};

/// What static calibration runs the graphs on.
#[derive(Debug, Clone)]
pub struct CalibrationSet {
    pub images: Vec<std::path::PathBuf>,
    /// CLIP text graph: the prompts (the labels in the report's template).
    pub prompts: Vec<String>,
}

impl CalibrationSet {
    /// The images and the labels in the report's prompt template.
    pub fn new(images: Vec<std::path::PathBuf>, labels: &[String]) -> CalibrationSet {
        let prompts =
            labels.iter().map(|l| crate::measures::LABEL_TEMPLATE.replace("{}", l)).collect();
        CalibrationSet { images, prompts }
    }
}

/// Images per run of the vision graph while calibrating.
const BATCH: usize = 8;

/// A bundle's two graphs (by manifest section), each with the inputs of every
/// calibration run.
type Runs = Vec<(&'static str, std::path::PathBuf, Vec<TVec<TValue>>)>;

/// The calibration set as the inputs of the bundle's graphs (`clip_runs`,
/// `blip2_runs`).
fn runs(bundle: &Bundle, set: &CalibrationSet, what: &str) -> Result<Runs> {
    match bundle.manifest.kind {
        ModelKind::Clip => clip_runs(bundle, set, what),
        ModelKind::Blip2 => blip2_runs(bundle, set),
    }
}

/// The images through the bundle's preprocessing, [1, 3, S, S] each.
fn pixel_values(bundle: &Bundle, path: &Path) -> Result<Vec<f32>> {
    let img = load_rgb(path, DecodeLimits::default())?;
    let mut pixels = Vec::new();
    owlet_runtime::preprocess::pixel_values_into(
        &bundle.manifest.vision.preprocess,
        &img,
        &mut pixels,
    );
    Ok(pixels)
}

/// BLIP-2: each image for the vision graph; for the decoder, one call per image
/// on [its queries, the caption prompt, the caption fp32 generates] (greedy, the
/// bundle's defaults) with an empty KV cache.
fn blip2_runs(bundle: &Bundle, set: &CalibrationSet) -> Result<Runs> {
    let blip2 = Blip2::load(&bundle.dir)?;
    let cfg = blip2.default_config();
    let prompt =
        bundle.manifest.generation.as_ref().map(|g| g.caption_prompt.clone()).unwrap_or_default();
    let (vision_path, d) = (bundle.path_of(&bundle.manifest.vision.file), bundle.decoder());
    let decoder_path = bundle.path_of(&d.file);
    let side = bundle.manifest.vision.preprocess.crop_size as usize;
    let (mut vision, mut decoder) = (Vec::new(), Vec::new());
    for path in &set.images {
        let pixels = pixel_values(bundle, path)?;
        let t = Tensor::from_shape(&[1, 3, side, side], &pixels)
            .map_err(|e| graph_error(&vision_path, e))?;
        vision.push(tvec!(t.into()));
        let queries = blip2.encode_pixels(pixels)?;
        let caption = blip2.caption(&queries, &cfg, &mut |_| {})?;
        let mut ids = blip2.prompt_ids(&prompt)?;
        ids.extend(&caption.ids);
        let embeds = blip2.prefix(&queries, &ids);
        let len = queries.len + ids.len();
        let bad = |e: TractError| graph_error(&decoder_path, e);
        let mut inputs: TVec<TValue> = tvec!(
            Tensor::from_shape(&[1, len, embeds.len() / len.max(1)], &embeds).map_err(bad)?.into(),
            Tensor::from_shape(&[1, len], &vec![1i64; len]).map_err(bad)?.into()
        );
        for _ in 0..2 * d.layers {
            inputs.push(Tensor::zero::<f32>(&[1, d.heads, 0, d.head_dim]).map_err(bad)?.into());
        }
        decoder.push(inputs);
    }
    Ok(vec![("vision", vision_path, vision), ("decoder", decoder_path, decoder)])
}

/// CLIP: the images through the bundle's preprocessing for the vision graph, the
/// prompts through its tokenizer for the text graph, in batches of `BATCH`. The
/// prompts must not be empty.
fn clip_runs(bundle: &Bundle, set: &CalibrationSet, what: &str) -> Result<Runs> {
    if set.prompts.is_empty() {
        return Err(Error::Invalid(format!(
            "{what} needs --labels: their prompts calibrate the text graph"
        )));
    }
    let v = &bundle.manifest.vision;
    let vision_path = bundle.path_of(&v.file);
    let side = v.preprocess.crop_size as usize;
    let mut vision = Vec::new();
    for chunk in set.images.chunks(BATCH) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
        for p in chunk {
            pixels.extend(pixel_values(bundle, p)?);
        }
        let t = Tensor::from_shape(&[chunk.len(), 3, side, side], &pixels)
            .map_err(|e| graph_error(&vision_path, e))?;
        vision.push(tvec!(t.into()));
    }

    let t = bundle.text();
    let text_path = bundle.path_of(&t.file);
    let tokenizer = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t)?;
    let mut text = Vec::new();
    for chunk in set.prompts.chunks(BATCH) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let enc = tokenizer.encode_batch(&texts)?;
        let shape = [enc.batch, enc.context_length];
        let ids =
            Tensor::from_shape(&shape, &enc.input_ids).map_err(|e| graph_error(&text_path, e))?;
        let mask = Tensor::from_shape(&shape, &enc.attention_mask)
            .map_err(|e| graph_error(&text_path, e))?;
        text.push(tvec!(ids.into(), mask.into()));
    }
    Ok(vec![("vision", vision_path, vision), ("text", text_path, text)])
}

/// The activation maxima of both graphs, by manifest section ("vision" and
/// "text" or "decoder"). `inputs_of` gives, per graph file, the tensors to measure.
pub fn activation_max(
    bundle: &Bundle,
    set: &CalibrationSet,
    inputs_of: &dyn Fn(&str, &Path) -> Result<Vec<String>>,
) -> Result<HashMap<&'static str, ActivationMax>> {
    let mut out = HashMap::new();
    for (section, path, runs) in runs(bundle, set, "--static-activations")? {
        let names = inputs_of(section, &path)?;
        let mut max = vec![0f32; names.len()];
        run_with_outputs(&path, &names, runs, &mut |outs| {
            for (m, t) in max.iter_mut().zip(outs) {
                let view = t.to_plain_array_view::<f32>().map_err(|e| graph_error(&path, e))?;
                *m = view.iter().filter(|v| v.is_finite()).fold(*m, |m, v| m.max(v.abs()));
            }
            Ok(())
        })?;
        out.insert(section, names.into_iter().zip(max).collect());
    }
    Ok(out)
}

/// Every int8 layer's own error (`LayerError`), worst first: where keeping a layer
/// in float (`--keep-float`) would matter most.
pub fn layer_errors(
    bundle: &Bundle,
    set: &CalibrationSet,
    keep_float: &[String],
) -> Result<Vec<LayerError>> {
    use owlet_runtime::kernels::int8::{self, PackedWeights, XScale};
    let kernel = int8::best();
    let mut out = Vec::new();
    for (section, path, runs) in runs(bundle, set, "layer errors")? {
        // Per layer: W quantized and packed for the kernel (int8 only is kept), and
        // the running sums of squares.
        let layers = crate::int8::linear_layers(
            &path,
            &crate::int8::keep_float_for(section, keep_float),
            |l, w_nk| {
                let (q, scales) = int8::quantize_weights(&w_nk, l.n, l.k);
                PackedWeights::pack(&kernel, &q, l.n, l.k, scales, None)
            },
        )?;
        // The fp32 graph's own X and X·W of every layer: X for the int8 product,
        // X·W the reference it is measured against.
        let n = layers.len();
        let names: Vec<String> = layers
            .iter()
            .map(|(l, _)| l.input.clone())
            .chain(layers.iter().map(|(l, _)| l.output.clone()))
            .collect();
        let mut sums = vec![(0f64, 0f64); n];
        run_with_outputs(&path, &names, runs, &mut |outs| {
            for (((l, w), sum), (x, y32)) in
                layers.iter().zip(sums.iter_mut()).zip(outs[..n].iter().zip(&outs[n..]))
            {
                let x = x.to_plain_array_view::<f32>().map_err(|e| graph_error(&path, e))?;
                let x: Vec<f32> = x.iter().copied().collect();
                let m = x.len() / l.k.max(1);
                let mut y8 = vec![0f32; m * l.n];
                int8::qmatmul(&kernel, &x, m, w, XScale::PerRow, &mut y8);
                let y32 = y32.to_plain_array_view::<f32>().map_err(|e| graph_error(&path, e))?;
                if y32.len() != y8.len() {
                    return Err(graph_error(
                        &path,
                        format!("{}: X·W has {} values, expected {}", l.node, y32.len(), y8.len()),
                    ));
                }
                for (a, b) in y8.iter().zip(y32.iter()) {
                    sum.0 += ((a - b) as f64).powi(2);
                    sum.1 += (*b as f64).powi(2);
                }
            }
            Ok(())
        })?;
        for ((l, _), (err, norm)) in layers.into_iter().zip(sums) {
            out.push(LayerError {
                graph: section,
                layer: l.node,
                weight: l.weight,
                relative_error: (err / norm.max(1e-30)).sqrt(),
            });
        }
    }
    out.sort_by(|a, b| b.relative_error.total_cmp(&a.relative_error));
    Ok(out)
}

fn graph_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Graph(path.to_path_buf(), format!("calibration: {e:#}"))
}

/// Run the fp32 graph at `path` on each of `runs` with the tensors `names` as its
/// outputs (in that order), handing each run's outputs to `visit`.
fn run_with_outputs(
    path: &Path,
    names: &[String],
    runs: Vec<TVec<TValue>>,
    visit: &mut dyn FnMut(&TVec<TValue>) -> Result<()>,
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut model = owlet_runtime::ops::onnx(Placement::CPU)
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(|e| graph_error(path, e))?;
    model.select_outputs_by_name(names).map_err(|e| graph_error(path, e))?;
    let plan =
        model.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| graph_error(path, e))?;
    for inputs in runs {
        visit(&plan.run(inputs).map_err(|e| graph_error(path, e))?)?;
    }
    Ok(())
}
