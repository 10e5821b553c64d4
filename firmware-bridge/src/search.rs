//! Search over MQTT: a text in, the best-matching indexed frames out (frame ids,
//! cameras, times, captions, scores). Runs on its own thread so the MQTT loop never
//! waits for a text embedding.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use owlet_runtime::index::Filter;
use owlet_runtime::models::clip::Clip;
use serde_json::json;

use crate::camera::SharedIndex;
use crate::commands::SearchRequest;
use crate::publish::{Message, Sink};
use crate::topics::Topics;

/// Searches waiting; more are refused.
const QUEUE: usize = 8;

pub fn spawn(
    index: SharedIndex,
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
                let filter = Filter { camera: r.camera.clone(), since_ms: r.since_ms, until_ms: r.until_ms };
                let result = clip.embed_texts(&[r.text.as_str()]).map_err(|e| e.to_string()).and_then(|q| {
                    let ix = index.lock().unwrap_or_else(|p| p.into_inner());
                    let hits = ix.search(q.row(0), r.k, &filter).map_err(|e| e.to_string())?;
                    Ok((
                        ix.len(),
                        hits.iter()
                            .map(|h| {
                                let m = ix.meta(h.entry);
                                json!({"frame": m.source, "camera": m.camera, "time_ms": m.time_ms, "caption": m.caption, "score": h.score})
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
