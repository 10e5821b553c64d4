//! Prompt sensors: per camera, named yes/no questions about the scene ("garage
//! door open"), answered from each analysed frame's CLIP embedding against the
//! prompt's positive and negative texts, each published as a Home Assistant
//! binary sensor.
//!
//! A score near its threshold would make a plain threshold flicker, so the state
//! has hysteresis (on at `on`, off at `off`) and a debounce (the score must stay
//! past the threshold for `debounce_s`). States are retained on MQTT and kept in
//! `state_dir/prompts/<camera>.json`, so a restart of Home Assistant or of the
//! bridge changes nothing by itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use owlet_runtime::models::{Clip, LabelSet};
use owlet_runtime::similarity::Embeddings;

use crate::config::PromptConfig;

/// On/off with hysteresis and a debounce, fed one score at a time.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    on: f32,
    off: f32,
    debounce: Duration,
    state: Option<bool>,
    /// The state the score has pointed to, and since when.
    pending: Option<(bool, Instant)>,
}

impl Hysteresis {
    pub fn new(on: f32, off: f32, debounce: Duration, state: Option<bool>) -> Hysteresis {
        Hysteresis { on, off, debounce, state, pending: None }
    }

    pub fn state(&self) -> Option<bool> {
        self.state
    }

    /// Take a score seen at `now`; the new state when it changes.
    pub fn update(&mut self, score: f32, now: Instant) -> Option<bool> {
        let wants = if score >= self.on {
            Some(true)
        } else if score <= self.off {
            Some(false)
        } else {
            None // between the thresholds: the state holds
        };
        let Some(w) = wants.filter(|w| Some(*w) != self.state) else {
            self.pending = None;
            return None;
        };
        let since = match self.pending {
            Some((p, since)) if p == w => since,
            _ => now,
        };
        if now.duration_since(since) >= self.debounce {
            self.state = Some(w);
            self.pending = None;
            Some(w)
        } else {
            self.pending = Some((w, since));
            None
        }
    }
}

/// One prompt, its texts embedded.
pub struct Prompt {
    pub config: PromptConfig,
    pub slug: String,
    texts: LabelSet,
    pub sensor: Hysteresis,
}

/// What one frame did to one prompt.
pub struct PromptReading {
    pub slug: String,
    pub name: String,
    pub score: f32,
    pub state: Option<bool>,
    /// The state changed with this frame.
    pub changed: bool,
}

/// A camera's prompt sensors.
pub struct Prompts {
    clip: Arc<Clip>,
    prompts: Vec<Prompt>,
    state_file: PathBuf,
}

impl Prompts {
    /// Embed each prompt's texts (as written: no template), and take the states
    /// an earlier run left in `state_file`.
    pub fn new(clip: Arc<Clip>, configs: &[PromptConfig], state_file: PathBuf) -> Result<Prompts> {
        let saved: BTreeMap<String, bool> = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut prompts = Vec::new();
        for c in configs {
            let texts: Vec<String> = c.positive.iter().chain(&c.negative).cloned().collect();
            let set = clip.label_set(&texts, &["{}".to_string()])?;
            let slug = c.slug();
            let state = saved.get(&slug).copied();
            let debounce = Duration::from_secs_f64(c.debounce_s);
            prompts.push(Prompt {
                sensor: Hysteresis::new(c.on, c.off, debounce, state),
                config: c.clone(),
                slug,
                texts: set,
            });
        }
        Ok(Prompts { clip, prompts, state_file })
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// Score a frame's embedding against every prompt and update the sensors;
    /// the states are saved when one changed.
    pub fn update(&mut self, embedding: &[f32], now: Instant) -> Vec<PromptReading> {
        let image = Embeddings::new(embedding.len(), embedding.to_vec());
        let mut out = Vec::new();
        for p in &mut self.prompts {
            let probs = &self.clip.classify_embeddings(&image, &p.texts)[0].probs;
            let score: f32 = probs[..p.config.positive.len()].iter().sum();
            let changed = p.sensor.update(score, now).is_some();
            out.push(PromptReading {
                slug: p.slug.clone(),
                name: p.config.name.clone(),
                score,
                state: p.sensor.state(),
                changed,
            });
        }
        if out.iter().any(|r| r.changed) {
            if let Err(e) = self.save() {
                log::warn!("prompt states not saved to {}: {e}", self.state_file.display());
            }
        }
        out
    }

    fn save(&self) -> std::io::Result<()> {
        let states: BTreeMap<&str, bool> = self
            .prompts
            .iter()
            .filter_map(|p| Some((p.slug.as_str(), p.sensor.state()?)))
            .collect();
        if let Some(d) = self.state_file.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&states)?)?;
        std::fs::rename(tmp, &self.state_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_state_turns_only_past_a_threshold_held_for_the_debounce() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(0.6, 0.4, secs(2.0), None);
        assert_eq!(h.update(0.5, t0), None, "between: no state yet");
        assert_eq!(h.update(0.7, t0 + secs(1.0)), None, "on for 0 s");
        assert_eq!(h.update(0.5, t0 + secs(2.0)), None, "back between: the wait restarts");
        assert_eq!(h.update(0.7, t0 + secs(3.0)), None);
        assert_eq!(h.update(0.8, t0 + secs(4.9)), None);
        assert_eq!(h.update(0.65, t0 + secs(5.0)), Some(true), "held 2 s");
        assert_eq!(h.update(0.45, t0 + secs(6.0)), None, "above off: stays on");
        assert_eq!(h.update(0.3, t0 + secs(7.0)), None);
        assert_eq!(h.update(0.3, t0 + secs(9.0)), Some(false));
        assert_eq!(h.state(), Some(false));
        let mut now = Hysteresis::new(0.6, 0.4, Duration::ZERO, Some(true));
        assert_eq!(now.update(0.2, t0), Some(false), "no debounce: at once");
    }

    /// Issue 26: the flicker a plain threshold has where hysteresis and a debounce
    /// have none. A score wandering around 0.5 (a slow swing of +-0.06 and noise of
    /// +-0.05: it never leaves 0.39..0.61), 2 frames/s for 10 minutes.
    #[test]
    fn near_its_threshold_a_score_makes_a_plain_threshold_flicker_and_this_sensor_not() {
        let t0 = Instant::now();
        let mut seed = 1u32;
        let mut noise = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let mut plain = Hysteresis::new(0.5, 0.5 - f32::EPSILON, Duration::ZERO, None);
        let mut sensor = Hysteresis::new(0.6, 0.4, secs(2.0), None);
        let (mut plain_changes, mut sensor_changes) = (0, 0);
        let frames = 2 * 600;
        for i in 0..frames {
            let t = i as f64 / 2.0;
            let score =
                0.5 + 0.06 * (t / 60.0 * std::f64::consts::TAU).sin() as f32 + 0.1 * noise();
            let now = t0 + secs(t);
            plain_changes += plain.update(score, now).is_some() as u32;
            sensor_changes += sensor.update(score, now).is_some() as u32;
        }
        eprintln!("flicker over 10 min: plain threshold {plain_changes}, sensor {sensor_changes}");
        assert!(plain_changes > 100, "{plain_changes}");
        assert_eq!(sensor_changes, 0, "the score is never past 0.6 or 0.4 for 2 s");
    }
}
