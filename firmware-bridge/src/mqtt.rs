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
use owlet_protocol::payloads::{DeviceError, LostRange};
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
    let lost = losses
        .iter()
        .map(|l| LostRange {
            first_seq: l.first,
            last_seq: l.last,
            count: l.count(),
            reason: l.reason.as_str().to_string(),
        })
        .collect();
    let payload = DeviceError::Lost {
        error: "results lost".into(),
        count,
        lost,
        time_ms: crate::analyze::now_ms(),
    };
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
    connection: Connection,
    settings: LinkSettings,
    on_command: CommandHandler,
) -> MqttLink {
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || {
            let client = sink.client.clone();
            LinkThread {
                sink,
                client,
                s: settings,
                on_command,
                stop,
                in_flight: None,
                backoff: Backoff::default(),
                outage_since: None,
                flush_deadline: None,
                oversized: Oversized::default(),
            }
            .run(connection)
        })
        .expect("spawn the MQTT thread");
    MqttLink { shutdown, thread }
}

/// The MQTT thread's state: the one record in flight, the reconnection back-off,
/// the outage being timed, and the flush deadline once stopping.
struct LinkThread {
    sink: Arc<MqttSink>,
    client: Client,
    s: LinkSettings,
    on_command: CommandHandler,
    stop: Arc<AtomicBool>,
    /// (seq of the record in flight, its packet id once rumqttc has sent it)
    in_flight: Option<(u64, Option<u16>)>,
    backoff: Backoff,
    outage_since: Option<Instant>,
    flush_deadline: Option<Instant>,
    oversized: Oversized,
}

/// Whether the thread goes on after an event.
enum Next {
    Continue,
    Stop,
}

impl LinkThread {
    fn run(mut self, mut connection: Connection) {
        loop {
            if self.oversized.pause_over() && self.connected() {
                log::info!("MQTT: listening for commands again");
                for f in self.s.topics.command_filters() {
                    let _ = self.client.try_subscribe(f, QoS::AtLeastOnce);
                }
            }
            if self.flushed() {
                break;
            }
            let next = match connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    self.on_connected();
                    Next::Continue
                }
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some((_, id @ None)) = &mut self.in_flight {
                        if pkid != 0 {
                            *id = Some(pkid);
                        }
                    }
                    Next::Continue
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    self.on_puback(ack.pkid);
                    Next::Continue
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    self.on_publish(&p.topic, &p.payload);
                    Next::Continue
                }
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => Next::Continue,
                Ok(Err(e)) => self.on_connection_error(e),
                Err(RecvTimeoutError::Disconnected) => Next::Stop,
            };
            if let Next::Stop = next {
                return;
            }
            self.send_next();
        }
        self.goodbye(&mut connection);
    }

    fn connected(&self) -> bool {
        self.sink.connected.load(Ordering::SeqCst)
    }

    fn queued(&self) -> usize {
        self.sink.outbox.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A QoS 0 message outside the outbox (status, discovery).
    fn publish_direct(&self, m: &Message) {
        let _ = self.client.try_publish(m.topic.clone(), QoS::AtMostOnce, m.retain, m.encode(None));
    }

    /// Once stopping: true when the outbox is delivered or the flush timeout has
    /// passed (what is left stays queued on disk for the next start).
    fn flushed(&mut self) -> bool {
        if self.stop.load(Ordering::SeqCst) && self.flush_deadline.is_none() {
            self.flush_deadline = Some(Instant::now() + self.s.flush_timeout);
        }
        let Some(deadline) = self.flush_deadline else { return false };
        let left = self.queued();
        if left > 0 && Instant::now() < deadline {
            return false;
        }
        if left > 0 {
            log::warn!(
                "shutting down with {left} message(s) undelivered; they stay queued on disk for \
                 the next start"
            );
        }
        true
    }

    /// A (re)connection: subscribe, report an oversized message, say online, send
    /// discovery. The session is clean, so the outbox re-sends its oldest record.
    fn on_connected(&mut self) {
        match self.outage_since.take() {
            Some(t) => log::info!(
                "MQTT: reconnected to {} after {:.1} s",
                self.s.broker,
                t.elapsed().as_secs_f64()
            ),
            None => log::info!("MQTT: connected to {}", self.s.broker),
        }
        self.sink.connected.store(true, Ordering::SeqCst);
        self.backoff.reset();
        self.in_flight = None;
        let mut filters: Vec<String> = self.s.discovery_status_topic.iter().cloned().collect();
        filters.extend(self.s.discovery_configs.clone());
        if !self.oversized.commands_off() {
            filters.extend(self.s.topics.command_filters());
        }
        if let Some(why) = self.oversized.report() {
            log::error!("MQTT: {why}");
            let v = DeviceError::Other { error: why, time_ms: crate::analyze::now_ms() };
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            let _ = self.client.try_publish(self.s.topics.error(), QoS::AtLeastOnce, false, bytes);
        }
        for f in filters {
            let _ = self.client.try_subscribe(f, QoS::AtLeastOnce);
        }
        self.publish_direct(&Message::text(self.s.topics.status(), "online").retained());
        self.s.discovery.iter().for_each(|m| self.publish_direct(m));
    }

    /// The broker has the record in flight: the outbox forgets it.
    fn on_puback(&mut self, pkid: u16) {
        let Some((seq, Some(sent))) = self.in_flight else { return };
        if pkid != sent {
            return;
        }
        let mut ob = self.sink.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = ob.ack(seq) {
            log::error!("outbox: cannot record a delivery: {e}");
        }
        self.in_flight = None;
    }

    /// A message on a subscribed topic: Home Assistant's discovery traffic, or a
    /// command.
    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        if stale_discovery(&self.s, topic, payload) {
            log::info!("Home Assistant: {topic} is no camera of this bridge any more; clearing it");
            self.publish_direct(&Message {
                topic: topic.to_string(),
                payload: crate::publish::Payload::Bytes(vec![]),
                retain: true,
                delivery: Delivery::BestEffort,
            });
        } else if self.s.discovery_configs.as_deref().is_some_and(|f| {
            let (head, tail) = f.split_once('+').unwrap_or((f, ""));
            topic.starts_with(head) && topic.ends_with(tail)
        }) {
            // Another bridge's device, one of ours, or a cleared one.
        } else if Some(topic) == self.s.discovery_status_topic.as_deref() {
            if payload == b"online" {
                log::info!("Home Assistant is online: sending discovery again");
                self.s.discovery.iter().for_each(|m| self.publish_direct(m));
            }
        } else {
            (self.on_command)(topic, payload);
        }
    }

    /// The connection failed or dropped: wait out the back-off (not past a
    /// shutdown request, which then honours flush_timeout_s) and let rumqttc retry.
    fn on_connection_error(&mut self, e: rumqttc::ConnectionError) -> Next {
        self.oversized.note(&e);
        self.sink.connected.store(false, Ordering::SeqCst);
        self.in_flight = None;
        if self.flush_deadline.is_some() {
            // Stopping and the broker is away: what is queued stays on disk.
            log::warn!("MQTT: {e}; stopping with {} message(s) queued on disk", self.queued());
            return Next::Stop;
        }
        let delay = self.backoff.delay(Duration::ZERO);
        if self.outage_since.is_none() {
            self.outage_since = Some(Instant::now());
            log::warn!(
                "MQTT: {} unreachable ({e}); results queue on disk; retrying",
                self.s.broker
            );
        } else {
            let next = delay.as_secs_f64();
            log::debug!("MQTT: still unreachable ({e}); next try in {next:.1} s");
        }
        let retry_at = Instant::now() + delay;
        while Instant::now() < retry_at && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50).min(retry_at - Instant::now()));
        }
        if self.stop.load(Ordering::SeqCst) {
            let left = self.queued();
            log::warn!("MQTT: stopping during an outage with {left} message(s) queued on disk");
            return Next::Stop;
        }
        Next::Continue
    }

    /// While connected: report losses, and send the oldest record when none is in
    /// flight.
    fn send_next(&mut self) {
        if !self.connected() {
            return;
        }
        let mut ob = self.sink.outbox.lock().unwrap_or_else(|e| e.into_inner());
        report_losses(&mut ob, &self.client, &self.s.topics);
        if self.in_flight.is_some() {
            return;
        }
        match ob.front() {
            Ok(Some(r)) => {
                if self.client.try_publish(r.topic, QoS::AtLeastOnce, r.retain, r.payload).is_ok() {
                    self.in_flight = Some((r.seq, None));
                }
            }
            Ok(None) => {}
            Err(e) => log::error!("outbox: cannot read the next record: {e}"),
        }
    }

    /// Clean goodbye: a disconnect does not fire the last will, so say it.
    fn goodbye(&self, connection: &mut Connection) {
        if !self.connected() {
            return;
        }
        self.publish_direct(&Message::text(self.s.topics.status(), "offline").retained());
        let _ = self.client.try_disconnect();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect)))
                | Ok(Err(_))
                | Err(RecvTimeoutError::Disconnected) => break,
                _ => {}
            }
        }
    }
}
