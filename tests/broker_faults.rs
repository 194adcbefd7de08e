//! Write outcomes under injected faults, and settling the unknown ones by correlation id
//! without a duplicate: the simulator creates the order but never answers, resets the
//! connection, answers 5xx or 429; the resolver finds the order or proves it absent only after
//! its window; the circuit breaker opens on consecutive transport failures and closes through a
//! half-open probe.

mod broker_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_support::*;
use scalper::broker::breaker::{Admission, BreakerConfig, BreakerState, SharedBreaker, Transition};
use scalper::broker::model::OrderStatus;
use scalper::broker::order_updates::RecentUpdates;
use scalper::broker::outcome::{NotSent, Unknown, WriteOutcome};
use scalper::broker::ratelimit::{ApiClass, Priority};
use scalper::broker::resolve::{Evidence, Resolution, ResolverConfig, resolve_placement};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::Txn;
use scalper::sim::broker::{Fault, KeepAlive, OnIdle, Scope, SimBrokerConfig};

fn quick_client(sim: &scalper::sim::broker::SimBroker, timeout_ms: u64) -> DhanClient {
    DhanClient::new(
        RestConfig { request_timeout: Duration::from_millis(timeout_ms), ..rest_config(sim) },
        credentials(),
        Arc::new(scalper::broker::ratelimit::RateLimiter::new(
            scalper::broker::ratelimit::LimiterConfig::dhan(),
        )),
    )
}

const RESOLVE: ResolverConfig = ResolverConfig {
    window_ms: 1200,
    first_poll_ms: 100,
    max_poll_ms: 300,
    give_up_after_ms: 3000,
};

#[test]
fn timeout_after_accept_is_unknown_and_the_resolver_finds_the_order_without_placing_again() {
    let (sim, _p) =
        start_sim(SimBrokerConfig { transit: Duration::from_millis(300), ..sim_config() });
    let c = quick_client(&sim, 400);
    sim.faults().inject(Fault::TimeoutAfterAccept, Scope::Place, 1);
    let t0 = Instant::now();
    match c.place_order(&market("TMO-1", Txn::Sell, 75), Priority::Exit) {
        WriteOutcome::Unknown(Unknown::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the client's timeout fired, not the server's hold"
    );
    assert_eq!(
        sim.orders_with_correlation_id("TMO-1"),
        1,
        "the order exists although no answer came"
    );
    let res = resolve_placement(&c, None, "TMO-1", RESOLVE);
    match res {
        Resolution::Found { order_id, status, evidence } => {
            assert_eq!(order_id.0, sim.orders()[0].order_id);
            // Still in TRANSIT right after the timeout: found in the book, not by correlation id.
            assert!(
                matches!(evidence, Evidence::OrderBook | Evidence::CorrelationLookup),
                "{evidence:?} {status}"
            );
        }
        other => panic!("expected Found, got {other:?}"),
    }
    assert_eq!(sim.orders_with_correlation_id("TMO-1"), 1, "resolving never places again");
    assert_eq!(
        sim.received().iter().filter(|r| r.method == "POST" && r.path == "/v2/orders").count(),
        1
    );
}

#[test]
fn order_seen_only_on_the_stream_is_found_there() {
    // Book and lookup are made to fail (5xx on reads); the order-update stream already saw it.
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 400);
    let recent = RecentUpdates::default();
    let update = serde_json::json!({"OrderNo": "52000000000042", "Status": "Pending", "CorrelationId": "STR-1"});
    recent.record(&scalper::broker::model::parse_order_alert(update.as_object().unwrap()).unwrap());
    sim.faults().inject(Fault::ServerError, Scope::Reads, 2);
    match resolve_placement(&c, Some(&recent), "STR-1", RESOLVE) {
        Resolution::Found {
            evidence: Evidence::OrderUpdateStream,
            status: OrderStatus::Pending,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn reset_before_processing_is_unknown_and_proven_absent_only_after_the_window() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 800);
    sim.faults().inject(Fault::Reset, Scope::Place, 1);
    match c.place_order(&market("RST-1", Txn::Sell, 75), Priority::Exit) {
        WriteOutcome::Unknown(Unknown::ConnectionLost(_) | Unknown::Transport(_)) => {}
        other => panic!("expected a lost connection, got {other}"),
    }
    let t0 = Instant::now();
    let res = resolve_placement(&c, Some(&RecentUpdates::default()), "RST-1", RESOLVE);
    assert_eq!(res, Resolution::Absent);
    assert!(
        t0.elapsed() >= Duration::from_millis(RESOLVE.window_ms),
        "absent only after the window: {:?}",
        t0.elapsed()
    );
    assert_eq!(sim.orders_with_correlation_id("RST-1"), 0);
    // Absent: place again, with a new correlation id.
    assert!(matches!(
        c.place_order(&market("RST-2", Txn::Sell, 75), Priority::Exit),
        WriteOutcome::Accepted(_)
    ));
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn server_errors_are_unknown_whether_or_not_the_order_was_created() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 800);
    sim.faults().inject(Fault::ServerError, Scope::Place, 1);
    assert!(matches!(
        c.place_order(&market("5XX-1", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, .. })
    ));
    sim.faults().inject(Fault::ServerErrorAfterAccept, Scope::Place, 1);
    assert!(matches!(
        c.place_order(&market("5XX-2", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, .. })
    ));
    assert!(matches!(resolve_placement(&c, None, "5XX-2", RESOLVE), Resolution::Found { .. }));
    assert_eq!(resolve_placement(&c, None, "5XX-1", RESOLVE), Resolution::Absent);
    assert_eq!(
        (sim.orders_with_correlation_id("5XX-1"), sim.orders_with_correlation_id("5XX-2")),
        (0, 1)
    );
}

#[test]
fn reads_failing_through_the_window_leave_the_placement_undetermined() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 400);
    sim.faults().inject(Fault::ServerError, Scope::Reads, 1000);
    let cfg = ResolverConfig {
        window_ms: 300,
        first_poll_ms: 50,
        max_poll_ms: 100,
        give_up_after_ms: 400,
    };
    match resolve_placement(&c, None, "UND-1", cfg) {
        Resolution::Undetermined { reason } => assert!(reason.contains("500"), "{reason}"),
        other => panic!("failing reads cannot prove absence: {other:?}"),
    }
}

#[test]
fn a_429_burst_is_not_sent_and_the_limiter_holds_the_next_order_back() {
    let (sim, _p) = start_sim(sim_config());
    let c = DhanClient::new(
        RestConfig { limiter_wait: Duration::from_millis(1500), ..rest_config(&sim) },
        credentials(),
        Arc::new(scalper::broker::ratelimit::RateLimiter::new(
            scalper::broker::ratelimit::LimiterConfig::dhan(),
        )),
    );
    sim.faults().inject(Fault::Throttle, Scope::Place, 2);
    assert_eq!(
        c.place_order(&market("THR-1", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::NotSent(NotSent::Throttled)
    );
    // The class is paused ~1 s: this call waits, then is throttled again (pause doubles) ...
    assert_eq!(
        c.place_order(&market("THR-1", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::NotSent(NotSent::Throttled)
    );
    // ... and the next would wait ~2 s, longer than the client's 1.5 s limiter wait: refused
    // locally at once.
    match c.place_order(&market("THR-1", Txn::Buy, 75), Priority::Entry) {
        WriteOutcome::NotSent(NotSent::RateLimited(_)) => {}
        other => panic!("expected a local refusal, got {other}"),
    }
    let places: Vec<Instant> = sim
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .map(|r| r.at)
        .collect();
    assert_eq!(places.len(), 2, "the third never reached the broker");
    assert!(
        places[1] - places[0] >= Duration::from_millis(950),
        "backed off ≥ 1 s: {:?}",
        places[1] - places[0]
    );
    assert_eq!(c.limiter().stats(ApiClass::Orders).throttles, 2);
    assert_eq!(
        sim.orders_with_correlation_id("THR-1"),
        0,
        "429 means not placed: safe to resend the same id"
    );
}

#[test]
fn breaker_opens_on_consecutive_failures_and_closes_through_a_half_open_probe() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 400);
    let breaker = SharedBreaker::new(BreakerConfig { failure_threshold: 3, cool_down_ms: 300 });
    let send = |cid: &str| -> (Option<WriteOutcome>, Option<Transition>) {
        match breaker.admit() {
            Admission::Allowed(permit) => {
                let o = c.place_order(&market(cid, Txn::Buy, 75), Priority::Exit);
                let t = breaker.record(permit, o.breaker_result());
                (Some(o), t)
            }
            Admission::Refused { .. } => (None, None),
        }
    };
    // A definitive rejection in between does not count.
    sim.faults().inject(Fault::ServerError, Scope::Place, 2);
    send("BRK-1");
    send("BRK-2");
    let mut zero = market("BRK-R", Txn::Buy, 75);
    zero.quantity = scalper::domain::Qty(0);
    assert!(matches!(c.place_order(&zero, Priority::Exit), WriteOutcome::Rejected(_)));
    assert_eq!(
        breaker.state(),
        BreakerState::Closed { consecutive_failures: 2 },
        "rejections go around the breaker here"
    );
    sim.faults().inject(Fault::Reset, Scope::Place, 1);
    let (_, t) = send("BRK-3");
    assert_eq!(t, Some(Transition::Opened { consecutive_failures: 3 }));
    assert_eq!(send("BRK-4").0, None, "open: refused without a call");
    assert_eq!(breaker.health().status, scalper::ops::health::Status::Down);
    // After the cool-down one probe goes; it fails: open again.
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    // Not a synchronisation: the cool-down itself is what is under test.
    std::thread::sleep(Duration::from_millis(350));
    sim.faults().inject(Fault::ServerError, Scope::Place, 1);
    let (o, t) = send("BRK-5");
    assert!(matches!(o, Some(WriteOutcome::Unknown(_))));
    assert_eq!(t, Some(Transition::ReOpened));
    std::thread::sleep(Duration::from_millis(350));
    let (o, t) = send("BRK-6");
    assert!(matches!(o, Some(WriteOutcome::Accepted(_))), "{o:?}");
    assert_eq!(t, Some(Transition::Closed));
    assert_eq!(breaker.state(), BreakerState::Closed { consecutive_failures: 0 });
    assert_eq!(breaker.health().status, scalper::ops::health::Status::Ok);
}

#[test]
fn added_latency_and_random_error_rates_apply_at_run_time() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 1000);
    sim.faults().set_latency(Duration::from_millis(150));
    let t0 = Instant::now();
    assert!(c.orders().is_ok());
    assert!(t0.elapsed() >= Duration::from_millis(150), "{:?}", t0.elapsed());
    sim.faults().set_config(scalper::sim::faults::FaultConfig {
        error_rate_pct: 100,
        ..Default::default()
    });
    assert!(matches!(
        c.place_order(&market("RATE-1", Txn::Buy, 75), Priority::Exit),
        WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, .. })
    ));
    sim.faults().clear();
    assert!(matches!(
        c.place_order(&market("RATE-2", Txn::Buy, 75), Priority::Exit),
        WriteOutcome::Accepted(_)
    ));
    assert_eq!(sim.orders().len(), 1);
}

#[test]
fn a_resolver_asked_to_stop_answers_undetermined_never_absent() {
    let (sim, _p) = start_sim(sim_config());
    let c = quick_client(&sim, 400);
    let res =
        scalper::broker::resolve::resolve_placement_with(&c, None, "STOP-1", RESOLVE, &|_| false);
    assert_eq!(res, Resolution::Undetermined { reason: "stopped while resolving".into() });
}

/// Places an entry, waits until the simulator has ended that idle connection, places the
/// exit: it must go out at once, on a new connection, and be accepted (not unknown).
fn exit_after_the_idle_connection_ended(on_idle: OnIdle, idle_ms: u64) {
    let keep_alive = KeepAlive { idle: Duration::from_millis(idle_ms), on_idle };
    let (sim, _p) = start_sim(SimBrokerConfig { keep_alive: Some(keep_alive), ..sim_config() });
    // The client as the engine builds it: default pool settings.
    let c = client(&sim);
    let entry = c.place_order(&market("N1-ka", Txn::Buy, 75), Priority::Entry);
    assert!(matches!(entry, WriteOutcome::Accepted(_)), "{entry}");
    assert_eq!(sim.rest_connections(), (1, 0));
    assert!(
        wait_until(Duration::from_secs(15), || sim.rest_connections().1 == 1),
        "the simulator ends the idle connection"
    );
    let started = Instant::now();
    let exit = c.place_order(&market("X1-ka", Txn::Sell, 75), Priority::Exit);
    assert!(matches!(exit, WriteOutcome::Accepted(_)), "accepted, not unknown: {exit}");
    assert!(started.elapsed() < Duration::from_secs(1), "at once: {:?}", started.elapsed());
    assert_eq!(sim.rest_connections().0, 2, "on a new connection");
    let exits = sim.orders().into_iter().filter(|o| o.correlation_id == "X1-ka").count();
    assert_eq!(exits, 1, "exactly one order");
    assert_token_never_logged();
    sim.shutdown();
}

#[test]
fn a_connection_the_server_closed_while_idle_never_carries_the_exit() {
    // ureq probes a pooled connection before reusing it and drops a closed one.
    exit_after_the_idle_connection_ended(OnIdle::Close, 300);
}

#[test]
fn a_connection_a_middlebox_dropped_while_idle_is_not_reused_for_the_exit() {
    // No FIN reaches the client: only not reusing a connection idle past `max_idle_age`
    // (4 s, below the peer's 4.5 s here) keeps the exit off it.
    exit_after_the_idle_connection_ended(OnIdle::Forget, 4_500);
}

/// Warm connections (`broker.keep_warm_ms`): the simulator closes connections idle for 2 s;
/// the keep-warm worker calls whenever the client has been idle 100 ms. After a quiet spell of
/// twice the server's timeout the exit goes out on the connection the entry opened: no new
/// TCP connection, no handshake under the order.
#[test]
fn an_exit_after_a_quiet_spell_longer_than_the_keep_alive_goes_out_on_a_warm_connection() {
    use scalper::broker::keep_warm::KeepWarm;
    use scalper::broker::rest::RestMetrics;
    use scalper::ops::metrics::Metrics;
    use scalper::runtime::{Worker, WorkerCtx};

    let server_idle = Duration::from_secs(2);
    let keep_alive = KeepAlive { idle: server_idle, on_idle: OnIdle::Close };
    let (sim, _p) = start_sim(SimBrokerConfig { keep_alive: Some(keep_alive), ..sim_config() });
    let metrics = Metrics::new();
    let limiter = scalper::broker::ratelimit::RateLimiter::new(
        scalper::broker::ratelimit::LimiterConfig::dhan(),
    );
    let c = DhanClient::with_metrics(
        rest_config(&sim),
        credentials(),
        Arc::new(limiter),
        RestMetrics::new(&metrics),
    );
    let entry = c.place_order(&market("N1-warm", Txn::Buy, 75), Priority::Entry);
    assert!(matches!(entry, WriteOutcome::Accepted(_)), "{entry}");
    let entry_at = sim.received().last().expect("the entry arrived").at;

    let (stop, ctx) = WorkerCtx::standalone("rest_keep_warm");
    let warm = c.clone();
    let worker = std::thread::spawn(move || {
        KeepWarm::new(warm, Duration::from_millis(100)).run(&ctx).expect("keep-warm worker")
    });
    let keep_warm_after = |since: Duration| {
        sim.received().iter().any(|r| r.path == "/v2/profile" && r.at >= entry_at + since)
    };
    assert!(
        wait_until(Duration::from_secs(30), || keep_warm_after(server_idle * 2)),
        "the keep-warm calls went on past twice the server's idle timeout"
    );
    // Stopped before the exit only so that no keep-warm call is in flight as it goes out.
    stop.stop();
    worker.join().expect("the worker ends on stop");
    assert_eq!(sim.rest_connections(), (1, 0), "one connection, never closed as idle");

    let exit = c.place_order(&market("X1-warm", Txn::Sell, 75), Priority::Exit);
    assert!(matches!(exit, WriteOutcome::Accepted(_)), "{exit}");
    assert_eq!(sim.rest_connections().0, 1, "the exit went out on the warm connection");
    let text = metrics.render();
    assert!(text.contains("scalper_broker_connections_total 1\n"), "{text}");
    assert!(!text.contains("scalper_broker_keep_warm_total{result=\"ok\"} 0\n"), "{text}");
    assert!(text.contains("scalper_broker_keep_warm_total{result=\"failed\"} 0\n"), "{text}");
    sim.shutdown();
}
