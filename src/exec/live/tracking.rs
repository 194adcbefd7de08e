//! The `order_tracker` worker: what Dhan says about our orders, applied to the order book
//! (`exec::order_book`), which turns it into the exit engine's events exactly once.
//!
//! Two sources, because order-update messages can be lost (a dropped frame, a reconnect: Dhan
//! does not replay): the order-update socket's messages as they come, and a poll of the order
//! book (`GET /orders`, one non-trading call whatever the number of orders) whenever an order
//! the broker holds has had no report for `poll_every`, and at once after the socket
//! (re)connects. The book's cumulative bookkeeping makes a fill seen by both count once.

use std::time::Duration;

use crossbeam_channel::{Receiver, select};

use crate::broker::order_updates::OrderUpdateEvent;
use crate::broker::rest::DhanClient;
use crate::exec::order_book::{OrderBookHandle, Report, Seen};
use crate::runtime::{Worker, WorkerCtx, monotonic_millis};

use super::LiveMetrics;
use super::report::Reporter;

/// What the worker needs; created once, cloned into every spawn.
#[derive(Clone)]
pub struct TrackingShared {
    pub updates: Receiver<OrderUpdateEvent>,
    pub orders: OrderBookHandle,
    pub reporter: Reporter,
    pub client: DhanClient,
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
        let reports = super::valued::observe(&self.s.orders, &self.s.client, seen);
        for r in reports {
            if matches!(r, Report::Fill { .. }) {
                self.s.m.fills.with_label_values(&[source]).inc();
            }
            self.s.reporter.report(r);
        }
    }

    fn poll(&mut self) {
        let poll_ms = self.s.poll_every.as_millis() as u64;
        let quiet = self.s.orders.quiet_working(poll_ms);
        if quiet.is_empty() && !self.poll_now {
            return;
        }
        self.poll_now = false;
        self.s.m.polls.inc();
        match self.s.client.orders() {
            Ok(book) => {
                for o in &book {
                    let by_cid = o
                        .correlation_id
                        .as_deref()
                        .and_then(|c| crate::domain::CorrelationId::new(c).ok())
                        .is_some_and(|c| {
                            self.s.orders.is_tracked(&c) && !self.s.orders.is_done(&c)
                        });
                    let ours = by_cid || quiet.iter().any(|(_, id)| *id == o.order_id);
                    if ours {
                        self.apply(&Seen::from_order(o), "poll");
                    }
                }
            }
            Err(e) => {
                log::warn!(target: "broker", "polling the order book for {} quiet orders failed: {e}", quiet.len())
            }
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
