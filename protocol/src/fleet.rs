//! The fleet: every bridge on a broker (or on brokers joined by a mosquitto bridge)
//! answers one request, so a household's devices search as one.
//!
//! In (every bridge subscribes): `owlet/fleet/search` ([`SearchRequest`]) and
//! `owlet/fleet/status` ([`StatusRequest`]). Out: each device's answer on
//! `owlet/fleet/reply/<id>` ([`SearchAnswer`], [`StatusAnswer`]), never anywhere
//! else: the reply topic is made from the request's id, which may hold only
//! letters, digits, `-`, `_` and `.`, so one ACL line (`owlet/fleet/reply/#`) lets
//! a device answer and nothing more.
//!
//! Each request carries a deadline (Unix milliseconds, so the devices' clocks must
//! agree to well under the timeout: NTP, as Home Assistant needs anyway). A device
//! drops a request whose deadline has passed, answers each id once (QoS 1 may
//! deliver a request twice), and refuses one that is too large or not the schema
//! on its own error topic, with the request's id when it had a usable one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::commands::{printable, Refused};

pub const SEARCH: &str = "owlet/fleet/search";
pub const STATUS: &str = "owlet/fleet/status";
pub const REPLY_PREFIX: &str = "owlet/fleet/reply/";

/// Longest request id: it becomes part of a topic.
pub const MAX_ID: usize = 64;
/// Longest search text, in characters (as a device's own search).
const MAX_TEXT: usize = 500;
/// Most hits a device returns for one request.
pub const MAX_K: usize = 100;
/// Most devices a request may name.
const MAX_DEVICES: usize = 1000;

/// Where the devices answer request `id`.
pub fn reply_topic(id: &str) -> String {
    format!("{REPLY_PREFIX}{id}")
}

/// `owlet/fleet/search`: `{"id": "...", "text": "a red car", "deadline_ms": ...,
/// "k": 5, "devices": ["door", ...], "camera": ..., "since_ms": ..., "until_ms": ...,
/// "thumbnails": false}`. Without `devices`, every device answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub id: String,
    pub text: String,
    pub deadline_ms: u64,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Each hit with its thumbnail (a JPEG, base64): a few KB a hit.
    #[serde(default)]
    pub thumbnails: bool,
}

fn default_k() -> usize {
    5
}

/// `owlet/fleet/status`: `{"id": "...", "deadline_ms": ..., "devices": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub id: String,
    pub deadline_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// One device's answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchAnswer {
    pub id: String,
    pub device: String,
    /// Best first.
    pub hits: Vec<Hit>,
    /// Frames in the device's history.
    pub searched: usize,
    /// The device's own time: embedding the text and searching.
    pub search_ms: f64,
    /// Why the device could not search (its hits are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SearchAnswer {
    /// An answer of `device` to request `id` with nothing in it yet.
    pub fn empty(id: &str, device: &str) -> SearchAnswer {
        SearchAnswer {
            id: id.to_string(),
            device: device.to_string(),
            hits: vec![],
            searched: 0,
            search_ms: 0.0,
            error: None,
        }
    }
}

/// A frame of a device's history that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hit {
    pub frame_id: i64,
    pub camera: String,
    pub time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The file the frame came from, for frames indexed from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Cosine similarity of the frame to the text, by the device's CLIP model.
    pub score: f32,
    /// The frame's best labels, best first.
    #[serde(default)]
    pub labels: Vec<(String, f32)>,
    /// The thumbnail, base64 JPEG, when the request asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_jpeg_base64: Option<String>,
}

/// One device's answer to a status request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusAnswer {
    pub id: String,
    pub device: String,
    pub version: String,
    pub uptime_s: f64,
    pub cameras: Vec<CameraStatus>,
    /// Frames in the history, where the device keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_frames: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraStatus {
    pub name: String,
    /// The camera's last result, if it has had one since the bridge started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastResult {
    pub time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// Either request, once checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Search(SearchRequest),
    Status(StatusRequest),
}

impl Request {
    pub fn id(&self) -> &str {
        match self {
            Request::Search(r) => &r.id,
            Request::Status(r) => &r.id,
        }
    }

    pub fn deadline_ms(&self) -> u64 {
        match self {
            Request::Search(r) => r.deadline_ms,
            Request::Status(r) => r.deadline_ms,
        }
    }

    /// Whether `device` is asked (no list: every device is).
    pub fn asks(&self, device: &str) -> bool {
        let devices = match self {
            Request::Search(r) => &r.devices,
            Request::Status(r) => &r.devices,
        };
        devices.as_ref().is_none_or(|d| d.iter().any(|n| n == device))
    }
}

/// A request id: 1 to 64 of `[A-Za-z0-9_.-]`, so that its reply topic is one
/// topic level with no wildcard.
pub fn check_id(id: &str) -> Result<(), String> {
    if crate::names::is_plain_id(id, MAX_ID) {
        Ok(())
    } else {
        Err(format!("id must be 1 to {MAX_ID} letters, digits, '-', '_' or '.'"))
    }
}

/// Parse a message from `owlet/fleet/search` or `owlet/fleet/status`.
pub fn parse(topic: &str, payload: &[u8], max_bytes: usize) -> Result<Request, Refused> {
    let refuse =
        |reason: String, id: Option<String>| Refused { topic: printable(topic), reason, id };
    if payload.len() > max_bytes {
        let reason = format!("payload is {} bytes, over the {max_bytes} byte limit", payload.len());
        return Err(refuse(reason, None));
    }
    let text =
        std::str::from_utf8(payload).map_err(|_| refuse("payload is not UTF-8".into(), None))?;
    // The id of a request that fails its schema, if usable: the refusal carries it.
    let loose_id = || {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let id = v.get("id")?.as_str()?;
        check_id(id).ok().map(|_| id.to_string())
    };
    let request = match topic {
        SEARCH => serde_json::from_str(text).map(Request::Search).map_err(|e| {
            let want = "{\"id\": \"...\", \"text\": \"...\", \"deadline_ms\": ..., \"k\": 5, \
                        \"devices\": [...], \"camera\": ..., \"since_ms\": ..., \"until_ms\": ..., \
                        \"thumbnails\": false}";
            refuse(format!("fleet search wants {want}: {e}"), loose_id())
        })?,
        STATUS => serde_json::from_str(text).map(Request::Status).map_err(|e| {
            let want = "{\"id\": \"...\", \"deadline_ms\": ..., \"devices\": [...]}";
            refuse(format!("fleet status wants {want}: {e}"), loose_id())
        })?,
        _ => return Err(refuse("not a fleet topic".into(), None)),
    };
    check_id(request.id()).map_err(|e| refuse(e, None))?;
    let id = Some(request.id().to_string());
    let devices = match &request {
        Request::Search(r) => &r.devices,
        Request::Status(r) => &r.devices,
    };
    if devices.as_ref().is_some_and(|d| d.is_empty() || d.len() > MAX_DEVICES) {
        return Err(refuse(format!("devices must list 1 to {MAX_DEVICES} names"), id));
    }
    match request {
        Request::Search(mut r) => {
            let t = r.text.trim();
            if t.is_empty() || t.chars().count() > MAX_TEXT || t.chars().any(char::is_control) {
                return Err(refuse(
                    format!("text must be 1 to {MAX_TEXT} printable characters"),
                    id,
                ));
            }
            r.text = t.to_string();
            if r.k == 0 || r.k > MAX_K {
                return Err(refuse(format!("k must be between 1 and {MAX_K}"), id));
            }
            Ok(Request::Search(r))
        }
        status => Ok(status),
    }
}

/// The ids of the requests answered lately: a request delivered twice (QoS 1
/// allows it) is answered once. Bounded: the oldest ids are forgotten first, and
/// by then their deadlines have long passed.
#[derive(Debug)]
pub struct RecentIds {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds { order: Default::default(), set: Default::default(), capacity: capacity.max(1) }
    }

    /// True the first time `id` is seen (then it is remembered).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(payload: &str) -> Result<Request, Refused> {
        parse(SEARCH, payload.as_bytes(), 4096)
    }

    #[test]
    fn a_search_round_trips_and_defaults_its_k() {
        let r = search(r#"{"id": "q-1", "text": " a red car ", "deadline_ms": 5}"#).unwrap();
        let Request::Search(s) = &r else { panic!("{r:?}") };
        assert_eq!((s.text.as_str(), s.k, s.thumbnails), ("a red car", 5, false));
        assert!(r.asks("anyone"));
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(parse(SEARCH, json.as_bytes(), 4096).unwrap(), r);
        let named = search(r#"{"id": "q", "text": "x", "deadline_ms": 5, "devices": ["door"]}"#);
        let named = named.unwrap();
        assert!(named.asks("door") && !named.asks("garage"));
        let st = parse(STATUS, br#"{"id": "s.1", "deadline_ms": 9}"#, 4096).unwrap();
        assert_eq!((st.id(), st.deadline_ms()), ("s.1", 9));
    }

    #[test]
    fn hostile_requests_are_refused_by_name() {
        for (payload, why, id) in [
            (r#"{"id": "a/b", "text": "x", "deadline_ms": 1}"#, "id must be", None),
            (r#"{"id": "a+", "text": "x", "deadline_ms": 1}"#, "id must be", None),
            (r#"{"id": "..", "text": "x", "deadline_ms": 1}"#, "id must be", None),
            (r#"{"id": "q", "text": "x"}"#, "deadline_ms", Some("q")),
            (r#"{"id": "q", "text": "x", "deadline_ms": 1, "sql": 1}"#, "unknown field", Some("q")),
            (r#"{"id": "q", "text": " ", "deadline_ms": 1}"#, "text must be", Some("q")),
            (r#"{"id": "q", "text": "x", "deadline_ms": 1, "k": 0}"#, "k must be", Some("q")),
            (r#"{"id": "q", "text": "x", "deadline_ms": 1, "k": 101}"#, "k must be", Some("q")),
            (r#"{"id": "q", "text": "x", "deadline_ms": 1, "devices": []}"#, "devices", Some("q")),
            (r#"{"id": "q", "text": "x", "deadline_ms": -1}"#, "deadline_ms", Some("q")),
            ("not json", "fleet search wants", None),
        ] {
            let e = search(payload).unwrap_err();
            assert!(e.reason.contains(why), "{payload}: {}", e.reason);
            assert_eq!(e.id.as_deref(), id, "{payload}");
        }
        let big = format!(r#"{{"id": "q", "text": "{}", "deadline_ms": 1}}"#, "x".repeat(5000));
        assert!(search(&big).unwrap_err().reason.contains("over the 4096 byte limit"));
        assert!(parse(SEARCH, b"\xff\xfe", 4096).unwrap_err().reason.contains("UTF-8"));
        assert!(parse("owlet/fleet/other", b"{}", 4096).is_err());
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        for _ in 0..2000 {
            let n = rng.random_range(0..200);
            let payload: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            let _ = parse(SEARCH, &payload, 1024);
            let _ = parse(STATUS, &payload, 1024);
        }
    }

    #[test]
    fn recent_ids_answer_once_and_forget_the_oldest() {
        let mut seen = RecentIds::new(2);
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(seen.first_time("c")); // "a" forgotten
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("c"));
    }
}
