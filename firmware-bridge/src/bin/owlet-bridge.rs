//! `owlet-bridge`: the device daemon. With `--demo` (or no config), it runs on the
//! bundled CLIP model and the bundled frames and prints what it would publish.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use owlet_bridge::analyze::{now_ms, Analyzer, Trigger};
use owlet_bridge::config::{CameraConfig, Config, SourceConfig};
use owlet_bridge::source::folder;
use owlet_bridge::{error_topic, labels_topic};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "owlet-bridge", version, about = "owlet's device daemon: camera frames in, labels out")]
struct Args {
    /// Configuration file (TOML); every option has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run on the bundled model and frames (models/clip-test, models/demo-frames).
    #[arg(long)]
    demo: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Print compact JSON payloads (one line each) instead of pretty ones.
    #[arg(long)]
    compact: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("owlet-bridge: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where the bundled models are: $OWLET_MODELS, ./models, or found from the binary:
/// X/bin/owlet-bridge -> X/models (an unpacked tarball) or
/// REPO/target/<profile>/owlet-bridge -> REPO/models (a build).
fn models_dir() -> PathBuf {
    if let Ok(d) = std::env::var("OWLET_MODELS") {
        return d.into();
    }
    let cwd = PathBuf::from("models");
    if cwd.join("clip-test/owlet.toml").is_file() {
        return cwd;
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(2)
        .take(2)
        .map(|base| base.join("models"))
        .find(|d| d.join("clip-test/owlet.toml").is_file())
        .unwrap_or(cwd)
}

fn demo_config() -> Config {
    let models = models_dir();
    let mut c = Config::default();
    c.clip.model = models.join("clip-test");
    c.clip.labels = ["cat", "cup of coffee", "rocket", "person", "car"].map(String::from).to_vec();
    c.cameras = vec![CameraConfig { name: "demo".into(), source: SourceConfig::Folder { path: models.join("demo-frames") } }];
    c
}

fn run(args: Args) -> Result<ExitCode> {
    let config = match (&args.config, args.demo) {
        (Some(p), false) => Config::from_path(p)?,
        (Some(_), true) => anyhow::bail!("--demo and --config exclude each other"),
        (None, _) => demo_config(),
    };
    if args.check_config {
        println!("configuration ok: device {}, {} camera(s), model {}", config.device, config.cameras.len(), config.clip.model.display());
        return Ok(ExitCode::SUCCESS);
    }
    if config.cameras.is_empty() {
        anyhow::bail!("no cameras configured: add a [[cameras]] section, or run with --demo");
    }
    let threads = if config.clip.threads == 0 { owlet_runtime::engine::default_threads() } else { config.clip.threads };
    owlet_runtime::engine::set_threads(threads);
    let analyzer = Analyzer::new(&config.clip).with_context(|| format!("loading CLIP bundle {}", config.clip.model.display()))?;
    log::info!("device {}: model {} with {} labels, {threads} thread(s)", config.device, analyzer.model_name(), config.clip.labels.len());

    let mut failures = 0usize;
    for cam in &config.cameras {
        let SourceConfig::Folder { path } = &cam.source;
        for file in folder::list_images(&cam.name, path)? {
            failures += analyze_file(&config, &analyzer, cam, &file, args.compact) as usize;
        }
    }
    if failures > 0 {
        log::warn!("{failures} frame(s) could not be analysed (published on the error topic)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Analyse one still; print its result, or its error on the error topic. Returns
/// whether it failed. A bad frame never stops the daemon.
fn analyze_file(config: &Config, analyzer: &Analyzer, cam: &CameraConfig, file: &Path, compact: bool) -> bool {
    let result = folder::read_frame(&cam.name, file)
        .and_then(|frame| analyzer.labels(&frame, Trigger::Still));
    let (topic, payload, failed) = match result {
        Ok(msg) => (labels_topic(&config.device, &cam.name), serde_json::to_value(&msg).unwrap_or_default(), false),
        Err(e) => (
            error_topic(&config.device, &cam.name),
            json!({"camera": cam.name, "frame": file.display().to_string(), "error": e.to_string(), "time_ms": now_ms()}),
            true,
        ),
    };
    let body = if compact { payload.to_string() } else { serde_json::to_string_pretty(&payload).unwrap_or_default() };
    println!("{topic} {body}");
    failed
}
