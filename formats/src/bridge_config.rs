//! The bridge's configuration: one TOML file, every option with a default.
//!
//! Unknown fields are errors, so a typo never silently falls back to a default.
//! Relative paths are resolved against the file's folder, not the working directory
//! (systemd starts the daemon in `/`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::choices::{DeviceChoice, GpuPrecision, VectorPrecision};
pub use owlet_protocol::names::{check_labels, valid_topic_level};

/// A config file that cannot be read or says something invalid: `field` is a
/// dotted path (`cameras[0].triggers.interval_s`) or `line N` for TOML that does
/// not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {field}: {reason}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub field: String,
    pub reason: String,
}

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this device in topics: `owlet/<device>/<camera>/...`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Where the bridge keeps state across restarts: the MQTT outbox and label sets
    /// set by command. Default: $STATE_DIRECTORY (systemd) or `./owlet-state`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub clip: ClipConfig,
    /// Captions and questions; captions are off without this section.
    #[serde(default)]
    pub blip2: Option<Blip2Config>,
    /// Index every analysed frame for search (`owlet/<device>/search`).
    #[serde(default)]
    pub index: Option<IndexConfig>,
    /// The broker; without this section results are printed as `topic payload` lines.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Where the models run (CPU or GPU).
    #[serde(default)]
    pub compute: ComputeConfig,
    /// The HTTP side: /healthz, /metrics, the history's API. Off without it.
    #[serde(default)]
    pub web: Option<WebConfig>,
}

/// `[web]`: where the bridge serves HTTP, and the token it asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `address:port`; beyond loopback (127.0.0.1, ::1) a token is required.
    #[serde(default = "default_web_listen")]
    pub listen: String,
    /// Asked for on everything but /healthz (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token: Option<Secret>,
}

fn default_web_listen() -> String {
    "127.0.0.1:8090".into()
}

/// `[compute]`: the device the models run on. `auto` takes an NVIDIA GPU when the
/// bridge is built with CUDA (feature cuda-12 / cuda-13) and one answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeConfig {
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub gpu_precision: GpuPrecision,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// CLIP bundle folder.
    #[serde(default = "default_clip_model")]
    pub model: PathBuf,
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    #[serde(default = "default_templates")]
    pub templates: Vec<String>,
    /// Threads for inference; 0 means all cores.
    #[serde(default)]
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blip2Config {
    /// BLIP-2 bundle folder.
    pub model: PathBuf,
    /// Longest caption or answer, in tokens.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    /// Default: `owlet-<device>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (first line), so the config file can be public.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Results wait in an on-disk queue while the broker is away; past this size
    /// the oldest are dropped (and counted in the log).
    #[serde(default = "default_queue_max_mb")]
    pub queue_max_mb: u64,
    /// Seconds to keep trying to deliver queued results at shutdown.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout_s: u64,
    /// Largest accepted command payload, in bytes.
    #[serde(default = "default_max_command_bytes")]
    pub max_command_bytes: usize,
    #[serde(default = "default_true")]
    pub discovery: bool,
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

impl MqttConfig {
    /// A broker at `host` (and `port`, else 1883 or 8883 with TLS), every other
    /// option at its default: what `owlet-bridge --demo --mqtt HOST` uses.
    pub fn new(host: &str, port: Option<u16>) -> MqttConfig {
        MqttConfig {
            host: host.to_string(),
            port,
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            tls: None,
            keep_alive_s: default_keep_alive(),
            queue_max_mb: default_queue_max_mb(),
            flush_timeout_s: default_flush_timeout(),
            max_command_bytes: default_max_command_bytes(),
            discovery: true,
            discovery_prefix: default_discovery_prefix(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// The history's folder (its `history.db`); default: `<state_dir>/history.db`.
    /// An older owlet's index there (`<state_dir>/index` by default) is imported.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// f32, f16 or int8 (a quarter of f32's memory), for a new history.
    #[serde(default = "default_index_precision")]
    pub precision: String,
    /// The database and its WAL together stay under this; the oldest frames go.
    #[serde(default = "default_history_max_mb")]
    pub max_mb: u64,
    /// Frames older than this go (default: kept until the size limit).
    #[serde(default)]
    pub max_age_days: Option<f64>,
    /// Longest side of the JPEG thumbnail kept with each frame (0: none).
    #[serde(default = "default_thumbnail_px")]
    pub thumbnail_px: u32,
    /// Keep each analysed frame's JPEG too (a camera's frames are 50-300 KB each).
    #[serde(default)]
    pub keep_frames: bool,
}

fn default_index_precision() -> String {
    "f16".into()
}

fn default_history_max_mb() -> u64 {
    512
}

fn default_thumbnail_px() -> u32 {
    160
}

/// A secret string: never printed by `Debug` (so never in a log line).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate and key (PEM), when the broker asks for one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub name: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub triggers: TriggerConfig,
    /// This camera's labels; default: `[clip] labels`.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// This camera's CLIP bundle; default: `[clip] model`.
    #[serde(default)]
    pub clip_model: Option<PathBuf>,
    /// This camera's BLIP-2 bundle; default: `[blip2] model`.
    #[serde(default)]
    pub blip2_model: Option<PathBuf>,
    /// Caption every analysed frame (needs a `[blip2]` section).
    #[serde(default = "default_true")]
    pub captions: bool,
    /// No new caption for a frame whose CLIP embedding has at least this cosine
    /// with the last captioned frame's: a still scene is not captioned again (a
    /// caption costs seconds on a Pi). Off when absent; 0.95 to 0.99 is the range
    /// that makes sense.
    #[serde(default)]
    pub skip_caption_above: Option<f32>,
    /// Prompt sensors: named yes/no questions about the scene, each a Home
    /// Assistant binary sensor (`[[cameras.prompts]]`).
    #[serde(default)]
    pub prompts: Vec<PromptConfig>,
    /// Publish the analysed JPEG frame on `.../snapshot`.
    #[serde(default)]
    pub snapshot: bool,
    #[serde(default)]
    pub events: EventConfig,
}

/// A prompt sensor: CLIP scores the frame against `positive` and `negative` texts
/// (as written, no template); the softmax share of the positive ones is the
/// score. The sensor turns on when the score reaches `on` and off when it falls
/// to `off` (hysteresis), each only once the score has stayed there `debounce_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// What Home Assistant shows ("garage door open"); its topic is made from it.
    pub name: String,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
    #[serde(default = "default_prompt_on")]
    pub on: f32,
    #[serde(default = "default_prompt_off")]
    pub off: f32,
    #[serde(default = "default_prompt_debounce")]
    pub debounce_s: f64,
}

impl PromptConfig {
    /// The prompt's topic level: lower-case letters, digits and `_`.
    pub fn slug(&self) -> String {
        let mut s = String::new();
        for c in self.name.trim().chars() {
            if c.is_ascii_alphanumeric() {
                s.push(c.to_ascii_lowercase());
            } else if !s.ends_with('_') {
                s.push('_');
            }
        }
        s.trim_matches('_').to_string()
    }
}

fn default_prompt_on() -> f32 {
    0.6
}
fn default_prompt_off() -> f32 {
    0.4
}
fn default_prompt_debounce() -> f64 {
    2.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Image files in a folder: every file once in name order (`watch = false`), or
    /// new files as they appear (`watch = true`).
    Folder {
        path: PathBuf,
        #[serde(default)]
        watch: bool,
        #[serde(default = "default_poll_ms")]
        poll_ms: u64,
    },
    /// A child process writing MJPEG to stdout: rpicam-vid, gst-launch, ffmpeg.
    Process {
        command: Vec<String>,
        /// Restart it (with backoff) when it exits.
        #[serde(default = "default_true")]
        restart: bool,
    },
    /// An MJPEG stream over HTTP (multipart/x-mixed-replace, e.g. ESP32-CAM).
    HttpMjpeg { url: String },
    /// A snapshot URL polled at an interval.
    HttpSnapshot {
        url: String,
        #[serde(default = "default_snapshot_interval")]
        interval_s: f64,
    },
    /// A V4L2 device (`/dev/videoN`): USB webcams, CSI cameras with a V4L2 driver.
    V4l2(V4l2Config),
    /// Frigate's tracked objects: its events over MQTT (the bridge's `[mqtt]`
    /// broker), each event's snapshot from its HTTP API.
    Frigate(FrigateSource),
}

/// A Frigate camera whose events a camera of owlet's follows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrigateSource {
    /// Frigate's API, e.g. `http://frigate.local:5000` (its unauthenticated port).
    pub url: String,
    /// Frigate's camera name.
    pub camera: String,
    /// Only these object labels (default: every label).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Frigate's `mqtt.topic_prefix`.
    #[serde(default = "default_frigate_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub write_back: FrigateWriteBack,
}

/// What goes back to Frigate after an event's snapshot is analysed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrigateWriteBack {
    #[default]
    None,
    /// The caption, as the event's description (needs captions on the camera).
    Description,
    /// The top zero-shot label, as the event's sub label.
    SubLabel,
}

fn default_frigate_prefix() -> String {
    "frigate".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Config {
    pub device: PathBuf,
    #[serde(default = "default_v4l2_width")]
    pub width: u32,
    #[serde(default = "default_v4l2_height")]
    pub height: u32,
    /// Frames per second asked of the driver (the newest frame wins anyway).
    #[serde(default = "default_v4l2_fps")]
    pub fps: u32,
    #[serde(default)]
    pub format: V4l2Format,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V4l2Format {
    /// MJPEG if the camera offers it, else YUYV.
    #[default]
    Auto,
    Mjpeg,
    Yuyv,
}

fn default_v4l2_width() -> u32 {
    640
}
fn default_v4l2_height() -> u32 {
    480
}
fn default_v4l2_fps() -> u32 {
    5
}

/// When a streaming camera's frame is analysed. Frames of a folder source are all
/// analysed (trigger `still`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Analyse a frame every this many seconds.
    #[serde(default)]
    pub interval_s: Option<f64>,
    #[serde(default)]
    pub motion: Option<MotionConfig>,
    /// A child process whose every stdout line is a trigger: a PIR sensor through
    /// `gpiomon`, a microcontroller on a serial port.
    #[serde(default)]
    pub line: Option<Vec<String>>,
    /// A GPIO line (Linux GPIO character device) whose edges are triggers: a PIR
    /// sensor or a door contact on the Pi's header. Reported as trigger `line`.
    #[serde(default)]
    pub gpio: Option<GpioConfig>,
    /// Accept "capture now" over MQTT.
    #[serde(default = "default_true")]
    pub command: bool,
    /// Least time between two automatic analyses (motion, line, interval).
    #[serde(default)]
    pub cooldown_s: f64,
    /// Most analyses per minute, all triggers together; 0: no limit.
    #[serde(default)]
    pub max_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// The GPIO chip: /dev/gpiochip0 is the Pi 4's header (gpiochip4 on a Pi 5 with
    /// older kernels; `gpiodetect` lists them).
    #[serde(default = "default_gpio_chip")]
    pub chip: PathBuf,
    /// The line's offset on the chip (the BCM number on a Pi: GPIO17 is 17).
    pub line: u32,
    #[serde(default)]
    pub edge: GpioEdge,
    /// Bias of the input: "pull_up", "pull_down" or "disabled"; default: as it is.
    #[serde(default)]
    pub bias: Option<GpioBias>,
    /// The kernel ignores edges closer than this to the last (contact bounce).
    #[serde(default)]
    pub debounce_ms: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioEdge {
    #[default]
    Rising,
    Falling,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpioBias {
    PullUp,
    PullDown,
    Disabled,
}

fn default_gpio_chip() -> PathBuf {
    "/dev/gpiochip0".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionConfig {
    /// Grey-level difference (0-255) for a pixel to count as changed.
    #[serde(default = "default_pixel_threshold")]
    pub pixel_threshold: u8,
    /// Fraction of the image that must change.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Motion stays on this long after the last moving frame.
    #[serde(default = "default_hold")]
    pub hold_s: f64,
}

/// Label events: a label appears when its score reaches `on` and disappears when
/// it falls to `off` (hysteresis, so a score near one threshold does not flap).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    #[serde(default = "default_on")]
    pub on: f32,
    #[serde(default = "default_off")]
    pub off: f32,
}

/// The device name when the config gives none.
pub const DEFAULT_DEVICE: &str = "owlet";

fn default_device() -> String {
    DEFAULT_DEVICE.into()
}
fn default_clip_model() -> PathBuf {
    "models/clip-demo".into()
}
fn default_labels() -> Vec<String> {
    // What the bundled demo models know (models/demo/scenes.py).
    ["person", "car", "dog", "bird", "bicycle", "package"].map(String::from).to_vec()
}
fn default_templates() -> Vec<String> {
    vec!["a photo of a {}".into()]
}
fn default_max_new_tokens() -> usize {
    20
}
fn default_keep_alive() -> u64 {
    30
}
fn default_queue_max_mb() -> u64 {
    64
}
fn default_flush_timeout() -> u64 {
    10
}
fn default_max_command_bytes() -> usize {
    64 << 10
}
fn default_true() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_poll_ms() -> u64 {
    500
}
fn default_snapshot_interval() -> f64 {
    5.0
}
fn default_pixel_threshold() -> u8 {
    25
}
fn default_min_area() -> f32 {
    0.01
}
fn default_hold() -> f64 {
    5.0
}
fn default_on() -> f32 {
    0.6
}
fn default_off() -> f32 {
    0.4
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            model: default_clip_model(),
            labels: default_labels(),
            templates: default_templates(),
            threads: 0,
        }
    }
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            interval_s: None,
            motion: None,
            line: None,
            gpio: None,
            command: true,
            cooldown_s: 0.0,
            max_per_minute: 0,
        }
    }
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig { on: default_on(), off: default_off() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: default_device(),
            state_dir: None,
            clip: ClipConfig::default(),
            blip2: None,
            index: None,
            mqtt: None,
            cameras: Vec::new(),
            compute: ComputeConfig::default(),
            web: None,
        }
    }
}

impl CameraConfig {
    pub fn new(name: &str, source: SourceConfig) -> CameraConfig {
        CameraConfig {
            name: name.into(),
            source,
            triggers: TriggerConfig::default(),
            labels: None,
            clip_model: None,
            blip2_model: None,
            captions: true,
            skip_caption_above: None,
            prompts: Vec::new(),
            snapshot: false,
            events: EventConfig::default(),
        }
    }
}

/// (field, reason) of the first bad value.
type FieldError = (String, String);

fn field(name: &str) -> impl FnOnce(String) -> FieldError + '_ {
    move |reason| (name.to_string(), reason)
}

impl SourceConfig {
    fn validate(&self) -> std::result::Result<(), FieldError> {
        match self {
            SourceConfig::Process { command, .. }
                if command.is_empty() || command[0].is_empty() =>
            {
                Err(field("command")("must name a program: [\"ffmpeg\", \"-i\", ...]".into()))
            }
            SourceConfig::HttpMjpeg { url } | SourceConfig::HttpSnapshot { url, .. }
                if !url.starts_with("http://") =>
            {
                Err(field("url")("must be an http:// URL".into()))
            }
            SourceConfig::HttpSnapshot { interval_s, .. } => {
                in_range(*interval_s, 0.05, MAX_WAIT_S, "s").map_err(field("interval_s"))
            }
            SourceConfig::Folder { poll_ms, .. } => {
                in_range(*poll_ms as f64, 1.0, 3_600_000.0, "ms").map_err(field("poll_ms"))
            }
            SourceConfig::V4l2(v) if v.width == 0 || v.height == 0 || v.width % 2 != 0 => {
                Err(field("width")("width and height must be positive, the width even".into()))
            }
            SourceConfig::V4l2(v) if v.width > 8192 || v.height > 8192 => {
                Err(field("width")("width and height must be at most 8192".into()))
            }
            SourceConfig::V4l2(v) if v.fps == 0 || v.fps > 120 => {
                Err(field("fps")("must be 1 to 120".into()))
            }
            SourceConfig::Frigate(f) if !f.url.starts_with("http://") => {
                Err(field("url")("must be Frigate's http:// URL (port 5000)".into()))
            }
            SourceConfig::Frigate(f) if !valid_topic_level(&f.camera) => {
                Err(field("camera")("must be a Frigate camera name".into()))
            }
            SourceConfig::Frigate(f) if !valid_topic_level(&f.topic_prefix) => {
                Err(field("topic_prefix")("must be one topic level".into()))
            }
            SourceConfig::Frigate(f) if !f.labels.is_empty() => {
                check_labels(&f.labels).map_err(field("labels"))
            }
            _ => Ok(()),
        }
    }
}

impl TriggerConfig {
    fn validate(&self) -> std::result::Result<(), FieldError> {
        if let Some(s) = self.interval_s {
            in_range(s, 0.05, MAX_WAIT_S, "s").map_err(field("interval_s"))?;
        }
        in_range(self.cooldown_s, 0.0, MAX_WAIT_S, "s").map_err(field("cooldown_s"))?;
        in_range(self.max_per_minute as f64, 0.0, 60_000.0, "(0: no limit)")
            .map_err(field("max_per_minute"))?;
        if let Some(m) = &self.motion {
            if !(m.min_area > 0.0 && m.min_area <= 1.0) {
                return Err(field("motion.min_area")("must be in (0, 1]".into()));
            }
            in_range(m.hold_s, 0.0, MAX_WAIT_S, "s").map_err(field("motion.hold_s"))?;
        }
        if let Some(l) = &self.line {
            if l.is_empty() || l[0].is_empty() {
                return Err(field("line")("must name a program: [\"gpiomon\", ...]".into()));
            }
        }
        if let Some(g) = &self.gpio {
            in_range(g.debounce_ms as f64, 0.0, 60_000.0, "ms")
                .map_err(field("gpio.debounce_ms"))?;
        }
        Ok(())
    }
}

impl MqttConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }
}

impl Config {
    pub fn from_path(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            field: "(file)".into(),
            reason: e.to_string(),
        })?;
        let mut c = Config::parse(&text, path)?;
        if let Some(base) = path.parent() {
            c.resolve_relative_to(base);
        }
        Ok(c)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let (field, reason) = crate::toml_error::locate(text, &e);
            ConfigError { path: path.to_path_buf(), field, reason }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    pub fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.clip.model);
        if let Some(b) = &mut self.blip2 {
            fix(&mut b.model);
        }
        if let Some(d) = &mut self.state_dir {
            fix(d);
        }
        if let Some(d) = self.index.as_mut().and_then(|i| i.dir.as_mut()) {
            fix(d);
        }
        if let Some(m) = &mut self.mqtt {
            if let Some(p) = &mut m.password_file {
                fix(p);
            }
            if let Some(t) = &mut m.tls {
                fix(&mut t.ca);
                t.cert.as_mut().map(fix);
                t.key.as_mut().map(fix);
            }
        }
        for cam in &mut self.cameras {
            if let SourceConfig::Folder { path, .. } = &mut cam.source {
                fix(path);
            }
            cam.clip_model.as_mut().map(fix);
            cam.blip2_model.as_mut().map(fix);
        }
    }

    /// The state folder: configured, or systemd's $STATE_DIRECTORY, or ./owlet-state.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("owlet-state"))
    }

    /// "device NAME, N camera(s), CLIP BUNDLE[, BLIP-2 BUNDLE]": what the daemon
    /// logs at start and `--check-config` prints.
    pub fn summary(&self) -> String {
        format!(
            "device {}, {} camera(s), CLIP {}{}",
            self.device,
            self.cameras.len(),
            self.clip.model.display(),
            self.blip2
                .as_ref()
                .map(|b| format!(", BLIP-2 {}", b.model.display()))
                .unwrap_or_default()
        )
    }

    /// A camera's CLIP settings: `[clip]` with its own bundle if it names one.
    pub fn clip_of(&self, cam: &CameraConfig) -> ClipConfig {
        let mut c = self.clip.clone();
        if let Some(m) = &cam.clip_model {
            c.model = m.clone();
        }
        c
    }

    /// A camera's BLIP-2 settings, if it has BLIP-2 (its own bundle or `[blip2]`'s).
    pub fn blip2_of(&self, cam: &CameraConfig) -> Option<Blip2Config> {
        match (&self.blip2, &cam.blip2_model) {
            (Some(b), Some(m)) => Some(Blip2Config { model: m.clone(), ..b.clone() }),
            (None, Some(m)) => {
                Some(Blip2Config { model: m.clone(), max_new_tokens: default_max_new_tokens() })
            }
            (b, None) => b.clone(),
        }
    }

    /// The labels a camera starts with (before any set by command).
    pub fn labels_of(&self, cam: &CameraConfig) -> Vec<String> {
        cam.labels.clone().unwrap_or_else(|| self.clip.labels.clone())
    }

    /// Check every field as a config file's are checked (`path` names where it
    /// came from in the errors).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let in_file =
            |(field, reason): FieldError| ConfigError { path: path.to_path_buf(), field, reason };
        self.check_names_and_models().map_err(in_file)?;
        self.check_index_and_web().map_err(in_file)?;
        self.check_mqtt().map_err(in_file)?;
        let mut seen = std::collections::HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            if !seen.insert(&cam.name) {
                return Err(in_file((
                    format!("cameras[{i}].name"),
                    "duplicate camera name".into(),
                )));
            }
            self.check_camera(i, cam).map_err(in_file)?;
        }
        Ok(())
    }

    /// The device's name and the models' settings.
    fn check_names_and_models(&self) -> std::result::Result<(), FieldError> {
        let err = |field: String, reason: &str| -> FieldError { (field, reason.to_string()) };
        if !valid_topic_level(&self.device) {
            return Err(err(
                "device".into(),
                "must be non-empty without '/', '+', '#' or spaces (it is an MQTT topic level)",
            ));
        }
        if self.device == "fleet" {
            // owlet/fleet/... is the fleet's requests and answers.
            return Err(err("device".into(), "\"fleet\" is reserved for the fleet's topics"));
        }
        check_labels(&self.clip.labels).map_err(|r| err("clip.labels".into(), &r))?;
        in_range(self.clip.threads as f64, 0.0, MAX_THREADS as f64, "(0: all cores)")
            .map_err(|r| err("clip.threads".into(), &r))?;
        if let Some(i) = self.clip.templates.iter().position(|t| !t.contains("{}")) {
            return Err(err(
                format!("clip.templates[{i}]"),
                "must contain {} where the label goes",
            ));
        }
        if let Some(b) = &self.blip2 {
            if b.max_new_tokens == 0 || b.max_new_tokens > 512 {
                return Err(err("blip2.max_new_tokens".into(), "must be between 1 and 512"));
            }
        }
        Ok(())
    }

    /// The history's and the web page's sections.
    fn check_index_and_web(&self) -> std::result::Result<(), FieldError> {
        let err = |field: String, reason: &str| -> FieldError { (field, reason.to_string()) };
        if let Some(i) = &self.index {
            VectorPrecision::parse(&i.precision)
                .map_err(|_| err("index.precision".into(), "must be f32, f16 or int8"))?;
            in_range(i.max_mb as f64, 1.0, 1_048_576.0, "MiB")
                .map_err(|r| err("index.max_mb".into(), &r))?;
            if let Some(days) = i.max_age_days {
                in_range(days, 0.001, 36_500.0, "days")
                    .map_err(|r| err("index.max_age_days".into(), &r))?;
            }
            in_range(i.thumbnail_px as f64, 0.0, 1024.0, "px (0: none)")
                .map_err(|r| err("index.thumbnail_px".into(), &r))?;
        }
        if let Some(w) = &self.web {
            let addr: std::net::SocketAddr = w.listen.parse().map_err(|_| {
                err("web.listen".into(), "must be address:port, e.g. \"127.0.0.1:8090\"")
            })?;
            match &w.token {
                Some(t) if t.0.chars().count() < 12 => {
                    return Err(err("web.token".into(), "must be at least 12 characters"))
                }
                // It travels in a header and in the page's cookie: no character
                // either would need quoting.
                Some(t) if !t.0.chars().all(|c| c.is_ascii_graphic() && !";,\"\\".contains(c)) => {
                    return Err(err(
                        "web.token".into(),
                        "must be printable ASCII without spaces, ';', ',', '\"' or '\\'",
                    ))
                }
                None if !addr.ip().is_loopback() => {
                    return Err(err(
                        "web.token".into(),
                        "is required when web.listen is beyond loopback (127.0.0.1, ::1)",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The broker's section.
    fn check_mqtt(&self) -> std::result::Result<(), FieldError> {
        let err = |field: String, reason: &str| -> FieldError { (field, reason.to_string()) };
        if let Some(m) = &self.mqtt {
            if m.host.trim().is_empty() {
                return Err(err("mqtt.host".into(), "must not be empty"));
            }
            if m.port == Some(0) {
                return Err(err("mqtt.port".into(), "must not be 0"));
            }
            if m.password.is_some() && m.password_file.is_some() {
                return Err(err(
                    "mqtt.password_file".into(),
                    "give password or password_file, not both",
                ));
            }
            if (m.password.is_some() || m.password_file.is_some()) && m.username.is_none() {
                return Err(err("mqtt.username".into(), "a password needs a username"));
            }
            if let Some(t) = &m.tls {
                if t.cert.is_some() != t.key.is_some() {
                    return Err(err("mqtt.tls".into(), "cert and key go together"));
                }
            }
            // MQTT's keep-alive is a 16-bit number of seconds.
            in_range(m.keep_alive_s as f64, 5.0, 65535.0, "s")
                .map_err(|r| err("mqtt.keep_alive_s".into(), &r))?;
            in_range(m.queue_max_mb as f64, 1.0, 65536.0, "MB")
                .map_err(|r| err("mqtt.queue_max_mb".into(), &r))?;
            in_range(m.flush_timeout_s as f64, 0.0, 3600.0, "s")
                .map_err(|r| err("mqtt.flush_timeout_s".into(), &r))?;
            if m.max_command_bytes == 0 || m.max_command_bytes > 1 << 20 {
                return Err(err("mqtt.max_command_bytes".into(), "must be between 1 and 1048576"));
            }
            if !valid_topic_level(&m.discovery_prefix) {
                return Err(err("mqtt.discovery_prefix".into(), "must be one topic level"));
            }
        }
        Ok(())
    }

    /// Camera `i`: its name, labels, source, triggers, prompts and thresholds.
    fn check_camera(&self, i: usize, cam: &CameraConfig) -> std::result::Result<(), FieldError> {
        let err = |field: String, reason: &str| -> FieldError { (field, reason.to_string()) };
        let at = |f: &str| format!("cameras[{i}].{f}");
        if !valid_topic_level(&cam.name) {
            return Err(err(at("name"), "must be non-empty without '/', '+', '#' or spaces"));
        }
        if let Some(l) = &cam.labels {
            check_labels(l).map_err(|r| err(at("labels"), &r))?;
        }
        cam.source.validate().map_err(|(f, r)| err(at(&format!("source.{f}")), &r))?;
        if let SourceConfig::Frigate(f) = &cam.source {
            if self.mqtt.is_none() {
                return Err(err(
                    at("source.kind"),
                    "a frigate source needs the [mqtt] section: Frigate's events come over MQTT",
                ));
            }
            let captioned = cam.captions && (self.blip2.is_some() || cam.blip2_model.is_some());
            if f.write_back == FrigateWriteBack::Description && !captioned {
                return Err(err(
                    at("source.write_back"),
                    "\"description\" writes the caption back: it needs captions = true \
                     and a BLIP-2 model ([blip2] or the camera's blip2_model)",
                ));
            }
        }
        cam.triggers.validate().map_err(|(f, r)| err(at(&format!("triggers.{f}")), &r))?;
        let mut slugs = std::collections::HashSet::new();
        for (j, p) in cam.prompts.iter().enumerate() {
            let at = |f: &str| format!("cameras[{i}].prompts[{j}].{f}");
            if p.slug().is_empty() || p.name.chars().count() > 64 {
                return Err(err(
                    at("name"),
                    "must be 1 to 64 characters, some of them letters or digits",
                ));
            }
            if !slugs.insert(p.slug()) {
                return Err(err(at("name"), "another prompt of this camera has the same topic"));
            }
            check_labels(&p.positive).map_err(|r| err(at("positive"), &r))?;
            check_labels(&p.negative).map_err(|r| err(at("negative"), &r))?;
            if !(p.off >= 0.0 && p.off < p.on && p.on <= 1.0) {
                return Err(err(at("on"), "need 0 <= off < on <= 1"));
            }
            in_range(p.debounce_s, 0.0, MAX_WAIT_S, "s").map_err(|r| err(at("debounce_s"), &r))?;
        }
        if let Some(c) = cam.skip_caption_above {
            in_range(c as f64, 0.5, 1.0, "(a cosine)")
                .map_err(|r| err(at("skip_caption_above"), &r))?;
        }
        let e = &cam.events;
        if !(0.0..=1.0).contains(&e.off) || !(0.0..=1.0).contains(&e.on) || e.off >= e.on {
            return Err(err(at("events"), "need 0 <= off < on <= 1"));
        }
        Ok(())
    }
}

/// A number of seconds (or other unit) within [min, max]: finite, not NaN. Every
/// duration reaches `Duration::from_secs_f64` or a deadline sum somewhere, where
/// infinity or 1e20 would panic or never come.
fn in_range(value: f64, min: f64, max: f64, unit: &str) -> std::result::Result<(), String> {
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(format!("must be between {min} and {max} {unit}, not {value}"))
    }
}

/// Longest interval, cooldown or hold a camera may have: one week.
pub const MAX_WAIT_S: f64 = 7.0 * 86400.0;
/// Most inference threads: more than any board has cores.
pub const MAX_THREADS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config> {
        Config::parse(t, Path::new("bridge.toml"))
    }

    #[test]
    fn an_empty_file_is_the_default_config() {
        let c = parse("").unwrap();
        assert_eq!(c.device, "owlet");
        assert!(!c.clip.labels.is_empty());
        assert!(c.mqtt.is_none() && c.blip2.is_none());
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"device = "door"
[clip]
labels = ["a", "b"]
[blip2]
model = "models/blip2-test"
[mqtt]
host = "broker.lan"
username = "owlet"
password = "hunter2"
tls = { ca = "ca.pem" }
[[cameras]]
name = "front"
source = { kind = "process", command = ["rpicam-vid", "--codec", "mjpeg", "-o", "-"] }
triggers = { interval_s = 10, motion = {}, cooldown_s = 2, max_per_minute = 6 }
snapshot = true
[[cameras]]
name = "shelf"
source = { kind = "folder", path = "frames", watch = true }
"#,
        )
        .unwrap();
        assert_eq!(c.cameras[0].name, "front");
        assert_eq!(c.mqtt.as_ref().unwrap().port(), 8883);
        assert_eq!(c.cameras[0].triggers.motion.as_ref().unwrap().pixel_threshold, 25);
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = parse("[mqtt]\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\n").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    }

    #[test]
    fn the_largest_sane_values_are_accepted() {
        parse(
            "[clip]\nthreads = 256\n[[cameras]]\nname=\"a\"\nsource={kind=\"process\",command=[\"x\"]}\n\
             triggers={interval_s=604800, cooldown_s=604800, motion={hold_s=604800}}",
        )
        .unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        for (text, needle) in [
            ("device = \"a/b\"", "device"),
            ("device = \"fleet\"", "reserved"),
            ("[clip]\nlabels = []", "clip.labels"),
            ("[clip]\ntemplates = [\"x\"]", "clip.templates[0]"),
            ("[[cameras]]\nname = \"x\"\nsource = { kind = \"usb\" }", "line"),
            ("devcie = \"x\"", "unknown field"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}\n[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}", "duplicate"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"process\",command=[]}", "cameras[0].source.command"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"http_mjpeg\",url=\"ftp://x\"}", "cameras[0].source.url"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}\nevents={on=0.3,off=0.5}", "cameras[0].events"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}\ntriggers={interval_s=0}", "triggers.interval_s"),
            ("[mqtt]\nhost=\"h\"\npassword=\"p\"", "mqtt.username"),
            ("[mqtt]\nhost=\"h\"\ntls={ca=\"c\",cert=\"x\"}", "mqtt.tls"),
            ("[mqtt]\nport=1883", "host"),
            ("\u{0}", "bridge.toml"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle) && e.starts_with("bridge.toml"), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_prompt_sensor_parses_with_its_defaults_and_a_topic_made_from_its_name() {
        let c = parse(
            "[[cameras]]\nname = \"garage\"\nsource = {kind = \"process\", command = [\"x\"]}\n\
             [[cameras.prompts]]\nname = \"  Garage door: OPEN \"\n\
             positive = [\"an open garage door\"]\nnegative = [\"a closed garage door\", \"a wall\"]\n",
        )
        .unwrap();
        let p = &c.cameras[0].prompts[0];
        assert_eq!(p.slug(), "garage_door_open");
        assert_eq!((p.on, p.off, p.debounce_s), (0.6, 0.4, 2.0));
        assert_eq!(p.negative.len(), 2);
    }

    #[test]
    fn a_frigate_source_needs_mqtt_an_http_url_and_captions_to_write_descriptions() {
        let cam = |source: &str, extra: &str| {
            format!("{extra}[[cameras]]\nname=\"drive\"\ncaptions=true\nsource={{kind=\"frigate\",{source}}}\n")
        };
        let mqtt = "[mqtt]\nhost=\"h\"\n";
        let c = parse(&cam("url=\"http://f:5000\",camera=\"front\"", mqtt)).unwrap();
        let SourceConfig::Frigate(f) = &c.cameras[0].source else { panic!("a frigate source") };
        assert_eq!((f.topic_prefix.as_str(), f.write_back), ("frigate", FrigateWriteBack::None));
        assert!(f.labels.is_empty());
        for (text, needle) in [
            (cam("url=\"http://f:5000\",camera=\"front\"", ""), "needs the [mqtt] section"),
            (cam("url=\"https://f\",camera=\"front\"", mqtt), "source.url"),
            (cam("url=\"http://f\",camera=\"a/b\"", mqtt), "source.camera"),
            (cam("url=\"http://f\",camera=\"c\",labels=[\"\"]", mqtt), "source.labels"),
            (cam("url=\"http://f\",camera=\"c\",write_back=\"sublabel\"", mqtt), "`sub_label`"),
            (
                format!("{mqtt}[[cameras]]\nname=\"d\"\nsource={{kind=\"frigate\",url=\"http://f\",camera=\"c\",write_back=\"description\"}}\n"),
                "needs captions = true",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    /// Issue 22: values `--check-config` passed that panicked or stalled the daemon.
    #[test]
    fn every_duration_and_count_is_finite_and_bounded() {
        let cam = |extra: &str| {
            format!("[[cameras]]\nname=\"a\"\nsource={{kind=\"process\",command=[\"x\"]}}\n{extra}")
        };
        let snapshot = |v: &str| {
            format!("[[cameras]]\nname=\"a\"\nsource={{kind=\"http_snapshot\",url=\"http://x\",interval_s={v}}}")
        };
        let mut cases = Vec::new();
        for v in ["inf", "1e20", "1e19", "nan", "-1.0"] {
            cases.push((
                cam(&format!("triggers={{interval_s={v}}}")),
                "cameras[0].triggers.interval_s",
            ));
            cases.push((
                cam(&format!("triggers={{cooldown_s={v}}}")),
                "cameras[0].triggers.cooldown_s",
            ));
            cases.push((
                cam(&format!("triggers={{motion={{hold_s={v}}}}}")),
                "cameras[0].triggers.motion.hold_s",
            ));
            cases.push((snapshot(v), "cameras[0].source.interval_s"));
        }
        cases.push(("[clip]\nthreads = 100000".into(), "clip.threads"));
        cases.push(("[mqtt]\nhost=\"h\"\nkeep_alive_s=100000".into(), "mqtt.keep_alive_s"));
        cases.push(("[mqtt]\nhost=\"h\"\nqueue_max_mb=0".into(), "mqtt.queue_max_mb"));
        cases.push(("[mqtt]\nhost=\"h\"\nflush_timeout_s=100000".into(), "mqtt.flush_timeout_s"));
        cases.push((
            cam("triggers={max_per_minute=4000000000}"),
            "cameras[0].triggers.max_per_minute",
        ));
        cases.push(("[index]\nmax_mb = 0".into(), "index.max_mb"));
        let prompt = |extra: &str| {
            cam(&format!(
                "[[cameras.prompts]]\nname = \"door open\"\npositive = [\"an open door\"]\nnegative = [\"a closed door\"]\n{extra}"
            ))
        };
        cases.push((prompt("on = 0.3\noff = 0.5"), "cameras[0].prompts[0].on"));
        cases.push((prompt("on = nan"), "cameras[0].prompts[0].on"));
        cases.push((prompt("debounce_s = inf"), "cameras[0].prompts[0].debounce_s"));
        cases.push((prompt("debounce_s = -1"), "cameras[0].prompts[0].debounce_s"));
        cases.push((
            cam("[[cameras.prompts]]\nname = \"?!\"\npositive = [\"a\"]\nnegative = [\"b\"]"),
            "cameras[0].prompts[0].name",
        ));
        cases.push((
            cam("[[cameras.prompts]]\nname = \"x\"\npositive = []\nnegative = [\"b\"]"),
            "cameras[0].prompts[0].positive",
        ));
        cases.push((
            format!(
                "{}\n[[cameras.prompts]]\nname = \"Door open\"\npositive = [\"a\"]\nnegative = [\"b\"]",
                prompt("")
            ),
            "cameras[0].prompts[1].name",
        ));
        for v in ["1.5", "0.2", "nan", "inf"] {
            cases
                .push((cam(&format!("skip_caption_above = {v}")), "cameras[0].skip_caption_above"));
        }
        cases.push(("[web]\nlisten = \"0.0.0.0:8090\"".into(), "web.token"));
        cases.push(("[web]\ntoken = \"short\"".into(), "web.token"));
        cases.push(("[web]\ntoken = \"twelve chars with spaces\"".into(), "web.token"));
        cases.push(("[web]\nlisten = \"localhost\"".into(), "web.listen"));
        cases.push(("[index]\nmax_age_days = inf".into(), "index.max_age_days"));
        cases.push(("[index]\nmax_age_days = 0.0".into(), "index.max_age_days"));
        cases.push(("[index]\nthumbnail_px = 100000".into(), "index.thumbnail_px"));
        for (text, needle) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle) && e.starts_with("bridge.toml"), "{text:?}: {e}");
        }
    }
}
