//! When to look: what caused an analysis, motion detection, and the per-camera
//! gate (cool-down and rate limit).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use image::GrayImage;

use crate::config::{MotionConfig, TriggerConfig};

/// Why a frame was analysed: part of the MQTT contract (`owlet_protocol::payloads`).
pub use owlet_protocol::payloads::Trigger;

/// Width of the grey image motion is measured on. Small on purpose: it averages
/// out sensor noise and costs microseconds per frame.
pub const MOTION_WIDTH: u32 = 64;

/// Frame differencing on a downscaled grey image: a pixel changed if its grey level
/// moved by more than `pixel_threshold`; there is motion if more than `min_area` of
/// the pixels changed. Motion stays on for `hold_s` after the last moving frame.
pub struct MotionDetector {
    cfg: MotionConfig,
    previous: Option<GrayImage>,
    last_motion: Option<Instant>,
    active: bool,
}

/// What one frame did to the motion state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionObservation {
    /// Fraction of pixels that changed since the previous frame.
    pub changed: f32,
    pub moving: bool,
    /// Some(true) when motion started, Some(false) when it ended.
    pub transition: Option<bool>,
}

impl MotionDetector {
    pub fn new(cfg: MotionConfig) -> MotionDetector {
        MotionDetector { cfg, previous: None, last_motion: None, active: false }
    }

    /// Downscale a grey thumbnail to the detector's working size.
    pub fn shrink(thumb: &GrayImage) -> GrayImage {
        let (w, h) = thumb.dimensions();
        let nh = ((h as u64 * MOTION_WIDTH as u64) / w.max(1) as u64).max(1) as u32;
        image::imageops::resize(thumb, MOTION_WIDTH, nh, image::imageops::FilterType::Triangle)
    }

    pub fn observe(&mut self, small: GrayImage, now: Instant) -> MotionObservation {
        let changed = match &self.previous {
            Some(p) if p.dimensions() == small.dimensions() => {
                let t = self.cfg.pixel_threshold as i16;
                let n = p
                    .as_raw()
                    .iter()
                    .zip(small.as_raw())
                    .filter(|(a, b)| (**a as i16 - **b as i16).abs() > t)
                    .count();
                n as f32 / small.as_raw().len().max(1) as f32
            }
            _ => 0.0, // first frame, or the resolution changed: nothing to compare
        };
        self.previous = Some(small);
        let moving = changed >= self.cfg.min_area;
        if moving {
            self.last_motion = Some(now);
        }
        let still_on = self
            .last_motion
            .is_some_and(|t| now.duration_since(t) <= Duration::from_secs_f64(self.cfg.hold_s));
        let transition = match (self.active, moving || still_on) {
            (false, true) => Some(true),
            (true, false) => Some(false),
            _ => None,
        };
        self.active = moving || still_on;
        MotionObservation { changed, moving, transition }
    }
}

/// Cool-down and rate limit for one camera. Automatic triggers (interval, motion,
/// line) respect the cool-down; everything but stills counts against the rate limit.
pub struct Gate {
    cooldown: Duration,
    max_per_minute: u32,
    last: Option<Instant>,
    recent: VecDeque<Instant>,
}

impl Gate {
    pub fn new(cfg: &TriggerConfig) -> Gate {
        Gate {
            cooldown: Duration::from_secs_f64(cfg.cooldown_s),
            max_per_minute: cfg.max_per_minute,
            last: None,
            recent: VecDeque::new(),
        }
    }

    /// May `trigger` run now? Does not record it: call `record` when it does.
    pub fn allows(&mut self, trigger: Trigger, now: Instant) -> Result<(), String> {
        if matches!(trigger, Trigger::Still | Trigger::Frigate) {
            return Ok(());
        }
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.max_per_minute > 0 && self.recent.len() >= self.max_per_minute as usize {
            return Err(format!("rate limit: {} analyses in the last minute", self.recent.len()));
        }
        if matches!(trigger, Trigger::Interval | Trigger::Motion | Trigger::Line) {
            if let Some(last) = self.last {
                if now.duration_since(last) < self.cooldown {
                    return Err("cooling down".into());
                }
            }
        }
        Ok(())
    }

    pub fn record(&mut self, now: Instant) {
        self.last = Some(now);
        self.recent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MotionConfig {
        MotionConfig { pixel_threshold: 25, min_area: 0.05, hold_s: 1.0 }
    }

    fn img(f: impl Fn(u32, u32) -> u8) -> GrayImage {
        GrayImage::from_fn(64, 48, |x, y| image::Luma([f(x, y)]))
    }

    #[test]
    fn motion_needs_enough_changed_area_and_holds_then_ends() {
        let mut m = MotionDetector::new(cfg());
        let t0 = Instant::now();
        let bg = |_, _| 100u8;
        assert_eq!(m.observe(img(bg), t0).transition, None);
        // Sensor noise of +-10 everywhere: under the pixel threshold.
        let o = m.observe(img(|x, y| 100 + ((x * 7 + y * 3) % 20) as u8 - 10), t0);
        assert!(!o.moving && o.transition.is_none());
        // A small object (2% of the image): under min_area.
        let o = m.observe(img(|x, y| if x < 8 && y < 8 { 250 } else { 100 }), t0);
        assert!(!o.moving, "{o:?}");
        // A person-sized block (25%): motion starts.
        let o = m.observe(
            img(|x, y| if x < 32 && y < 24 { 250 } else { 100 }),
            t0 + Duration::from_millis(100),
        );
        assert!(o.moving && o.transition == Some(true) && (o.changed - 0.25).abs() < 0.03, "{o:?}");
        // The scene is still again: motion holds for hold_s, then ends.
        let same = |x, y| if x < 32 && y < 24 { 250 } else { 100 };
        assert_eq!(m.observe(img(same), t0 + Duration::from_millis(600)).transition, None);
        assert_eq!(m.observe(img(same), t0 + Duration::from_millis(1500)).transition, Some(false));
    }

    #[test]
    fn the_gate_applies_cooldown_to_automatic_triggers_and_rate_limits_all() {
        let mut g =
            Gate::new(&TriggerConfig { cooldown_s: 10.0, max_per_minute: 3, ..Default::default() });
        let t = Instant::now();
        g.allows(Trigger::Motion, t).unwrap();
        g.record(t);
        assert!(g
            .allows(Trigger::Motion, t + Duration::from_secs(5))
            .unwrap_err()
            .contains("cooling"));
        g.allows(Trigger::Command, t + Duration::from_secs(5)).unwrap();
        g.record(t + Duration::from_secs(5));
        g.allows(Trigger::Line, t + Duration::from_secs(16)).unwrap();
        g.record(t + Duration::from_secs(16));
        assert!(g
            .allows(Trigger::Command, t + Duration::from_secs(30))
            .unwrap_err()
            .contains("rate limit"));
        g.allows(Trigger::Still, t + Duration::from_secs(30)).unwrap();
        g.allows(Trigger::Command, t + Duration::from_secs(61)).unwrap();
    }
}
