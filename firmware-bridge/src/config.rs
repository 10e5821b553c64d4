//! The bridge's configuration: one TOML file, every option with a default.
//!
//! Only what the bridge does so far is configurable: a device name, the CLIP bundle,
//! the labels, and cameras that read still frames from a folder. Unknown fields are
//! errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this device in topics: `owlet/<device>/<camera>/...`.
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub clip: ClipConfig,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// CLIP bundle folder; relative paths are resolved against the config file.
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
pub struct CameraConfig {
    pub name: String,
    pub source: SourceConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Every image file in a folder, once, in name order.
    Folder { path: PathBuf },
}

fn default_device() -> String {
    "owlet".into()
}
fn default_clip_model() -> PathBuf {
    "models/clip-test".into()
}
fn default_labels() -> Vec<String> {
    ["person", "car", "cat", "dog", "bird", "package"].map(String::from).to_vec()
}
fn default_templates() -> Vec<String> {
    vec!["a photo of a {}".into()]
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig { model: default_clip_model(), labels: default_labels(), templates: default_templates(), threads: 0 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config { device: default_device(), clip: ClipConfig::default(), cameras: Vec::new() }
    }
}

impl Config {
    pub fn from_path(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            field: "(file)".into(),
            reason: e.to_string(),
        })?;
        let mut c = Config::from_str(&text, path)?;
        // Paths in a config file are relative to the file, not to the working directory.
        if let Some(base) = path.parent() {
            c.resolve_relative_to(base);
        }
        Ok(c)
    }

    pub fn from_str(text: &str, path: &Path) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("line {}", text[..s.start.min(text.len())].lines().count().max(1)))
                .unwrap_or_else(|| "(toml)".into());
            Error::Config { path: path.to_path_buf(), field, reason: e.message().to_string() }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    pub fn resolve_relative_to(&mut self, base: &Path) {
        if self.clip.model.is_relative() {
            self.clip.model = base.join(&self.clip.model);
        }
        for cam in &mut self.cameras {
            let SourceConfig::Folder { path } = &mut cam.source;
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let err = |field: String, reason: &str| Error::Config { path: path.to_path_buf(), field, reason: reason.into() };
        if !valid_topic_level(&self.device) {
            return Err(err("device".into(), "must be non-empty without '/', '+', '#' or spaces (it is an MQTT topic level)"));
        }
        if self.clip.labels.is_empty() || self.clip.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(err("clip.labels".into(), "must be a non-empty list of non-empty labels"));
        }
        if let Some(i) = self.clip.templates.iter().position(|t| !t.contains("{}")) {
            return Err(err(format!("clip.templates[{i}]"), "must contain {} where the label goes"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            if !valid_topic_level(&cam.name) {
                return Err(err(format!("cameras[{i}].name"), "must be non-empty without '/', '+', '#' or spaces"));
            }
            if !seen.insert(&cam.name) {
                return Err(err(format!("cameras[{i}].name"), "duplicate camera name"));
            }
        }
        Ok(())
    }
}

fn valid_topic_level(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.chars().any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config> {
        Config::from_str(t, Path::new("bridge.toml"))
    }

    #[test]
    fn an_empty_file_is_the_default_config() {
        let c = parse("").unwrap();
        assert_eq!(c.device, "owlet");
        assert!(!c.clip.labels.is_empty());
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            "device = \"door\"\n[clip]\nlabels = [\"a\", \"b\"]\n[[cameras]]\nname = \"front\"\nsource = { kind = \"folder\", path = \"frames\" }\n",
        )
        .unwrap();
        assert_eq!(c.cameras[0].name, "front");
    }

    #[test]
    fn errors_name_the_field() {
        for (text, needle) in [
            ("device = \"a/b\"", "device"),
            ("[clip]\nlabels = []", "clip.labels"),
            ("[clip]\ntemplates = [\"x\"]", "clip.templates[0]"),
            ("[[cameras]]\nname = \"x\"\nsource = { kind = \"usb\" }", "line"),
            ("devcie = \"x\"", "unknown field"),
            ("[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}\n[[cameras]]\nname=\"a\"\nsource={kind=\"folder\",path=\"p\"}", "duplicate"),
            ("\u{0}", "bridge.toml"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle) && e.starts_with("bridge.toml"), "{text:?}: {e}");
        }
    }
}
