//! Sources and triggers that need a device CI does not have: a V4L2 camera and a
//! GPIO line. Ignored by default; run them where the hardware is (a Pi, a PC with
//! a webcam, or any Linux with the gpio-sim module), as root for gpio-sim:
//!
//!     OWLET_TEST_V4L2=/dev/video0 cargo test --release -p owlet-e2e --test e2e -- --ignored v4l2
//!     modprobe gpio-sim && cargo test --release -p owlet-e2e --test e2e -- --ignored gpio
//!
//! (`modprobe vivid` gives a virtual V4L2 camera offering YUYV, for a machine with
//! no webcam.) What runs without hardware is in sources.rs (YUYV against ffmpeg)
//! and in the bridge's unit tests (missing devices and chips are reported).

use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_e2e::broker::*;
use owlet_e2e::*;

fn config(dir: &Path, camera: &str) -> PathBuf {
    let p = dir.join("bridge.toml");
    std::fs::write(
        &p,
        format!(
            "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\n{camera}",
            dir.join("state").display(),
            demo_clip_bundle()
        ),
    )
    .unwrap();
    p
}

#[test]
#[ignore = "needs a V4L2 camera: OWLET_TEST_V4L2=/dev/videoN (see the module's doc)"]
fn v4l2_camera_frames_are_labelled_in_each_format_it_offers() {
    let device = std::env::var("OWLET_TEST_V4L2").expect("OWLET_TEST_V4L2=/dev/videoN");
    for format in ["auto", "mjpeg", "yuyv"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &format!(
                "[[cameras]]\nname = \"cam\"\nsource = {{ kind = \"v4l2\", device = \"{device}\", format = \"{format}\" }}\n\
                 triggers = {{ interval_s = 0.5 }}\n"
            ),
        );
        let mut d = Daemon::start(&cfg);
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            d.wait_printed("three labelled frames", Duration::from_secs(30), |m| {
                m.iter().filter(|m| m.topic.ends_with("/cam/labels")).count() >= 3
            })
        }));
        let log = d.log();
        d.terminate(Duration::from_secs(10));
        match got {
            Ok(msgs) => {
                let l = msgs.iter().find(|m| m.topic.ends_with("/cam/labels")).unwrap().json();
                assert!(l["frame"].as_str().unwrap().starts_with(&format!("{device}#")), "{l}");
                assert_eq!(l["trigger"], "interval");
            }
            // A camera that does not offer a format must say so, naming it.
            Err(_) if format != "auto" => assert!(
                log.contains("but owlet reads MJPEG or YUYV") || log.contains(format),
                "{log}"
            ),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// A gpio-sim chip with one bank of 8 lines, made through configfs (root).
struct SimChip {
    root: PathBuf,
    chip: String,
    device: String,
}

impl SimChip {
    fn new() -> SimChip {
        let root =
            PathBuf::from(format!("/sys/kernel/config/gpio-sim/owlet-{}", std::process::id()));
        std::fs::create_dir(&root)
            .expect("gpio-sim's configfs (modprobe gpio-sim; mount configfs; run as root)");
        std::fs::create_dir(root.join("bank0")).unwrap();
        std::fs::write(root.join("bank0/num_lines"), "8").unwrap();
        std::fs::write(root.join("live"), "1").unwrap();
        let chip =
            std::fs::read_to_string(root.join("bank0/chip_name")).unwrap().trim().to_string();
        let device = std::fs::read_to_string(root.join("dev_name")).unwrap().trim().to_string();
        SimChip { root, chip, device }
    }

    /// Drive the simulated line by its pull (what a sensor's output does).
    fn pull(&self, line: u32, up: bool) {
        let p = format!("/sys/devices/platform/{}/{}/sim_gpio{line}/pull", self.device, self.chip);
        std::fs::write(p, if up { "pull-up" } else { "pull-down" }).unwrap();
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let _ = std::fs::write(self.root.join("live"), "0");
        let _ = std::fs::remove_dir(self.root.join("bank0"));
        let _ = std::fs::remove_dir(&self.root);
    }
}

#[test]
#[ignore = "needs gpio-sim (modprobe gpio-sim) and root (see the module's doc)"]
fn gpio_edges_trigger_an_analysis_each_within_the_cooldown() {
    let sim = SimChip::new();
    sim.pull(3, false);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[cameras]]\nname = \"door\"\nsource = {{ kind = \"process\", command = {} }}\n\
             triggers = {{ gpio = {{ chip = \"/dev/{}\", line = 3, edge = \"rising\" }}, cooldown_s = 0.5 }}\n",
            toml_list(&ffmpeg_mjpeg("testsrc=size=160x120", 10, None)),
            sim.chip
        ),
    );
    let mut d = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.printed_on("/door/labels").is_empty(), "nothing before an edge");
    for _ in 0..3 {
        sim.pull(3, true); // rising: a trigger
        std::thread::sleep(Duration::from_millis(200));
        sim.pull(3, false); // falling: ignored (edge = rising)
        std::thread::sleep(Duration::from_millis(1000));
    }
    let msgs = d.wait_printed("three analyses", Duration::from_secs(20), |m| {
        m.iter().filter(|m| m.topic.ends_with("/door/labels")).count() >= 3
    });
    let labels: Vec<_> =
        msgs.iter().filter(|m| m.topic.ends_with("/door/labels")).map(Received::json).collect();
    assert_eq!(labels.len(), 3, "one analysis per rising edge");
    assert!(labels.iter().all(|l| l["trigger"] == "line"));
    assert!(d.is_running());
    d.terminate(Duration::from_secs(10));
}
