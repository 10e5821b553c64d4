//! A real mosquitto broker, mosquitto_sub and mosquitto_pub for the end-to-end
//! tests (Debian's mosquitto and mosquitto-clients; scripts/test installs them).
//! A missing program fails the test that needs it, loudly.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: scripts/test installs it (scripts/build-deps.sh: install_test_deps)");
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on port {port} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    global: String,
    extra: String,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port, persistent sessions saved in `dir` (so a test
    /// subscriber's queued messages survive a broker restart), plus `extra` config.
    pub fn start(dir: &Path, extra: &str) -> Broker {
        Broker::start_with(dir, "", extra)
    }

    /// `global` goes before the first listener (mosquitto wants
    /// `per_listener_settings` there), `extra` after the plain listener.
    pub fn start_with(dir: &Path, global: &str, extra: &str) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: dir.to_path_buf(),
            global: global.to_string(),
            extra: extra.to_string(),
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        // Started as root, mosquitto switches to the `mosquitto` user, which cannot
        // write in a private temp dir: tell it to stay who we are.
        let me = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let text = format!(
            "user {me}\n{}\npersistence true\npersistence_location {}/\nautosave_interval 1\nlog_dest file {}/mosquitto.log\nlog_type all\n\
             max_queued_messages 100000\nlistener {} 127.0.0.1\nallow_anonymous true\n{}\n",
            self.global,
            self.dir.display(),
            self.dir.display(),
            self.port,
            self.extra
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(program("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// Stop the broker (SIGTERM: it saves its sessions, as a systemd restart does).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "TERM");
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retained: bool,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "{} payload is not JSON ({e}): {:?}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Whether `payload` is exactly a `T`: parsed into the contract's type and written
/// again, it must come out the same (a field the type lacks would vanish, one of
/// another type would not parse).
fn round_trips<T>(payload: &serde_json::Value) -> Result<(), String>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let typed: T = serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
    let again = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if same(&again, payload) {
        Ok(())
    } else {
        Err(format!("as the contract's type it reads {again}"))
    }
}

/// Equal JSON, floats within f32's precision: an f32 read back from its decimal
/// text may print differently in the last digit (serde_json's default float
/// parsing is not correctly rounded), which no subscriber can tell apart.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Checks an owlet output topic's payload against its type in
/// `owlet_protocol::payloads` (what docs/mqtt/'s schemas are made from). None for a
/// topic that has no JSON contract (commands in, text states, discovery, a
/// request's own reply topic).
pub fn contract_violation(m: &Received) -> Option<String> {
    use owlet_protocol::fleet::{SearchAnswer, StatusAnswer};
    use owlet_protocol::payloads::*;
    let parts: Vec<&str> = m.topic.split('/').collect();
    type Check = fn(&serde_json::Value) -> Result<(), String>;
    let check: Check = match parts[..] {
        ["owlet", "fleet", "reply", _] => {
            |v| round_trips::<SearchAnswer>(v).or_else(|_| round_trips::<StatusAnswer>(v))
        }
        ["owlet", _, "error"] => round_trips::<DeviceErrorMessage>,
        ["owlet", _, "search", "result"] => round_trips::<Published<SearchResult>>,
        ["owlet", _, _, "labels"] => round_trips::<Published<Labels>>,
        ["owlet", _, _, "caption"] => round_trips::<Published<Caption>>,
        ["owlet", _, _, "event"] => round_trips::<Published<LabelEvent>>,
        ["owlet", _, _, "labels", "state"] => round_trips::<Published<LabelSet>>,
        ["owlet", _, _, "answer"] => round_trips::<Published<Answer>>,
        ["owlet", _, _, "error"] => round_trips::<Published<CameraError>>,
        ["owlet", _, _, "prompt", _, "attributes"] => round_trips::<Published<PromptAttributes>>,
        _ => return None,
    };
    let payload: serde_json::Value = match serde_json::from_slice(&m.payload) {
        Ok(v) => v,
        Err(e) => return Some(format!("{}: not JSON ({e})", m.topic)),
    };
    check(&payload).err().map(|why| format!("{}: {payload}: {why}", m.topic))
}

/// Asserts that every message in `msgs` on an owlet output topic is what the
/// contract's types say, and that there was at least one.
pub fn assert_contract(msgs: &[Received]) {
    let violations: Vec<String> = msgs.iter().filter_map(contract_violation).collect();
    assert!(
        violations.is_empty(),
        "payloads outside the MQTT contract:\n{}",
        violations.join("\n")
    );
    let json_topics = msgs
        .iter()
        .filter(|m| m.topic.starts_with("owlet/") && m.payload.starts_with(b"{"))
        .count();
    assert!(json_topics > 0, "no owlet JSON payload to check");
}

/// mosquitto_sub on `filter`, QoS 1, a persistent session (`-c`) so that it gets
/// what was published while the broker was restarting. Payloads travel as hex.
pub struct Subscriber {
    child: Child,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str, id: &str) -> Subscriber {
        let mut child = Command::new(program("mosquitto_sub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                filter,
                "-q",
                "1",
                "-c",
                "-i",
                id,
                "-F",
                "%r %t %x",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, ' ');
                let (Some(r), Some(t), x) =
                    (parts.next(), parts.next(), parts.next().unwrap_or(""))
                else {
                    continue;
                };
                let payload = (0..x.len() / 2)
                    .map(|i| u8::from_str_radix(&x[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                g.lock().unwrap().push(Received {
                    topic: t.to_string(),
                    payload,
                    retained: r == "1",
                });
            }
        });
        // mosquitto_sub prints nothing when subscribed; the broker's port is up, so
        // give it a moment to connect and subscribe.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber { child, got }
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn on(&self, topic: &str) -> Vec<Received> {
        self.all().into_iter().filter(|m| m.topic == topic).collect()
    }

    /// Wait until `pred` holds over everything received so far.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            if Instant::now() > end {
                let topics: Vec<_> = all.iter().map(|m| m.topic.as_str()).collect();
                panic!("timed out after {timeout:?} waiting for {what}; got {} message(s) on {topics:?}", all.len());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub: one message (payload from stdin, so any bytes and any size).
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) {
    use std::io::Write;
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        topic.into(),
        "-q".into(),
        "1".into(),
        "-s".into(),
    ];
    if retain {
        args.push("-r".into());
    }
    let mut c =
        Command::new(program("mosquitto_pub")).args(&args).stdin(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(payload).unwrap();
    assert!(c.wait().unwrap().success(), "mosquitto_pub {topic}");
}

/// The bridge as a daemon: stderr goes to a file for the test to read.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    /// What it printed as `topic payload` lines (no broker configured).
    pub printed: Arc<Mutex<Vec<Received>>>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        let log = config.with_extension("log");
        let mut child = Command::new(crate::bin("owlet-bridge"))
            .arg("--config")
            .arg(config)
            .arg("--compact")
            .env("RUST_LOG", "info,owlet_bridge=debug")
            .current_dir(crate::repo())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let p = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((t, payload)) = line.split_once(' ') {
                    p.lock().unwrap().push(Received {
                        topic: t.to_string(),
                        payload: payload.as_bytes().to_vec(),
                        retained: false,
                    });
                }
            }
        });
        Daemon { child, log, printed }
    }

    pub fn printed_on(&self, suffix: &str) -> Vec<Received> {
        self.printed.lock().unwrap().iter().filter(|m| m.topic.ends_with(suffix)).cloned().collect()
    }

    /// Wait until `pred` holds over what it printed.
    pub fn wait_printed(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let all = self.printed.lock().unwrap().clone();
            if pred(&all) {
                return all;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; printed {} line(s); log:\n{}",
                    all.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until its log holds `needle`.
    pub fn wait_log(&self, what: &str, timeout: Duration, needle: &str) {
        let end = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(Instant::now() < end, "timed out waiting for {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until camera `name` watches its folder: a file copied in before that
    /// counts as already there and is never analysed.
    pub fn wait_watching(&self, camera: &str) {
        let needle = format!("camera {camera}: watching ");
        self.wait_log(&format!("{camera}'s folder watch"), Duration::from_secs(60), &needle);
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status (within `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("owlet-bridge did not exit within {timeout:?}; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ffmpeg's argv for a live MJPEG test pattern on stdout (`lavfi` source `src`).
pub fn ffmpeg_mjpeg(src: &str, rate: u32, frames: Option<u32>) -> Vec<String> {
    let mut v: Vec<String> = ["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"]
        .map(String::from)
        .to_vec();
    v.insert(0, program("ffmpeg").display().to_string());
    v.push(format!("{src}:rate={rate}"));
    if let Some(n) = frames {
        v.extend(["-frames:v".to_string(), n.to_string()]);
    }
    v.extend(["-f", "mjpeg", "-q:v", "5", "-"].map(String::from));
    v
}

pub fn toml_list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "))
}

/// A small tmpfs mounted for one test: a disk that can be filled and freed.
/// Mounting needs root (scripts/test runs as root, as CI does); without it the test
/// fails saying so rather than skipping.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn new(bytes: u64) -> SmallDisk {
        let dir = tempfile::Builder::new().prefix("owlet-e2e-disk-").tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "owlet-e2e"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a disk: it mounts a small tmpfs, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file until the disk has no room left.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
    }

    pub fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A TCP relay on loopback between a client and `to`, which a test can make go
/// silent: connections stay open and nothing passes, as when a cable between two
/// sites is pulled (no FIN, no RST: neither side knows until its keep-alive). What
/// was sent meanwhile is held and passes when the relay speaks again, as TCP's
/// retransmissions would deliver it.
pub struct Relay {
    pub port: u16,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn start(to: u16) -> Relay {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let s = silent.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming().map_while(Result::ok) {
                let Ok(outbound) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue; // the far side is down: the connection just closes
                };
                for (from, into) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, into, &s));
                }
            }
        });
        Relay { port, silent }
    }

    /// Nothing passes until `speak`.
    pub fn silence(&self) {
        self.silent.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn speak(&self) {
        self.silent.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut into: std::net::TcpStream,
    silent: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while silent.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if into.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
