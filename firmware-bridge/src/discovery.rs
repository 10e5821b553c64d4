//! Home Assistant MQTT discovery, device-based: one retained config message per
//! camera on `<prefix>/device/owlet_<device>_<camera>/config`, listing its
//! entities (components). Sent at every connection and again whenever Home
//! Assistant publishes `online` on `<prefix>/status` (it restarted).
//!
//! Entities: the caption (a sensor; HA refuses states over 255 characters, so the
//! state is cut there by the value template and the full caption and labels are
//! the JSON attributes), the top label (sensor), label events (event entity:
//! appeared / disappeared), motion (binary_sensor, when the camera has a motion
//! trigger), the snapshot (image, when enabled) and a capture button.

use serde_json::{json, Map, Value};

use crate::config::CameraConfig;
use crate::publish::Message;
use crate::topics::Topics;

pub struct CameraEntities<'a> {
    pub camera: &'a CameraConfig,
    pub captions: bool,
}

/// The discovery topic of one camera.
pub fn topic(prefix: &str, topics: &Topics, camera: &str) -> String {
    format!("{prefix}/device/{}/config", node_id(topics, camera))
}

fn node_id(topics: &Topics, camera: &str) -> String {
    // HA's node ids are [a-zA-Z0-9_-]; device and camera names may hold more.
    format!("owlet_{}_{}", topics.device(), camera)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect()
}

pub fn messages(prefix: &str, topics: &Topics, cameras: &[CameraEntities]) -> Vec<Message> {
    cameras
        .iter()
        .map(|c| Message::json(topic(prefix, topics, &c.camera.name), config(topics, c)).retained())
        .collect()
}

pub fn config(topics: &Topics, c: &CameraEntities) -> Value {
    let cam = &c.camera.name;
    let id = node_id(topics, cam);
    let t = |leaf: &str| topics.camera(cam, leaf);
    let mut cmps = Map::new();
    let mut add = |key: &str, mut v: Value| {
        v["unique_id"] = json!(format!("{id}_{key}"));
        // Home Assistant applies a device-level qos to none of the components:
        // each says it (states and commands at least once).
        v["qos"] = json!(1);
        cmps.insert(format!("{id}_{key}"), v);
    };
    if c.captions {
        add(
            "caption",
            json!({"platform": "sensor", "name": "Caption", "icon": "mdi:text-box-outline",
                   "state_topic": t("caption"), "value_template": "{{ value_json.caption[:255] }}",
                   "json_attributes_topic": t("caption")}),
        );
    }
    add(
        "top_label",
        json!({"platform": "sensor", "name": "Top label", "icon": "mdi:tag",
               "state_topic": t("labels"), "value_template": "{{ value_json.top_label }}",
               "json_attributes_topic": t("labels"),
               "json_attributes_template": "{{ {'top_score': value_json.top_score, 'labels': value_json.labels, 'trigger': value_json.trigger, 'frame_time_ms': value_json.frame_time_ms} | tojson }}"}),
    );
    add(
        "label_event",
        json!({"platform": "event", "name": "Label", "state_topic": t("event"),
               "event_types": ["appeared", "disappeared"]}),
    );
    if c.camera.triggers.motion.is_some() {
        add(
            "motion",
            json!({"platform": "binary_sensor", "name": "Motion", "device_class": "motion",
                   "state_topic": t("motion"), "payload_on": "ON", "payload_off": "OFF"}),
        );
    }
    for prompt in &c.camera.prompts {
        let slug = prompt.slug();
        add(
            &format!("prompt_{slug}"),
            json!({"platform": "binary_sensor", "name": prompt.name.trim(), "icon": "mdi:text-search",
                   "state_topic": t(&format!("prompt/{slug}")), "payload_on": "ON", "payload_off": "OFF",
                   "json_attributes_topic": t(&format!("prompt/{slug}/attributes"))}),
        );
    }
    if c.camera.snapshot {
        add(
            "snapshot",
            json!({"platform": "image", "name": "Snapshot", "image_topic": t("snapshot"), "content_type": "image/jpeg"}),
        );
    }
    if c.camera.triggers.command {
        add(
            "capture",
            json!({"platform": "button", "name": "Capture", "icon": "mdi:camera", "command_topic": t("capture"), "payload_press": "PRESS"}),
        );
    }
    json!({
        "device": {
            "identifiers": [id],
            "name": device_name(topics.device(), cam),
            "manufacturer": "owlet",
            "model": "owlet-bridge camera",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "origin": {"name": "owlet-bridge", "sw_version": env!("CARGO_PKG_VERSION")},
        "availability_topic": topics.status(),
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": cmps,
    })
}

/// What Home Assistant calls the camera; it puts the device's name before each
/// entity's ("door Caption"). The bridge's own name is added only when it is not
/// the default, to tell two bridges' cameras of the same name apart.
fn device_name(device: &str, camera: &str) -> String {
    if device == owlet_formats::bridge_config::DEFAULT_DEVICE {
        camera.to_string()
    } else {
        format!("{camera} ({device})")
    }
}

#[cfg(test)]
mod naming_tests {
    #[test]
    fn a_camera_is_named_once_and_its_bridge_only_when_it_has_a_name_of_its_own() {
        assert_eq!(super::device_name("owlet", "door"), "door");
        assert_eq!(super::device_name("garage-pi", "door"), "door (garage-pi)");
    }
}
