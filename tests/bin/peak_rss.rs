//! `peak-rss CMD [ARG...]`: runs CMD with this process's standard streams, then
//! prints `peak_rss_kib=N` (CMD's peak resident set, from wait4) as the last line of
//! standard error and exits with CMD's status.
//!
//! Why a process of its own: Linux carries a parent's resident high-water mark into a
//! child across fork and exec (exec keeps the larger of the two in the child's
//! `ru_maxrss`), so a test runner or a Python benchmark that has itself grown large
//! would see its own size in every child it measures. Forked from this small process,
//! CMD's figure is its own.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(cmd) = args.next() else {
        eprintln!("usage: peak-rss CMD [ARG...]");
        return ExitCode::from(2);
    };
    let child = match Command::new(&cmd).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peak-rss: cannot start {}: {e}", cmd.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data for wait4 to fill; pid is this process's own
    // child, reaped here once (the std Child is never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        eprintln!("peak-rss: wait4: {}", std::io::Error::last_os_error());
        return ExitCode::from(125);
    }
    eprintln!("peak_rss_kib={}", usage.ru_maxrss);
    if libc::WIFEXITED(status) {
        ExitCode::from(libc::WEXITSTATUS(status) as u8)
    } else {
        eprintln!("peak-rss: {} ended by signal {}", cmd.to_string_lossy(), libc::WTERMSIG(status));
        ExitCode::from(128 + libc::WTERMSIG(status) as u8)
    }
}
