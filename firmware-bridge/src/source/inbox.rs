//! A camera's inbox: where its source, triggers and commands meet its worker.
//!
//! A live source never waits for inference: a new frame replaces the one waiting
//! (the newest wins) and the replaced one is counted as dropped. Still files are
//! different: each one is wanted, so a folder source waits for its turn instead.
//! Triggers that fire while the worker is busy are remembered, not lost.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::Frame;
use crate::commands::WorkerCommand;

#[derive(Default)]
pub struct InboxState {
    pub frame: Option<Frame>,
    /// Frames replaced before the worker took them.
    pub dropped: u64,
    /// Motion was seen since the worker last looked.
    pub motion: bool,
    /// Line-trigger lines since the worker last looked.
    pub lines: u32,
    pub commands: VecDeque<WorkerCommand>,
    /// The source has delivered everything it ever will (still files).
    pub source_done: bool,
    pub stop: bool,
}

#[derive(Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
    changed: Condvar,
}

impl Inbox {
    pub fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut InboxState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// A live frame: replaces any waiting one.
    pub fn offer(&self, frame: Frame) {
        self.update(|s| {
            if s.frame.replace(frame).is_some() {
                s.dropped += 1;
            }
        });
    }

    /// A still: waits until the worker has taken the previous one. False on stop.
    pub fn offer_and_wait(&self, frame: Frame) -> bool {
        let mut s = self.lock();
        while s.frame.is_some() && !s.stop {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.stop {
            return false;
        }
        s.frame = Some(frame);
        drop(s);
        self.changed.notify_all();
        true
    }

    pub fn motion(&self) {
        self.update(|s| s.motion = true);
    }

    pub fn line(&self) {
        self.update(|s| s.lines += 1);
    }

    /// Queue a command; at most `limit` wait, further ones are refused (returned).
    pub fn command(&self, cmd: WorkerCommand, limit: usize) -> Result<(), WorkerCommand> {
        let mut s = self.lock();
        if s.commands.len() >= limit {
            return Err(cmd);
        }
        s.commands.push_back(cmd);
        drop(s);
        self.changed.notify_all();
        Ok(())
    }

    pub fn source_done(&self) {
        self.update(|s| s.source_done = true);
    }

    pub fn stop(&self) {
        self.update(|s| s.stop = true);
    }

    /// Wait for a change, at most `timeout`.
    pub fn wait<'a>(
        &'a self,
        guard: MutexGuard<'a, InboxState>,
        timeout: Duration,
    ) -> MutexGuard<'a, InboxState> {
        self.changed.wait_timeout(guard, timeout).unwrap_or_else(|e| e.into_inner()).0
    }

    /// Wake anyone waiting (after the worker took a frame).
    pub fn notify(&self) {
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::SystemTime;

    fn frame(n: u32) -> Frame {
        Frame {
            camera: "c".into(),
            origin: n.to_string(),
            captured: SystemTime::now(),
            bytes: vec![],
            event_id: None,
        }
    }

    #[test]
    fn the_newest_live_frame_wins_and_the_rest_are_counted() {
        let inbox = Inbox::default();
        for i in 0..5 {
            inbox.offer(frame(i));
        }
        let s = inbox.lock();
        assert_eq!(s.frame.as_ref().unwrap().origin, "4");
        assert_eq!(s.dropped, 4);
    }

    #[test]
    fn stills_wait_for_the_worker_instead_of_being_dropped() {
        let inbox = Arc::new(Inbox::default());
        let producer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || (0..20).all(|i| inbox.offer_and_wait(frame(i))))
        };
        let mut got = Vec::new();
        while got.len() < 20 {
            let mut s = inbox.lock();
            if let Some(f) = s.frame.take() {
                got.push(f.origin);
                drop(s);
                inbox.notify();
                std::thread::sleep(Duration::from_millis(1));
            } else {
                let _s = inbox.wait(s, Duration::from_millis(50));
            }
        }
        assert!(producer.join().unwrap());
        assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(inbox.lock().dropped, 0);
    }
}
