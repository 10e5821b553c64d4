//! Static activation scales (`--static-activations`): the largest |x| that reaches
//! each linear layer on a calibration set, measured in the fp32 graph itself
//! (tract, with those wires made extra outputs). int8.rs writes max / 127 as the
//! layer's `x_scale`, and the runtime then quantizes with it instead of finding
//! each row's maximum as the graph runs (runtime/src/kernels/int8: `XScale`).
//!
//! CLIP only: its two graphs run once per image and per prompt. BLIP-2's decoder
//! runs once per generated token against a growing KV cache; calibrating it would
//! mean running the captioner's loop here, which is not built.

use std::collections::HashMap;
use std::path::Path;

use owlet_runtime::bundle::{Bundle, ModelKind};
use owlet_runtime::device::Placement;
use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::tokenize::TextTokenizer;
use tract_onnx::prelude::*;

use crate::{Error, Result};

/// Largest |x| seen, by the name of the tensor X of each `MatMul(X, W)`.
pub type ActivationMax = HashMap<String, f32>;

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
        let prompts = labels.iter().map(|l| crate::report::LABEL_TEMPLATE.replace("{}", l)).collect();
        CalibrationSet { images, prompts }
    }
}

/// Images per run of the vision graph while calibrating.
const BATCH: usize = 8;

/// The activation maxima of both CLIP graphs, by manifest section ("vision",
/// "text"). `inputs_of` gives, per graph file, the tensors to measure.
pub fn clip_activation_max(
    bundle: &Bundle,
    set: &CalibrationSet,
    inputs_of: &dyn Fn(&Path) -> Result<Vec<String>>,
) -> Result<HashMap<&'static str, ActivationMax>> {
    if bundle.manifest.kind != ModelKind::Clip {
        return Err(Error::Invalid(
            "--static-activations: only CLIP bundles can be calibrated (BLIP-2's decoder runs token by token \
             against a KV cache, which calibration does not run yet); leave it out for dynamic per-row scales"
                .into(),
        ));
    }
    if set.prompts.is_empty() {
        return Err(Error::Invalid("--static-activations needs --labels: their prompts calibrate the text graph".into()));
    }
    let mut out = HashMap::new();

    let v = &bundle.manifest.vision;
    let path = bundle.path_of(&v.file);
    let side = v.preprocess.crop_size as usize;
    let mut batches = Vec::new();
    for chunk in set.images.chunks(BATCH) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
        for p in chunk {
            let img = load_rgb(p, DecodeLimits::default())?;
            owlet_runtime::preprocess::pixel_values_into(&v.preprocess, &img, &mut pixels);
        }
        let t = Tensor::from_shape(&[chunk.len(), 3, side, side], &pixels).map_err(|e| graph_error(&path, e))?;
        batches.push(tvec!(t.into()));
    }
    out.insert("vision", max_abs(&path, &inputs_of(&path)?, batches)?);

    let t = bundle.text();
    let path = bundle.path_of(&t.file);
    let tokenizer = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t.context_length, &t.pad_token)?;
    let mut batches = Vec::new();
    for chunk in set.prompts.chunks(BATCH) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let enc = tokenizer.encode_batch(&texts)?;
        let shape = [enc.batch, enc.context_length];
        let ids = Tensor::from_shape(&shape, &enc.input_ids).map_err(|e| graph_error(&path, e))?;
        let mask = Tensor::from_shape(&shape, &enc.attention_mask).map_err(|e| graph_error(&path, e))?;
        batches.push(tvec!(ids.into(), mask.into()));
    }
    out.insert("text", max_abs(&path, &inputs_of(&path)?, batches)?);
    Ok(out)
}

fn graph_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Graph(path.to_path_buf(), format!("calibration: {e:#}"))
}

/// Run the fp32 graph at `path` on each of `runs` with the tensors `names` as its
/// outputs, and return the largest finite |x| of each.
fn max_abs(path: &Path, names: &[String], runs: Vec<TVec<TValue>>) -> Result<ActivationMax> {
    if names.is_empty() {
        return Ok(ActivationMax::new());
    }
    let mut model = owlet_runtime::ops::onnx(Placement::CPU)
        .with_ignore_value_info(true)
        .model_for_path(path)
        .map_err(|e| graph_error(path, e))?;
    model.select_outputs_by_name(names).map_err(|e| graph_error(path, e))?;
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| graph_error(path, e))?;
    let mut max = vec![0f32; names.len()];
    for inputs in runs {
        let outs = plan.run(inputs).map_err(|e| graph_error(path, e))?;
        for (m, t) in max.iter_mut().zip(&outs) {
            let view = t.to_plain_array_view::<f32>().map_err(|e| graph_error(path, e))?;
            *m = view.iter().filter(|v| v.is_finite()).fold(*m, |m, v| m.max(v.abs()));
        }
    }
    Ok(names.iter().cloned().zip(max).collect())
}
