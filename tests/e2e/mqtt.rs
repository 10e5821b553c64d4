//! owlet-bridge against a real mosquitto: results, commands, Home Assistant
//! discovery, a broker restart in the middle of a stream, TLS with credentials.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_e2e::broker::*;
use owlet_e2e::*;
use serde_json::Value;

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("bridge.toml");
    let text = format!("state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"cat\", \"rocket\", \"person\"]\n{body}", dir.join("state").display(), clip_bundle());
    std::fs::write(&p, text).unwrap();
    p
}

/// Strictly increasing once consecutive duplicates (QoS 1 re-sends) are dropped.
fn seqs(msgs: &[Received]) -> Vec<u64> {
    let mut v: Vec<u64> = msgs.iter().map(|m| m.json()["seq"].as_u64().expect("seq")).collect();
    v.dedup();
    v
}

#[test]
fn stills_reach_an_outside_subscriber_with_status_captions_and_valid_discovery() {
    let dir = tmp("owlet-e2e-mqtt-");
    let broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "#", "e2e-stills");
    // The trained demo bundles with their default labels, on the demo frames.
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\n[blip2]\nmodel = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
             [[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\nsnapshot = true\ntriggers = {{ motion = {{}} }}\n",
            dir.path().join("state").display(),
            demo_clip_bundle(),
            demo_blip2_bundle(),
            broker.port,
            demo_scenes_dir().display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg);
    let status = d.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", d.log());
    let frames = demo_scenes().len();
    let all = sub.wait_until("offline status", Duration::from_secs(10), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/status" && m.payload == b"offline")
    });

    let status: Vec<String> =
        all.iter().filter(|m| m.topic == "owlet/owlet/status").map(Received::text).collect();
    assert_eq!(status, ["online", "offline"]);

    let labels = sub.on("owlet/owlet/door/labels");
    assert_eq!(labels.len(), frames);
    for m in &labels {
        let j = m.json();
        for key in [
            "camera",
            "frame",
            "frame_time_ms",
            "trigger",
            "model",
            "top_label",
            "top_score",
            "labels",
            "latency_ms",
            "seq",
        ] {
            assert!(j.get(key).is_some(), "labels payload lacks {key}: {j}");
        }
        assert_eq!(j["trigger"], "still");
        assert_eq!(j["top_label"], j["labels"][0]["label"]);
        assert_eq!(j["model"], "clip-demo");
    }
    let captions = sub.on("owlet/owlet/door/caption");
    assert_eq!(captions.len(), frames);
    for c in &captions {
        let c = c.json();
        assert_eq!(c["model"], "blip2-demo");
        assert_eq!(c["caption"], demo_scene_of(c["frame"].as_str().unwrap()).caption.as_str());
    }
    // What an outside client sees for the frame with the red car.
    let red = captions
        .iter()
        .map(Received::json)
        .find(|c| c["caption"] == "a red car")
        .expect("the red car captioned");
    let l = labels.iter().map(Received::json).find(|l| l["frame"] == red["frame"]).unwrap();
    assert_eq!(l["top_label"], "car");
    // Every queued message, whatever its topic, carries one increasing sequence.
    let queued: Vec<Received> = all
        .iter()
        .filter(|m| m.payload.first() == Some(&b'{') && m.json().get("seq").is_some())
        .cloned()
        .collect();
    let s = seqs(&queued);
    assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");

    // Snapshots: the JPEG frames, byte for byte.
    let snaps = sub.on("owlet/owlet/door/snapshot");
    let jpegs: Vec<Vec<u8>> =
        demo_scenes().iter().map(|s| std::fs::read(&s.file).unwrap()).collect();
    assert_eq!(snaps.len(), jpegs.len());
    assert!(snaps.iter().all(|s| jpegs.contains(&s.payload)));

    // Discovery: retained, valid by Home Assistant's rules, and every topic it
    // names is one the bridge really uses.
    let disc: Vec<&Received> =
        all.iter().filter(|m| m.topic.starts_with("homeassistant/")).collect();
    assert_eq!(disc.len(), 1, "one device config per camera");
    let published: HashSet<&str> = all.iter().map(|m| m.topic.as_str()).collect();
    check_ha_device_discovery(&disc[0].topic, &disc[0].json(), &published);
    let platforms: HashSet<String> = disc[0].json()["components"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["platform"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> =
        ["sensor", "event", "binary_sensor", "image", "button"].map(String::from).into();
    assert_eq!(platforms, want);
    // Retained: a client arriving later still finds it.
    let late = Subscriber::start(broker.port, "homeassistant/#", "e2e-late");
    let got = late.wait_until("retained discovery", Duration::from_secs(5), |m| !m.is_empty());
    assert!(got[0].retained);
    // Labels, captions, label events, the label set: each as the contract's types.
    assert_contract(&sub.all());
}

/// Home Assistant's rules for device-based discovery (MQTT integration, 2024.11+):
/// topic `<prefix>/device/<node_id>/config`; a device with identifiers or
/// connections; an origin with a name; components each with a known platform, a
/// unique_id (required here), the options that platform requires and none it does
/// not know; topics one can publish or subscribe to.
fn check_ha_device_discovery(topic: &str, cfg: &Value, published: &HashSet<&str>) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert!(parts.len() == 4 && parts[1] == "device" && parts[3] == "config", "{topic}");
    assert!(
        parts[2].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "node id {}",
        parts[2]
    );
    let dev = &cfg["device"];
    assert!(
        dev["identifiers"].as_array().is_some_and(|a| !a.is_empty())
            || dev["connections"].is_array(),
        "device needs identifiers"
    );
    assert!(cfg["origin"]["name"].is_string(), "origin needs a name");
    // Home Assistant puts it before each entity's name: "door Caption", not
    // "owlet owlet door Caption" (the default device's name is not repeated).
    let camera = parts[2].rsplit('_').next().unwrap();
    assert_eq!(dev["name"], camera, "{dev}");
    let avail = cfg["availability_topic"].as_str().unwrap();
    assert!(published.contains(avail), "availability topic {avail} is never published");
    let common: HashSet<&str> = [
        "platform",
        "unique_id",
        "name",
        "icon",
        "object_id",
        "enabled_by_default",
        "entity_category",
        "qos",
        "availability_topic",
    ]
    .into();
    let per: &[(&str, &[&str], &[&str])] = &[
        (
            "sensor",
            &["state_topic"],
            &[
                "value_template",
                "json_attributes_topic",
                "json_attributes_template",
                "device_class",
                "unit_of_measurement",
                "state_class",
                "expire_after",
                "force_update",
            ],
        ),
        (
            "binary_sensor",
            &["state_topic"],
            &[
                "payload_on",
                "payload_off",
                "device_class",
                "value_template",
                "off_delay",
                "expire_after",
            ],
        ),
        (
            "event",
            &["state_topic", "event_types"],
            &["device_class", "value_template", "json_attributes_topic"],
        ),
        (
            "image",
            &[],
            &["image_topic", "url_topic", "content_type", "image_encoding", "url_template"],
        ),
        ("button", &["command_topic"], &["payload_press", "device_class", "retain"]),
    ];
    let mut ids = HashSet::new();
    let cmps = cfg["components"].as_object().expect("components");
    assert!(!cmps.is_empty());
    for (key, c) in cmps {
        let platform = c["platform"].as_str().unwrap_or_else(|| panic!("{key}: no platform"));
        let (_, required, optional) = per
            .iter()
            .find(|p| p.0 == platform)
            .unwrap_or_else(|| panic!("{key}: unknown platform {platform}"));
        let uid = c["unique_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: unique_id is required in device discovery"));
        assert!(ids.insert(uid.to_string()), "unique_id {uid} twice");
        for r in *required {
            assert!(c.get(*r).is_some(), "{platform} {key} needs {r}");
        }
        for k in c.as_object().unwrap().keys() {
            let known = common.contains(k.as_str())
                || required.contains(&k.as_str())
                || optional.contains(&k.as_str());
            assert!(known, "{platform} {key}: option {k} is not one HA knows");
        }
        if platform == "image" {
            assert!(
                c.get("image_topic").is_some() ^ c.get("url_topic").is_some(),
                "image needs exactly one of image_topic, url_topic"
            );
        }
        if platform == "event" {
            assert!(c["event_types"].as_array().is_some_and(|a| !a.is_empty()));
        }
        for (k, v) in c.as_object().unwrap() {
            if k.ends_with("_topic") {
                let t = v.as_str().unwrap();
                assert!(!t.contains('+') && !t.contains('#') && !t.is_empty(), "{k} {t}");
                if k != "command_topic" {
                    assert!(published.contains(t), "{platform} {key}: {k} {t} is never published");
                }
            }
        }
        if platform == "sensor" && c["state_topic"].as_str().unwrap().ends_with("/caption") {
            assert!(
                c["value_template"].as_str().unwrap().contains("[:255]"),
                "HA refuses sensor states over 255 characters"
            );
        }
    }
}

#[test]
fn commands_capture_ask_and_set_labels_and_hostile_ones_are_refused_without_a_crash() {
    let dir = tmp("owlet-e2e-cmd-");
    let broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "owlet/#", "e2e-cmd");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[blip2]\nmodel = \"{}\"\nmax_new_tokens = 4\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nmax_command_bytes = 4096\n\
             [[cameras]]\nname = \"gate\"\ncaptions = false\nsource = {{ kind = \"process\", command = {} }}\n",
            blip2_bundle(),
            broker.port,
            toml_list(&ffmpeg_mjpeg("testsrc=size=160x120", 10, None))
        ),
    );
    let mut d = Daemon::start(&cfg);
    sub.wait_until("online", Duration::from_secs(60), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/status" && m.payload == b"online")
    });
    // No trigger but commands: nothing is analysed until asked.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sub.on("owlet/owlet/gate/labels").is_empty());

    publish(broker.port, "owlet/owlet/gate/capture", br#"{"id":"c-1"}"#, false);
    let l = sub.wait_until("a labels result", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/gate/labels")
    });
    let l = l.iter().find(|m| m.topic == "owlet/owlet/gate/labels").unwrap().json();
    assert_eq!(l["trigger"], "command");
    assert_eq!(l["request_ids"], serde_json::json!(["c-1"]));
    assert!(l["frame"].as_str().unwrap().contains("ffmpeg#"), "{l}");

    publish(
        broker.port,
        "owlet/owlet/gate/ask",
        br#"{"question":"what is in the picture?","id":"q-7","reply_to":"client/answers"}"#,
        false,
    );
    let answers = Subscriber::start(broker.port, "client/answers", "e2e-answers");
    publish(
        broker.port,
        "owlet/owlet/gate/ask",
        br#"{"question":"what colour is it?","id":"q-8","reply_to":"client/answers"}"#,
        false,
    );
    let got = answers.wait_until("the answer to q-8", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.json()["id"] == "q-8")
    });
    let a = got.iter().map(Received::json).find(|a| a["id"] == "q-8").unwrap();
    assert_eq!(a["id"], "q-8");
    assert_eq!(a["question"], "what colour is it?");
    assert!(a["answer"].is_string() && a["model"] == "blip2-test", "{a}");

    // A retained label set: applied, confirmed, saved for the next start.
    publish(
        broker.port,
        "owlet/owlet/gate/labels/set",
        br#"{"labels":["test pattern","kitten"]}"#,
        true,
    );
    sub.wait_until("the new label state", Duration::from_secs(30), |m| {
        m.iter().any(|m| {
            m.topic == "owlet/owlet/gate/labels/state"
                && m.json()["labels"] == serde_json::json!(["test pattern", "kitten"])
        })
    });
    let saved: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/labels/gate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved, ["test pattern", "kitten"]);
    publish(broker.port, "owlet/owlet/gate/capture", b"PRESS", false);
    let all = sub.wait_until("labels with the new set", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == "owlet/owlet/gate/labels").count() >= 2
    });
    let last = all.iter().rfind(|m| m.topic == "owlet/owlet/gate/labels").unwrap().json();
    let names: HashSet<&str> =
        last["labels"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["test pattern", "kitten"].into());

    // Home Assistant restarted: it says `online` and the bridge sends discovery again.
    let ha = Subscriber::start(broker.port, "homeassistant/device/#", "e2e-ha");
    publish(broker.port, "homeassistant/status", b"online", false);
    let d2 = ha.wait_until("discovery sent again", Duration::from_secs(10), |m| {
        m.iter().any(|m| !m.retained)
    });
    assert!(d2
        .iter()
        .any(|m| !m.retained && m.topic == "homeassistant/device/owlet_owlet_gate/config"));

    // Hostile commands: each answered on the error topic, the daemon goes on.
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("owlet/owlet/gate/ask", b"\xff\xfe\x00garbage".to_vec(), "UTF-8"),
        ("owlet/owlet/gate/ask", vec![b'{'; 100_000], "byte limit"),
        ("owlet/owlet/gate/ask", br#"{"question": 42}"#.to_vec(), "ask wants"),
        ("owlet/owlet/gate/labels/set", br#"{"labels": []}"#.to_vec(), "labels must"),
        ("owlet/owlet/nosuchcam/capture", b"PRESS".to_vec(), "no camera"),
        ("owlet/owlet/gate/capture", b"rm -rf /".to_vec(), "capture wants"),
    ];
    for (t, p, _) in &hostile {
        publish(broker.port, t, p, false);
    }
    let all = sub.wait_until("every refusal", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == "owlet/owlet/error").count() >= hostile.len()
    });
    let errors: Vec<Value> =
        all.iter().filter(|m| m.topic == "owlet/owlet/error").map(Received::json).collect();
    for (t, _, needle) in &hostile {
        assert!(
            errors
                .iter()
                .any(|e| e["topic"] == *t && e["error"].as_str().unwrap().contains(needle)),
            "no refusal naming {needle:?} for {t}: {errors:?}"
        );
    }
    assert!(d.is_running(), "the daemon died: {}", d.log());
    // Still answering after all that.
    publish(broker.port, "owlet/owlet/gate/capture", br#"{"id":"after"}"#, false);
    sub.wait_until("a capture after the hostile input", Duration::from_secs(30), |m| {
        m.iter().any(|m| {
            m.topic == "owlet/owlet/gate/labels"
                && m.json()["request_ids"] == serde_json::json!(["after"])
        })
    });
    let status = d.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("bridge.log")).unwrap_or_default()
    );
    sub.wait_until("offline", Duration::from_secs(10), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/status" && m.payload == b"offline")
    });
    // Answers, refusals on the device's error topic, results with request ids.
    assert_contract(&sub.all());
    assert_contract(
        &answers
            .all()
            .into_iter()
            .map(|m| Received { topic: "owlet/owlet/gate/answer".into(), ..m })
            .collect::<Vec<_>>(),
    );
}

/// Issue 26: the capture button of a camera that reads files: before any file it
/// says why there is nothing to capture; after one, the newest file is looked at
/// again, answering the request.
#[test]
fn capture_on_a_folder_camera_looks_at_its_newest_file_or_says_why_not() {
    let dir = tmp("owlet-e2e-folder-capture-");
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "owlet/#", "e2e-folder-capture");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
             [[cameras]]\nname = \"shelf\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = true }}\n",
            broker.port,
            frames.display()
        ),
    );
    let mut d = Daemon::start(&cfg);
    sub.wait_until("online", Duration::from_secs(60), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/status" && m.payload == b"online")
    });
    publish(broker.port, "owlet/owlet/shelf/capture", br#"{"id":"early"}"#, false);
    let e = sub.wait_until("the refusal", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/error")
    });
    let e = e.iter().find(|m| m.topic == "owlet/owlet/error").unwrap().json();
    assert_eq!(e["id"], "early", "{e}");
    assert!(e["error"].as_str().unwrap().contains("none has arrived yet"), "{e}");
    d.wait_watching("shelf");

    let frame = std::fs::read_dir(repo().join("models/demo-frames")).unwrap().next().unwrap();
    let frame = frame.unwrap().path();
    std::fs::copy(&frame, frames.join(frame.file_name().unwrap())).unwrap();
    sub.wait_until("the file's labels", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/shelf/labels")
    });
    publish(broker.port, "owlet/owlet/shelf/capture", br#"{"id":"again"}"#, false);
    let all = sub.wait_until("the captured labels", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == "owlet/owlet/shelf/labels").count() == 2
    });
    let labels: Vec<Value> =
        all.iter().filter(|m| m.topic == "owlet/owlet/shelf/labels").map(|m| m.json()).collect();
    assert_eq!(labels[1]["trigger"], "command");
    assert_eq!(labels[1]["request_ids"], serde_json::json!(["again"]));
    assert_eq!(labels[1]["frame"], labels[0]["frame"], "the same file, looked at again");
    assert_eq!(labels[1]["labels"], labels[0]["labels"]);
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
    assert_contract(&sub.all());
}

/// Issue 26: `owlet-bridge --demo --mqtt HOST:PORT` puts the demo camera on the
/// user's broker, Home Assistant discovery included, with no config written;
/// `--mqtt` without `--demo` is refused.
#[test]
fn the_demo_publishes_to_a_broker_named_on_the_command_line() {
    let dir = tmp("owlet-e2e-demo-mqtt-");
    let broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "#", "e2e-demo-mqtt");
    // Run from a folder of its own: the demo keeps its outbox in ./owlet-state.
    let out = std::process::Command::new(bin("owlet-bridge"))
        .args(["--demo", "--mqtt", &format!("127.0.0.1:{}", broker.port)])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(dir.path().join("owlet-state/outbox").is_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "published, not printed");
    let frames = std::fs::read_dir(repo().join("models/scenes/demo"))
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "jpg"))
        .count();
    let all = sub.wait_until("every caption", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == "owlet/owlet/demo/caption").count() == frames
    });
    let discovery = all
        .iter()
        .find(|m| m.topic == "homeassistant/device/owlet_owlet_demo/config")
        .expect("discovery for the demo camera");
    assert_eq!(discovery.json()["device"]["name"], "demo");
    let refused = run("owlet-bridge", &["--mqtt", "127.0.0.1:1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--demo"));
}

/// Issue 26: what Home Assistant reads after either side restarts.
/// - A subscriber that arrives late (Home Assistant after its restart) gets each
///   camera's last labels and caption at once (retained), and its motion state;
///   a restarted camera says OFF, clearing an ON left behind.
/// - Each entity asks for QoS 1 itself (Home Assistant ignores a device-level one).
/// - A camera removed from the config: its retained discovery config is cleared
///   when the bridge next connects; another bridge's configs are left alone.
#[test]
fn states_are_retained_for_late_subscribers_and_a_removed_cameras_discovery_is_cleared() {
    let dir = tmp("owlet-e2e-ha-state-");
    let frames = repo().join("models/demo-frames").display().to_string();
    let broker = Broker::start(dir.path(), "");
    let mqtt = format!(
        "[blip2]\nmodel = \"{}\"\nmax_new_tokens = 4\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
        blip2_bundle(),
        broker.port
    );
    let door = format!(
        "[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{frames}\" }}\n\
         triggers = {{ motion = {{}} }}\n"
    );
    let yard = format!(
        "[[cameras]]\nname = \"yard\"\nsource = {{ kind = \"folder\", path = \"{frames}\" }}\n"
    );
    // Another bridge's camera, which must survive this bridge's clean-up.
    publish(
        broker.port,
        "homeassistant/device/owlet_attic_bat/config",
        br#"{"availability_topic":"owlet/attic/status","components":{}}"#,
        true,
    );
    let cfg = write_config(dir.path(), &format!("{mqtt}{door}{yard}"));
    let mut d = Daemon::start(&cfg);
    assert!(d.wait(Duration::from_secs(120)).success(), "{}", d.log());

    let late = Subscriber::start(broker.port, "#", "e2e-ha-late");
    let got = late.wait_until("the retained states", Duration::from_secs(10), |m| {
        ["door/labels", "door/caption", "door/motion", "yard/labels", "yard/caption"]
            .iter()
            .all(|leaf| m.iter().any(|m| m.topic == format!("owlet/owlet/{leaf}") && m.retained))
    });
    // Eight different files in a row look like motion to the detector, and the
    // run ends there: ON stays retained, as after a bridge killed during motion.
    let motion = got.iter().find(|m| m.topic == "owlet/owlet/door/motion").unwrap();
    assert_eq!(motion.payload, b"ON");
    let last_file = |cam: &str| {
        let l = got.iter().find(|m| m.topic == format!("owlet/owlet/{cam}/labels")).unwrap();
        l.json()["frame"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
    };
    let mut files: Vec<String> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(last_file("door"), *files.last().unwrap(), "the newest state is kept");
    for cam in ["door", "yard"] {
        let c = got
            .iter()
            .find(|m| m.topic == format!("homeassistant/device/owlet_owlet_{cam}/config"))
            .unwrap_or_else(|| panic!("{cam}'s discovery"))
            .json();
        for (key, comp) in c["components"].as_object().unwrap() {
            assert_eq!(comp["qos"], 1, "{key}: {comp}");
        }
    }

    // The yard camera leaves the config (the door now watches an empty folder, so
    // that the bridge runs until it is stopped).
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let door = format!(
        "[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = true }}\n\
         triggers = {{ motion = {{}} }}\n",
        empty.display()
    );
    let cfg = write_config(dir.path(), &format!("{mqtt}{door}"));
    let watch = Subscriber::start(broker.port, "#", "e2e-ha-watch");
    let mut d = Daemon::start(&cfg);
    watch.wait_until("the yard's config cleared", Duration::from_secs(60), |m| {
        m.iter().any(|m| {
            m.topic == "homeassistant/device/owlet_owlet_yard/config" && m.payload.is_empty()
        })
    });
    // The restarted camera has seen no motion: OFF replaces the ON left behind.
    watch.wait_until("motion OFF", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic == "owlet/owlet/door/motion" && m.payload == b"OFF")
    });
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
    assert!(d.log().contains("no camera of this bridge any more"), "{}", d.log());
    let after = Subscriber::start(broker.port, "homeassistant/#", "e2e-ha-after");
    let left = after.wait_until("the retained configs", Duration::from_secs(10), |m| {
        m.iter().any(|m| m.topic.ends_with("owlet_owlet_door/config"))
            && m.iter().any(|m| m.topic.ends_with("owlet_attic_bat/config"))
    });
    assert!(!left.iter().any(|m| m.topic.contains("owlet_owlet_yard")), "the yard is gone");
}

/// Issue 26: a prompt sensor on the demo frames. A red car turns "car in the
/// drive" on, a blue bird off; the state is retained, survives a restart of the
/// bridge (kept in state_dir), and has its Home Assistant binary sensor. Then the
/// two frames alternate at 2 frames/s: a plain threshold on the same scores
/// flips at every frame, the sensor (2 s debounce) not once.
#[test]
fn a_prompt_sensor_follows_the_scene_survives_a_restart_and_does_not_flicker() {
    let dir = tmp("owlet-e2e-prompt-");
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "#", "e2e-prompt");
    let config = |debounce: f64| {
        let p = dir.path().join("bridge.toml");
        std::fs::write(
            &p,
            format!(
                "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"car\", \"bird\"]\n\
                 [mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
                 [[cameras]]\nname = \"drive\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = true, poll_ms = 50 }}\n\
                 [[cameras.prompts]]\nname = \"Car in the drive\"\npositive = [\"a photo of a car\"]\n\
                 negative = [\"a photo of a bird\", \"a photo of a person\"]\ndebounce_s = {debounce}\n",
                dir.path().join("state").display(),
                demo_clip_bundle(),
                broker.port,
                frames.display()
            ),
        )
        .unwrap();
        p
    };
    let topic = "owlet/owlet/drive/prompt/car_in_the_drive";
    let states = |m: &[Received]| -> Vec<Vec<u8>> {
        m.iter().filter(|m| m.topic == topic).map(|m| m.payload.clone()).collect()
    };
    let scene = |f: &str| repo().join("models/scenes/demo").join(f);
    let mut d = Daemon::start(&config(0.0));
    let disc = sub.wait_until("discovery", Duration::from_secs(60), |m| {
        m.iter().any(|m| m.topic == "homeassistant/device/owlet_owlet_drive/config")
    });
    let disc = disc.iter().find(|m| m.topic.ends_with("owlet_owlet_drive/config")).unwrap().json();
    let sensor = &disc["components"]["owlet_owlet_drive_prompt_car_in_the_drive"];
    assert_eq!(sensor["platform"], "binary_sensor", "{disc}");
    assert_eq!(sensor["state_topic"], topic);
    d.wait_watching("drive");
    std::fs::copy(scene("demo-00117.jpg"), frames.join("a-car.jpg")).unwrap();
    sub.wait_until("ON", Duration::from_secs(30), |m| states(m) == [b"ON".to_vec()]);
    std::fs::copy(scene("demo-00001.jpg"), frames.join("b-bird.jpg")).unwrap();
    sub.wait_until("OFF", Duration::from_secs(30), |m| {
        states(m).last().map(|s| &s[..]) == Some(b"OFF")
    });
    let attrs: Vec<f64> = sub
        .on(&format!("{topic}/attributes"))
        .iter()
        .map(|m| m.json()["score"].as_f64().unwrap())
        .collect();
    assert!(attrs[0] >= 0.6 && attrs[1] <= 0.4, "scores {attrs:?}");
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
    let saved = std::fs::read_to_string(dir.path().join("state/prompts/drive.json")).unwrap();
    assert_eq!(saved, r#"{"car_in_the_drive":false}"#);

    // Restarted (with a 2 s debounce): the saved state is said again before any
    // frame, then car and bird alternate every 0.5 s for 12 s.
    let before = sub.on(topic).len();
    let mut d = Daemon::start(&config(2.0));
    sub.wait_until("the state again", Duration::from_secs(60), |m| states(m).len() == before + 1);
    assert_eq!(states(&sub.all()).last().unwrap(), b"OFF");
    d.wait_watching("drive");
    let scored_before = sub.on(&format!("{topic}/attributes")).len();
    for i in 0..24 {
        let (f, name) =
            if i % 2 == 0 { ("demo-00117.jpg", "car") } else { ("demo-00001.jpg", "bird") };
        std::fs::copy(scene(f), frames.join(format!("c{i:02}-{name}.jpg"))).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let all = sub.wait_until("24 scores", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == format!("{topic}/attributes")).count() >= scored_before + 24
    });
    let scores: Vec<f64> = all
        .iter()
        .filter(|m| m.topic == format!("{topic}/attributes"))
        .skip(scored_before)
        .map(|m| m.json()["score"].as_f64().unwrap())
        .collect();
    let plain_flips = scores.windows(2).filter(|w| (w[0] >= 0.5) != (w[1] >= 0.5)).count();
    let sensor_flips = states(&all).len() - (before + 1);
    eprintln!("12 s at 2 frames/s: a plain 0.5 threshold flipped {plain_flips} times, the sensor {sensor_flips}");
    assert!(plain_flips >= 20, "{plain_flips}: {scores:?}");
    assert_eq!(sensor_flips, 0);
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
    // The prompt sensors' attributes among the rest.
    assert!(all.iter().any(|m| m.topic.ends_with("/attributes")));
    assert_contract(&all);
}

#[test]
fn a_broker_restart_mid_stream_loses_no_result_and_keeps_the_order() {
    let dir = tmp("owlet-e2e-restart-");
    let mut broker = Broker::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "owlet/owlet/yard/labels", "e2e-restart");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\n\
             [[cameras]]\nname = \"yard\"\nsource = {{ kind = \"process\", command = {} }}\ntriggers = {{ interval_s = 0.1 }}\n",
            broker.port,
            toml_list(&ffmpeg_mjpeg("testsrc=size=160x120", 15, None))
        ),
    );
    let mut d = Daemon::start(&cfg);
    sub.wait_until("10 results", Duration::from_secs(60), |m| m.len() >= 10);
    broker.stop();
    // The bridge goes on analysing; results queue on disk.
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.is_running());
    broker.restart();
    let before_restart = seqs(&sub.all()).last().copied().unwrap();
    sub.wait_until("results from after the outage", Duration::from_secs(60), |m| {
        seqs(m).last().is_some_and(|&s| s > before_restart + 40)
    });
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));
    let s = seqs(&sub.all());
    let first = s[0];
    let expect: Vec<u64> = (first..first + s.len() as u64).collect();
    assert_eq!(s, expect, "a gap or a reordering in the sequence numbers");
    let log = d.log();
    assert!(log.contains("unreachable") && log.contains("reconnected"), "{log}");
}

#[test]
fn tls_with_a_client_certificate_and_a_password_works_and_the_password_is_never_logged() {
    let dir = tmp("owlet-e2e-tls-");
    let p = dir.path();
    // A CA, a broker certificate for 127.0.0.1 and a client certificate.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "owlet test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "broker");
    let (client_pem, client_key) = leaf(vec![], "owlet-bridge");
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server_pem),
        ("server.key", server_key),
        ("client.pem", client_pem),
        ("client.key", client_key),
    ] {
        std::fs::write(p.join(name), text).unwrap();
    }
    let secret = "s3cret-Pa55word-that-must-not-leak";
    let passwd = p.join("passwd");
    std::fs::write(&passwd, format!("owlet:{secret}\n")).unwrap();
    let st = std::process::Command::new("/usr/bin/mosquitto_passwd")
        .arg("-U")
        .arg(&passwd)
        .status()
        .expect("mosquitto_passwd");
    assert!(st.success());
    let tls_port = free_port();
    let broker = Broker::start_with(
        p,
        "per_listener_settings true",
        &format!(
            "listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
             cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            passwd.display(),
            p.join("ca.pem").display(),
            p.join("server.pem").display(),
            p.join("server.key").display()
        ),
    );
    wait_for_port(tls_port, Duration::from_secs(5));
    let sub = Subscriber::start(broker.port, "owlet/#", "e2e-tls");
    let body = |password: &str, watch: bool| {
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {tls_port}\nusername = \"owlet\"\npassword = \"{password}\"\n\
             tls = {{ ca = \"ca.pem\", cert = \"client.pem\", key = \"client.key\" }}\n\
             [[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = {watch} }}\n",
            repo().join("models/demo-frames").display()
        )
    };
    let cfg = write_config(p, &body(secret, false));
    let mut d = Daemon::start(&cfg);
    assert!(d.wait(Duration::from_secs(60)).success(), "{}", d.log());
    let frames = std::fs::read_dir(repo().join("models/demo-frames")).unwrap().count();
    sub.wait_until("every frame's labels over TLS", Duration::from_secs(10), |m| {
        m.iter().filter(|m| m.topic.ends_with("/labels")).count() == frames
    });
    assert!(!d.log().contains(secret));

    // A wrong password: refused by the broker, reported, and still not logged.
    let wrong = "wr0ng-Pa55word-also-secret";
    let cfg = write_config(p, &body(wrong, true));
    let mut d = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.is_running(), "a refused connection is retried, not fatal");
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    let log = d.log();
    assert!(
        log.contains("unreachable") || log.contains("refused") || log.contains("NotAuthorized"),
        "{log}"
    );
    assert!(!log.contains(wrong) && !log.contains(secret), "{log}");
    // What could not be sent stays queued on disk for the next start.
    assert!(log.contains("queued on disk"), "{log}");
}

#[test]
fn frames_are_indexed_and_searchable_over_mqtt_across_restarts() {
    let dir = tmp("owlet-e2e-search-");
    let broker = Broker::start(dir.path(), "");
    // The bridge's history: its own file under the state folder.
    let ix = dir.path().join("state/history.db");
    let cfg_text = |watch: bool| {
        format!(
            "[blip2]\nmodel = \"{}\"\nmax_new_tokens = 4\n[index]\nprecision = \"int8\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n\
             [[cameras]]\nname = \"shelf\"\nsource = {{ kind = \"folder\", path = \"{}\", watch = {watch} }}\n",
            blip2_bundle(),
            broker.port,
            repo().join("models/demo-frames").display()
        )
    };
    // First run: the stills are analysed and indexed, then it exits.
    let mut d = Daemon::start(&write_config(dir.path(), &cfg_text(false)));
    assert!(d.wait(Duration::from_secs(120)).success(), "{}", d.log());
    let frames = std::fs::read_dir(repo().join("models/demo-frames")).unwrap().count();
    // Second run: nothing new to analyse; the index from the first run answers.
    let sub = Subscriber::start(broker.port, "owlet/owlet/search/#", "e2e-search");
    let mut d = Daemon::start(&write_config(dir.path(), &cfg_text(true)));
    std::thread::sleep(Duration::from_secs(2));
    publish(
        broker.port,
        "owlet/owlet/search",
        br#"{"text": "a rocket on the launch pad", "k": 3, "id": "s1"}"#,
        false,
    );
    publish(
        broker.port,
        "owlet/owlet/search",
        br#"{"text": "anything", "camera": "garage", "id": "s2"}"#,
        false,
    );
    publish(broker.port, "owlet/owlet/search", br#"{"text": "x", "k": 1000, "id": "s3"}"#, false);
    let got = sub.wait_until("two answers", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == "owlet/owlet/search/result").count() >= 2
    });
    let answers: Vec<Value> =
        got.iter().filter(|m| m.topic == "owlet/owlet/search/result").map(Received::json).collect();
    let s1 = answers.iter().find(|a| a["id"] == "s1").expect("s1 answered");
    assert_eq!(s1["searched"], frames);
    let hits = s1["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    for h in hits {
        assert_eq!(h["camera"], "shelf");
        assert!(h["caption"].is_string() && h["time_ms"].is_u64(), "{h}");
    }
    assert!(hits.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
    let s2 = answers.iter().find(|a| a["id"] == "s2").expect("s2 answered");
    assert!(answers.iter().all(|a| a["id"] != "s3"), "k = 1000 is refused, not answered");
    assert_eq!(s2["hits"], serde_json::json!([]), "no frames from a camera named garage");
    assert!(d.terminate(Duration::from_secs(30)).success());
    // The CLI reads the same index and ranks the same way.
    let cli = owlet_search(&ix, "a rocket on the launch pad", 3);
    let cli_frames: Vec<&Value> = cli.as_array().unwrap().iter().map(|h| &h["source"]).collect();
    let mqtt_frames: Vec<&Value> = hits.iter().map(|h| &h["frame"]).collect();
    assert_eq!(cli_frames, mqtt_frames);
    let ids: Vec<&Value> = cli.as_array().unwrap().iter().map(|h| &h["frame_id"]).collect();
    assert_eq!(ids, hits.iter().map(|h| &h["frame_id"]).collect::<Vec<_>>());
    // The history kept each frame's labels and caption: searches narrow by them, in
    // SQL, to exactly the frames that pass.
    let clip = clip_bundle();
    let narrowed = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["search", "-m", &clip, "--index", ix.to_str().unwrap()];
        args.extend_from_slice(&["a rocket on the launch pad", "-k", "50", "--json"]);
        args.extend_from_slice(extra);
        let out = run("owlet", &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    };
    let all = narrowed(&[]);
    assert_eq!(all.len(), frames);
    let score_of = |h: &Value, label: &Value| {
        h["labels"].as_array().unwrap().iter().find(|l| l["label"] == *label).unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let ids =
        |v: &[Value]| v.iter().map(|h| h["frame_id"].as_i64().unwrap()).collect::<HashSet<_>>();
    let best = &all[0];
    let mut narrowest = frames;
    for l in best["labels"].as_array().unwrap() {
        // At least the best frame's own score for this label (its exact f32).
        let min = l["score"].to_string();
        let want: Vec<Value> = all
            .iter()
            .filter(|h| score_of(h, &l["label"]) >= l["score"].as_f64().unwrap())
            .cloned()
            .collect();
        let got = narrowed(&["--label", l["label"].as_str().unwrap(), "--min-score", &min]);
        assert_eq!(ids(&got), ids(&want), "--label {} --min-score {min}", l["label"]);
        assert!(got.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
        narrowest = narrowest.min(got.len());
    }
    assert!(narrowest < frames, "some label leaves frames out");
    let caption = best["caption"].as_str().unwrap();
    let got = narrowed(&["--caption", caption]);
    let want: Vec<Value> =
        all.iter().filter(|h| h["caption"].as_str().unwrap().contains(caption)).cloned().collect();
    assert_eq!(ids(&got), ids(&want), "--caption {caption:?}");
    assert_contract(&sub.all());
}
