//! Where results go: an MQTT broker (through the on-disk outbox) or stdout.
//!
//! Cameras and command handlers build `Message`s and hand them to a `Sink`; they do
//! not know whether a broker is there.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;

/// How a message must be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// QoS 1 through the on-disk outbox, in order, never lost: results, events,
    /// answers, errors. JSON payloads get a `seq` field (increasing per device) so a
    /// consumer can drop the duplicates that QoS 1 allows.
    Queued,
    /// QoS 0 now, or never if the broker is away: snapshots, which are big and stale
    /// a second later.
    BestEffort,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Payload,
    pub retain: bool,
    pub delivery: Delivery,
}

impl Message {
    pub fn json(topic: String, value: Value) -> Message {
        Message { topic, payload: Payload::Json(value), retain: false, delivery: Delivery::Queued }
    }

    /// One of the contract's payloads (`owlet_protocol::payloads`), queued.
    pub fn payload(topic: String, payload: &impl serde::Serialize) -> Message {
        // The payload types are plain structs of strings and numbers: serializing
        // them cannot fail (a float that is not finite becomes null).
        let value = serde_json::to_value(payload).unwrap_or_default();
        Message::json(topic, value)
    }

    pub fn text(topic: String, text: &str) -> Message {
        Message {
            topic,
            payload: Payload::Text(text.to_string()),
            retain: false,
            delivery: Delivery::Queued,
        }
    }

    pub fn retained(mut self) -> Message {
        self.retain = true;
        self
    }

    /// The bytes to publish; JSON objects get `seq` when given one.
    pub fn encode(&self, seq: Option<u64>) -> Vec<u8> {
        match &self.payload {
            Payload::Json(v) => {
                let mut v = v.clone();
                if let (Some(seq), Some(obj)) = (seq, v.as_object_mut()) {
                    obj.insert("seq".into(), seq.into());
                }
                serde_json::to_vec(&v).unwrap_or_default()
            }
            Payload::Text(t) => t.as_bytes().to_vec(),
            Payload::Bytes(b) => b.clone(),
        }
    }
}

pub trait Sink: Send + Sync {
    fn send(&self, msg: Message);
}

/// No broker: print `topic payload` lines (payloads as one-line JSON, or pretty).
pub struct StdoutSink {
    compact: bool,
    seq: AtomicU64,
    lock: Mutex<()>,
}

impl StdoutSink {
    pub fn new(compact: bool) -> StdoutSink {
        StdoutSink { compact, seq: AtomicU64::new(0), lock: Mutex::new(()) }
    }
}

impl Sink for StdoutSink {
    fn send(&self, msg: Message) {
        let seq =
            (msg.delivery == Delivery::Queued).then(|| self.seq.fetch_add(1, Ordering::Relaxed));
        let body = match &msg.payload {
            Payload::Json(_) => {
                let bytes = msg.encode(seq);
                if self.compact {
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                }
            }
            Payload::Text(t) => t.clone(),
            Payload::Bytes(b) => format!("<{} bytes>", b.len()),
        };
        let _guard = self.lock.lock();
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) is not worth crashing the daemon for.
        let _ = writeln!(out, "{} {}", msg.topic, body);
        let _ = out.flush();
    }
}
