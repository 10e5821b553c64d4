//! Frames over HTTP: an MJPEG stream (multipart/x-mixed-replace, as ESP32-CAM
//! firmware, motion and ffmpeg's mpjpeg muxer serve it) or a snapshot URL polled
//! at an interval. Plain HTTP: these cameras live on the local network.

use std::time::{Duration, Instant, SystemTime};

use super::{pump_mjpeg, Backoff, Frame, SourceEvents, Stop};

/// Largest snapshot accepted.
pub(super) const MAX_SNAPSHOT: u64 = 16 << 20;

/// The HTTP client of the sources that fetch over HTTP (cameras, Frigate).
pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(Duration::from_secs(10)))
        .http_status_as_error(true)
        .build()
        .into()
}

/// Follow an MJPEG stream, reconnecting with backoff when it breaks.
pub fn run_mjpeg(camera: &str, url: &str, events: &mut dyn SourceEvents, stop: &Stop) {
    let agent = agent();
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let reason = match agent.get(url).call() {
            Ok(resp) => {
                let ctype = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if !ctype.is_empty()
                    && !ctype.starts_with("multipart/")
                    && !ctype.starts_with("image/jpeg")
                    && !ctype.starts_with("application/octet-stream")
                {
                    format!("{url}: content type {ctype:?} is not an MJPEG stream")
                } else {
                    let body = resp.into_body().into_reader();
                    match pump_mjpeg(camera, url, body, events, stop) {
                        Ok(n) => format!("{url}: stream ended after {n} frame(s)"),
                        Err(e) => format!("{url}: {e}"),
                    }
                }
            }
            Err(e) => format!("{url}: {e}"),
        };
        if stop.is_stopped() {
            return;
        }
        let delay = backoff.delay(started.elapsed());
        events.failed(&format!("{reason}; reconnecting in {:.1} s", delay.as_secs_f64()));
        if !stop.sleep(delay) {
            return;
        }
    }
}

/// Fetch a snapshot every `interval`. Failures are reported once per outage.
pub fn run_snapshot(
    camera: &str,
    url: &str,
    interval: Duration,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) {
    let agent = agent();
    let mut failing = false;
    let mut n = 0u64;
    loop {
        let t = Instant::now();
        let got = agent.get(url).call().map_err(|e| e.to_string()).and_then(|resp| {
            resp.into_body()
                .with_config()
                .limit(MAX_SNAPSHOT)
                .read_to_vec()
                .map_err(|e| e.to_string())
        });
        match got {
            Ok(bytes) => {
                failing = false;
                n += 1;
                let frame = Frame {
                    camera: camera.into(),
                    origin: format!("{url}#{n}"),
                    captured: SystemTime::now(),
                    bytes,
                    event_id: None,
                };
                if !events.frame(frame) {
                    return;
                }
            }
            Err(e) if !failing => {
                failing = true;
                events.failed(&format!("{url}: {e}"));
            }
            Err(_) => {}
        }
        if !stop.sleep(interval.saturating_sub(t.elapsed())) {
            return;
        }
    }
}
