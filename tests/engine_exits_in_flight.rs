//! Exits in flight on the running engine. The broker here accepts exit orders and holds them
//! until the test reports a fill or a rejection on the broker's order-event channel — the way
//! the live Dhan broker will behave, which this build does not include yet. Entries fill on the
//! paper broker. Triggers on the same tick, triggers while an exit is in flight, a kill switch
//! and the daily loss limit while exiting: one order per exit; a rejected exit is retried under
//! a new correlation id.

mod engine_support;

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use engine_support::*;
use parking_lot::Mutex;
use scalper::domain::{
    CorrelationId, ExitReason, Fill, OrderId, OrderIntent, OrderPurpose, PositionId, Side,
    Timestamp,
};
use scalper::engine::seams::{BrokerParts, NoReconciliation, Seams};
use scalper::exec::messages::OrderEvent;
use scalper::exec::paper::PaperBroker;
use scalper::exec::paper_gateway::PaperGateway;
use scalper::exec::router::{Gateway, Placement};

/// Entries on the paper broker; exits accepted and held.
struct HoldingGateway {
    paper: PaperGateway,
    held: Mutex<Vec<OrderIntent>>,
    placed: Mutex<HashMap<CorrelationId, u32>>,
}

impl Gateway for HoldingGateway {
    fn name(&self) -> &'static str {
        "holding"
    }

    fn place(&self, intent: &OrderIntent, now: Timestamp) -> Placement {
        *self.placed.lock().entry(intent.correlation_id.clone()).or_insert(0) += 1;
        if !intent.purpose.is_exit() {
            return self.paper.place(intent, now);
        }
        let mut held = self.held.lock();
        held.push(intent.clone());
        Placement::Accepted { order_id: OrderId(format!("HELD-{}", held.len())) }
    }

    fn placements(&self, id: &CorrelationId) -> Option<u32> {
        Some(self.placed.lock().get(id).copied().unwrap_or(0))
    }
}

struct Broker {
    gateway: Arc<HoldingGateway>,
    events: Arc<Mutex<Option<Sender<OrderEvent>>>>,
}

impl Broker {
    fn held(&self) -> Vec<OrderIntent> {
        self.gateway.held.lock().clone()
    }

    fn held_for(&self, id: &PositionId) -> Vec<OrderIntent> {
        self.held().into_iter().filter(|i| &i.position_id == id).collect()
    }

    fn send(&self, event: OrderEvent) {
        self.events.lock().as_ref().expect("wired").send(event).expect("exit engine listening");
    }

    fn fill(&self, intent: &OrderIntent, price: &str, at: Timestamp) {
        let fill = Fill {
            correlation_id: intent.correlation_id.clone(),
            order_id: OrderId("HELD".into()),
            trade_id: format!("T-{}", intent.correlation_id),
            instrument: intent.instrument,
            txn: intent.txn,
            quantity: intent.quantity,
            price: rupees(price),
            value: rupees(price) * intent.quantity,
            at,
        };
        self.send(OrderEvent::Filled { purpose: intent.purpose, fill });
    }

    fn reject(&self, intent: &OrderIntent, at: Timestamp) {
        self.send(OrderEvent::Rejected {
            correlation_id: intent.correlation_id.clone(),
            purpose: intent.purpose,
            reason: "RMS: price band".into(),
            at,
        });
    }
}

fn start(extra: &str) -> (Harness, Broker) {
    let events = Arc::new(Mutex::new(None));
    let slot = events.clone();
    let gateway_slot: Arc<Mutex<Option<Arc<HoldingGateway>>>> = Arc::default();
    let g = gateway_slot.clone();
    let h = Harness::start_with(extra, move |sink| Seams {
        sink,
        broker: Box::new(move |ctx| {
            let wallet = Arc::new(Mutex::new(PaperBroker::new(
                ctx.config.paper.clone(),
                ctx.config.charges.clone(),
            )));
            let gateway = Arc::new(HoldingGateway {
                paper: PaperGateway::new(wallet.clone()),
                held: Mutex::new(Vec::new()),
                placed: Mutex::new(HashMap::new()),
            });
            *slot.lock() = Some(ctx.order_events.clone());
            *g.lock() = Some(gateway.clone());
            Ok(BrokerParts {
                gateway,
                paper_wallet: Some(wallet),
                workers: Vec::new(),
                reconciler: Arc::new(NoReconciliation),
                stale_prices: None,
                rest_heartbeat_floor: std::time::Duration::ZERO,
            })
        }),
        ..Seams::paper()
    });
    let gateway = gateway_slot.lock().clone().expect("broker built");
    (h, Broker { gateway, events })
}

fn exiting(h: &Harness, id: &PositionId) -> bool {
    h.shared
        .core
        .lock()
        .position(id)
        .is_some_and(|p| matches!(p.lifecycle, scalper::risk::Lifecycle::Exiting(_)))
}

#[test]
fn triggers_while_an_exit_is_in_flight_place_no_second_order() {
    let (mut h, broker) = start("[limits]\nmax_daily_loss_rupees = 1000\n");
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "90.00");
    wait_until("the stop-loss exit is at the broker", || broker.held_for(&a).len() == 1);
    assert!(exiting(&h, &a));

    // More stop-loss ticks, the daily loss limit (-1500.00) and a kill switch, all while exiting.
    h.at("10:00:03");
    h.price(A, "85.00");
    h.at("10:00:04");
    h.price(A, "80.00");
    let (status, report) = h.post("/v1/flatten", "");
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["exits"].as_array().map(Vec::len), report["already_exiting"].as_u64()),
        (Some(0), Some(1)),
        "{report}"
    );
    let pnl = h.pnl_after(0);
    assert_eq!(pnl["trading"]["state"], "halted");
    assert_eq!(broker.held_for(&a).len(), 1, "one exit order, whatever fired meanwhile");

    let exit = broker.held_for(&a).remove(0);
    assert_eq!(exit.purpose, OrderPurpose::Exit(ExitReason::StopLoss));
    assert_eq!(exit.reference_price, rupees("90.00"));
    broker.fill(&exit, "89.95", h.now());
    let t = h.closed(&a);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("89.95")));
    assert_eq!(broker.gateway.placements(&exit.correlation_id), Some(1));
    assert_eq!(h.shared.orders.view().count(true), 1);
    h.stop();
}

#[test]
fn a_tick_firing_a_rule_and_the_daily_loss_limit_places_one_order_per_position() {
    let (mut h, broker) = start("[limits]\nmax_daily_loss_rupees = 700\n");
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.price(B, "100.00");
    let b = h.open(B, Side::Long, 75);
    // One tick: A's stop loss (-750.00) and the daily loss limit (day PnL -750.00 ≤ -700.00).
    h.at("10:00:02");
    h.price(A, "90.00");
    wait_until("both exits are at the broker", || broker.held().len() == 2);
    let (xa, xb) = (broker.held_for(&a), broker.held_for(&b));
    assert_eq!(xa.len(), 1);
    assert_eq!(
        xa[0].purpose,
        OrderPurpose::Exit(ExitReason::StopLoss),
        "the tick's rule is A's reason"
    );
    assert_eq!(xb.len(), 1);
    assert_eq!(xb[0].purpose, OrderPurpose::Exit(ExitReason::DailyLossLimit));
    assert_eq!(xb[0].reference_price, rupees("100.00"), "B exits at its last price");
    assert_eq!(h.shared.trading.state(), scalper::risk::TradingState::Halted);

    broker.fill(&xa[0], "90.00", h.now());
    broker.fill(&xb[0], "100.00", h.now());
    assert_eq!(h.closed(&a).reason, ExitReason::StopLoss);
    assert_eq!(h.closed(&b).reason, ExitReason::DailyLossLimit);
    assert_eq!(broker.held().len(), 2, "no order after the fills either");
    h.stop();
}

#[test]
fn a_rejected_exit_is_retried_on_the_next_trigger_under_a_new_correlation_id() {
    let (mut h, broker) = start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "90.00");
    wait_until("the first exit is at the broker", || broker.held_for(&a).len() == 1);
    let first = broker.held_for(&a).remove(0);
    broker.reject(&first, h.now());
    let core = h.shared.core.clone();
    wait_until("the position is active again", || {
        core.lock().position(&a).is_some_and(|p| p.is_active())
    });

    h.at("10:00:03");
    h.price(A, "89.00");
    wait_until("the second attempt is at the broker", || broker.held_for(&a).len() == 2);
    let second = broker.held_for(&a).remove(1);
    assert_ne!(second.correlation_id, first.correlation_id);
    assert!(second.correlation_id.as_str().starts_with("X2-"), "{}", second.correlation_id);
    broker.fill(&second, "89.00", h.now());
    let t = h.closed(&a);
    assert_eq!((t.reason, t.exit_price, t.attempt), (ExitReason::StopLoss, rupees("89.00"), 2));
    for x in [&first, &second] {
        assert_eq!(broker.gateway.placements(&x.correlation_id), Some(1));
    }
    h.stop();
}
