//! Every MQTT topic the bridge uses, in one place.
//!
//! Out: `owlet/<device>/status` (online/offline, retained, last will),
//! `owlet/<device>/error` (refused commands), and per camera
//! `owlet/<device>/<camera>/{labels,caption,event,motion,snapshot,answer,error}`
//! plus `.../labels/state` (the label set in use, retained).
//! In: `owlet/<device>/<camera>/{capture,ask,labels/set}` and `owlet/<device>/search`
//! (answered on `owlet/<device>/search/result` or the request's `reply_to`), and
//! the fleet's `owlet/fleet/{search,status}` (answered on `owlet/fleet/reply/<id>`:
//! see `fleet`).

#[derive(Debug, Clone)]
pub struct Topics {
    device: String,
}

pub const COMMAND_VERBS: &[&str] = &["capture", "ask", "labels/set"];

impl Topics {
    pub fn new(device: &str) -> Topics {
        Topics { device: device.to_string() }
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn status(&self) -> String {
        format!("owlet/{}/status", self.device)
    }

    pub fn error(&self) -> String {
        format!("owlet/{}/error", self.device)
    }

    /// Search requests in (device-wide: the index holds every camera's frames).
    pub fn search(&self) -> String {
        format!("owlet/{}/search", self.device)
    }

    /// Search answers, unless the request names its own reply topic.
    pub fn search_result(&self) -> String {
        format!("owlet/{}/search/result", self.device)
    }

    pub fn camera(&self, camera: &str, leaf: &str) -> String {
        format!("owlet/{}/{camera}/{leaf}", self.device)
    }

    /// Subscriptions for the commands of every camera.
    pub fn command_filters(&self) -> Vec<String> {
        let mut v: Vec<String> =
            COMMAND_VERBS.iter().map(|v| format!("owlet/{}/+/{v}", self.device)).collect();
        v.push(self.search());
        v.extend([crate::fleet::SEARCH.to_string(), crate::fleet::STATUS.to_string()]);
        v
    }

    /// (camera, verb) of a command topic of this device.
    pub fn command_of<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest =
            topic.strip_prefix("owlet/")?.strip_prefix(self.device.as_str())?.strip_prefix('/')?;
        let (camera, verb) = rest.split_once('/')?;
        COMMAND_VERBS.iter().find(|v| **v == verb).map(|_| (camera, verb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_topics_are_recognised_and_nothing_else() {
        let t = Topics::new("shed");
        assert_eq!(t.command_of("owlet/shed/door/capture"), Some(("door", "capture")));
        assert_eq!(t.command_of("owlet/shed/door/labels/set"), Some(("door", "labels/set")));
        assert_eq!(t.command_of("owlet/shed/door/labels"), None);
        assert_eq!(t.command_of("owlet/shedx/door/capture"), None);
        assert_eq!(t.command_of("owlet/other/door/capture"), None);
    }
}
