//! `owlet`: CLIP and BLIP-2 from the shell. A thin layer over owlet-runtime: parse arguments,
//! call the runtime, print a table or JSON. Errors are printed once, here.

mod args;
mod bench_cmd;
mod blip2_cmds;
mod cpu_info;
mod doctor_cmd;
mod index_cmds;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use image::RgbImage;
use owlet_runtime::device::Placement;
use owlet_runtime::image_io::{self, DecodeLimits};
use owlet_runtime::models::Clip;
use owlet_runtime::preprocess;
use owlet_runtime::tokenize::TextTokenizer;
use owlet_runtime::Bundle;
use serde_json::json;

use args::{Cli, Command, Common};

/// Exit codes: 0 all good, 1 some inputs failed (the rest were processed), 2 error.
const SOME_INPUTS_FAILED: u8 = 1;
const FAILED: u8 = 2;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`owlet embed ... | head`)
    // would panic in println!. Like cat or grep, owlet then just ends.
    #[cfg(unix)]
    // SAFETY: setting a signal disposition at start, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // The runtime's A/B switches (OWLET_REWRITES, OWLET_KERNELS, ...) come from the
    // environment; the library reads none itself.
    if let Err(in_force) = owlet_runtime::RuntimeOptions::from_env().install() {
        log::warn!("runtime options already set: {in_force:?}");
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("owlet: error: {e:#}");
            ExitCode::from(FAILED)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Embed { common, images, text } => embed(&common, &images, &text),
        Command::Similarity { common, images, texts } => similarity(&common, &images, &texts),
        Command::Classify { common, labels, templates, top, images } => {
            classify(&common, &labels, &templates, top, &images)
        }
        Command::Tokenize { common, text } => tokenize(&common, &text),
        Command::Preprocess { common, image, output } => preprocess_cmd(&common, &image, &output),
        Command::Caption { common, gen, prompt, images } => {
            blip2_cmds::caption(&common, &gen, prompt.as_deref(), &images)
        }
        Command::Ask { common, gen, image, question } => {
            blip2_cmds::ask(&common, &gen, &image, &question)
        }
        Command::Chat { common, gen, image } => blip2_cmds::chat(&common, &gen, &image),
        Command::Index {
            action:
                args::IndexCommand::Add {
                    common,
                    index,
                    precision,
                    batch,
                    camera,
                    thumbnail_px,
                    max_mb,
                    paths,
                },
        } => {
            let to = index_cmds::AddTo { index, precision, batch, camera, thumbnail_px, max_mb };
            index_cmds::add(&common, &to, &paths)
        }
        Command::Search { common, index, text, image, k, only } => {
            index_cmds::search(&common, &index, text.as_deref(), image.as_deref(), k, &only)
        }
        Command::Cluster { common, index, k, keywords, sheet, seed } => {
            index_cmds::cluster(&common, &index, k, keywords.as_deref(), sheet.as_deref(), seed)
        }
        Command::Bench { common, batch, runs, steps, profile } => {
            bench_cmd::bench(&common, &batch, runs, steps, profile)
        }
        Command::Doctor { models, warm, gpu_precision, json } => {
            doctor_cmd::doctor(&models, warm, gpu_precision, json)
        }
    }
}

/// Threads and device from the common options, before a model is loaded.
pub(crate) fn placement(common: &Common) -> Result<Placement> {
    owlet_runtime::set_threads(
        common.threads.map(usize::from).unwrap_or_else(owlet_runtime::default_threads),
    );
    Ok(Placement::choose(common.device, common.gpu_precision)?)
}

/// Record where the model runs: in JSON results, and on stderr when it is the GPU
/// (the log, RUST_LOG=info, always says).
pub(crate) fn report_device(common: &Common, device: owlet_runtime::device::Device) {
    output::set_device(device);
    if device == owlet_runtime::device::Device::Cuda && !common.json {
        eprintln!("owlet: running on {device}");
    }
}

pub(crate) fn load_clip(common: &Common) -> Result<Clip> {
    let on = placement(common)?;
    let clip = Clip::load_on(&common.model, on)
        .with_context(|| format!("loading model bundle {}", common.model.display()))?;
    report_device(common, clip.device());
    Ok(clip)
}

/// Images that decoded, with their names, and how many did not.
struct Loaded {
    names: Vec<String>,
    images: Vec<RgbImage>,
    failed: usize,
}

/// Decode every image; report the ones that fail and keep the rest.
fn load_images(paths: &[PathBuf]) -> Loaded {
    let mut l = Loaded { names: Vec::new(), images: Vec::new(), failed: 0 };
    for p in paths {
        match image_io::load_rgb(p, DecodeLimits::default()) {
            Ok(img) => {
                l.names.push(p.display().to_string());
                l.images.push(img);
            }
            Err(e) => {
                eprintln!("owlet: skipping image: {e}");
                l.failed += 1;
            }
        }
    }
    l
}

fn exit_for(failed: usize, done: usize) -> Result<ExitCode> {
    if done == 0 && failed > 0 {
        anyhow::bail!("no input could be read");
    }
    Ok(if failed > 0 { ExitCode::from(SOME_INPUTS_FAILED) } else { ExitCode::SUCCESS })
}

fn embed(common: &Common, images: &[PathBuf], texts: &[String]) -> Result<ExitCode> {
    let clip = load_clip(common)?;
    let (names, embeddings, failed) = if !texts.is_empty() {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        (texts.to_vec(), clip.embed_texts(&refs)?, 0)
    } else {
        let l = load_images(images);
        if l.images.is_empty() {
            return exit_for(l.failed, 0);
        }
        (l.names, clip.embed_images(&l.images)?, l.failed)
    };
    if common.json {
        let rows: Vec<_> = names
            .iter()
            .zip(embeddings.rows())
            .map(|(n, e)| json!({"input": n, "embedding": e}))
            .collect();
        output::print_json(
            &json!({"model": clip.bundle.manifest.name, "dim": embeddings.dim, "embeddings": rows}),
        );
    } else {
        for (n, e) in names.iter().zip(embeddings.rows()) {
            println!("{}", output::embedding_line(n, e));
        }
    }
    exit_for(failed, names.len())
}

fn similarity(common: &Common, images: &[PathBuf], texts: &[String]) -> Result<ExitCode> {
    let clip = load_clip(common)?;
    let Loaded { names, images, failed } = load_images(images);
    if images.is_empty() {
        return exit_for(failed, 0);
    }
    let ie = clip.embed_images(&images)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let te = clip.embed_texts(&refs)?;
    let cos = ie.dot_matrix(&te);
    let probs: Vec<Vec<f32>> = cos
        .iter()
        .map(|row| {
            let logits: Vec<f32> = row.iter().map(|c| c * clip.logit_scale()).collect();
            owlet_runtime::similarity::softmax(&logits)
        })
        .collect();
    if common.json {
        output::print_json(&json!({
            "model": clip.bundle.manifest.name, "images": names, "texts": texts,
            "cosine": cos, "probs": probs, "logit_scale": clip.logit_scale(),
        }));
    } else {
        print!("{}", output::matrix_table("cosine", &names, texts, &cos, 4));
        println!();
        print!("{}", output::matrix_table("p(text | image)", &names, texts, &probs, 4));
    }
    exit_for(failed, names.len())
}

fn parse_labels(labels: &str) -> Vec<String> {
    labels.split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn classify(
    common: &Common,
    labels: &str,
    templates: &[String],
    top: usize,
    images: &[PathBuf],
) -> Result<ExitCode> {
    let labels = parse_labels(labels);
    if labels.is_empty() {
        anyhow::bail!("--labels is empty: give a comma-separated list such as \"cat,dog,car\"");
    }
    let clip = load_clip(common)?;
    let set = clip.label_set(&labels, templates)?;
    let Loaded { names, images, failed } = load_images(images);
    if images.is_empty() {
        return exit_for(failed, 0);
    }
    let results = clip.classify(&images, &set)?;
    if common.json {
        let rows: Vec<_> = names
            .iter()
            .zip(&results)
            .map(|(p, c)| {
                let (label, score) = c.top();
                let scores: serde_json::Map<String, serde_json::Value> =
                    c.labels.iter().zip(&c.probs).map(|(l, p)| (l.clone(), json!(p))).collect();
                json!({"image": p, "top_label": label, "top_score": score, "scores": scores})
            })
            .collect();
        output::print_json(
            &json!({"model": clip.bundle.manifest.name, "templates": set.templates, "results": rows}),
        );
    } else {
        for (p, c) in names.iter().zip(&results) {
            println!("{p}");
            for (label, prob) in c.ranked().into_iter().take(top.max(1)) {
                println!("  {:>6.2}%  {label}", prob * 100.0);
            }
        }
    }
    exit_for(failed, names.len())
}

fn tokenize(common: &Common, text: &str) -> Result<ExitCode> {
    let bundle = Bundle::open(&common.model)?;
    let t = bundle.text();
    let tok = TextTokenizer::load(&bundle.path_of(&t.tokenizer), t)?;
    let t = tok.tokenize(text)?;
    if common.json {
        output::print_json(&json!({
            "text": text,
            "cleanup": tok.cleanup(),
            "cleaned": t.cleaned,
            "input_ids": t.ids,
            "tokens": t.tokens,
            "pieces": t.pieces,
        }));
    } else {
        println!("{} tokens (context length {})", t.ids.len(), bundle.text().context_length);
        println!("clean-up: {}", tok.cleanup().describe());
        if t.cleaned != text {
            println!("cleaned:  {:?}", t.cleaned);
        }
        // A piece's trailing space is the end of a word ("</w>" in the vocabulary).
        for (id, piece) in t.ids.iter().zip(&t.pieces) {
            println!("{id:>7}  {piece:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn preprocess_cmd(common: &Common, image: &Path, out: &Path) -> Result<ExitCode> {
    let bundle = Bundle::open(&common.model)?;
    let img = image_io::load_rgb(image, DecodeLimits::default())?;
    let view = preprocess::model_view(&bundle.manifest.vision.preprocess, &img);
    view.save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", out.display()))?;
    if common.json {
        output::print_json(
            &json!({"input": image.display().to_string(), "output": out.display().to_string(),
            "width": view.width(), "height": view.height()}),
        );
    } else {
        println!(
            "{} ({}x{}) -> {} ({}x{})",
            image.display(),
            img.width(),
            img.height(),
            out.display(),
            view.width(),
            view.height()
        );
    }
    Ok(ExitCode::SUCCESS)
}
