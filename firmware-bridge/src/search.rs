//! Search over MQTT: a text in, the best-matching frames of the history out (frame
//! names, history ids, cameras, times, captions, labels, scores). Both the device's
//! own search (`owlet/<device>/search`) and the fleet's (`owlet/fleet/search`, see
//! `fleet`) run here, on one thread, so the MQTT loop never waits for a text
//! embedding.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use owlet_history::{Filter, Found};
use owlet_protocol::fleet;
use owlet_protocol::payloads::{LabelScore, SearchHit, SearchResult};
use owlet_runtime::models::Clip;

use crate::commands::SearchRequest;
use crate::history::SharedHistory;
use crate::publish::{Message, Sink};
use crate::topics::Topics;

/// Searches waiting; more are refused.
pub const QUEUE: usize = 8;

/// A search to run, and where its answer goes.
pub enum SearchJob {
    /// This device's own search topic: answered through the outbox (never lost).
    Device(SearchRequest),
    /// A fleet search: answered on its reply topic before its deadline, or not at
    /// all (an answer after it would be dropped by the asker anyway).
    Fleet(fleet::SearchRequest),
}

impl SearchJob {
    pub fn id(&self) -> Option<&str> {
        match self {
            SearchJob::Device(r) => r.id.as_deref(),
            SearchJob::Fleet(r) => Some(&r.id),
        }
    }
}

pub fn spawn(
    history: SharedHistory,
    clip: Arc<Clip>,
    sink: Arc<dyn Sink>,
    topics: Topics,
) -> SyncSender<SearchJob> {
    let (tx, rx) = sync_channel::<SearchJob>(QUEUE);
    let searcher = Searcher { history, clip };
    std::thread::Builder::new()
        .name("search".into())
        .spawn(move || {
            for job in rx {
                let message = match job {
                    SearchJob::Device(r) => Some(searcher.device_answer(&r, &topics)),
                    SearchJob::Fleet(r) => searcher.fleet_answer(&r, topics.device()),
                };
                if let Some(m) = message {
                    sink.send(m);
                }
            }
        })
        .expect("spawn the search thread");
    tx
}

/// A frame the history found, as the device's search result lists it.
fn search_hit(hit: Found) -> SearchHit {
    let f = hit.frame;
    SearchHit {
        frame: f.source,
        frame_id: hit.id,
        camera: f.camera,
        time_ms: f.time_ms,
        caption: f.caption,
        labels: f.labels.into_iter().map(|(label, score)| LabelScore { label, score }).collect(),
        score: hit.score,
    }
}

/// What a search request narrows the history to.
fn filter(camera: &Option<String>, since_ms: Option<u64>, until_ms: Option<u64>) -> Filter {
    Filter { camera: camera.clone(), since_ms, until_ms, ..Filter::default() }
}

struct Searcher {
    history: SharedHistory,
    clip: Arc<Clip>,
}

impl Searcher {
    /// The `k` best frames for `text` that `filter` accepts, and how many frames
    /// the history holds.
    fn find(&self, text: &str, k: usize, filter: &Filter) -> Result<(usize, Vec<Found>), String> {
        let q = self.clip.embed_texts(&[text]).map_err(|e| e.to_string())?;
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let hits = h.search(q.row(0), k, filter).map_err(|e| e.to_string())?;
        Ok((h.len(), hits))
    }

    fn device_answer(&self, r: &SearchRequest, topics: &Topics) -> Message {
        let t = Instant::now();
        let topic = r.reply_to.clone().unwrap_or_else(|| topics.search_result());
        let result = self.find(&r.text, r.k, &filter(&r.camera, r.since_ms, r.until_ms));
        let mut answer = SearchResult {
            id: r.id.clone(),
            text: r.text.clone(),
            latency_ms: t.elapsed().as_secs_f64() * 1e3,
            hits: vec![],
            searched: 0,
            error: None,
        };
        match result {
            Ok((n, hits)) => {
                answer.hits = hits.into_iter().map(search_hit).collect();
                answer.searched = n as u64;
            }
            Err(e) => answer.error = Some(e),
        }
        Message::payload(topic, &answer)
    }

    /// The answer to a fleet search, or None once its deadline has passed.
    fn fleet_answer(&self, r: &fleet::SearchRequest, device: &str) -> Option<Message> {
        if crate::fleet::passed(r.deadline_ms) {
            log::info!("fleet search {}: its deadline passed while it waited; not answered", r.id);
            return None;
        }
        let t = Instant::now();
        let mut answer = fleet::SearchAnswer::empty(&r.id, device);
        match self.find(&r.text, r.k, &filter(&r.camera, r.since_ms, r.until_ms)) {
            Ok((n, found)) => {
                answer.searched = n;
                answer.hits = found.into_iter().map(|f| self.fleet_hit(f, r.thumbnails)).collect();
            }
            Err(e) => answer.error = Some(e),
        }
        answer.search_ms = t.elapsed().as_secs_f64() * 1e3;
        if crate::fleet::passed(r.deadline_ms) {
            log::info!("fleet search {}: found after its deadline; not answered", r.id);
            return None;
        }
        Some(crate::fleet::reply(&r.id, &answer))
    }

    fn fleet_hit(&self, f: Found, thumbnails: bool) -> fleet::Hit {
        let thumbnail = thumbnails.then(|| self.thumbnail(f.id)).flatten();
        fleet::Hit {
            frame_id: f.id,
            camera: f.frame.camera,
            time_ms: f.frame.time_ms,
            caption: f.frame.caption,
            source: f.frame.source,
            score: f.score,
            labels: f.frame.labels.into_iter().take(3).collect(),
            thumbnail_jpeg_base64: thumbnail,
        }
    }

    fn thumbnail(&self, id: i64) -> Option<String> {
        use base64::Engine as _;
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let jpeg = h.store().get(id).ok()??.frame.thumbnail?;
        Some(base64::engine::general_purpose::STANDARD.encode(jpeg))
    }
}
