//! Whether the pool's threads spin while a plan runs ([`PoolSpin`]).
//!
//! Spinning between a plan's products saves each product the wake-up of a sleeping
//! thread (12-23 µs; BENCHMARKS.md, session 10). But on a board the camera's process
//! and the OS run on the same cores: a spinning thread on a shared core takes its
//! time slices from them, and a product split across the pool waits for whichever
//! half the OS has paused. Measured with ffmpeg busy on one of two cores (benches/
//! shared_cpu.py), spinning made owlet 1.6-3.7x slower than on a quiet machine,
//! sleeping 1.3-2.1x (onnxruntime: 1.7-2.2x), but sleeping costs up to 1.3x on a quiet
//! machine.
//!
//! So under [`PoolSpin::WhileCoresFree`] each spinning plan measures the CPU time its
//! threads got against the time they were there for (wall time x threads), summed
//! over a [`WINDOW`] of plans. Below [`SHARED_BELOW`] for [`SHARED_WINDOWS`] windows in
//! a row, the cores are shared: the threads sleep between products, and every
//! [`RETRY_EVERY`] they spin for one window again to see whether the cores are free.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::options::PoolSpin;

/// The share of the pool's time its threads ran below which a window counts as
/// shared. A quiet machine measures 0.97-1.0 (spinning threads are always running);
/// one core of two busy elsewhere, about 0.5-0.75.
pub(crate) const SHARED_BELOW: f64 = 0.85;

/// Plans are judged together, a window at a time, until they add up to this much
/// wall time: one time slice lost in a short plan does not decide.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// Shared windows in a row that make the cores count as shared: a process that
/// wakes for a moment (or a host that pauses this machine) is not one that stays.
pub(crate) const SHARED_WINDOWS: u32 = 2;

/// How long the pool sleeps between retries while the cores are shared. A retry
/// spins for one window and judges it.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(2);

/// What one spinning plan measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanShare {
    /// CPU time the pool's threads got while the plan ran.
    pub cpu: Duration,
    /// The plan's wall time.
    pub wall: Duration,
    /// Threads that were there for it (the plan's own and its helpers).
    pub threads: u32,
}

/// Where the decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cores {
    /// The pool's own: spin. `low` windows in a row measured shared so far.
    Free { low: u32 },
    /// Shared since `since` (or the last retry): sleep until `RETRY_EVERY` after it.
    Shared { since: Instant },
    /// A retry: spin for a window and judge it.
    Retrying,
}

/// The decision and the window being filled.
#[derive(Debug)]
pub(crate) struct SpinState {
    cores: Cores,
    /// CPU time, capacity (wall x threads) and wall time of the window so far.
    cpu: Duration,
    capacity: Duration,
    wall: Duration,
}

impl SpinState {
    pub(crate) const fn new() -> SpinState {
        SpinState {
            cores: Cores::Free { low: 0 },
            cpu: Duration::ZERO,
            capacity: Duration::ZERO,
            wall: Duration::ZERO,
        }
    }

    /// Whether the next plan's helpers spin (under `WhileCoresFree`: yes unless the
    /// cores are shared, and then for a window every `RETRY_EVERY`).
    pub(crate) fn spin(&mut self, policy: PoolSpin, now: Instant) -> bool {
        match policy {
            PoolSpin::Always => true,
            PoolSpin::Off => false,
            PoolSpin::WhileCoresFree => match self.cores {
                Cores::Free { .. } | Cores::Retrying => true,
                Cores::Shared { since } if now.duration_since(since) >= RETRY_EVERY => {
                    self.cores = Cores::Retrying;
                    true
                }
                Cores::Shared { .. } => false,
            },
        }
    }

    /// Takes a spinning plan's measure into the window; when the window is full,
    /// judges it. Returns the window's share when the decision changed (for the log).
    pub(crate) fn observe(&mut self, plan: PlanShare, now: Instant) -> Option<f64> {
        self.cpu += plan.cpu;
        self.capacity += plan.wall * plan.threads;
        self.wall += plan.wall;
        if self.wall < WINDOW {
            return None;
        }
        let share = self.cpu.as_secs_f64() / self.capacity.as_secs_f64().max(1e-9);
        (self.cpu, self.capacity, self.wall) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let low = share < SHARED_BELOW;
        let (next, changed) = match (self.cores, low) {
            (Cores::Free { low: n }, true) if n + 1 >= SHARED_WINDOWS => {
                (Cores::Shared { since: now }, true)
            }
            (Cores::Free { low: n }, true) => (Cores::Free { low: n + 1 }, false),
            (Cores::Free { .. }, false) => (Cores::Free { low: 0 }, false),
            (Cores::Retrying, true) => (Cores::Shared { since: now }, false),
            (Cores::Retrying, false) => (Cores::Free { low: 0 }, true),
            // Plans that began spinning before the cores were judged shared.
            (shared @ Cores::Shared { .. }, _) => (shared, false),
        };
        self.cores = next;
        changed.then_some(share)
    }

    /// Whether the cores count as shared now.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> bool {
        !matches!(self.cores, Cores::Free { .. })
    }
}

/// The process's state (the pool is process-wide).
pub(crate) static STATE: Mutex<SpinState> = Mutex::new(SpinState::new());

/// Whether the next plan's helpers spin, under the installed options.
pub(crate) fn spin_now() -> bool {
    let policy = crate::options::current().pool_spin;
    STATE.lock().unwrap_or_else(|p| p.into_inner()).spin(policy, Instant::now())
}

/// A spinning plan's measure, logged when the decision changes.
pub(crate) fn observe(plan: PlanShare) {
    if crate::options::current().pool_spin != PoolSpin::WhileCoresFree {
        return; // told to spin or not, whatever the measure
    }
    log::trace!("pool: plan of {:?} x {} threads ran {:?}", plan.wall, plan.threads, plan.cpu);
    let changed = STATE.lock().unwrap_or_else(|p| p.into_inner()).observe(plan, Instant::now());
    match changed {
        Some(share) if share < SHARED_BELOW => log::info!(
            "pool: its threads ran {:.0}% of the time they were there for: the cores are \
             shared with another process, so they sleep between products (retried every {:?})",
            share * 100.0,
            RETRY_EVERY
        ),
        Some(share) => log::info!(
            "pool: its threads ran {:.0}% of the time: the cores are free, they spin",
            share * 100.0
        ),
        None => {}
    }
}

/// CPU time of the calling thread, where the OS says it (None elsewhere: then the
/// pool counts as having its cores).
pub(crate) fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
        ok.then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ms: u64, cpu_ms: u64) -> PlanShare {
        PlanShare {
            cpu: Duration::from_millis(cpu_ms),
            wall: Duration::from_millis(ms),
            threads: 2,
        }
    }

    #[test]
    fn shared_cores_stop_the_spinning_until_a_retry_finds_them_free() {
        let policy = PoolSpin::WhileCoresFree;
        let mut s = SpinState::new();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(s.spin(policy, t0));
        // Quiet windows: both threads ran all along.
        assert_eq!(s.observe(plan(60, 120), t0), None, "half a window decides nothing");
        assert_eq!(s.observe(plan(60, 120), t0), None, "a full window, no change");
        // One window with a thread paused for 60 ms (a host's hiccup), then quiet.
        assert_eq!(s.observe(plan(100, 140), at(100)), None);
        assert_eq!(s.observe(plan(100, 200), at(200)), None);
        assert!(!s.shared(), "one low window is not shared cores");
        // One thread ran half the time, window after window: 75% of the pool's time.
        assert_eq!(s.observe(plan(100, 150), at(300)), None);
        let share = s.observe(plan(100, 150), at(400));
        assert!(share.is_some_and(|x| (x - 0.75).abs() < 1e-9), "{share:?}");
        assert!(s.shared());
        assert!(!s.spin(policy, at(401)), "shared: sleep");
        assert!(!s.spin(policy, at(2399)));
        assert!(s.spin(policy, at(2400)), "a retry after RETRY_EVERY");
        assert!(s.spin(policy, at(2401)), "a retry spins for a whole window");
        // The retry's window is still shared: asleep again for RETRY_EVERY.
        assert_eq!(s.observe(plan(100, 140), at(2500)), None);
        assert!(!s.spin(policy, at(2600)) && !s.spin(policy, at(4499)));
        assert!(s.spin(policy, at(4500)));
        // This retry finds them free: spinning again, every plan.
        assert_eq!(s.observe(plan(50, 100), at(4550)), None);
        assert_eq!(s.observe(plan(50, 100), at(4600)), Some(1.0));
        assert!(!s.shared());
        assert!(s.spin(policy, at(4601)) && s.spin(policy, at(4602)));
    }

    #[test]
    fn always_and_off_ignore_the_measure() {
        let mut s = SpinState::new();
        let t0 = Instant::now();
        s.observe(plan(100, 100), t0);
        s.observe(plan(100, 100), t0);
        assert!(s.shared());
        assert!(s.spin(PoolSpin::Always, t0));
        assert!(!s.spin(PoolSpin::Off, t0 + RETRY_EVERY * 2));
    }

    #[cfg(unix)]
    #[test]
    fn a_spinning_thread_reads_its_own_cpu_time() {
        let Some(before) = thread_cpu() else {
            panic!("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed on this unix");
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let ran = thread_cpu().unwrap() - before;
        // Busy for 20 ms of wall time: most of it on the CPU, never more.
        assert!(ran >= Duration::from_millis(5) && ran <= Duration::from_millis(25), "{ran:?}");
    }
}
