//! What the bridge counts, for `/metrics` (Prometheus' text format, through the
//! prometheus-client crate): frames seen, analysed and skipped (and why), each stage's
//! latency, errors; and, read when scraped, the outbox's depth, the broker link,
//! the history's size and the process's memory.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabels {
    pub camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysedLabels {
    pub camera: String,
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkippedLabels {
    pub camera: String,
    /// `replaced`: a newer frame arrived before this one was looked at (the newest
    /// frame wins); `gate`: a trigger refused by the cool-down or the rate limit.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub camera: String,
    /// `decode`, `labels`, `caption`, `history`, `answer`.
    pub stage: String,
}

/// Where the gauges read at scrape time come from.
#[derive(Default, Clone)]
pub struct Probes {
    pub broker_connected: Option<Arc<AtomicBool>>,
    pub outbox_depth: Option<Arc<dyn Fn() -> usize + Send + Sync>>,
    pub history_frames: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

pub struct Metrics {
    registry: Registry,
    seen: Family<CameraLabels, Counter>,
    analysed: Family<AnalysedLabels, Counter>,
    skipped: Family<SkippedLabels, Counter>,
    errors: Family<CameraLabels, Counter>,
    stages: Family<StageLabels, Histogram>,
    model_load_seconds: Gauge<f64, AtomicU64>,
    broker_connected: Gauge,
    outbox_depth: Gauge,
    history_frames: Gauge,
    resident_bytes: Gauge,
    probes: std::sync::Mutex<Probes>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("owlet");
        let seen = Family::<CameraLabels, Counter>::default();
        let analysed = Family::<AnalysedLabels, Counter>::default();
        let skipped = Family::<SkippedLabels, Counter>::default();
        let errors = Family::<CameraLabels, Counter>::default();
        // 1 ms to ~65 s, doubling: a CLIP look on a Pi is 0.1-1 s, a BLIP-2
        // caption several seconds.
        let stages = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 17,
            ))
        });
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        let (broker_connected, outbox_depth, history_frames, resident_bytes) =
            (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("frames_seen", "Frames the camera's source delivered", seen.clone());
        registry.register("frames_analysed", "Frames the models looked at", analysed.clone());
        registry.register(
            "frames_skipped",
            "Frames or triggers not analysed, by reason",
            skipped.clone(),
        );
        registry.register("errors", "Frames or sources that failed", errors.clone());
        registry.register("stage_seconds", "Time per stage of a frame's analysis", stages.clone());
        registry.register(
            "model_load_seconds",
            "Time to load and plan the models at start",
            model_load_seconds.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the MQTT broker is connected",
            broker_connected.clone(),
        );
        registry.register(
            "outbox_depth",
            "Results waiting for the broker's acknowledgement",
            outbox_depth.clone(),
        );
        registry.register("history_frames", "Frames kept in the history", history_frames.clone());
        registry.register(
            "resident_memory_bytes",
            "The bridge process's resident memory",
            resident_bytes.clone(),
        );
        Metrics {
            registry,
            seen,
            analysed,
            skipped,
            errors,
            stages,
            model_load_seconds,
            broker_connected,
            outbox_depth,
            history_frames,
            resident_bytes,
            probes: std::sync::Mutex::new(Probes::default()),
        }
    }

    pub fn set_probes(&self, probes: Probes) {
        *self.probes.lock().unwrap_or_else(|p| p.into_inner()) = probes;
    }

    pub fn seen(&self, camera: &str) {
        self.seen.get_or_create(&CameraLabels { camera: camera.into() }).inc();
    }

    pub fn analysed(&self, camera: &str, trigger: &str) {
        self.analysed
            .get_or_create(&AnalysedLabels { camera: camera.into(), trigger: trigger.into() })
            .inc();
    }

    pub fn skipped(&self, camera: &str, reason: &str, n: u64) {
        if n > 0 {
            self.skipped
                .get_or_create(&SkippedLabels { camera: camera.into(), reason: reason.into() })
                .inc_by(n);
        }
    }

    pub fn error(&self, camera: &str) {
        self.errors.get_or_create(&CameraLabels { camera: camera.into() }).inc();
    }

    pub fn stage(&self, camera: &str, stage: &str, took: Duration) {
        self.stages
            .get_or_create(&StageLabels { camera: camera.into(), stage: stage.into() })
            .observe(took.as_secs_f64());
    }

    pub fn model_loaded(&self, took: Duration) {
        self.model_load_seconds.set(took.as_secs_f64());
    }

    /// Everything in Prometheus' text format, the gauges read now.
    pub fn render(&self) -> String {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(c) = &probes.broker_connected {
            self.broker_connected.set(c.load(std::sync::atomic::Ordering::SeqCst) as i64);
        }
        if let Some(depth) = &probes.outbox_depth {
            self.outbox_depth.set(depth() as i64);
        }
        if let Some(frames) = &probes.history_frames {
            self.history_frames.set(frames() as i64);
        }
        if let Some(rss) = resident_bytes() {
            self.resident_bytes.set(rss as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// VmRSS from /proc/self/status (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_carries_every_series_with_its_labels() {
        let m = Metrics::new();
        for _ in 0..5 {
            m.seen("door");
        }
        m.analysed("door", "motion");
        m.analysed("door", "motion");
        m.skipped("door", "replaced", 3);
        m.skipped("door", "gate", 0);
        m.stage("door", "labels", Duration::from_millis(120));
        m.model_loaded(Duration::from_millis(1500));
        let connected = Arc::new(AtomicBool::new(true));
        m.set_probes(Probes {
            broker_connected: Some(connected.clone()),
            outbox_depth: Some(Arc::new(|| 7)),
            history_frames: Some(Arc::new(|| 42)),
        });
        let text = m.render();
        for line in [
            "owlet_frames_seen_total{camera=\"door\"} 5",
            "owlet_frames_analysed_total{camera=\"door\",trigger=\"motion\"} 2",
            "owlet_frames_skipped_total{camera=\"door\",reason=\"replaced\"} 3",
            "owlet_stage_seconds_count{camera=\"door\",stage=\"labels\"} 1",
            "owlet_stage_seconds_bucket{le=\"0.128\",camera=\"door\",stage=\"labels\"} 1",
            "owlet_stage_seconds_bucket{le=\"0.064\",camera=\"door\",stage=\"labels\"} 0",
            "owlet_model_load_seconds 1.5",
            "owlet_broker_connected 1",
            "owlet_outbox_depth 7",
            "owlet_history_frames 42",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        assert!(!text.contains("reason=\"gate\""), "a zero skip makes no series");
        let rss = text.lines().find(|l| l.starts_with("owlet_resident_memory_bytes ")).unwrap();
        assert!(rss.split(' ').nth(1).unwrap().parse::<u64>().unwrap() > 1 << 20, "{rss}");
        assert!(text.ends_with("# EOF\n"));
    }
}
