//! Static activation scales (`--static-activations`): the largest |x| that reaches
//! each linear layer on a calibration set, measured in the fp32 graph itself
//! (tract, with those wires made extra outputs). int8.rs writes max / 127 as the
//! layer's `x_scale`, and the runtime then quantizes with it instead of finding
//! each row's maximum as the graph runs (kernels/src/int8: `XScale`).
//!
//! CLIP's two graphs run once per image and once per prompt. BLIP-2's vision graph
//! runs once per image; its decoder, which the captioner runs token by token
//! against a KV cache, runs here once per image on the whole sequence: the image's
//! queries, the caption prompt and the caption fp32 generates for that image. With
//! an empty cache that call computes, at every position, what the token-by-token
//! loop computes there, so its linear layers see what they see in use.

use std::collections::HashMap;
use std::path::Path;

use owlet_runtime::image_io::{load_rgb, DecodeLimits};
use owlet_runtime::int8::{self, GraphRuns, Int8Linear};
use owlet_runtime::{Bundle, ModelKind};

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

/// The calibration set as the inputs of the bundle's graphs (built by the
/// runtime, which owns the models' inputs). `what` names the step for the error
/// when CLIP's prompts are missing.
fn runs(bundle: &Bundle, set: &CalibrationSet, what: &str) -> Result<Vec<GraphRuns>> {
    if bundle.manifest.kind == ModelKind::Clip && set.prompts.is_empty() {
        return Err(Error::Invalid(format!(
            "{what} needs --labels: their prompts calibrate the text graph"
        )));
    }
    let images = set
        .images
        .iter()
        .map(|p| load_rgb(p, DecodeLimits::default()))
        .collect::<owlet_runtime::Result<Vec<_>>>()?;
    Ok(int8::calibration_runs(bundle, &images, &set.prompts)?)
}

/// The activation maxima of both graphs, by manifest section ("vision" and
/// "text" or "decoder"). `inputs_of` gives, per graph file, the tensors to measure.
pub fn activation_max(
    bundle: &Bundle,
    set: &CalibrationSet,
    inputs_of: &dyn Fn(&str, &Path) -> Result<Vec<String>>,
) -> Result<HashMap<&'static str, ActivationMax>> {
    let mut out = HashMap::new();
    for GraphRuns { section, path, runs } in runs(bundle, set, "--static-activations")? {
        let names = inputs_of(section, &path)?;
        let mut max = vec![0f32; names.len()];
        int8::run_with_outputs::<Error>(&path, &names, runs, &mut |outs| {
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
    let mut out = Vec::new();
    for GraphRuns { section, path, runs } in runs(bundle, set, "layer errors")? {
        // Per layer: W quantized and packed for the kernel (int8 only is kept), and
        // the running sums of squares.
        let layers = crate::int8::linear_layers(
            &path,
            &crate::int8::keep_float_for(section, keep_float),
            |l, w_nk| Int8Linear::new(&w_nk, l.n, l.k),
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
        int8::run_with_outputs::<Error>(&path, &names, runs, &mut |outs| {
            for (((l, w), sum), (x, y32)) in
                layers.iter().zip(sums.iter_mut()).zip(outs[..n].iter().zip(&outs[n..]))
            {
                let x = x.to_plain_array_view::<f32>().map_err(|e| graph_error(&path, e))?;
                let x: Vec<f32> = x.iter().copied().collect();
                let m = x.len() / l.k.max(1);
                let mut y8 = vec![0f32; m * l.n];
                w.apply(&x, m, &mut y8);
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
