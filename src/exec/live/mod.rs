//! The live Dhan broker, as the engine's workers see it. Threads and their jobs:
//!
//! - the order router (not here) calls [`gateway::LiveGateway::place`]: write-ahead in the
//!   order journal, one `POST /orders` through the shared rate limiter (exits first) and the
//!   circuit breaker, and the outcome: accepted (tracked), rejected (definitive), not sent
//!   (an exit is retried later under the same id), unknown (resolved by the order desk), or
//!   breaker open (entries refused, exits queued);
//! - `order_desk` ([`desk`]): settles unknown placements by correlation id (found → tracked,
//!   provably absent → the exit engine starts the next attempt under a new id), retries exits
//!   that were not sent, and places the exits queued while the breaker was open once it
//!   half-opens;
//! - `order_updates` (`broker::order_updates`): the order-update socket;
//! - `order_tracker` ([`tracking`]): applies the socket's messages and polls the order book
//!   for orders gone quiet (messages can be lost), applying both to the order book
//!   (`exec::order_book`), which turns them into fills, rejections and ends exactly once for
//!   the exit engine;
//! - the heartbeat calls [`reconciler::LiveReconciler`] (broker books read twice, applied by
//!   the exit engine) and [`ltp::LtpSource`] (the stale-price fallback); the exit engine calls
//!   the reconciler's startup before its first order.
//!
//! Everything that must survive a worker's respawn (the order book, the desk's jobs, the
//! journal, metric handles) is created once by `engine::live` and shared through these
//! handles. Every worker here changes order state only through
//! [`OrderBookHandle::apply`](crate::exec::order_book::OrderBookHandle::apply).

pub mod desk;
pub mod gateway;
pub mod ltp;
pub mod placer;
pub mod reconciler;
pub mod report;
pub mod tracking;
pub mod valued;

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use crate::broker::breaker::BreakerState;
use crate::ops::metrics::{Metrics, StateGauge};

/// The live broker's metric handles (created once per engine).
#[derive(Clone, Debug)]
pub struct LiveMetrics {
    /// `scalper_broker_breaker_state{state}`.
    pub breaker_state: StateGauge,
    pub exits_queued: IntGauge,
    pub orders_resolving: IntGauge,
    pub resolutions: IntCounterVec,
    pub fills: IntCounterVec,
    pub polls: IntCounter,
    pub journal_errors: IntCounter,
    pub reconcile_rounds: IntCounterVec,
}

impl LiveMetrics {
    pub fn new(m: &Metrics) -> LiveMetrics {
        LiveMetrics {
            breaker_state: m.state_gauge(
                "broker_breaker_state",
                "Circuit breaker in front of Dhan's order API: 1 for the current state (closed, \
                 half_open, open), 0 for the others",
                "state",
                BreakerState::NAMES,
                "closed",
            ),
            exits_queued: m.gauge(
                "broker_exits_queued",
                "Exit orders held back (circuit breaker open, or not sent and waiting to retry)",
            ),
            orders_resolving: m.gauge(
                "broker_orders_resolving",
                "Placements with an unknown outcome being settled by correlation id",
            ),
            resolutions: m.counter_vec_preset(
                "broker_resolutions_total",
                "Unknown placements settled, by result (found, absent, undetermined)",
                &["result"],
                &[&["found", "absent", "undetermined"]],
            ),
            fills: m.counter_vec_preset(
                "broker_fills_total",
                "Executions of our orders, by where they were first seen (socket, poll, resolve)",
                &["source"],
                &[&["socket", "poll", "resolve"]],
            ),
            polls: m.counter("broker_order_polls_total", "Order-book polls for quiet orders"),
            journal_errors: m.counter(
                "order_journal_errors_total",
                "Placements whose write-ahead record could not be made durable",
            ),
            reconcile_rounds: m.counter_vec_preset(
                "reconcile_rounds_total",
                "Reconciliation reads of the broker's books, by result (ok, failed)",
                &["result"],
                &[&["ok", "failed"]],
            ),
        }
    }
}
