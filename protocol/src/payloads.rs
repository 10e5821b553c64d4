//! What the bridge publishes, one type per JSON payload: the contract Home Assistant,
//! Node-RED and every other subscriber reads. The bridge builds these and nothing
//! else; `schemas` turns each into a JSON Schema (committed under `docs/mqtt/`, checked
//! against the types by a test; the end-to-end tests check what a real bridge
//! publishes against the types). Every payload the bridge queues (all of these but
//! the fleet's replies and the outbox's own reports) also gets `seq`, the device's
//! message counter, when it is published (see `Published`). Subscribers should
//! ignore fields they do not know: new ones may come; none goes without notice.
//!
//! Topics (`D` the device, `C` a camera; `topics` builds them):
//! - `owlet/D/C/labels`: [`Labels`]; `owlet/D/C/caption`: [`Caption`]
//! - `owlet/D/C/event`: [`LabelEvent`]; `owlet/D/C/labels/state`: [`LabelSet`]
//! - `owlet/D/C/answer` (or the request's `reply_to`): [`Answer`]
//! - `owlet/D/C/prompt/<slug>/attributes`: [`PromptAttributes`]
//! - `owlet/D/C/error`: [`CameraError`]; `owlet/D/error`: [`DeviceErrorMessage`]
//! - `owlet/D/search/result` (or the request's `reply_to`): [`SearchResult`]
//! - `owlet/fleet/reply/<id>`: `fleet::SearchAnswer`, `fleet::StatusAnswer`
//! - text: `owlet/D/status` (`online`/`offline`), `owlet/D/C/motion` and
//!   `owlet/D/C/prompt/<slug>` (`ON`/`OFF`); bytes: `owlet/D/C/snapshot` (a JPEG).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a frame was analysed; every result carries it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A still image file (folder source): each is analysed once.
    Still,
    /// The camera's interval came round.
    Interval,
    /// The frame differed enough from the one before.
    Motion,
    /// "capture now" over MQTT.
    Command,
    /// A line from the line-trigger process (PIR sensor, GPIO edge, microcontroller).
    Line,
    /// A Frigate event's snapshot: each is analysed once.
    Frigate,
}

impl Trigger {
    /// Its name in results and in the history (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Still => "still",
            Trigger::Interval => "interval",
            Trigger::Motion => "motion",
            Trigger::Command => "command",
            Trigger::Line => "line",
            Trigger::Frigate => "frigate",
        }
    }
}

/// One zero-shot label and its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelScore {
    pub label: String,
    /// Softmax over the camera's label set, 0..=1.
    pub score: f32,
}

/// Which frame a result is about, and what made the bridge look at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FrameInfo {
    pub camera: String,
    /// Where the frame came from: a file's path, a stream's URL, a Frigate event.
    pub frame: String,
    /// Capture time, milliseconds since the Unix epoch.
    pub frame_time_ms: u64,
    pub trigger: Trigger,
    /// The model bundle's name.
    pub model: String,
    /// Where the model ran: `cpu` or `cuda`.
    pub runs_on: String,
    /// The model's time for this result.
    pub latency_ms: f64,
    /// The ids of the `capture` commands this result answers, when they gave ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
    /// The Frigate event whose snapshot this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frigate_event: Option<String>,
}

/// `owlet/D/C/labels`, retained: the frame's zero-shot labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Labels {
    #[serde(flatten)]
    pub frame: FrameInfo,
    pub top_label: String,
    pub top_score: f32,
    /// All labels, best first.
    pub labels: Vec<LabelScore>,
    /// Live frames that arrived and were replaced by newer ones since the last look:
    /// what "the newest frame wins" cost.
    pub frames_skipped: u64,
    /// Present when the frame was not captioned because it shows the scene last
    /// captioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption_skipped: Option<CaptionSkipped>,
}

/// Why a frame got no caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionSkipped {
    pub reason: String,
    /// The frame's CLIP cosine with the last captioned frame.
    pub cosine: f32,
}

/// `owlet/D/C/caption`, retained: BLIP-2's caption of the frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Caption {
    #[serde(flatten)]
    pub frame: FrameInfo,
    pub caption: String,
}

/// Whether a label came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Appeared,
    Disappeared,
}

/// `owlet/D/C/event`: a label crossed its threshold (hysteresis: `events = {on, off}`);
/// Home Assistant's event entity reads `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelEvent {
    pub event_type: EventType,
    pub label: String,
    /// The label's score on the frame that crossed.
    pub score: f32,
    pub camera: String,
    pub frame_time_ms: u64,
    pub trigger: Trigger,
}

/// `owlet/D/C/labels/state`, retained: the label set the camera uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSet {
    pub camera: String,
    pub labels: Vec<String>,
}

/// `owlet/D/C/answer` (or the request's `reply_to`): BLIP-2's answer to `ask`, or
/// why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Answer {
    pub camera: String,
    /// The request's id, when it gave one.
    pub id: Option<String>,
    pub question: String,
    #[serde(flatten)]
    pub outcome: AnswerOutcome,
}

/// An answer, or the reason for none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AnswerOutcome {
    /// The model answered.
    Answered {
        answer: String,
        model: String,
        /// `cpu` or `cuda`.
        runs_on: String,
        /// The frame asked about.
        frame: String,
        frame_time_ms: u64,
        latency_ms: f64,
    },
    /// No frame yet, the rate limit, or the model failed.
    Failed { error: String },
}

/// `owlet/D/C/prompt/<slug>/attributes`, retained: a prompt sensor's score on the
/// newest frame (its ON/OFF state is `owlet/D/C/prompt/<slug>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptAttributes {
    pub camera: String,
    /// The prompt's text.
    pub prompt: String,
    /// CLIP cosine of the frame with the prompt.
    pub score: f32,
    /// On, off, or not yet decided (between its thresholds since the start).
    pub state: Option<bool>,
    pub time_ms: u64,
}

/// `owlet/D/C/error`: a frame or the camera's source failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraError {
    pub camera: String,
    pub error: String,
    /// `source` when the camera's source failed (not one frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The frame that failed, where one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    pub time_ms: u64,
}

/// `owlet/D/error`: a refused command, results the bridge could not keep, or a
/// message too large to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DeviceError {
    /// A command refused: its topic, the reason, the sender's id when usable.
    Refused {
        topic: String,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        time_ms: u64,
    },
    /// Results dropped from the outbox (`error` is "results lost"): which `seq`s.
    Lost { error: String, count: u64, lost: Vec<LostRange>, time_ms: u64 },
    /// Anything else (a message over the broker's size limit).
    Other { error: String, time_ms: u64 },
}

/// `owlet/D/error` as it goes out: a refused command is queued like every result
/// (with `seq`); the outbox's own reports, of results lost or a message too large,
/// are published beside it (without: they are about the queue itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DeviceErrorMessage {
    /// Through the outbox.
    Queued(Published<DeviceError>),
    /// Directly.
    Direct(DeviceError),
}

/// A run of lost results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LostRange {
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
    /// Why: the outbox was full, or the result too old to matter.
    pub reason: String,
}

/// `owlet/D/search/result` (or the request's `reply_to`): the history's best
/// matches for a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchResult {
    /// The request's id, when it gave one.
    pub id: Option<String>,
    pub text: String,
    /// Embedding the text and searching.
    pub latency_ms: f64,
    /// Best first (empty with `error`).
    #[serde(default)]
    pub hits: Vec<SearchHit>,
    /// Frames in the history.
    #[serde(default)]
    pub searched: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A frame of the history that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchHit {
    /// The file the frame came from, where it came from one.
    pub frame: Option<String>,
    /// The frame's id in the history (the web page's `/api/frames/<id>`).
    pub frame_id: i64,
    pub camera: String,
    pub time_ms: u64,
    pub caption: Option<String>,
    /// The frame's best labels when it was analysed, best first.
    pub labels: Vec<LabelScore>,
    /// Cosine similarity of the frame to the text.
    pub score: f32,
}

/// A payload as it goes out: the bridge's counter beside its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Published<T> {
    #[serde(flatten)]
    pub payload: T,
    /// Increases by one per queued message of the device: a gap is a lost result
    /// (reported on `owlet/D/error`).
    pub seq: u64,
}

/// Every JSON payload: its file name under `docs/mqtt/` (`<name>.schema.json`), its
/// topic, and its schema (titled with the topic).
pub fn schemas() -> Vec<(&'static str, &'static str, schemars::Schema)> {
    use schemars::schema_for;
    /// A queued payload's schema: the type's fields and `seq`, described as the type.
    fn published<T: JsonSchema>() -> schemars::Schema {
        let mut schema = schema_for!(Published<T>);
        if let Some(description) = schema_for!(T).get("description") {
            schema.insert("description".into(), description.clone());
        }
        schema
    }
    let all = [
        ("labels", "owlet/D/C/labels", published::<Labels>()),
        ("caption", "owlet/D/C/caption", published::<Caption>()),
        ("event", "owlet/D/C/event", published::<LabelEvent>()),
        ("labels-state", "owlet/D/C/labels/state", published::<LabelSet>()),
        ("answer", "owlet/D/C/answer", published::<Answer>()),
        (
            "prompt-attributes",
            "owlet/D/C/prompt/<slug>/attributes",
            published::<PromptAttributes>(),
        ),
        ("camera-error", "owlet/D/C/error", published::<CameraError>()),
        ("device-error", "owlet/D/error", schema_for!(DeviceErrorMessage)),
        ("search-result", "owlet/D/search/result", published::<SearchResult>()),
        ("fleet-search-answer", "owlet/fleet/reply/<id>", schema_for!(crate::fleet::SearchAnswer)),
        ("fleet-status-answer", "owlet/fleet/reply/<id>", schema_for!(crate::fleet::StatusAnswer)),
    ];
    all.into_iter()
        .map(|(name, topic, mut schema)| {
            schema.insert("title".into(), topic.into());
            (name, topic, schema)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `docs/mqtt/` holds exactly the schemas the types make (OWLET_WRITE_SCHEMAS=1
    /// rewrites them after a change to a payload).
    #[test]
    fn committed_schemas_are_the_types_schemas() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/mqtt");
        let write = std::env::var("OWLET_WRITE_SCHEMAS").is_ok_and(|v| v == "1");
        let mut names = Vec::new();
        for (name, _, schema) in schemas() {
            let file = format!("{name}.schema.json");
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(&file), &text).unwrap();
            }
            let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
            assert!(
                committed == text,
                "docs/mqtt/{file} is not what the types say: \
                 OWLET_WRITE_SCHEMAS=1 cargo test -p owlet-protocol schemas"
            );
            names.push(file);
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().to_string();
            if file.ends_with(".schema.json") {
                assert!(names.contains(&file), "docs/mqtt/{file}: no payload type has it");
            }
        }
    }

    #[test]
    fn payloads_round_trip_and_say_what_the_readme_says() {
        let frame = FrameInfo {
            camera: "door".into(),
            frame: "frames/a.jpg".into(),
            frame_time_ms: 1_700_000_000_000,
            trigger: Trigger::Motion,
            model: "clip-demo".into(),
            runs_on: "cpu".into(),
            latency_ms: 12.5,
            request_ids: vec![],
            frigate_event: None,
        };
        let labels = Published {
            payload: Labels {
                frame,
                top_label: "car".into(),
                top_score: 0.75,
                labels: vec![LabelScore { label: "car".into(), score: 0.75 }],
                frames_skipped: 0,
                caption_skipped: None,
            },
            seq: 7,
        };
        let v = serde_json::to_value(&labels).unwrap();
        assert_eq!(v["trigger"], "motion");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["labels"][0]["label"], "car");
        assert!(v.get("request_ids").is_none() && v.get("caption_skipped").is_none());
        assert_eq!(serde_json::from_value::<Published<Labels>>(v).unwrap(), labels);

        let failed = Answer {
            camera: "door".into(),
            id: Some("q1".into()),
            question: "what is there?".into(),
            outcome: AnswerOutcome::Failed { error: "no frame from this camera yet".into() },
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"camera": "door", "id": "q1",
            "question": "what is there?", "error": "no frame from this camera yet"})
        );
        assert_eq!(serde_json::from_value::<Answer>(v).unwrap(), failed);

        let lost = DeviceError::Lost {
            error: "results lost".into(),
            count: 3,
            lost: vec![LostRange { first_seq: 4, last_seq: 6, count: 3, reason: "full".into() }],
            time_ms: 1,
        };
        let v = serde_json::to_value(&lost).unwrap();
        assert_eq!(serde_json::from_value::<DeviceError>(v).unwrap(), lost);
    }
}
