//! A child process writing MJPEG to stdout: the portable way to reach libcamera
//! (`rpicam-vid --codec mjpeg -o -`), GStreamer (`... ! jpegenc ! fdsink`), RTSP
//! cameras and V4L2 devices (`ffmpeg -i rtsp://... -f mjpeg -`). Also the child
//! behind a line trigger (`gpiomon`, a serial port reader).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{pump_mjpeg, Backoff, SourceEvents, Stop};

/// A running child, killed when the bridge stops or when this is dropped. Its
/// stderr is logged at debug level; the last line is kept for error reports.
pub struct Supervised {
    child: Arc<Mutex<Child>>,
    last_stderr: Arc<Mutex<String>>,
    program: String,
}

impl Supervised {
    pub fn spawn(argv: &[String], stop: &Stop) -> std::io::Result<(Supervised, ChildStdout)> {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", argv[0]))
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let last_stderr = Arc::new(Mutex::new(String::new()));
        let program = argv[0].clone();
        {
            let last = last_stderr.clone();
            let program = program.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log::debug!("{program}: {line}");
                    if !line.trim().is_empty() {
                        *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
                    }
                }
            });
        }
        let child = Arc::new(Mutex::new(child));
        {
            // Reads block; killing the child on stop is what ends them.
            let child = child.clone();
            let stop = stop.clone();
            std::thread::spawn(move || loop {
                {
                    let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
                    if stop.is_stopped() {
                        let _ = c.kill();
                        let _ = c.wait();
                        return;
                    }
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            });
        }
        Ok((Supervised { child, last_stderr, program }, stdout))
    }

    /// Why the child is gone: its exit status and last stderr line.
    pub fn finish(&self) -> String {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let status = c.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let last = self.last_stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if last.is_empty() {
            format!("{} exited ({status})", self.program)
        } else {
            format!("{} exited ({status}): {last}", self.program)
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A camera child (ffmpeg, rpicam-vid) holds the camera device: one left behind
/// by a bridge that was killed keeps the restarted bridge from opening it. On
/// Linux the kernel sends the child SIGTERM when the thread that started it ends,
/// whatever ended it (SIGKILL included); the source threads live as long as their
/// camera, and a restart starts the new child from the same thread.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, _exit), allocating nothing.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody would tell us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// Run the MJPEG child, restarting it with backoff when it exits (if `restart`).
pub fn run(
    camera: &str,
    argv: &[String],
    restart: bool,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) {
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let reason = match Supervised::spawn(argv, stop) {
            Ok((child, stdout)) => {
                let r = pump_mjpeg(camera, &argv[0], stdout, events, stop);
                let why = child.finish();
                match r {
                    Ok(n) => format!("{why} after {n} frame(s)"),
                    Err(e) => format!("{why}; reading its output: {e}"),
                }
            }
            Err(e) => e.to_string(),
        };
        if stop.is_stopped() {
            return;
        }
        if !restart {
            log::info!("camera {camera}: {reason}; not restarted (restart = false)");
            return;
        }
        let delay = backoff.delay(started.elapsed());
        events.failed(&format!("{reason}; restarting in {:.1} s", delay.as_secs_f64()));
        if !stop.sleep(delay) {
            return;
        }
    }
}

/// A line trigger: every line the child writes calls `on_line`. Restarted with
/// backoff when it exits.
pub fn run_lines(
    camera: &str,
    argv: &[String],
    on_line: &mut dyn FnMut(&str),
    on_failure: &mut dyn FnMut(&str),
    stop: &Stop,
) {
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let reason = match Supervised::spawn(argv, stop) {
            Ok((child, stdout)) => {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                // Bounded lines: a device spewing bytes without newlines cannot grow this.
                loop {
                    line.clear();
                    match (&mut reader).take(4096).read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => on_line(String::from_utf8_lossy(&line).trim()),
                        Err(_) => break,
                    }
                    if stop.is_stopped() {
                        return;
                    }
                }
                child.finish()
            }
            Err(e) => e.to_string(),
        };
        if stop.is_stopped() {
            return;
        }
        let delay = backoff.delay(started.elapsed());
        on_failure(&format!(
            "line trigger of {camera}: {reason}; restarting in {:.1} s",
            delay.as_secs_f64()
        ));
        if !stop.sleep(delay) {
            return;
        }
    }
}

use std::io::Read as _;
