//! Exactly once, under each fault of the simulated broker: positions opened with live entry
//! orders, stop losses fired by scripted prices, and the placements of the exits hit by a
//! timeout after accept, a connection reset, a 5xx (with and without the order created), a
//! burst of 429s, or lost order-update messages. Each triggered position must end with exactly
//! one exit order at the simulator, that order traded, and the position `Exited` (gone from
//! `/v1/positions`, its trade closed at the fill price). The access token never appears in a
//! log line.

mod live_support;

use live_support::*;
use scalper::broker::model::OrderStatus;
use scalper::domain::{ExitReason, PositionId, Side};
use scalper::risk::Lifecycle;
use scalper::sim::broker::{Fault, FaultConfig, Scope, SimBrokerConfig};

const POSITIONS: [scalper::domain::InstrumentKey; 3] = [A, B, C];

/// Opens a long on each of `POSITIONS` at 100.00, arms `arm` on the simulator, drops every
/// price to 89.00 (the stop loss), and checks the invariants.
fn exits_exactly_once(
    faults: FaultConfig,
    arm: impl FnOnce(&LiveSim),
) -> (LiveSim, LiveEngine, Vec<PositionId>) {
    let sim = LiveSim::start(sim_config(faults));
    let e = LiveEngine::start(&sim, Start::default());
    let ids: Vec<PositionId> = POSITIONS.iter().map(|k| e.open(*k, Side::Long, 75)).collect();
    arm(&sim);
    for k in POSITIONS {
        e.price(&sim, k, "89.00");
    }
    for id in &ids {
        let t = e.closed(id);
        assert_eq!(t.reason, ExitReason::StopLoss, "{id}");
        assert_eq!(t.exit_price, rupees("89.00"), "{id} closed at the fill price");
    }
    e.wait_gone_from_api(&ids);
    for id in &ids {
        sim.assert_one_filled_exit(id);
    }
    assert_token_never_logged();
    (sim, e, ids)
}

#[test]
fn timeout_after_accept_is_resolved_to_the_order_that_exists() {
    let (sim, e, ids) = exits_exactly_once(FaultConfig::default(), |sim| {
        sim.broker.faults().inject(Fault::TimeoutAfterAccept, Scope::Place, 3);
    });
    for id in &ids {
        let exit = &sim.exits_of(id)[0];
        assert_eq!(sim.posts_of(&exit.correlation_id), 1, "never sent twice");
        assert!(
            exit.correlation_id.starts_with("X1-"),
            "found, so no second attempt: {}",
            exit.correlation_id
        );
    }
    wait_until("the three unknown placements are resolved as found", || {
        let text = e.metrics_text();
        metric_value(&text, "scalper_broker_resolutions_total{result=\"found\"}") == Some(3.0)
    });
    e.stop();
    sim.shutdown();
}

#[test]
fn reset_before_processing_is_proved_absent_and_placed_again_under_a_new_id() {
    let (sim, e, ids) = exits_exactly_once(FaultConfig::default(), |sim| {
        sim.broker.faults().inject(Fault::Reset, Scope::Place, 3);
    });
    for id in &ids {
        let exit = &sim.exits_of(id)[0];
        assert!(
            exit.correlation_id.starts_with("X2-"),
            "attempt 1 never existed: {}",
            exit.correlation_id
        );
        assert_eq!(sim.posts_of(&format!("X1-{id}")), 1, "attempt 1 was sent once");
        assert_eq!(sim.posts_of(&format!("X2-{id}")), 1);
    }
    e.stop();
    sim.shutdown();
}

#[test]
fn server_errors_with_and_without_the_order_created() {
    let (sim, e, ids) = exits_exactly_once(FaultConfig::default(), |sim| {
        // The first exit's answer is a 500 though the order exists; the next two are 500s
        // before anything was created.
        sim.broker.faults().inject(Fault::ServerErrorAfterAccept, Scope::Place, 1);
        sim.broker.faults().inject(Fault::ServerError, Scope::Place, 2);
    });
    let attempts: Vec<String> =
        ids.iter().map(|id| sim.exits_of(id)[0].correlation_id.clone()).collect();
    assert_eq!(attempts.iter().filter(|c| c.starts_with("X1-")).count(), 1, "{attempts:?}");
    assert_eq!(attempts.iter().filter(|c| c.starts_with("X2-")).count(), 2, "{attempts:?}");
    e.stop();
    sim.shutdown();
}

#[test]
fn a_burst_of_429s_holds_the_exits_and_resends_them_under_the_same_ids() {
    let (sim, e, ids) = exits_exactly_once(FaultConfig::default(), |sim| {
        sim.broker.faults().inject(Fault::Throttle, Scope::Place, 5);
    });
    for id in &ids {
        let exit = &sim.exits_of(id)[0];
        assert!(
            exit.correlation_id.starts_with("X1-"),
            "not sent is safe to resend: {}",
            exit.correlation_id
        );
    }
    let throttled = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders" && r.body.contains("\"X1-"))
        .count();
    assert!(throttled >= 4, "the 429s were answered and the exits sent again: {throttled} posts");
    e.stop();
    sim.shutdown();
}

#[test]
fn lost_order_updates_are_made_up_by_polling_the_order_book() {
    let faults = FaultConfig { drop_update_rate_pct: 100, ..FaultConfig::default() };
    let (sim, e, _ids) = exits_exactly_once(faults, |_| {});
    let (sent, dropped) = sim.broker.order_updates_sent();
    assert_eq!(sent, 0, "every order update was dropped ({dropped})");
    let text = e.metrics_text();
    let polled = metric_value(&text, "scalper_broker_fills_total{source=\"poll\"}");
    assert_eq!(polled, Some(6.0), "the three entries and three exits filled by polls:\n{text}");
    e.stop();
    sim.shutdown();
}

#[test]
fn an_exit_the_exchange_rejects_leaves_the_position_active_and_the_next_trigger_places_attempt_two()
{
    let sim = LiveSim::start(SimBrokerConfig {
        transit: std::time::Duration::from_millis(800),
        ..sim_config(FaultConfig::default())
    });
    let e = LiveEngine::start(&sim, Start::default());
    let id = e.open(A, Side::Long, 75);
    e.price(&sim, A, "89.00");
    // While the exit is in transit the instrument loses its price: the RMS rejects the order.
    sim.board.remove(A);
    let core = e.shared.core.clone();
    wait_until("the rejection returns the position to active", || {
        core.lock().position(&id).is_some_and(|p| {
            matches!(&p.lifecycle, Lifecycle::Active { attempts: 1, last_rejection: Some(r) } if r.why.contains("No last traded price"))
        })
    });
    let (_, shown) = e.get("/v1/positions");
    assert!(shown.to_string().contains(id.as_str()), "still visible: {shown}");
    // The next trigger after the transient rejection's backoff (≤ 250 ms) places attempt 2.
    e.clock.advance_millis(300);
    e.price(&sim, A, "88.50");
    let t = e.closed(&id);
    assert_eq!((t.reason, t.exit_price, t.attempt), (ExitReason::StopLoss, rupees("88.50"), 2));
    let exits = sim.exits_of(&id);
    let states: Vec<(String, OrderStatus)> =
        exits.iter().map(|o| (o.correlation_id.clone(), o.status.clone())).collect();
    assert_eq!(
        states,
        [(format!("X1-{id}"), OrderStatus::Rejected), (format!("X2-{id}"), OrderStatus::Traded)]
    );
    e.stop();
    sim.shutdown();
}
