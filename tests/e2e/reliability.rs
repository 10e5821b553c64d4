//! Issue 22's cases against the real bridge and a real mosquitto: a full disk, and
//! stopping during a broker outage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owlet_e2e::broker::*;
use owlet_e2e::*;

/// A bridge config with one streaming camera (ffmpeg's test pattern, 10 analyses a
/// second) whose state lives in `state`.
fn streaming_config(dir: &Path, state: &Path, mqtt: &str) -> PathBuf {
    let p = dir.join("bridge.toml");
    let text = format!(
        "state_dir = \"{}\"\n[clip]\nmodel = \"{}\"\nlabels = [\"cat\", \"rocket\"]\n{mqtt}\n\
         [[cameras]]\nname = \"yard\"\nsource = {{ kind = \"process\", command = {} }}\n\
         triggers = {{ interval_s = 0.1 }}\n",
        state.display(),
        clip_bundle(),
        toml_list(&ffmpeg_mjpeg("testsrc=size=160x120", 15, None))
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The `seq` of every queued message received (results, events, answers, errors:
/// they share one counter per device; status and snapshots have none).
fn seqs_of(msgs: &[Received]) -> BTreeSet<u64> {
    msgs.iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

/// Every `(first_seq, last_seq)` range the bridge reported lost on its error topic.
fn reported_lost(errors: &[Received]) -> BTreeSet<u64> {
    let mut lost = BTreeSet::new();
    for e in errors {
        let v = e.json();
        if v["error"] == "results lost" {
            for r in v["lost"].as_array().unwrap() {
                let (a, b) = (r["first_seq"].as_u64().unwrap(), r["last_seq"].as_u64().unwrap());
                lost.extend(a..=b);
            }
        }
    }
    lost
}

/// Issue 22: with the disk full and the broker connected, 82 results were dropped
/// with no gap in `seq`. Now what the disk refuses is held in memory and delivered:
/// every result is received (or, past the memory's bound, reported lost).
#[test]
fn a_full_disk_loses_nothing_unaccounted_for_while_the_broker_comes_and_goes() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-fulldisk-").tempdir().unwrap();
    let disk = SmallDisk::new(4 << 20);
    let mut broker = Broker::start(dir.path(), "");
    let results = Subscriber::start(broker.port, "owlet/owlet/yard/labels", "e2e-full-results");
    let everything = Subscriber::start(broker.port, "owlet/owlet/#", "e2e-full-all");
    let errors = Subscriber::start(broker.port, "owlet/owlet/error", "e2e-full-errors");
    let cfg = streaming_config(
        dir.path(),
        &disk.path().join("state"),
        &format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\n", broker.port),
    );
    let mut d = Daemon::start(&cfg);
    results.wait_until("10 results", Duration::from_secs(60), |m| m.len() >= 10);

    // Full, with the broker there: results still arrive, held in memory.
    disk.fill();
    let wait_log = |what: &str, needle: &str| {
        let end = Instant::now() + Duration::from_secs(60);
        while !d.log().contains(needle) {
            assert!(Instant::now() < end, "no {what} in the log:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_log("a result held in memory", "held in memory");
    let n = results.all().len();
    results.wait_until("results while full", Duration::from_secs(30), |m| m.len() >= n + 10);

    // Full, with the broker away: results wait in memory.
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.is_running());
    disk.free();
    broker.restart();
    let after = results.all().iter().map(|m| m.json()["seq"].as_u64().unwrap()).max().unwrap();
    results.wait_until("results after the outage", Duration::from_secs(60), |m| {
        m.iter().any(|r| r.json()["seq"].as_u64().unwrap() > after + 10)
    });
    assert!(d.terminate(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(500));

    let received = seqs_of(&everything.all());
    let lost = reported_lost(&errors.all());
    assert!(lost.iter().all(|s| !received.contains(s)), "a result reported lost was received");
    let (first, last) = (*received.first().unwrap(), *received.last().unwrap());
    let unaccounted: Vec<u64> =
        (first..=last).filter(|s| !received.contains(s) && !lost.contains(s)).collect();
    assert!(lost.is_empty(), "a short outage on a full disk lost {lost:?}: memory holds 256 KiB");
    assert!(
        unaccounted.is_empty(),
        "seq neither received nor reported lost: {unaccounted:?}; the bridge's log:\n{}",
        d.log()
    );
    assert_contract(&everything.all());
}

/// Issue 22: SIGTERM during an outage took 12-30 s against `flush_timeout_s = 5`.
#[test]
fn stopping_during_a_broker_outage_honours_the_flush_timeout() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-outage-stop-").tempdir().unwrap();
    let cfg = streaming_config(
        dir.path(),
        &dir.path().join("state"),
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\nflush_timeout_s = 2\n",
            free_port()
        ),
    );
    let mut d = Daemon::start(&cfg);
    // Long enough for the reconnect backoff to grow past the flush timeout.
    let end = Instant::now() + Duration::from_secs(60);
    while !d.log().contains("unreachable") {
        assert!(Instant::now() < end, "no outage in the log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(12));
    let t = Instant::now();
    assert!(d.terminate(Duration::from_secs(30)).success());
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2 + 3),
        "took {took:?} to stop (flush_timeout_s = 2, plus the frame being analysed)"
    );
    assert!(d.log().contains("queued on disk"), "{}", d.log());
}

/// Issue 22: a retained 20 MB message on a command topic made the bridge reconnect
/// every 0.5 s forever, saying nothing.
#[test]
fn an_oversized_retained_command_is_reported_and_results_keep_flowing() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-oversized-").tempdir().unwrap();
    let broker = Broker::start(dir.path(), "");
    publish(broker.port, "owlet/owlet/yard/ask", &vec![b'x'; 20 << 20], true);
    let results = Subscriber::start(broker.port, "owlet/owlet/yard/labels", "e2e-big-results");
    let errors = Subscriber::start(broker.port, "owlet/owlet/error", "e2e-big-errors");
    let cfg = streaming_config(
        dir.path(),
        &dir.path().join("state"),
        &format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\n", broker.port),
    );
    let mut d = Daemon::start(&cfg);
    let said = errors.wait_until("the oversized message reported", Duration::from_secs(60), |m| {
        m.iter()
            .any(|e| e.json()["error"].as_str().is_some_and(|s| s.contains("mosquitto_pub -r -n")))
    });
    let text = said[0].json()["error"].as_str().unwrap().to_string();
    let size: usize = text.split(' ').nth(3).and_then(|n| n.parse().ok()).expect(&text);
    assert!(size >= 20 << 20 && text.contains("16 MiB limit"), "{text}");
    results.wait_until("30 results", Duration::from_secs(60), |m| m.len() >= 30);
    assert!(d.is_running());
    let reconnects = d.log().matches("reconnected").count();
    assert!(reconnects <= 1, "{reconnects} reconnections:\n{}", d.log());
    assert!(d.terminate(Duration::from_secs(30)).success());
    // The report of the oversized command, as the device error's type.
    assert_contract(&errors.all());
}

/// The bridge's resident memory in KiB (0 once it has exited).
fn rss_kib(d: &Daemon) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Issue 22's soak: a stream, the broker stopped and restarted, the bridge
/// SIGKILLed and restarted, the disk filled and freed, at random (seeded) for
/// OWLET_SOAK_SECONDS (scripts/test: 120; a longer run: README). At the end every
/// `seq` a subscriber saw between the first and the last is received or reported
/// lost, and the bridge's memory did not grow over its longest run.
/// OWLET_SOAK_KILLS=0 leaves the bridge running throughout (outages and full disks
/// only), so that its memory is watched over the whole run: issue 22's goal is under
/// 1 MB of growth per 10 minutes after warm-up.
///
/// One combination is left out: a SIGKILL while the disk is full. The results then
/// held in memory die with the process and their numbers are given again after the
/// restart (the counter could not be written): a known limit, in the README.
#[test]
fn a_soak_of_outages_kills_and_a_full_disk_leaves_no_result_unaccounted_for() {
    let seconds: u64 =
        std::env::var("OWLET_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let with_kills = std::env::var("OWLET_SOAK_KILLS").map_or(true, |v| v != "0");
    let dir = tempfile::Builder::new().prefix("owlet-e2e-soak-").tempdir().unwrap();
    let disk = SmallDisk::new(8 << 20);
    let mut broker = Broker::start(dir.path(), "");
    let results = Subscriber::start(broker.port, "owlet/owlet/yard/labels", "e2e-soak-results");
    let everything = Subscriber::start(broker.port, "owlet/owlet/#", "e2e-soak-all");
    let errors = Subscriber::start(broker.port, "owlet/owlet/error", "e2e-soak-errors");
    let cfg = streaming_config(
        dir.path(),
        &disk.path().join("state"),
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\nqueue_max_mb = 4\n",
            broker.port
        ),
    );
    let mut d = Daemon::start(&cfg);
    results.wait_until("the first results", Duration::from_secs(60), |m| m.len() >= 5);

    let mut rng = 0x2545_f491_4f6c_dd1du64; // xorshift: the same actions every run
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut kills, mut outages, mut fills) = (0, 0, 0);
    // The bridge's logs of every run, for the failure message.
    let mut logs = String::new();
    // Each uninterrupted run of the bridge: its start, its RSS after warm-up, its last
    // RSS, and the time between those two samples.
    let mut runs: Vec<(Instant, u64, u64, Duration)> = vec![(Instant::now(), 0, 0, Duration::ZERO)];
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let pause = Duration::from_millis(3000 + next(4000));
        let t = Instant::now();
        while t.elapsed() < pause {
            let run = runs.last_mut().unwrap();
            let rss = rss_kib(&d);
            if run.0.elapsed() > Duration::from_secs(15) && rss > 0 {
                if run.1 == 0 {
                    run.1 = rss;
                }
                run.2 = rss;
                run.3 = run.0.elapsed() - Duration::from_secs(15);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let action = if with_kills { next(3) } else { [0, 2][next(2) as usize] };
        match action {
            0 => {
                broker.stop();
                std::thread::sleep(Duration::from_millis(1000 + next(3000)));
                broker.restart();
                outages += 1;
            }
            1 => {
                d.child.kill().unwrap();
                d.child.wait().unwrap();
                logs.push_str(&d.log());
                d = Daemon::start(&cfg);
                runs.push((Instant::now(), 0, 0, Duration::ZERO));
                kills += 1;
            }
            _ => {
                disk.fill();
                std::thread::sleep(Duration::from_millis(1000 + next(3000)));
                disk.free();
                fills += 1;
            }
        }
        assert!(d.is_running(), "the bridge died:\n{}", d.log());
    }
    // Calm: everything queued goes out, then an orderly stop.
    let last = results.all().iter().filter_map(|m| m.json()["seq"].as_u64()).max().unwrap();
    results.wait_until("results after the soak", Duration::from_secs(60), |m| {
        m.iter().any(|r| r.json()["seq"].as_u64().unwrap() > last + 20)
    });
    assert!(d.terminate(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(500));

    let received = seqs_of(&everything.all());
    let lost = reported_lost(&errors.all());
    let (first, last) = (*received.first().unwrap(), *received.last().unwrap());
    let unaccounted: Vec<u64> =
        (first..=last).filter(|s| !received.contains(s) && !lost.contains(s)).collect();
    let longest = runs.iter().filter(|r| r.1 > 0).max_by_key(|r| r.3).copied();
    eprintln!(
        "soak: {seconds} s, {kills} bridge kills, {outages} broker outages, {fills} full disks; \
         results {first}..={last}: {} received, {} reported lost, {} unaccounted; \
         RSS over the longest run {:?} KiB ({:.0} s after warm-up: {:+.0} KiB per 10 minutes)",
        received.len(),
        lost.len(),
        unaccounted.len(),
        longest.map(|r| (r.1, r.2)),
        longest.map_or(0.0, |r| r.3.as_secs_f64()),
        longest.map_or(0.0, |r| (r.2 as f64 - r.1 as f64) * 600.0 / r.3.as_secs_f64().max(1.0)),
    );
    logs.push_str(&d.log());
    let context: Vec<&str> =
        logs.lines().filter(|l| !l.contains("owlet_runtime") && !l.contains("DEBUG")).collect();
    assert!(
        unaccounted.is_empty(),
        "seq neither received nor reported lost: {unaccounted:?}; the bridge's logs:\n{}",
        context.join("\n")
    );
    assert!(lost.iter().all(|s| !received.contains(s)), "a result reported lost was received");
    // Every result and every loss report, as the contract's types.
    assert_contract(&everything.all());
    if let Some((_, warm, end, watched)) = longest {
        assert!(end < warm + 8 * 1024, "RSS grew from {warm} to {end} KiB in one run");
        // Over ten minutes or more, the goal itself: under 1 MB per 10 minutes.
        let minutes = watched.as_secs_f64() / 60.0;
        if minutes >= 10.0 {
            let per_10_min = (end as f64 - warm as f64) * 10.0 / minutes;
            assert!(per_10_min < 1024.0, "RSS grew {per_10_min:.0} KiB per 10 minutes");
        }
    }
}
