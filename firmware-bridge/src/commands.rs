//! The MQTT command router: each command, once `owlet_protocol::commands` has
//! parsed and checked it, goes to its camera's inbox or the search thread, and
//! the fleet's requests to `fleet::Responder`; refusals go to the error topic.

pub use owlet_protocol::commands::*;

/// What a camera's worker is asked to do: a command that came over MQTT (or its
/// equivalent from the web page), or a question from the web page whose answer
/// streams back as it is generated.
pub enum WorkerCommand {
    Camera(CameraCommand),
    StreamedAsk(StreamedQuestion),
}

/// A question whose answer goes back piece by piece to whoever holds the receiver.
pub struct StreamedQuestion {
    pub question: String,
    pub pieces: tokio::sync::mpsc::UnboundedSender<AnswerPiece>,
}

/// One step of a streamed answer.
#[derive(Debug)]
pub enum AnswerPiece {
    /// More of the answer's text.
    Text(String),
    /// The whole answer, as the MQTT answer topic carries it.
    Done(owlet_protocol::payloads::Answer),
    /// No answer, and why.
    Failed(String),
}

use crate::topics::Topics;

/// Routes the commands that arrive over MQTT: searches to the search thread, camera
/// commands to their camera's inbox; what is refused (malformed, unknown camera, a
/// full queue) goes to the error topic with its reason.
pub struct Router {
    pub topics: Topics,
    /// Camera names, in the order of `inboxes`.
    pub cameras: Vec<String>,
    pub inboxes: Vec<std::sync::Arc<crate::source::inbox::Inbox>>,
    /// The search thread's queue, where an index is configured.
    pub search: Option<std::sync::mpsc::SyncSender<crate::search::SearchJob>>,
    /// Answers the fleet's requests (`owlet/fleet/...`).
    pub fleet: crate::fleet::Responder,
    pub sink: std::sync::Arc<dyn crate::publish::Sink>,
    /// Payloads larger than this are refused.
    pub max_bytes: usize,
}

/// Camera commands waiting per camera; more are refused rather than queued without
/// bound.
pub const MAX_PENDING_COMMANDS: usize = 16;

impl Router {
    pub fn into_handler(self) -> crate::mqtt::CommandHandler {
        Box::new(move |topic: &str, payload: &[u8]| self.route(topic, payload))
    }

    fn route(&self, topic: &str, payload: &[u8]) {
        use owlet_protocol::{fleet, payloads::DeviceError};
        let refused = if topic == fleet::SEARCH || topic == fleet::STATUS {
            self.fleet.handle(topic, payload)
        } else if topic == self.topics.search() {
            self.search(topic, payload)
        } else {
            self.camera_command(topic, payload)
        };
        if let Some(r) = refused {
            log::warn!("command refused on {}: {}", r.topic, r.reason);
            // The sender's id when it gave a usable one.
            let refused = DeviceError::Refused {
                topic: r.topic,
                error: r.reason,
                id: r.id,
                time_ms: crate::analyze::now_ms(),
            };
            self.sink.send(crate::publish::Message::payload(self.topics.error(), &refused));
        }
    }

    fn search(&self, topic: &str, payload: &[u8]) -> Option<Refused> {
        let request = match parse_search(&self.topics, topic, payload, self.max_bytes) {
            Ok(r) => r,
            Err(r) => return Some(r),
        };
        let Some(tx) = &self.search else {
            return Some(Refused {
                topic: topic.into(),
                reason: "search needs an [index] section in the configuration".into(),
                id: request.id,
            });
        };
        tx.try_send(crate::search::SearchJob::Device(request)).err().map(|e| {
            let id = match e {
                std::sync::mpsc::TrySendError::Full(job)
                | std::sync::mpsc::TrySendError::Disconnected(job) => job.id().map(str::to_string),
            };
            Refused { topic: topic.into(), reason: "too many searches waiting".into(), id }
        })
    }

    fn camera_command(&self, topic: &str, payload: &[u8]) -> Option<Refused> {
        let (camera, cmd) = match parse(&self.topics, &self.cameras, topic, payload, self.max_bytes)
        {
            Ok(c) => c,
            Err(r) => return Some(r),
        };
        let i = self.cameras.iter().position(|n| *n == camera).expect("parse checks the camera");
        self.inboxes[i].command(WorkerCommand::Camera(cmd), MAX_PENDING_COMMANDS).err().map(|_| {
            Refused {
                topic: topic.to_string(),
                reason: format!(
                    "{MAX_PENDING_COMMANDS} commands already waiting for camera {camera}"
                ),
                id: None,
            }
        })
    }
}
