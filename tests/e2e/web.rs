//! The bridge's HTTP side, against the real binary: /healthz, the history's API
//! (timeline, thumbnails, search by words and "more like this"), the token, bad
//! requests, and a real Prometheus (Debian's package) scraping /metrics.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use owlet_e2e::broker::*;
use owlet_e2e::*;
use serde_json::Value;

const TOKEN: &str = "e2e-token-0123456789";

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// The request with the token, if any.
fn with_token<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => req.header("Authorization", &format!("Bearer {t}")),
        None => req,
    }
}

/// The answer, whatever its status.
fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Reply { status: r.status().as_u16(), content_type, body: r.body_mut().read_to_vec().unwrap() }
}

fn get(url: &str, token: Option<&str>) -> Reply {
    let req = with_token(ureq::get(url).config().http_status_as_error(false).build(), token);
    reply(req.call().unwrap_or_else(|e| panic!("GET {url}: {e}")))
}

fn post(url: &str, token: Option<&str>, content_type: &str, body: &str) -> Reply {
    let req = with_token(ureq::post(url).config().http_status_as_error(false).build(), token);
    let r = req.header("Content-Type", content_type).send(body.as_bytes());
    reply(r.unwrap_or_else(|e| panic!("POST {url}: {e}")))
}

/// A bridge watching a folder (so it keeps running) into which the demo frames
/// are then copied, its history on, serving HTTP with a token.
fn start_bridge(dir: &Path, port: u16) -> Daemon {
    let cfg = dir.join("bridge.toml");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"cat\", \"rocket\", \"person\"]\n\
             [index]\nprecision = \"f32\"\n[web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [[cameras]]\nname = \"shelf\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = true }}\n",
            dir.join("state").display(),
            clip_bundle(),
            frames.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg);
    wait_for_port(port, Duration::from_secs(60));
    // A watched folder analyses the files that arrive after its watch starts.
    d.wait_watching("shelf");
    for f in std::fs::read_dir(repo().join("models/demo-frames")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, frames.join(f.file_name().unwrap())).unwrap();
    }
    d
}

fn wait_for(what: &str, d: &Daemon, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn demo_frame_count() -> usize {
    std::fs::read_dir(repo().join("models/demo-frames")).unwrap().count()
}

#[test]
fn the_history_api_serves_frames_thumbnails_and_search_and_refuses_what_is_wrong() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-web-").tempdir().unwrap();
    let port = free_port();
    let mut d = start_bridge(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    wait_for_port(port, Duration::from_secs(60));
    let health = get(&format!("{base}/healthz"), None);
    assert_eq!((health.status, health.json()["status"].clone()), (200, "ok".into()));

    // Without the token, or with a wrong one: 401, saying which.
    let r = get(&format!("{base}/api/frames"), None);
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("token is required"));
    let r = get(&format!("{base}/api/frames"), Some("not-the-token"));
    assert_eq!((r.status, r.json()["error"].clone()), (401, "wrong token".into()));

    let frames = demo_frame_count();
    let mut timeline = Value::Null;
    wait_for("every demo frame in the history", &d, Duration::from_secs(60), || {
        timeline = get(&format!("{base}/api/frames"), Some(TOKEN)).json();
        timeline["frames"].as_array().is_some_and(|f| f.len() == frames)
    });
    let rows = timeline["frames"].as_array().unwrap();
    assert!(rows.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");
    for row in rows {
        assert_eq!(row["camera"], "shelf");
        assert_eq!(row["labels"].as_array().unwrap().len(), 3, "{row}");
        let t = get(&format!("{base}{}", row["thumbnail"].as_str().unwrap()), Some(TOKEN));
        assert_eq!((t.status, t.content_type.as_str()), (200, "image/jpeg"));
        let img = image::load_from_memory(&t.body).unwrap();
        assert!(img.width().max(img.height()) == 160, "{}x{}", img.width(), img.height());
    }
    // Paging: the frames older than the second.
    let older = get(&format!("{base}/api/frames?before={}&limit=1", rows[1]["id"]), Some(TOKEN));
    assert_eq!(older.json()["frames"][0]["id"], rows[2]["id"]);
    let one = get(&format!("{base}/api/frames?camera=shelf&limit=1"), Some(TOKEN)).json();
    assert_eq!(one["frames"][0]["id"], rows[0]["id"]);
    let none = get(&format!("{base}/api/frames?camera=garage"), Some(TOKEN)).json();
    assert_eq!(none["frames"], serde_json::json!([]));

    // "More like this" on the rocket: the rocket first, at cosine ~1.
    let rocket = rows
        .iter()
        .find(|r| r["source"].as_str().unwrap().ends_with("rocket.jpg"))
        .expect("the rocket frame");
    let like = get(&format!("{base}/api/search?like={}&k=3", rocket["id"]), Some(TOKEN)).json();
    assert_eq!(like["frames"][0]["id"], rocket["id"], "{like}");
    assert!(like["frames"][0]["score"].as_f64().unwrap() > 0.999);
    assert_eq!(like["frames"].as_array().unwrap().len(), 3);
    assert_eq!(like["searched"], frames);
    // Words: ranked like the CLI ranks them on the same file.
    let words =
        get(&format!("{base}/api/search?q=a%20rocket%20on%20the%20launch%20pad&k=4"), Some(TOKEN));
    assert_eq!(words.status, 200);
    let web_order: Vec<Value> =
        words.json()["frames"].as_array().unwrap().iter().map(|f| f["id"].clone()).collect();
    let db = dir.path().join("state/history.db");
    let cli = owlet_search(&db, "a rocket on the launch pad", 4);
    let cli_order: Vec<Value> =
        cli.as_array().unwrap().iter().map(|f| f["frame_id"].clone()).collect();
    assert_eq!(web_order, cli_order);

    // Bad requests: a status and an error naming what was wrong; nothing breaks.
    let long = "x".repeat(2000);
    for (path, status, needle) in [
        ("/api/frames?limit=abc".to_string(), 400, "bad query"),
        ("/api/frames?limit=0".into(), 400, "limit must be"),
        ("/api/frames?colour=red".into(), 400, "unknown field"),
        ("/api/frames?min_score=7&label=cat".into(), 400, "min_score"),
        ("/api/search".into(), 400, "give q"),
        ("/api/search?q=%20".into(), 400, "q must be"),
        (format!("/api/search?q={long}"), 400, "q must be"),
        ("/api/search?q=x&like=1".into(), 400, "give q"),
        ("/api/search?q=x&k=100000".into(), 400, "k must be"),
        ("/api/search?like=999999".into(), 404, "no searchable frame"),
        ("/api/frames/abc/thumbnail.jpg".into(), 400, "bad frame id"),
        ("/api/frames/999999/thumbnail.jpg".into(), 404, "no frame 999999"),
        ("/api/frames/999999".into(), 404, "no frame"),
        ("/nowhere".into(), 404, "no such page"),
    ] {
        let r = get(&format!("{base}{path}"), Some(TOKEN));
        assert_eq!(r.status, status, "{path}: {}", String::from_utf8_lossy(&r.body));
        let why = r.json()["error"].as_str().unwrap().to_string();
        assert!(why.contains(needle), "{path}: {why}");
    }
    // The cameras' side: a question and a label set are checked before they are
    // queued; the page's bodies are JSON, and nothing else is taken.
    let json = "application/json";
    for (path, token, content_type, body, status, needle) in [
        (
            "/api/cameras/nope/labels",
            Some(TOKEN),
            json,
            r#"{"labels":["a"]}"#,
            404,
            "no camera named \"nope\" (cameras: shelf)",
        ),
        (
            "/api/cameras/shelf/labels",
            Some(TOKEN),
            "text/plain",
            r#"{"labels":["a"]}"#,
            415,
            "the body must be",
        ),
        (
            "/api/cameras/shelf/labels",
            Some(TOKEN),
            json,
            r#"{"labels":[]}"#,
            400,
            "labels must be a list of 1 to 256",
        ),
        (
            "/api/cameras/shelf/labels",
            Some(TOKEN),
            json,
            r#"{"labels":["a"],"x":1}"#,
            400,
            "unknown field",
        ),
        (
            "/api/cameras/shelf/labels",
            Some(TOKEN),
            json,
            r#"{"labels":["a\u0007"]}"#,
            400,
            "printable",
        ),
        (
            "/api/cameras/shelf/ask",
            Some(TOKEN),
            json,
            r#"{"question":"  "}"#,
            400,
            "question must be",
        ),
        ("/api/cameras/shelf/ask", Some(TOKEN), json, "{", 400, "the body must be"),
        ("/api/cameras/shelf/ask", None, json, r#"{"question":"why?"}"#, 401, "token is required"),
    ] {
        let r = post(&format!("{base}{path}"), token, content_type, body);
        assert_eq!(r.status, status, "{path} {body}: {}", String::from_utf8_lossy(&r.body));
        let why = r.json()["error"].as_str().unwrap().to_string();
        assert!(why.contains(needle), "{path} {body}: {why}");
    }
    // This camera has no BLIP-2: the question is taken, and its stream says why
    // there is no answer.
    let r =
        post(&format!("{base}/api/cameras/shelf/ask"), Some(TOKEN), json, r#"{"question":"why?"}"#);
    assert_eq!((r.status, r.content_type.as_str()), (200, "text/event-stream"));
    let stream = String::from_utf8_lossy(&r.body);
    assert!(stream.starts_with("event: error\ndata: "), "{stream}");
    assert!(stream.contains("no BLIP-2 model"), "{stream}");
    // The newest frame, as it came; the pages, and where a browser without the
    // cookie is sent.
    let r = get(&format!("{base}/api/cameras/shelf/snapshot"), Some(TOKEN));
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("image/"), "{}", r.content_type);
    for page in ["/", "/timeline", "/search?q=a%20cat"] {
        let r = get(&format!("{base}{page}"), Some(TOKEN));
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (200, "text/html; charset=utf-8"),
            "{page}"
        );
    }
    let r = ureq::get(&format!("{base}/timeline?camera=shelf"))
        .config()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Ftimeline%3Fcamera%3Dshelf");
    let r = post(&format!("{base}/login"), None, "application/x-www-form-urlencoded", "nothing=1");
    assert_eq!(r.status, 400);
    let r = post(
        &format!("{base}/login"),
        None,
        "application/x-www-form-urlencoded",
        "token=nope&next=//evil.example",
    );
    assert_eq!(r.status, 401, "a wrong token");
    assert_eq!(get(&format!("{base}/assets/nothing.js"), None).status, 404);
    assert_eq!(get(&format!("{base}/assets/app.js"), None).status, 200, "assets need no token");

    // Not HTTP at all: answered or closed, and the next request is served.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"\x00\x01GARBAGE \xff\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    assert_eq!(get(&format!("{base}/healthz"), None).status, 200);
    assert!(d.is_running(), "{}", d.log());
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
}

/// Prometheus, configured to scrape the bridge every second with its token.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: owlet\n    \
                 authorization:\n      credentials: {TOKEN}\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(program("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus (scripts/test installs Debian's package)");
        Prometheus { child, port, log }
    }

    fn query(&self, q: &str) -> Value {
        let url = format!("http://127.0.0.1:{}/api/v1/query?query={q}", self.port);
        get(&url, None).json()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_bridges_metrics() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-prometheus-").tempdir().unwrap();
    let port = free_port();
    let mut d = start_bridge(dir.path(), port);
    wait_for_port(port, Duration::from_secs(60));
    let prom = Prometheus::start(dir.path(), port);
    wait_for_port(prom.port, Duration::from_secs(60));
    // The port opens before the TSDB is loaded; until then every API call is a 503.
    wait_for("Prometheus to be ready", &d, Duration::from_secs(60), || {
        get(&format!("http://127.0.0.1:{}/-/ready", prom.port), None).status == 200
    });
    let frames = demo_frame_count();
    let mut last = Value::Null;
    wait_for("Prometheus to hold every frame's count", &d, Duration::from_secs(60), || {
        last = prom.query("owlet_frames_analysed_total");
        last["data"]["result"].as_array().is_some_and(|r| {
            r.iter().any(|s| {
                s["metric"]["camera"] == "shelf"
                    && s["metric"]["trigger"] == "still"
                    && s["value"][1].as_str() == Some(&frames.to_string())
            })
        })
    });
    let seen = prom.query("owlet_frames_seen_total");
    assert_eq!(seen["data"]["result"][0]["value"][1], frames.to_string(), "{seen}");
    for series in [
        "owlet_history_frames",
        "owlet_model_load_seconds",
        "owlet_resident_memory_bytes",
        "owlet_stage_seconds_bucket",
    ] {
        let r = prom.query(series);
        let got = r["data"]["result"].as_array().unwrap();
        assert!(
            !got.is_empty(),
            "{series}: {r}; prometheus log:\n{}",
            std::fs::read_to_string(&prom.log).unwrap_or_default()
        );
        assert_eq!(got[0]["metric"]["job"], "owlet");
    }
    let h = prom.query("owlet_history_frames");
    assert_eq!(h["data"]["result"][0]["value"][1], frames.to_string());
    let up = prom.query("up");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "the scrape with the token succeeds");
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
}
