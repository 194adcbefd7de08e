//! The rate limiter and the circuit breaker at engine level, against the simulator (which
//! enforces Dhan's limits and answers 429 over them): a burst of exits never puts more than the
//! order class's limit into any second at the broker, exits go out before entries, and the
//! breaker opens on consecutive transport failures (entries refused, exits held and alerted,
//! health and metrics showing it), then recovers through a half-open probe after which the held
//! exits go out exactly once.

mod live_support;

use std::time::{Duration, Instant};

use live_support::*;
use scalper::broker::ratelimit::ApiClass;
use scalper::domain::{CorrelationId, PositionId, Side};
use scalper::engine::live::LiveOptions;
use scalper::exec::order_book::OrderState;
use scalper::ops::health::Status;
use scalper::sim::broker::{Fault, FaultConfig, Scope};

/// The most arrivals in any window of `window` length.
fn busiest(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut best = 0;
    for (i, start) in sorted.iter().enumerate() {
        let n = sorted[i..].iter().take_while(|t| t.duration_since(*start) < window).count();
        best = best.max(n);
    }
    best
}

fn posts(sim: &LiveSim) -> Vec<String> {
    sim.broker
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            v["correlationId"].as_str().map(String::from)
        })
        .collect()
}

#[test]
fn a_burst_of_exits_stays_within_the_order_limit_and_exits_go_before_entries() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start::default());
    let ids: Vec<PositionId> = (0..14).map(|_| e.open(A, Side::Long, 75)).collect();
    let entries_before = posts(&sim).len();

    // Fourteen stop losses at once, and two entries asked for right after they are decided.
    e.price(&sim, A, "89.00");
    let wanted: Vec<PositionId> = (0..2).map(|_| e.enter(B, Side::Long, 75)).collect();
    for id in &ids {
        assert_eq!(e.closed(id).exit_price, rupees("89.00"));
        sim.assert_one_filled_exit(id);
    }
    let core = e.shared.core.clone();
    wait_until("the two entries are open", || {
        wanted.iter().all(|id| core.lock().position(id).is_some())
    });

    let (arrivals, throttled) = sim.broker.arrivals(ApiClass::Orders);
    assert_eq!(throttled, 0, "the broker never had to refuse a request");
    let most = busiest(&arrivals, Duration::from_secs(1));
    assert!(most <= 10, "{most} order requests reached the broker within one second");
    let order: Vec<String> = posts(&sim)[entries_before..].to_vec();
    let last_exit = order.iter().rposition(|c| c.starts_with('X')).expect("exits");
    let first_entry = order.iter().position(|c| c.starts_with('N')).expect("entries");
    assert!(last_exit < first_entry, "every exit before the entries: {order:?}");
    e.stop();
    sim.shutdown();
}

fn breaker_options(o: &mut LiveOptions) {
    quick(o);
    o.breaker.failure_threshold = 2;
    o.breaker.cool_down_ms = 1_000;
}

#[test]
fn the_breaker_opens_refuses_entries_holds_exits_and_recovers_through_a_probe() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start { options: &breaker_options, ..Start::default() });
    let ids: Vec<PositionId> = [A, B, C].iter().map(|k| e.open(*k, Side::Long, 75)).collect();
    let gauge = |e: &LiveEngine, state: &str| {
        let sample = format!("scalper_broker_breaker_state{{state=\"{state}\"}}");
        metric_value(&e.metrics_text(), &sample)
    };

    // Two consecutive 500s (nothing created) open the breaker.
    sim.broker.faults().inject(Fault::ServerError, Scope::Place, 2);
    e.price(&sim, A, "89.00");
    e.price(&sim, B, "89.00");
    wait_until("the breaker is open", || {
        gauge(&e, "open") == Some(1.0) && gauge(&e, "closed") == Some(0.0)
    });
    let h = e.health.get("broker").expect("broker health");
    assert_eq!(h.status, Status::Degraded, "{h:?}");
    assert!(h.reason.contains("circuit breaker open"), "{h:?}");

    // While it is open: an exit is held (and alerted), an entry is refused.
    e.price(&sim, C, "89.00");
    let entry = e.enter(D, Side::Long, 75);
    let cid = CorrelationId::new(format!("N1-{entry}")).unwrap();
    wait_until(
        "the entry is refused",
        || matches!(e.shared.orders.view().get(&cid).map(|l| l.state), Some(OrderState::Rejected { reason }) if reason.contains("circuit breaker open")),
    );
    assert!(captured().iter().any(|l| l.contains("ALERT exit") && l.contains("held")));
    wait_until("the broker health counts held exits", || {
        e.health.get("broker").is_some_and(|h| h.reason.contains("exits queued"))
    });

    // The cool-down passes, a held exit probes, the breaker closes, the rest follow.
    for id in &ids {
        assert_eq!(e.closed(id).exit_price, rupees("89.00"));
        sim.assert_one_filled_exit(id);
    }
    wait_until("the breaker is closed", || {
        gauge(&e, "closed") == Some(1.0) && gauge(&e, "open") == Some(0.0)
    });
    wait_until("the broker health is ok again", || {
        e.health.get("broker").is_some_and(|h| h.status == Status::Ok)
    });
    assert_eq!(
        posts(&sim).iter().filter(|c| c.starts_with("N1-") && c.ends_with(entry.as_str())).count(),
        0
    );
    assert!(e.shared.core.lock().position(&entry).is_none());
    e.stop();
    sim.shutdown();
}
