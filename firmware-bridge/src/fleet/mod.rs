//! The fleet (`owlet_protocol::fleet`): every bridge answers the fleet's search and
//! status requests ([`Responder`], here), and `owlet-bridge fleet search|status`
//! asks them all and merges what comes back (`client`).

pub mod client;
pub mod report;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use owlet_protocol::commands::Refused;
use owlet_protocol::fleet::{self, RecentIds, Request};

use crate::analyze::now_ms;
use crate::history::SharedHistory;
use crate::live::Live;
use crate::publish::{Delivery, Message, Sink};
use crate::search::{SearchJob, QUEUE};
use crate::topics::Topics;

/// Request ids remembered, to answer each once: far more than arrive within any
/// deadline.
const REMEMBERED_IDS: usize = 1024;

/// An answer to fleet request `id`. QoS 0 and not through the outbox: a fleet
/// answer is worth nothing after its deadline, so it is not kept for a broker
/// that is away; and the MQTT thread tracks one QoS 1 packet id at a time, the
/// outbox's.
pub fn reply(id: &str, answer: &impl serde::Serialize) -> Message {
    let mut m = Message::payload(fleet::reply_topic(id), answer);
    m.delivery = Delivery::BestEffort;
    m
}

/// Whether a deadline (Unix milliseconds) has passed.
pub fn passed(deadline_ms: u64) -> bool {
    now_ms() >= deadline_ms
}

/// A device's side of the fleet: checks each request, answers status requests at
/// once and hands searches to the search thread.
pub struct Responder {
    pub topics: Topics,
    pub cameras: Vec<String>,
    /// The cameras' last results.
    pub live: Arc<Live>,
    pub history: Option<SharedHistory>,
    /// The search thread's queue, where the device keeps a history.
    pub search: Option<SyncSender<SearchJob>>,
    pub sink: Arc<dyn Sink>,
    pub max_bytes: usize,
    pub started: Instant,
    seen: Mutex<RecentIds>,
}

impl Responder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topics: Topics,
        cameras: Vec<String>,
        live: Arc<Live>,
        history: Option<SharedHistory>,
        search: Option<SyncSender<SearchJob>>,
        sink: Arc<dyn Sink>,
        max_bytes: usize,
    ) -> Responder {
        Responder {
            topics,
            cameras,
            live,
            history,
            search,
            sink,
            max_bytes,
            started: Instant::now(),
            seen: Mutex::new(RecentIds::new(REMEMBERED_IDS)),
        }
    }

    /// Act on a message from a fleet topic; what is refused goes to the error topic.
    pub fn handle(&self, topic: &str, payload: &[u8]) -> Option<Refused> {
        let request = match fleet::parse(topic, payload, self.max_bytes) {
            Ok(r) => r,
            Err(refused) => return Some(refused),
        };
        if !request.asks(self.topics.device()) {
            return None;
        }
        if passed(request.deadline_ms()) {
            log::info!("fleet request {}: its deadline had passed on arrival", request.id());
            return None;
        }
        if !self.seen.lock().unwrap_or_else(|p| p.into_inner()).first_time(request.id()) {
            log::debug!("fleet request {}: delivered again; answered once", request.id());
            return None;
        }
        match request {
            Request::Status(r) => {
                self.answer(&r.id, &self.status(&r.id));
                None
            }
            Request::Search(r) => self.search(r),
        }
    }

    fn search(&self, r: fleet::SearchRequest) -> Option<Refused> {
        let Some(tx) = &self.search else {
            self.refuse_search(&r.id, "this device keeps no history ([index] is not configured)");
            return None;
        };
        match tx.try_send(SearchJob::Fleet(r)) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                let id = job.id().unwrap_or_default().to_string();
                self.refuse_search(&id, &format!("busy: {QUEUE} searches already waiting"));
                None
            }
        }
    }

    /// Say on the reply topic why this device has no hits, so the asker counts
    /// it as answered and knows why.
    fn refuse_search(&self, id: &str, why: &str) {
        let answer = fleet::SearchAnswer {
            error: Some(why.to_string()),
            ..fleet::SearchAnswer::empty(id, self.topics.device())
        };
        self.answer(id, &answer);
    }

    fn answer(&self, id: &str, answer: &impl serde::Serialize) {
        self.sink.send(reply(id, answer));
    }

    fn status(&self, id: &str) -> fleet::StatusAnswer {
        let cameras = self
            .cameras
            .iter()
            .map(|name| fleet::CameraStatus {
                name: name.clone(),
                last: self.live.view(name).and_then(|v| v.latest).map(|l| fleet::LastResult {
                    time_ms: l.time_ms,
                    label: l.labels.first().map(|(label, _)| label.clone()),
                    caption: l.caption,
                }),
            })
            .collect();
        let history_frames =
            self.history.as_ref().map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).len());
        fleet::StatusAnswer {
            id: id.to_string(),
            device: self.topics.device().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            cameras,
            history_frames,
        }
    }
}

/// A fleet search (a new id, no deadline yet), checked as every device will
/// check it, so a bad one fails here with the devices' reason.
pub fn search_request(
    text: String,
    k: usize,
    camera: Option<String>,
    thumbnails: bool,
) -> anyhow::Result<fleet::SearchRequest> {
    let r = fleet::SearchRequest {
        id: client::new_id("search"),
        text,
        deadline_ms: 0,
        k,
        devices: None,
        camera,
        since_ms: None,
        until_ms: None,
        thumbnails,
    };
    let bytes = serde_json::to_vec(&r)?;
    match fleet::parse(fleet::SEARCH, &bytes, usize::MAX) {
        Ok(Request::Search(r)) => Ok(r),
        Ok(Request::Status(_)) => unreachable!("parsed from the search topic"),
        Err(refused) => anyhow::bail!("{}", refused.reason),
    }
}
