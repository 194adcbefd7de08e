//! The write-behind worker: takes events from the queue (`queue.rs`) in order and in batches,
//! applies them through a [`Store`], and spills them to a local file (`spill.rs`) while the
//! database is unreachable.
//!
//! Rules it keeps:
//! - **Order.** Events reach the database in queue order (id order). While anything waits in
//!   the spill, new batches are appended to the spill too, and the spill is replayed in full
//!   before the first new batch goes to the database.
//! - **Nothing lost.** The batch being written lives in [`WriterShared`] (outside the worker
//!   value), so a worker that panics or is stopped mid-batch leaves it to the next one, which
//!   processes it first. A batch is dropped from memory only once it is committed or synced to
//!   the spill. If both the database and the spill fail, the batch is held and retried; the
//!   queue keeps growing (overflow) rather than dropping anything.
//! - **No duplicates.** Applying is idempotent by event id, so replaying a spill that was
//!   partly committed (a crash during replay) changes nothing twice.
//! - **Refused data does not block the rest.** A batch the database refuses (not an outage) is
//!   applied event by event; each refused event goes to the spill's `.rejected` file with the
//!   reason, an error line and a counter.
//!
//! The database connection is opened by the worker on its own thread through a [`Connector`]
//! and retried with exponential backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::observe::{HealthInputs, health_verdict};
pub use super::observe::{StoreMetrics, WriterStats};
use super::queue::StoreInbox;
use super::records::StoreEvent;
use super::spill::{SpillError, SpillFiles, SpillReader};
use super::{Store, StoreError};
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::ops::metrics::Metrics;
use crate::runtime::backoff::{Backoff, BackoffPolicy};
use crate::runtime::{Worker, WorkerCtx};

/// Opens a store on the calling thread (the writer's). Called again after every failure.
pub type Connector = Arc<dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync>;

/// How often an idle writer checks that its connection still works.
const IDLE_PING: Duration = Duration::from_secs(5);

/// The longest an idle writer waits for an event before looking at its stop signal again:
/// the queue's receive cannot wait on the stop signal too, and a writer that notices a stop
/// late may be left behind by the supervisor with events still queued.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The health board's component name.
pub const HEALTH_COMPONENT: &str = "store";

/// How the writer batches and retries.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// The active spill file (`.replay` and `.rejected` files sit beside it).
    pub spill_path: PathBuf,
    /// Events per database transaction at most.
    pub batch_max: usize,
    /// How long to wait for a batch to fill once its first event has arrived.
    pub linger: Duration,
    /// First delay before retrying the database, doubled per failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl WriterConfig {
    pub fn new(spill_path: impl Into<PathBuf>) -> WriterConfig {
        WriterConfig {
            spill_path: spill_path.into(),
            batch_max: 512,
            linger: Duration::from_millis(2),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// The writer's database retry schedule: exponential, no jitter (one writer per database needs
/// none), never a zero delay.
fn retry_backoff(initial: Duration, max: Duration) -> Backoff {
    let initial = initial.max(Duration::from_millis(1));
    let policy = BackoffPolicy::new(initial, max.max(initial), 0.0)
        .expect("a positive base, a cap at least the base and no jitter are valid");
    Backoff::new(policy)
}

/// Everything that outlives one writer value: the queue, the batch in flight, the spill
/// files, metrics and health. Build it once and capture it in the writer's factory.
pub struct WriterShared {
    inbox: StoreInbox,
    connector: Connector,
    config: WriterConfig,
    spill: SpillFiles,
    metrics: StoreMetrics,
    health: HealthBoard,
    in_flight: Mutex<Vec<StoreEvent>>,
    overflowed_seen: AtomicU64,
    overflow_alerted: AtomicBool,
    spill_events: AtomicU64,
    caught_up: AtomicBool,
}

impl std::fmt::Debug for WriterShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterShared")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WriterShared {
    pub fn new(
        inbox: StoreInbox,
        connector: Connector,
        config: WriterConfig,
        metrics: &Metrics,
        health: HealthBoard,
    ) -> Arc<WriterShared> {
        let spill = SpillFiles::new(config.spill_path.clone());
        health.set(HEALTH_COMPONENT, ComponentHealth::new(Status::Degraded, "starting"));
        Arc::new(WriterShared {
            inbox,
            connector,
            config,
            spill,
            metrics: StoreMetrics::new(metrics),
            health,
            in_flight: Mutex::new(Vec::new()),
            overflowed_seen: AtomicU64::new(0),
            overflow_alerted: AtomicBool::new(false),
            spill_events: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
        })
    }

    pub fn spill_files(&self) -> &SpillFiles {
        &self.spill
    }

    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    /// Whether a running writer has a database connection and nothing waiting in the spill
    /// or in flight: everything recorded so far, including what an earlier run spilled, is in
    /// the database. Startup waits for this (with a timeout) before reading
    /// [`Store::load_recovery`], so that recovery sees what the previous run spilled.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WriterStats {
        let m = &self.metrics;
        WriterStats {
            queue_depth: self.inbox.depth() as u64,
            written: m.written.get(),
            duplicates: m.duplicates.get(),
            spilled: m.spilled.get(),
            replayed: m.replayed.get(),
            rejected: m.rejected.get(),
            spill_events: m.spill_events.get().max(0) as u64,
            spill_bytes: m.spill_bytes.get().max(0) as u64,
            database_up: m.database_up.get() == 1,
            in_flight: self.in_flight.try_lock().map(|b| b.len()).unwrap_or(0),
        }
    }
}

/// What became of a batch.
enum Outcome {
    /// Committed to the database or synced to the spill (or refused and set aside).
    Done,
    /// Neither database nor spill took it: keep it and retry.
    Held(String),
}

/// The write-behind worker. Cheap to build; build a fresh one per (re)spawn.
pub struct StoreWriter {
    shared: Arc<WriterShared>,
    store: Option<Box<dyn Store>>,
    backoff: Backoff,
    next_attempt: Instant,
    /// Where replay of the `.replay` file has got to (committed up to here).
    replay_offset: u64,
    spill_pending: bool,
    last_health: Option<(Status, String)>,
    last_health_at: Instant,
    outage_logged: bool,
    held: Option<String>,
    /// When the database last answered.
    last_ok: Instant,
}

impl StoreWriter {
    pub fn new(shared: Arc<WriterShared>) -> StoreWriter {
        let backoff = retry_backoff(shared.config.retry_initial, shared.config.retry_max);
        StoreWriter {
            shared,
            store: None,
            backoff,
            next_attempt: Instant::now(),
            replay_offset: 0,
            spill_pending: false,
            last_health: None,
            last_health_at: Instant::now(),
            outage_logged: false,
            held: None,
            last_ok: Instant::now(),
        }
    }

    fn startup(&mut self) -> Result<(), SpillError> {
        let spill = &self.shared.spill;
        spill.repair()?;
        let stats = spill.stats()?;
        if let Some(max) = stats.max_id {
            self.shared.inbox.raise_id_floor(max);
        }
        self.spill_pending = spill.pending();
        self.shared.spill_events.store(stats.events, Ordering::Relaxed);
        if self.spill_pending {
            log::warn!(target: "store", "spill {} holds {} events from an earlier run; replaying them first", spill.active.display(), stats.events);
        }
        self.publish_spill_gauges();
        Ok(())
    }

    fn publish_spill_gauges(&self) {
        let spill = &self.shared.spill;
        let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let bytes = len(&spill.replay).saturating_sub(self.replay_offset) + len(&spill.active);
        let m = &self.shared.metrics;
        m.spill_bytes.set(bytes as i64);
        m.spill_events.set(self.shared.spill_events.load(Ordering::Relaxed) as i64);
    }

    /// Connects if not connected and the backoff allows. Returns whether a store is open.
    fn ensure_connected(&mut self) -> bool {
        if self.store.is_some() {
            return true;
        }
        if Instant::now() < self.next_attempt {
            return false;
        }
        match (self.shared.connector)() {
            Ok(mut store) => {
                match store.last_event_id() {
                    Ok(Some(last)) => self.shared.inbox.raise_id_floor(last),
                    Ok(None) => {}
                    Err(e) => {
                        self.lost(e);
                        return false;
                    }
                }
                if self.outage_logged {
                    log::info!(target: "store", "{} database reachable again", store.backend());
                }
                self.outage_logged = false;
                self.backoff.reset();
                self.store = Some(store);
                self.last_ok = Instant::now();
                self.shared.metrics.database_up.set(1);
                true
            }
            Err(e) => {
                self.lost(e);
                false
            }
        }
    }

    /// Drops the connection after `e` and schedules the next attempt.
    fn lost(&mut self, e: StoreError) {
        self.store = None;
        self.shared.metrics.database_up.set(0);
        self.shared.metrics.write_errors.with_label_values(&["unavailable"]).inc();
        let delay = self.backoff.next_delay(0.0);
        self.next_attempt = Instant::now() + delay;
        if !self.outage_logged {
            log::error!(target: "store", "{e}; spilling to {} and retrying", self.shared.spill.active.display());
            self.outage_logged = true;
        } else {
            log::debug!(target: "store", "{e}; next attempt in {delay:?}");
        }
    }

    fn reject(&self, events: &[StoreEvent], reason: &str) {
        let m = &self.shared.metrics;
        m.rejected.inc_by(events.len() as u64);
        m.write_errors.with_label_values(&["rejected"]).inc();
        for ev in events {
            log::error!(target: "store", "database refused event {} ({}): {reason}; kept in {}", ev.id, ev.kind.name(), self.shared.spill.rejected.display());
        }
        if let Err(e) = self.shared.spill.reject(events, None, reason) {
            // Last resort: the log keeps the whole event.
            log::error!(target: "store", "{e}");
            for ev in events {
                let text = serde_json::to_string(ev).unwrap_or_else(|_| format!("{ev:?}"));
                log::error!(target: "store", "refused event not kept on disk: {text}");
            }
        }
    }

    /// Applies `events` to the open store. On a refusal, applies them one by one and sets the
    /// refused ones aside. Returns how many events (from the start) are done; fewer than all
    /// means the database became unavailable (and the connection was dropped).
    fn apply(&mut self, events: &[StoreEvent]) -> usize {
        let Some(store) = self.store.as_mut() else { return 0 };
        let started = Instant::now();
        let result = store.apply(events);
        self.shared.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                self.count_applied(outcome);
                self.last_ok = Instant::now();
                events.len()
            }
            Err(e) if e.is_unavailable() => {
                self.lost(e);
                0
            }
            Err(e) => {
                log::warn!(target: "store", "{e}; applying the batch of {} one event at a time", events.len());
                for (i, ev) in events.iter().enumerate() {
                    let Some(store) = self.store.as_mut() else { return i };
                    match store.apply(std::slice::from_ref(ev)) {
                        Ok(outcome) => self.count_applied(outcome),
                        Err(e) if e.is_unavailable() => {
                            self.lost(e);
                            return i;
                        }
                        Err(e) => self.reject(std::slice::from_ref(ev), &e.to_string()),
                    }
                }
                events.len()
            }
        }
    }

    fn count_applied(&self, outcome: super::ApplyOutcome) {
        self.shared.metrics.written.inc_by(outcome.applied as u64);
        self.shared.metrics.duplicates.inc_by(outcome.duplicates as u64);
    }

    /// Replays the spill files into the database, oldest first. Returns `true` once nothing
    /// is left to replay.
    fn replay(&mut self, ctx: &WorkerCtx) -> bool {
        loop {
            let spill = self.shared.spill.clone();
            match spill.rotate() {
                Ok(false) => {
                    self.spill_pending = false;
                    self.shared.spill_events.store(0, Ordering::Relaxed);
                    self.publish_spill_gauges();
                    return true;
                }
                Ok(true) => {}
                Err(e) => {
                    self.spill_failed(&e);
                    return false;
                }
            }
            let mut reader = match SpillReader::open(&spill.replay, self.replay_offset) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.replay_offset = 0;
                    continue;
                }
                Err(e) => {
                    self.spill_failed(&e);
                    return false;
                }
            };
            log::info!(target: "store", "replaying spill {} from byte {}", spill.replay.display(), self.replay_offset);
            loop {
                ctx.beat();
                let (events, bad) = match reader.next_batch(self.shared.config.batch_max) {
                    Ok(b) => b,
                    Err(e) => {
                        self.spill_failed(&e);
                        return false;
                    }
                };
                if events.is_empty() && bad.is_empty() {
                    break;
                }
                for line in &bad {
                    log::error!(target: "store", "spill {} byte {}: unreadable line ({}); kept in {}", spill.replay.display(), line.offset, line.error, spill.rejected.display());
                    if let Err(e) = spill.reject(&[], Some(&line.text), &line.error) {
                        log::error!(target: "store", "{e}");
                        return false;
                    }
                    self.shared.metrics.rejected.inc();
                }
                let done = self.apply(&events);
                if done < events.len() {
                    return false;
                }
                self.replay_offset = reader.offset();
                self.shared.metrics.replayed.inc_by(events.len() as u64);
                let left = self.shared.spill_events.load(Ordering::Relaxed);
                self.shared.spill_events.store(
                    left.saturating_sub((events.len() + bad.len()) as u64),
                    Ordering::Relaxed,
                );
                self.publish_spill_gauges();
            }
            if let Err(e) = spill.finish_replay() {
                self.spill_failed(&e);
                return false;
            }
            log::info!(target: "store", "spill {} replayed", spill.replay.display());
            self.replay_offset = 0;
        }
    }

    fn spill_failed(&mut self, e: &SpillError) {
        self.shared.metrics.write_errors.with_label_values(&["spill"]).inc();
        log::error!(target: "store", "{e}");
        // Retrying a broken file at once would spin: wait like for the database.
        self.next_attempt = Instant::now() + self.backoff.next_delay(0.0);
    }

    /// Whether the backoff allows another attempt (connect or replay) now.
    fn attempt_due(&self) -> bool {
        Instant::now() >= self.next_attempt
    }

    /// Persists one batch: to the database when it is reachable and no spill waits, else to
    /// the spill.
    fn persist(&mut self, batch: &[StoreEvent], ctx: &WorkerCtx, may_replay: bool) -> Outcome {
        // A store lagging behind, for the crash tests (`sleep:MS`).
        crate::runtime::failpoint::hit("store_writer.batch");
        if batch.is_empty() {
            return Outcome::Done;
        }
        let mut rest = batch;
        if (!self.spill_pending || (may_replay && self.attempt_due()))
            && self.ensure_connected()
            && (!self.spill_pending || self.replay(ctx))
        {
            let done = self.apply(rest);
            rest = &rest[done..];
            if rest.is_empty() {
                return Outcome::Done;
            }
        }
        match self.shared.spill.append(rest) {
            Ok(_) => {
                self.spill_pending = true;
                self.shared.metrics.spilled.inc_by(rest.len() as u64);
                self.shared.spill_events.fetch_add(rest.len() as u64, Ordering::Relaxed);
                self.publish_spill_gauges();
                Outcome::Done
            }
            Err(e) => {
                self.spill_failed(&e);
                Outcome::Held(format!(
                    "cannot persist: database unavailable and spill failed ({e}); {} events held in memory",
                    rest.len()
                ))
            }
        }
    }

    /// Takes the next batch (or the one a previous writer left) and persists it. Returns
    /// whether there was anything to do.
    fn step(&mut self, ctx: &WorkerCtx, wait: Duration, may_replay: bool) -> bool {
        let shared = self.shared.clone();
        let mut batch = shared.in_flight.lock();
        if batch.is_empty() {
            shared.inbox.collect(&mut batch, shared.config.batch_max, wait, shared.config.linger);
        }
        let had_work = !batch.is_empty();
        match self.persist(&batch, ctx, may_replay) {
            Outcome::Done => {
                batch.clear();
                self.held = None;
            }
            Outcome::Held(reason) => {
                if self.held.is_none() {
                    log::error!(target: "store", "{reason}");
                }
                self.held = Some(reason);
            }
        }
        had_work
    }

    fn watch_queue(&mut self) {
        let shared = &self.shared;
        let q = shared.inbox.stats();
        let m = &shared.metrics;
        m.queue_depth.set(q.depth as i64);
        m.overflow_depth.set(q.overflow as i64);
        let seen = shared.overflowed_seen.swap(q.overflowed, Ordering::Relaxed);
        m.overflowed.inc_by(q.overflowed.saturating_sub(seen));
        let alerted = shared.overflow_alerted.load(Ordering::Relaxed);
        if q.overflow > 0 && !alerted {
            log::error!(target: "store", "store queue full ({} events): {} events in the overflow buffer; the writer is not keeping up", q.capacity, q.overflow);
            shared.overflow_alerted.store(true, Ordering::Relaxed);
        } else if q.overflow == 0 && alerted {
            log::info!(target: "store", "store overflow buffer drained");
            shared.overflow_alerted.store(false, Ordering::Relaxed);
        }
    }

    fn report_health(&mut self) {
        let q = self.shared.inbox.stats();
        let stats = self.shared.stats();
        let (status, reason) = health_verdict(&HealthInputs {
            held: self.held.as_deref(),
            connected: self.store.is_some(),
            spill_pending: self.spill_pending,
            spill_events: stats.spill_events,
            overflow: q.overflow,
            rejected: stats.rejected,
            spill: &self.shared.spill,
        });
        let changed = self.last_health.as_ref() != Some(&(status, reason.clone()));
        if changed || self.last_health_at.elapsed() >= Duration::from_secs(1) {
            let details = serde_json::json!({
                "backend": self.store.as_ref().map(|s| s.backend()),
                "queue_depth": q.depth,
                "overflow": q.overflow,
                "spill_events": stats.spill_events,
                "spill_bytes": stats.spill_bytes,
                "written": stats.written,
                "rejected": stats.rejected,
            });
            self.shared.health.set(
                HEALTH_COMPONENT,
                ComponentHealth::new(status, reason.clone()).with_details(details),
            );
            self.last_health = Some((status, reason));
            self.last_health_at = Instant::now();
        }
    }

    /// With nothing to write: connect (so that health tells the truth before the first event),
    /// replay a waiting spill as soon as the database is back, and check an idle connection
    /// now and then.
    fn idle(&mut self, ctx: &WorkerCtx) {
        let was_connected = self.store.is_some();
        if !self.ensure_connected() {
            return;
        }
        if self.spill_pending {
            if self.attempt_due() {
                self.replay(ctx);
            }
        } else if was_connected && self.last_ok.elapsed() >= IDLE_PING {
            let result = self.store.as_mut().map(|s| s.ping());
            match result {
                Some(Err(e)) => self.lost(e),
                _ => self.last_ok = Instant::now(),
            }
        }
    }

    /// How long to wait for the first event of a batch.
    fn idle_wait(&self, ctx: &WorkerCtx) -> Duration {
        let beat = ctx.beat_every().min(IDLE_POLL);
        if self.held.is_some() {
            return self
                .next_attempt
                .saturating_duration_since(Instant::now())
                .min(beat)
                .max(Duration::from_millis(10));
        }
        if self.spill_pending || self.store.is_none() {
            return self.next_attempt.saturating_duration_since(Instant::now()).min(beat);
        }
        beat
    }
}

impl Worker for StoreWriter {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        if let Err(e) = self.startup() {
            // Without a readable spill we cannot keep order; fail so the supervisor retries.
            self.shared.health.set(
                HEALTH_COMPONENT,
                ComponentHealth::new(Status::Down, format!("cannot read the spill: {e}")),
            );
            return Err(anyhow::anyhow!("store writer startup: {e}"));
        }
        while !ctx.should_stop() {
            ctx.beat();
            let wait = self.idle_wait(ctx);
            let had_work = self.step(ctx, wait, true);
            if !had_work && self.held.is_none() {
                self.idle(ctx);
            }
            if self.held.is_some() {
                let delay = self.backoff.next_delay(0.0);
                self.next_attempt = Instant::now() + delay;
                ctx.sleep(delay);
            }
            self.watch_queue();
            self.report_health();
            let caught_up = self.store.is_some()
                && !self.spill_pending
                && self.held.is_none()
                && self.shared.in_flight.try_lock().is_some_and(|b| b.is_empty());
            self.shared.caught_up.store(caught_up, Ordering::Release);
        }
        self.shared.caught_up.store(false, Ordering::Release);
        // Stopping: persist everything already queued (to the spill if the database is not
        // immediately usable); a replay is left to the next writer.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let had_work = self.step(ctx, Duration::ZERO, false);
            if self.held.is_some() {
                if Instant::now() >= deadline {
                    log::error!(target: "store", "store writer stopping with events held in memory: {}", self.held.as_deref().unwrap_or(""));
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if !had_work {
                break;
            }
        }
        self.watch_queue();
        self.report_health();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = retry_backoff(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u64> = (0..5).map(|_| b.next_delay(0.0).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    #[test]
    fn retry_backoff_never_spins_with_a_zero_delay() {
        let mut b = retry_backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(0.0), Duration::from_millis(1));
    }
}
