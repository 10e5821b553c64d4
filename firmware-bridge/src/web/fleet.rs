//! `/api/fleet/search`: the search page's "every device", the same request
//! `owlet-bridge fleet search` makes (`fleet::client`), asked through this
//! bridge's own broker. The hits carry their thumbnails inline (data URIs): the
//! frames live on the devices that answered, not here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{error, ApiError, WebState};
use crate::config::MqttConfig;
use crate::fleet::client::{self, Asker, SearchOutcome};

/// Fleet searches the page may have in flight at once: each holds an MQTT
/// connection and a thread until its answers are in.
const IN_FLIGHT: usize = 4;
/// Longest wait a page may ask for.
const MAX_TIMEOUT_S: f64 = 30.0;

/// What the web side needs to ask the fleet.
#[derive(Clone)]
pub struct FleetAccess {
    /// This bridge's `[mqtt]`: broker, credentials, TLS.
    pub broker: MqttConfig,
    slots: Arc<Semaphore>,
}

impl FleetAccess {
    pub fn new(broker: MqttConfig) -> FleetAccess {
        FleetAccess { broker, slots: Arc::new(Semaphore::new(IN_FLIGHT)) }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    q: Option<String>,
    k: Option<usize>,
    camera: Option<String>,
    timeout_s: Option<f64>,
}

pub async fn search(
    State(s): State<WebState>,
    q: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    match ask(s, q).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn ask(s: WebState, q: Result<Query<FleetQuery>, QueryRejection>) -> Result<Value, ApiError> {
    let Query(q) = q.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let fleet = s.fleet.as_ref().ok_or_else(|| {
        error(StatusCode::NOT_FOUND, "no fleet: this bridge has no [mqtt] section".into())
    })?;
    let text = q.q.ok_or_else(|| error(StatusCode::BAD_REQUEST, "q (words) is missing".into()))?;
    let timeout_s = q.timeout_s.unwrap_or(3.0);
    if !(timeout_s > 0.0 && timeout_s <= MAX_TIMEOUT_S) {
        let why = format!("timeout_s must be more than 0 and at most {MAX_TIMEOUT_S}");
        return Err(error(StatusCode::BAD_REQUEST, why));
    }
    let request = crate::fleet::search_request(text, q.k.unwrap_or(10), q.camera, true)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let Ok(_slot) = fleet.slots.clone().try_acquire_owned() else {
        let why = format!("{IN_FLIGHT} fleet searches are already running; try again");
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, why));
    };
    let asker = Asker {
        broker: fleet.broker.clone(),
        timeout: Duration::from_secs_f64(timeout_s),
        devices: None,
    };
    // The MQTT client blocks (rumqttc's own runtime): on a thread of its own,
    // not on the page's single-threaded runtime.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("web-fleet".into())
        .spawn(move || {
            let _ = tx.send(client::search(&asker, request));
        })
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let outcome = rx
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the fleet search stopped".into()))?
        .map_err(|e| error(StatusCode::BAD_GATEWAY, format!("fleet search: {e:#}")))?;
    Ok(outcome_json(outcome))
}

/// The merged hits with their thumbnails inline, and who answered (their hits
/// left out: they are in `hits` already, as far as they made the best k).
fn outcome_json(o: SearchOutcome) -> Value {
    let hits: Vec<Value> = o
        .hits
        .into_iter()
        .map(|h| {
            let labels: Vec<Value> =
                h.hit.labels.iter().map(|(l, s)| json!({"label": l, "score": s})).collect();
            json!({
                "device": h.device,
                "frame_id": h.hit.frame_id,
                "camera": h.hit.camera,
                "time_ms": h.hit.time_ms,
                "caption": h.hit.caption,
                "score": h.hit.score,
                "labels": labels,
                "thumbnail": h.hit.thumbnail_jpeg_base64.map(|b| format!("data:image/jpeg;base64,{b}")),
            })
        })
        .collect();
    let answered: Vec<Value> = o
        .outcome
        .answers
        .iter()
        .map(|a| {
            json!({
                "device": a.device,
                "after_ms": a.after_ms,
                "searched": a.answer.searched,
                "search_ms": a.answer.search_ms,
                "error": a.answer.error,
            })
        })
        .collect();
    json!({
        "text": o.text,
        "hits": hits,
        "answered": answered,
        "missed": o.outcome.missed,
        "offline": o.outcome.offline,
        "elapsed_ms": o.outcome.elapsed_ms,
    })
}
