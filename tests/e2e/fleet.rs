//! A fleet of six bridges on two mosquitto brokers joined by a mosquitto bridge
//! (issue 29): one search finds frames on both sides, merged by score; a silent
//! link between the sites and a device killed mid-query make the result partial,
//! name who is missing, and never hang past the timeout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use owlet_e2e::broker::*;
use owlet_e2e::*;
use serde_json::Value;

/// Devices on site A (the asker's broker) and site B (bridged to it), each with
/// the demo scenes its history holds. `a1` has a camera; the others only answer
/// searches of a history filled beforehand with `owlet index add`.
const SITE_A: [(&str, &[&str]); 3] = [
    ("a1", &["demo-00011.jpg"]),
    ("a2", &["demo-00001.jpg", "demo-00004.jpg"]),
    ("a3", &["demo-00006.jpg", "demo-00008.jpg"]),
];
const SITE_B: [(&str, &[&str]); 3] = [
    ("b1", &["demo-00013.jpg"]),
    ("b2", &["demo-00117.jpg", "demo-00001.jpg"]),
    ("b3", &["demo-00014.jpg"]),
];

fn copy_scenes(frames: &Path, scenes: &[&str]) {
    std::fs::create_dir_all(frames).unwrap();
    for s in scenes {
        std::fs::copy(demo_scenes_dir().join(s), frames.join(s)).unwrap();
    }
}

/// A bridge for `device` on the broker at `port`: a1 watches its frames as a
/// camera; the others get a history filled from theirs before they start.
fn start_device(root: &Path, device: &str, scenes: &[&str], port: u16) -> Daemon {
    start_device_with(root, device, scenes, port, "")
}

/// As [`start_device`], with `mqtt` added to the bridge's `[mqtt]` section.
fn start_device_with(root: &Path, device: &str, scenes: &[&str], port: u16, mqtt: &str) -> Daemon {
    let dir = root.join(device);
    let history = dir.join("state/history.db");
    let camera = if device == "a1" {
        // A watched folder sees only files that arrive after it starts. a1 also
        // serves the web page, whose search can ask every device.
        std::fs::create_dir_all(dir.join("frames")).unwrap();
        format!(
            "[web]\nlisten = \"127.0.0.1:{A1_WEB}\"\n\
             [[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = true }}\n",
            dir.join("frames").display(),
            A1_WEB = a1_web_port()
        )
    } else {
        copy_scenes(&dir.join("frames"), scenes);
        std::fs::create_dir_all(history.parent().unwrap()).unwrap();
        let (h, f) = (history.to_str().unwrap(), dir.join("frames"));
        let args = ["index", "add", "-m", &demo_clip_bundle(), "--index", h, f.to_str().unwrap()];
        let out = run("owlet", &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::new()
    };
    let config = dir.join("bridge.toml");
    let text = format!(
        "device = \"{device}\"\nstate_dir = \"{}\"\n[clip]\nmodel = \"{}\"\n\
         labels = [\"bird\", \"car\", \"dog\", \"package\", \"person\", \"bicycle\"]\n\
         [index]\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n{mqtt}{camera}",
        dir.join("state").display(),
        demo_clip_bundle(),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config);
    if device == "a1" {
        daemon.wait_log("a1 connected", Duration::from_secs(60), "MQTT: connected");
        daemon.wait_watching("door");
        copy_scenes(&dir.join("frames"), scenes);
    }
    daemon
}

/// a1's web page port, picked once.
fn a1_web_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(free_port)
}

fn http_get(path: &str) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", a1_web_port());
    let mut r = ureq::get(&url).config().http_status_as_error(false).build().call().unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// `/api/fleet/search` and the search page's "every device", in chromium.
fn the_web_page_searches_every_device(a1: &Daemon, all: &[String]) {
    use crate::browser::{browser, loaded_width, screenshot, until, Driver};
    use fantoccini::Locator;

    let (status, v) = http_get("/api/fleet/search?q=a%20red%20car&k=6");
    assert_eq!(status, 200, "{v:#}");
    let answered: Vec<&str> =
        v["answered"].as_array().unwrap().iter().map(|a| a["device"].as_str().unwrap()).collect();
    assert_eq!(answered.len(), all.len(), "{v:#}");
    assert_eq!(v["hits"][0]["device"], "b2", "{v:#}");
    let thumb = v["hits"][0]["thumbnail"].as_str().unwrap();
    assert!(thumb.starts_with("data:image/jpeg;base64,/9j/"), "a JPEG: {}", &thumb[..40]);
    for (query, names) in [("q=x&timeout_s=0", "timeout_s"), ("q=x&k=0", "k must"), ("k=3", "q")] {
        let (status, v) = http_get(&format!("/api/fleet/search?{query}"));
        assert_eq!(status, 400, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(names), "{query}: {v}");
    }

    let dir = tempfile::tempdir().unwrap();
    let driver = Driver::start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        let base = format!("http://127.0.0.1:{}", a1_web_port());
        c.goto(&format!("{base}/search?q=a%20red%20car")).await.unwrap();
        let link = c.find(Locator::Css("#fleet-link")).await.unwrap();
        until("the link to every device", &c, a1, Duration::from_secs(30), || async {
            link.is_displayed().await.ok().filter(|shown| *shown)
        })
        .await;
        link.click().await.unwrap();
        let js = "return [...document.querySelectorAll('#frames figure.frame')].map(f => f.dataset.device)";
        let shown: Vec<String> = until("the fleet's hits", &c, a1, Duration::from_secs(30), || async {
            let v = c.execute(js, vec![]).await.ok()?;
            let d: Vec<String> = serde_json::from_value(v).ok()?;
            (!d.is_empty()).then_some(d)
        })
        .await;
        assert_eq!(shown[0], "b2", "{shown:?}");
        assert!(shown.iter().any(|d| d.starts_with('a')), "hits from both sites: {shown:?}");
        let js = "return document.querySelectorAll('#devices li.answered').length";
        assert_eq!(c.execute(js, vec![]).await.unwrap(), serde_json::json!(all.len()));
        assert!(loaded_width(&c, a1, "#frames figure.frame img").await > 0);
        screenshot(&c, "fleet-search.png").await;
        c.close().await.unwrap();
    });
}

/// `owlet-bridge fleet ARGS --json` against the broker at `port`: its JSON and
/// how long it took.
fn fleet(port: u16, args: &[&str]) -> (Value, Duration) {
    let t = Instant::now();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let out = Command::new(bin("owlet-bridge"))
        .arg("fleet")
        .args(args)
        .args(["--broker", &broker, "--json"])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "fleet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("--json prints JSON"), took)
}

fn devices(v: &Value, key: &str) -> Vec<String> {
    let mut d: Vec<String> = v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.get("device").unwrap_or(a).as_str().unwrap().to_string())
        .collect();
    d.sort();
    d
}

fn names(site: &[(&str, &[&str])]) -> Vec<String> {
    site.iter().map(|(d, _)| d.to_string()).collect()
}

#[test]
fn a_fleet_on_two_bridged_brokers_searches_as_one_and_names_who_did_not_answer() {
    let root = tempfile::Builder::new().prefix("owlet-e2e-fleet-").tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("broker-a"), root.path().join("broker-b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let broker_a = Broker::start(&dir_a, "");
    // Site B's broker joins A's through a relay the test can silence.
    let link = Relay::start(broker_a.port);
    let bridge = format!(
        "connection site-a\naddress 127.0.0.1:{}\ntopic owlet/# both 1\ncleansession true\n\
         restart_timeout 1\n",
        link.port
    );
    let broker_b = Broker::start(&dir_b, &bridge);
    let mut daemons = Vec::new();
    for (site, port) in [(&SITE_A, broker_a.port), (&SITE_B, broker_b.port)] {
        for (device, scenes) in site.iter() {
            daemons.push(start_device(root.path(), device, scenes, port));
        }
    }
    let all: Vec<String> = [names(&SITE_A), names(&SITE_B)].concat();

    // Every device answers a status request once it is up, B's through the link;
    // a1's camera has looked at its frame.
    let end = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let (s, _) = fleet(broker_a.port, &["status", "--timeout", "2"]);
        let a1_seen =
            s["answers"].as_array().unwrap().iter().any(|a| {
                a["device"] == "a1" && a["answer"]["cameras"][0]["last"]["label"].is_string()
            });
        if devices(&s, "answers") == all && a1_seen {
            break s;
        }
        let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
        assert!(Instant::now() < end, "not every device answered: {s:#}\n{}", logs.join("\n"));
        std::thread::sleep(Duration::from_millis(500));
    };
    for a in status["answers"].as_array().unwrap() {
        let frames = a["answer"]["history_frames"].as_u64().unwrap();
        assert!(frames >= 1, "{a}");
    }

    // One search: every device answers; the merged hits are in score order and
    // come from both sites; the red car (on b2, across the link) is first.
    let (found, _) = fleet(broker_a.port, &["search", "a red car", "-k", "6", "--timeout", "10"]);
    assert_eq!(devices(&found, "answers"), all, "{found:#}");
    assert_eq!(found["missed"], serde_json::json!([]));
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 6);
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(hits[0]["device"], "b2", "{found:#}");
    assert!(hits[0]["source"].as_str().is_some_and(|s| s.ends_with("demo-00117.jpg")), "{found:#}");
    let sites: std::collections::HashSet<char> =
        hits.iter().map(|h| h["device"].as_str().unwrap().chars().next().unwrap()).collect();
    assert_eq!(sites.len(), 2, "hits from both sites: {found:#}");
    // Each device's best hit is what its own history gives for the text.
    let b2_own = owlet_search_with(
        &root.path().join("b2/state/history.db"),
        &demo_clip_bundle(),
        "a red car",
    );
    assert_eq!(hits[0]["frame_id"], b2_own[0]["frame_id"]);
    // a1's web page asks the same fleet.
    the_web_page_searches_every_device(&daemons[0], &all);

    // A request delivered twice (QoS 1 allows it) is answered once per device; a
    // hostile one is refused on each device's error topic, by name.
    let replies = Subscriber::start(broker_a.port, "owlet/fleet/reply/twice", "e2e-fleet-r");
    let errors = Subscriber::start(broker_a.port, "owlet/+/error", "e2e-fleet-e");
    let deadline = now_ms() + 10_000;
    let twice = format!(r#"{{"id": "twice", "text": "a dog", "deadline_ms": {deadline}}}"#);
    publish(broker_a.port, "owlet/fleet/search", twice.as_bytes(), false);
    publish(broker_a.port, "owlet/fleet/search", twice.as_bytes(), false);
    let bad = r#"{"id": "bad-1", "text": "x", "deadline_ms": 1, "where": "1=1"}"#;
    publish(broker_a.port, "owlet/fleet/search", bad.as_bytes(), false);
    errors.wait_until("every device refusing", Duration::from_secs(20), |m| m.len() >= 6);
    std::thread::sleep(Duration::from_secs(1)); // room for a second answer, if any came
    let mut answered: Vec<String> =
        replies.all().iter().map(|m| m.json()["device"].as_str().unwrap().to_string()).collect();
    answered.sort();
    assert_eq!(answered, all, "one answer per device");
    for e in errors.all() {
        let v = e.json();
        assert_eq!(v["id"], "bad-1", "{v}");
        assert!(v["error"].as_str().unwrap().contains("unknown field `where`"), "{v}");
    }
    assert_contract(&replies.all());
    assert_contract(&errors.all());

    // The link goes silent: site A answers, site B is named missed, and the
    // search ends at its timeout, not later.
    link.silence();
    let (partial, took) = fleet(broker_a.port, &["search", "a red car", "--timeout", "3"]);
    assert_eq!(devices(&partial, "answers"), names(&SITE_A), "{partial:#}");
    assert_eq!(devices(&partial, "missed"), names(&SITE_B), "{partial:#}");
    assert!(took < Duration::from_secs(6), "took {took:?} with a 3 s timeout");
    assert!(partial["hits"].as_array().unwrap().iter().all(|h| h["device"] != "b2"));
    // The link back: what was held reaches site B after its deadline, and is
    // dropped there; a new search finds every device again.
    link.speak();
    let (again, _) = fleet(broker_a.port, &["search", "a red car", "--timeout", "10"]);
    assert_eq!(devices(&again, "answers"), all, "{again:#}");
    let b1 = &daemons[3];
    b1.wait_log("the held request dropped", Duration::from_secs(10), "deadline had passed");

    // A device that hangs and then dies mid-query: its last will says offline,
    // so the search stops waiting for it and names it, well before the timeout.
    let a3 = &mut daemons[2];
    signal(&a3.child, "STOP");
    let asking = Command::new(bin("owlet-bridge"))
        .args(["fleet", "search", "a dog", "--timeout", "20", "--json"])
        .args(["--broker", &format!("127.0.0.1:{}", broker_a.port)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = a3.child.kill();
    let out = asking.wait_with_output().unwrap();
    let took = t.elapsed();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offline"], serde_json::json!(["a3"]), "{v:#}");
    assert_eq!(v["missed"], serde_json::json!([]), "{v:#}");
    assert_eq!(devices(&v, "answers").len(), 5, "{v:#}");
    assert!(took < Duration::from_secs(10), "took {took:?}: it waited for a dead device");
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// `owlet search --json` over `index` with `model`: its hits, best first.
fn owlet_search_with(index: &Path, model: &str, text: &str) -> Vec<Value> {
    let index = index.to_str().unwrap();
    let out = run("owlet", &["search", "-m", model, "--index", index, text, "-k", "1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// The README's mosquitto ACL for a fleet: the `text` block that starts with its
/// comment, as a user would copy it.
fn readme_acl() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("```text\n# every client (patterns").expect("the ACL in README.md");
    let block = &readme[start + "```text\n".len()..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_acl_lets_a_device_answer_the_fleet_and_nothing_more() {
    let root = tempfile::Builder::new().prefix("owlet-e2e-fleet-acl-").tempdir().unwrap();
    let dir = root.path();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "d1:pw-d1\nasker:pw-asker\n").unwrap();
    let hashed = Command::new("/usr/bin/mosquitto_passwd").arg("-U").arg(&passwd).status();
    assert!(hashed.expect("mosquitto_passwd").success());
    let acl = dir.join("acl");
    std::fs::write(&acl, readme_acl()).unwrap();
    // The test's own observer uses the first listener (anonymous, no ACL); the
    // fleet uses the second, with the README's ACL.
    let port = free_port();
    let broker_dir = dir.join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Broker::start_with(
        &broker_dir,
        "per_listener_settings true",
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    );
    wait_for_port(port, Duration::from_secs(5));
    let seen = Subscriber::start(broker.port, "owlet/#", "e2e-fleet-acl");
    let login = "username = \"d1\"\npassword = \"pw-d1\"\n";
    let d1 = start_device_with(dir, "d1", &["demo-00117.jpg"], port, login);
    d1.wait_log("d1 connected", Duration::from_secs(60), "MQTT: connected");

    // The asker, with its own login, finds d1's frame.
    let asker = dir.join("asker.toml");
    std::fs::write(
        &asker,
        format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"asker\"\npassword = \"pw-asker\"\n"),
    )
    .unwrap();
    let out = Command::new(bin("owlet-bridge"))
        .args(["fleet", "search", "a red car", "--json", "--config"])
        .arg(&asker)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(devices(&found, "answers"), ["d1"], "{found:#}");
    assert_eq!(found["hits"][0]["device"], "d1");

    // With a device's login: writing another device's topics or a fleet request
    // is refused by the broker; an answer under the reply prefix passes. They go
    // in this order on one connection, so once the answer is seen the others
    // would have been too.
    const ROGUE: &str = r#"{"rogue": true}"#;
    let as_d1 = |topic: &str| {
        let st = Command::new("/usr/bin/mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", "d1", "-P", "pw-d1"])
            .args(["-q", "1", "-t", topic, "-m", ROGUE])
            .status()
            .unwrap();
        assert!(st.success(), "mosquitto_pub {topic}");
    };
    as_d1("owlet/d2/door/labels");
    as_d1("owlet/fleet/search");
    as_d1("owlet/fleet/reply/acl-check");
    seen.wait_until("the allowed answer", Duration::from_secs(10), |m| {
        m.iter().any(|m| m.topic == "owlet/fleet/reply/acl-check")
    });
    let rogue: Vec<String> = seen
        .all()
        .iter()
        .filter(|m| m.payload == ROGUE.as_bytes())
        .map(|m| m.topic.clone())
        .collect();
    assert_eq!(rogue, ["owlet/fleet/reply/acl-check"]);
    let topics: Vec<String> = seen.all().iter().map(|m| m.topic.clone()).collect();
    assert!(topics.iter().any(|t| t == "owlet/d1/status"), "{topics:?}");
}
