//! Command payloads from MQTT, on every command topic and the fleet's request
//! topics: parsed or refused with a reason, never a panic; what is accepted
//! satisfies the checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owlet_protocol::commands::{parse, parse_search, CameraCommand};
use owlet_protocol::fleet::{self, Request};
use owlet_protocol::names::check_labels;
use owlet_protocol::topics::Topics;

const TOPICS: [&str; 7] = [
    "owlet/dev/door/capture",
    "owlet/dev/door/ask",
    "owlet/dev/door/labels/set",
    "owlet/dev/search",
    "owlet/dev/wind\u{0}ow/ask",
    fleet::SEARCH,
    fleet::STATUS,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else { return };
    let topics = Topics::new("dev");
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    let short_id =
        |id: &Option<String>| id.as_ref().is_none_or(|i| !i.is_empty() && i.len() <= 128);
    if topic == fleet::SEARCH || topic == fleet::STATUS {
        match fleet::parse(topic, payload, 4096) {
            Ok(r) => {
                assert!(fleet::check_id(r.id()).is_ok());
                if let Request::Search(s) = r {
                    assert!(!s.text.is_empty() && (1..=100).contains(&s.k));
                }
            }
            Err(e) => assert!(!e.reason.is_empty()),
        }
        return;
    }
    if topic == topics.search() {
        match parse_search(&topics, topic, payload, 4096) {
            Ok(r) => {
                assert!(!r.text.is_empty() && (1..=100).contains(&r.k) && short_id(&r.id));
                assert!(r.reply_to.as_deref().is_none_or(|t| topics.command_of(t).is_none()));
            }
            Err(e) => assert!(!e.reason.is_empty()),
        }
        return;
    }
    match parse(&topics, &["door".to_string()], topic, payload, 4096) {
        Ok((camera, cmd)) => {
            assert_eq!(camera, "door");
            match cmd {
                CameraCommand::Capture { id } => assert!(short_id(&id)),
                CameraCommand::Ask { question, id, reply_to } => {
                    assert!(!question.is_empty() && question.chars().count() <= 500);
                    assert!(short_id(&id));
                    assert!(reply_to.is_none_or(|t| t != topics.status() && t != topics.error()));
                }
                CameraCommand::SetLabels { labels } => assert!(check_labels(&labels).is_ok()),
            }
        }
        Err(e) => assert!(!e.reason.is_empty() && !e.topic.contains('\u{0}')),
    }
});
