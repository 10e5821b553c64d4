//! Frames -> results: CLIP zero-shot labels through owlet-runtime.
//!
//! The label prompts are embedded once at start-up; each frame then costs one
//! image embedding and a dot product per label.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use owlet_runtime::image_io::{decode_rgb, DecodeLimits};
use owlet_runtime::models::clip::{Clip, LabelSet};
use serde::Serialize;

use crate::config::ClipConfig;
use crate::error::Result;
use crate::source::Frame;

/// Why a frame was analysed; every result carries it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A still frame from a folder source, analysed once.
    Still,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// The payload published on `owlet/<device>/<camera>/labels`.
#[derive(Debug, Clone, Serialize)]
pub struct LabelsMessage {
    pub camera: String,
    pub frame: String,
    /// Capture time, milliseconds since the Unix epoch.
    pub frame_time_ms: u128,
    pub trigger: Trigger,
    pub model: String,
    pub top_label: String,
    pub top_score: f32,
    /// All labels, best first.
    pub labels: Vec<LabelScore>,
    pub latency_ms: f64,
}

pub struct Analyzer {
    clip: Clip,
    labels: LabelSet,
}

impl Analyzer {
    pub fn new(cfg: &ClipConfig) -> Result<Analyzer> {
        let clip = Clip::load(&cfg.model)?;
        let labels = clip.label_set(&cfg.labels, &cfg.templates)?;
        Ok(Analyzer { clip, labels })
    }

    pub fn model_name(&self) -> &str {
        &self.clip.bundle.manifest.name
    }

    /// Decode and classify one frame. A corrupt frame is an error for that frame only.
    pub fn labels(&self, frame: &Frame, trigger: Trigger) -> Result<LabelsMessage> {
        let t = Instant::now();
        let img = decode_rgb(&frame.bytes, &frame.origin, DecodeLimits::default())?;
        let c = self.clip.classify(std::slice::from_ref(&img), &self.labels)?.remove(0);
        let (top_label, top_score) = c.top();
        Ok(LabelsMessage {
            camera: frame.camera.clone(),
            frame: frame.origin.clone(),
            frame_time_ms: frame.captured.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            trigger,
            model: self.model_name().to_string(),
            top_label: top_label.to_string(),
            top_score,
            labels: c.ranked().into_iter().map(|(l, s)| LabelScore { label: l.to_string(), score: s }).collect(),
            latency_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
