//! owlet as Frigate's companion (issue 26), against a stand-in for Frigate 0.15.2:
//! Frigate cannot be installed here, so the test publishes `frigate/events`
//! messages shaped as its documentation gives them (docs/docs/integrations/mqtt.md
//! at v0.15.2) on a real mosquitto, and serves the three HTTP endpoints owlet uses
//! as frigate/api/media.py and event.py answer them: the event's snapshot, its
//! description and its sub label (with their limits and error bodies).
//!
//! Events new, update and end; a duplicate; an update after the end; an end whose
//! new never came; a false positive; an object label the camera does not follow;
//! another Frigate camera; a snapshot Frigate no longer has; a write-back Frigate
//! refuses; a message that is not JSON. The bridge analyses each snapshot once,
//! publishes on its own topics, writes back, names what failed and keeps running.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use owlet_e2e::broker::*;
use owlet_e2e::*;
use serde_json::{json, Value};

/// A request the stand-in received: method, path, JSON body.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: Value,
}

/// Frigate's HTTP API, the part owlet calls, as Frigate 0.15.2 answers it.
struct StandIn {
    port: u16,
    /// Event id -> its snapshot (JPEG); an event not here is unknown to Frigate.
    snapshots: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    got: Arc<Mutex<Vec<Request>>>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snapshots: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let got: Arc<Mutex<Vec<Request>>> = Arc::default();
        let (s, g) = (snapshots.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, g) = (s.clone(), g.clone());
                std::thread::spawn(move || serve(conn, &s, &g));
            }
        });
        StandIn { port, snapshots, got }
    }

    fn event(&self, id: &str, scene: &str) {
        let jpeg = std::fs::read(demo_scenes_dir().join(scene)).unwrap();
        self.snapshots.lock().unwrap().insert(id.to_string(), jpeg);
    }

    fn posts(&self, id: &str) -> Vec<Request> {
        let g = self.got.lock().unwrap();
        g.iter()
            .filter(|r| r.method == "POST" && r.path.contains(&format!("/{id}/")))
            .cloned()
            .collect()
    }
}

fn serve(
    conn: std::net::TcpStream,
    snapshots: &Mutex<HashMap<String, Vec<u8>>>,
    got: &Mutex<Vec<Request>>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    got.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = |what: String| {
        (
            404,
            "application/json",
            json!({"success": false, "message": what}).to_string().into_bytes(),
        )
    };
    let (status, ctype, reply): (u16, &str, Vec<u8>) = match (method.as_str(), segments.as_slice())
    {
        ("GET", ["api", "events", id, "snapshot.jpg"]) => {
            match snapshots.lock().unwrap().get(*id) {
                Some(jpeg) => (200, "image/jpeg", jpeg.clone()),
                None => not_found("Event not found".into()),
            }
        }
        ("POST", ["api", "events", id, what @ ("description" | "sub_label")]) => {
            if !snapshots.lock().unwrap().contains_key(*id) || id.starts_with("gone") {
                not_found(format!("Event {id} not found"))
            } else if let Err(why) = check_body(what, &body) {
                // FastAPI's validation error: 422 with the failing field.
                (
                    422,
                    "application/json",
                    json!({"detail": [{"loc": ["body", why], "msg": why}]})
                        .to_string()
                        .into_bytes(),
                )
            } else {
                let message = format!("Event {id} {what} set");
                (
                    200,
                    "application/json",
                    json!({"success": true, "message": message}).to_string().into_bytes(),
                )
            }
        }
        _ => not_found("Not Found".into()),
    };
    let mut out = conn;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&reply);
}

/// frigate/api/defs/request/events_body.py at v0.15.2: EventsDescriptionBody and
/// EventsSubLabelBody.
fn check_body(what: &str, body: &Value) -> Result<(), &'static str> {
    match what {
        "description" => match body.get("description") {
            Some(Value::String(_) | Value::Null) => Ok(()),
            _ => Err("description"),
        },
        _ => {
            let label = body.get("subLabel").and_then(Value::as_str).ok_or("subLabel")?;
            if label.chars().count() > 100 {
                return Err("subLabel");
            }
            match body.get("subLabelScore") {
                None | Some(Value::Null) => Ok(()),
                Some(v) => match v.as_f64() {
                    Some(s) if s > 0.0 && s <= 1.0 => Ok(()),
                    _ => Err("subLabelScore"),
                },
            }
        }
    }
}

/// A `frigate/events` message as Frigate 0.15.2 sends it (the fields owlet reads
/// and a few it does not).
fn event(kind: &str, id: &str, camera: &str, label: &str, snapshot_time: f64) -> Vec<u8> {
    let object = |t: f64| {
        json!({
            "id": id, "camera": camera, "frame_time": t, "label": label, "sub_label": null,
            "snapshot": {"frame_time": t, "box": [415, 489, 528, 700], "area": 12728,
                         "region": [260, 446, 660, 846], "score": 0.77, "attributes": []},
            "top_score": 0.95, "false_positive": false, "start_time": 1765000000.0,
            "end_time": if kind == "end" { json!(t + 1.0) } else { Value::Null },
            "score": 0.87, "current_zones": ["driveway"], "entered_zones": ["driveway"],
            "has_snapshot": true, "has_clip": false, "active": true, "stationary": false,
        })
    };
    json!({"type": kind, "before": object(snapshot_time - 0.5), "after": object(snapshot_time)})
        .to_string()
        .into_bytes()
}

#[test]
fn frigate_events_are_analysed_once_per_snapshot_written_back_and_failures_named() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-frigate-").tempdir().unwrap();
    let broker = Broker::start(dir.path(), "");
    let frigate = StandIn::start();
    let url = format!("http://127.0.0.1:{}", frigate.port);
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"garage\"\nstate_dir = \"{}\"\n\
             [clip]\nmodel = \"{}\"\nlabels = [\"car\", \"person\", \"dog\", \"bird\", \"bicycle\", \"package\"]\n\
             [blip2]\nmodel = \"{}\"\n[index]\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
             [[cameras]]\nname = \"drive\"\ncaptions = true\n\
             source = {{ kind = \"frigate\", url = \"{url}\", camera = \"front\", write_back = \"description\" }}\n\
             [[cameras]]\nname = \"yard\"\n\
             source = {{ kind = \"frigate\", url = \"{url}/\", camera = \"back\", labels = [\"person\"], write_back = \"sub_label\" }}\n",
            dir.path().join("state").display(),
            demo_clip_bundle(),
            demo_blip2_bundle(),
            broker.port
        ),
    )
    .unwrap();
    let out = run("owlet-bridge", &["--config", config.to_str().unwrap(), "--check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = Subscriber::start(broker.port, "owlet/garage/#", "e2e-frigate");
    let mut d = Daemon::start(&config);
    let end = Instant::now() + Duration::from_secs(60);
    while d.log().matches("following Frigate's events").count() < 2 {
        assert!(Instant::now() < end, "the sources never subscribed:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let send = |payload: Vec<u8>| publish(broker.port, "frigate/events", &payload, false);
    for (id, scene) in
        [("1765000001.1-car", "demo-00117.jpg"), ("1765000002.2-ppl", "demo-00013.jpg")]
    {
        frigate.event(id, scene);
    }
    frigate.event("1765000005.5-late", "demo-00117.jpg");
    frigate.event("gone-1765000006.6", "demo-00117.jpg");
    let car = "1765000001.1-car";
    send(event("new", car, "front", "car", 10.0));
    send(event("new", car, "front", "car", 10.0)); // delivered twice
    send(event("update", car, "front", "car", 11.0)); // a better snapshot
    send(event("end", car, "front", "car", 11.0)); // nothing newer
    send(event("update", car, "front", "car", 12.0)); // out of order: after the end
    send(event("new", "1765000002.2-ppl", "back", "person", 20.0)); // the yard's
    send(event("new", "1765000003.3-dog", "back", "dog", 21.0)); // not a label the yard follows
    send(event("new", "1765000004.4-none", "front", "car", 30.0)); // Frigate has no snapshot
    send(b"{\"type\": \"new\", \"after\": ".to_vec()); // not JSON
    let mut fp =
        serde_json::from_slice::<Value>(&event("new", "1765000007.7-fp", "front", "car", 40.0))
            .unwrap();
    fp["after"]["false_positive"] = json!(true);
    send(fp.to_string().into_bytes());
    send(event("new", "gone-1765000006.6", "front", "car", 50.0)); // the write-back is refused
    send(event("end", "1765000005.5-late", "front", "car", 60.0)); // its new never came

    let results = |camera: &str, leaf: &str| -> Vec<Value> {
        seen.on(&format!("owlet/garage/{camera}/{leaf}")).iter().map(|m| m.json()).collect()
    };
    let end = Instant::now() + Duration::from_secs(120);
    while frigate.posts("1765000005.5-late").is_empty() {
        assert!(Instant::now() < end, "no write-back for the last event:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1)); // room for anything that should not come

    // Each snapshot once: the car twice (new, then a newer one), the late end once.
    let drive: Vec<String> = results("drive", "labels")
        .iter()
        .map(|v| v["frame"].as_str().unwrap().to_string())
        .collect();
    let car_frame = format!("frigate event {car}");
    assert_eq!(drive.iter().filter(|f| **f == car_frame).count(), 2, "{drive:?}");
    assert_eq!(drive.len(), 4, "car twice, the refused write-back's, the late end: {drive:?}");
    let first = &results("drive", "labels")[0];
    assert_eq!(first["top_label"], "car", "{first}");
    assert_eq!(first["trigger"], "frigate");
    assert_eq!(first["frigate_event"], car);
    let yard = results("yard", "labels");
    assert_eq!(yard.len(), 1, "only the person on the back camera: {yard:?}");

    // Written back: the car's caption as its description (twice), the yard's top
    // label as the sub label, as Frigate's bodies want them.
    let captions = results("drive", "caption");
    let posts = frigate.posts(car);
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[0].path.ends_with(&format!("/api/events/{car}/description")));
    assert_eq!(posts[0].body["description"], captions[0]["caption"]);
    assert!(captions[0]["caption"].as_str().unwrap().contains("car"), "{}", captions[0]);
    let sub = frigate.posts("1765000002.2-ppl");
    assert_eq!(sub.len(), 1, "{sub:?}");
    assert!(sub[0].path.ends_with("/sub_label"));
    assert_eq!(sub[0].body["subLabel"], yard[0]["top_label"], "{sub:?}");

    // What failed is named on the camera's error topic; nothing was analysed for it.
    let errors: Vec<String> = results("drive", "error")
        .iter()
        .map(|v| v["error"].as_str().unwrap().to_string())
        .collect();
    let named = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(named("1765000004.4-none") && named("404"), "{errors:?}");
    assert!(named("gone-1765000006.6") && named("description"), "{errors:?}");
    assert!(named("not a Frigate event"), "{errors:?}");
    assert!(
        !drive.iter().any(|f| f.contains("1765000004.4-none") || f.contains("fp")),
        "{drive:?}"
    );
    assert!(d.is_running(), "{}", d.log());
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
}
