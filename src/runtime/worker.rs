//! What a worker is: a small struct that owns its loop. The supervisor builds a fresh one from a
//! factory for every (re)spawn, runs it on its own named thread, and hands it a [`WorkerCtx`]
//! with a stop signal and a heartbeat. Anything that must survive a panic (positions, the tick
//! cache, channel ends) is captured by the factory from outside and shared, never owned by the
//! worker value alone.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// A worker's loop. `run` returns `Ok(())` when it was asked to stop (or has nothing more to
/// do); an `Err` or a panic is a failure that the supervisor answers with a restart.
pub trait Worker: Send {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()>;
}

impl<F> Worker for F
where
    F: FnMut(&WorkerCtx) -> anyhow::Result<()> + Send,
{
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        self(ctx)
    }
}

/// Milliseconds since the first call in this process, from the monotonic clock. Heartbeats and
/// ages use this, never the wall clock, so a clock step cannot make a worker look stuck.
pub fn monotonic_millis() -> u64 {
    monotonic_millis_at(Instant::now())
}

/// [`monotonic_millis`] of an instant the caller has already read (no clock read here).
pub fn monotonic_millis_at(at: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*ORIGIN.get_or_init(Instant::now)).as_millis() as u64 + 1
}

/// The receiving half of a stop request. Cheap to clone. `channel()` is disconnected once stop
/// has been requested, so a worker can `select!` on it next to its work channels.
#[derive(Clone, Debug)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    rx: Receiver<()>,
}

/// The sending half: requesting a stop sets the flag and disconnects the channel.
#[derive(Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    tx: Mutex<Option<Sender<()>>>,
}

impl StopSignal {
    pub fn new() -> (StopHandle, StopSignal) {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded(0);
        (StopHandle { flag: flag.clone(), tx: Mutex::new(Some(tx)) }, StopSignal { flag, rx })
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// A channel that never carries a message and disconnects on stop: use it in `select!`.
    pub fn channel(&self) -> &Receiver<()> {
        &self.rx
    }

    /// Sleeps up to `d`, waking early on stop. Returns `false` when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        if self.is_stopped() {
            return false;
        }
        let _ = self.rx.recv_timeout(d);
        !self.is_stopped()
    }
}

impl StopHandle {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        self.tx.lock().take();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// A worker's heartbeat: the monotonic time of its last beat. Shared between the worker (which
/// beats) and the supervisor (which reads the age); it outlives respawns.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat(Arc::new(AtomicU64::new(0)))
    }

    pub fn beat(&self) {
        self.0.store(monotonic_millis(), Ordering::Release);
    }

    /// A beat at an instant the caller has read.
    pub fn beat_at(&self, at: Instant) {
        self.0.store(monotonic_millis_at(at), Ordering::Release);
    }

    /// Time since the last beat, or `None` if it never beat.
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            last => Some(Duration::from_millis(monotonic_millis().saturating_sub(last))),
        }
    }
}

thread_local! {
    static THREAD_HEARTBEAT: std::cell::RefCell<Option<Heartbeat>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes `heartbeat` the one [`beat_current_thread`] beats on this thread (the supervisor does
/// it for each worker thread it spawns).
pub fn bind_heartbeat_to_thread(heartbeat: &Heartbeat) {
    THREAD_HEARTBEAT.with(|h| *h.borrow_mut() = Some(heartbeat.clone()));
}

/// Beats the heartbeat of the worker running on this thread, if any. For code below a worker
/// that blocks on its behalf for a bounded, legitimate wait (the rate limiter waiting for a
/// slot), so that the wait does not count against the worker's stuck limit.
pub fn beat_current_thread() {
    THREAD_HEARTBEAT.with(|h| {
        if let Some(h) = h.borrow().as_ref() {
            h.beat();
        }
    });
}

/// What a running worker receives from the supervisor.
#[derive(Clone, Debug)]
pub struct WorkerCtx {
    name: Arc<str>,
    stop: StopSignal,
    heartbeat: Heartbeat,
    beat_every: Duration,
}

impl WorkerCtx {
    pub fn new(
        name: &str,
        stop: StopSignal,
        heartbeat: Heartbeat,
        beat_every: Duration,
    ) -> WorkerCtx {
        WorkerCtx { name: Arc::from(name), stop, heartbeat, beat_every }
    }

    /// A context for running a worker by hand (tests, one-shot commands): never stopped unless
    /// the returned handle says so.
    pub fn standalone(name: &str) -> (StopHandle, WorkerCtx) {
        let (handle, stop) = StopSignal::new();
        (handle, WorkerCtx::new(name, stop, Heartbeat::new(), Duration::from_millis(250)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn should_stop(&self) -> bool {
        self.stop.is_stopped()
    }

    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Disconnects on stop; for `select!`.
    pub fn stopped(&self) -> &Receiver<()> {
        self.stop.channel()
    }

    pub fn beat(&self) {
        self.heartbeat.beat();
    }

    /// [`WorkerCtx::beat`] at an instant the caller has read (no clock read).
    pub fn beat_at(&self, at: Instant) {
        self.heartbeat.beat_at(at);
    }

    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    /// How long a worker may block waiting for work before it should beat again: a quarter of
    /// its declared heartbeat limit. Use it as the timeout of blocking receives.
    pub fn beat_every(&self) -> Duration {
        self.beat_every
    }

    /// Sleeps up to `d`, beating, waking early on stop. Returns `false` when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        self.beat();
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return !self.should_stop();
            }
            if !self.stop.sleep((deadline - now).min(self.beat_every)) {
                return false;
            }
            self.beat();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_disconnects_the_channel_and_wakes_sleepers() {
        let (handle, ctx) = WorkerCtx::standalone("t");
        let t = std::thread::spawn(move || ctx.sleep(Duration::from_secs(60)));
        handle.stop();
        assert!(!t.join().unwrap(), "sleep reports the stop");
    }

    #[test]
    fn heartbeat_age_is_none_until_the_first_beat() {
        let hb = Heartbeat::new();
        assert!(hb.age().is_none());
        hb.beat();
        assert!(hb.age().unwrap() < Duration::from_secs(5));
    }
}
