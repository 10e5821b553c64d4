//! Commands over MQTT, validated before anything acts on them.
//!
//! Topics (per camera): `owlet/<device>/<camera>/capture` (empty, `PRESS` as Home
//! Assistant's button sends, or `{"id": ...}`), `.../ask` (`{"question": ...,
//! "id": ..., "reply_to": ...}`) and `.../labels/set` (`{"labels": [...]}` or a
//! bare JSON array; send it retained so it survives restarts of both sides).
//! Anything else (over the size limit, not UTF-8, not the schema, an unknown
//! camera) is refused with a reason that goes to the error topic.

use serde::Deserialize;

use crate::names::clean_labels;
use crate::topics::Topics;

/// Longest correlation id accepted.
const MAX_ID: usize = 128;
/// Longest question, in characters (the runtime has its own, larger limit).
const MAX_QUESTION: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum CameraCommand {
    Capture { id: Option<String> },
    Ask { question: String, id: Option<String>, reply_to: Option<String> },
    SetLabels { labels: Vec<String> },
}

/// A refused command: what to say on the error topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub topic: String,
    pub reason: String,
    pub id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureJson {
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskJson {
    question: String,
    id: Option<String>,
    reply_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsObject {
    labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsJson {
    Object(LabelsObject),
    List(Vec<String>),
}

/// The `id` of a payload that failed its schema, if it has a usable one: the
/// refusal carries it so the sender can match it to its request.
fn loose_id(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    check_id(v.get("id")?.as_str().map(str::to_string)).ok().flatten()
}

/// A reply topic must not be one of the bridge's own: its status (a retained
/// online/offline that Home Assistant reads), its error topic, a command topic
/// (an answer there would be read back as a command), or the fleet's (every
/// device would read it as a request).
fn check_reply_to(topics: &Topics, reply_to: &str) -> Result<(), String> {
    if !valid_publish_topic(reply_to) {
        return Err(format!(
            "reply_to {:?} is not a topic one can publish to",
            printable(reply_to)
        ));
    }
    let own = reply_to == topics.status()
        || reply_to == topics.error()
        || reply_to == topics.search()
        || reply_to.starts_with("owlet/fleet/")
        || topics.command_of(reply_to).is_some();
    if own {
        return Err(format!(
            "reply_to {:?} is one of the bridge's own topics",
            printable(reply_to)
        ));
    }
    Ok(())
}

/// Parse a message that arrived on one of the command topics.
pub fn parse(
    topics: &Topics,
    cameras: &[String],
    topic: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<(String, CameraCommand), Refused> {
    let refuse =
        |reason: String, id: Option<String>| Refused { topic: printable(topic), reason, id };
    let Some((camera, verb)) = topics.command_of(topic) else {
        return Err(refuse("not a command topic".into(), None));
    };
    if !cameras.iter().any(|c| c == camera) {
        return Err(refuse(
            format!("no camera named {:?} (cameras: {})", printable(camera), cameras.join(", ")),
            None,
        ));
    }
    let text = payload_text(topic, payload, max_bytes)?;
    let cmd = match verb {
        "capture" => {
            let t = text.trim();
            if t.is_empty() || t == "PRESS" {
                CameraCommand::Capture { id: None }
            } else {
                let j: CaptureJson = serde_json::from_str(t).map_err(|e| {
                    refuse(
                        format!("capture wants nothing, PRESS or {{\"id\": \"...\"}}: {e}"),
                        loose_id(t),
                    )
                })?;
                CameraCommand::Capture { id: check_id(j.id).map_err(|r| refuse(r, None))? }
            }
        }
        "ask" => {
            let j: AskJson = serde_json::from_str(text)
                .map_err(|e| refuse(format!("ask wants {{\"question\": \"...\", \"id\": \"...\", \"reply_to\": \"...\"}}: {e}"), loose_id(text)))?;
            let id = check_id(j.id).map_err(|r| refuse(r, None))?;
            let question = check_question(&j.question).map_err(|r| refuse(r, id.clone()))?;
            if let Some(r) = &j.reply_to {
                check_reply_to(topics, r).map_err(|reason| refuse(reason, id.clone()))?;
            }
            CameraCommand::Ask { question, id, reply_to: j.reply_to }
        }
        "labels/set" => {
            let labels = match serde_json::from_str::<LabelsJson>(text) {
                Ok(LabelsJson::Object(LabelsObject { labels }) | LabelsJson::List(labels)) => labels,
                Err(_) => {
                    return Err(refuse(
                        "labels/set wants {\"labels\": [\"...\", ...]} (no other field) or [\"...\", ...]"
                            .into(),
                        loose_id(text),
                    ))
                }
            };
            let labels = clean_labels(labels).map_err(|r| refuse(format!("labels {r}"), None))?;
            CameraCommand::SetLabels { labels }
        }
        _ => unreachable!("command_of returns known verbs only"),
    };
    Ok((camera.to_string(), cmd))
}

/// A question for BLIP-2 (over MQTT or from the web page), trimmed; or why not.
pub fn check_question(question: &str) -> Result<String, String> {
    let q = question.trim();
    if q.is_empty() || q.chars().count() > MAX_QUESTION || q.chars().any(char::is_control) {
        return Err(format!("question must be 1 to {MAX_QUESTION} printable characters"));
    }
    Ok(q.to_string())
}

/// A payload within the size limit, as UTF-8 text.
fn payload_text<'a>(topic: &str, payload: &'a [u8], max_bytes: usize) -> Result<&'a str, Refused> {
    let refuse = |reason: String| Refused { topic: printable(topic), reason, id: None };
    if payload.len() > max_bytes {
        return Err(refuse(format!(
            "payload is {} bytes, over the {max_bytes} byte limit",
            payload.len()
        )));
    }
    std::str::from_utf8(payload).map_err(|_| refuse("payload is not UTF-8".into()))
}

fn check_id(id: Option<String>) -> Result<Option<String>, String> {
    match id {
        Some(i) if i.is_empty() || i.len() > MAX_ID || i.chars().any(char::is_control) => {
            Err(format!("id must be 1 to {MAX_ID} bytes of printable text"))
        }
        other => Ok(other),
    }
}

/// MQTT: a topic to publish to has no wildcards, no NUL, at most 64 KiB; we also
/// refuse `$` topics (the broker's own) and anything long.
pub fn valid_publish_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && !t.starts_with('$')
        && !t.chars().any(|c| matches!(c, '+' | '#' | '\0') || c.is_control())
}

/// A hostile topic or payload is quoted in error messages, cut and made printable.
pub fn printable(s: &str) -> String {
    let mut out: String =
        s.chars().take(120).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, payload: &[u8]) -> Result<(String, CameraCommand), Refused> {
        parse(&Topics::new("dev"), &["door".into()], topic, payload, 1024)
    }

    #[test]
    fn valid_commands_parse() {
        assert_eq!(
            p("owlet/dev/door/capture", b"").unwrap().1,
            CameraCommand::Capture { id: None }
        );
        assert_eq!(
            p("owlet/dev/door/capture", b"PRESS").unwrap().1,
            CameraCommand::Capture { id: None }
        );
        assert_eq!(
            p("owlet/dev/door/capture", br#"{"id":"7"}"#).unwrap().1,
            CameraCommand::Capture { id: Some("7".into()) }
        );
        assert_eq!(
            p(
                "owlet/dev/door/ask",
                br#"{"question":" what is it? ","id":"q1","reply_to":"me/answers"}"#
            )
            .unwrap()
            .1,
            CameraCommand::Ask {
                question: "what is it?".into(),
                id: Some("q1".into()),
                reply_to: Some("me/answers".into())
            }
        );
        assert_eq!(
            p("owlet/dev/door/labels/set", br#"["cat", " dog "]"#).unwrap().1,
            CameraCommand::SetLabels { labels: vec!["cat".into(), "dog".into()] }
        );
        assert_eq!(
            p("owlet/dev/door/labels/set", br#"{"labels":["cat"]}"#).unwrap().1,
            CameraCommand::SetLabels { labels: vec!["cat".into()] }
        );
    }

    #[test]
    fn hostile_commands_are_refused_with_a_reason() {
        let big = vec![b'a'; 2000];
        for (topic, payload, needle) in [
            ("owlet/dev/door/capture", &b"\xff\xfe"[..], "UTF-8"),
            ("owlet/dev/door/capture", &big[..], "byte limit"),
            ("owlet/dev/door/capture", &b"{\"id\": 5}"[..], "capture wants"),
            ("owlet/dev/window/capture", &b""[..], "no camera"),
            ("owlet/dev/door/ask", &b"what?"[..], "ask wants"),
            ("owlet/dev/door/ask", &b"{\"question\": \"\"}"[..], "question must"),
            (
                "owlet/dev/door/ask",
                &b"{\"question\": \"q\", \"reply_to\": \"a/#\"}"[..],
                "reply_to",
            ),
            ("owlet/dev/door/ask", &b"{\"question\": \"q\", \"extra\": 1}"[..], "unknown field"),
            ("owlet/dev/door/labels/set", &b"[]"[..], "labels must"),
            ("owlet/dev/door/labels/set", &b"{\"labels\": [\"\\u0000\"]}"[..], "labels"),
            ("owlet/dev/door/labels/set", &b"null"[..], "labels/set wants"),
            // Issue 22: unknown fields, the bridge's own topics as reply_to.
            (
                "owlet/dev/door/labels/set",
                &br#"{"labels": ["cat"], "extra": 1}"#[..],
                "no other field",
            ),
            (
                "owlet/dev/door/ask",
                &br#"{"question": "q", "reply_to": "owlet/dev/status"}"#[..],
                "own topics",
            ),
            (
                "owlet/dev/door/ask",
                &br#"{"question": "q", "reply_to": "owlet/dev/door/capture"}"#[..],
                "own topics",
            ),
            (
                "owlet/dev/door/ask",
                &br#"{"question": "q", "reply_to": "owlet/dev/error"}"#[..],
                "own topics",
            ),
            (
                "owlet/dev/door/ask",
                &br#"{"question": "q", "reply_to": "owlet/fleet/search"}"#[..],
                "own topics",
            ),
        ] {
            let e = p(topic, payload).unwrap_err();
            assert!(
                e.reason.contains(needle),
                "{topic} {:?}: {}",
                String::from_utf8_lossy(payload),
                e.reason
            );
        }
        // Issue 22: the id of a refused payload comes back.
        for (topic, payload) in [
            ("owlet/dev/door/ask", &br#"{"question": "q", "id": "abc", "extra": 1}"#[..]),
            ("owlet/dev/door/capture", &br#"{"id": "abc", "extra": 1}"#[..]),
            ("owlet/dev/door/labels/set", &br#"{"labels": [], "id": "abc"}"#[..]),
        ] {
            assert_eq!(p(topic, payload).unwrap_err().id.as_deref(), Some("abc"), "{topic}");
        }
        let e = parse_search(
            &Topics::new("dev"),
            "owlet/dev/search",
            br#"{"text": "a", "id": "s1", "reply_to": "owlet/dev/status"}"#,
            1024,
        )
        .unwrap_err();
        assert!(e.reason.contains("own topics") && e.id.as_deref() == Some("s1"), "{e:?}");
        let e = p("owlet/dev/door/ask", br#"{"question": "", "id": "abc"}"#).unwrap_err();
        assert_eq!(
            e.id.as_deref(),
            Some("abc"),
            "the id comes back so the asker can match the refusal"
        );
    }

    #[test]
    fn search_requests_are_checked() {
        let r = parse_search(
            &Topics::new("dev"),
            "owlet/dev/search",
            br#"{"text": " red car ", "camera": "door", "since_ms": 5}"#,
            1024,
        )
        .unwrap();
        assert_eq!(
            (r.text.as_str(), r.k, r.camera.as_deref(), r.since_ms),
            ("red car", 5, Some("door"), Some(5))
        );
        for (payload, needle) in [
            (&br#"{"text": ""}"#[..], "text must"),
            (&br#"{"text": "a", "k": 0}"#[..], "k must"),
            (&br#"{"text": "a", "reply_to": "x/+"}"#[..], "reply_to"),
            (&br#"{"query": "a"}"#[..], "search wants"),
            (&b"\xff"[..], "UTF-8"),
        ] {
            let e =
                parse_search(&Topics::new("dev"), "owlet/dev/search", payload, 1024).unwrap_err();
            assert!(
                e.reason.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(payload),
                e.reason
            );
        }
        assert!(parse_search(&Topics::new("dev"), "owlet/dev/search", &[b' '; 2000], 1024)
            .unwrap_err()
            .reason
            .contains("byte limit"));
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..2000 {
            let n = rng.random_range(0..200);
            let payload: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            for t in ["owlet/dev/door/capture", "owlet/dev/door/ask", "owlet/dev/door/labels/set"] {
                let _ = p(t, &payload);
            }
            let _ = parse_search(&Topics::new("dev"), "owlet/dev/search", &payload, 1024);
        }
    }
}

/// `owlet/<device>/search`: `{"text": "...", "k": 5, "camera": "...", "since_ms": ...,
/// "until_ms": ..., "id": "...", "reply_to": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub text: String,
    #[serde(default = "default_k")]
    pub k: usize,
    pub camera: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub id: Option<String>,
    pub reply_to: Option<String>,
}

fn default_k() -> usize {
    5
}

pub fn parse_search(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<SearchRequest, Refused> {
    let refuse =
        |reason: String, id: Option<String>| Refused { topic: printable(topic), reason, id };
    let text = payload_text(topic, payload, max_bytes)?;
    let mut r: SearchRequest = serde_json::from_str(text)
        .map_err(|e| refuse(format!("search wants {{\"text\": \"...\", \"k\": 5, \"camera\": ..., \"since_ms\": ..., \"until_ms\": ..., \"id\": ..., \"reply_to\": ...}}: {e}"), loose_id(text)))?;
    r.id = check_id(r.id).map_err(|e| refuse(e, None))?;
    let t = r.text.trim().to_string();
    if t.is_empty() || t.chars().count() > MAX_QUESTION || t.chars().any(char::is_control) {
        return Err(refuse(format!("text must be 1 to {MAX_QUESTION} printable characters"), r.id));
    }
    r.text = t;
    if r.k == 0 || r.k > 100 {
        return Err(refuse("k must be between 1 and 100".into(), r.id));
    }
    if let Some(rt) = &r.reply_to {
        check_reply_to(topics, rt).map_err(|reason| refuse(reason, r.id.clone()))?;
    }
    Ok(r)
}
