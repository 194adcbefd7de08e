//! The supervisor: starts workers in their declared order, each on its own named thread inside
//! `catch_unwind`; joins a worker that panicked (or returned an error) and respawns a fresh one
//! from its factory after an exponential backoff; escalates when a worker exhausts its restart
//! budget; reports workers whose heartbeat is older than their limit as stuck; and stops
//! everything in reverse start order, each worker within its deadline.
//!
//! It runs on its own thread and talks to the rest of the engine only through channels and the
//! shared status table that health, metrics and the systemd watchdog read.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::RwLock;
use serde::Serialize;

use super::backoff::BackoffPolicy;
use super::worker::{Heartbeat, StopHandle, StopSignal, Worker, WorkerCtx};
use crate::ops::metrics::Metrics;

/// Builds a fresh worker for every (re)spawn.
pub type WorkerFactory = Box<dyn FnMut() -> Box<dyn Worker> + Send>;

/// A worker as the supervisor knows it: its name, limits and how to build it.
pub struct WorkerSpec {
    pub name: String,
    /// A heartbeat older than this marks the worker stuck.
    pub heartbeat_limit: Duration,
    /// How long a stop may take before the worker is left behind; `None` = the supervisor's.
    pub stop_deadline: Option<Duration>,
    /// CPU core to pin the worker's thread to, if any.
    pub core: Option<usize>,
    pub factory: WorkerFactory,
}

impl WorkerSpec {
    pub fn new(
        name: impl Into<String>,
        heartbeat_limit: Duration,
        factory: impl FnMut() -> Box<dyn Worker> + Send + 'static,
    ) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            heartbeat_limit,
            stop_deadline: None,
            core: None,
            factory: Box::new(factory),
        }
    }

    pub fn stop_deadline(mut self, d: Duration) -> WorkerSpec {
        self.stop_deadline = Some(d);
        self
    }

    pub fn pinned_to(mut self, core: Option<usize>) -> WorkerSpec {
        self.core = core;
        self
    }
}

/// Restart and shutdown policy.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Restarts allowed per worker within `restart_window`; one more failure escalates.
    pub restart_budget: u32,
    pub restart_window: Duration,
    pub stop_deadline: Duration,
    /// How often heartbeats are checked and the status table refreshed.
    pub check_every: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> SupervisorConfig {
        SupervisorConfig {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_secs(5),
            restart_budget: 5,
            restart_window: Duration::from_secs(60),
            stop_deadline: Duration::from_secs(2),
            check_every: Duration::from_millis(100),
        }
    }
}

/// Where a worker is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Starting,
    Running,
    /// Failed; waiting out its backoff before the respawn.
    Restarting,
    /// Returned on its own or after a stop request.
    Stopped,
    /// Exhausted its restart budget.
    Failed,
    /// Missed its stop deadline and was left behind.
    Abandoned,
}

/// One row of the status table.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    pub restarts: u32,
    /// Milliseconds since the last heartbeat (`None` before the first).
    pub heartbeat_age_ms: Option<u64>,
    pub heartbeat_limit_ms: u64,
    pub stuck: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl WorkerStatus {
    /// Running and beating within its limit.
    pub fn healthy(&self) -> bool {
        self.state == WorkerState::Running && !self.stuck
    }
}

/// How the supervisor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorOutcome {
    /// Stopped on request; lists workers that missed their stop deadline.
    Stopped { left_behind: Vec<String> },
    /// A worker exhausted its restart budget; everything was stopped.
    Escalated { worker: String, reason: String, left_behind: Vec<String> },
}

impl SupervisorOutcome {
    pub fn is_escalation(&self) -> bool {
        matches!(self, SupervisorOutcome::Escalated { .. })
    }
}

/// Something the rest of the engine may want to react to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// Every worker has started and beaten once.
    AllUp,
    WorkerFailed {
        worker: String,
        reason: String,
        restart_in: Duration,
    },
    WorkerRestarted {
        worker: String,
        restarts: u32,
    },
    WorkerStuck {
        worker: String,
        age: Duration,
    },
    WorkerRecovered {
        worker: String,
    },
    /// Budget exhausted: the engine must halt trading; shutdown follows.
    Escalating {
        worker: String,
        reason: String,
    },
    WorkerStopped {
        worker: String,
        order: usize,
    },
    WorkerLeftBehind {
        worker: String,
    },
}

enum ExitKind {
    Returned,
    Failed(String),
}

struct ExitReport {
    slot: usize,
    generation: u64,
    kind: ExitKind,
}

struct Running {
    generation: u64,
    stop: StopHandle,
    thread: JoinHandle<()>,
}

struct Slot {
    spec: WorkerSpec,
    heartbeat: Heartbeat,
    state: WorkerState,
    running: Option<Running>,
    generation: u64,
    restarts: u32,
    recent: VecDeque<Instant>,
    respawn_at: Option<Instant>,
    stuck: bool,
    last_failure: Option<String>,
}

/// Builder: declare workers in start order, then [`Supervisor::start`].
pub struct Supervisor {
    cfg: SupervisorConfig,
    specs: Vec<WorkerSpec>,
    metrics: Metrics,
    status: StatusTable,
    on_escalation: Option<EscalationHook>,
}

/// Called on the supervisor thread when a worker exhausts its budget, before anything is
/// stopped (so that, for example, the halt it causes can still be persisted), with the
/// worker's name and its last failure.
pub type EscalationHook = Box<dyn FnOnce(&str, &str) + Send>;

/// The shared table of worker statuses, in start order; the supervisor writes it, health,
/// metrics and the watchdog read it.
pub type StatusTable = Arc<RwLock<Vec<WorkerStatus>>>;

/// The running supervisor, seen from outside.
pub struct SupervisorHandle {
    control: Sender<()>,
    status: StatusTable,
    /// Beaten by every round of the supervision loop.
    loop_beat: Heartbeat,
    /// A loop silent for longer is stuck (ten checks, at least a second).
    loop_limit: Duration,
    events: Receiver<SupervisorEvent>,
    thread: Option<JoinHandle<SupervisorOutcome>>,
}

impl Supervisor {
    pub fn new(cfg: SupervisorConfig, metrics: Metrics) -> Supervisor {
        Supervisor {
            cfg,
            specs: Vec::new(),
            metrics,
            status: StatusTable::default(),
            on_escalation: None,
        }
    }

    /// Sets what happens first when a worker exhausts its restart budget.
    pub fn on_escalation(
        &mut self,
        hook: impl FnOnce(&str, &str) + Send + 'static,
    ) -> &mut Supervisor {
        self.on_escalation = Some(Box::new(hook));
        self
    }

    /// The status table, available before the start so that readers can be built first.
    pub fn status_table(&self) -> StatusTable {
        self.status.clone()
    }

    /// Declares the next worker; start order is declaration order, stop order the reverse.
    pub fn add(&mut self, spec: WorkerSpec) -> &mut Supervisor {
        self.specs.push(spec);
        self
    }

    /// Starts the supervisor thread, which starts the workers in order.
    pub fn start(self) -> std::io::Result<SupervisorHandle> {
        let (control_tx, control_rx) = crossbeam_channel::bounded(4);
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let status = self.status.clone();
        let loop_limit = (self.cfg.check_every * 10).max(Duration::from_secs(1));
        let loop_beat = Heartbeat::new();
        loop_beat.beat();
        let run = Run::new(self, control_rx, event_tx, status.clone(), loop_beat.clone());
        let thread =
            std::thread::Builder::new().name("supervisor".into()).spawn(move || run.main())?;
        Ok(SupervisorHandle {
            control: control_tx,
            status,
            loop_beat,
            loop_limit,
            events: event_rx,
            thread: Some(thread),
        })
    }
}

impl SupervisorHandle {
    /// The current status of every worker, in start order.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.status.read().clone()
    }

    /// A shared view of the status table (for health, metrics and the watchdog).
    pub fn status_table(&self) -> StatusTable {
        self.status.clone()
    }

    /// Every worker running and beating within its limit.
    pub fn all_healthy(&self) -> bool {
        let s = self.status.read();
        !s.is_empty() && s.iter().all(WorkerStatus::healthy)
    }

    /// The process is alive, in the systemd watchdog's sense: the supervision loop is going
    /// round and no worker is stuck (a worker that is restarting is the supervisor's business,
    /// not a hang). Whether the engine is *healthy* (a feed or broker down) is another question,
    /// answered by `/health`, metrics and alerts.
    pub fn alive(&self) -> bool {
        let loop_going = self.loop_beat.age().is_some_and(|a| a <= self.loop_limit);
        loop_going && !self.status.read().iter().any(|w| w.stuck)
    }

    /// Supervisor events, in order.
    pub fn events(&self) -> &Receiver<SupervisorEvent> {
        &self.events
    }

    /// Asks for a graceful stop (idempotent).
    pub fn shutdown(&self) {
        let _ = self.control.try_send(());
    }

    /// Whether the supervisor thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the supervisor to end and returns how it ended.
    pub fn join(mut self) -> SupervisorOutcome {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            _ => SupervisorOutcome::Escalated {
                worker: "supervisor".into(),
                reason: "the supervisor thread itself failed".into(),
                left_behind: Vec::new(),
            },
        }
    }
}

struct SupervisorMetrics {
    restarts: prometheus::IntCounterVec,
    heartbeat_age: prometheus::GaugeVec,
    up: prometheus::IntGaugeVec,
    stuck: prometheus::IntGaugeVec,
    budget_left: prometheus::IntGaugeVec,
}

struct Run {
    cfg: SupervisorConfig,
    slots: Vec<Slot>,
    control: Receiver<()>,
    events: Sender<SupervisorEvent>,
    status: Arc<RwLock<Vec<WorkerStatus>>>,
    exit_tx: Sender<ExitReport>,
    exit_rx: Receiver<ExitReport>,
    metrics: SupervisorMetrics,
    announced_up: bool,
    on_escalation: Option<EscalationHook>,
    /// Events go out after the status table is published, so whoever reacts to an event sees
    /// a table at least as new as the event.
    pending: Vec<SupervisorEvent>,
    /// Beaten at every publication: the loop is going round.
    loop_beat: Heartbeat,
}

impl Run {
    fn new(
        sup: Supervisor,
        control: Receiver<()>,
        events: Sender<SupervisorEvent>,
        status: Arc<RwLock<Vec<WorkerStatus>>>,
        loop_beat: Heartbeat,
    ) -> Run {
        let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
        let m = &sup.metrics;
        let metrics = SupervisorMetrics {
            restarts: m.counter_vec(
                "worker_restarts_total",
                "Worker respawns after a panic or error",
                &["worker"],
            ),
            heartbeat_age: m.float_gauge_vec(
                "worker_heartbeat_age_seconds",
                "Seconds since the worker's last heartbeat",
                &["worker"],
            ),
            up: m.gauge_vec("worker_up", "1 while the worker is running", &["worker"]),
            stuck: m.gauge_vec(
                "worker_stuck",
                "1 while the worker's heartbeat is older than its limit",
                &["worker"],
            ),
            budget_left: m.gauge_vec(
                "worker_restart_budget_left",
                "Restarts the worker may still take within the restart window before the \
                 supervisor escalates (halts trading and exits)",
                &["worker"],
            ),
        };
        // Every worker's series exist from the start, at 0 (and its whole budget left).
        let names: Vec<&str> = sup.specs.iter().map(|s| s.name.as_str()).collect();
        crate::ops::metrics::preset(&metrics.restarts, &[&names]);
        crate::ops::metrics::preset(&metrics.up, &[&names]);
        crate::ops::metrics::preset(&metrics.stuck, &[&names]);
        for name in &names {
            metrics.budget_left.with_label_values(&[name]).set(i64::from(sup.cfg.restart_budget));
        }
        let slots = sup
            .specs
            .into_iter()
            .map(|spec| Slot {
                spec,
                heartbeat: Heartbeat::new(),
                state: WorkerState::Starting,
                running: None,
                generation: 0,
                restarts: 0,
                recent: VecDeque::new(),
                respawn_at: None,
                stuck: false,
                last_failure: None,
            })
            .collect();
        Run {
            cfg: sup.cfg,
            slots,
            control,
            events,
            status,
            exit_tx,
            exit_rx,
            metrics,
            announced_up: false,
            on_escalation: sup.on_escalation,
            pending: Vec::new(),
            loop_beat,
        }
    }

    fn main(mut self) -> SupervisorOutcome {
        for i in 0..self.slots.len() {
            self.spawn(i);
        }
        self.publish();
        let escalation = self.supervise();
        if let Some((worker, reason)) = &escalation
            && let Some(hook) = self.on_escalation.take()
        {
            hook(worker, reason);
        }
        self.publish();
        let left_behind = self.stop_all();
        self.publish();
        match escalation {
            None => SupervisorOutcome::Stopped { left_behind },
            Some((worker, reason)) => SupervisorOutcome::Escalated { worker, reason, left_behind },
        }
    }

    /// The supervision loop; returns `Some((worker, reason))` on escalation, `None` on a stop
    /// request.
    fn supervise(&mut self) -> Option<(String, String)> {
        loop {
            let timeout = self.next_wakeup();
            select! {
                recv(self.control) -> _ => return None,
                recv(self.exit_rx) -> report => {
                    if let Ok(report) = report
                        && let Some(escalation) = self.on_exit(report)
                    {
                        return Some(escalation);
                    }
                }
                default(timeout) => {}
            }
            self.respawn_due();
            self.check_heartbeats();
            self.publish();
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = Instant::now();
        self.slots
            .iter()
            .filter_map(|s| s.respawn_at)
            .map(|at| at.saturating_duration_since(now))
            .fold(self.cfg.check_every, Duration::min)
    }

    fn spawn(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.generation += 1;
        let generation = slot.generation;
        let name = slot.spec.name.clone();
        let (stop_handle, stop) = StopSignal::new();
        let beat_every = (slot.spec.heartbeat_limit / 4).max(Duration::from_millis(1));
        let ctx = WorkerCtx::new(&name, stop, slot.heartbeat.clone(), beat_every);
        let exit_tx = self.exit_tx.clone();
        let core = slot.spec.core;
        // Build the worker here, but a factory that panics must not take the supervisor down.
        let factory = &mut slot.spec.factory;
        let built = catch_unwind(AssertUnwindSafe(factory));
        let spawned = match built {
            Ok(mut worker) => std::thread::Builder::new().name(name.clone()).spawn(move || {
                if let Some(core) = core {
                    super::host::pin_current_thread(&name_of(&ctx), core);
                }
                super::worker::bind_heartbeat_to_thread(ctx.heartbeat());
                ctx.beat();
                let result = catch_unwind(AssertUnwindSafe(|| worker.run(&ctx)));
                let kind = match result {
                    Ok(Ok(())) => ExitKind::Returned,
                    Ok(Err(e)) => ExitKind::Failed(format!("error: {e:#}")),
                    Err(payload) => {
                        ExitKind::Failed(format!("panic: {}", panic_message(&*payload)))
                    }
                };
                let _ = exit_tx.send(ExitReport { slot: i, generation, kind });
            }),
            Err(payload) => {
                let msg = format!("factory panic: {}", panic_message(&*payload));
                let _ = self.exit_tx.send(ExitReport {
                    slot: i,
                    generation,
                    kind: ExitKind::Failed(msg),
                });
                return;
            }
        };
        match spawned {
            Ok(thread) => {
                let slot = &mut self.slots[i];
                slot.running = Some(Running { generation, stop: stop_handle, thread });
                slot.state = WorkerState::Running;
                slot.respawn_at = None;
                self.metrics.up.with_label_values(&[&slot.spec.name]).set(1);
            }
            Err(e) => {
                let _ = self.exit_tx.send(ExitReport {
                    slot: i,
                    generation,
                    kind: ExitKind::Failed(format!("thread spawn failed: {e}")),
                });
            }
        }
    }

    fn on_exit(&mut self, report: ExitReport) -> Option<(String, String)> {
        let slot = &mut self.slots[report.slot];
        if report.generation != slot.generation {
            return None; // a thread left behind earlier; its slot has moved on
        }
        if let Some(running) = slot.running.take() {
            // The thread has sent its last message; joining cannot block for long.
            let _ = running.thread.join();
        }
        self.metrics.up.with_label_values(&[&slot.spec.name]).set(0);
        let reason = match report.kind {
            ExitKind::Returned => {
                log::info!(target: "supervisor", "Worker {} finished", slot.spec.name);
                slot.state = WorkerState::Stopped;
                return None;
            }
            ExitKind::Failed(reason) => reason,
        };
        let now = Instant::now();
        while slot.recent.front().is_some_and(|t| now.duration_since(*t) > self.cfg.restart_window)
        {
            slot.recent.pop_front();
        }
        slot.last_failure = Some(reason.clone());
        if slot.recent.len() as u32 >= self.cfg.restart_budget {
            slot.state = WorkerState::Failed;
            let name = slot.spec.name.clone();
            log::error!(
                target: "supervisor",
                "ALERT worker {name} exhausted its restart budget ({} restarts in {:?}); last failure: {reason}; halting trading and shutting down",
                self.cfg.restart_budget,
                self.cfg.restart_window
            );
            self.pending
                .push(SupervisorEvent::Escalating { worker: name.clone(), reason: reason.clone() });
            return Some((name, reason));
        }
        let backoff = BackoffPolicy::new(self.cfg.backoff_base, self.cfg.backoff_cap, 0.0)
            .map_or(self.cfg.backoff_base, |p| p.ceiling(slot.recent.len() as u32));
        slot.state = WorkerState::Restarting;
        slot.respawn_at = Some(now + backoff);
        log::warn!(
            target: "supervisor",
            "Worker {} failed ({reason}); restarting in {backoff:?}",
            slot.spec.name
        );
        self.pending.push(SupervisorEvent::WorkerFailed {
            worker: slot.spec.name.clone(),
            reason,
            restart_in: backoff,
        });
        None
    }

    fn respawn_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].respawn_at.is_some_and(|at| at <= now) {
                let slot = &mut self.slots[i];
                slot.recent.push_back(now);
                slot.restarts += 1;
                let restarts = slot.restarts;
                let name = slot.spec.name.clone();
                self.metrics.restarts.with_label_values(&[&name]).inc();
                self.spawn(i);
                log::info!(target: "supervisor", "Worker {name} restarted (restart #{restarts})");
                self.pending.push(SupervisorEvent::WorkerRestarted { worker: name, restarts });
            }
        }
    }

    fn check_heartbeats(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            let age = slot.heartbeat.age();
            if let Some(age) = age {
                self.metrics
                    .heartbeat_age
                    .with_label_values(&[&slot.spec.name])
                    .set(age.as_secs_f64());
            }
            while slot
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.cfg.restart_window)
            {
                slot.recent.pop_front();
            }
            let left = i64::from(self.cfg.restart_budget).saturating_sub(slot.recent.len() as i64);
            self.metrics.budget_left.with_label_values(&[&slot.spec.name]).set(left.max(0));
            let stuck = slot.state == WorkerState::Running
                && age.is_some_and(|a| a > slot.spec.heartbeat_limit);
            if stuck != slot.stuck {
                slot.stuck = stuck;
                self.metrics.stuck.with_label_values(&[&slot.spec.name]).set(i64::from(stuck));
                let worker = slot.spec.name.clone();
                if stuck {
                    let age = age.unwrap_or_default();
                    log::error!(
                        target: "supervisor",
                        "Worker {worker} is stuck: no heartbeat for {age:?} (limit {:?})",
                        slot.spec.heartbeat_limit
                    );
                    self.pending.push(SupervisorEvent::WorkerStuck { worker, age });
                } else {
                    log::info!(target: "supervisor", "Worker {worker} is beating again");
                    self.pending.push(SupervisorEvent::WorkerRecovered { worker });
                }
            }
        }
        if !self.announced_up
            && self
                .slots
                .iter()
                .all(|s| s.state == WorkerState::Running && s.heartbeat.age().is_some())
        {
            self.announced_up = true;
            self.pending.push(SupervisorEvent::AllUp);
        }
    }

    fn publish(&mut self) {
        let table = self
            .slots
            .iter()
            .map(|s| WorkerStatus {
                name: s.spec.name.clone(),
                state: s.state,
                restarts: s.restarts,
                heartbeat_age_ms: s.heartbeat.age().map(|a| a.as_millis() as u64),
                heartbeat_limit_ms: s.spec.heartbeat_limit.as_millis() as u64,
                stuck: s.stuck,
                last_failure: s.last_failure.clone(),
            })
            .collect();
        *self.status.write() = table;
        self.loop_beat.beat();
        for ev in self.pending.drain(..) {
            let _ = self.events.send(ev);
        }
    }

    /// Stops every worker in reverse start order, each within its deadline. Returns the names
    /// of workers left behind.
    fn stop_all(&mut self) -> Vec<String> {
        let mut left_behind = Vec::new();
        let mut order = 0;
        for i in (0..self.slots.len()).rev() {
            let deadline = self.slots[i].spec.stop_deadline.unwrap_or(self.cfg.stop_deadline);
            self.slots[i].respawn_at = None;
            let Some(running) = self.slots[i].running.take() else {
                if self.slots[i].state == WorkerState::Restarting {
                    self.slots[i].state = WorkerState::Stopped;
                }
                continue;
            };
            running.stop.stop();
            let name = self.slots[i].spec.name.clone();
            let until = Instant::now() + deadline;
            let mut finished = false;
            // Other workers may report their exit while we wait for this one: note them.
            while let Some(wait) = until.checked_duration_since(Instant::now()) {
                match self.exit_rx.recv_timeout(wait) {
                    Ok(r) if r.slot == i && r.generation == running.generation => {
                        finished = true;
                        break;
                    }
                    Ok(r) => self.note_exit_while_stopping(r),
                    Err(_) => break,
                }
            }
            let slot = &mut self.slots[i];
            self.metrics.up.with_label_values(&[&name]).set(0);
            if finished {
                let _ = running.thread.join();
                slot.state = WorkerState::Stopped;
                log::info!(target: "supervisor", "Worker {name} stopped");
                self.pending.push(SupervisorEvent::WorkerStopped { worker: name, order });
            } else {
                slot.state = WorkerState::Abandoned;
                log::error!(
                    target: "supervisor",
                    "Worker {name} did not stop within {deadline:?}; leaving it behind"
                );
                self.pending.push(SupervisorEvent::WorkerLeftBehind { worker: name.clone() });
                left_behind.push(name);
            }
            order += 1;
        }
        left_behind
    }

    fn note_exit_while_stopping(&mut self, r: ExitReport) {
        let slot = &mut self.slots[r.slot];
        if slot.running.as_ref().is_some_and(|run| run.generation == r.generation)
            && let Some(running) = slot.running.take()
        {
            let _ = running.thread.join();
            slot.state = WorkerState::Stopped;
        }
    }
}

fn name_of(ctx: &WorkerCtx) -> String {
    ctx.name().to_string()
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
