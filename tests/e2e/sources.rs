//! Frames from real producers reach labels and captions: ffmpeg as a child process
//! and as an HTTP MJPEG server, a watched folder; motion and line triggers; corrupt
//! frames inside a stream. No broker: the bridge prints what it publishes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_e2e::broker::*;
use owlet_e2e::*;

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

fn config(dir: &Path, camera: &str) -> PathBuf {
    let p = dir.join("bridge.toml");
    let text = format!(
        "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"cat\", \"rocket\", \"test pattern\"]\n[blip2]\nmodel = \"{}\"\nmax_new_tokens = 4\n{camera}",
        dir.join("state").display(),
        clip_bundle(),
        blip2_bundle()
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn ffmpeg_child_process_frames_reach_labels_and_captions_on_an_interval() {
    let dir = tmp("owlet-e2e-proc-");
    let cmd = toml_list(&ffmpeg_mjpeg("testsrc=size=320x240", 10, None));
    let cfg = config(dir.path(), &format!("[[cameras]]\nname = \"cam\"\nsource = {{ kind = \"process\", command = {cmd} }}\ntriggers = {{ interval_s = 0.3 }}\n"));
    let mut d = Daemon::start(&cfg);
    d.wait_printed("3 captions", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/caption")).count() >= 3
    });
    assert!(d.terminate(Duration::from_secs(30)).success());
    let labels = d.printed_on("/cam/labels");
    assert!(labels.len() >= 3);
    let frames: Vec<u64> = labels
        .iter()
        .map(|l| {
            let j = l.json();
            assert_eq!(j["trigger"], "interval");
            j["frame"].as_str().unwrap().rsplit('#').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "newer frames each time: {frames:?}");
    // 10 fps and an analysis every 0.3 s: frames in between were skipped, not queued.
    assert!(frames.last().unwrap() - frames[0] >= 2 * (frames.len() as u64 - 1), "{frames:?}");
    let skipped: u64 =
        labels.iter().skip(1).map(|l| l.json()["frames_skipped"].as_u64().unwrap()).sum();
    assert_eq!(
        skipped,
        frames.last().unwrap() - frames[0] - (frames.len() as u64 - 1),
        "skipped frames are counted"
    );
}

#[test]
fn an_http_mjpeg_stream_from_ffmpegs_server_reaches_labels() {
    let dir = tmp("owlet-e2e-http-");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/stream.mjpg");
    // ffmpeg's own HTTP server with its multipart (mpjpeg) muxer: what ESP32-CAM serves.
    let mut server = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-f",
            "mpjpeg",
            "-q:v",
            "5",
            "-listen",
            "1",
            &url,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg is installed (scripts/test installs it)");
    // No probing the port: `-listen 1` serves a single client and then exits. The
    // bridge retries with backoff until the server is up.
    let cfg = config(dir.path(), &format!("[[cameras]]\nname = \"esp\"\ncaptions = false\nsource = {{ kind = \"http_mjpeg\", url = \"{url}\" }}\ntriggers = {{ interval_s = 0.2 }}\n"));
    let mut d = Daemon::start(&cfg);
    let got = d.wait_printed("3 labels", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/esp/labels")).count() >= 3
    });
    assert!(d.terminate(Duration::from_secs(30)).success());
    let _ = server.kill();
    let _ = server.wait();
    let l = got.iter().find(|m| m.topic.ends_with("/esp/labels")).unwrap().json();
    assert!(l["frame"].as_str().unwrap().starts_with(&url), "{l}");
    assert!(d.printed_on("/esp/error").is_empty());
}

#[test]
fn corrupt_jpegs_inside_a_stream_are_reported_and_the_good_frames_around_them_analysed() {
    let dir = tmp("owlet-e2e-corrupt-");
    let good = repo().join("models/demo-frames/rocket.jpg");
    let bytes = std::fs::read(&good).unwrap();
    // A frame that splits fine (SOI..EOI) but whose entropy-coded data turns into
    // garbage (a bit-error burst on a serial link), and at the end one cut short.
    let mut broken = bytes[..bytes.len() / 3].to_vec();
    broken.extend(std::iter::repeat_n(0x55u8, 4000));
    broken.extend_from_slice(&[0xFF, 0xD9]);
    std::fs::write(dir.path().join("broken.jpg"), &broken).unwrap();
    std::fs::write(dir.path().join("good.jpg"), &bytes).unwrap();
    let script = format!(
        "cd {}; for f in good.jpg broken.jpg good.jpg; do cat $f; sleep 0.6; done; head -c 3000 good.jpg; printf 'GARBAGE\\377\\330'",
        dir.path().display()
    );
    let cfg = config(
        dir.path(),
        &format!("[[cameras]]\nname = \"flaky\"\ncaptions = false\nsource = {{ kind = \"process\", command = [\"sh\", \"-c\", {script:?}], restart = false }}\ntriggers = {{ interval_s = 0.1 }}\n"),
    );
    let mut d = Daemon::start(&cfg);
    assert!(d.wait(Duration::from_secs(60)).success(), "{}", d.log());
    let labels = d.printed_on("/flaky/labels");
    let errors = d.printed_on("/flaky/error");
    assert_eq!(labels.len(), 2, "both good frames: {labels:?}");
    let frame_errors: Vec<_> =
        errors.iter().map(|e| e.json()).filter(|e| e["frame"].is_string()).collect();
    assert_eq!(frame_errors.len(), 1, "{errors:?}");
    assert!(
        frame_errors[0]["error"].as_str().unwrap().contains("#2"),
        "names the frame: {:?}",
        frame_errors[0]
    );
}

#[test]
fn motion_triggers_on_a_changing_scene_and_not_on_a_still_one() {
    let dir = tmp("owlet-e2e-motion-");
    // Two cameras: the game of life changes all the time; a flat colour never does.
    let life = toml_list(&ffmpeg_mjpeg(
        "life=size=160x120:mold=10:ratio=0.5:death_color=#000000:life_color=#ffffff",
        8,
        None,
    ));
    let still = toml_list(&ffmpeg_mjpeg("color=c=gray:size=160x120", 8, None));
    let cams = format!(
        "[[cameras]]\nname = \"busy\"\ncaptions = false\nsource = {{ kind = \"process\", command = {life} }}\ntriggers = {{ motion = {{ min_area = 0.02 }}, cooldown_s = 0.2 }}\n\
         [[cameras]]\nname = \"quiet\"\ncaptions = false\nsource = {{ kind = \"process\", command = {still} }}\ntriggers = {{ motion = {{}} }}\n"
    );
    let cfg = config(dir.path(), &cams);
    let mut d = Daemon::start(&cfg);
    d.wait_printed("motion results", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/busy/labels")).count() >= 3
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.terminate(Duration::from_secs(30)).success());
    assert!(d.printed_on("/busy/labels").iter().all(|l| l.json()["trigger"] == "motion"));
    // Each camera says OFF as it starts (clearing an ON a killed bridge left
    // retained); then only the busy one turns ON.
    let texts = |leaf: &str| d.printed_on(leaf).iter().map(|m| m.text()).collect::<Vec<_>>();
    assert_eq!(texts("/busy/motion")[..2], ["OFF", "ON"]);
    assert!(d.printed_on("/quiet/labels").is_empty());
    assert_eq!(texts("/quiet/motion"), ["OFF"]);
}

#[test]
fn a_line_trigger_process_and_a_watched_folder_each_cause_results() {
    let dir = tmp("owlet-e2e-line-");
    let watched = dir.path().join("incoming");
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::copy(repo().join("models/demo-frames/rocket.jpg"), watched.join("old.jpg")).unwrap();
    let stream = toml_list(&ffmpeg_mjpeg("testsrc=size=160x120", 10, None));
    // A PIR sensor as `gpiomon` would report it: one line per edge.
    let pir = r#"["sh", "-c", "sleep 1; echo 'event: RISING EDGE offset: 17'; sleep 1; echo 'event: RISING EDGE offset: 17'; sleep 60"]"#;
    let cams = format!(
        "[[cameras]]\nname = \"porch\"\ncaptions = false\nsource = {{ kind = \"process\", command = {stream} }}\ntriggers = {{ line = {pir} }}\n\
         [[cameras]]\nname = \"inbox\"\ncaptions = false\nsource = {{ kind = \"folder\", path = \"{}\", watch = true, poll_ms = 100 }}\n",
        watched.display()
    );
    let cfg = config(dir.path(), &cams);
    let mut d = Daemon::start(&cfg);
    d.wait_printed("two line results", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/porch/labels")).count() >= 2
    });
    std::fs::copy(repo().join("models/demo-frames/chelsea.png"), watched.join("new.png")).unwrap();
    let got = d.wait_printed("the new file's labels", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic.ends_with("/inbox/labels"))
    });
    assert!(d.terminate(Duration::from_secs(30)).success());
    assert!(d.printed_on("/porch/labels").iter().all(|l| l.json()["trigger"] == "line"));
    assert_eq!(d.printed_on("/porch/labels").len(), 2, "one result per line");
    let inbox: Vec<_> =
        got.iter().filter(|m| m.topic.ends_with("/inbox/labels")).map(|m| m.json()).collect();
    assert!(
        inbox.iter().all(|l| l["frame"].as_str().unwrap().ends_with("new.png")),
        "files present at start are not re-analysed: {inbox:?}"
    );
}

#[test]
fn a_snapshot_url_is_polled_and_a_failing_one_reported_once() {
    use std::io::{Read, Write};
    let dir = tmp("owlet-e2e-snap-");
    let jpeg = std::fs::read(repo().join("models/demo-frames/rocket.jpg")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // An ESP32-CAM's /capture: one JPEG per GET; /broken answers 500.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).unwrap_or(0);
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            if head.starts_with("GET /capture") {
                let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", jpeg.len());
                let _ = c.write_all(&jpeg);
            } else {
                let _ = c.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    let cams = format!(
        "[[cameras]]\nname = \"esp\"\ncaptions = false\nsource = {{ kind = \"http_snapshot\", url = \"http://127.0.0.1:{port}/capture\", interval_s = 0.2 }}\ntriggers = {{ interval_s = 0.2 }}\n\
         [[cameras]]\nname = \"dead\"\ncaptions = false\nsource = {{ kind = \"http_snapshot\", url = \"http://127.0.0.1:{port}/broken\", interval_s = 0.2 }}\ntriggers = {{ interval_s = 0.2 }}\n"
    );
    let cfg = config(dir.path(), &cams);
    let mut d = Daemon::start(&cfg);
    d.wait_printed("3 snapshot results", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/esp/labels")).count() >= 3
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.terminate(Duration::from_secs(30)).success());
    let l = d.printed_on("/esp/labels")[0].json();
    assert!(l["frame"].as_str().unwrap().contains("/capture#"), "{l}");
    let errors = d.printed_on("/dead/error");
    assert_eq!(errors.len(), 1, "one report per outage, not one per poll: {errors:?}");
    assert!(errors[0].json()["error"].as_str().unwrap().contains("500"), "{:?}", errors[0].text());
}

fn ffmpeg_raw(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(program("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// What a webcam's YUYV mode delivers, made by ffmpeg (packed 4:2:2, limited range),
/// through the V4L2 source's conversion, is the picture ffmpeg itself sees in it.
#[test]
fn yuyv_camera_frames_become_jpegs_of_the_picture_ffmpeg_sees() {
    let (w, h) = (320usize, 240usize);
    let yuyv = ffmpeg_raw(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240",
        "-frames:v",
        "1",
        "-pix_fmt",
        "yuyv422",
        "-f",
        "rawvideo",
        "-",
    ]);
    assert_eq!(yuyv.len(), w * h * 2);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("frame.yuyv");
    std::fs::write(&raw, &yuyv).unwrap();
    let s = raw.to_str().unwrap();
    let rgb = ffmpeg_raw(&[
        "-f", "rawvideo", "-pix_fmt", "yuyv422", "-s", "320x240", "-i", s, "-pix_fmt", "rgb24",
        "-f", "rawvideo", "-",
    ]);

    let compare = |frame: &[u8], full_range: bool| -> (Vec<u8>, f64, f64) {
        let jpeg = owlet_bridge::source::v4l2::yuyv_to_jpeg(
            frame,
            w as u32,
            h as u32,
            2 * w as u32,
            full_range,
        )
        .unwrap();
        let ours =
            image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap().to_rgb8();
        assert_eq!(ours.dimensions(), (w as u32, h as u32));
        let diffs: Vec<f64> =
            ours.as_raw().iter().zip(&rgb).map(|(&a, &b)| (a as f64 - b as f64).abs()).collect();
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        let mse = diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64;
        (jpeg, mean, 10.0 * (255.0f64 * 255.0 / mse).log10())
    };
    let (jpeg, mean, psnr) = compare(&yuyv, false);
    // JPEG at quality 90 and another chroma upsampling than ffmpeg's, on a pattern
    // with sharp coloured edges: under 3 levels on average (seen: 2.7, 28.8 dB).
    assert!(mean < 3.5 && psnr > 26.0, "mean |diff| {mean:.2}, PSNR {psnr:.1} dB");
    // The comparison can tell: U and V swapped, or the range not stretched, are
    // clearly worse.
    let mut swapped = yuyv.clone();
    swapped.chunks_exact_mut(4).for_each(|p| p.swap(1, 3));
    let (_, mean_swapped, _) = compare(&swapped, false);
    let (_, mean_unstretched, _) = compare(&yuyv, true);
    assert!(
        mean_swapped > 3.0 * mean && mean_unstretched > 1.5 * mean,
        "swapped {mean_swapped:.2}, unstretched {mean_unstretched:.2}, right {mean:.2}"
    );

    // Rows padded by the driver (stride > 2 x width) give the same picture.
    let stride = 2 * w + 64;
    let mut padded = vec![0xAAu8; stride * h];
    for r in 0..h {
        padded[r * stride..r * stride + 2 * w].copy_from_slice(&yuyv[r * 2 * w..(r + 1) * 2 * w]);
    }
    let jpeg2 =
        owlet_bridge::source::v4l2::yuyv_to_jpeg(&padded, w as u32, h as u32, stride as u32, false)
            .unwrap();
    assert_eq!(jpeg, jpeg2);
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Running: it exists and is not a zombie waiting for whoever adopted it.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// Issue 26: a camera's child process (one that never writes, as a camera that
/// has not started yet) and a line trigger's end with the bridge, whether it is
/// stopped (SIGTERM) or killed (SIGKILL): one left behind would hold the camera
/// from the restarted bridge.
#[test]
fn a_cameras_child_processes_end_with_the_bridge_whether_stopped_or_killed() {
    for kill in [false, true] {
        let dir = tmp("owlet-e2e-children-");
        let cfg = config(
            dir.path(),
            "[[cameras]]\nname = \"cam\"\nsource = { kind = \"process\", command = [\"sleep\", \"1000\"] }\n\
             triggers = { line = [\"sleep\", \"1001\"] }\n",
        );
        let mut d = Daemon::start(&cfg);
        let pid = d.child.id();
        let end = std::time::Instant::now() + Duration::from_secs(60);
        let children = loop {
            let c = children_of(pid);
            if c.len() == 2 {
                break c;
            }
            assert!(std::time::Instant::now() < end, "children {c:?}; log:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        };
        if kill {
            d.child.kill().unwrap();
            d.child.wait().unwrap();
        } else {
            assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
        }
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while children.iter().any(|&c| running(c)) && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left: Vec<u32> = children.iter().copied().filter(|&c| running(c)).collect();
        for &c in &left {
            let _ = std::process::Command::new("kill").arg(c.to_string()).status();
        }
        assert!(left.is_empty(), "kill={kill}: {left:?} still running after the bridge");
    }
}

/// Issue 26: a still scene is captioned once. Every later frame's labels say the
/// caption was skipped and how close the frame was; none is captioned again.
#[test]
fn a_still_scene_is_captioned_once_and_each_skip_is_said_in_its_labels() {
    let dir = tmp("owlet-e2e-still-scene-");
    let cmd = toml_list(&ffmpeg_mjpeg("color=c=0x3366aa:size=160x120", 10, None));
    let cfg = config(
        dir.path(),
        &format!(
            "[[cameras]]\nname = \"cam\"\nskip_caption_above = 0.98\n\
             source = {{ kind = \"process\", command = {cmd} }}\ntriggers = {{ interval_s = 0.2 }}\n"
        ),
    );
    let mut d = Daemon::start(&cfg);
    d.wait_printed("5 results", Duration::from_secs(60), |m| {
        m.iter().filter(|m| m.topic.ends_with("/cam/labels")).count() >= 5
    });
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
    let labels = d.printed_on("/cam/labels");
    assert_eq!(d.printed_on("/cam/caption").len(), 1, "captioned once");
    assert!(labels[0].json().get("caption_skipped").is_none(), "the first is captioned");
    for l in &labels[1..] {
        let j = l.json();
        let cosine = j["caption_skipped"]["cosine"].as_f64().unwrap_or_else(|| panic!("{j}"));
        assert!(cosine >= 0.98, "{j}");
    }
}
