//! `owlet-bridge`: the device daemon. With `--demo` (or no config), it runs on the
//! bundled models and frames and prints what it would publish.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use owlet_bridge::config::{Blip2Config, CameraConfig, Config, SourceConfig};
use owlet_bridge::daemon::{self, RunOptions};
use owlet_bridge::source::Stop;
use owlet_runtime::ModelKind;

#[derive(Parser, Debug)]
#[command(
    name = "owlet-bridge",
    version,
    about = "owlet's device daemon: camera frames in, labels and captions out over MQTT",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML); every option has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run on the bundled demo models and frames (models/clip-demo, blip2-demo, scenes/demo).
    #[arg(long)]
    demo: bool,
    /// Check the configuration (and the files it names) and exit.
    #[arg(long)]
    check_config: bool,
    /// With no broker, print each payload as indented JSON over several lines
    /// (the default is one line per message: `topic {json}`).
    #[arg(long)]
    pretty: bool,
    /// One line per message: the default now; kept so that scripts using it work.
    #[arg(long, hide = true)]
    compact: bool,
    /// With --demo: publish to this MQTT broker (HOST or HOST:PORT) instead of
    /// printing, so the demo camera appears in Home Assistant there.
    #[arg(long, value_name = "HOST[:PORT]", requires = "demo")]
    mqtt: Option<String>,
    /// With --mqtt: the broker's user name.
    #[arg(long, requires = "mqtt")]
    mqtt_username: Option<String>,
    /// With --mqtt: a file holding the broker's password (not the password itself:
    /// a command line is visible to every user of the machine).
    #[arg(long, requires = "mqtt")]
    mqtt_password_file: Option<PathBuf>,
    /// Where the models run, over the configuration's [compute] device: cpu, cuda or auto.
    #[arg(long, value_enum)]
    device: Option<owlet_runtime::DeviceChoice>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Ask every owlet device on the broker (and on brokers bridged to it).
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(clap::Subcommand, Debug)]
enum FleetCommand {
    /// Search every device's history for frames that match TEXT: the best of all,
    /// merged by score, and which devices answered.
    Search {
        text: String,
        /// Hits wanted, of all devices together (each device sends its best K).
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Only frames of cameras of this name.
        #[arg(long)]
        camera: Option<String>,
        /// Each hit with its thumbnail (base64 JPEG; in --json only).
        #[arg(long)]
        thumbnails: bool,
        #[command(flatten)]
        ask: FleetArgs,
    },
    /// Each device: online or not, its cameras and their last results, its history.
    Status {
        #[command(flatten)]
        ask: FleetArgs,
    },
}

#[derive(clap::Args, Debug)]
struct FleetArgs {
    /// The broker, mqtt://HOST[:PORT] or HOST[:PORT] (default: --config's [mqtt],
    /// else localhost).
    #[arg(long)]
    broker: Option<String>,
    /// A bridge configuration whose [mqtt] gives the broker, credentials and TLS.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only these devices (comma-separated); default: every device whose retained
    /// status is online.
    #[arg(long, value_delimiter = ',')]
    devices: Option<Vec<String>>,
    /// Seconds to wait for the answers.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// Print JSON: the merged hits, each answer, the devices missed.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // The runtime's A/B switches (OWLET_REWRITES, OWLET_KERNELS, ...) come from the
    // environment; the library reads none itself.
    if let Err(in_force) = owlet_runtime::RuntimeOptions::from_env().install() {
        log::warn!("runtime options already set: {in_force:?}");
    }
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
    if cwd.join("clip-demo/owlet.toml").is_file() {
        return cwd;
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(2)
        .take(2)
        .map(|base| base.join("models"))
        .find(|d| d.join("clip-demo/owlet.toml").is_file())
        .unwrap_or(cwd)
}

fn demo_config() -> Config {
    let models = models_dir();
    let mut c = Config::default();
    // The demo bundles were trained here on generated camera scenes (models/demo/):
    // they know six things in six colours, and the frames are held-out scenes.
    c.clip.model = models.join("clip-demo");
    if models.join("blip2-demo/owlet.toml").is_file() {
        c.blip2 = Some(Blip2Config { model: models.join("blip2-demo"), max_new_tokens: 20 });
    }
    c.cameras = vec![CameraConfig::new(
        "demo",
        SourceConfig::Folder { path: models.join("scenes/demo"), watch: false, poll_ms: 500 },
    )];
    c
}

fn run(args: Args) -> Result<ExitCode> {
    if let Some(Command::Fleet(f)) = args.command {
        return fleet(f);
    }
    let mut config = match (&args.config, args.demo) {
        (Some(p), false) => owlet_bridge::config::load(p)?,
        (Some(_), true) => anyhow::bail!("--demo and --config exclude each other"),
        (None, _) => demo_config(),
    };
    if let Some(broker) = &args.mqtt {
        let (host, port) = host_and_port(broker)?;
        let mut m = owlet_bridge::config::MqttConfig::new(&host, port);
        m.username = args.mqtt_username.clone();
        m.password_file = args.mqtt_password_file.clone();
        config.mqtt = Some(m);
        config.validate(std::path::Path::new("--mqtt"))?;
    }
    if let Some(d) = args.device {
        config.compute.device = d;
    }
    if args.check_config {
        check_files(&config)?;
        println!(
            "configuration ok: {}, {}",
            config.summary(),
            config
                .mqtt
                .as_ref()
                .map(|m| format!("broker {}:{}", m.host, m.port()))
                .unwrap_or_else(|| "no broker (stdout)".into())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Stop::default();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.flag())?;
    }
    let _ = args.compact;
    daemon::run(config, RunOptions { compact: !args.pretty }, stop)?;
    Ok(ExitCode::SUCCESS)
}

fn fleet(command: FleetCommand) -> Result<ExitCode> {
    use owlet_bridge::fleet::{client, report};
    let (FleetCommand::Search { ask, .. } | FleetCommand::Status { ask }) = &command;
    anyhow::ensure!(
        ask.timeout.is_finite() && ask.timeout > 0.0 && ask.timeout <= 600.0,
        "--timeout {}: expected seconds, more than 0 and at most 600",
        ask.timeout
    );
    let mut broker = match &ask.config {
        Some(p) => owlet_bridge::config::load(p)?
            .mqtt
            .ok_or_else(|| anyhow::anyhow!("{}: no [mqtt] section", p.display()))?,
        None => owlet_bridge::config::MqttConfig::new("localhost", None),
    };
    if let Some(b) = &ask.broker {
        let (host, port) = host_and_port(b.strip_prefix("mqtt://").unwrap_or(b))?;
        broker.host = host;
        broker.port = port;
    }
    let asker = client::Asker {
        broker,
        timeout: std::time::Duration::from_secs_f64(ask.timeout),
        devices: ask.devices.clone(),
    };
    let out = match command {
        FleetCommand::Search { text, k, camera, thumbnails, ask } => {
            let request = owlet_bridge::fleet::search_request(text, k, camera, thumbnails)?;
            let o = client::search(&asker, request)?;
            if ask.json {
                serde_json::to_string_pretty(&o)?
            } else {
                report::search(&o, ask.timeout)
            }
        }
        FleetCommand::Status { ask } => {
            let o = client::status(&asker, client::new_id("status"))?;
            if ask.json {
                serde_json::to_string_pretty(&o)?
            } else {
                report::status(&o, ask.timeout)
            }
        }
    };
    println!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// The bundle at `path` opens (manifest valid, files present) and is of `kind`.
fn check_bundle(field: &str, path: &std::path::Path, kind: ModelKind) -> Result<()> {
    use anyhow::Context;
    let b =
        owlet_runtime::Bundle::open(path).with_context(|| format!("{field} {}", path.display()))?;
    anyhow::ensure!(
        b.manifest.kind == kind,
        "{field} {}: a {:?} bundle, where a {kind:?} bundle is needed",
        path.display(),
        b.manifest.kind
    );
    Ok(())
}

/// --check-config also opens what the file points at: bundles, TLS files, folders.
fn check_files(c: &Config) -> Result<()> {
    use anyhow::Context;
    check_bundle("clip.model", &c.clip.model, ModelKind::Clip)?;
    if let Some(b) = &c.blip2 {
        check_bundle("blip2.model", &b.model, ModelKind::Blip2)?;
    }
    for (i, cam) in c.cameras.iter().enumerate() {
        if let Some(m) = &cam.clip_model {
            check_bundle(&format!("cameras[{i}].clip_model"), m, ModelKind::Clip)?;
        }
        if let Some(m) = &cam.blip2_model {
            check_bundle(&format!("cameras[{i}].blip2_model"), m, ModelKind::Blip2)?;
        }
    }
    let on = owlet_runtime::Placement::choose(c.compute.device, c.compute.gpu_precision)
        .context("[compute] device")?;
    println!("models will run on {}", on.describe());
    if let Some(m) = &c.mqtt {
        owlet_bridge::mqtt::options(m, &owlet_bridge::topics::Topics::new(&c.device))?;
    }
    for (i, cam) in c.cameras.iter().enumerate() {
        match &cam.source {
            SourceConfig::Folder { path, .. } => {
                anyhow::ensure!(
                    path.is_dir(),
                    "cameras[{i}].source.path {}: not a folder",
                    path.display()
                )
            }
            #[cfg(feature = "v4l2")]
            SourceConfig::V4l2(v) => owlet_bridge::source::v4l2::check(&v.device)
                .map_err(|e| anyhow::anyhow!("cameras[{i}].source.device {e}"))?,
            _ => {}
        }
        if let Some(g) = &cam.triggers.gpio {
            anyhow::ensure!(
                g.chip.exists(),
                "cameras[{i}].triggers.gpio.chip {}: no such GPIO chip (gpiodetect lists them)",
                g.chip.display()
            );
        }
    }
    Ok(())
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
fn host_and_port(s: &str) -> Result<(String, Option<u16>)> {
    let bad = || anyhow::anyhow!("broker {s:?}: expected HOST or HOST:PORT");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_broker_is_host_or_host_and_port() {
        let ok = |s: &str| super::host_and_port(s).unwrap();
        assert_eq!(ok("broker.lan"), ("broker.lan".into(), None));
        assert_eq!(ok("10.0.0.2:1884"), ("10.0.0.2".into(), Some(1884)));
        assert_eq!(ok("[fd00::2]:8883"), ("fd00::2".into(), Some(8883)));
        assert_eq!(ok("fd00::2"), ("fd00::2".into(), None));
        for bad in ["", ":1883", "host:port", "host:70000", "[fd00::2"] {
            assert!(super::host_and_port(bad).is_err(), "{bad}");
        }
    }
}
