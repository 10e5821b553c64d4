//! `owlet-quantize IN OUT --to int8|fp16 [--keep-float NAME]... [--calibrate DIR]
//! [--labels a,b,c] [--max-layer-error PCT|off] [--static-activations]`: write a
//! converted copy of an owlet bundle and report, against the original, what it cost
//! and bought. The report is printed and saved as OUT/quantize-report.json.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use owlet_quantize::{calibration_images, quantize_bundle, report, Options, Target};

#[derive(Parser, Debug)]
#[command(
    name = "owlet-quantize",
    version,
    about = "Convert an owlet bundle to int8 or fp16 and report the cost"
)]
struct Args {
    /// The fp32 bundle folder.
    input: PathBuf,
    /// The new bundle folder (must not exist, or be empty).
    output: PathBuf,
    #[arg(long, value_enum)]
    to: Target,
    /// int8: keep linear layers whose node or weight name contains NAME in float
    /// (repeatable; `vision:NAME`, `text:NAME`, `decoder:NAME` in that graph only;
    /// `none` quantizes every one). Default: the final projections
    /// (visual_projection, text_projection, language_projection); `lm_head`
    /// keeps a BLIP-2 decoder's LM head float too.
    #[arg(long, value_name = "NAME")]
    keep_float: Vec<String>,
    /// Images to measure on: the accuracy report (the new bundle against the
    /// original), each layer's own int8 error (--max-layer-error) and, with
    /// --static-activations, the activation scales.
    #[arg(long, value_name = "DIR")]
    calibrate: Option<PathBuf>,
    /// CLIP: labels for the zero-shot agreement, comma-separated.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// int8: quantize activations with one scale per layer, the largest |x| each
    /// layer saw on the --calibrate images (CLIP: and the --labels' prompts;
    /// BLIP-2: and the captions fp32 writes for them), instead of each row's own
    /// range at run time (the default).
    #[arg(long, requires = "calibrate")]
    static_activations: bool,
    /// int8, with --calibrate (CLIP: and --labels): also keep float every linear
    /// layer whose own int8 error on the set (|X·Wq - X·W| / |X·W|, X the fp32
    /// graph's input to it) is above PCT percent; `off`: none
    #[arg(long, value_name = "PCT", default_value = "3", value_parser = parse_limit)]
    max_layer_error: Limit,
}

/// `--max-layer-error`: a fraction, or None for `off`.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<f64>);

/// A percentage in (0, 100], as a fraction; `off` is none.
fn parse_limit(s: &str) -> Result<Limit, String> {
    if s == "off" {
        return Ok(Limit(None));
    }
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(Limit(Some(p / 100.0))),
        _ => Err(format!("`{s}`: give a percentage above 0 and at most 100, or `off`")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // The runtime's A/B switches (OWLET_REWRITES, OWLET_KERNELS, ...) come from the
    // environment; the library reads none itself.
    if let Err(in_force) = owlet_runtime::RuntimeOptions::from_env().install() {
        eprintln!("owlet-quantize: runtime options already set: {in_force:?}");
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owlet-quantize: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    // Check the calibration set before writing anything.
    let images = a.calibrate.as_deref().map(calibration_images).transpose()?;
    let bar = indicatif::ProgressBar::new_spinner().with_message("converting weights");
    let mut opts = Options::new(a.to);
    if !a.keep_float.is_empty() {
        opts.keep_float = a.keep_float.iter().filter(|n| n.as_str() != "none").cloned().collect();
    }
    // Layers whose own int8 error on the set is above the limit stay float. Measured
    // before anything is converted (from the fp32 graphs alone), and kept for the
    // report.
    let measured = match (&images, a.max_layer_error.0) {
        (Some(images), Some(limit)) if a.to == Target::Int8 => {
            let errors =
                owlet_quantize::layer_errors(&a.input, images, &a.labels, &opts.keep_float)?;
            let kept = owlet_quantize::sensitive_layers(&errors, limit);
            for name in &kept {
                eprintln!(
                    "keeping {name} float: its own int8 error is above {:.1}%",
                    limit * 100.0
                );
            }
            opts.keep_float.extend(kept.iter().cloned());
            Some((errors, kept, limit))
        }
        _ => None,
    };
    if a.static_activations {
        let images = images.clone().expect("clap: --static-activations requires --calibrate");
        opts.static_activations =
            Some(owlet_quantize::calibrate::CalibrationSet::new(images, &a.labels));
    }
    let stats = quantize_bundle(&a.input, &a.output, &opts, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    let before: u64 = stats.iter().map(|(_, s)| s.bytes_before).sum();
    let after: u64 = stats.iter().map(|(_, s)| s.bytes_after).sum();
    for (graph, s) in &stats {
        eprintln!("{graph}: {}", s.detail);
    }
    let Some(images) = images else {
        println!("wrote {} (graphs {before} -> {after} bytes); no --calibrate folder: accuracy not measured", a.output.display());
        return Ok(());
    };
    let mut r = report::compare(&a.input, &a.output, a.to, &images, &a.labels, (before, after))?;
    match measured {
        // Not measured (CLIP without labels): nothing to report.
        Some((errors, kept, limit)) if !errors.is_empty() => {
            (r.layer_errors, r.kept_float_for_error, r.max_layer_error) =
                (errors, kept, Some(limit));
        }
        _ => owlet_quantize::add_layer_errors(&mut r, &images, &a.labels, &opts.keep_float)?,
    }
    println!("{r}");
    std::fs::write(a.output.join("quantize-report.json"), serde_json::to_string_pretty(&r)?)?;
    Ok(())
}
