//! What the web page shows live: each camera's newest analysed frame (the image
//! as it came, its labels, its caption, its id in the history) and its label set.
//! The camera workers write here; the page reads the current views when it loads
//! and then follows their changes as server-sent events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Changes waiting for a slow page before it misses some (it then reloads the
/// views: each change carries a camera's whole view, so nothing is lost but time).
const EVENT_BACKLOG: usize = 64;

/// One camera as the page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CameraView {
    pub camera: String,
    /// The labels its frames are scored against now.
    pub label_set: Vec<String>,
    /// Whether it has BLIP-2 (it can answer questions).
    pub answers: bool,
    pub latest: Option<LatestFrame>,
}

/// A camera's newest analysed frame.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatestFrame {
    pub time_ms: u64,
    pub trigger: String,
    /// Ranked, best first.
    pub labels: Vec<(String, f32)>,
    pub caption: Option<String>,
    /// Its row in the history, when the history keeps it.
    pub frame_id: Option<i64>,
}

/// The frame's bytes as they came (JPEG, PNG, ...) and their MIME type.
#[derive(Clone)]
pub struct Snapshot {
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
}

#[derive(Default)]
struct Cameras {
    views: BTreeMap<String, CameraView>,
    snapshots: BTreeMap<String, Snapshot>,
}

pub struct Live {
    cameras: Mutex<Cameras>,
    changes: broadcast::Sender<CameraView>,
}

impl Default for Live {
    fn default() -> Live {
        Live { cameras: Mutex::default(), changes: broadcast::channel(EVENT_BACKLOG).0 }
    }
}

impl Live {
    fn update(&self, camera: &str, f: impl FnOnce(&mut CameraView, &mut Cameras)) {
        let mut c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        let mut view = c.views.get(camera).cloned().unwrap_or_else(|| CameraView {
            camera: camera.to_string(),
            label_set: vec![],
            answers: false,
            latest: None,
        });
        f(&mut view, &mut c);
        c.views.insert(camera.to_string(), view.clone());
        // No receiver (no page open) is not an error.
        let _ = self.changes.send(view);
    }

    /// A camera as it starts: its label set and whether it answers questions.
    pub fn camera(&self, camera: &str, label_set: Vec<String>, answers: bool) {
        self.update(camera, |v, _| {
            v.label_set = label_set;
            v.answers = answers;
        });
    }

    pub fn label_set(&self, camera: &str, label_set: Vec<String>) {
        self.update(camera, |v, _| v.label_set = label_set);
    }

    /// A frame analysed: `bytes` are the frame as it came from the source.
    pub fn frame(&self, camera: &str, latest: LatestFrame, bytes: &[u8]) {
        let snapshot = content_type(bytes)
            .map(|content_type| Snapshot { bytes: Arc::from(bytes), content_type });
        self.update(camera, |v, c| {
            v.latest = Some(latest);
            match snapshot {
                Some(s) => c.snapshots.insert(camera.to_string(), s),
                None => c.snapshots.remove(camera),
            };
        });
    }

    /// Every camera, in name order.
    pub fn views(&self) -> Vec<CameraView> {
        let c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        c.views.values().cloned().collect()
    }

    pub fn view(&self, camera: &str) -> Option<CameraView> {
        let c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        c.views.get(camera).cloned()
    }

    pub fn snapshot(&self, camera: &str) -> Option<Snapshot> {
        let c = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        c.snapshots.get(camera).cloned()
    }

    /// Each change from now on: a camera's whole view.
    pub fn subscribe(&self) -> broadcast::Receiver<CameraView> {
        self.changes.subscribe()
    }
}

/// The MIME type of an image a browser shows, from its first bytes; None for
/// formats it may not (the page then shows the history's JPEG thumbnail).
pub fn content_type(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::WebP => Some("image/webp"),
        image::ImageFormat::Gif => Some("image/gif"),
        image::ImageFormat::Bmp => Some("image/bmp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(caption: &str) -> LatestFrame {
        LatestFrame {
            time_ms: 1,
            trigger: "still".into(),
            labels: vec![("cat".into(), 0.9)],
            caption: Some(caption.into()),
            frame_id: Some(7),
        }
    }

    #[test]
    fn each_change_reaches_a_subscriber_as_the_cameras_whole_view() {
        let live = Live::default();
        live.camera("door", vec!["cat".into()], true);
        let mut rx = live.subscribe();
        live.frame("door", latest("a cat"), &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]);
        let v = rx.try_recv().unwrap();
        assert_eq!(v.label_set, vec!["cat".to_string()]);
        assert!(v.answers);
        assert_eq!(v.latest.unwrap().caption.as_deref(), Some("a cat"));
        live.label_set("door", vec!["dog".into()]);
        let v = rx.try_recv().unwrap();
        assert_eq!(v.label_set, vec!["dog".to_string()]);
        assert_eq!(v.latest.unwrap().frame_id, Some(7), "the frame stays");
        assert_eq!(live.snapshot("door").unwrap().content_type, "image/jpeg");
    }

    #[test]
    fn a_frame_in_a_format_browsers_may_not_show_has_no_snapshot() {
        let live = Live::default();
        live.frame("door", latest("x"), b"P6\n1 1\n255\n\0\0\0");
        assert!(live.snapshot("door").is_none());
        assert_eq!(live.views().len(), 1);
    }
}
