//! The history as JSON: the timeline (`/api/frames`), one frame and its
//! thumbnail, and search by words or "more like this" (`/api/search`).

use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use owlet_history::Filter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, internal, ApiError, WebState, MAX_QUERY_CHARS};
use crate::history::SharedHistory;

/// Most results one request returns.
const MAX_RESULTS: usize = 500;

/// The query of `/api/frames` and `/api/search`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameQuery {
    camera: Option<String>,
    label: Option<String>,
    min_score: Option<f32>,
    caption: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    /// The next page of a timeline: frames older than this id.
    before: Option<i64>,
    limit: Option<usize>,
    /// Search: words, or `like` (a frame id) for frames like that one.
    q: Option<String>,
    like: Option<i64>,
    k: Option<usize>,
}

impl FrameQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let bad = |why: &str| Err(error(StatusCode::BAD_REQUEST, why.into()));
        if let Some(s) = self.min_score {
            if !(0.0..=1.0).contains(&s) {
                return bad("min_score must be between 0 and 1");
            }
        }
        for text in [&self.camera, &self.label, &self.caption].into_iter().flatten() {
            if text.chars().count() > MAX_QUERY_CHARS {
                return bad(&format!("a filter is longer than {MAX_QUERY_CHARS} characters"));
            }
        }
        let limit = self.limit.unwrap_or(50);
        if limit == 0 || limit > MAX_RESULTS {
            return bad(&format!("limit must be between 1 and {MAX_RESULTS}"));
        }
        Ok(Filter {
            camera: self.camera.clone(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            label: self.label.clone(),
            min_score: self.min_score.unwrap_or(0.5),
            caption_contains: self.caption.clone(),
            before_id: self.before,
            ids: None,
            limit,
        })
    }
}

type QueryResult = Result<Query<FrameQuery>, QueryRejection>;

/// The query string parsed, or a 400 that says what was wrong with it.
fn parse_query(q: QueryResult) -> Result<FrameQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad query: {}", e.body_text())))
}

pub(super) type IdResult = Result<Path<i64>, PathRejection>;

pub(super) fn parse_id(id: IdResult) -> Result<i64, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad frame id: {}", e.body_text())))
}

fn history_of(s: &WebState) -> Result<&SharedHistory, ApiError> {
    s.history.as_ref().ok_or_else(|| {
        error(StatusCode::NOT_FOUND, "the history is off: add [index] to the config".into())
    })
}

fn frame_json(id: i64, f: &owlet_history::NewFrame, score: Option<f32>) -> Value {
    let mut v = json!({
        "id": id, "time_ms": f.time_ms, "camera": f.camera, "trigger": f.trigger,
        "source": f.source, "caption": f.caption,
        "labels": f.labels.iter().map(|(l, s)| json!({"label": l, "score": s})).collect::<Vec<_>>(),
        "thumbnail": format!("/api/frames/{id}/thumbnail.jpg"),
    });
    if let Some(s) = score {
        v["score"] = json!(s);
    }
    v
}

pub async fn frames(State(s): State<WebState>, q: QueryResult) -> Response {
    let run = || -> Result<Value, ApiError> {
        let q = parse_query(q)?;
        let filter = q.filter()?;
        let h = history_of(&s)?.lock().unwrap_or_else(|p| p.into_inner());
        let rows = h.store().query(&filter).map_err(internal)?;
        Ok(
            json!({"frames": rows.iter().map(|r| frame_json(r.id, &r.frame, None)).collect::<Vec<_>>()}),
        )
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

pub async fn frame(State(s): State<WebState>, id: IdResult) -> Response {
    let run = || -> Result<Value, ApiError> {
        let id = parse_id(id)?;
        let h = history_of(&s)?.lock().unwrap_or_else(|p| p.into_inner());
        match h.store().summary(id).map_err(internal)? {
            Some(r) => Ok(frame_json(id, &r.frame, None)),
            None => Err(error(StatusCode::NOT_FOUND, format!("no frame {id}"))),
        }
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

pub async fn thumbnail(State(s): State<WebState>, id: IdResult) -> Response {
    let run = || -> Result<Vec<u8>, ApiError> {
        let id = parse_id(id)?;
        let h = history_of(&s)?.lock().unwrap_or_else(|p| p.into_inner());
        // get() checks the row's checksum: a damaged frame is an error, not an image.
        let row = h.store().get(id).map_err(internal)?;
        let row = row.ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
        row.frame
            .thumbnail
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("frame {id} has no thumbnail")))
    };
    match run() {
        Ok(jpeg) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Err(r) => r.into_response(),
    }
}

pub async fn search(State(s): State<WebState>, q: QueryResult) -> Response {
    let run = || -> Result<Value, ApiError> {
        let q = parse_query(q)?;
        let mut filter = q.filter()?;
        filter.before_id = None;
        let k = q.k.unwrap_or(20);
        if k == 0 || k > MAX_RESULTS {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("k must be between 1 and {MAX_RESULTS}"),
            ));
        }
        let history = history_of(&s)?;
        let t = Instant::now();
        let query: Vec<f32> = match (&q.q, q.like) {
            (Some(text), None) => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_QUERY_CHARS {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("q must be 1 to {MAX_QUERY_CHARS} characters"),
                    ));
                }
                let clip = s.clip.as_ref().ok_or_else(|| {
                    error(StatusCode::NOT_FOUND, "no model to search with".into())
                })?;
                clip.embed_texts(&[text]).map_err(internal)?.row(0).to_vec()
            }
            (None, Some(id)) => {
                let h = history.lock().unwrap_or_else(|p| p.into_inner());
                h.vector_of(id).ok_or_else(|| {
                    error(StatusCode::NOT_FOUND, format!("no searchable frame {id}"))
                })?
            }
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "give q (words) or like (a frame id), one of them".into(),
                ))
            }
        };
        let h = history.lock().unwrap_or_else(|p| p.into_inner());
        let hits = h.search(&query, k, &filter).map_err(internal)?;
        Ok(json!({
            "searched": h.len(),
            "latency_ms": t.elapsed().as_secs_f64() * 1e3,
            "frames": hits.iter().map(|f| frame_json(f.id, &f.frame, Some(f.score))).collect::<Vec<_>>(),
        }))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}
