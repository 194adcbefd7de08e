//! The `order_tracker` worker: what Dhan says about our orders, turned into the exit engine's
//! events exactly once (`broker::tracker`).
//!
//! Two sources, because order-update messages can be lost (a dropped frame, a reconnect: Dhan
//! does not replay): the order-update socket's messages as they come, and a poll of the order
//! book (`GET /orders`, one non-trading call whatever the number of orders) whenever an order
//! the broker holds has had no report for `poll_every`, and at once after the socket
//! (re)connects. The tracker's cumulative bookkeeping makes a fill seen by both count once.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, select};

use crate::broker::order_updates::OrderUpdateEvent;
use crate::broker::rest::DhanClient;
use crate::broker::tracker::{Report, Seen};
use crate::domain::Clock;
use crate::runtime::{Worker, WorkerCtx, monotonic_millis};

use super::report::Reporter;
use super::{LiveMetrics, SharedTracker};

/// Ended orders are kept this long, to drop their late duplicate reports.
const KEEP_ENDED_MS: u64 = 60 * 60 * 1_000;

/// What the worker needs; created once, cloned into every spawn.
#[derive(Clone)]
pub struct TrackingShared {
    pub updates: Receiver<OrderUpdateEvent>,
    pub tracker: SharedTracker,
    pub reporter: Reporter,
    pub client: DhanClient,
    pub clock: Arc<dyn Clock>,
    pub poll_every: Duration,
    pub m: LiveMetrics,
}

pub struct OrderTracking {
    s: TrackingShared,
    next_poll_ms: u64,
    poll_now: bool,
}

impl OrderTracking {
    pub fn new(s: TrackingShared) -> OrderTracking {
        // A fresh spawn polls first: its predecessor may have died with reports unapplied.
        OrderTracking { s, next_poll_ms: 0, poll_now: true }
    }

    fn apply(&self, seen: &Seen, source: &str) {
        let at = self.s.clock.now();
        let now = SharedTracker::now_ms();
        let reports = super::valued::observe(&self.s.tracker, &self.s.client, seen, at, now);
        for r in reports {
            if matches!(r, Report::Fill { .. }) {
                self.s.m.fills.with_label_values(&[source]).inc();
            }
            self.s.reporter.report(r);
        }
    }

    fn poll(&mut self) {
        let poll_ms = self.s.poll_every.as_millis() as u64;
        let now = monotonic_millis();
        let quiet = self.s.tracker.lock().quiet_working(poll_ms, now);
        if quiet.is_empty() && !self.poll_now {
            return;
        }
        self.poll_now = false;
        self.s.m.polls.inc();
        match self.s.client.orders() {
            Ok(book) => {
                for o in &book {
                    let ours = {
                        let t = self.s.tracker.lock();
                        let by_cid = o
                            .correlation_id
                            .as_deref()
                            .and_then(|c| crate::domain::CorrelationId::new(c).ok())
                            .is_some_and(|c| t.is_tracked(&c) && !t.is_done(&c));
                        by_cid || quiet.iter().any(|(_, id)| *id == o.order_id)
                    };
                    if ours {
                        self.apply(&Seen::from_order(o), "poll");
                    }
                }
            }
            Err(e) => {
                log::warn!(target: "broker", "polling the order book for {} quiet orders failed: {e}", quiet.len())
            }
        }
        let pruned = self.s.tracker.lock().prune(KEEP_ENDED_MS, now);
        if pruned > 0 {
            log::debug!(target: "broker", "forgot {pruned} orders that ended long ago");
        }
    }
}

impl Worker for OrderTracking {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let updates = self.s.updates.clone();
        let poll_ms = self.s.poll_every.as_millis() as u64;
        loop {
            ctx.beat();
            if ctx.should_stop() {
                break;
            }
            let now = monotonic_millis();
            if self.poll_now || now >= self.next_poll_ms {
                self.poll();
                self.next_poll_ms = monotonic_millis() + poll_ms;
            }
            let wait = Duration::from_millis(self.next_poll_ms.saturating_sub(monotonic_millis()))
                .min(ctx.beat_every());
            select! {
                recv(ctx.stopped()) -> _ => {}
                recv(updates) -> event => match event {
                    Ok(OrderUpdateEvent::Update(u)) => self.apply(&Seen::from_update(&u), "socket"),
                    Ok(OrderUpdateEvent::Connected) => {
                        // Dhan does not replay what was missed while disconnected.
                        self.poll_now = true;
                    }
                    Ok(OrderUpdateEvent::Disconnected { reason, .. }) => {
                        log::warn!(target: "broker", "order updates interrupted ({reason}): polling the order book meanwhile");
                    }
                    Err(_) => {}
                },
                default(wait) => {}
            }
        }
        Ok(())
    }
}
