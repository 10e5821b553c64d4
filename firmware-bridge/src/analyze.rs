//! Frames -> results through owlet-runtime: CLIP zero-shot labels, BLIP-2 captions
//! and answers. Models are loaded once and shared by every camera that names them;
//! label prompts are embedded once per label set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use owlet_protocol::payloads::{Caption, EventType, FrameInfo, LabelScore, Labels};
use owlet_runtime::image_io::{decode_rgb, DecodeLimits};
use owlet_runtime::models::Blip2;
use owlet_runtime::models::{Clip, LabelSet};
use owlet_runtime::{Device, Placement};

use crate::config::{Blip2Config, ClipConfig};
use crate::error::Result;
use crate::source::Frame;
use crate::trigger::Trigger;

/// Loaded models, shared by the cameras.
pub struct Models {
    on: Placement,
    clips: HashMap<PathBuf, Arc<Clip>>,
    blip2s: HashMap<PathBuf, Arc<Blip2>>,
}

impl Models {
    /// Models will be loaded to run where `on` says.
    pub fn new(on: Placement) -> Models {
        Models { on, clips: HashMap::new(), blip2s: HashMap::new() }
    }

    pub fn clip(&mut self, path: &Path) -> Result<Arc<Clip>> {
        if let Some(c) = self.clips.get(path) {
            return Ok(c.clone());
        }
        let c = Arc::new(Clip::load_on(path, self.on)?);
        self.clips.insert(path.to_path_buf(), c.clone());
        Ok(c)
    }

    pub fn blip2(&mut self, path: &Path) -> Result<Arc<Blip2>> {
        if let Some(c) = self.blip2s.get(path) {
            return Ok(c.clone());
        }
        let c = Arc::new(Blip2::load_on(path, self.on)?);
        self.blip2s.insert(path.to_path_buf(), c.clone());
        Ok(c)
    }
}

/// One camera's view of the models: its label set and whether it captions.
pub struct Analyzer {
    clip: Arc<Clip>,
    templates: Vec<String>,
    labels: LabelSet,
    label_names: Vec<String>,
    blip2: Option<(Arc<Blip2>, Blip2Config)>,
}

/// A decoded frame with its metadata, ready for several models.
pub struct Decoded<'a> {
    pub frame: &'a Frame,
    pub image: image::RgbImage,
}

impl Analyzer {
    pub fn new(
        models: &mut Models,
        clip: &ClipConfig,
        labels: &[String],
        blip2: Option<&Blip2Config>,
    ) -> Result<Analyzer> {
        let clip_model = models.clip(&clip.model)?;
        let set = clip_model.label_set(labels, &clip.templates)?;
        let blip2 = match blip2 {
            Some(b) => Some((models.blip2(&b.model)?, b.clone())),
            None => None,
        };
        Ok(Analyzer {
            clip: clip_model,
            templates: clip.templates.clone(),
            labels: set,
            label_names: labels.to_vec(),
            blip2,
        })
    }

    pub fn clip_name(&self) -> &str {
        &self.clip.bundle.manifest.name
    }

    pub fn can_caption(&self) -> bool {
        self.blip2.is_some()
    }

    pub fn labels_in_use(&self) -> &[String] {
        &self.label_names
    }

    /// Embed a new label set (from a command).
    pub fn set_labels(&mut self, labels: &[String]) -> Result<()> {
        self.labels = self.clip.label_set(labels, &self.templates)?;
        self.label_names = labels.to_vec();
        Ok(())
    }

    pub fn decode<'a>(&self, frame: &'a Frame) -> Result<Decoded<'a>> {
        Ok(Decoded {
            frame,
            image: decode_rgb(&frame.bytes, &frame.origin, DecodeLimits::default())?,
        })
    }

    /// Labels (without the camera worker's tags and counts), and the image
    /// embedding they came from (for the search index).
    pub fn labels(&self, d: &Decoded, trigger: Trigger) -> Result<(Labels, Vec<f32>)> {
        let t = Instant::now();
        let emb = self.clip.embed_images(std::slice::from_ref(&d.image))?;
        let c = self.clip.classify_embeddings(&emb, &self.labels).remove(0);
        let (top_label, top_score) = c.top();
        let labels = Labels {
            frame: frame_info(d, trigger, self.clip_name(), self.clip.device(), t),
            top_label: top_label.to_string(),
            top_score,
            labels: c
                .ranked()
                .into_iter()
                .map(|(l, s)| LabelScore { label: l.to_string(), score: s })
                .collect(),
            frames_skipped: 0,
            caption_skipped: None,
        };
        Ok((labels, emb.row(0).to_vec()))
    }

    pub fn clip(&self) -> &Arc<Clip> {
        &self.clip
    }

    /// A caption, if this camera has BLIP-2.
    pub fn caption(&self, d: &Decoded, trigger: Trigger) -> Option<Result<Caption>> {
        let (model, cfg) = self.blip2.as_ref()?;
        let t = Instant::now();
        let run = || -> Result<Caption> {
            let q = model.encode_image(&d.image)?;
            let mut g = model.default_config();
            g.max_new_tokens = cfg.max_new_tokens;
            let out = model.caption(&q, &g, &mut |_| {})?;
            let name = &model.bundle.manifest.name;
            Ok(Caption {
                frame: frame_info(d, trigger, name, model.device(), t),
                caption: out.text,
            })
        };
        Some(run())
    }

    /// Answer a question about a frame (VQA); `on_text` is handed each piece of
    /// the answer as it is generated. Err if this camera has no BLIP-2.
    pub fn ask(
        &self,
        d: &Decoded,
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> std::result::Result<(String, String, Device), String> {
        let Some((model, cfg)) = self.blip2.as_ref() else {
            return Err(
                "this camera has no BLIP-2 model: add a [blip2] section to the configuration"
                    .into(),
            );
        };
        let q = model.encode_image(&d.image).map_err(|e| e.to_string())?;
        let mut g = model.default_config();
        g.max_new_tokens = cfg.max_new_tokens;
        let mut stream = owlet_runtime::models::TextStream::new(model);
        let out = model
            .ask(&q, question, &g, &mut |id| {
                let piece = stream.push(id);
                if !piece.is_empty() {
                    on_text(&piece);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok((out.text, model.bundle.manifest.name.clone(), model.device()))
    }
}

/// Which frame a result is about, from a model that started at `started`.
fn frame_info(
    d: &Decoded,
    trigger: Trigger,
    model: &str,
    runs_on: Device,
    started: Instant,
) -> FrameInfo {
    FrameInfo {
        camera: d.frame.camera.clone(),
        frame: d.frame.origin.clone(),
        frame_time_ms: time_ms(d.frame.captured),
        trigger,
        model: model.to_string(),
        runs_on: runs_on.to_string(),
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
        request_ids: vec![],
        frigate_event: None,
    }
}

/// Milliseconds since the Unix epoch (0 before it; u64 lasts 584 million years).
pub fn time_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    time_ms(SystemTime::now())
}

/// Label events with hysteresis: a label appears when its score reaches `on` and
/// disappears when it falls to `off` or below.
pub struct LabelEvents {
    on: f32,
    off: f32,
    present: HashMap<String, bool>,
}

/// A label that crossed a threshold (the camera adds the frame's time and trigger
/// to make the `event` payload).
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub event_type: EventType,
    pub label: String,
    pub score: f32,
}

impl LabelEvents {
    pub fn new(on: f32, off: f32) -> LabelEvents {
        LabelEvents { on, off, present: HashMap::new() }
    }

    /// Forget labels no longer in the set (after a label change).
    pub fn retain(&mut self, labels: &[String]) {
        self.present.retain(|l, _| labels.contains(l));
    }

    pub fn update(&mut self, scores: &[LabelScore]) -> Vec<Crossing> {
        let mut out = Vec::new();
        for s in scores {
            let present = self.present.entry(s.label.clone()).or_insert(false);
            if !*present && s.score >= self.on {
                *present = true;
                out.push(Crossing {
                    event_type: EventType::Appeared,
                    label: s.label.clone(),
                    score: s.score,
                });
            } else if *present && s.score <= self.off {
                *present = false;
                out.push(Crossing {
                    event_type: EventType::Disappeared,
                    label: s.label.clone(),
                    score: s.score,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(car: f32) -> Vec<LabelScore> {
        vec![
            LabelScore { label: "car".into(), score: car },
            LabelScore { label: "cat".into(), score: 1.0 - car },
        ]
    }

    #[test]
    fn events_fire_on_crossings_not_on_every_frame_and_do_not_flap() {
        let mut e = LabelEvents::new(0.6, 0.4);
        let seq = [0.1, 0.7, 0.8, 0.55, 0.45, 0.65, 0.3, 0.35, 0.9];
        let got: Vec<(f32, Vec<(&str, String)>)> = seq
            .iter()
            .map(|&c| {
                let named = |ev: Crossing| {
                    let kind = match ev.event_type {
                        EventType::Appeared => "appeared",
                        EventType::Disappeared => "disappeared",
                    };
                    (kind, ev.label)
                };
                (c, e.update(&scores(c)).into_iter().map(named).collect())
            })
            .collect();
        let expect: Vec<Vec<(&str, &str)>> = vec![
            vec![("appeared", "cat")],
            vec![("appeared", "car"), ("disappeared", "cat")],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![("disappeared", "car"), ("appeared", "cat")],
            vec![],
            vec![("appeared", "car"), ("disappeared", "cat")],
        ];
        for ((c, g), x) in got.iter().zip(expect) {
            let g: Vec<(&str, &str)> = g.iter().map(|(a, b)| (*a, b.as_str())).collect();
            assert_eq!(g, x, "car score {c}");
        }
    }
}
