//! Telling the engine what became of an order after its placement: the persistence sink gets
//! the fill or the order's state, and the exit engine gets the [`OrderEvent`]. The order book
//! already holds it: every report here comes out of [`OrderBook::apply`](crate::exec::order_book::OrderBook::apply). Used by every live worker that learns something (the order tracker, the
//! order desk, startup reconciliation); the router reports what `place` itself returned.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::domain::{Clock, OrderId, OrderIntent};
use crate::exec::messages::OrderEvent;
use crate::exec::order_book::Report;
use crate::exec::order_book::{OrderState, purpose_kind};
use crate::exec::seams::{EngineEvent, EventSink};

#[derive(Clone)]
pub struct Reporter {
    events: Sender<OrderEvent>,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

impl Reporter {
    pub fn new(
        events: Sender<OrderEvent>,
        sink: Arc<dyn EventSink>,
        clock: Arc<dyn Clock>,
    ) -> Reporter {
        Reporter { events, sink, clock }
    }

    fn settle(&self, intent: &OrderIntent, state: OrderState) {
        let at = self.clock.now();
        let cid = intent.correlation_id.clone();
        let ordered = intent.quantity;
        self.sink.record(&EngineEvent::OrderState { correlation_id: cid, state, ordered, at });
    }

    fn send(&self, event: OrderEvent) {
        // The receiver lives as long as the engine.
        let _ = self.events.send(event);
    }

    /// An order-book conclusion.
    pub fn report(&self, report: Report) {
        match report {
            Report::Bound { intent, order_id } => self.accepted(&intent, order_id),
            Report::Fill { intent, fill, cumulative } => {
                let kind = purpose_kind(intent.purpose);
                log::info!(target: "broker", "{kind} {} of {}: {} {} {} filled at {} (order {}, {} of {} so far)", intent.correlation_id, intent.position_id, intent.txn.name(), fill.quantity, intent.instrument, fill.price, fill.order_id, cumulative, intent.quantity);
                self.settle(
                    &intent,
                    OrderState::Filled {
                        order_id: fill.order_id.clone(),
                        price: fill.price,
                        quantity: cumulative,
                    },
                );
                self.sink
                    .record(&EngineEvent::Fill { purpose: intent.purpose, fill: fill.clone() });
                self.send(OrderEvent::Filled { purpose: intent.purpose, fill });
            }
            Report::Ended { intent, order_id, status, reason } => {
                let why = if reason.is_empty() {
                    format!("order {order_id} {status}")
                } else {
                    format!("order {order_id} {status}: {reason}")
                };
                self.rejected(&intent, why);
            }
        }
    }

    /// The broker holds the order.
    pub fn accepted(&self, intent: &OrderIntent, order_id: OrderId) {
        log::info!(target: "broker", "{} {} of {}: the broker holds it as order {order_id}", purpose_kind(intent.purpose), intent.correlation_id, intent.position_id);
        self.settle(intent, OrderState::Accepted { order_id: order_id.clone() });
        self.send(OrderEvent::Accepted {
            correlation_id: intent.correlation_id.clone(),
            purpose: intent.purpose,
            order_id,
            at: self.clock.now(),
        });
    }

    /// Definitively refused, or ended without (further) executions.
    pub fn rejected(&self, intent: &OrderIntent, reason: String) {
        log::warn!(target: "broker", "{} {} of {}: {reason}", purpose_kind(intent.purpose), intent.correlation_id, intent.position_id);
        self.settle(intent, OrderState::Rejected { reason: reason.clone() });
        self.send(OrderEvent::Rejected {
            correlation_id: intent.correlation_id.clone(),
            purpose: intent.purpose,
            reason,
            at: self.clock.now(),
        });
    }

    /// Proved never to have reached the broker.
    pub fn absent(&self, intent: &OrderIntent, detail: String) {
        log::warn!(target: "broker", "{} {} of {}: absent at the broker ({detail})", purpose_kind(intent.purpose), intent.correlation_id, intent.position_id);
        self.settle(
            intent,
            OrderState::Rejected { reason: format!("never reached the broker: {detail}") },
        );
        self.send(OrderEvent::Absent {
            correlation_id: intent.correlation_id.clone(),
            purpose: intent.purpose,
            detail,
            at: self.clock.now(),
        });
    }
}
