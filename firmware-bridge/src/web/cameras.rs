//! The cameras, live: their views (`/api/cameras`), every change to them as
//! server-sent events (`/api/events`), the newest frame's image, a question about
//! it whose answer streams back as BLIP-2 writes it, and a new label set.
//!
//! Questions and label sets go to the camera's worker through its inbox, as the
//! MQTT commands do: the worker owns the models, and one camera's work stays in
//! order whichever way it was asked.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{error, ApiError, WebState};
use crate::commands::{
    check_question, AnswerPiece, CameraCommand, StreamedQuestion, WorkerCommand,
    MAX_PENDING_COMMANDS,
};
use crate::live::CameraView;
use crate::source::inbox::Inbox;
use owlet_protocol::names::clean_labels;

/// Comment lines that keep idle event streams open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn list(State(s): State<WebState>) -> Json<Vec<CameraView>> {
    Json(s.live.views())
}

fn camera_event(v: &CameraView) -> Event {
    Event::default().event("camera").json_data(v).unwrap_or_else(|_| Event::default())
}

/// Every camera's view now, then each change as it happens. A page that falls
/// behind by more than the backlog gets every view again (each is whole, so it
/// has lost nothing once they arrive).
pub async fn events(
    State(s): State<WebState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.live.subscribe();
    let now: Vec<_> = s.live.views().iter().map(camera_event).map(Ok).collect();
    let live = s.live.clone();
    let changes = stream::unfold((rx, live), |(mut rx, live)| async move {
        let events = match rx.recv().await {
            Ok(v) => vec![Ok(camera_event(&v))],
            Err(RecvError::Lagged(_)) => live.views().iter().map(camera_event).map(Ok).collect(),
            Err(RecvError::Closed) => return None,
        };
        Some((events, (rx, live)))
    })
    .flat_map(stream::iter);
    let events = stream::iter(now).chain(changes).take_until(super::stopping(s.stopping.clone()));
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

type CameraPath = Result<Path<String>, PathRejection>;

/// The camera named in the path and its inbox, or a 404 naming the cameras.
fn camera_of(s: &WebState, camera: CameraPath) -> Result<(String, &Inbox), ApiError> {
    let Path(name) = camera
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad camera: {}", e.body_text())))?;
    match s.inboxes.get(&name) {
        Some(inbox) => Ok((name, inbox)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no camera named {:?} (cameras: {})",
                owlet_protocol::commands::printable(&name),
                s.inboxes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The camera's newest analysed frame, as it came from the source.
pub async fn snapshot(State(s): State<WebState>, camera: CameraPath) -> Response {
    let run = || -> Result<Response, ApiError> {
        let (name, _) = camera_of(&s, camera)?;
        let snap = s.live.snapshot(&name).ok_or_else(|| {
            error(StatusCode::NOT_FOUND, format!("camera {name} has no frame to show yet"))
        })?;
        Ok((
            [(header::CONTENT_TYPE, snap.content_type), (header::CACHE_CONTROL, "no-store")],
            snap.bytes.to_vec(),
        )
            .into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    question: String,
}

type JsonBody<T> = Result<Json<T>, JsonRejection>;

fn body<T>(b: JsonBody<T>, wants: &str) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        let status = match e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        error(status, format!("the body must be {wants}: {}", e.body_text()))
    })
}

fn queue(name: &str, inbox: &Inbox, cmd: WorkerCommand) -> Result<(), ApiError> {
    inbox.command(cmd, MAX_PENDING_COMMANDS).map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_PENDING_COMMANDS} commands already waiting for camera {name}"),
        )
    })
}

/// Ask about the camera's newest frame. The reply is an event stream: `text`
/// events (JSON strings) as the answer is written, then `answer` (the whole
/// reply, as the MQTT answer topic carries it) or `error` (`{"error": ...}`).
pub async fn ask(State(s): State<WebState>, camera: CameraPath, b: JsonBody<AskBody>) -> Response {
    let run = || -> Result<_, ApiError> {
        let (name, inbox) = camera_of(&s, camera)?;
        let AskBody { question } = body(b, "{\"question\": \"...\"}")?;
        let question = check_question(&question).map_err(|r| error(StatusCode::BAD_REQUEST, r))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        queue(&name, inbox, WorkerCommand::StreamedAsk(StreamedQuestion { question, pieces: tx }))?;
        Ok(rx)
    };
    let rx = match run() {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    let pieces = stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let (event, more) = match rx.recv().await {
            Some(AnswerPiece::Text(t)) => (Event::default().event("text").json_data(t), true),
            Some(AnswerPiece::Done(v)) => (Event::default().event("answer").json_data(v), false),
            Some(AnswerPiece::Failed(e)) => {
                (Event::default().event("error").json_data(json!({"error": e})), false)
            }
            // The worker stopped (the bridge is stopping) before it answered.
            None => (
                Event::default().event("error").json_data(json!({"error": "the camera stopped"})),
                false,
            ),
        };
        let event = event.unwrap_or_else(|_| Event::default());
        Some((Ok::<_, Infallible>(event), more.then_some(rx)))
    });
    Sse::new(pieces.take_until(super::stopping(s.stopping.clone()))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsBody {
    labels: Vec<String>,
}

/// A new label set for the camera, checked here and applied by its worker before
/// its next frame; it is kept across restarts as one set over MQTT is.
pub async fn set_labels(
    State(s): State<WebState>,
    camera: CameraPath,
    b: JsonBody<LabelsBody>,
) -> Response {
    let run = || -> Result<Response, ApiError> {
        let (name, inbox) = camera_of(&s, camera)?;
        let LabelsBody { labels } = body(b, "{\"labels\": [\"...\", ...]}")?;
        let labels = clean_labels(labels)
            .map_err(|r| error(StatusCode::BAD_REQUEST, format!("labels {r}")))?;
        queue(
            &name,
            inbox,
            WorkerCommand::Camera(CameraCommand::SetLabels { labels: labels.clone() }),
        )?;
        Ok((StatusCode::ACCEPTED, Json(json!({"camera": name, "labels": labels}))).into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}
