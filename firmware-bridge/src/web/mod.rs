//! The bridge's HTTP side (axum, on its own thread and a single-threaded tokio
//! runtime, so that a slow client never holds a camera): the web page (each
//! camera live, the timeline, search, questions, label sets), `/healthz`,
//! `/metrics` in Prometheus' format, and the JSON API the page is built on.
//!
//! - [`pages`]: the HTML (askama templates) and its assets, compiled into the
//!   binary: the page works with no internet.
//! - [`api`]: the history: timeline, frames, thumbnails, search.
//! - [`cameras`]: each camera's newest frame, live as server-sent events; a
//!   question whose answer streams back; the label set.
//! - [`fleet`]: search every device of the fleet through this bridge's broker.
//!
//! A token is required (`Authorization: Bearer <token>`, or the `owlet_token`
//! cookie the login page sets) on everything but `/healthz`, the login page and
//! the static assets when one is configured, and the config refuses to listen
//! beyond loopback without one. Every bad API request gets a status and a JSON
//! `{"error": ...}` naming what was wrong.

mod api;
mod cameras;
mod fleet;
mod pages;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use owlet_runtime::models::Clip;
use serde_json::{json, Value};

use crate::history::SharedHistory;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::source::inbox::Inbox;
pub use fleet::FleetAccess;

/// Longest search text accepted (characters); CLIP reads 77 tokens anyway.
const MAX_QUERY_CHARS: usize = 1000;

#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub history: Option<SharedHistory>,
    /// The model that embeds search texts (the history's).
    pub clip: Option<Arc<Clip>>,
    pub token: Option<String>,
    pub started: Instant,
    /// The device's name (`device` in the config), shown in the page's title.
    pub device: String,
    /// Each camera's newest frame and label set.
    pub live: Arc<Live>,
    /// Each camera's inbox, by name: where questions and label sets go.
    pub inboxes: Arc<BTreeMap<String, Arc<Inbox>>>,
    /// The fleet, asked through this bridge's broker (where it has `[mqtt]`).
    pub fleet: Option<FleetAccess>,
    /// Turns true when the server stops: event streams end then (set by `spawn`).
    pub stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Resolves when the server is stopping (never where no signal is set): a page's
/// event stream would otherwise hold a graceful shutdown open forever.
async fn stopping(rx: Option<tokio::sync::watch::Receiver<bool>>) {
    match rx {
        Some(mut rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// How long a stopping bridge waits for the web server's open requests.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct WebServer {
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl WebServer {
    /// Stop taking requests, end the event streams, and give what is in flight
    /// (an answer being written) a few seconds.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        let waiting = Instant::now();
        while !self.thread.is_finished() && waiting.elapsed() < STOP_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            log::warn!("web: requests still open after {STOP_WAIT:?}; not waiting for them");
        }
    }
}

/// Bind `listen` and serve on a thread of its own. Binding errors (address in use,
/// not allowed) come back here, before the daemon says it is running.
pub fn spawn(listen: &str, state: WebState) -> anyhow::Result<WebServer> {
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("web: cannot listen on {listen}: {e}"))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let mut state = state;
    state.stopping = Some(stopped.clone());
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
            let serve = axum::serve(listener, app).with_graceful_shutdown(stopping(Some(stopped)));
            if let Err(e) = serve.await {
                log::error!("web: {e}");
            }
        });
    })?;
    log::info!("web: listening on http://{addr}");
    Ok(WebServer { addr, shutdown, thread })
}

pub fn router(state: WebState) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/frames", get(api::frames))
        .route("/api/frames/{id}", get(api::frame))
        .route("/api/frames/{id}/thumbnail.jpg", get(api::thumbnail))
        .route("/api/search", get(api::search))
        .route("/api/fleet/search", get(fleet::search))
        .route("/api/cameras", get(cameras::list))
        .route("/api/events", get(cameras::events))
        .route("/api/cameras/{camera}/snapshot", get(cameras::snapshot))
        .route("/api/cameras/{camera}/ask", post(cameras::ask))
        .route("/api/cameras/{camera}/labels", post(cameras::set_labels))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    let pages = Router::new()
        .route("/", get(pages::cameras))
        .route("/timeline", get(pages::timeline))
        .route("/search", get(pages::search))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_login));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/assets/{name}", get(pages::asset))
        .merge(api)
        .merge(pages)
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

/// What a request's credentials are worth.
enum Credentials {
    /// Right, or none needed.
    Accepted,
    Wrong,
    Missing,
}

fn credentials(s: &WebState, headers: &HeaderMap) -> Credentials {
    let Some(want) = &s.token else { return Credentials::Accepted };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim().strip_prefix(pages::TOKEN_COOKIE).and_then(|c| c.strip_prefix('='))
        })
        .next();
    match bearer.or(cookie) {
        Some(got) if constant_time_eq(got.as_bytes(), want.as_bytes()) => Credentials::Accepted,
        Some(_) => Credentials::Wrong,
        None => Credentials::Missing,
    }
}

/// The API and /metrics: a 401 with what to send.
async fn require_token(
    State(s): State<WebState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    match credentials(&s, &headers) {
        Credentials::Accepted => next.run(req).await,
        Credentials::Wrong => error(StatusCode::UNAUTHORIZED, "wrong token".into()).into_response(),
        Credentials::Missing => error(
            StatusCode::UNAUTHORIZED,
            "a token is required: Authorization: Bearer <token> (web.token in the config)".into(),
        )
        .into_response(),
    }
}

/// The pages: a browser without the cookie is sent to the login page, which
/// brings it back where it was going.
async fn require_login(
    State(s): State<WebState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    match credentials(&s, &headers) {
        Credentials::Accepted => next.run(req).await,
        _ => {
            let next_page = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let to = format!("/login?next={}", pages::url_encode(next_page));
            Redirect::to(&to).into_response()
        }
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

/// A failure of the store or the models: logged, and named to the client.
fn internal(e: impl std::fmt::Display) -> ApiError {
    log::warn!("web: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
