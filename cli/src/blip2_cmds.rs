//! `owlet caption`, `owlet ask`, `owlet chat`: BLIP-2 from the shell.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use owlet_runtime::image_io::{self, DecodeLimits};
use owlet_runtime::models::{Blip2, Chat, GenerationConfig, Strategy, TextStream};
use serde_json::json;

use crate::args::{Common, GenArgs};
use crate::output::print_json;

pub(crate) fn load(common: &Common) -> Result<Blip2> {
    let on = crate::placement(common)?;
    let model = Blip2::load_on(&common.model, on)
        .with_context(|| format!("loading model bundle {}", common.model.display()))?;
    crate::report_device(common, model.device());
    Ok(model)
}

fn config(model: &Blip2, g: &GenArgs) -> GenerationConfig {
    let mut c = model.default_config();
    c.max_new_tokens = g.max_new_tokens.unwrap_or(c.max_new_tokens);
    c.min_new_tokens = g.min_new_tokens;
    c.repetition_penalty = g.repetition_penalty;
    c.strategy = if g.sample {
        Strategy::Sample {
            temperature: g.temperature,
            top_k: g.top_k,
            top_p: g.top_p,
            seed: g.seed,
        }
    } else if g.beams > 1 {
        Strategy::Beam {
            num_beams: g.beams,
            length_penalty: g.length_penalty,
            early_stopping: false,
        }
    } else {
        Strategy::Greedy
    };
    c
}

/// A token callback that prints each final token's text as it arrives, when `live`
/// (not for JSON output).
fn printer<'a>(model: &'a Blip2, live: bool) -> impl FnMut(u32) + 'a {
    let mut stream = TextStream::new(model);
    move |id| {
        if live {
            print!("{}", stream.push(id));
            let _ = std::io::stdout().flush();
        }
    }
}

pub fn caption(
    common: &Common,
    g: &GenArgs,
    prompt: Option<&str>,
    images: &[PathBuf],
) -> Result<ExitCode> {
    let loading = Instant::now();
    let model = load(common)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let cfg = config(&model, g);
    let prompt = prompt
        .map(str::to_string)
        .unwrap_or_else(|| model.generation_spec().caption_prompt.clone());
    let mut rows = Vec::new();
    let mut failed = 0;
    for path in images {
        let img = match image_io::load_rgb(path, DecodeLimits::default()) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("owlet: skipping image: {e}");
                failed += 1;
                continue;
            }
        };
        let t = Instant::now();
        let q = model.encode_image(&img)?;
        if !common.json {
            print!("{}: {prompt}", path.display());
        }
        let mut print = printer(&model, !common.json);
        // Time to the first token: image encoding and the prefix's decoder call.
        let mut first_token_ms = None;
        let out = model.generate(&q, &prompt, &cfg, &mut |id| {
            first_token_ms.get_or_insert_with(|| t.elapsed().as_secs_f64() * 1e3);
            print(id)
        })?;
        if common.json {
            rows.push(json!({"image": path.display().to_string(), "prompt": prompt,
                "caption": out.text, "token_ids": out.ids,
                "latency_ms": t.elapsed().as_secs_f64() * 1e3, "first_token_ms": first_token_ms}));
        } else {
            println!();
        }
    }
    if common.json {
        print_json(
            &json!({"model": model.bundle.manifest.name, "load_ms": load_ms, "results": rows}),
        );
    }
    if failed > 0 && failed == images.len() {
        anyhow::bail!("no image could be read");
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn ask(common: &Common, g: &GenArgs, image: &Path, question: &str) -> Result<ExitCode> {
    let model = load(common)?;
    let cfg = config(&model, g);
    let img = image_io::load_rgb(image, DecodeLimits::default())?;
    let q = model.encode_image(&img)?;
    let out = model.ask(&q, question, &cfg, &mut printer(&model, !common.json))?;
    if common.json {
        print_json(
            &json!({"model": model.bundle.manifest.name, "image": image.display().to_string(),
            "question": question, "answer": out.text, "token_ids": out.ids}),
        );
    } else {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn chat(common: &Common, g: &GenArgs, image: &Path) -> Result<ExitCode> {
    let model = load(common)?;
    let cfg = config(&model, g);
    let img = image_io::load_rgb(image, DecodeLimits::default())?;
    let mut chat = Chat::new(&model, model.encode_image(&img)?);
    let stdin = std::io::stdin();
    let interactive = !common.json;
    if interactive {
        eprintln!("Ask about {} (an empty line ends the chat).", image.display());
    }
    for line in stdin.lock().lines() {
        let line = line.context("reading a question from stdin")?;
        let question = line.trim();
        if question.is_empty() {
            break;
        }
        if interactive {
            print!("> ");
        }
        match chat.ask(question, &cfg, &mut printer(&model, interactive)) {
            Ok(out) => {
                if common.json {
                    println!(
                        "{}",
                        json!({"question": question, "answer": out.text, "device": model.device()})
                    );
                } else {
                    println!();
                }
            }
            // A bad question ends nothing: say why and wait for the next one.
            Err(e) => {
                if interactive {
                    println!();
                }
                eprintln!("owlet: {e}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
