//! `owlet-bridge fleet search|status`: one request to every device on the broker
//! (and on brokers bridged to it), the answers gathered until each device that
//! should answer has, or the deadline.
//!
//! Which devices should answer: those named with `--devices`, else every device
//! whose retained status (`owlet/<device>/status`) says `online` when the client
//! subscribes. One that goes `offline` during the request (its last will) is not
//! waited for. What did not answer in time is named in the outcome, never waited
//! for past the deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use owlet_protocol::fleet::{self, Hit, SearchAnswer, StatusAnswer};
use rumqttc::{Client, Connection, Event, Outgoing, Packet, QoS, RecvTimeoutError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::analyze::now_ms;
use crate::config::MqttConfig;

/// Retained statuses are gathered after subscribing until none has come for
/// `QUIET` (the broker sends them right after its SUBACK), for `SETTLE` at most.
const QUIET: Duration = Duration::from_millis(100);
const SETTLE: Duration = Duration::from_secs(1);
/// How long to wait for the broker to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who to ask, and how long to wait.
pub struct Asker {
    pub broker: MqttConfig,
    pub timeout: Duration,
    /// Only these devices (default: every device that is online).
    pub devices: Option<Vec<String>>,
}

/// What came back for one request.
#[derive(Debug, Serialize)]
pub struct Outcome<T> {
    pub id: String,
    /// One per device, in the order they arrived.
    pub answers: Vec<Answered<T>>,
    /// Devices that should have answered and did not before the deadline.
    pub missed: Vec<String>,
    /// Devices whose status is `offline` (before or during the request).
    pub offline: Vec<String>,
    /// Answers that came after the deadline (dropped) or twice (counted once).
    pub late: usize,
    pub duplicates: usize,
    /// The request's size, and the answers' (MQTT payloads).
    pub request_bytes: usize,
    pub answer_bytes: usize,
    /// From publishing the request to the last answer (or the deadline).
    pub elapsed_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Answered<T> {
    pub device: String,
    /// When the answer arrived, from the request's publishing.
    pub after_ms: f64,
    pub answer: T,
}

/// A search's outcome with the hits of every device merged, best first.
#[derive(Debug, Serialize)]
pub struct SearchOutcome {
    pub text: String,
    pub hits: Vec<FleetHit>,
    #[serde(flatten)]
    pub outcome: Outcome<SearchAnswer>,
}

#[derive(Debug, Serialize)]
pub struct FleetHit {
    pub device: String,
    #[serde(flatten)]
    pub hit: Hit,
}

/// Search every device's history for `request.text`; the `request.k` best hits
/// of all of them.
pub fn search(asker: &Asker, mut request: fleet::SearchRequest) -> Result<SearchOutcome> {
    request.devices = asker.devices.clone();
    let outcome: Outcome<SearchAnswer> = asker.ask(fleet::SEARCH, &request.id.clone(), |d| {
        request.deadline_ms = d;
        serde_json::to_vec(&request).expect("a request serializes")
    })?;
    let hits = merge(&outcome.answers, request.k);
    Ok(SearchOutcome { text: request.text, hits, outcome })
}

/// Every device's status answer.
pub fn status(asker: &Asker, id: String) -> Result<Outcome<StatusAnswer>> {
    asker.ask(fleet::STATUS, &id.clone(), |deadline_ms| {
        let r = fleet::StatusRequest { id, deadline_ms, devices: asker.devices.clone() };
        serde_json::to_vec(&r).expect("a request serializes")
    })
}

/// The `k` best hits of all answers, best first (ties: by device, then frame).
pub fn merge(answers: &[Answered<SearchAnswer>], k: usize) -> Vec<FleetHit> {
    let mut all: Vec<FleetHit> = answers
        .iter()
        .flat_map(|a| {
            a.answer.hits.iter().map(|h| FleetHit { device: a.device.clone(), hit: h.clone() })
        })
        .collect();
    all.sort_by(|a, b| {
        b.hit
            .score
            .total_cmp(&a.hit.score)
            .then_with(|| a.device.cmp(&b.device))
            .then_with(|| a.hit.frame_id.cmp(&b.hit.frame_id))
    });
    all.truncate(k);
    all
}

/// A request id no other client will pick: this process, this moment, and a
/// count for requests of one process within one millisecond.
pub fn new_id(kind: &str) -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{kind}-{}-{:x}-{n}", std::process::id(), now_ms())
}

/// The answer fields every kind of answer has.
#[derive(serde::Deserialize)]
struct Envelope {
    id: String,
    device: String,
}

impl Asker {
    /// Publish the request `make(deadline_ms)` builds on `topic` and gather the
    /// answers to `id` until each expected device answered or the deadline.
    fn ask<T: DeserializeOwned>(
        &self,
        topic: &str,
        id: &str,
        make: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Outcome<T>> {
        fleet::check_id(id).map_err(anyhow::Error::msg)?;
        let (client, mut connection) = self.connect(id)?;
        let reply = fleet::reply_topic(id);
        let mut statuses = self.subscribe(&client, &mut connection, &reply)?;
        let expected: Vec<String> = match &self.devices {
            Some(d) => d.clone(),
            None => {
                statuses.iter().filter(|(_, s)| *s == "online").map(|(d, _)| d.clone()).collect()
            }
        };
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline_ms = now_ms().saturating_add(timeout_ms);
        let payload = make(deadline_ms);
        let mut outcome = Outcome {
            id: id.to_string(),
            answers: vec![],
            missed: vec![],
            offline: vec![],
            late: 0,
            duplicates: 0,
            request_bytes: payload.len(),
            answer_bytes: 0,
            elapsed_ms: 0.0,
        };
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .context("publishing the request")?;
        let sent = Instant::now();
        let deadline = sent + self.timeout;
        let waiting = |o: &Outcome<T>, statuses: &BTreeMap<String, String>| {
            expected.iter().any(|d| {
                !o.answers.iter().any(|a| a.device == *d)
                    && statuses.get(d).is_none_or(|s| s != "offline")
            })
        };
        // With no device expected, any that answers is welcome until the deadline.
        while (expected.is_empty() || waiting(&outcome, &statuses)) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = match connection.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => p,
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => continue,
                Ok(Err(e)) => bail!("lost the broker mid-request: {e}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the MQTT client stopped"),
            };
            if p.topic == reply {
                self.take_answer(&mut outcome, &p.payload, sent, deadline, id);
            } else if let Some(device) = status_device(&p.topic) {
                statuses.insert(device.to_string(), String::from_utf8_lossy(&p.payload).into());
            }
        }
        outcome.elapsed_ms = sent.elapsed().as_secs_f64() * 1e3;
        let answered = |d: &String| outcome.answers.iter().any(|a| a.device == *d);
        outcome.offline = statuses
            .iter()
            .filter(|(d, s)| *s == "offline" && !answered(d))
            .map(|(d, _)| d.clone())
            .filter(|d| self.devices.as_ref().is_none_or(|named| named.contains(d)))
            .collect();
        outcome.missed = expected
            .iter()
            .filter(|d| !answered(d) && !outcome.offline.contains(d))
            .cloned()
            .collect();
        let _ = client.disconnect();
        drain(&mut connection);
        Ok(outcome)
    }

    /// Record one answer: dropped when late, counted once when repeated.
    fn take_answer<T: DeserializeOwned>(
        &self,
        outcome: &mut Outcome<T>,
        payload: &[u8],
        sent: Instant,
        deadline: Instant,
        id: &str,
    ) {
        outcome.answer_bytes += payload.len();
        let parsed = serde_json::from_slice::<Envelope>(payload)
            .ok()
            .filter(|e| e.id == id)
            .and_then(|e| serde_json::from_slice::<T>(payload).ok().map(|t| (e.device, t)));
        let Some((device, answer)) = parsed else {
            log::warn!(
                "fleet: an answer that is not the schema: {}",
                String::from_utf8_lossy(payload)
            );
            return;
        };
        if Instant::now() >= deadline {
            outcome.late += 1;
        } else if outcome.answers.iter().any(|a| a.device == device) {
            outcome.duplicates += 1;
        } else {
            let after_ms = sent.elapsed().as_secs_f64() * 1e3;
            outcome.answers.push(Answered { device, after_ms, answer });
        }
    }

    fn connect(&self, id: &str) -> Result<(Client, Connection)> {
        let opts = crate::mqtt::connect_options(&self.broker, format!("owlet-fleet-{id}"))?;
        let (client, mut connection) = crate::mqtt::unbuffered_client(opts, 64);
        let end = Instant::now() + CONNECT_TIMEOUT;
        let broker = format!("{}:{}", self.broker.host, self.broker.port());
        loop {
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, connection)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("cannot connect to the broker at {broker}: {e}"),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("the MQTT client stopped"),
            }
            if Instant::now() > end {
                bail!("the broker at {broker} did not accept the connection within {CONNECT_TIMEOUT:?}");
            }
        }
    }

    /// Subscribe to the devices' statuses and to `reply`; the statuses the broker
    /// holds (device -> `online` | `offline`).
    fn subscribe(
        &self,
        client: &Client,
        connection: &mut Connection,
        reply: &str,
    ) -> Result<BTreeMap<String, String>> {
        client.subscribe("owlet/+/status", QoS::AtLeastOnce)?;
        client.subscribe(reply, QoS::AtLeastOnce)?;
        let mut statuses = BTreeMap::new();
        let mut acks = 0;
        // When the subscriptions were acknowledged, and when the last status came.
        let mut acked: Option<Instant> = None;
        let mut last = Instant::now();
        let end = Instant::now() + CONNECT_TIMEOUT;
        let settled = |acked: Option<Instant>, last: Instant| {
            acked.is_some_and(|a| last.elapsed() >= QUIET || a.elapsed() >= SETTLE)
        };
        while !settled(acked, last) {
            if Instant::now() > end {
                bail!(
                    "the broker did not acknowledge the subscriptions within {CONNECT_TIMEOUT:?}"
                );
            }
            match connection.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    acks += 1;
                    if acks == 2 {
                        acked = Some(Instant::now());
                        last = Instant::now();
                    }
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    last = Instant::now();
                    if let Some(device) = status_device(&p.topic) {
                        statuses
                            .insert(device.to_string(), String::from_utf8_lossy(&p.payload).into());
                    }
                }
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => bail!("lost the broker while subscribing: {e}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the MQTT client stopped"),
            }
        }
        Ok(statuses)
    }
}

/// The device of a status topic (`owlet/<device>/status`); not the fleet's own
/// request topic, which the same filter matches.
fn status_device(topic: &str) -> Option<&str> {
    let device = topic.strip_prefix("owlet/")?.strip_suffix("/status")?;
    (device != "fleet" && !device.contains('/')).then_some(device)
}

/// Let the disconnect go out before the connection is dropped.
fn drain(connection: &mut Connection) {
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        match connection.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => break,
            Err(RecvTimeoutError::Disconnected) => break,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(device: &str, scores: &[f32]) -> Answered<SearchAnswer> {
        let hits = scores
            .iter()
            .enumerate()
            .map(|(i, &score)| Hit {
                frame_id: i as i64,
                camera: "cam".into(),
                time_ms: 0,
                caption: None,
                source: None,
                score,
                labels: vec![],
                thumbnail_jpeg_base64: None,
            })
            .collect();
        let answer = SearchAnswer {
            id: "q".into(),
            device: device.into(),
            hits,
            searched: scores.len(),
            search_ms: 1.0,
            error: None,
        };
        Answered { device: device.into(), after_ms: 1.0, answer }
    }

    #[test]
    fn answers_merge_by_score_across_devices_and_keep_k() {
        let answers = [answer("b", &[0.9, 0.3]), answer("a", &[0.5, 0.4]), answer("c", &[])];
        let merged = merge(&answers, 3);
        let got: Vec<(&str, f32)> =
            merged.iter().map(|h| (h.device.as_str(), h.hit.score)).collect();
        assert_eq!(got, [("b", 0.9), ("a", 0.5), ("a", 0.4)]);
        // Equal scores: by device, so the order does not depend on arrival.
        let tied = merge(&[answer("z", &[0.5]), answer("y", &[0.5])], 5);
        assert_eq!(tied.iter().map(|h| h.device.as_str()).collect::<Vec<_>>(), ["y", "z"]);
    }

    #[test]
    fn only_device_status_topics_name_a_device() {
        assert_eq!(status_device("owlet/door/status"), Some("door"));
        assert_eq!(status_device("owlet/fleet/status"), None);
        assert_eq!(status_device("owlet/door/cam/status"), None);
        assert_eq!(status_device("owlet/door/error"), None);
    }
}
