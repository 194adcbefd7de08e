//! The order desk: the worker that finishes what a placement could not finish at once, off the
//! router's thread (the router keeps serving other exits meanwhile).
//!
//! - **Resolve** an unknown outcome (timeout, reset, 5xx, unreadable answer, or an id sent by
//!   an earlier run): never by sending again, but with the pure [`Resolver`] of
//!   `broker::resolve` — correlation-id lookup (a 404 while the order is in TRANSIT is
//!   normal), the order book, and what the order-update stream has seen — within the resolve
//!   window. Found: the order is tracked and its current state read at once (fills follow).
//!   Provably absent: reported so, and the exit engine starts the next attempt under a new
//!   correlation id. Undetermined (the reads kept failing): nothing is sent; it is tried again
//!   after a pause, with the operator alerted, for as long as it takes.
//! - **Retry** an exit that provably did not reach Dhan (429 / DH-904, our limiter, no
//!   connection): the same correlation id again after an exponentially growing pause.
//! - **Hold** exits while the circuit breaker is open, oldest first; each loop asks the breaker,
//!   so the first held exit becomes the half-open probe, and the rest follow once it closes.
//!
//! Jobs live in [`DeskShared`], outside the worker, so a respawned desk carries on with them.
//! Several jobs progress together: each stores only its scheduling — its next action and when
//! it is due. The order itself (its intent, whether the broker holds it, whether it ended) is
//! the order book's: an exit waiting to be resent or held whose order the book says has ended
//! is dropped, never sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;

use crate::broker::model::OrderStatus;
use crate::broker::order_updates::RecentUpdates;
use crate::broker::resolve::{
    Action, Lookup, Observation, Resolution, Resolver, ResolverConfig, find_in_book,
};
use crate::domain::{Clock, CorrelationId, InstrumentKey, OrderIntent, Timestamp};
use crate::exec::order_book::{Event, OrderBookHandle, Report, Seen};
use crate::runtime::{Worker, WorkerCtx, monotonic_millis};

use super::placer::{Attempt, Placer};
use super::report::Reporter;

/// The desk's pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeskConfig {
    pub resolver: ResolverConfig,
    /// First pause before resending an exit that was not sent; doubles up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// Pause before settling an undetermined order again.
    pub undetermined_pause: Duration,
    /// How often held exits ask the breaker.
    pub breaker_poll: Duration,
}

impl Default for DeskConfig {
    fn default() -> DeskConfig {
        DeskConfig {
            resolver: ResolverConfig::default(),
            retry_first: Duration::from_millis(250),
            retry_max: Duration::from_secs(5),
            undetermined_pause: Duration::from_secs(2),
            breaker_poll: Duration::from_millis(50),
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Resolve { resolver: Resolver, next: Action },
    Retry { attempt: u32 },
    HoldForBreaker,
}

/// One order's scheduling (keyed by its correlation id); the order is in the book.
#[derive(Clone, Debug)]
struct Job {
    step: Step,
    /// Not before this instant (monotonic ms).
    due_ms: u64,
    /// When the job was created (for ordering held exits).
    since_ms: u64,
}

/// Everything the desk needs that must outlive the worker. Cheap to clone through
/// [`DeskHandle`].
pub struct DeskShared {
    jobs: Mutex<BTreeMap<CorrelationId, Job>>,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    pub placer: Arc<Placer>,
    pub orders: OrderBookHandle,
    pub reporter: Reporter,
    pub recent: RecentUpdates,
    pub clock: Arc<dyn Clock>,
    pub cfg: DeskConfig,
}

/// What the gateway and the reconciler use to hand work to the desk.
#[derive(Clone)]
pub struct DeskHandle(Arc<DeskShared>);

impl DeskHandle {
    pub fn new(
        placer: Arc<Placer>,
        orders: OrderBookHandle,
        reporter: Reporter,
        recent: RecentUpdates,
        clock: Arc<dyn Clock>,
        cfg: DeskConfig,
    ) -> DeskHandle {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        DeskHandle(Arc::new(DeskShared {
            jobs: Mutex::new(BTreeMap::new()),
            wake_tx,
            wake_rx,
            placer,
            orders,
            reporter,
            recent,
            clock,
            cfg,
        }))
    }

    fn add(&self, intent: &OrderIntent, step: Step, due_ms: u64) {
        let now = monotonic_millis();
        let job = Job { step, due_ms, since_ms: now };
        self.0.jobs.lock().insert(intent.correlation_id.clone(), job);
        let _ = self.0.wake_tx.try_send(());
    }

    /// Settle an unknown outcome. `sent_at`: when the order was written to the journal, if
    /// that was before this moment (an earlier run): the window counts from then.
    pub fn resolve(&self, intent: &OrderIntent, sent_at: Option<Timestamp>, why: &str) {
        let now = monotonic_millis();
        let mut cfg = self.0.cfg.resolver;
        if let Some(at) = sent_at {
            let elapsed = self.0.clock.now().millis_since(at).max(0) as u64;
            cfg.window_ms = cfg.window_ms.saturating_sub(elapsed);
        }
        let (resolver, next) = Resolver::start(cfg, now);
        log::warn!(target: "broker", "settling {} of {} by correlation id ({why}); window {} ms", intent.correlation_id, intent.position_id, cfg.window_ms);
        self.add(intent, Step::Resolve { resolver, next }, now);
    }

    /// Send an exit again later under the same id (it provably did not reach Dhan).
    pub fn retry(&self, intent: &OrderIntent, why: &str) {
        let pause = self.0.cfg.retry_first;
        log::warn!(target: "broker", "exit {} of {} not sent ({why}): trying again in {pause:?}", intent.correlation_id, intent.position_id);
        self.add(intent, Step::Retry { attempt: 1 }, monotonic_millis() + pause.as_millis() as u64);
    }

    /// Hold an exit until the circuit breaker lets a call through.
    pub fn hold_for_breaker(&self, intent: &OrderIntent, why: &str) {
        log::error!(target: "broker", "ALERT exit {} of {} held: {why}; it goes as soon as the breaker admits a call", intent.correlation_id, intent.position_id);
        self.add(intent, Step::HoldForBreaker, monotonic_millis());
    }

    /// Whether the desk has a job for `cid`.
    pub fn knows(&self, cid: &CorrelationId) -> bool {
        self.0.jobs.lock().contains_key(cid)
    }

    /// Instruments with a job.
    pub fn instruments(&self) -> BTreeSet<InstrumentKey> {
        let cids: Vec<CorrelationId> = self.0.jobs.lock().keys().cloned().collect();
        cids.iter().filter_map(|c| self.0.orders.intent(c)).map(|i| i.instrument).collect()
    }

    /// `(exits held or waiting to be resent, orders being settled)`.
    pub fn figures(&self) -> (usize, usize) {
        let jobs = self.0.jobs.lock();
        let resolving = jobs.values().filter(|j| matches!(j.step, Step::Resolve { .. })).count();
        (jobs.len() - resolving, resolving)
    }

    pub fn shared(&self) -> &Arc<DeskShared> {
        &self.0
    }
}

/// The worker. Fresh per spawn; the jobs are in [`DeskShared`].
pub struct OrderDesk {
    desk: DeskHandle,
}

impl OrderDesk {
    pub fn new(desk: DeskHandle) -> OrderDesk {
        OrderDesk { desk }
    }

    fn s(&self) -> &DeskShared {
        &self.desk.0
    }

    /// Jobs due now, held exits in the order they were held (only the oldest may probe).
    fn due(&self, now: u64) -> Vec<CorrelationId> {
        let jobs = self.s().jobs.lock();
        let mut due: Vec<(u64, CorrelationId)> = jobs
            .iter()
            .filter(|(_, j)| j.due_ms <= now)
            .map(|(c, j)| (j.since_ms, c.clone()))
            .collect();
        due.sort();
        due.into_iter().map(|(_, c)| c).collect()
    }

    /// The earliest instant a job is due, if any.
    fn next_due(&self) -> Option<u64> {
        self.s().jobs.lock().values().map(|j| j.due_ms).min()
    }

    fn job(&self, cid: &CorrelationId) -> Option<Job> {
        self.s().jobs.lock().get(cid).cloned()
    }

    fn put(&self, cid: &CorrelationId, job: Option<Job>) {
        let mut jobs = self.s().jobs.lock();
        match job {
            Some(j) => {
                jobs.insert(cid.clone(), j);
            }
            None => {
                jobs.remove(cid);
            }
        }
    }

    /// Works on one job; returns whether a held exit found the breaker still refusing (the
    /// others then wait too).
    fn work(&self, cid: &CorrelationId, ctx: &WorkerCtx) -> bool {
        let Some(mut job) = self.job(cid) else { return false };
        let orders = &self.s().orders;
        let Some(intent) = orders.intent(cid) else {
            log::error!(target: "broker", "{cid}: the order book does not know it; its job is dropped");
            self.put(cid, None);
            return false;
        };
        // An exit waiting to be resent whose order ended meanwhile goes nowhere. (An unknown
        // placement is still settled: the resolver reads the book's order id among its
        // evidence, and its resolution is counted.)
        if !matches!(job.step, Step::Resolve { .. }) && orders.is_done(cid) {
            log::info!(target: "broker", "{cid} of {} has ended meanwhile (order book): not sent again", intent.position_id);
            self.put(cid, None);
            return false;
        }
        let now = monotonic_millis();
        match job.step.clone() {
            Step::Resolve { mut resolver, mut next } => loop {
                ctx.beat();
                let obs = match &next {
                    Action::Done(res) => {
                        self.resolved(&intent, res.clone());
                        return false;
                    }
                    Action::WaitUntil(at) if *at > monotonic_millis() => {
                        job.step = Step::Resolve { resolver, next: next.clone() };
                        job.due_ms = *at;
                        self.put(cid, Some(job));
                        return false;
                    }
                    Action::WaitUntil(_) => Observation::Woke,
                    Action::LookupByCorrelationId => {
                        let client = &self.s().placer.client;
                        Observation::ByCorrelationId(
                            match client.order_by_correlation_id(cid.as_str()) {
                                Ok(Some(o)) => {
                                    Lookup::Found { order_id: o.order_id, status: o.order_status }
                                }
                                Ok(None) => Lookup::NotFound,
                                Err(e) => Lookup::Failed(e.to_string()),
                            },
                        )
                    }
                    Action::ScanOrderBook => {
                        Observation::OrderBook(match self.s().placer.client.orders() {
                            Ok(book) => find_in_book(&book, cid.as_str()),
                            Err(e) => Lookup::Failed(e.to_string()),
                        })
                    }
                    Action::CheckStream => Observation::Stream(self.seen_on_stream(cid)),
                };
                next = resolver.step(obs, monotonic_millis());
                if ctx.should_stop() {
                    job.step = Step::Resolve { resolver, next };
                    self.put(cid, Some(job));
                    return false;
                }
            },
            Step::Retry { attempt } => self.place(&intent, job, attempt, now),
            Step::HoldForBreaker => self.place(&intent, job, 0, now),
        }
    }

    /// What the order-update stream (or the order tracker) has seen of `cid`.
    fn seen_on_stream(&self, cid: &CorrelationId) -> Lookup {
        if let Some(u) = self.s().recent.by_correlation_id(cid.as_str()) {
            return Lookup::Found { order_id: u.order_id, status: u.status };
        }
        match self.s().orders.order_id(cid) {
            Some(order_id) => Lookup::Found { order_id, status: OrderStatus::Other("seen".into()) },
            None => Lookup::NotFound,
        }
    }

    fn resolved(&self, intent: &OrderIntent, res: Resolution) {
        let s = self.s();
        let cid = &intent.correlation_id;
        let m = &s.placer.m;
        match res {
            Resolution::Found { order_id, status, evidence } => {
                m.resolutions.with_label_values(&["found"]).inc();
                log::warn!(target: "broker", "{cid} resolved: the broker holds it as order {order_id} ({status}, seen by {evidence:?}); tracking it, never sending it again");
                self.put(cid, None);
                let bind = Event::Bind { correlation_id: cid.clone(), order_id: order_id.clone() };
                for r in s.orders.apply(bind).reports() {
                    s.reporter.report(r);
                }
                // Its fills may already have happened: read its state now.
                match s.placer.client.order(&order_id) {
                    Ok(Some(o)) => {
                        let seen = Seen::from_order(&o);
                        let reports = super::valued::observe(&s.orders, &s.placer.client, &seen);
                        for r in reports {
                            if matches!(r, Report::Fill { .. }) {
                                m.fills.with_label_values(&["resolve"]).inc();
                            }
                            s.reporter.report(r);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!(target: "broker", "reading order {order_id} after resolving {cid}: {e}; the order tracker polls it")
                    }
                }
            }
            Resolution::Absent => {
                m.resolutions.with_label_values(&["absent"]).inc();
                self.put(cid, None);
                let window = s.cfg.resolver.window_ms;
                let detail = format!(
                    "no order with correlation id {cid} by lookup or in the order book after the {window} ms window"
                );
                let slice = s.orders.is_slice(cid);
                let finish = Event::Finish {
                    correlation_id: cid.clone(),
                    reason: format!("never reached the broker: {detail}"),
                };
                let reports = s.orders.apply(finish).reports();
                if slice {
                    // One child of a sliced exit: its parent ends once every child has.
                    log::warn!(target: "broker", "exit slice {cid} of {} never reached the broker", intent.position_id);
                    for r in reports {
                        s.reporter.report(r);
                    }
                    return;
                }
                s.reporter.absent(intent, detail);
            }
            Resolution::Undetermined { reason } => {
                m.resolutions.with_label_values(&["undetermined"]).inc();
                let pause = s.cfg.undetermined_pause;
                log::error!(target: "broker", "ALERT {cid} of {}: could not be settled ({reason}); nothing is sent, trying again in {pause:?}", intent.position_id);
                let now = monotonic_millis();
                let cfg = ResolverConfig { window_ms: 0, ..s.cfg.resolver };
                let (resolver, next) = Resolver::start(cfg, now);
                let job = Job {
                    step: Step::Resolve { resolver, next },
                    due_ms: now + pause.as_millis() as u64,
                    since_ms: now,
                };
                self.put(cid, Some(job));
            }
        }
    }

    /// One placement attempt of a held or retried exit; returns whether the breaker refused.
    fn place(&self, intent: &OrderIntent, mut job: Job, attempt: u32, now: u64) -> bool {
        let s = self.s();
        let cid = &intent.correlation_id;
        match s.placer.attempt(intent) {
            Attempt::Accepted(order_id) => {
                self.put(cid, None);
                log::info!(target: "broker", "exit {cid} of {} placed as order {order_id}", intent.position_id);
                let bind = Event::Bind { correlation_id: cid.clone(), order_id };
                for r in s.orders.apply(bind).reports() {
                    s.reporter.report(r);
                }
                false
            }
            Attempt::Rejected(reason) => {
                self.put(cid, None);
                let slice = s.orders.is_slice(cid);
                let finish = Event::Finish { correlation_id: cid.clone(), reason: reason.clone() };
                let reports = s.orders.apply(finish).reports();
                if slice {
                    log::warn!(target: "broker", "exit slice {cid} of {} refused: {reason}", intent.position_id);
                    for r in reports {
                        s.reporter.report(r);
                    }
                } else {
                    s.reporter.rejected(intent, reason);
                }
                false
            }
            Attempt::NotSent(why) => {
                let n = attempt.saturating_add(1);
                let pause = s.cfg.retry_first.saturating_mul(1 << n.min(16)).min(s.cfg.retry_max);
                log::warn!(target: "broker", "exit {cid} not sent again ({why}): next try in {pause:?}");
                job.step = Step::Retry { attempt: n };
                job.due_ms = now + pause.as_millis() as u64;
                self.put(cid, Some(job));
                false
            }
            Attempt::Unknown(why) => {
                let (resolver, next) = Resolver::start(s.cfg.resolver, monotonic_millis());
                log::warn!(target: "broker", "exit {cid}: outcome unknown ({why}); settling it by correlation id");
                job.step = Step::Resolve { resolver, next };
                job.due_ms = now;
                self.put(cid, Some(job));
                false
            }
            Attempt::BreakerOpen(_) => {
                job.step = Step::HoldForBreaker;
                job.due_ms = now + s.cfg.breaker_poll.as_millis() as u64;
                self.put(cid, Some(job));
                true
            }
        }
    }
}

impl Worker for OrderDesk {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let wake = self.s().wake_rx.clone();
        loop {
            ctx.beat();
            if ctx.should_stop() {
                break;
            }
            let now = monotonic_millis();
            let mut breaker_refused = false;
            for cid in self.due(now) {
                let held = self.job(&cid).is_some_and(|j| matches!(j.step, Step::HoldForBreaker));
                if held && breaker_refused {
                    continue;
                }
                if self.work(&cid, ctx) {
                    breaker_refused = true;
                }
                if ctx.should_stop() {
                    break;
                }
            }
            let (queued, resolving) = self.desk.figures();
            self.s().placer.set_desk_figures(queued, resolving);
            let now = monotonic_millis();
            let timeout = match self.next_due() {
                Some(at) => Duration::from_millis(at.saturating_sub(now)),
                None => ctx.beat_every(),
            }
            .min(ctx.beat_every());
            select! {
                recv(ctx.stopped()) -> _ => {}
                recv(wake) -> _ => {}
                default(timeout) => {}
            }
        }
        Ok(())
    }
}
