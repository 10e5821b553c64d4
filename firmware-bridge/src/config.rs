//! The bridge's configuration: owlet-formats' `bridge_config` (the file's types,
//! parsing and checks, fuzzed apart from the models), and what depends on how this
//! binary was built.

use std::path::Path;

pub use owlet_formats::bridge_config::*;

/// Read, parse and check a config file, relative paths resolved against its
/// folder; and refuse what this build cannot do (a V4L2 camera without the `v4l2`
/// feature), naming the camera.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::from_path(path)?;
    check_built_in(&config, path)?;
    Ok(config)
}

fn check_built_in(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let v4l2 = config.cameras.iter().position(|c| matches!(c.source, SourceConfig::V4l2(_)));
    match v4l2 {
        Some(i) if !cfg!(feature = "v4l2") => Err(ConfigError {
            path: path.to_path_buf(),
            field: format!("cameras[{i}].source.kind"),
            reason: "this owlet-bridge was built without V4L2 (cargo feature v4l2); use a process \
                     source with [\"ffmpeg\", \"-f\", \"v4l2\", \"-i\", \"/dev/video0\", \"-f\", \
                     \"mjpeg\", \"-\"]"
                .into(),
        }),
        _ => Ok(()),
    }
}
