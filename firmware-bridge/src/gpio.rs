//! GPIO edges as triggers, through the Linux GPIO character device
//! (`/dev/gpiochipN`, uAPI v2 or v1) with the `gpiocdev` crate: a PIR sensor or a
//! door contact wired to the Pi's header. The kernel timestamps, filters (debounce)
//! and queues the edges; this thread only waits for them.

use std::time::{Duration, Instant};

use gpiocdev::line::{Bias, EdgeDetection};
use gpiocdev::Request;

use crate::config::{GpioBias, GpioConfig, GpioEdge};
use crate::source::{Backoff, Stop};

fn request(cfg: &GpioConfig) -> Result<Request, String> {
    let edge = match cfg.edge {
        GpioEdge::Rising => EdgeDetection::RisingEdge,
        GpioEdge::Falling => EdgeDetection::FallingEdge,
        GpioEdge::Both => EdgeDetection::BothEdges,
    };
    let bias = cfg.bias.map(|b| match b {
        GpioBias::PullUp => Bias::PullUp,
        GpioBias::PullDown => Bias::PullDown,
        GpioBias::Disabled => Bias::Disabled,
    });
    let mut b = Request::builder();
    b.on_chip(&cfg.chip)
        .with_consumer("owlet-bridge")
        .with_line(cfg.line)
        .as_input()
        .with_edge_detection(edge)
        .with_bias(bias);
    if cfg.debounce_ms > 0 {
        b.with_debounce_period(Duration::from_millis(cfg.debounce_ms.into()));
    }
    b.request().map_err(|e| format!("{} line {}: {e}", cfg.chip.display(), cfg.line))
}

/// Call `on_edge` for every edge until stopped; a chip that fails (or a line that
/// another program holds) is reported and requested again with backoff.
pub fn run(
    camera: &str,
    cfg: &GpioConfig,
    on_edge: &mut dyn FnMut(),
    on_failure: &mut dyn FnMut(&str),
    stop: &Stop,
) {
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let reason = match request(cfg) {
            Ok(req) => {
                log::info!(
                    "camera {camera}: GPIO trigger on {} line {} ({:?} edges)",
                    cfg.chip.display(),
                    cfg.line,
                    cfg.edge
                );
                match watch(&req, on_edge, stop) {
                    Ok(()) => return,
                    Err(e) => format!("{} line {}: {e}", cfg.chip.display(), cfg.line),
                }
            }
            Err(e) => e,
        };
        if stop.is_stopped() {
            return;
        }
        let delay = backoff.delay(started.elapsed());
        on_failure(&format!(
            "GPIO trigger of {camera}: {reason}; retrying in {:.1} s",
            delay.as_secs_f64()
        ));
        if !stop.sleep(delay) {
            return;
        }
    }
}

fn watch(req: &Request, on_edge: &mut dyn FnMut(), stop: &Stop) -> gpiocdev::Result<()> {
    while !stop.is_stopped() {
        // Wake up now and then to see the stop flag.
        if req.wait_edge_event(Duration::from_millis(250))? {
            let ev = req.read_edge_event()?;
            log::debug!("GPIO edge {:?} at {} ns", ev.kind, ev.timestamp_ns);
            on_edge();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chip_is_reported_by_name_and_retried_until_stopped() {
        let cfg = GpioConfig {
            chip: "/dev/gpiochip-owlet-none".into(),
            line: 17,
            edge: GpioEdge::Rising,
            bias: Some(GpioBias::PullDown),
            debounce_ms: 20,
        };
        let stop = Stop::default();
        let s = stop.clone();
        let mut failures = Vec::new();
        run(
            "door",
            &cfg,
            &mut || panic!("no edge can come"),
            &mut |why| {
                failures.push(why.to_string());
                s.stop();
            },
            &stop,
        );
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].contains("/dev/gpiochip-owlet-none line 17")
                && failures[0].contains("door"),
            "{}",
            failures[0]
        );
    }
}
