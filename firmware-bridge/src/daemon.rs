//! Wiring: one source thread, one worker thread (and perhaps a line-trigger thread)
//! per camera, one MQTT thread or stdout; then wait for SIGTERM (or, when every
//! camera reads still files, for them to be done) and stop in order: sources,
//! workers (each finishes what it is doing), then the MQTT link (which delivers
//! what is queued, says offline and disconnects).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::analyze::{Analyzer, Models};
use crate::camera::{load_labels, CameraWorker, FrameIntake};
use crate::commands;
use crate::config::{Config, SourceConfig};
use crate::discovery::{self, CameraEntities};
use crate::history::Recorder;
use crate::live::Live;
use crate::metrics::{Metrics, Probes};
use crate::mqtt;
use crate::publish::{Sink, StdoutSink};
use crate::search;
use crate::source::inbox::Inbox;
use crate::source::{process, SourceEvents, Stop};
use crate::topics::Topics;
use crate::web::WebState;
use owlet_store::outbox::Outbox;

/// How long a stopping bridge waits for its sources to end.
const SOURCES_STOP: Duration = Duration::from_secs(2);

pub struct RunOptions {
    /// Print compact JSON when there is no broker.
    pub compact: bool,
}

pub fn run(config: Config, opts: RunOptions, stop: Stop) -> Result<()> {
    anyhow::ensure!(
        !config.cameras.is_empty(),
        "no cameras configured: add a [[cameras]] section, or run with --demo"
    );
    let topics = Topics::new(&config.device);
    let state_dir = config.state_dir();
    let metrics = Arc::new(Metrics::new());
    let loading = Instant::now();
    let analyzers = load_analyzers(&config, &state_dir)?;
    metrics.model_loaded(loading.elapsed());
    let index = open_index(&config, &state_dir, &analyzers)?;
    let mut probes = Probes::default();
    let inboxes: Vec<Arc<Inbox>> =
        config.cameras.iter().map(|_| Arc::new(Inbox::default())).collect();
    let camera_names: Vec<String> = config.cameras.iter().map(|c| c.name.clone()).collect();

    let (sink, link): (Arc<dyn Sink>, Option<mqtt::MqttLink>) = match &config.mqtt {
        None => (Arc::new(StdoutSink::new(opts.compact)), None),
        Some(m) => {
            let (outbox, recovered) = Outbox::open(&state_dir.join("outbox"), m.queue_max_mb << 20)
                .with_context(|| {
                    format!("opening the outbox in {}", state_dir.join("outbox").display())
                })?;
            log_recovered(&outbox, &recovered);
            let (sink, connection) = mqtt::client(mqtt::options(m, &topics)?, outbox);
            probes.broker_connected = Some(sink.connected_flag());
            probes.outbox_depth = Some(Arc::new(sink.depth_probe()));
            let entities: Vec<CameraEntities> = config
                .cameras
                .iter()
                .map(|c| CameraEntities {
                    camera: c,
                    captions: c.captions && config.blip2_of(c).is_some(),
                })
                .collect();
            let settings = mqtt::LinkSettings {
                topics: topics.clone(),
                broker: format!("{}:{}", m.host, m.port()),
                flush_timeout: Duration::from_secs(m.flush_timeout_s),
                discovery: if m.discovery {
                    discovery::messages(&m.discovery_prefix, &topics, &entities)
                } else {
                    vec![]
                },
                discovery_status_topic: m
                    .discovery
                    .then(|| format!("{}/status", m.discovery_prefix)),
                discovery_configs: m
                    .discovery
                    .then(|| format!("{}/device/+/config", m.discovery_prefix)),
            };
            let search_tx = index.as_ref().map(|(rec, clip)| {
                search::spawn(
                    rec.history.clone(),
                    clip.clone(),
                    sink.clone() as Arc<dyn Sink>,
                    topics.clone(),
                )
            });
            let handler = commands::Router {
                topics: topics.clone(),
                cameras: camera_names.clone(),
                inboxes: inboxes.clone(),
                search: search_tx,
                sink: sink.clone(),
                max_bytes: m.max_command_bytes,
            }
            .into_handler();
            let link = mqtt::spawn(sink.clone(), connection, settings, handler);
            (sink as Arc<dyn Sink>, Some(link))
        }
    };

    if let Some((rec, _)) = &index {
        let h = rec.history.clone();
        probes.history_frames = Some(Arc::new(move || {
            h.lock().unwrap_or_else(|p| p.into_inner()).store().count().unwrap_or(0)
        }));
    }
    metrics.set_probes(probes);
    let live = config.web.as_ref().map(|_| Arc::new(Live::default()));
    let web = match (&config.web, &live) {
        (Some(w), Some(live)) => Some(crate::web::spawn(
            &w.listen,
            WebState {
                metrics: metrics.clone(),
                history: index.as_ref().map(|(rec, _)| rec.history.clone()),
                clip: index.as_ref().map(|(_, clip)| clip.clone()),
                token: w.token.as_ref().map(|t| t.0.clone()),
                started: Instant::now(),
                device: config.device.clone(),
                live: live.clone(),
                inboxes: Arc::new(
                    camera_names.iter().cloned().zip(inboxes.iter().cloned()).collect(),
                ),
                stopping: None,
            },
        )?),
        _ => None,
    };

    let mut workers = Vec::new();
    // Source, line and GPIO threads: they own the camera's child processes.
    let mut feeders = Vec::new();
    for ((cam, (analyzer, labels_file)), inbox) in
        config.cameras.iter().zip(analyzers).zip(&inboxes)
    {
        // Files (once or watched) are each wanted: analysed in turn, never dropped.
        let stills = matches!(cam.source, SourceConfig::Folder { .. });
        let mut intake = FrameIntake::new(
            cam,
            inbox.clone(),
            sink.clone(),
            topics.clone(),
            stop.clone(),
            stills,
        );
        intake.metrics = Some(metrics.clone());
        let source = cam.source.clone();
        let name = cam.name.clone();
        let stop_s = stop.clone();
        let inbox_s = inbox.clone();
        feeders.push(std::thread::Builder::new().name(format!("source-{name}")).spawn(
            move || {
                intake.announce_no_motion();
                crate::source::run(&name, &source, &mut intake, &stop_s);
                inbox_s.source_done();
            },
        )?);
        if let Some(argv) = cam.triggers.line.clone() {
            let name = cam.name.clone();
            let inbox = inbox.clone();
            let stop_l = stop.clone();
            let mut reporter = FrameIntake::new(
                cam,
                inbox.clone(),
                sink.clone(),
                topics.clone(),
                stop.clone(),
                false,
            );
            feeders.push(std::thread::Builder::new().name(format!("line-{name}")).spawn(
                move || {
                    process::run_lines(
                        &name,
                        &argv,
                        &mut |_| inbox.line(),
                        &mut |why| reporter.failed(why),
                        &stop_l,
                    )
                },
            )?);
        }
        if let Some(gpio) = cam.triggers.gpio.clone() {
            let name = cam.name.clone();
            let inbox = inbox.clone();
            let stop_g = stop.clone();
            let mut reporter = FrameIntake::new(
                cam,
                inbox.clone(),
                sink.clone(),
                topics.clone(),
                stop.clone(),
                false,
            );
            feeders.push(std::thread::Builder::new().name(format!("gpio-{name}")).spawn(
                move || {
                    crate::gpio::run(
                        &name,
                        &gpio,
                        &mut || inbox.line(),
                        &mut |why| reporter.failed(why),
                        &stop_g,
                    )
                },
            )?);
        }
        let mut worker = CameraWorker::new(
            cam,
            topics.clone(),
            sink.clone(),
            inbox.clone(),
            analyzer,
            stills,
            labels_file,
        );
        worker.metrics = Some(metrics.clone());
        worker.live = live.clone();
        if !cam.prompts.is_empty() {
            let file = state_dir.join("prompts").join(format!("{}.json", cam.name));
            let clip = worker.analyzer.clip().clone();
            worker.prompts = Some(
                crate::prompts::Prompts::new(clip, &cam.prompts, file)
                    .with_context(|| format!("camera {}: embedding its prompts", cam.name))?,
            );
        }
        if let Some((rec, clip)) = &index {
            if worker.analyzer.clip_name() == clip.bundle.manifest.name {
                worker.history = Some(rec.clone());
            } else {
                log::warn!(
                    "camera {}: its CLIP model is not the index's ({}): its frames are not kept in the history",
                    cam.name,
                    clip.bundle.manifest.name
                );
            }
        }
        workers.push(
            std::thread::Builder::new()
                .name(format!("camera-{}", cam.name))
                .spawn(move || worker.run())?,
        );
    }

    // Run until told to stop, or until every camera is done (still files only).
    while !stop.is_stopped() && !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if stop.is_stopped() {
        log::info!("stopping: finishing the frames in hand");
    }
    stop.stop();
    for inbox in &inboxes {
        inbox.stop();
    }
    for w in workers {
        if w.join().is_err() {
            log::error!("a camera worker panicked");
        }
    }
    // The sources stop their children (ffmpeg, rpicam-vid) as they end; a source
    // blocked in a read of a silent network camera is not waited for long (its
    // children still get SIGTERM when the process exits: die_with_parent).
    let waiting = Instant::now();
    while !feeders.iter().all(|f| f.is_finished()) && waiting.elapsed() < SOURCES_STOP {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(web) = web {
        web.stop();
    }
    if let Some(link) = link {
        link.shutdown();
    }
    Ok(())
}

/// The runtime's threads, then every camera's models, loaded once and shared
/// (`Models`), each with the file its label set is kept in: a wrong bundle is an
/// error at start, not at the first frame.
fn load_analyzers(
    config: &Config,
    state_dir: &std::path::Path,
) -> Result<Vec<(Analyzer, std::path::PathBuf)>> {
    let threads = if config.clip.threads == 0 {
        owlet_runtime::engine::default_threads()
    } else {
        config.clip.threads
    };
    owlet_runtime::engine::set_threads(threads);

    let on = owlet_runtime::device::Placement::choose(
        config.compute.device,
        config.compute.gpu_precision,
    )?;
    let mut models = Models::new(on);
    let mut analyzers = Vec::new();
    for cam in &config.cameras {
        let labels_file = state_dir.join("labels").join(format!("{}.json", cam.name));
        let labels = load_labels(&labels_file).unwrap_or_else(|| config.labels_of(cam));
        // BLIP-2 also answers questions, so it is loaded even where captions are off.
        let a = Analyzer::new(
            &mut models,
            &config.clip_of(cam),
            &labels,
            config.blip2_of(cam).as_ref(),
        )
        .with_context(|| format!("camera {}: loading its models", cam.name))?;
        analyzers.push((a, labels_file));
    }
    log::info!("{}, on {}, {threads} thread(s)", config.summary(), on.describe());

    Ok(analyzers)
}

/// The history, where `[index]` is configured: every analysed frame of the cameras
/// whose CLIP model is the history's (the first camera's), searched with that model.
fn open_index(
    config: &Config,
    state_dir: &std::path::Path,
    analyzers: &[(Analyzer, std::path::PathBuf)],
) -> Result<Option<(Recorder, Arc<owlet_runtime::models::clip::Clip>)>> {
    let clip = analyzers[0].0.clip().clone();
    Ok(crate::history::open(config, state_dir, &clip)?.map(|rec| (rec, clip)))
}

/// Say what opening the outbox found: what waits, what was damaged or imported.
fn log_recovered(outbox: &Outbox, r: &owlet_store::outbox::Recovered) {
    if r.pending > 0 {
        log::info!("outbox: {} message(s) from an earlier run to deliver", r.pending);
    }
    if let (Some(aside), Some(why)) = (&r.set_aside, &r.set_aside_why) {
        log::error!(
            "outbox: {} could not be read ({why}); kept as {} and a new one started",
            outbox.path().display(),
            aside.display()
        );
    }
    if !r.damaged.is_empty() {
        log::error!(
            "outbox: {} record(s) failed their checksum (seq {:?}); they are reported lost",
            r.damaged.len(),
            r.damaged
        );
    }
    if r.seq_from_clock {
        log::warn!("outbox: the sequence counter was lost; seq continues from the clock");
    }
    if r.migrated > 0 || r.migrated_unreadable_bytes > 0 {
        log::info!(
            "outbox: imported {} message(s) from the old queue.log ({} unreadable byte(s) skipped)",
            r.migrated,
            r.migrated_unreadable_bytes
        );
    }
}
