//! Frame sources. Each runs on its own thread and yields encoded frames (JPEG/PNG
//! bytes) with where and when they came from; decoding happens in the runtime,
//! which checks them. A source that fails is restarted with backoff and reported;
//! a slow consumer never blocks a live source (see `inbox`).

pub mod folder;
pub mod frigate;
pub mod http;
pub mod inbox;
pub mod mjpeg;
pub mod process;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One encoded frame from a camera.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: String,
    /// Where it came from (a file name, a stream and frame number), for results and errors.
    pub origin: String,
    pub captured: SystemTime,
    pub bytes: Vec<u8>,
    /// The event it shows, for sources of events (Frigate's): results name it.
    pub event_id: Option<String>,
}

/// What a source reports besides frames.
pub trait SourceEvents: Send {
    /// A frame arrived. Returns false when the bridge is stopping.
    fn frame(&mut self, frame: Frame) -> bool;
    /// The source failed or ended unexpectedly; it will be retried.
    fn failed(&mut self, reason: &str);
}

/// Runs camera `camera`'s source until it ends or `stop` is set: the one place that
/// maps a configured source kind to its reader.
pub fn run(
    camera: &str,
    source: &crate::config::SourceConfig,
    mqtt: Option<&crate::config::MqttConfig>,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) {
    use crate::config::SourceConfig;
    match source {
        SourceConfig::Folder { path, watch: false, .. } => folder::run_stills(camera, path, events),
        SourceConfig::Folder { path, watch: true, poll_ms } => {
            folder::run_watch(camera, path, Duration::from_millis(*poll_ms), events, stop)
        }
        SourceConfig::Process { command, restart } => {
            process::run(camera, command, *restart, events, stop)
        }
        SourceConfig::HttpMjpeg { url } => http::run_mjpeg(camera, url, events, stop),
        SourceConfig::HttpSnapshot { url, interval_s } => {
            http::run_snapshot(camera, url, Duration::from_secs_f64(*interval_s), events, stop)
        }
        SourceConfig::Frigate(f) => frigate::run(camera, f, mqtt, events, stop),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2(v) => v4l2::run(camera, v, events, stop),
        // Refused by Config::validate in such a build.
        #[cfg(not(feature = "v4l2"))]
        SourceConfig::V4l2(_) => events.failed("this build has no V4L2 support"),
    }
}

/// Cooperative stop flag shared by the daemon and the sources.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// The flag itself, for signal handlers to set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleep up to `d`, waking early on stop. Returns false if stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.is_stopped() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.is_stopped()
    }
}

/// Exponential backoff for restarting sources and reconnecting: 0.5 s doubling to
/// 30 s, back to the start after a run that lasted a minute.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Duration::from_millis(500) }
    }
}

impl Backoff {
    pub const MAX: Duration = Duration::from_secs(30);

    /// The delay before the next attempt, given how long the last attempt ran.
    pub fn delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for > Duration::from_secs(60) {
            self.next = Duration::from_millis(500);
        }
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }
}

/// Splits a byte stream into frames and hands them on; shared by the process and
/// HTTP MJPEG sources.
pub(crate) fn pump_mjpeg(
    camera: &str,
    origin: &str,
    mut read: impl std::io::Read,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) -> std::io::Result<u64> {
    let mut splitter = mjpeg::JpegSplitter::new(mjpeg::DEFAULT_MAX_FRAME);
    let mut buf = vec![0u8; 64 << 10];
    let mut count = 0u64;
    loop {
        if stop.is_stopped() {
            return Ok(count);
        }
        let n = match read.read(&mut buf) {
            Ok(0) => return Ok(count),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for bytes in splitter.push(&buf[..n]) {
            count += 1;
            let frame = Frame {
                camera: camera.to_string(),
                origin: format!("{origin}#{count}"),
                captured: SystemTime::now(),
                bytes,
                event_id: None,
            };
            if !events.frame(frame) {
                return Ok(count);
            }
        }
    }
}
