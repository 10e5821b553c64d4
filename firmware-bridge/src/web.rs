//! The bridge's HTTP side (axum, on its own thread and a single-threaded tokio
//! runtime, so that a slow client never holds a camera): `/healthz`, `/metrics` in
//! Prometheus' format, and the history as JSON: the timeline, a frame's thumbnail,
//! search by words or "more like this".
//!
//! A token is required (`Authorization: Bearer <token>`, or the `owlet_token`
//! cookie a browser keeps) on everything but `/healthz` when one is configured,
//! and the config refuses to listen beyond loopback without one. Every bad request
//! gets a status and a JSON `{"error": ...}` naming what was wrong.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use owlet_history::Filter;
use owlet_runtime::models::clip::Clip;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::history::SharedHistory;
use crate::metrics::Metrics;

/// Longest search text accepted (characters); CLIP reads 77 tokens anyway.
const MAX_QUERY_CHARS: usize = 1000;
/// Most results one request returns.
const MAX_RESULTS: usize = 500;

#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub history: Option<SharedHistory>,
    /// The model that embeds search texts (the history's).
    pub clip: Option<Arc<Clip>>,
    pub token: Option<String>,
    pub started: Instant,
}

pub struct WebServer {
    pub addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WebServer {
    pub fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.thread.join();
    }
}

/// Bind `listen` and serve on a thread of its own. Binding errors (address in use,
/// not allowed) come back here, before the daemon says it is running.
pub fn spawn(listen: &str, state: WebState) -> anyhow::Result<WebServer> {
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("web: cannot listen on {listen}: {e}"))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(state);
    let thread = std::thread::Builder::new().name("web".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return log::error!("web: no runtime: {e}"),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => return log::error!("web: {e}"),
            };
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                log::error!("web: {e}");
            }
        });
    })?;
    log::info!("web: listening on http://{addr}");
    Ok(WebServer { addr, shutdown, thread })
}

pub fn router(state: WebState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/frames", get(frames))
        .route("/api/frames/{id}", get(frame))
        .route("/api/frames/{id}/thumbnail.jpg", get(thumbnail))
        .route("/api/search", get(search))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page".into()) })
        .with_state(state)
}

/// A refused or failed request: its status and what was wrong, sent as
/// `{"error": ...}`.
pub struct ApiError {
    status: StatusCode,
    why: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.why}))).into_response()
    }
}

fn error(status: StatusCode, why: String) -> ApiError {
    ApiError { status, why }
}

async fn require_token(
    State(s): State<WebState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(want) = &s.token else { return next.run(req).await };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("owlet_token="))
        .next();
    match bearer.or(cookie) {
        Some(got) if constant_time_eq(got.as_bytes(), want.as_bytes()) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong token".into()).into_response(),
        None => error(
            StatusCode::UNAUTHORIZED,
            "a token is required: Authorization: Bearer <token> (web.token in the config)".into(),
        )
        .into_response(),
    }
}

/// Compare without stopping at the first difference (no timing hint).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz(State(s): State<WebState>) -> Json<Value> {
    Json(json!({"status": "ok", "uptime_s": s.started.elapsed().as_secs()}))
}

async fn metrics(State(s): State<WebState>) -> Response {
    let text = s.metrics.render();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}

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

type IdResult = Result<Path<i64>, PathRejection>;

fn parse_id(id: IdResult) -> Result<i64, ApiError> {
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

async fn frames(State(s): State<WebState>, q: QueryResult) -> Response {
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

async fn frame(State(s): State<WebState>, id: IdResult) -> Response {
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

async fn thumbnail(State(s): State<WebState>, id: IdResult) -> Response {
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

async fn search(State(s): State<WebState>, q: QueryResult) -> Response {
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

/// A failure of the store or the models: logged, and named to the client.
fn internal(e: impl std::fmt::Display) -> ApiError {
    log::warn!("web: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
