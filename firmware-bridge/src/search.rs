//! Search over MQTT: a text in, the best-matching frames of the history out (frame
//! names, history ids, cameras, times, captions, labels, scores). Runs on its own thread so the MQTT loop never
//! waits for a text embedding.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use owlet_history::Filter;
use owlet_runtime::models::clip::Clip;
use serde_json::json;

use crate::commands::SearchRequest;
use crate::history::SharedHistory;
use crate::publish::{Message, Sink};
use crate::topics::Topics;

/// Searches waiting; more are refused.
const QUEUE: usize = 8;

pub fn spawn(
    history: SharedHistory,
    clip: Arc<Clip>,
    sink: Arc<dyn Sink>,
    topics: Topics,
) -> SyncSender<SearchRequest> {
    let (tx, rx) = sync_channel::<SearchRequest>(QUEUE);
    std::thread::Builder::new()
        .name("search".into())
        .spawn(move || {
            for r in rx {
                let t = Instant::now();
                let topic = r.reply_to.clone().unwrap_or_else(|| topics.search_result());
                let filter = Filter {
                    camera: r.camera.clone(),
                    since_ms: r.since_ms,
                    until_ms: r.until_ms,
                    ..Filter::default()
                };
                let result = clip.embed_texts(&[r.text.as_str()]).map_err(|e| e.to_string()).and_then(|q| {
                    let h = history.lock().unwrap_or_else(|p| p.into_inner());
                    let hits = h.search(q.row(0), r.k, &filter).map_err(|e| e.to_string())?;
                    Ok((
                        h.len(),
                        hits.iter()
                            .map(|hit| {
                                let f = &hit.frame;
                                let labels: Vec<_> = f.labels.iter().map(|(l, s)| json!({"label": l, "score": s})).collect();
                                json!({"frame": f.source, "frame_id": hit.id, "camera": f.camera, "time_ms": f.time_ms,
                                       "caption": f.caption, "labels": labels, "score": hit.score})
                            })
                            .collect::<Vec<_>>(),
                    ))
                });
                let mut v = json!({"id": r.id, "text": r.text, "latency_ms": t.elapsed().as_secs_f64() * 1e3});
                match result {
                    Ok((n, hits)) => {
                        v["hits"] = json!(hits);
                        v["searched"] = json!(n);
                    }
                    Err(e) => v["error"] = json!(e),
                }
                sink.send(Message::json(topic, v));
            }
        })
        .expect("spawn the search thread");
    tx
}
