//! One placement attempt, the same for the router's first try and the order desk's retries:
//! circuit-breaker admission, the write-ahead record in the order journal, `POST /orders` at
//! the intent's priority (exits before entries in the shared rate limiter), and the breaker fed
//! with the result. Nothing here retries: the caller decides what an [`Attempt`] leads to.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::broker::breaker::{Admission, BreakerState, CallResult, SharedBreaker};
use crate::broker::journal::OrderJournal;
use crate::broker::model::{OrderType, PlaceOrder, ProductType};
use crate::broker::outcome::WriteOutcome;
use crate::broker::ratelimit::Priority;
use crate::broker::rest::DhanClient;
use crate::domain::{Clock, OrderId, OrderIntent};
use crate::instance::OrderGate;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::runtime::hops::{self, Hop};

use super::LiveMetrics;

/// The health-board component of the broker link (circuit breaker, queued exits).
pub const HEALTH_COMPONENT: &str = "broker";

/// Failpoints (`runtime::failpoint`) of the crash tests: an exit written ahead and not sent
/// yet; an entry or an exit Dhan has just accepted, before anything else learns of it.
pub const FP_EXIT_JOURNALED: &str = "broker.exit_journaled";
pub const FP_ENTRY_ACCEPTED: &str = "broker.entry_accepted";
pub const FP_EXIT_ACCEPTED: &str = "broker.exit_accepted";

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Accepted(OrderId),
    /// A definitive refusal (the reason as Dhan gave it).
    Rejected(String),
    /// Provably did not reach Dhan (429, our limiter, no connection): the same id may go again.
    NotSent(String),
    /// May or may not exist: settle it by correlation id before anything else.
    Unknown(String),
    /// The breaker refused the call; nothing was sent.
    BreakerOpen(String),
}

pub struct Placer {
    pub client: DhanClient,
    pub journal: Arc<OrderJournal>,
    pub breaker: SharedBreaker,
    pub product: ProductType,
    pub clock: Arc<dyn Clock>,
    pub health: HealthBoard,
    pub m: LiveMetrics,
    /// Exits queued and orders being settled, as the order desk last counted them.
    pub desk_figures: Mutex<(usize, usize)>,
    /// The instance's order gate: closed, nothing is sent.
    pub gate: OrderGate,
}

impl Placer {
    pub fn attempt(&self, intent: &OrderIntent) -> Attempt {
        if let Some(why) = self.gate.refusal() {
            log::error!(target: "broker", "order {} of {} not sent: {why}", intent.correlation_id, intent.position_id);
            return Attempt::Rejected(format!("not sent: {why}"));
        }
        let permit = match self.breaker.admit() {
            Admission::Allowed(p) => p,
            Admission::Refused { retry_at } => {
                let after = retry_at.map(|t| self.breaker.until(t));
                return Attempt::BreakerOpen(match after {
                    Some(d) => format!("circuit breaker open, next probe in {d:?}"),
                    None => "circuit breaker open".into(),
                });
            }
        };
        let exit = intent.purpose.is_exit();
        if let Err(e) = self.journal.record(intent, self.clock.now()) {
            self.m.journal_errors.inc();
            if !exit {
                // The permit goes back unused: a refusal says nothing about the link.
                self.breaker.record(permit, CallResult::Rejected);
                return Attempt::Rejected(format!("not sent: {e}"));
            }
            // Refusing to reduce risk is never the safe choice: the exit goes, unrecorded.
            log::error!(target: "broker", "ALERT exit {} sent without its write-ahead record: {e}", intent.correlation_id);
        }
        if exit {
            hops::stamp(Hop::JournalDurable);
            crate::runtime::failpoint::hit(FP_EXIT_JOURNALED);
        }
        let mut order = PlaceOrder::market(intent, self.product);
        if let Some(price) = intent.limit_price {
            // A LIMIT entry: its price is on the tick and inside the band already.
            order.order_type = OrderType::Limit;
            order.price = price;
        }
        let priority = if exit { Priority::Exit } else { Priority::Entry };
        let outcome = self.client.place_order(&order, priority);
        self.breaker.record(permit, outcome.breaker_result());
        self.publish_breaker();
        match outcome {
            WriteOutcome::Accepted(ack) => {
                crate::runtime::failpoint::hit(if exit {
                    FP_EXIT_ACCEPTED
                } else {
                    FP_ENTRY_ACCEPTED
                });
                Attempt::Accepted(ack.order_id)
            }
            WriteOutcome::Rejected(r) => Attempt::Rejected(r.to_string()),
            WriteOutcome::NotSent(n) => Attempt::NotSent(n.to_string()),
            WriteOutcome::Unknown(u) => Attempt::Unknown(u.to_string()),
        }
    }

    /// The order desk's figures: exits queued, orders being settled.
    pub fn set_desk_figures(&self, queued: usize, resolving: usize) {
        *self.desk_figures.lock() = (queued, resolving);
        self.m.exits_queued.set(queued as i64);
        self.m.orders_resolving.set(resolving as i64);
        self.publish_breaker();
    }

    /// The breaker's state and the desk's figures in metrics and health. An open breaker is
    /// `Degraded`, not `Down`: the engine is doing the right thing (refusing entries, holding
    /// exits), and `/health` stays 200 for that.
    pub fn publish_breaker(&self) {
        let state = self.breaker.state();
        self.m.breaker_state.set(state.name());
        let (queued, resolving) = *self.desk_figures.lock();
        let mut parts = Vec::new();
        match state {
            BreakerState::Open { .. } => {
                parts.push("circuit breaker open: entries refused, exits held".to_string())
            }
            BreakerState::HalfOpen { .. } => {
                parts.push("circuit breaker half-open: one probe allowed".to_string())
            }
            BreakerState::Closed { .. } => {}
        }
        if queued > 0 {
            parts.push(format!("{queued} exits queued"));
        }
        if resolving > 0 {
            parts.push(format!("{resolving} orders being settled by correlation id"));
        }
        let status = if parts.is_empty() { Status::Ok } else { Status::Degraded };
        let h = ComponentHealth::new(status, parts.join("; ")).with_details(serde_json::json!({
            "breaker": state.name(),
            "exits_queued": queued,
            "orders_resolving": resolving,
        }));
        self.health.set(HEALTH_COMPONENT, h);
    }
}
