use owlet_e2e::*;
use serde_json::Value;

/// `topic payload` lines printed by the bridge.
fn published(stdout: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let (topic, payload) = l.split_once(' ').expect("topic payload");
            (topic.to_string(), serde_json::from_str(payload).expect("payload is JSON"))
        })
        .collect()
}

#[test]
fn demo_labels_and_captions_every_bundled_frame_with_what_is_in_it() {
    // One line per message by default, as the README shows it.
    let out = run("owlet-bridge", &["--demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = published(&out.stdout);
    let frames = demo_scenes().len();
    assert_eq!(all[0].0, "owlet/owlet/demo/labels/state");
    let captions: Vec<_> = all.iter().filter(|(t, _)| t == "owlet/owlet/demo/caption").collect();
    assert_eq!(captions.len(), frames);
    for (_, c) in &captions {
        assert_eq!(c["model"], "blip2-demo");
        assert_eq!(c["runs_on"], "cpu"); // CI's build has no CUDA: auto chose the CPU
                                         // The trained demo models see: each caption is the scene's own.
        let scene = demo_scene_of(c["frame"].as_str().unwrap());
        assert_eq!(c["caption"], scene.caption.as_str(), "{c}");
    }
    let msgs: Vec<_> = all.iter().filter(|(t, _)| t == "owlet/owlet/demo/labels").collect();
    assert_eq!(msgs.len(), frames);
    for (_, p) in &msgs {
        assert_eq!(p["trigger"], "still");
        assert_eq!(p["model"], "clip-demo");
        assert_eq!(p["runs_on"], "cpu");
        let labels = p["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 6);
        assert_eq!(p["top_label"], labels[0]["label"]);
        let scene = demo_scene_of(p["frame"].as_str().unwrap());
        assert!(
            scene.kinds.iter().any(|k| p["top_label"] == k.as_str()),
            "top label of {:?}: {p}",
            scene.caption
        );
        let sum: f64 = labels.iter().map(|l| l["score"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        assert!(p["latency_ms"].as_f64().unwrap() > 0.0);
    }
    // The one red car of the demo frames: named in the caption and the top label.
    let red_car =
        captions.iter().find(|(_, c)| c["caption"] == "a red car").expect("a red car captioned");
    let frame = red_car.1["frame"].clone();
    let labels = msgs.iter().find(|(_, p)| p["frame"] == frame).unwrap();
    assert_eq!(labels.1["top_label"], "car");
    assert!(labels.1["top_score"].as_f64().unwrap() > 0.9, "{}", labels.1);
}

#[test]
fn a_corrupt_frame_goes_to_the_error_topic_and_the_rest_are_still_labelled() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-bridge-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::copy(repo().join("models/demo-frames/rocket.jpg"), frames.join("a.jpg")).unwrap();
    std::fs::write(frames.join("b.jpg"), b"\xff\xd8\xff garbage from a flaky camera").unwrap();
    std::fs::copy(repo().join("models/demo-frames/chelsea.png"), frames.join("c.png")).unwrap();
    let cfg = dir.join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"shed\"\n[clip]\nmodel = \"{}\"\nlabels = [\"cat\", \"rocket\"]\n[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"frames\" }}\n",
            clip_bundle()
        ),
    )
    .unwrap();
    let out = run("owlet-bridge", &["--config", cfg.to_str().unwrap(), "--compact"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs: Vec<_> = published(&out.stdout)
        .into_iter()
        .filter(|(t, _)| t.ends_with("/labels") || t.ends_with("/error"))
        .collect();
    let topics: Vec<&str> = msgs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        ["owlet/shed/door/labels", "owlet/shed/door/error", "owlet/shed/door/labels"]
    );
    assert!(msgs[1].1["error"].as_str().unwrap().contains("b.jpg"));
}

#[test]
fn a_broken_config_is_refused_naming_the_field() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-cfg-").tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[clip]\ntemplates = [\"no placeholder\"]\n").unwrap();
    let out = run("owlet-bridge", &["--config", cfg.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("clip.templates[0]"), "{stderr}");
}

#[test]
fn the_shipped_config_checks_out_in_the_tarball_layout() {
    // etc/owlet-bridge.toml beside models/, as scripts/cross packs them.
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-dist-").tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(
        repo().join("firmware-bridge/dist/owlet-bridge.toml"),
        etc.join("owlet-bridge.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo().join("models"), tmp.path().join("models")).unwrap();
    let out = run(
        "owlet-bridge",
        &["--config", etc.join("owlet-bridge.toml").to_str().unwrap(), "--check-config"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok"));
}

/// Write `text` to `cfg` and run `owlet-bridge --check-config` on it.
fn check_config(cfg: &std::path::Path, text: &str) -> std::process::Output {
    std::fs::write(cfg, text).unwrap();
    run("owlet-bridge", &["--config", cfg.to_str().unwrap(), "--check-config"])
}

/// Issue 22: per-camera bundles and their kinds were not checked, and durations
/// that panic the daemon (inf, 1e20) passed.
#[test]
fn check_config_checks_per_camera_bundles_their_kinds_and_every_range() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-cam-cfg-").tempdir().unwrap();
    let cfg = tmp.path().join("cams.toml");
    let head = format!(
        "[clip]\nmodel = \"{}\"\n[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\n",
        demo_clip_bundle(),
        demo_scenes_dir().display()
    );
    for (extra, named) in [
        (format!("clip_model = \"{}\"\n", demo_blip2_bundle()), "cameras[0].clip_model"),
        (format!("blip2_model = \"{}\"\n", demo_clip_bundle()), "cameras[0].blip2_model"),
        ("clip_model = \"/nowhere/clip\"\n".to_string(), "cameras[0].clip_model"),
        ("triggers = { cooldown_s = inf }\n".to_string(), "cameras[0].triggers.cooldown_s"),
        ("triggers = { interval_s = 1e19 }\n".to_string(), "cameras[0].triggers.interval_s"),
    ] {
        let out = check_config(&cfg, &format!("{head}{extra}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(named), "{extra}: {stderr}");
    }
    let out = check_config(&cfg, &format!("{head}clip_model = \"{}\"\n", demo_clip_bundle()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_names_a_missing_camera_device_and_gpio_chip() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-hw-cfg-").tempdir().unwrap();
    let cfg = tmp.path().join("hw.toml");
    let clip = format!("[clip]\nmodel = \"{}\"\n", demo_clip_bundle());
    let out = check_config(&cfg, &format!("{clip}[[cameras]]\nname = \"usb\"\nsource = {{ kind = \"v4l2\", device = \"/dev/video-owlet-none\" }}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("cameras[0].source.device")
            && stderr.contains("/dev/video-owlet-none"),
        "{stderr}"
    );

    let out = check_config(&cfg, &format!("{clip}[[cameras]]\nname = \"usb\"\nsource = {{ kind = \"v4l2\", device = \"/dev/null\", width = 641 }}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cameras[0].source.width"), "{stderr}");

    let out = check_config(
        &cfg,
        &format!(
            "{clip}[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\ntriggers = {{ gpio = {{ chip = \"/dev/gpiochip-owlet-none\", line = 17, edge = \"sideways\" }} }}\n",
            demo_scenes_dir().display()
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sideways"), "an unknown edge is named: {stderr}");

    let out = check_config(
        &cfg,
        &format!(
            "{clip}[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\ntriggers = {{ gpio = {{ chip = \"/dev/gpiochip-owlet-none\", line = 17 }} }}\n",
            demo_scenes_dir().display()
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cameras[0].triggers.gpio.chip") && stderr.contains("gpiochip-owlet-none"),
        "{stderr}"
    );
}

#[test]
fn a_cuda_device_in_a_build_without_cuda_is_refused_by_name_and_auto_runs_on_the_cpu() {
    let tmp = tempfile::Builder::new().prefix("owlet-e2e-compute-").tempdir().unwrap();
    let cfg = tmp.path().join("gpu.toml");
    let base = format!(
        "[clip]\nmodel = \"{}\"\n[[cameras]]\nname = \"door\"\nsource = {{ kind = \"folder\", path = \"{}\" }}\n",
        demo_clip_bundle(),
        demo_scenes_dir().display()
    );
    let out = check_config(&cfg, &format!("{base}[compute]\ndevice = \"cuda\"\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("[compute] device")
            && stderr.contains("without CUDA"),
        "{stderr}"
    );

    let out = check_config(&cfg, &format!("{base}[compute]\ndevice = \"tpu\"\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"), "an unknown device is named");

    let out = check_config(&cfg, &format!("{base}[compute]\ndevice = \"auto\"\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("models will run on cpu"), "{stdout}");
}
