//! Wiring: the models, the history, the MQTT link (`connect`) or stdout, the web
//! server (`serve_web`), and per camera a source thread, trigger threads and a
//! worker (`start_camera`); then wait for SIGTERM (or, when every camera reads
//! still files, for them to be done) and stop in order: sources, workers (each
//! finishes what it is doing), the web server, then the MQTT link (which delivers
//! what is queued, says offline and disconnects).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::analyze::{Analyzer, Models};
use crate::camera::{load_labels, CameraWorker, FrameIntake};
use crate::commands;
use crate::config::{CameraConfig, Config, MqttConfig, SourceConfig, WebConfig};
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
    // No cameras is a search-only bridge: a history that answers the device's and
    // the fleet's searches over MQTT.
    anyhow::ensure!(
        !config.cameras.is_empty() || (config.index.is_some() && config.mqtt.is_some()),
        "no cameras configured: add a [[cameras]] section (or, for a bridge that only \
         answers searches of its history, [index] and [mqtt]), or run with --demo"
    );
    let topics = Topics::new(&config.device);
    let state_dir = config.state_dir();
    let metrics = Arc::new(Metrics::new());
    let loading = Instant::now();
    let (analyzers, mut models) = load_analyzers(&config, &state_dir)?;
    let index = open_index(&config, &state_dir, &analyzers, &mut models)?;
    metrics.model_loaded(loading.elapsed());
    // What the web page and the fleet's status requests show of each camera.
    let live = Arc::new(Live::default());
    let inboxes: Vec<Arc<Inbox>> =
        config.cameras.iter().map(|_| Arc::new(Inbox::default())).collect();
    let mut probes = Probes::default();
    let (sink, link) = match &config.mqtt {
        None => (Arc::new(StdoutSink::new(opts.compact)) as Arc<dyn Sink>, None),
        Some(m) => {
            let link = Link { topics: &topics, state_dir: &state_dir, index: &index, live: &live };
            let (sink, link) = connect(&config, m, link, &inboxes, &mut probes)?;
            (sink, Some(link))
        }
    };
    if let Some((rec, _)) = &index {
        let h = rec.history.clone();
        probes.history_frames = Some(Arc::new(move || {
            h.lock().unwrap_or_else(|p| p.into_inner()).store().count().unwrap_or(0)
        }));
    }
    metrics.set_probes(probes);
    let web = match &config.web {
        Some(w) => Some(serve_web(&config, w, &metrics, &index, &live, &inboxes)?),
        None => None,
    };

    let live = Some(live);
    let mqtt = config.mqtt.clone();
    let shared = Shared { topics, sink, stop: stop.clone(), metrics, live, state_dir, index, mqtt };
    let mut cameras = Vec::new();
    for ((cam, (analyzer, labels_file)), inbox) in
        config.cameras.iter().zip(analyzers).zip(&inboxes)
    {
        cameras.push(start_camera(&shared, cam, analyzer, labels_file, inbox)?);
    }

    // Run until told to stop, or until every camera is done (still files only; a
    // search-only bridge runs until told to stop).
    let done = |cameras: &[RunningCamera]| {
        !cameras.is_empty() && cameras.iter().all(|c| c.worker.is_finished())
    };
    while !stop.is_stopped() && !done(&cameras) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_cameras(&stop, &inboxes, cameras);
    if let Some(web) = web {
        web.stop();
    }
    if let Some(link) = link {
        link.shutdown();
    }
    Ok(())
}

/// Stop every camera: the workers finish the frames in hand, then the sources
/// (and their children) are given `SOURCES_STOP` to end.
fn stop_cameras(stop: &Stop, inboxes: &[Arc<Inbox>], cameras: Vec<RunningCamera>) {
    if stop.is_stopped() {
        log::info!("stopping: finishing the frames in hand");
    }
    stop.stop();
    for inbox in inboxes {
        inbox.stop();
    }
    let mut feeders = Vec::new();
    for c in cameras {
        if c.worker.join().is_err() {
            log::error!("a camera worker panicked");
        }
        feeders.extend(c.feeders);
    }
    // The sources stop their children (ffmpeg, rpicam-vid) as they end; a source
    // blocked in a read of a silent network camera is not waited for long (its
    // children still get SIGTERM when the process exits: die_with_parent).
    let waiting = Instant::now();
    while !feeders.iter().all(|f| f.is_finished()) && waiting.elapsed() < SOURCES_STOP {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The history, and the model that embeds its searches.
type Index = Option<(Recorder, Arc<owlet_runtime::models::Clip>)>;

/// What every camera's threads are given.
struct Shared {
    topics: Topics,
    sink: Arc<dyn Sink>,
    stop: Stop,
    metrics: Arc<Metrics>,
    live: Option<Arc<Live>>,
    state_dir: std::path::PathBuf,
    index: Index,
    /// The broker, for sources that listen on it (Frigate's events).
    mqtt: Option<crate::config::MqttConfig>,
}

/// A camera's threads: its worker, and the source, line and GPIO threads that
/// feed it (they own the camera's child processes).
struct RunningCamera {
    worker: std::thread::JoinHandle<()>,
    feeders: Vec<std::thread::JoinHandle<()>>,
}

/// The outbox, the MQTT link and its command router (and the search thread,
/// where there is a history); the sink every result goes to.
/// What the MQTT side answers from besides the configuration.
struct Link<'a> {
    topics: &'a Topics,
    state_dir: &'a std::path::Path,
    index: &'a Index,
    live: &'a Arc<Live>,
}

fn connect(
    config: &Config,
    m: &MqttConfig,
    link: Link,
    inboxes: &[Arc<Inbox>],
    probes: &mut Probes,
) -> Result<(Arc<dyn Sink>, mqtt::MqttLink)> {
    let Link { topics, state_dir, index, live } = link;
    let outbox_dir = state_dir.join("outbox");
    let (outbox, recovered) = Outbox::open(&outbox_dir, m.queue_max_mb << 20)
        .with_context(|| format!("opening the outbox in {}", outbox_dir.display()))?;
    log_recovered(&outbox, &recovered);
    let (sink, connection) = mqtt::client(mqtt::options(m, topics)?, outbox);
    probes.broker_connected = Some(sink.connected_flag());
    probes.outbox_depth = Some(Arc::new(sink.depth_probe()));
    let entities: Vec<CameraEntities> = config
        .cameras
        .iter()
        .map(|c| CameraEntities { camera: c, captions: c.captions && config.blip2_of(c).is_some() })
        .collect();
    let discovery = |leaf: &str| m.discovery.then(|| format!("{}/{leaf}", m.discovery_prefix));
    let settings = mqtt::LinkSettings {
        topics: topics.clone(),
        broker: format!("{}:{}", m.host, m.port()),
        flush_timeout: Duration::from_secs(m.flush_timeout_s),
        discovery: if m.discovery {
            discovery::messages(&m.discovery_prefix, topics, &entities)
        } else {
            vec![]
        },
        discovery_status_topic: discovery("status"),
        discovery_configs: discovery("device/+/config"),
    };
    let search = index.as_ref().map(|(rec, clip)| {
        search::spawn(
            rec.history.clone(),
            clip.clone(),
            sink.clone() as Arc<dyn Sink>,
            topics.clone(),
        )
    });
    let cameras: Vec<String> = config.cameras.iter().map(|c| c.name.clone()).collect();
    let fleet = crate::fleet::Responder::new(
        topics.clone(),
        cameras.clone(),
        live.clone(),
        index.as_ref().map(|(rec, _)| rec.history.clone()),
        search.clone(),
        sink.clone(),
        m.max_command_bytes,
    );
    let handler = commands::Router {
        topics: topics.clone(),
        cameras,
        inboxes: inboxes.to_vec(),
        search,
        fleet,
        sink: sink.clone(),
        max_bytes: m.max_command_bytes,
    }
    .into_handler();
    let link = mqtt::spawn(sink.clone(), connection, settings, handler);
    Ok((sink as Arc<dyn Sink>, link))
}

/// The web page and its API, on their own thread.
fn serve_web(
    config: &Config,
    w: &WebConfig,
    metrics: &Arc<Metrics>,
    index: &Index,
    live: &Arc<Live>,
    inboxes: &[Arc<Inbox>],
) -> Result<crate::web::WebServer> {
    let by_name = config.cameras.iter().map(|c| c.name.clone()).zip(inboxes.iter().cloned());
    crate::web::spawn(
        &w.listen,
        WebState {
            metrics: metrics.clone(),
            history: index.as_ref().map(|(rec, _)| rec.history.clone()),
            clip: index.as_ref().map(|(_, clip)| clip.clone()),
            token: w.token.as_ref().map(|t| t.0.clone()),
            started: Instant::now(),
            device: config.device.clone(),
            live: live.clone(),
            inboxes: Arc::new(by_name.collect()),
            fleet: config.mqtt.clone().map(crate::web::FleetAccess::new),
            stopping: None,
        },
    )
}

/// A camera's source thread, its trigger threads and its worker, started.
fn start_camera(
    shared: &Shared,
    cam: &CameraConfig,
    analyzer: Analyzer,
    labels_file: std::path::PathBuf,
    inbox: &Arc<Inbox>,
) -> Result<RunningCamera> {
    // Files (once or watched) and Frigate's event snapshots are each wanted:
    // analysed in turn, never dropped.
    let stills = matches!(cam.source, SourceConfig::Folder { .. } | SourceConfig::Frigate(_));
    let feeders = start_feeders(shared, cam, inbox, stills)?;
    let mut worker = CameraWorker::new(
        cam,
        shared.topics.clone(),
        shared.sink.clone(),
        inbox.clone(),
        analyzer,
        stills,
        labels_file,
    );
    worker.metrics = Some(shared.metrics.clone());
    worker.live = shared.live.clone();
    if let SourceConfig::Frigate(f) = &cam.source {
        worker.still_trigger = crate::trigger::Trigger::Frigate;
        worker.write_back = crate::source::frigate::WriteBack::new(f);
    }
    if !cam.prompts.is_empty() {
        let file = shared.state_dir.join("prompts").join(format!("{}.json", cam.name));
        let clip = worker.analyzer.clip().clone();
        worker.prompts = Some(
            crate::prompts::Prompts::new(clip, &cam.prompts, file)
                .with_context(|| format!("camera {}: embedding its prompts", cam.name))?,
        );
    }
    if let Some((rec, clip)) = &shared.index {
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
    let worker = std::thread::Builder::new()
        .name(format!("camera-{}", cam.name))
        .spawn(move || worker.run())?;
    Ok(RunningCamera { worker, feeders })
}

/// The threads that feed a camera's inbox: its source, and its line and GPIO
/// triggers where configured.
fn start_feeders(
    shared: &Shared,
    cam: &CameraConfig,
    inbox: &Arc<Inbox>,
    stills: bool,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let intake = |stills: bool| {
        FrameIntake::new(
            cam,
            inbox.clone(),
            shared.sink.clone(),
            shared.topics.clone(),
            shared.stop.clone(),
            stills,
        )
    };
    let thread = |kind: &str| std::thread::Builder::new().name(format!("{kind}-{}", cam.name));
    let mut feeders = Vec::new();
    let mut source_intake = intake(stills);
    source_intake.metrics = Some(shared.metrics.clone());
    let (name, source, stop, source_inbox, mqtt) = (
        cam.name.clone(),
        cam.source.clone(),
        shared.stop.clone(),
        inbox.clone(),
        shared.mqtt.clone(),
    );
    feeders.push(thread("source").spawn(move || {
        source_intake.announce_no_motion();
        crate::source::run(&name, &source, mqtt.as_ref(), &mut source_intake, &stop);
        source_inbox.source_done();
    })?);
    if let Some(argv) = cam.triggers.line.clone() {
        let (name, stop, inbox, mut reporter) =
            (cam.name.clone(), shared.stop.clone(), inbox.clone(), intake(false));
        feeders.push(thread("line").spawn(move || {
            process::run_lines(
                &name,
                &argv,
                &mut |_| inbox.line(),
                &mut |why| reporter.failed(why),
                &stop,
            )
        })?);
    }
    if let Some(gpio) = cam.triggers.gpio.clone() {
        let (name, stop, inbox, mut reporter) =
            (cam.name.clone(), shared.stop.clone(), inbox.clone(), intake(false));
        feeders.push(thread("gpio").spawn(move || {
            crate::gpio::run(
                &name,
                &gpio,
                &mut || inbox.line(),
                &mut |why| reporter.failed(why),
                &stop,
            )
        })?);
    }
    Ok(feeders)
}

/// The runtime's threads, then every camera's models, loaded once and shared
/// (`Models`), each with the file its label set is kept in: a wrong bundle is an
/// error at start, not at the first frame.
fn load_analyzers(config: &Config, state_dir: &std::path::Path) -> Result<(Analyzers, Models)> {
    let threads = if config.clip.threads == 0 {
        owlet_runtime::default_threads()
    } else {
        config.clip.threads
    };
    owlet_runtime::set_threads(threads);

    let on = owlet_runtime::Placement::choose(config.compute.device, config.compute.gpu_precision)?;
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

    Ok((analyzers, models))
}

/// Each camera's analyzer and the file its label set is kept in.
type Analyzers = Vec<(Analyzer, std::path::PathBuf)>;

/// The history, where `[index]` is configured: every analysed frame of the cameras
/// whose CLIP model is the history's (the first camera's, or `[clip]`'s on a
/// bridge without cameras), searched with that model.
fn open_index(
    config: &Config,
    state_dir: &std::path::Path,
    analyzers: &Analyzers,
    models: &mut Models,
) -> Result<Index> {
    if config.index.is_none() {
        return Ok(None);
    }
    let clip = match analyzers.first() {
        Some((a, _)) => a.clip().clone(),
        None => models
            .clip(&config.clip.model)
            .with_context(|| format!("loading clip.model {}", config.clip.model.display()))?,
    };
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
