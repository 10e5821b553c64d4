//! owlet-quantize: an owlet bundle in smaller precision, with a report of what
//! that cost in accuracy and bought in size and speed (issue 6).
//!
//! - fp16 (`fp16.rs`): weights stored in half, computed in f32 on the CPU (same
//!   speed, half the file) and in f16 on an fp16 GPU plan.
//! - int8 (`int8.rs`): linear layers in int8 per output channel, run by owlet's own
//!   op and kernels (owlet-runtime: ops/qmatmul.rs, kernels/int8), activations
//!   quantized per row at run time, with a zero point (or with static scales from a calibration set,
//!   `calibrate.rs`); embedding tables int8 per row; the rest fp16.

pub mod calibrate;
pub mod fp16;
pub mod int8;
pub mod measures;
pub mod onnx_file;
pub mod report;

use std::path::{Path, PathBuf};

pub(crate) use onnx_file::write_model;
use owlet_runtime::{Bundle, ModelKind, Precision};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
    #[error("{path}: {reason}", path = .0.display(), reason = .1)]
    Graph(PathBuf, String),
    #[error(transparent)]
    Bundle(#[from] owlet_runtime::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Fp16,
    Int8,
}

/// The graphs of a bundle by manifest section: [vision] and [text] or [decoder].
fn graph_sections(kind: ModelKind) -> [&'static str; 2] {
    match kind {
        ModelKind::Clip => ["vision", "text"],
        ModelKind::Blip2 => ["vision", "decoder"],
    }
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Fp16 => "fp16",
            Target::Int8 => "int8",
        }
    }
}

/// What to convert to, and (int8) which layers stay float.
#[derive(Debug, Clone)]
pub struct Options {
    pub to: Target,
    /// int8: linear layers whose node or weight name contains one of these stay in
    /// float (fp16 storage). Defaults to `int8::DEFAULT_KEEP_FLOAT`.
    pub keep_float: Vec<String>,
    /// int8: static activation scales measured on this set (calibrate.rs); None:
    /// dynamic, per row (the default).
    pub static_activations: Option<calibrate::CalibrationSet>,
}

impl Options {
    pub fn new(to: Target) -> Options {
        Options {
            to,
            keep_float: int8::DEFAULT_KEEP_FLOAT.iter().map(|s| s.to_string()).collect(),
            static_activations: None,
        }
    }
}

/// int8: a layer whose own error on the calibration set (`LayerError`) is above
/// this stays float by default (owlet-quantize `--max-layer-error`). Well-behaved
/// layers measure 0.1-1.2% here (the demo CLIP, ViT-B/32): 3% singles out a layer
/// whose inputs int8 cannot hold (the activation outliers some trained models
/// have), not the ordinary worst one.
pub const DEFAULT_MAX_LAYER_ERROR: f64 = 0.03;

/// int8: each linear layer's own int8 error (`calibrate::LayerError`) on the
/// first `report::LAYER_ERROR_IMAGES` of `images` (and, CLIP, the prompts of
/// `labels`; BLIP-2: the captions fp32 writes for them), worst first, for the
/// layers `keep_float` leaves int8. Empty for a CLIP bundle without labels (its
/// text graph would go unmeasured).
pub fn layer_errors(
    input: &Path,
    images: &[PathBuf],
    labels: &[String],
    keep_float: &[String],
) -> Result<Vec<calibrate::LayerError>> {
    let bundle = Bundle::open(input)?;
    if bundle.manifest.kind == ModelKind::Clip && labels.is_empty() {
        return Ok(Vec::new());
    }
    let set = calibrate::CalibrationSet::new(
        images.iter().take(report::LAYER_ERROR_IMAGES).cloned().collect(),
        labels,
    );
    calibrate::layer_errors(&bundle, &set, keep_float)
}

/// Measures each int8 layer's own error (`layer_errors`) on the first
/// `LAYER_ERROR_IMAGES` images (and the labels' prompts, or the captions) into the
/// report: which layers `--keep-float` would help most. int8 only; nothing is added
/// for fp16, or for CLIP without labels.
pub fn add_layer_errors(
    report: &mut report::Report,
    images: &[PathBuf],
    labels: &[String],
    keep_float: &[String],
) -> Result<()> {
    if report.precision != "int8" {
        return Ok(());
    }
    report.layer_errors = layer_errors(&report.original, images, labels, keep_float)?;
    Ok(())
}

/// The layers of `errors` above `limit`, as `--keep-float` names of their graph
/// only (`LayerError::keep_float_name`).
pub fn sensitive_layers(errors: &[calibrate::LayerError], limit: f64) -> Vec<String> {
    errors
        .iter()
        .filter(|e| e.relative_error > limit)
        .map(calibrate::LayerError::keep_float_name)
        .collect()
}

/// Float layers a graph's summary line names.
const KEPT_NAMES_SHOWN: usize = 4;

/// What the conversion of one graph did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphSummary {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// One line for people: what was converted, what was kept.
    pub detail: String,
}

/// Write `output`, a copy of the fp32 bundle `input` with its graphs converted.
pub fn quantize_bundle(
    input: &Path,
    output: &Path,
    opts: &Options,
    on_tensor: &mut dyn FnMut(),
) -> Result<Vec<(String, GraphSummary)>> {
    let bundle = Bundle::open(input)?;
    let m = &bundle.manifest;
    let precisions = match m.kind {
        ModelKind::Clip => [m.vision.precision, bundle.text().precision],
        ModelKind::Blip2 => [m.vision.precision, bundle.decoder().precision],
    };
    if precisions.iter().any(|p| *p != Precision::Fp32) {
        return Err(Error::Invalid(format!(
            "{}: only fp32 bundles can be converted (this one is {precisions:?})",
            input.display()
        )));
    }
    if output.exists() && std::fs::read_dir(output).map(|mut d| d.next().is_some()).unwrap_or(true)
    {
        return Err(Error::Invalid(format!(
            "{}: exists and is not empty; give a new folder",
            output.display()
        )));
    }
    // Calibrate before anything is written: a set that cannot be used is an error
    // that leaves no folder behind.
    let x_max = match &opts.static_activations {
        Some(_) if opts.to != Target::Int8 => {
            return Err(Error::Invalid(
                "static activation scales are for --to int8 (fp16 has no activation scales)".into(),
            ))
        }
        Some(set) => {
            let keep = &opts.keep_float;
            Some(calibrate::activation_max(&bundle, set, &|section, path| {
                int8::linear_inputs(path, &int8::keep_float_for(section, keep))
            })?)
        }
        None => None,
    };
    std::fs::create_dir_all(output).map_err(|e| Error::Io(output.to_path_buf(), e))?;
    let written = write_converted(&bundle, output, opts, x_max.as_ref(), on_tensor);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(output); // no half-written bundle left behind
    }
    written
}

fn write_converted(
    bundle: &Bundle,
    output: &Path,
    opts: &Options,
    x_max: Option<&std::collections::HashMap<&'static str, calibrate::ActivationMax>>,
    on_tensor: &mut dyn FnMut(),
) -> Result<Vec<(String, GraphSummary)>> {
    let input = bundle.dir.as_path();
    let m = &bundle.manifest;

    let manifest_path = bundle.manifest_path();
    let text =
        std::fs::read_to_string(&manifest_path).map_err(|e| Error::Io(manifest_path.clone(), e))?;
    let mut manifest: toml::Table =
        text.parse().map_err(|e| Error::Graph(manifest_path.clone(), format!("{e}")))?;
    let mut stats = Vec::new();
    // The graphs and the external data files they read (converted, not copied).
    let mut graph_files = std::collections::BTreeSet::new();
    for section in graph_sections(m.kind) {
        let table = manifest.get_mut(section).and_then(|v| v.as_table_mut()).ok_or_else(|| {
            Error::Graph(manifest_path.clone(), format!("no [{section}] section"))
        })?;
        let file = table.get("file").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let (from, to) = (bundle.path_of(Path::new(&file)), output.join(&file));
        let summary = match opts.to {
            Target::Fp16 => fp16_graph(&from, &to, on_tensor)?,
            Target::Int8 => {
                let x_max = x_max.and_then(|m| m.get(section));
                int8_graph(
                    &from,
                    &to,
                    &int8::keep_float_for(section, &opts.keep_float),
                    x_max,
                    on_tensor,
                )?
            }
        };
        graph_files.extend(summary.1);
        let s = summary.0;
        table.insert("precision".into(), opts.to.name().into());
        graph_files.insert(file);
        stats.push((section.to_string(), s));
    }
    // Everything else (tokenizers, the token embedding table) as it is.
    for entry in std::fs::read_dir(input).map_err(|e| Error::Io(input.to_path_buf(), e))?.flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_file()
            && name != "owlet.toml"
            && !graph_files.contains(&name)
            && !output.join(&name).exists()
        {
            std::fs::copy(entry.path(), output.join(&name))
                .map_err(|e| Error::Io(entry.path(), e))?;
        }
    }
    if let Some(name) =
        manifest.get("name").and_then(|v| v.as_str()).map(|n| format!("{n}-{}", opts.to.name()))
    {
        manifest.insert("name".into(), name.into());
    }
    let out_manifest = output.join("owlet.toml");
    std::fs::write(
        &out_manifest,
        toml::to_string(&manifest).map_err(|e| Error::Invalid(e.to_string()))?,
    )
    .map_err(|e| Error::Io(out_manifest, e))?;
    // The result must load: a bundle owlet cannot open is not written silently.
    Bundle::open(output)?;
    Ok(stats)
}

/// One graph to fp16: its summary and the external data files it read.
fn fp16_graph(
    from: &Path,
    to: &Path,
    on_tensor: &mut dyn FnMut(),
) -> Result<(GraphSummary, std::collections::BTreeSet<String>)> {
    let s = fp16::convert_file(from, to, on_tensor)?;
    let detail = format!("{} tensors to fp16, {} small ones kept f32", s.converted, s.kept_f32);
    let summary = GraphSummary { bytes_before: s.bytes_before, bytes_after: s.bytes_after, detail };
    Ok((summary, s.external_files))
}

/// One graph to int8: its summary and the external data files it read.
fn int8_graph(
    from: &Path,
    to: &Path,
    keep: &[String],
    x_max: Option<&calibrate::ActivationMax>,
    on_tensor: &mut dyn FnMut(),
) -> Result<(GraphSummary, std::collections::BTreeSet<String>)> {
    let s = int8::convert_file(from, to, keep, x_max, on_tensor)?;
    let activations = match x_max {
        Some(_) => format!("{} with static activation scales", s.static_scales),
        None => "activations per row".into(),
    };
    let kept_names = match s.kept_float.len() {
        0 => String::new(),
        // A whole tower kept float would be a screenful of names.
        n if n > KEPT_NAMES_SHOWN => format!(
            " ({}, and {} more)",
            s.kept_float[..KEPT_NAMES_SHOWN].join(", "),
            n - KEPT_NAMES_SHOWN
        ),
        _ => format!(" ({})", s.kept_float.join(", ")),
    };
    let detail = format!(
        "{} linear layers to int8 ({} with their bias, {activations}), {} embedding tables to \
         int8, {} kept float{kept_names}, {} other tensors to fp16",
        s.quantized,
        s.with_bias,
        s.tables,
        s.kept_float.len(),
        s.fp16
    );
    let summary = GraphSummary { bytes_before: s.bytes_before, bytes_after: s.bytes_after, detail };
    Ok((summary, s.external_files))
}

/// Image files of a calibration folder; an empty or missing folder is an error.
pub fn calibration_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                owlet_runtime::image_io::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "calibration folder {}: no images in it",
            dir.display()
        )));
    }
    Ok(files)
}
