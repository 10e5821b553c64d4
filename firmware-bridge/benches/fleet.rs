//! Fleet search at scale (issue 29): D search-only bridges on one mosquitto, each
//! with a copy of one preloaded history and one inference thread, asked searches
//! and status requests one after another by the fleet client (the code behind
//! `owlet-bridge fleet`).
//!
//! Per D it prints: the answer latency (request published to last answer) of
//! searches and of status requests (answered without a model: the protocol's and
//! the broker's cost alone), every answer's own search time as its device
//! reports it, the client's whole call (connect, retained statuses, request,
//! answers), and PUBLISH packets and bytes per query as the broker counts them
//! (`$SYS`, less what the broker does when idle). Then a model for 500 devices.
//!
//! Run by `benches/fleet.sh`, which builds the binaries and passes their paths in
//! `OWLET_BIN` and `OWLET_BRIDGE_BIN`. Arguments: `--devices 6,24,48`
//! `--queries 100` `--frames 2000`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use owlet_bridge::config::MqttConfig;
use owlet_bridge::fleet::client::{self, Asker};
use rand::{Rng, SeedableRng};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const TEXTS: [&str; 10] = [
    "a red car",
    "a bird at the feeder",
    "a person at the door",
    "a parcel on the step",
    "a dog in the garden",
    "a bicycle against the wall",
    "an empty driveway",
    "a cat on the fence",
    "a van in the street",
    "someone carrying a box",
];
/// Hits each device returns, as `owlet-bridge fleet search` asks by default.
const K: usize = 5;

struct Args {
    devices: Vec<usize>,
    queries: usize,
    frames: usize,
    /// mosquitto's `set_tcp_nodelay true` (its default is false: Nagle on).
    broker_nodelay: bool,
}

fn args() -> Result<Args> {
    let mut a =
        Args { devices: vec![6, 24, 48], queries: 100, frames: 2000, broker_nodelay: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--devices" => {
                a.devices = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--devices")?
            }
            "--queries" => a.queries = value()?.parse().context("--queries")?,
            "--frames" => a.frames = value()?.parse().context("--frames")?,
            "--broker-nodelay" => a.broker_nodelay = true,
            _ => {} // cargo bench's own (--bench)
        }
    }
    ensure!(a.devices.iter().all(|d| *d > 0) && a.queries > 0 && a.frames > 0, "sizes must be > 0");
    a.devices.sort_unstable();
    Ok(a)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_path(var: &str) -> Result<PathBuf> {
    let p = PathBuf::from(
        std::env::var(var).with_context(|| format!("{var} is not set (run benches/fleet.sh)"))?,
    );
    ensure!(p.is_file(), "{var}: {} is not a file", p.display());
    Ok(p)
}

/// `n` distinct frames from the demo scenes: a random crop of each, some
/// mirrored, scaled back to the scene's size.
fn make_frames(dir: &Path, n: usize) -> Result<()> {
    let scenes_dir = repo().join("models/scenes/demo");
    let mut scenes: Vec<PathBuf> =
        std::fs::read_dir(&scenes_dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    scenes.retain(|p| p.extension().is_some_and(|e| e == "jpg"));
    scenes.sort();
    ensure!(!scenes.is_empty(), "no scenes in {}", scenes_dir.display());
    let images: Vec<image::RgbImage> =
        scenes.iter().map(|p| Ok(image::open(p)?.to_rgb8())).collect::<Result<_>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let img = &images[i % images.len()];
        let (w, h) = img.dimensions();
        let (cw, ch) = (w * rng.random_range(70..=100) / 100, h * rng.random_range(70..=100) / 100);
        let (x, y) = (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch));
        let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
        let mut out = image::imageops::resize(&crop, w, h, FilterType::Triangle);
        if rng.random_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        out.save(dir.join(format!("frame-{i:05}.jpg")))?;
    }
    Ok(())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_broker(dir: &Path, nodelay: bool) -> Result<(Process, u16)> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval 1\npersistence false\nmax_queued_messages 100000\nset_tcp_nodelay {nodelay}\n"),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log"))?)
        .spawn()
        .context("starting mosquitto (is it installed?)")?;
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < end, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Process(child), port))
}

fn start_bridge(bin: &Path, root: &Path, history: &Path, n: usize, port: u16) -> Result<Process> {
    let dir = root.join(format!("d{n:03}"));
    std::fs::create_dir_all(dir.join("state"))?;
    std::fs::copy(history, dir.join("state/history.db"))?;
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"d{n:03}\"\nstate_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nthreads = 1\n\
             [index]\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n",
            dir.join("state").display(),
            repo().join("models/clip-demo").display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("bridge.log"))?)
        .spawn()?;
    Ok(Process(child))
}

/// The broker's own counters (`$SYS/broker/...`), as last published.
#[derive(Clone, Default)]
struct Counters(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counters {
    fn watch(port: u16) -> Result<Counters> {
        let counters = Counters::default();
        let mut o = MqttOptions::new("owlet-bench-sys", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(o, 64);
        for t in ["$SYS/broker/publish/messages/+", "$SYS/broker/bytes/+"] {
            client.subscribe(t, QoS::AtMostOnce)?;
        }
        let c = counters.clone();
        std::thread::spawn(move || {
            let _client = client; // kept alive with its connection
            for event in connection.iter() {
                if let Ok(Event::Incoming(Packet::Publish(p))) = event {
                    let v =
                        std::str::from_utf8(&p.payload).ok().and_then(|s| s.trim().parse().ok());
                    if let Some(v) = v {
                        c.0.lock().unwrap().insert(p.topic.to_string(), v);
                    }
                }
            }
        });
        Ok(counters)
    }

    /// The counters once the broker has published them anew (every second).
    fn fresh(&self) -> BTreeMap<String, u64> {
        std::thread::sleep(Duration::from_millis(2100));
        self.0.lock().unwrap().clone()
    }
}

/// Per-query broker traffic between two snapshots, less the idle rate.
#[derive(Default, Clone, Copy)]
struct Traffic {
    publish_in: f64,
    publish_out: f64,
    bytes_in: f64,
    bytes_out: f64,
}

fn traffic(
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
    idle: Traffic,
    secs: f64,
    n: f64,
) -> Traffic {
    let d = |k: &str| b.get(k).copied().unwrap_or(0) as f64 - a.get(k).copied().unwrap_or(0) as f64;
    Traffic {
        publish_in: (d("$SYS/broker/publish/messages/received") - idle.publish_in * secs) / n,
        publish_out: (d("$SYS/broker/publish/messages/sent") - idle.publish_out * secs) / n,
        bytes_in: (d("$SYS/broker/bytes/received") - idle.bytes_in * secs) / n,
        bytes_out: (d("$SYS/broker/bytes/sent") - idle.bytes_out * secs) / n,
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What one fleet size measured.
struct Row {
    devices: usize,
    search_ms: Vec<f64>,
    device_search_ms: Vec<f64>,
    call_ms: Vec<f64>,
    status_ms: Vec<f64>,
    search_traffic: Traffic,
    status_traffic: Traffic,
    request_bytes: f64,
    answer_bytes: f64,
}

fn asker(port: u16, timeout: Duration) -> Asker {
    let mut broker = MqttConfig::new("127.0.0.1", None);
    broker.port = Some(port);
    Asker { broker, timeout, devices: None }
}

/// Status requests until `d` devices answer (they are starting).
fn wait_for(port: u16, d: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60 + 3 * d as u64);
    loop {
        let o = client::status(&asker(port, Duration::from_secs(5)), client::new_id("status"))?;
        if o.answers.len() >= d {
            return Ok(());
        }
        ensure!(Instant::now() < end, "only {} of {d} devices answered", o.answers.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn measure(port: u16, d: usize, queries: usize, counters: &Counters, idle: Traffic) -> Result<Row> {
    let ask = asker(port, Duration::from_secs(30));
    let mut row = Row {
        devices: d,
        search_ms: vec![],
        device_search_ms: vec![],
        call_ms: vec![],
        status_ms: vec![],
        search_traffic: Traffic::default(),
        status_traffic: Traffic::default(),
        request_bytes: 0.0,
        answer_bytes: 0.0,
    };
    for text in TEXTS.iter().take(3) {
        client::search(
            &ask,
            owlet_bridge::fleet::search_request(text.to_string(), K, None, false)?,
        )?;
    }
    let before = counters.fresh();
    let t = Instant::now();
    for q in 0..queries {
        let request =
            owlet_bridge::fleet::search_request(TEXTS[q % TEXTS.len()].into(), K, None, false)?;
        let call = Instant::now();
        let o = client::search(&ask, request)?;
        row.call_ms.push(call.elapsed().as_secs_f64() * 1e3);
        if o.outcome.answers.len() != d {
            bail!("{} of {d} devices answered: {:?}", o.outcome.answers.len(), o.outcome.missed);
        }
        row.search_ms.push(o.outcome.elapsed_ms);
        row.device_search_ms.extend(o.outcome.answers.iter().map(|a| a.answer.search_ms));
        row.request_bytes += o.outcome.request_bytes as f64 / queries as f64;
        row.answer_bytes += o.outcome.answer_bytes as f64 / queries as f64;
    }
    let secs = t.elapsed().as_secs_f64();
    row.search_traffic = traffic(&before, &counters.fresh(), idle, secs + 2.1, queries as f64);
    let before = counters.fresh();
    let t = Instant::now();
    for _ in 0..queries {
        let o = client::status(&ask, client::new_id("status"))?;
        ensure!(
            o.answers.len() == d,
            "{} of {d} devices answered a status request",
            o.answers.len()
        );
        row.status_ms.push(o.elapsed_ms);
    }
    let secs = t.elapsed().as_secs_f64();
    row.status_traffic = traffic(&before, &counters.fresh(), idle, secs + 2.1, queries as f64);
    Ok(row)
}

/// What the broker does with no query running (its own `$SYS` publishing, to
/// this bench among others), per second.
fn idle_rate(counters: &Counters) -> Traffic {
    let a = counters.fresh();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let b = counters.fresh();
    traffic(&a, &b, Traffic::default(), 0.0, t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = args()?;
    let owlet = env_path("OWLET_BIN")?;
    let bridge = env_path("OWLET_BRIDGE_BIN")?;
    let root = tempfile::Builder::new().prefix("owlet-bench-fleet-").tempdir()?;
    let frames = root.path().join("frames");
    let t = Instant::now();
    make_frames(&frames, args.frames)?;
    let history = root.path().join("history.db");
    let model = repo().join("models/clip-demo");
    let out = Command::new(&owlet)
        .args(["index", "add", "-m"])
        .arg(&model)
        .arg("--index")
        .arg(&history)
        .arg(&frames)
        .output()?;
    ensure!(out.status.success(), "owlet index add: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("history of {} frames made in {:.1} s", args.frames, t.elapsed().as_secs_f64());

    let (_broker, port) = start_broker(root.path(), args.broker_nodelay)?;
    let counters = Counters::watch(port)?;
    let mut bridges = Vec::new();
    let mut rows = Vec::new();
    for &d in &args.devices {
        while bridges.len() < d {
            bridges.push(start_bridge(&bridge, root.path(), &history, bridges.len() + 1, port)?);
        }
        wait_for(port, d)?;
        let idle = idle_rate(&counters);
        let row = measure(port, d, args.queries, &counters, idle)?;
        eprintln!("{d} devices measured");
        rows.push(row);
    }
    print_table(&args, &mut rows);
    Ok(())
}

fn print_table(args: &Args, rows: &mut [Row]) {
    println!(
        "{} searches and {} status requests per fleet size, k = {K}, {} frames per device, one inference thread per device, {} cores, mosquitto set_tcp_nodelay {}\n",
        args.queries,
        args.queries,
        args.frames,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.broker_nodelay
    );
    println!("| devices | search p50 | search p99 | device's search p50 | p99 | status p50 | status p99 | whole call p50 | PUBLISH in/out per search | bytes in/out per search | request + answers (payload) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter_mut() {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | {:.0} ms | {:.1} / {:.1} | {:.0} / {:.0} | {:.0} + {:.0} B |",
            r.devices,
            percentile(&mut r.search_ms, 0.5),
            percentile(&mut r.search_ms, 0.99),
            percentile(&mut r.device_search_ms, 0.5),
            percentile(&mut r.device_search_ms, 0.99),
            percentile(&mut r.status_ms, 0.5),
            percentile(&mut r.status_ms, 0.99),
            percentile(&mut r.call_ms, 0.5),
            r.search_traffic.publish_in,
            r.search_traffic.publish_out,
            r.search_traffic.bytes_in,
            r.search_traffic.bytes_out,
            r.request_bytes,
            r.answer_bytes,
        );
    }
    println!("\nstatus requests: PUBLISH in/out per request and bytes in/out:");
    for r in rows.iter() {
        let t = r.status_traffic;
        println!(
            "- {} devices: {:.1} / {:.1} PUBLISH, {:.0} / {:.0} bytes",
            r.devices, t.publish_in, t.publish_out, t.bytes_in, t.bytes_out
        );
    }
    model(rows);
}

/// Least squares `y = a + b x`.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// 500 devices, each on its own board: the protocol's cost (status latency,
/// linear in D) plus one device's search time, and traffic linear in D.
fn model(rows: &mut [Row]) {
    const D: f64 = 500.0;
    let pts = |f: &dyn Fn(&mut Row) -> f64, rows: &mut [Row]| -> Vec<(f64, f64)> {
        rows.iter_mut().map(|r| (r.devices as f64, f(r))).collect()
    };
    let (a, b) = fit(&pts(&|r| percentile(&mut r.status_ms, 0.5), rows));
    let (a99, b99) = fit(&pts(&|r| percentile(&mut r.status_ms, 0.99), rows));
    let (ai, bi) = fit(&pts(&|r| r.search_traffic.publish_in, rows));
    let (ao, bo) = fit(&pts(&|r| r.search_traffic.publish_out, rows));
    let (abi, bbi) = fit(&pts(&|r| r.search_traffic.bytes_in, rows));
    let (abo, bbo) = fit(&pts(&|r| r.search_traffic.bytes_out, rows));
    let own = &mut rows[0].device_search_ms;
    let (own50, own99) = (percentile(own, 0.5), percentile(own, 0.99));
    println!("\nmodel for {D} devices, each on its own board (fits over the sizes above):");
    println!("- protocol (status latency) = {a:.2} ms + {b:.3} ms x devices (p50), {a99:.2} + {b99:.3} x devices (p99): {:.0} ms p50, {:.0} ms p99 at {D}", a + b * D, a99 + b99 * D);
    println!("- plus one device's own search ({} devices: p50 {own50:.2} ms, p99 {own99:.2} ms on this CPU, one thread): the slowest of {D} is near its p99", rows[0].devices);
    println!("- PUBLISH per search: in {ai:.1} + {bi:.2} x devices, out {ao:.1} + {bo:.2} x devices: {:.0} in, {:.0} out at {D}", ai + bi * D, ao + bo * D);
    println!("- bytes per search: in {abi:.0} + {bbi:.0} x devices, out {abo:.0} + {bbo:.0} x devices: {:.0} KiB in, {:.0} KiB out at {D}", (abi + bbi * D) / 1024.0, (abo + bbo * D) / 1024.0);
}
