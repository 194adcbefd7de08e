//! Reconciliation with the broker's books, against the real simulator: positions the engine
//! did not know are adopted on their side, quantity and average price, at startup and on the
//! heartbeat's cadence, and then managed like any other (a stop loss exits them through the
//! broker); a positions read that fails or cannot be parsed changes nothing; a position closed
//! from another platform is closed locally once two reads agree, with the reason recorded;
//! trading does not start until the startup reconciliation succeeds, and a broker slower than
//! the exit engine's heartbeat limit does not get the waiting exit engine reported stuck.

mod live_support;

use std::time::Duration;

use live_support::*;
use scalper::broker::model::{OrderType, ProductType, Validity};
use scalper::domain::{ExitReason, Paise, Qty, Side, Txn};
use scalper::engine::live::LiveOptions;
use scalper::risk::Origin;
use scalper::sim::broker::{Fault, FaultConfig, NewOrder, Scope};

fn adopted(
    e: &LiveEngine,
    instrument: scalper::domain::InstrumentKey,
) -> Option<scalper::risk::Position> {
    e.shared.core.lock().positions().find(|p| p.instrument == instrument).cloned()
}

#[test]
fn unknown_broker_long_and_short_are_adopted_and_then_managed() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    // A long bought from the web app before the engine started...
    sim.broker.inject_position(A, ProductType::Intraday, 75, rupees("101.50"));
    // ...and a position of another product, which is not ours to manage.
    sim.broker.inject_position(C, ProductType::Margin, 150, rupees("99.00"));
    let e = LiveEngine::start(&sim, Start::default());
    let long = adopted(&e, A).expect("the long is adopted at startup");
    assert_eq!(
        (long.side, long.quantity, long.entry_price, long.origin),
        (Side::Long, Qty(75), rupees("101.50"), Origin::AdoptedAtBrokerAverage)
    );
    assert_eq!(long.origin.entry_price_source(), "broker_average", "no order of ours explains it");
    let alerted = e.recorder.events().iter().any(|ev| {
        matches!(ev, scalper::engine::seams::EngineEvent::Core(scalper::exec::core::CoreEvent::Alert(a))
            if a.code == "adopted_at_broker_average" && a.message.contains(long.id.as_str()))
    });
    assert!(alerted, "a warning alert names the position adopted at the broker's average");
    assert!(adopted(&e, C).is_none(), "a MARGIN position is left alone");

    // A short sold elsewhere while the engine runs: adopted on the heartbeat's cadence.
    sim.broker.inject_position(B, ProductType::Intraday, -50, rupees("120.00"));
    wait_until("the short is adopted", || adopted(&e, B).is_some());
    let short = adopted(&e, B).unwrap();
    assert_eq!(
        (short.side, short.quantity, short.entry_price),
        (Side::Short, Qty(50), rupees("120.00"))
    );
    let audit = e.recorder.reconciliations();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit[0].starts_with("startup adopt") && audit[1].starts_with("heartbeat adopt"),
        "{audit:?}"
    );

    // Under risk management at once: stop losses fire for both (10 % against them).
    e.price(&sim, A, "91.00");
    e.price(&sim, B, "132.00");
    for (p, price) in [(&long, "91.00"), (&short, "132.00")] {
        let t = e.closed(&p.id);
        assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees(price)), "{}", p.id);
        sim.assert_one_filled_exit(&p.id);
    }
    let flat = sim.broker.positions();
    for k in [A, B] {
        assert_eq!(
            flat.iter().find(|p| p.instrument == k).map(|p| p.net()),
            Some(0),
            "{k} flat at the broker"
        );
    }
    // Nothing else was ever sent: only the two exits.
    let posts = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .count();
    assert_eq!(posts, 2);
    assert_token_never_logged();
    e.stop();
    sim.shutdown();
}

#[test]
fn failed_or_unreadable_reads_change_nothing_and_an_outside_close_is_applied_once_reads_agree() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start::default());
    let id = e.open(A, Side::Long, 75);

    // Every read fails (5xx, then an unreadable 200) while the position is sold from the web.
    let faults = sim.broker.faults();
    faults.inject(Fault::ServerError, Scope::Reads, 1_000);
    let failed = |e: &LiveEngine| {
        metric_value(&e.metrics_text(), "scalper_reconcile_rounds_total{result=\"failed\"}")
            .unwrap_or(0.0)
    };
    let before = failed(&e);
    sim.broker
        .inject_order(NewOrder {
            correlation_id: None,
            instrument: A,
            txn: Txn::Sell,
            product: ProductType::Intraday,
            order_type: OrderType::Market,
            validity: Validity::Day,
            quantity: 75,
            disclosed_quantity: 0,
            price: Paise::ZERO,
            trigger_price: Paise::ZERO,
        })
        .expect("the web order is placed");
    wait_until("the web order traded", || {
        sim.broker.positions().iter().any(|p| p.instrument == A && p.net() == 0)
    });
    wait_until("two reconciliation rounds failed", || failed(&e) >= before + 2.0);
    faults.clear();
    faults.inject(Fault::Garbage, Scope::Reads, 1_000);
    let before = failed(&e);
    wait_until("two more rounds could not parse the answers", || failed(&e) >= before + 2.0);
    assert!(e.shared.core.lock().position(&id).is_some(), "still open: no read succeeded");
    assert!(e.recorder.reconciliations().is_empty());
    let h = e.health.get("reconciliation").expect("health component");
    assert!(h.reason.contains("could not read the broker"), "{h:?}");

    // Reads work again: two agreeing reads close it locally, at the broker's sell price.
    faults.clear();
    let t = e.closed(&id);
    assert_eq!(
        (t.reason, t.exit_price, t.quantity),
        (ExitReason::ClosedAtBroker, rupees("100.00"), Qty(75))
    );
    // The audit line is recorded by the reconciliation round after the core closed the
    // position: wait for it rather than race it.
    wait_until("the reconciliation's audit line", || !e.recorder.reconciliations().is_empty());
    let audit = e.recorder.reconciliations();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].contains(&format!("closed position {id}")) && audit[0].contains("flat"),
        "{audit:?}"
    );
    e.wait_gone_from_api(std::slice::from_ref(&id));
    assert!(sim.exits_of(&id).is_empty(), "no order from a reconciliation diff");
    e.stop();
    sim.shutdown();
}

#[test]
fn trading_does_not_start_until_the_startup_reconciliation_succeeds() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    sim.broker.faults().inject(Fault::ServerError, Scope::Reads, 100_000);
    let e = LiveEngine::start(&sim, Start { wait_started: false, ..Start::default() });
    wait_until("health says why", || {
        e.health.get("reconciliation").is_some_and(|h| {
            h.reason.contains("trading has not started") && h.reason.contains("positions")
        })
    });
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    let (status, answer) = e.post("/v1/orders", &body.to_string());
    assert_eq!((status, answer["code"].as_str()), (422, Some("trading_not_started")), "{answer}");
    let (_, health) = e.get("/health");
    assert!(health.to_string().contains("trading has not started"), "{health}");

    sim.broker.faults().clear();
    e.wait_started();
    let id = e.open(A, Side::Long, 75);
    let posts = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .count();
    assert_eq!(posts, 1, "only the entry placed after the start reached the broker");
    assert!(e.shared.core.lock().position(&id).is_some());
    e.stop();
    sim.shutdown();
}

#[test]
fn a_slow_broker_at_startup_does_not_leave_the_exit_engine_reported_stuck() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    // Every REST answer takes longer than the exit engine's heartbeat limit; the startup
    // reconciliation makes several such calls one after the other.
    sim.broker.faults().set_latency(Duration::from_millis(1_200));
    let extra = "[runtime]\n[runtime.heartbeat_limits]\nexit_engine = 400\n";
    let slow = |o: &mut LiveOptions| {
        quick(o);
        o.rest.request_timeout = Duration::from_secs(10);
    };
    let e = LiveEngine::start(
        &sim,
        Start { extra, options: &slow, wait_started: false, ..Start::default() },
    );
    let mut samples_while_starting = 0;
    loop {
        let (_, health) = e.get("/health");
        let started = health.to_string().contains("\"reconciliation\":{\"status\":\"ok\"");
        let exit_engine = health["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == "exit_engine").cloned())
            .expect("the exit engine is listed");
        assert_ne!(exit_engine["stuck"], true, "reported stuck while waiting for Dhan: {health}");
        if started {
            break;
        }
        samples_while_starting += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples_while_starting > 0, "the check ran while the startup was still waiting");
    e.stop();
    sim.shutdown();
}

// ---------------------------------------------------------------- startup without Dhan

/// The state a store would give back after a restart: `P1`, long 75 at 100.00 on A (stop loss
/// at 90.00), `Active`.
fn recovered_long(sim: &LiveSim) -> scalper::engine::seams::Recovered {
    use scalper::domain::PositionId;
    use scalper::exec::ExitCore;
    use scalper::risk::trading_state::TradingCell;
    let config = scalper::config::Config::from_toml_str(&live_config_text(sim, "")).unwrap();
    let t0 = ist("09:59:00");
    let mut core = ExitCore::new(config.core_params(), TradingCell::active(t0));
    core.adopt(PositionId::new("P1"), A, Side::Long, Qty(75), rupees("100.00"), t0).unwrap();
    scalper::engine::seams::Recovered {
        core: core.export(),
        trading: TradingCell::active(t0).status(),
    }
}

/// Trades `instrument` at `price` on the feed and waits until the tick cache has it (the exit
/// engine gets the same tick through its lossless channel).
fn trade(e: &LiveEngine, sim: &LiveSim, instrument: scalper::domain::InstrumentKey, price: &str) {
    let price = rupees(price);
    e.clock.advance_millis(1);
    let now = e.now();
    sim.prices.set_price(instrument, price);
    wait_until(&format!("{instrument} at {price} is in the tick cache"), || {
        e.shared.cache.tick(instrument).is_some_and(|t| t.ltp == price && t.received_at == now)
    });
}

fn metric(e: &LiveEngine, sample: &str) -> f64 {
    metric_value(&e.metrics_text(), sample).unwrap_or(0.0)
}

const LATE: &str =
    "scalper_alerts_total{code=\"startup_reconciliation_late\",severity=\"critical\"}";

/// A restart while Dhan's REST answers nothing but errors, longer than the alert threshold,
/// with the feed up: the stop is crossed (and the price comes back) during the wait. The exit
/// is decided at the crossing and held; the critical alert is raised; the moment the
/// reconciliation succeeds the exit goes out under the id decided at the trigger, once, with no
/// tick after it.
#[test]
fn a_stop_crossed_while_dhan_is_down_after_a_restart_exits_once_as_soon_as_it_is_back() {
    use scalper::domain::PositionId;
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    sim.broker.inject_position(A, ProductType::Intraday, 75, rupees("100.00"));
    sim.broker.faults().inject(Fault::ServerError, Scope::Any, 1_000_000);
    let e = LiveEngine::start(
        &sim,
        Start {
            recovered: Some(recovered_long(&sim)),
            broker: "startup_reconcile_alert_secs = 1",
            wait_started: false,
            ..Start::default()
        },
    );
    let p1 = PositionId::new("P1");
    trade(&e, &sim, A, "89.00");
    trade(&e, &sim, A, "101.00");
    wait_until("the critical alert of a late startup reconciliation", || metric(&e, LATE) >= 1.0);
    wait_until("the exit decided at 89.00 is held", || metric(&e, "scalper_exits_held") == 1.0);
    let (_, health) = e.get("/health");
    assert!(health.to_string().contains("trading has not started"), "{health}");
    assert_eq!(sim.posts_of("X1-P1"), 0, "nothing sent while the books are not reconciled");
    assert!(
        e.recorder.events().iter().any(|ev| matches!(ev,
            scalper::engine::seams::EngineEvent::Core(scalper::exec::CoreEvent::Alert(a))
                if a.code == "startup_reconciliation_late"
                    && a.level == scalper::exec::AlertLevel::Critical
                    && a.message.contains("X1-P1"))),
        "the alert is recorded, naming the held exit"
    );

    // Dhan is back; the price stays at 101.00 (above the stop): no tick decides anything now.
    sim.broker.faults().clear();
    wait_until("the held exit reaches the broker", || sim.posts_of("X1-P1") == 1);
    let t = e.closed(&p1);
    assert_eq!((t.reason, t.attempt), (ExitReason::StopLoss, 1));
    sim.assert_one_filled_exit(&p1);
    assert_eq!(e.recorder.exit_intents(), ["X1-P1"], "one intent, decided at the trigger");
    assert_eq!(metric(&e, "scalper_exits_held"), 0.0);
    let rounds = metric(&e, "scalper_reconcile_rounds_total{result=\"ok\"}");
    wait_until("two more reconciliation rounds", || {
        metric(&e, "scalper_reconcile_rounds_total{result=\"ok\"}") >= rounds + 2.0
    });
    assert_eq!(sim.exits_of(&p1).len(), 1, "exactly one exit order");
    assert_eq!(sim.posts_of("X1-P1"), 1);
    assert_token_never_logged();
    e.stop();
    sim.shutdown();
}

/// The same wait, but the broker reports the position flat once it answers: the held exit is
/// dropped, never sent, and the position is closed at the broker as reconciliation does.
#[test]
fn a_held_exit_of_a_position_the_broker_reports_flat_is_dropped_and_never_sent() {
    use scalper::domain::PositionId;
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    sim.broker.faults().inject(Fault::ServerError, Scope::Any, 1_000_000);
    let e = LiveEngine::start(
        &sim,
        Start { recovered: Some(recovered_long(&sim)), wait_started: false, ..Start::default() },
    );
    let p1 = PositionId::new("P1");
    trade(&e, &sim, A, "89.00");
    wait_until("the exit is held", || metric(&e, "scalper_exits_held") == 1.0);
    sim.broker.faults().clear();
    let t = e.closed(&p1);
    assert_eq!(t.reason, ExitReason::ClosedAtBroker);
    e.wait_started();
    assert!(sim.exits_of(&p1).is_empty(), "no exit order for a position the broker does not hold");
    assert_eq!(sim.posts_of("X1-P1"), 0);
    assert_eq!(metric(&e, "scalper_exits_held"), 0.0);
    e.stop();
    sim.shutdown();
}
