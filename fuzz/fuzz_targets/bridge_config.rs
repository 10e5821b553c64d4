//! The bridge's config file: parsed and checked, or refused naming the field, never
//! a panic; what is accepted is within every range the daemon relies on.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use owlet_formats::bridge_config::{Config, MAX_WAIT_S};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, Path::new("owlet-bridge.toml")) {
        Ok(mut c) => {
            for cam in &c.cameras {
                let t = &cam.triggers;
                assert!(t.interval_s.is_none_or(|s| (0.05..=MAX_WAIT_S).contains(&s)));
                assert!((0.0..=MAX_WAIT_S).contains(&t.cooldown_s));
                assert!(t.motion.as_ref().is_none_or(|m| (0.0..=MAX_WAIT_S).contains(&m.hold_s)));
                assert!(cam.events.off < cam.events.on);
            }
            if let Some(m) = &c.mqtt {
                assert!((1..=65536).contains(&m.queue_max_mb) && m.keep_alive_s >= 5);
            }
            // What the daemon does next with an accepted config.
            c.resolve_relative_to(Path::new("/etc/owlet"));
            let _ = c.summary();
            for cam in &c.cameras {
                let _ = (c.clip_of(cam), c.blip2_of(cam), c.labels_of(cam));
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
    }
});
