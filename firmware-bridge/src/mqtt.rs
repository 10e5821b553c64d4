//! The MQTT link (rumqttc): results out through the on-disk outbox, commands in.
//!
//! One thread drives rumqttc's event loop and is the only one that publishes QoS 1:
//! it sends the outbox's oldest record, waits for its PUBACK, acknowledges it in
//! the outbox and sends the next. One record in flight keeps the order trivially
//! right across reconnects, and a local broker acknowledges in well under a
//! millisecond, so it costs nothing at a camera's rates. The session is clean:
//! rumqttc drops unacknowledged packets when a new session starts, and the outbox
//! re-sends its oldest record instead (QoS 1: at least once; `seq` in each payload
//! lets consumers drop a duplicate). Status, discovery and snapshots are QoS 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError,
    Transport,
};

use crate::config::MqttConfig;
use crate::publish::{Delivery, Message, Sink};
use crate::source::Backoff;
use crate::topics::Topics;
use owlet_store::outbox::{Held, Outbox};

pub struct MqttSink {
    outbox: Arc<Mutex<Outbox>>,
    client: Client,
    connected: Arc<AtomicBool>,
}

impl MqttSink {
    /// True while the broker is connected (read by /metrics).
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// Results waiting for the broker's acknowledgement (read by /metrics).
    pub fn depth_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let outbox = self.outbox.clone();
        move || outbox.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Sink for MqttSink {
    fn send(&self, msg: Message) {
        match msg.delivery {
            Delivery::Queued => {
                let mut ob = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
                let before = ob.dropped();
                let (seq, held) = ob.push_with(&msg.topic, msg.retain, |seq| msg.encode(Some(seq)));
                if let Held::InMemory(error) = held {
                    // A full disk is a state, not a loss: delivered from memory,
                    // stored as soon as the disk takes a write again.
                    log::warn!(
                        "outbox: cannot store result {seq} ({error}); held in memory ({} so)",
                        ob.in_memory()
                    );
                }
                if ob.dropped() > before {
                    log::warn!("outbox full: {} oldest message(s) dropped so far", ob.dropped());
                }
            }
            Delivery::BestEffort => {
                if self.connected.load(Ordering::SeqCst) {
                    let _ = self.client.try_publish(
                        msg.topic.clone(),
                        QoS::AtMostOnce,
                        msg.retain,
                        msg.encode(None),
                    );
                }
            }
        }
    }
}

/// Called with (topic, payload) of every message on a subscribed command topic.
pub type CommandHandler = Box<dyn FnMut(&str, &[u8]) + Send>;

pub struct MqttLink {
    shutdown: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl MqttLink {
    /// Deliver what is queued (up to the flush timeout), say offline, disconnect.
    pub fn shutdown(self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Build the bridge's rumqttc options from the configuration: `connect_options`,
/// with its last will (the retained status goes `offline`).
pub fn options(cfg: &MqttConfig, topics: &Topics) -> anyhow::Result<MqttOptions> {
    let id = cfg.client_id.clone().unwrap_or_else(|| format!("owlet-{}", topics.device()));
    let mut o = connect_options(cfg, id)?;
    o.set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true));
    Ok(o)
}

/// rumqttc's options for the broker `cfg` names: address, keep-alive, credentials
/// and TLS (the bridge's, and the fleet client's). Reads the password file and the
/// TLS files, so their errors come out at start-up, named.
pub fn connect_options(cfg: &MqttConfig, client_id: String) -> anyhow::Result<MqttOptions> {
    use anyhow::Context;
    let mut o = MqttOptions::new(client_id, cfg.host.clone(), cfg.port());
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s))
        .set_clean_session(true)
        // Large enough to receive an oversized command and refuse it with a reason
        // (past this rumqttc drops the connection); snapshots are the largest out.
        .set_max_packet_size(MAX_INCOMING_BYTES, 64 << 20)
        .set_request_channel_capacity(256);
    if let Some(user) = &cfg.username {
        let password = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => p.0.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("mqtt.password_file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, None) => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if let Some(tls) = &cfg.tls {
        o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(
            tls_config(tls)?,
        ))));
    }
    Ok(o)
}

fn tls_config(tls: &crate::config::TlsConfig) -> anyhow::Result<rustls::ClientConfig> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(&tls.ca).and_then(|it| it.collect()).with_context(|| {
            format!("mqtt.tls.ca {}: not a readable PEM certificate file", tls.ca.display())
        })?;
    if cas.is_empty() {
        anyhow::bail!("mqtt.tls.ca {}: no certificate in it", tls.ca.display());
    }
    for c in cas {
        roots.add(c).with_context(|| format!("mqtt.tls.ca {}", tls.ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    Ok(match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .with_context(|| {
                    format!("mqtt.tls.cert {}: not a readable PEM certificate file", cert.display())
                })?;
            // The key's contents are a secret: the error names the file only.
            let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
                anyhow::anyhow!("mqtt.tls.key {}: no readable PEM private key", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("mqtt.tls: the client certificate and key do not go together")?
        }
        _ => builder.with_no_client_auth(),
    })
}

/// A client whose small packets leave at once: with Nagle's algorithm on, a
/// packet written while the last is unacknowledged waits for the peer's delayed
/// ACK (40 ms on Linux), which the fleet's request-and-answer exchange measured
/// (BENCHMARKS.md, fleet search).
pub fn unbuffered_client(opts: MqttOptions, cap: usize) -> (Client, Connection) {
    let (client, mut connection) = Client::new(opts, cap);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    connection.eventloop.set_network_options(network);
    (client, connection)
}

/// Create the client and the sink that queues into `outbox`. Nothing connects
/// until `spawn` runs the event loop.
pub fn client(opts: MqttOptions, outbox: Outbox) -> (Arc<MqttSink>, Connection) {
    let (client, connection) = unbuffered_client(opts, 256);
    let sink = Arc::new(MqttSink {
        outbox: Arc::new(Mutex::new(outbox)),
        client,
        connected: Arc::new(AtomicBool::new(false)),
    });
    (sink, connection)
}

/// Publish the outbox's losses (dropped by its bound, damaged, not stored) on the
/// device's error topic, as ranges of `seq`: the gaps a consumer sees, explained.
fn report_losses(ob: &mut Outbox, client: &Client, topics: &Topics) {
    let losses = ob.take_losses();
    if losses.is_empty() {
        return;
    }
    let count: u64 = losses.iter().map(|l| l.count()).sum();
    let ranges: Vec<serde_json::Value> = losses
        .iter()
        .map(|l| serde_json::json!({"first_seq": l.first, "last_seq": l.last, "count": l.count(), "reason": l.reason.as_str()}))
        .collect();
    let payload = serde_json::json!({"error": "results lost", "count": count, "lost": ranges,
        "time_ms": crate::analyze::now_ms()});
    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
    if client.try_publish(topics.error(), QoS::AtLeastOnce, false, bytes).is_err() {
        ob.return_losses(losses);
    } else {
        log::warn!("outbox: reported {count} lost result(s) on {}", topics.error());
    }
}

/// What to do about a message larger than rumqttc accepts: rumqttc drops the
/// connection, and a retained one comes back at every subscription, so the bridge
/// would reconnect forever. Instead it stops listening for commands for a while
/// (results still go out) and says on the error topic how to clear the message.
#[derive(Default)]
struct Oversized {
    /// Size of the last oversized message, until the next connection reports it.
    seen: Option<usize>,
    /// Commands are not subscribed to until then.
    paused_until: Option<Instant>,
}

impl Oversized {
    const PAUSE: Duration = Duration::from_secs(300);

    fn note(&mut self, e: &rumqttc::ConnectionError) {
        use rumqttc::{ConnectionError, StateError};
        if let ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(n),
        )) = e
        {
            self.seen = Some(*n);
            self.paused_until = Some(Instant::now() + Self::PAUSE);
        }
    }

    fn commands_off(&self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() < t)
    }

    /// Why commands are off, once per oversized message.
    fn report(&mut self) -> Option<String> {
        let size = self.seen.take()?;
        Some(format!(
            "a message of {size} bytes on a command topic is over the {} MiB limit; commands are \
             off for {} s. If it is retained, clear it: mosquitto_pub -r -n -t TOPIC (list them \
             with mosquitto_sub -v --retained-only -t 'owlet/#')",
            MAX_INCOMING_BYTES >> 20,
            Self::PAUSE.as_secs()
        ))
    }

    /// True once, when the pause ends.
    fn pause_over(&mut self) -> bool {
        if self.paused_until.is_some_and(|t| Instant::now() >= t) {
            self.paused_until = None;
            return true;
        }
        false
    }
}

/// Largest message the bridge reads; larger ones end the connection (rumqttc).
pub const MAX_INCOMING_BYTES: usize = 16 << 20;

pub struct LinkSettings {
    pub topics: Topics,
    pub broker: String,
    pub flush_timeout: Duration,
    /// Retained discovery messages, sent at every connection and when Home
    /// Assistant announces itself on `<prefix>/status`.
    pub discovery: Vec<Message>,
    pub discovery_status_topic: Option<String>,
    /// Where Home Assistant's device configs are (`<prefix>/device/+/config`):
    /// read at each connection, so that the retained config of a camera removed
    /// from this bridge's config is cleared (Home Assistant then removes it).
    pub discovery_configs: Option<String>,
}

/// A retained discovery config that names this bridge's status topic but none of
/// its cameras now: a camera removed from the config.
fn stale_discovery(s: &LinkSettings, topic: &str, payload: &[u8]) -> bool {
    let Some(filter) = &s.discovery_configs else { return false };
    let (head, tail) = filter.split_once('+').unwrap_or((filter, ""));
    if payload.is_empty() || !topic.starts_with(head) || !topic.ends_with(tail) {
        return false;
    }
    if s.discovery.iter().any(|m| m.topic == topic) {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(payload)
        .is_ok_and(|v| v["availability_topic"] == s.topics.status())
}

pub fn spawn(
    sink: Arc<MqttSink>,
    mut connection: Connection,
    settings: LinkSettings,
    mut on_command: CommandHandler,
) -> MqttLink {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || {
            let s = settings;
            let client = sink.client.clone();
            let publish_direct = |m: &Message| {
                let _ = client.try_publish(m.topic.clone(), QoS::AtMostOnce, m.retain, m.encode(None));
            };
            // (seq of the record in flight, its packet id once rumqttc has sent it)
            let mut in_flight: Option<(u64, Option<u16>)> = None;
            let mut backoff = Backoff::default();
            let mut outage_since: Option<Instant> = None;
            let mut flush_deadline: Option<Instant> = None;
            let mut oversized = Oversized::default();
            loop {
                if oversized.pause_over() && sink.connected.load(Ordering::SeqCst) {
                    log::info!("MQTT: listening for commands again");
                    for f in s.topics.command_filters() {
                        let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                    }
                }
                if flag.load(Ordering::SeqCst) && flush_deadline.is_none() {
                    flush_deadline = Some(Instant::now() + s.flush_timeout);
                }
                if let Some(deadline) = flush_deadline {
                    let empty = sink.outbox.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                    if empty || Instant::now() >= deadline {
                        let left = sink.outbox.lock().unwrap_or_else(|e| e.into_inner()).len();
                        if left > 0 {
                            log::warn!("shutting down with {left} message(s) undelivered; they stay queued on disk for the next start");
                        }
                        break;
                    }
                }
                match connection.recv_timeout(Duration::from_millis(50)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        match outage_since.take() {
                            Some(t) => log::info!("MQTT: reconnected to {} after {:.1} s", s.broker, t.elapsed().as_secs_f64()),
                            None => log::info!("MQTT: connected to {}", s.broker),
                        }
                        sink.connected.store(true, Ordering::SeqCst);
                        backoff.reset();
                        in_flight = None; // a clean session: re-send from the outbox
                        let mut filters = s.discovery_status_topic.clone().into_iter().collect::<Vec<_>>();
                        filters.extend(s.discovery_configs.clone());
                        if !oversized.commands_off() {
                            filters.extend(s.topics.command_filters());
                        }
                        if let Some(why) = oversized.report() {
                            log::error!("MQTT: {why}");
                            let v = serde_json::json!({"error": why, "time_ms": crate::analyze::now_ms()});
                            let _ = client.try_publish(s.topics.error(), QoS::AtLeastOnce, false, serde_json::to_vec(&v).unwrap_or_default());
                        }
                        for f in filters {
                            let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                        }
                        publish_direct(&Message::text(s.topics.status(), "online").retained());
                        s.discovery.iter().for_each(publish_direct);
                    }
                    Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                        if let Some((_, id @ None)) = &mut in_flight {
                            if pkid != 0 {
                                *id = Some(pkid);
                            }
                        }
                    }
                    Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                        if let Some((seq, Some(pkid))) = in_flight {
                            if ack.pkid == pkid {
                                let mut ob = sink.outbox.lock().unwrap_or_else(|e| e.into_inner());
                                if let Err(e) = ob.ack(seq) {
                                    log::error!("outbox: cannot record a delivery: {e}");
                                }
                                in_flight = None;
                            }
                        }
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        if stale_discovery(&s, &p.topic, &p.payload) {
                            log::info!("Home Assistant: {} is no camera of this bridge any more; clearing it", p.topic);
                            publish_direct(&Message { topic: p.topic.to_string(), payload: crate::publish::Payload::Bytes(vec![]), retain: true, delivery: crate::publish::Delivery::BestEffort });
                        } else if s.discovery_configs.as_deref().is_some_and(|f| {
                            let (head, tail) = f.split_once('+').unwrap_or((f, ""));
                            p.topic.starts_with(head) && p.topic.ends_with(tail)
                        }) {
                            // Another bridge's device, one of ours, or a cleared one.
                        } else if Some(p.topic.as_str()) == s.discovery_status_topic.as_deref() {
                            if p.payload.as_ref() == b"online" {
                                log::info!("Home Assistant is online: sending discovery again");
                                s.discovery.iter().for_each(publish_direct);
                            }
                        } else {
                            on_command(&p.topic, &p.payload);
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        oversized.note(&e);
                        sink.connected.store(false, Ordering::SeqCst);
                        in_flight = None;
                        if flush_deadline.is_some() {
                            // Stopping and the broker is away: what is queued stays on disk.
                            let left = sink.outbox.lock().unwrap_or_else(|e| e.into_inner()).len();
                            log::warn!("MQTT: {e}; stopping with {left} message(s) queued on disk");
                            return;
                        }
                        let delay = backoff.delay(Duration::ZERO);
                        if outage_since.is_none() {
                            outage_since = Some(Instant::now());
                            log::warn!("MQTT: {} unreachable ({e}); results queue on disk; retrying", s.broker);
                        } else {
                            log::debug!("MQTT: still unreachable ({e}); next try in {:.1} s", delay.as_secs_f64());
                        }
                        // Wait for the next try, but not past a shutdown request:
                        // stopping during an outage honours flush_timeout_s.
                        let retry_at = Instant::now() + delay;
                        while Instant::now() < retry_at && !flag.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50).min(retry_at - Instant::now()));
                        }
                        if flag.load(Ordering::SeqCst) {
                            let left = sink.outbox.lock().unwrap_or_else(|e| e.into_inner()).len();
                            log::warn!("MQTT: stopping during an outage with {left} message(s) queued on disk");
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if sink.connected.load(Ordering::SeqCst) {
                    let mut ob = sink.outbox.lock().unwrap_or_else(|e| e.into_inner());
                    report_losses(&mut ob, &client, &s.topics);
                    if in_flight.is_none() {
                        match ob.front() {
                            Ok(Some(r)) => {
                                if client.try_publish(r.topic, QoS::AtLeastOnce, r.retain, r.payload).is_ok() {
                                    in_flight = Some((r.seq, None));
                                }
                            }
                            Ok(None) => {}
                            Err(e) => log::error!("outbox: cannot read the next record: {e}"),
                        }
                    }
                }
            }
            // Clean goodbye: a disconnect does not fire the last will, so say it.
            if sink.connected.load(Ordering::SeqCst) {
                publish_direct(&Message::text(s.topics.status(), "offline").retained());
                let _ = client.try_disconnect();
                let end = Instant::now() + Duration::from_secs(2);
                while Instant::now() < end {
                    match connection.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => break,
                        _ => {}
                    }
                }
            }
        })
        .expect("spawn the MQTT thread");
    MqttLink { shutdown, thread }
}
