//! Frigate's tracked objects as frames: owlet as Frigate's companion. Follows
//! Frigate 0.15.2 as its repository documents it (tag v0.15.2:
//! docs/docs/integrations/mqtt.md, frigate/api/event.py and media.py).
//!
//! - `<topic_prefix>/events` (MQTT) says when a tracked object is `new`, has a
//!   better snapshot or changed zones (`update`), or `end`ed. Each message carries
//!   the object `before` and `after` the change; owlet reads `after`.
//! - Each event's snapshot comes from Frigate's HTTP API,
//!   `GET /api/events/<id>/snapshot.jpg` (also while the object is tracked). The
//!   MQTT snapshot topic (`frigate/<camera>/<label>/snapshot`) is not used: it is
//!   the camera's best image of a label, not one event's.
//! - An event is analysed once per snapshot: again only when a later message
//!   brings a newer snapshot (`after.snapshot.frame_time`), never after its end
//!   (a delayed update after the end is out of order), never twice for the same
//!   snapshot (QoS 1 redelivery, a zone change).
//! - The result can go back to Frigate ([`WriteBack`]): the caption as the event's
//!   description (`POST /api/events/<id>/description`, `{"description"}`) or the
//!   top label as its sub label (`POST /api/events/<id>/sub_label`,
//!   `{"subLabel", "subLabelScore"}`: at most 100 characters, a score in (0, 1]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use owlet_formats::bridge_config::{FrigateSource, FrigateWriteBack};
use rumqttc::{Event, Packet, QoS, RecvTimeoutError};
use serde::Deserialize;

use super::http::{agent, MAX_SNAPSHOT};
use super::{Backoff, Frame, SourceEvents, Stop};
use crate::config::MqttConfig;

/// Events remembered (to skip duplicates and what comes after an end).
const REMEMBERED: usize = 4096;
/// Frigate's limit on a sub label.
const MAX_SUB_LABEL: usize = 100;

/// One `frigate/events` message: its kind and the object after the change.
#[derive(Debug, Deserialize)]
pub struct EventMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub after: TrackedObject,
}

/// The fields of a tracked object owlet reads; Frigate sends many more.
#[derive(Debug, Deserialize)]
pub struct TrackedObject {
    pub id: String,
    pub camera: String,
    pub label: String,
    #[serde(default)]
    pub false_positive: bool,
    #[serde(default)]
    pub snapshot: Option<SnapshotInfo>,
    /// Frigate before 0.14 gave the snapshot's time here.
    #[serde(default)]
    pub snapshot_time: Option<f64>,
    #[serde(default)]
    pub frame_time: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct SnapshotInfo {
    pub frame_time: f64,
}

impl TrackedObject {
    /// When its current snapshot was taken (Unix seconds): what says a message
    /// brings a newer one.
    pub fn snapshot_time(&self) -> f64 {
        self.snapshot
            .as_ref()
            .map(|s| s.frame_time)
            .or(self.snapshot_time)
            .or(self.frame_time)
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    New,
    Update,
    End,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "new" => Some(Kind::New),
            "update" => Some(Kind::Update),
            "end" => Some(Kind::End),
            _ => None,
        }
    }
}

/// An event id goes into a URL path: Frigate's are `<start time>-<random>`.
pub fn check_event_id(id: &str) -> Result<(), String> {
    if owlet_protocol::names::is_plain_id(id, 64) {
        Ok(())
    } else {
        Err(format!(
            "event id {:?} is not a Frigate event id",
            id.chars().take(80).collect::<String>()
        ))
    }
}

/// What to do with one message.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Analyse,
    Skip(&'static str),
}

#[derive(Debug, Default)]
struct Seen {
    /// The snapshot time last analysed.
    analysed: Option<f64>,
    ended: bool,
}

/// Which events were analysed at which snapshot, and which ended.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<String, Seen>,
    order: VecDeque<String>,
}

impl Tracker {
    pub fn decide(&mut self, id: &str, kind: Kind, snapshot_time: f64) -> Decision {
        if !self.seen.contains_key(id) {
            if self.order.len() == REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.order.push_back(id.to_string());
        }
        let seen = self.seen.entry(id.to_string()).or_default();
        if seen.ended {
            return Decision::Skip("the event has ended");
        }
        if kind == Kind::End {
            seen.ended = true;
        }
        if seen.analysed.is_some_and(|t| t >= snapshot_time) {
            return Decision::Skip("no newer snapshot");
        }
        Decision::Analyse
    }

    /// The snapshot of `snapshot_time` was handed on for analysis.
    pub fn analysed(&mut self, id: &str, snapshot_time: f64) {
        if let Some(seen) = self.seen.get_mut(id) {
            seen.analysed = Some(snapshot_time);
        }
    }
}

/// Follow Frigate's events for camera `cfg.camera`, reconnecting with backoff.
pub fn run(
    camera: &str,
    cfg: &FrigateSource,
    mqtt: Option<&MqttConfig>,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) {
    let Some(mqtt) = mqtt else {
        // Config::validate refuses this; a source cannot do without it.
        events.failed("a frigate source needs the [mqtt] section: Frigate's events come over MQTT");
        return;
    };
    let mut follower = Follower { camera, cfg, agent: agent(), tracker: Tracker::default() };
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let Some(reason) = follower.follow(mqtt, events, stop) else { return };
        let delay = backoff.delay(started.elapsed());
        events.failed(&format!("{reason}; reconnecting in {:.1} s", delay.as_secs_f64()));
        if !stop.sleep(delay) {
            return;
        }
    }
}

struct Follower<'a> {
    camera: &'a str,
    cfg: &'a FrigateSource,
    agent: ureq::Agent,
    tracker: Tracker,
}

impl Follower<'_> {
    /// One MQTT connection's worth of events: why it ended, or None when the
    /// bridge is stopping.
    fn follow(
        &mut self,
        mqtt: &MqttConfig,
        events: &mut dyn SourceEvents,
        stop: &Stop,
    ) -> Option<String> {
        let id = format!("owlet-frigate-{}-{}", self.camera, std::process::id());
        let opts = match crate::mqtt::connect_options(mqtt, id) {
            Ok(o) => o,
            Err(e) => return Some(format!("frigate: {e:#}")),
        };
        let (client, mut connection) = crate::mqtt::unbuffered_client(opts, 16);
        let topic = format!("{}/events", self.cfg.topic_prefix);
        if let Err(e) = client.subscribe(&topic, QoS::AtLeastOnce) {
            return Some(format!("frigate: subscribing to {topic}: {e}"));
        }
        while !stop.is_stopped() {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == topic => {
                    if !self.on_message(&p.payload, events) {
                        return None;
                    }
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    log::info!("camera {}: following Frigate's events on {topic}", self.camera);
                }
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => {
                    return Some(format!("frigate: MQTT {}:{}: {e}", mqtt.host, mqtt.port()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Some("frigate: the MQTT client stopped".into())
                }
            }
        }
        None
    }

    /// Handle one message; false when the bridge is stopping.
    fn on_message(&mut self, payload: &[u8], events: &mut dyn SourceEvents) -> bool {
        let msg: EventMessage = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                events
                    .failed(&format!("{}/events: not a Frigate event: {e}", self.cfg.topic_prefix));
                return true;
            }
        };
        let o = &msg.after;
        let wanted = self.cfg.labels.is_empty() || self.cfg.labels.contains(&o.label);
        if o.camera != self.cfg.camera || !wanted || o.false_positive {
            return true;
        }
        let Some(kind) = Kind::parse(&msg.kind) else {
            events.failed(&format!("frigate event {}: unknown type {:?}", o.id, msg.kind));
            return true;
        };
        if let Err(e) = check_event_id(&o.id) {
            events.failed(&format!("frigate: {e}"));
            return true;
        }
        let time = o.snapshot_time();
        if let Decision::Skip(why) = self.tracker.decide(&o.id, kind, time) {
            log::debug!(
                "camera {}: frigate event {} ({:?}) skipped: {why}",
                self.camera,
                o.id,
                kind
            );
            return true;
        }
        let url =
            format!("{}/api/events/{}/snapshot.jpg", self.cfg.url.trim_end_matches('/'), o.id);
        let bytes = match self.fetch(&url) {
            Ok(b) => b,
            Err(e) => {
                events.failed(&format!("frigate event {}: snapshot {url}: {e}", o.id));
                return true;
            }
        };
        self.tracker.analysed(&o.id, time);
        let captured = if time > 0.0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(time)
        } else {
            SystemTime::now()
        };
        events.frame(Frame {
            camera: self.camera.to_string(),
            origin: format!("frigate event {}", o.id),
            captured,
            bytes,
            event_id: Some(o.id.clone()),
        })
    }

    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        resp.into_body().with_config().limit(MAX_SNAPSHOT).read_to_vec().map_err(|e| e.to_string())
    }
}

/// Writes an analysis back to Frigate as the event's description or sub label.
pub struct WriteBack {
    agent: ureq::Agent,
    url: String,
    mode: FrigateWriteBack,
}

impl WriteBack {
    /// None where the source writes nothing back.
    pub fn new(cfg: &FrigateSource) -> Option<WriteBack> {
        match cfg.write_back {
            FrigateWriteBack::None => None,
            mode => Some(WriteBack {
                agent: agent(),
                url: cfg.url.trim_end_matches('/').to_string(),
                mode,
            }),
        }
    }

    /// The request for `event`: path and JSON body, or None when there is nothing
    /// to write (no caption for a description).
    pub fn request(
        &self,
        event: &str,
        caption: Option<&str>,
        top: Option<(&str, f32)>,
    ) -> Option<(String, serde_json::Value)> {
        match self.mode {
            FrigateWriteBack::None => None,
            FrigateWriteBack::Description => Some((
                format!("{}/api/events/{event}/description", self.url),
                serde_json::json!({ "description": caption? }),
            )),
            FrigateWriteBack::SubLabel => {
                let (label, score) = top?;
                let label: String = label.chars().take(MAX_SUB_LABEL).collect();
                // Frigate takes a score in (0, 1], or none.
                let score = (score > 0.0 && score <= 1.0).then_some(score);
                Some((
                    format!("{}/api/events/{event}/sub_label", self.url),
                    serde_json::json!({ "subLabel": label, "subLabelScore": score }),
                ))
            }
        }
    }

    /// Send it; what Frigate said when it refused.
    pub fn send(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        self.agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map(|_| ())
            .map_err(|e| format!("POST {url}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_analysed_once_per_newer_snapshot_and_never_after_its_end() {
        let mut t = Tracker::default();
        assert_eq!(t.decide("e1", Kind::New, 1.0), Decision::Analyse);
        t.analysed("e1", 1.0);
        // QoS 1 again, or a zone change with the same snapshot.
        assert_eq!(t.decide("e1", Kind::New, 1.0), Decision::Skip("no newer snapshot"));
        assert_eq!(t.decide("e1", Kind::Update, 1.0), Decision::Skip("no newer snapshot"));
        assert_eq!(t.decide("e1", Kind::Update, 2.0), Decision::Analyse);
        t.analysed("e1", 2.0);
        // An update delayed past a newer one.
        assert_eq!(t.decide("e1", Kind::Update, 1.5), Decision::Skip("no newer snapshot"));
        assert_eq!(t.decide("e1", Kind::End, 2.0), Decision::Skip("no newer snapshot"));
        assert_eq!(t.decide("e1", Kind::Update, 3.0), Decision::Skip("the event has ended"));
        // An end whose new was missed is analysed; nothing after it is.
        assert_eq!(t.decide("e2", Kind::End, 5.0), Decision::Analyse);
        t.analysed("e2", 5.0);
        assert_eq!(t.decide("e2", Kind::New, 4.0), Decision::Skip("the event has ended"));
        // A snapshot that could not be fetched is tried again with the next message.
        assert_eq!(t.decide("e3", Kind::New, 1.0), Decision::Analyse);
        assert_eq!(t.decide("e3", Kind::Update, 1.0), Decision::Analyse);
    }

    #[test]
    fn the_tracker_forgets_the_oldest_events_past_its_bound() {
        let mut t = Tracker::default();
        for i in 0..REMEMBERED + 10 {
            let id = format!("e{i}");
            assert_eq!(t.decide(&id, Kind::End, 1.0), Decision::Analyse);
        }
        assert_eq!(t.seen.len(), REMEMBERED);
        assert_eq!(t.decide("e0", Kind::End, 1.0), Decision::Analyse, "forgotten");
    }

    #[test]
    fn frigate_s_documented_message_parses() {
        // From docs/docs/integrations/mqtt.md at v0.15.2 (comments removed).
        let doc = r#"{"type": "update",
          "before": {"id": "1607123955.475377-mxklsc", "camera": "front_door", "frame_time": 1607123961.837752,
            "snapshot": {"frame_time": 1607123965.975463, "box": [415, 489, 528, 700], "area": 12728,
                         "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []},
            "label": "person", "sub_label": null, "top_score": 0.958984375, "false_positive": false,
            "start_time": 1607123955.475377, "end_time": null, "score": 0.7890625, "box": [424, 500, 536, 712],
            "area": 23744, "ratio": 2.113207, "region": [264, 450, 667, 853], "current_zones": ["driveway"],
            "entered_zones": ["yard", "driveway"], "thumbnail": null, "has_snapshot": false, "has_clip": false,
            "active": true, "stationary": false, "motionless_count": 0, "position_changes": 2,
            "attributes": {"face": 0.64}, "current_attributes": []},
          "after": {"id": "1607123955.475377-mxklsc", "camera": "front_door", "frame_time": 1607123962.082975,
            "snapshot": {"frame_time": 1607123965.975463, "box": [415, 489, 528, 700], "area": 12728,
                         "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []},
            "label": "person", "sub_label": ["John Smith", 0.79], "top_score": 0.958984375,
            "false_positive": false, "start_time": 1607123955.475377, "end_time": null, "score": 0.87890625,
            "box": [432, 496, 544, 854], "area": 40096, "ratio": 1.251397, "region": [218, 440, 693, 915],
            "current_zones": ["yard", "driveway"], "entered_zones": ["yard", "driveway"], "thumbnail": null,
            "has_snapshot": false, "has_clip": false, "active": true, "stationary": false,
            "motionless_count": 0, "position_changes": 2, "attributes": {"face": 0.86},
            "current_attributes": [{"label": "face", "box": [442, 506, 534, 524], "score": 0.86}]}}"#;
        let m: EventMessage = serde_json::from_str(doc).unwrap();
        assert_eq!(Kind::parse(&m.kind), Some(Kind::Update));
        assert_eq!(m.after.id, "1607123955.475377-mxklsc");
        assert_eq!(m.after.camera, "front_door");
        assert_eq!(m.after.snapshot_time(), 1607123965.975463);
        assert!(check_event_id(&m.after.id).is_ok());
    }

    #[test]
    fn event_ids_that_would_leave_the_path_are_refused() {
        for bad in ["", "..", "a/b", "a?x=1", "a b", "%2e%2e", &"x".repeat(65)] {
            assert!(check_event_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn write_backs_follow_frigate_s_bodies_and_limits() {
        let cfg = |mode| FrigateSource {
            url: "http://frigate:5000/".into(),
            camera: "front".into(),
            write_back: mode,
            ..FrigateSource::default()
        };
        let d = WriteBack::new(&cfg(FrigateWriteBack::Description)).unwrap();
        let (url, body) = d.request("e1", Some("a red car"), Some(("car", 0.9))).unwrap();
        assert_eq!(url, "http://frigate:5000/api/events/e1/description");
        assert_eq!(body, serde_json::json!({"description": "a red car"}));
        assert!(
            d.request("e1", None, Some(("car", 0.9))).is_none(),
            "no caption, nothing to write"
        );
        let s = WriteBack::new(&cfg(FrigateWriteBack::SubLabel)).unwrap();
        let long = "x".repeat(150);
        let (url, body) = s.request("e1", None, Some((&long, 0.0))).unwrap();
        assert_eq!(url, "http://frigate:5000/api/events/e1/sub_label");
        assert_eq!(body["subLabel"].as_str().unwrap().len(), 100);
        assert!(body["subLabelScore"].is_null(), "0 is outside Frigate's (0, 1]");
        assert!(WriteBack::new(&cfg(FrigateWriteBack::None)).is_none());
    }
}
