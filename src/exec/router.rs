//! The order router: the engine's one door to a broker.
//!
//! It takes orders from the exit engine on two channels, exits and entries, and always drains
//! the exits first: an exit never waits behind an entry. Each order is recorded in the
//! order book (`exec::order_book`, [`Event::Admit`]) *before* the [`Gateway`] is called, and an
//! order whose correlation id the book already knows is dropped — the last guard of
//! exactly-once, for an exit re-sent by a restarted exit engine. What the broker answered goes
//! into the book ([`Event::Placed`]) and back to the exit engine as an [`OrderEvent`].
//!
//! The gateway is synchronous: `place` returns the placement's outcome. The paper gateway
//! fills at once; a live gateway answers accepted (fills follow on the broker's order-update
//! stream, which reports to the exit engine directly), rejected, unknown (a lost answer,
//! resolved later by correlation id), or queued (throttled, or held while the circuit breaker
//! is open: the broker places it later and reports the outcome itself).
//!
//! Placers: a gateway whose placement waits for the broker's round trip asks for several
//! ([`Gateway::placers`]); the router thread then runs that many placement loops (itself and
//! `placers − 1` helper threads it owns), all taking from the same two channels, exits first.
//! Several orders are in flight at once, within the rate limiter the placements share (exits
//! first there too); the orders of one position still go one at a time ([`lanes`]). A helper
//! that panics ends the router (the supervisor respawns it, helpers included).
//!
//! The router beats its heartbeat between placements and, through the rate limiter, while it
//! waits for a slot; its heartbeat limit is at least the broker's worst single legitimate wait
//! (in live mode `broker.request_timeout_ms` + the limiter's wait + 2 s), so a burst of slow
//! exits is never taken for a hang.

mod lanes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::domain::{Clock, CorrelationId, Fill, OrderId, OrderIntent, Timestamp};
use crate::exec::messages::{OrderEvent, RouterOrder};
use crate::exec::metrics::EngineMetrics;
use crate::exec::order_book::{Answer, Event, OrderBookHandle, OrderState, Outcome, purpose_kind};
use crate::exec::seams::{EngineEvent, EventSink};
use crate::runtime::hops::{self, Hop};
use crate::runtime::spin::Waiting;
use crate::runtime::{Worker, WorkerCtx};

/// What placing an order gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Filled in full at once (paper).
    Filled(Fill),
    /// Taken by the broker; fills arrive later.
    Accepted { order_id: OrderId },
    /// Definitively refused.
    Rejected { reason: String },
    /// The answer was lost: the order may exist.
    Unknown { detail: String },
    /// Not sent yet (throttled, circuit breaker open): the live broker holds it and places it
    /// later under the same correlation id, reporting the outcome itself.
    Queued { detail: String },
}

/// A broker as the router sees it. Implementations hold their own connections and are shared
/// with the broker's other workers, hence `&self`.
pub trait Gateway: Send + Sync {
    /// `paper`, `dhan`: for logs.
    fn name(&self) -> &'static str;

    /// Places one market order. Must not retry on its own in a way that could place it twice
    /// (the correlation id is what the broker deduplicates on).
    fn place(&self, intent: &OrderIntent, now: Timestamp) -> Placement;

    /// How many times an order with this id was handed to the broker, when the gateway counts
    /// (tests and operations).
    fn placements(&self, _id: &CorrelationId) -> Option<u32> {
        None
    }

    /// How many orders the router may have in flight at once (at least 1). A gateway whose
    /// `place` waits for the broker's round trip says more than 1, so that a flatten is paced
    /// by the rate limit rather than by round trips; orders of one position still go one at a
    /// time.
    fn placers(&self) -> usize {
        1
    }
}

/// What the router works with, built once by the engine and cloned into each spawn: the
/// channel ends of its queues live as long as the engine, so a respawned router takes the
/// orders its predecessor left.
#[derive(Clone)]
pub struct RouterHandles {
    pub clock: Arc<dyn Clock>,
    /// The order book: the router records every order in it before the broker sees it.
    pub orders: OrderBookHandle,
    pub gateway: Arc<dyn Gateway>,
    pub sink: Arc<dyn EventSink>,
    pub m: EngineMetrics,
    pub exits_to_router_rx: Receiver<RouterOrder>,
    pub entries_to_router_rx: Receiver<RouterOrder>,
    pub router_to_exit_engine_tx: Sender<OrderEvent>,
}

/// The router worker, on its [`RouterHandles`]; a fresh one per spawn.
pub struct OrderRouter {
    h: RouterHandles,
    lanes: lanes::Lanes,
    /// How the router thread waits: asleep (the default) or spinning (`[host] busy_poll`).
    /// The helper placers always sleep: they serve bursts, not the first exit.
    waiting: Waiting,
}

/// How often a helper placer waiting for a busy position's lane looks up.
const HELPER_POLL: Duration = Duration::from_millis(100);

impl OrderRouter {
    pub fn new(h: RouterHandles) -> OrderRouter {
        OrderRouter { h, lanes: lanes::Lanes::default(), waiting: Waiting::Sleep }
    }

    /// The router thread spins on its queues instead of sleeping (`[host] busy_poll`).
    pub fn waiting(mut self, waiting: Waiting) -> OrderRouter {
        self.waiting = waiting;
        self
    }

    fn drain_exits(&self, ctx: Option<&WorkerCtx>) {
        while let Ok(order) = self.h.exits_to_router_rx.try_recv() {
            self.route(order, ctx);
        }
    }

    /// Places one order in its position's lane. Beats before it (a burst of exits is many
    /// placements in a row) and after it; the placement itself may block for the broker's
    /// worst single wait, which the router's heartbeat limit covers (see
    /// `engine::seams::BrokerParts::rest_heartbeat_floor`). Helper placers (`ctx` = `None`)
    /// do not beat: the router thread's loop does.
    fn route(&self, order: RouterOrder, ctx: Option<&WorkerCtx>) {
        if order.intent.purpose.is_exit() {
            hops::stamp(Hop::RouterDequeue);
        }
        let beat = || {
            if let Some(ctx) = ctx {
                ctx.beat();
            }
        };
        beat();
        let position = &order.intent.position_id;
        let every = ctx.map_or(HELPER_POLL, WorkerCtx::beat_every);
        self.lanes.claim(position, every, beat);
        self.place(&order);
        self.lanes.release(position);
        beat();
    }

    /// A helper placer's loop: the same channels as the router thread, exits first, until the
    /// router stops (`stopped`) or its thread's loop ends (`quit` disconnects). It sleeps
    /// until one of them or an order wakes it: no polling while idle.
    fn helper(&self, stopped: &Receiver<()>, quit: &Receiver<()>) {
        hops::mark_thread(hops::HotThread::Placer);
        let exits = &self.h.exits_to_router_rx;
        let entries = &self.h.entries_to_router_rx;
        loop {
            self.drain_exits(None);
            select! {
                recv(stopped) -> _ => return,
                recv(quit) -> _ => return,
                recv(exits) -> order => {
                    if let Ok(order) = order {
                        self.route(order, None);
                    }
                }
                recv(entries) -> order => {
                    if let Ok(order) = order {
                        self.drain_exits(None);
                        self.route(order, None);
                    }
                }
            }
        }
    }

    fn place(&self, order: &RouterOrder) {
        let s = &self.h;
        let intent = &order.intent;
        let kind = purpose_kind(intent.purpose);
        let cid = &intent.correlation_id;
        let now = s.clock.now();
        if let Outcome::Duplicate(state) = s.orders.apply(Event::Admit(intent.clone())) {
            s.m.orders.with_label_values(&[kind, "duplicate"]).inc();
            log::info!(target: "router", "dropping {kind} {cid} of {}: already {} (sent once only)", intent.position_id, state.name());
            return;
        }
        s.sink.record(&EngineEvent::OrderSent { intent: intent.clone(), at: now });
        let placement = s.gateway.place(intent, now);
        if let Placement::Queued { detail } = &placement {
            s.m.orders.with_label_values(&[kind, "queued"]).inc();
            log::warn!(target: "router", "{kind} {cid} of {}: queued by the {} broker ({detail})", intent.position_id, s.gateway.name());
            return;
        }
        let (state, event) = match placement {
            Placement::Filled(fill) => {
                s.m.decision_to_fill
                    .with_label_values(&[kind])
                    .observe(order.decided.elapsed().as_secs_f64());
                log::info!(target: "router", "{kind} {cid} of {}: {} {} {} filled at {} ({})", intent.position_id, intent.txn.name(), fill.quantity, intent.instrument, fill.price, s.gateway.name());
                s.sink.record(&EngineEvent::Fill { purpose: intent.purpose, fill: fill.clone() });
                let state = OrderState::Filled {
                    order_id: fill.order_id.clone(),
                    price: fill.price,
                    quantity: fill.quantity,
                };
                (state, OrderEvent::Filled { purpose: intent.purpose, fill })
            }
            Placement::Accepted { order_id } => {
                log::info!(target: "router", "{kind} {cid} of {}: accepted as order {order_id} ({})", intent.position_id, s.gateway.name());
                let event = OrderEvent::Accepted {
                    correlation_id: cid.clone(),
                    purpose: intent.purpose,
                    order_id: order_id.clone(),
                    at: now,
                };
                (OrderState::Accepted { order_id }, event)
            }
            Placement::Rejected { reason } => {
                log::warn!(target: "router", "{kind} {cid} of {}: rejected: {reason}", intent.position_id);
                let event = OrderEvent::Rejected {
                    correlation_id: cid.clone(),
                    purpose: intent.purpose,
                    reason: reason.clone(),
                    at: now,
                };
                (OrderState::Rejected { reason }, event)
            }
            Placement::Unknown { detail } => {
                log::warn!(target: "router", "{kind} {cid} of {}: outcome unknown ({detail}); resolving by correlation id", intent.position_id);
                let event = OrderEvent::Unknown {
                    correlation_id: cid.clone(),
                    purpose: intent.purpose,
                    detail: detail.clone(),
                    at: now,
                };
                (OrderState::Unknown { detail }, event)
            }
            Placement::Queued { .. } => unreachable!("handled above"),
        };
        s.m.orders.with_label_values(&[kind, state.name()]).inc();
        let at = s.clock.now();
        if let Some(answer) = Answer::of(&state) {
            s.orders.apply(Event::Placed { correlation_id: cid.clone(), answer });
        }
        s.sink.record(&EngineEvent::OrderState {
            correlation_id: cid.clone(),
            state,
            ordered: intent.quantity,
            at,
        });
        // The receiver lives as long as the engine: this cannot fail.
        let _ = s.router_to_exit_engine_tx.send(event);
    }
}

impl OrderRouter {
    /// The router thread's loop; ends on stop, or when a helper placer has panicked.
    fn main_loop(&self, ctx: &WorkerCtx, helper_died: &AtomicBool) -> anyhow::Result<()> {
        let exits = self.h.exits_to_router_rx.clone();
        let entries = self.h.entries_to_router_rx.clone();
        loop {
            ctx.beat();
            if helper_died.load(Ordering::Acquire) {
                anyhow::bail!("an order placer thread panicked");
            }
            self.drain_exits(Some(ctx));
            if ctx.should_stop() {
                break;
            }
            if self.waiting.spins() {
                match entries.try_recv() {
                    Ok(order) => {
                        self.drain_exits(Some(ctx));
                        self.route(order, Some(ctx));
                    }
                    Err(_) => self.waiting.pause(),
                }
                continue;
            }
            select! {
                recv(ctx.stopped()) -> _ => {}
                recv(exits) -> order => {
                    if let Ok(order) = order {
                        self.route(order, Some(ctx));
                    }
                }
                recv(entries) -> order => {
                    if let Ok(order) = order {
                        // An exit that arrived meanwhile goes first.
                        self.drain_exits(Some(ctx));
                        self.route(order, Some(ctx));
                    }
                }
                default(ctx.beat_every()) => {}
            }
        }
        // Exits decided before the stop still go out: refusing to reduce risk is never the
        // safe choice. Entries left in the channel are dropped with the process.
        self.drain_exits(Some(ctx));
        let left = entries.len();
        if left > 0 {
            log::warn!(target: "router", "stopping with {left} entry orders not placed");
        }
        Ok(())
    }
}

/// Sets its flag when dropped while unwinding: how the router thread learns that a helper
/// placer panicked.
struct PanicFlag<'a>(&'a AtomicBool);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

impl Worker for OrderRouter {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        hops::mark_thread(hops::HotThread::Placer);
        let helpers = self.h.gateway.placers().max(1) - 1;
        let router: &OrderRouter = self;
        // Never carries a message: dropping the sender tells the helpers to end.
        let (quit_tx, quit) = crossbeam_channel::bounded::<()>(0);
        let helper_died = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(helpers);
            for i in 0..helpers {
                let (quit, died, stopped) = (quit.clone(), &helper_died, ctx.stopped().clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("order_placer_{}", i + 1))
                    .spawn_scoped(scope, move || {
                        let _flag = PanicFlag(died);
                        router.helper(&stopped, &quit);
                    });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        log::error!(target: "router", "cannot start order placer {}: {e}; placing with fewer", i + 1);
                    }
                }
            }
            let result = router.main_loop(ctx, &helper_died);
            drop(quit_tx);
            let mut panicked = 0;
            for h in handles {
                if h.join().is_err() {
                    panicked += 1;
                }
            }
            match (result, panicked) {
                (Err(e), _) => Err(e),
                (Ok(()), 0) => Ok(()),
                (Ok(()), n) => Err(anyhow::anyhow!("{n} order placer threads panicked")),
            }
        })
    }
}
