//! One camera: its source's frames go through motion detection into the inbox; its
//! worker decides when to look (triggers, gate), runs the models and publishes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owlet_protocol::payloads::{
    Answer, AnswerOutcome, CameraError, CaptionSkipped, DeviceError, FrameInfo, LabelEvent,
    LabelSet, PromptAttributes,
};
use serde::Serialize;

use crate::analyze::{now_ms, time_ms, Analyzer, Decoded, LabelEvents};
use crate::commands::{AnswerPiece, CameraCommand, WorkerCommand};
use crate::config::CameraConfig;
use crate::publish::{Delivery, Message, Payload, Sink};
use crate::source::inbox::Inbox;
use crate::source::{Frame, SourceEvents, Stop};
use crate::topics::Topics;
use crate::trigger::{Gate, MotionDetector, Trigger};

/// What a source thread hands frames to: motion detection runs here, on every
/// frame, before the frame joins the inbox (where it may be replaced by a newer one).
pub struct FrameIntake {
    pub camera: String,
    pub inbox: Arc<Inbox>,
    pub sink: Arc<dyn Sink>,
    pub topics: Topics,
    pub motion: Option<MotionDetector>,
    /// Stills wait for the worker; live frames replace each other.
    pub stills: bool,
    pub stop: Stop,
    /// Counts every frame the source delivers (`owlet_frames_seen_total`).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl FrameIntake {
    pub fn new(
        cam: &CameraConfig,
        inbox: Arc<Inbox>,
        sink: Arc<dyn Sink>,
        topics: Topics,
        stop: Stop,
        stills: bool,
    ) -> FrameIntake {
        let motion = cam.triggers.motion.clone().map(MotionDetector::new);
        FrameIntake {
            camera: cam.name.clone(),
            inbox,
            sink,
            topics,
            motion,
            stills,
            stop,
            metrics: None,
        }
    }

    fn detect_motion(&mut self, frame: &Frame) {
        let Some(m) = &mut self.motion else { return };
        // A frame the thumbnail decoder refuses will be refused (and reported) by
        // the full decoder if it is ever analysed; motion just skips it.
        let Ok(thumb) = owlet_runtime::image_io::decode_gray_thumbnail(
            &frame.bytes,
            &frame.origin,
            96,
            Default::default(),
        ) else {
            return;
        };
        let o = m.observe(MotionDetector::shrink(&thumb), Instant::now());
        if o.moving {
            self.inbox.motion();
        }
        if let Some(on) = o.transition {
            self.sink.send(
                Message::text(
                    self.topics.camera(&self.camera, "motion"),
                    if on { "ON" } else { "OFF" },
                )
                .retained(),
            );
        }
    }
}

impl FrameIntake {
    /// Say there is no motion yet (retained): a bridge killed during motion left
    /// `ON` retained, and a still scene after the restart would never clear it.
    pub fn announce_no_motion(&self) {
        if self.motion.is_some() {
            let topic = self.topics.camera(&self.camera, "motion");
            self.sink.send(Message::text(topic, "OFF").retained());
        }
    }
}

impl SourceEvents for FrameIntake {
    fn frame(&mut self, frame: Frame) -> bool {
        if self.stop.is_stopped() {
            return false;
        }
        if let Some(m) = &self.metrics {
            m.seen(&self.camera);
        }
        self.detect_motion(&frame);
        if self.stills {
            self.inbox.offer_and_wait(frame)
        } else {
            self.inbox.offer(frame);
            true
        }
    }

    fn failed(&mut self, reason: &str) {
        log::warn!("camera {}: {reason}", self.camera);
        let error = CameraError {
            camera: self.camera.clone(),
            error: reason.to_string(),
            kind: Some("source".into()),
            frame: None,
            trigger: None,
            time_ms: now_ms(),
        };
        self.sink.send(Message::payload(self.topics.camera(&self.camera, "error"), &error));
    }
}

pub struct CameraWorker {
    pub name: String,
    pub topics: Topics,
    pub sink: Arc<dyn Sink>,
    pub inbox: Arc<Inbox>,
    pub analyzer: Analyzer,
    pub gate: Gate,
    pub events: LabelEvents,
    pub interval: Option<Duration>,
    pub captions: bool,
    /// No new caption when a frame's embedding is this close (cosine) to the last
    /// captioned frame's.
    pub skip_caption_above: Option<f32>,
    /// The last captioned frame's embedding and caption.
    last_captioned: Option<(Vec<f32>, String)>,
    pub snapshot: bool,
    pub stills: bool,
    /// What a stills source's frames are analysed as (`still`, `frigate`).
    pub still_trigger: Trigger,
    /// Where a Frigate source's results go back to Frigate.
    pub write_back: Option<crate::source::frigate::WriteBack>,
    /// Where label sets set by command are kept.
    pub labels_file: PathBuf,
    /// Where analysed frames are kept, when the history is on.
    pub history: Option<crate::history::Recorder>,
    /// What /metrics counts (frames, skips, each stage's time).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// What the web page shows live, when it is served.
    pub live: Option<Arc<crate::live::Live>>,
    /// This camera's prompt sensors, if it has any.
    pub prompts: Option<crate::prompts::Prompts>,
    last_interval: Option<Instant>,
    last_frame: Option<Frame>,
    /// Capture requests waiting for a frame (their ids).
    captures: Vec<Option<String>>,
    /// The inbox's dropped-frame count when the worker last took a frame.
    dropped_seen: u64,
    /// Frames replaced in the inbox before the one being analysed (newest wins).
    skipped: u64,
}

/// What looking at a frame gave: its labels, embedding, and whether it is the
/// scene last captioned (its cosine to that frame).
#[derive(Default)]
struct Looked {
    embedding: Option<Vec<f32>>,
    same_scene: Option<f32>,
    labels: Vec<(String, f32)>,
}

/// What a result names besides the frame: the capture requests it answers and
/// the Frigate event it shows.
struct Tags {
    ids: Vec<String>,
    event: Option<String>,
}

impl Tags {
    fn apply(&self, frame: &mut FrameInfo) {
        frame.request_ids = self.ids.clone();
        frame.frigate_event = self.event.clone();
    }
}

/// What the worker does next.
enum Next {
    Command(WorkerCommand),
    Analyse(Frame, Trigger, Vec<Option<String>>),
    Finished,
}

impl CameraWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cam: &CameraConfig,
        topics: Topics,
        sink: Arc<dyn Sink>,
        inbox: Arc<Inbox>,
        analyzer: Analyzer,
        stills: bool,
        labels_file: PathBuf,
    ) -> CameraWorker {
        CameraWorker {
            name: cam.name.clone(),
            topics,
            sink,
            inbox,
            analyzer,
            gate: Gate::new(&cam.triggers),
            events: LabelEvents::new(cam.events.on, cam.events.off),
            interval: cam.triggers.interval_s.map(Duration::from_secs_f64),
            captions: cam.captions,
            skip_caption_above: cam.skip_caption_above,
            last_captioned: None,
            snapshot: cam.snapshot,
            stills,
            still_trigger: Trigger::Still,
            write_back: None,
            labels_file,
            history: None,
            metrics: None,
            live: None,
            prompts: None,
            last_interval: None,
            last_frame: None,
            captures: Vec::new(),
            dropped_seen: 0,
            skipped: 0,
        }
    }

    /// Run until stopped, or (stills) until the source is done.
    pub fn run(mut self) {
        self.publish_label_state();
        self.publish_prompt_states();
        if let Some(live) = &self.live {
            let labels = self.analyzer.labels_in_use().to_vec();
            live.camera(&self.name, labels, self.analyzer.can_caption());
        }
        loop {
            match self.next() {
                Next::Finished => return,
                Next::Command(c) => self.handle(c),
                Next::Analyse(frame, trigger, ids) => self.analyse(frame, trigger, ids),
            }
        }
    }

    fn next(&mut self) -> Next {
        let mut s = self.inbox.lock();
        loop {
            if s.stop {
                return Next::Finished;
            }
            if let Some(c) = s.commands.pop_front() {
                return Next::Command(c);
            }
            if self.stills {
                if let Some(f) = s.frame.take() {
                    drop(s);
                    self.inbox.notify();
                    return Next::Analyse(f, self.still_trigger, vec![]);
                }
                if s.source_done {
                    return Next::Finished;
                }
                s = self.inbox.wait(s, Duration::from_millis(500));
                continue;
            }
            if s.source_done && s.frame.is_none() {
                return Next::Finished; // a source that will not be restarted ended
            }
            let now = Instant::now();
            let interval_due = self
                .interval
                .is_some_and(|i| self.last_interval.is_none_or(|t| now.duration_since(t) >= i));
            let trigger = if !self.captures.is_empty() {
                Some(Trigger::Command)
            } else if s.lines > 0 {
                Some(Trigger::Line)
            } else if s.motion {
                Some(Trigger::Motion)
            } else if interval_due {
                Some(Trigger::Interval)
            } else {
                None
            };
            if let Some(t) = trigger {
                if let Err(why) = self.gate.allows(t, now) {
                    log::debug!("camera {}: {t:?} trigger skipped: {why}", self.name);
                    self.count(|m, cam| m.skipped(cam, "gate", 1));
                    match t {
                        Trigger::Line => s.lines = 0,
                        Trigger::Motion => s.motion = false,
                        Trigger::Interval => self.last_interval = Some(now),
                        _ => {}
                    }
                    continue;
                }
                if let Some(f) = s.frame.take() {
                    match t {
                        Trigger::Line => s.lines = 0,
                        Trigger::Motion => s.motion = false,
                        _ => {}
                    }
                    if interval_due {
                        self.last_interval = Some(now);
                    }
                    let ids = if t == Trigger::Command {
                        std::mem::take(&mut self.captures)
                    } else {
                        vec![]
                    };
                    self.skipped = s.dropped - self.dropped_seen;
                    self.dropped_seen = s.dropped;
                    return Next::Analyse(f, t, ids);
                }
                // A trigger without a frame yet: wait for the frame.
            }
            let wait = match (self.interval, self.last_interval) {
                (Some(i), Some(t)) => (t + i)
                    .saturating_duration_since(now)
                    .clamp(Duration::from_millis(5), Duration::from_millis(500)),
                _ => Duration::from_millis(500),
            };
            s = self.inbox.wait(s, wait);
        }
    }

    /// The newest state of the camera (labels, caption): retained, so that a
    /// subscriber arriving later (Home Assistant after its restart) has it at once
    /// instead of `unknown` until the next analysis.
    fn send_state(&self, leaf: &str, payload: &impl Serialize) {
        let topic = self.topics.camera(&self.name, leaf);
        self.sink.send(Message::payload(topic, payload).retained());
    }

    /// The cosine of `embedding` with the last captioned frame's, when captions
    /// are skipped at that closeness and it reaches it.
    fn same_scene(&self, embedding: &[f32]) -> Option<f32> {
        let limit = self.skip_caption_above.filter(|_| self.captions)?;
        let (last, _) = self.last_captioned.as_ref()?;
        // CLIP's image embeddings are unit vectors: their dot is the cosine.
        let cosine = owlet_runtime::similarity::dot(embedding, last);
        (cosine >= limit).then_some(cosine)
    }

    fn send_json(&self, leaf: &str, payload: &impl Serialize) {
        self.sink.send(Message::payload(self.topics.camera(&self.name, leaf), payload));
    }

    /// Count something on /metrics (when it is served).
    fn count(&self, f: impl FnOnce(&crate::metrics::Metrics, &str)) {
        if let Some(m) = &self.metrics {
            f(m, &self.name);
        }
    }

    fn error(&self, frame: Option<&Frame>, trigger: Option<Trigger>, error: String) {
        log::warn!("camera {}: {error}", self.name);
        self.count(|m, cam| m.error(cam));
        let error = CameraError {
            camera: self.name.clone(),
            error,
            kind: None,
            frame: frame.map(|f| f.origin.clone()),
            trigger,
            time_ms: now_ms(),
        };
        self.send_json("error", &error);
    }

    fn analyse(&mut self, frame: Frame, trigger: Trigger, ids: Vec<Option<String>>) {
        self.gate.record(Instant::now());
        let tags = Tags { ids: ids.into_iter().flatten().collect(), event: frame.event_id.clone() };
        let skipped = self.skipped;
        self.count(|m, cam| {
            m.analysed(cam, trigger.name());
            m.skipped(cam, "replaced", skipped);
        });
        let t = Instant::now();
        let decoded = match self.analyzer.decode(&frame) {
            Ok(d) => d,
            Err(e) => return self.error(Some(&frame), Some(trigger), e.to_string()),
        };
        self.count(|m, cam| m.stage(cam, "decode", t.elapsed()));
        let mut looked = self.look(&decoded, trigger, &tags);
        let caption = self.describe(&decoded, trigger, &looked, &tags);
        if let Some(e) = &looked.embedding {
            self.update_prompts(e);
        }
        self.write_back(&frame, caption.as_deref(), looked.labels.first());
        // The history takes the embedding; nothing after it needs it.
        let embedding = looked.embedding.take();
        let frame_id = self.keep(&decoded, trigger, caption.clone(), embedding, &looked.labels);
        self.show(&frame, trigger, looked, caption, frame_id);
        drop(decoded);
        self.last_frame = Some(frame);
    }

    /// Labels (and label events) for the frame, and its embedding.
    fn look(&mut self, decoded: &Decoded, trigger: Trigger, tags: &Tags) -> Looked {
        let mut looked = Looked::default();
        let t = Instant::now();
        let result = self.analyzer.labels(decoded, trigger);
        self.count(|m, cam| m.stage(cam, "labels", t.elapsed()));
        let (mut msg, emb) = match result {
            Ok(r) => r,
            Err(e) => {
                self.error(Some(decoded.frame), Some(trigger), e.to_string());
                return looked;
            }
        };
        looked.same_scene = self.same_scene(&emb);
        looked.embedding = Some(emb);
        looked.labels = msg.labels.iter().map(|l| (l.label.clone(), l.score)).collect();
        for crossing in self.events.update(&msg.labels) {
            let event = LabelEvent {
                event_type: crossing.event_type,
                label: crossing.label,
                score: crossing.score,
                camera: self.name.clone(),
                frame_time_ms: msg.frame.frame_time_ms,
                trigger,
            };
            self.send_json("event", &event);
        }
        tags.apply(&mut msg.frame);
        msg.frames_skipped = self.skipped;
        msg.caption_skipped = looked.same_scene.map(|cosine| CaptionSkipped {
            reason: "same scene as the last captioned frame".into(),
            cosine,
        });
        self.send_state("labels", &msg);
        looked
    }

    /// The caption, unless captions are off or the scene is the last captioned one.
    fn describe(
        &mut self,
        decoded: &Decoded,
        trigger: Trigger,
        looked: &Looked,
        tags: &Tags,
    ) -> Option<String> {
        if !self.captions {
            return None;
        }
        if looked.same_scene.is_some() {
            // Nothing new to say: the page keeps showing the scene's caption, the
            // history row has none (the model did not look at this frame).
            self.count(|m, cam| m.skipped(cam, "same_scene_caption", 1));
            return None;
        }
        let t = Instant::now();
        let captioned = self.analyzer.caption(decoded, trigger);
        self.count(|m, cam| m.stage(cam, "caption", t.elapsed()));
        match captioned? {
            Ok(mut msg) => {
                if let Some(e) = &looked.embedding {
                    self.last_captioned = Some((e.clone(), msg.caption.clone()));
                }
                tags.apply(&mut msg.frame);
                self.send_state("caption", &msg);
                Some(msg.caption)
            }
            Err(e) => {
                self.error(Some(decoded.frame), Some(trigger), e.to_string());
                None
            }
        }
    }

    /// The frame in the history, where it is kept: its id there.
    fn keep(
        &self,
        decoded: &Decoded,
        trigger: Trigger,
        caption: Option<String>,
        embedding: Option<Vec<f32>>,
        labels: &[(String, f32)],
    ) -> Option<i64> {
        let (rec, e) = (self.history.as_ref()?, embedding?);
        let frame = decoded.frame;
        let row = owlet_history::NewFrame {
            time_ms: time_ms(frame.captured),
            camera: self.name.clone(),
            trigger: trigger.name().into(),
            source: Some(frame.origin.clone()),
            caption,
            labels: labels.to_vec(),
            ..Default::default()
        };
        let t = Instant::now();
        let kept = rec.record(row, &decoded.image, &frame.bytes, e);
        self.count(|m, cam| m.stage(cam, "history", t.elapsed()));
        match kept {
            Ok(id) => Some(id),
            Err(err) => {
                self.error(Some(frame), Some(trigger), format!("keeping the frame: {err}"));
                None
            }
        }
    }

    /// The web page's live view, and the snapshot topic.
    fn show(
        &self,
        frame: &Frame,
        trigger: Trigger,
        looked: Looked,
        caption: Option<String>,
        frame_id: Option<i64>,
    ) {
        if let Some(live) = &self.live {
            let shown = match (&caption, looked.same_scene) {
                (None, Some(_)) => self.last_captioned.as_ref().map(|(_, c)| c.clone()),
                _ => caption,
            };
            let latest = crate::live::LatestFrame {
                time_ms: time_ms(frame.captured),
                trigger: trigger.name().into(),
                labels: looked.labels,
                caption: shown,
                frame_id,
            };
            live.frame(&self.name, latest, &frame.bytes);
        }
        if self.snapshot && frame.bytes.starts_with(&[0xFF, 0xD8]) {
            self.sink.send(Message {
                topic: self.topics.camera(&self.name, "snapshot"),
                payload: Payload::Bytes(frame.bytes.clone()),
                retain: false,
                delivery: Delivery::BestEffort,
            });
        }
    }

    /// Frigate's event gets the caption or the top label back, where configured.
    fn write_back(&self, frame: &Frame, caption: Option<&str>, top: Option<&(String, f32)>) {
        let (Some(wb), Some(event)) = (&self.write_back, &frame.event_id) else { return };
        let top = top.map(|(l, s)| (l.as_str(), *s));
        let Some((url, body)) = wb.request(event, caption, top) else { return };
        if let Err(e) = wb.send(&url, &body) {
            self.error(
                Some(frame),
                Some(self.still_trigger),
                format!("frigate event {event}: writing back: {e}"),
            );
        }
    }

    fn handle(&mut self, cmd: WorkerCommand) {
        match cmd {
            WorkerCommand::Camera(c) => self.handle_camera_command(c),
            WorkerCommand::StreamedAsk(q) => {
                let pieces = q.pieces;
                let mut on_text = |t: &str| {
                    // A page that went away stops listening; the answer still completes.
                    let _ = pieces.send(AnswerPiece::Text(t.to_string()));
                };
                let reply = self.answer(&q.question, None, &mut on_text);
                let piece = match &reply.outcome {
                    AnswerOutcome::Failed { error } => AnswerPiece::Failed(error.clone()),
                    AnswerOutcome::Answered { .. } => AnswerPiece::Done(reply),
                };
                let _ = pieces.send(piece);
            }
        }
    }

    fn handle_camera_command(&mut self, cmd: CameraCommand) {
        match cmd {
            CameraCommand::Capture { id } => {
                if let Err(why) = self.gate.allows(Trigger::Command, Instant::now()) {
                    self.refuse("capture", why, id);
                } else if !self.stills {
                    self.captures.push(id);
                } else if let Some(frame) = self.last_frame.clone() {
                    // Files have no "now" to take: the newest one is looked at again.
                    self.analyse(frame, Trigger::Command, vec![id]);
                } else {
                    let why = format!(
                        "camera {} reads files and none has arrived yet: nothing to capture",
                        self.name
                    );
                    self.refuse("capture", why, id);
                }
            }
            CameraCommand::Ask { question, id, reply_to } => {
                let topic = reply_to.unwrap_or_else(|| self.topics.camera(&self.name, "answer"));
                let reply = self.answer(&question, id, &mut |_| {});
                self.sink.send(Message::payload(topic, &reply));
            }
            CameraCommand::SetLabels { labels } => self.set_labels(labels),
        }
    }

    /// VQA on the newest frame: the one waiting in the inbox, else the last
    /// analysed. The reply as the answer topic carries it (`error` when none).
    fn answer(
        &mut self,
        question: &str,
        id: Option<String>,
        on_text: &mut dyn FnMut(&str),
    ) -> Answer {
        let t = Instant::now();
        let frame = self.inbox.lock().frame.clone().or_else(|| self.last_frame.clone());
        let answered = match (&frame, self.gate.allows(Trigger::Command, t)) {
            (_, Err(why)) => Err(why),
            (None, _) => Err("no frame from this camera yet".to_string()),
            (Some(f), Ok(())) => {
                self.gate.record(t);
                self.analyzer
                    .decode(f)
                    .map_err(|e| e.to_string())
                    .and_then(|d| self.analyzer.ask(&d, question, on_text))
                    .map(|answer| (answer, f))
            }
        };
        let outcome = match answered {
            Ok(((answer, model, runs_on), f)) => AnswerOutcome::Answered {
                answer,
                model,
                runs_on: runs_on.to_string(),
                frame: f.origin.clone(),
                frame_time_ms: time_ms(f.captured),
                latency_ms: t.elapsed().as_secs_f64() * 1e3,
            },
            Err(error) => AnswerOutcome::Failed { error },
        };
        Answer { camera: self.name.clone(), id, question: question.to_string(), outcome }
    }

    /// A command to this camera refused: on the device's error topic, with the
    /// command's topic and the sender's id.
    fn refuse(&self, verb: &str, error: String, id: Option<String>) {
        let topic = self.topics.camera(&self.name, verb);
        let refused = DeviceError::Refused { topic, error, id, time_ms: now_ms() };
        self.sink.send(Message::payload(self.topics.error(), &refused));
    }

    fn set_labels(&mut self, labels: Vec<String>) {
        if labels == self.analyzer.labels_in_use() {
            return; // a retained set arriving again at reconnect
        }
        match self.analyzer.set_labels(&labels) {
            Ok(()) => {
                self.events.retain(&labels);
                if let Err(e) = save_labels(&self.labels_file, &labels) {
                    self.error(
                        None,
                        None,
                        format!("labels set but not saved to {}: {e}", self.labels_file.display()),
                    );
                }
                log::info!("camera {}: labels now {labels:?}", self.name);
                self.publish_label_state();
                if let Some(live) = &self.live {
                    live.label_set(&self.name, labels);
                }
            }
            Err(e) => {
                self.refuse("labels/set", e.to_string(), None);
            }
        }
    }

    fn prompt_topic(&self, slug: &str) -> String {
        self.topics.camera(&self.name, &format!("prompt/{slug}"))
    }

    /// The prompt sensors' states an earlier run left, retained again (a
    /// broker without persistence may have lost them).
    fn publish_prompt_states(&self) {
        let Some(p) = &self.prompts else { return };
        for prompt in p.prompts() {
            if let Some(on) = prompt.sensor.state() {
                let state = if on { "ON" } else { "OFF" };
                self.sink.send(Message::text(self.prompt_topic(&prompt.slug), state).retained());
            }
        }
    }

    /// Score the frame against each prompt: its score and state as attributes,
    /// its state (retained) when it changed.
    fn update_prompts(&mut self, embedding: &[f32]) {
        let Some(p) = &mut self.prompts else { return };
        for r in p.update(embedding, Instant::now()) {
            let topic = self.prompt_topic(&r.slug);
            if let (true, Some(on)) = (r.changed, r.state) {
                log::info!(
                    "camera {}: {:?} is now {}",
                    self.name,
                    r.name,
                    if on { "on" } else { "off" }
                );
                self.sink
                    .send(Message::text(topic.clone(), if on { "ON" } else { "OFF" }).retained());
            }
            let attributes = PromptAttributes {
                camera: self.name.clone(),
                prompt: r.name,
                score: r.score,
                state: r.state,
                time_ms: now_ms(),
            };
            let topic = format!("{topic}/attributes");
            self.sink.send(Message::payload(topic, &attributes).retained());
        }
    }

    fn publish_label_state(&self) {
        let set =
            LabelSet { camera: self.name.clone(), labels: self.analyzer.labels_in_use().to_vec() };
        self.send_state("labels/state", &set);
    }
}

/// Labels saved by an earlier `labels/set`, if any and valid.
pub fn load_labels(path: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str::<Vec<String>>(&text) {
        Ok(l) if crate::config::check_labels(&l).is_ok() => Some(l),
        _ => {
            log::warn!("{}: not a valid label list; using the configured labels", path.display());
            None
        }
    }
}

fn save_labels(path: &std::path::Path, labels: &[String]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(labels)?)?;
    std::fs::rename(tmp, path)
}
