//! Exactly-once exits across an exit-engine panic. The failpoint between the core's decision
//! and the hand-off to the router makes the exit engine panic with the exit decided and not
//! sent; the supervisor respawns it, the respawn carries out its outbox, and the exit reaches
//! the paper broker exactly once. An order re-sent to the router is dropped by the order book.
//!
//! One test in this file: the failpoint registry is process-wide.

mod engine_support;

use engine_support::*;
use scalper::domain::{ExitReason, OrderPurpose, Side};
use scalper::exec::exit_engine::AFTER_DECISION;
use scalper::exec::messages::RouterOrder;
use scalper::runtime::{SupervisorEvent, failpoint};

#[test]
fn an_exit_engine_panic_between_decision_and_order_places_each_exit_exactly_once() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.price(B, "100.00");
    let b = h.open(B, Side::Short, 75);

    failpoint::arm(AFTER_DECISION, 1);
    h.at("10:00:02");
    // The core decides A's stop loss; the worker panics before the order leaves.
    h.price(A, "90.00");
    let failed = h.wait_event(
        "the exit engine fails",
        |e| matches!(e, SupervisorEvent::WorkerFailed { worker, .. } if worker == "exit_engine"),
    );
    let SupervisorEvent::WorkerFailed { reason, .. } = failed else { unreachable!() };
    assert!(reason.contains("failpoint exit_engine.after_decision fired"), "{reason}");
    h.wait_event(
        "the exit engine is respawned",
        |e| matches!(e, SupervisorEvent::WorkerRestarted { worker, .. } if worker == "exit_engine"),
    );
    let t = h.closed(&a);
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::StopLoss, rupees("90.00"), ist("10:00:02"))
    );

    // The respawned worker still guards the other position, with its risk state intact.
    h.at("10:00:03");
    h.price(B, "110.00");
    let t = h.closed(&b);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("110.00")));

    let exits: Vec<_> = h
        .shared
        .orders
        .view()
        .entries()
        .into_iter()
        .filter(|e| e.intent.purpose.is_exit())
        .collect();
    assert_eq!(exits.len(), 2, "one exit order per position: {exits:?}");
    for e in &exits {
        assert_eq!(e.intent.purpose, OrderPurpose::Exit(ExitReason::StopLoss));
        assert_eq!(
            h.shared.gateway.placements(&e.intent.correlation_id),
            Some(1),
            "{} reached the broker once",
            e.intent.correlation_id
        );
    }
    assert!(h.shared.outbox.is_empty());
    let status = h.supervisor().statuses();
    let engine = status.iter().find(|w| w.name == "exit_engine").expect("exit_engine row");
    assert_eq!(engine.restarts, 1);

    // The order book is the last guard: the same exit handed to the router again is dropped.
    let again = RouterOrder { intent: exits[0].intent.clone(), decided: std::time::Instant::now() };
    h.shared.channels.exits_to_router_tx.send(again).unwrap();
    wait_until("the router drops the duplicate", || {
        metric_sum(
            &h.metrics_text(),
            "scalper_orders_total",
            &[("purpose", "exit"), ("outcome", "duplicate")],
        ) == 1.0
    });
    assert_eq!(h.shared.gateway.placements(&exits[0].intent.correlation_id), Some(1));
    assert_eq!(h.recorder.closed_trades().len(), 2);
    h.stop();
}
