//! The order-update worker against the simulated socket: login, TRANSIT/PENDING/TRADED for a
//! placed order, a forced drop and the reconnect, a refused token reloaded, a prompt stop, and
//! health; the access token never in a log line.

mod broker_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use broker_support::*;
use crossbeam_channel::Receiver;
use scalper::broker::credentials::{CredentialSource, Credentials, ReloadableCredentials};
use scalper::broker::model::{OrderStatus, OrderUpdate};
use scalper::broker::order_updates::{
    ConnectionState, HEALTH_COMPONENT, OrderUpdateConfig, OrderUpdateEvent, OrderUpdateShared,
    OrderUpdateWorker,
};
use scalper::broker::outcome::WriteOutcome;
use scalper::broker::ratelimit::Priority;
use scalper::domain::{Paise, Qty, Txn};
use scalper::ops::health::{HealthBoard, Status};
use scalper::runtime::BackoffPolicy;
use scalper::runtime::{StopHandle, Worker, WorkerCtx};
use scalper::sim::broker::SimBroker;

struct Running {
    metrics: scalper::ops::metrics::Metrics,
    events: Receiver<OrderUpdateEvent>,
    shared: OrderUpdateShared,
    health: HealthBoard,
    stop: StopHandle,
    thread: JoinHandle<anyhow::Result<()>>,
}

fn run_worker(sim: &SimBroker, creds: Arc<dyn CredentialSource>) -> Running {
    let (tx, events) = crossbeam_channel::unbounded();
    let health = HealthBoard::new();
    let cfg = OrderUpdateConfig {
        read_timeout: Duration::from_millis(50),
        backoff: BackoffPolicy::new(Duration::from_millis(50), Duration::from_millis(400), 0.25)
            .unwrap(),
        suspect_token_within: Duration::from_secs(1),
        ..OrderUpdateConfig::new(sim.order_socket_url())
    };
    let metrics = scalper::ops::metrics::Metrics::new();
    let shared = OrderUpdateShared::new(cfg, creds, tx, health.clone())
        .unwrap()
        .with_metrics(scalper::broker::order_updates::OrderUpdateMetrics::new(&metrics));
    let (stop, ctx) = WorkerCtx::standalone("order_updates");
    // What a supervisor does on every (re)spawn: a fresh worker around the shared parts.
    let factory = {
        let shared = shared.clone();
        move || OrderUpdateWorker::new(shared.clone())
    };
    let thread = thread::spawn(move || factory().run(&ctx));
    Running { metrics, events, shared, health, stop, thread }
}

fn next_event(r: &Running, within: Duration) -> OrderUpdateEvent {
    r.events.recv_timeout(within).expect("an order-update event in time")
}

/// Waits for the worker's `Connected` and for the simulator to have processed the login (Dhan
/// sends no acknowledgement, so `Connected` means "login sent").
fn wait_connected(r: &Running, sim: &SimBroker) {
    loop {
        match next_event(r, Duration::from_secs(5)) {
            OrderUpdateEvent::Connected => {
                assert!(wait_until(Duration::from_secs(5), || sim.order_socket_clients() == 1));
                return;
            }
            OrderUpdateEvent::Disconnected { reason, .. } => eprintln!("disconnected: {reason}"),
            OrderUpdateEvent::Update(_) => {}
        }
    }
}

/// Updates for `cid` until one with a terminal status.
fn updates_until_done(r: &Running, cid: &str) -> Vec<OrderUpdate> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let OrderUpdateEvent::Update(u) = next_event(r, Duration::from_secs(5))
            && u.correlation_id.as_deref() == Some(cid)
        {
            let done = u.status.is_terminal();
            seen.push(*u);
            if done {
                return seen;
            }
        }
    }
    panic!("no terminal update for {cid}; saw {seen:?}");
}

fn stop(r: Running) {
    let t0 = Instant::now();
    r.stop.stop();
    r.thread.join().unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "stopped promptly: {:?}", t0.elapsed());
}

#[test]
fn a_placed_order_is_seen_transit_pending_traded_in_either_status_casing() {
    let (sim, _p) = start_sim(sim_config());
    let r = run_worker(&sim, credentials());
    wait_connected(&r, &sim);
    assert_eq!(r.shared.state(), ConnectionState::Connected);
    assert_eq!(r.health.get(HEALTH_COMPONENT).unwrap().status, Status::Ok);
    let text = r.metrics.render();
    assert!(text.contains("scalper_order_updates_state{state=\"connected\"} 1"), "{text}");
    assert!(text.contains("scalper_order_updates_state{state=\"connecting\"} 0"), "{text}");
    let c = client(&sim);
    for (cid, upper) in [("OU-TITLE", false), ("OU-UPPER", true)] {
        sim.set_upper_case_status(upper);
        assert!(matches!(
            c.place_order(&market(cid, Txn::Buy, 75), Priority::Entry),
            WriteOutcome::Accepted(_)
        ));
        let seen = updates_until_done(&r, cid);
        let statuses: Vec<_> = seen.iter().map(|u| u.status.clone()).collect();
        assert_eq!(
            statuses,
            vec![OrderStatus::Transit, OrderStatus::Pending, OrderStatus::Traded],
            "{cid}"
        );
        let last = seen.last().unwrap();
        assert_eq!(
            (last.traded_qty, last.avg_traded_price, last.last_fill_price),
            (Qty(75), Paise(12345), Paise(12345))
        );
        assert_eq!(last.instrument, Some(NIFTY_PUT));
        assert_eq!(last.source, "P");
        assert!(last.exchange_time.is_some() && seen[0].exchange_time.is_none());
        assert!(
            r.shared.recent.by_correlation_id(cid).is_some_and(|u| u.status == OrderStatus::Traded)
        );
    }
    stop(r);
    assert_token_never_logged();
}

#[test]
fn partial_fills_carry_cumulative_quantities_so_each_fill_is_derived_once() {
    let (sim, prices) = start_sim(scalper::sim::broker::SimBrokerConfig {
        fill_parts: 3,
        fill_interval: Duration::from_millis(30),
        transit: Duration::from_millis(20),
        ..sim_config()
    });
    let r = run_worker(&sim, credentials());
    wait_connected(&r, &sim);
    let c = client(&sim);
    assert!(matches!(
        c.place_order(&market("OU-PART", Txn::Sell, 150), Priority::Exit),
        WriteOutcome::Accepted(_)
    ));
    prices.set(NIFTY_PUT, Paise(12345), scalper::domain::Timestamp(0));
    let seen = updates_until_done(&r, "OU-PART");
    let (mut traded, mut avg, mut total) = (Qty(0), Paise(0), 0);
    for u in &seen {
        if let Some(fill) = u.fill_since(traded, avg) {
            total += fill.quantity.0;
            traded = u.traded_qty;
            avg = u.avg_traded_price;
        }
    }
    assert_eq!(total, 150);
    assert!(seen.iter().any(|u| u.status == OrderStatus::PartTraded), "{seen:?}");
    stop(r);
}

/// The `order_updates` health details against `/metrics`: every figure the same.
fn assert_health_agrees_with_metrics(r: &Running) {
    let text = r.metrics.render();
    let metric = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let details = r.health.get(HEALTH_COMPONENT).expect("the component").details;
    for (key, name) in [
        ("connects", "scalper_order_updates_connects_total"),
        ("disconnects", "scalper_order_updates_disconnects_total"),
        ("updates", "scalper_order_updates_messages_total"),
        ("malformed", "scalper_order_updates_malformed_total"),
    ] {
        assert_eq!(
            details[key].as_u64(),
            Some(metric(name)),
            "{key} vs {name}: {details} / {text}"
        );
    }
    let state = details["state"].as_str().expect("a state");
    let current = format!("scalper_order_updates_state{{state=\"{state}\"}} 1");
    assert!(text.contains(&current), "{details} / {text}");
}

#[test]
fn health_details_agree_with_the_metrics_after_updates_and_a_reconnect() {
    let (sim, _p) = start_sim(sim_config());
    let r = run_worker(&sim, credentials());
    wait_connected(&r, &sim);
    assert_health_agrees_with_metrics(&r);
    let c = client(&sim);
    assert!(matches!(
        c.place_order(&market("OU-AGREE", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Accepted(_)
    ));
    assert_eq!(updates_until_done(&r, "OU-AGREE").len(), 3);
    // The updates are counted before they are handed on: both sides show all three now.
    assert_health_agrees_with_metrics(&r);
    assert_eq!(r.health.get(HEALTH_COMPONENT).unwrap().details["updates"], 3);

    sim.faults().disconnect_order_sockets();
    wait_connected(&r, &sim);
    assert_health_agrees_with_metrics(&r);
    let details = r.health.get(HEALTH_COMPONENT).unwrap().details;
    assert!(details["disconnects"].as_u64() >= Some(1), "{details}");
    assert!(details["connects"].as_u64() >= Some(2), "{details}");
    // The loss is what the details keep, not the reconnect attempt that followed it.
    let last_error = details["last_error"].as_str().unwrap_or_default();
    assert!(!last_error.is_empty() && last_error != "connecting", "{details}");
    stop(r);
}

#[test]
fn a_forced_drop_is_followed_by_a_reconnect_and_updates_flow_again() {
    let (sim, _p) = start_sim(sim_config());
    let r = run_worker(&sim, credentials());
    wait_connected(&r, &sim);
    sim.faults().disconnect_order_sockets();
    match next_event(&r, Duration::from_secs(5)) {
        // Right after a login this may well read as a token problem: on the wire a reset is
        // a reset. The reload is harmless.
        OrderUpdateEvent::Disconnected { .. } => {}
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(matches!(
        r.health.get(HEALTH_COMPONENT).map(|h| h.status),
        Some(Status::Degraded) | Some(Status::Ok)
    ));
    wait_connected(&r, &sim);
    assert!(r.shared.connects() >= 2);
    let c = client(&sim);
    assert!(matches!(
        c.place_order(&market("OU-AFTER", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Accepted(_)
    ));
    assert_eq!(updates_until_done(&r, "OU-AFTER").last().unwrap().status, OrderStatus::Traded);
    stop(r);
}

#[test]
fn a_dropped_message_loses_a_state_but_not_the_fill() {
    let (sim, _p) = start_sim(sim_config());
    let r = run_worker(&sim, credentials());
    wait_connected(&r, &sim);
    sim.faults().drop_order_updates(1);
    let c = client(&sim);
    assert!(matches!(
        c.place_order(&market("OU-DROP", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Accepted(_)
    ));
    let seen = updates_until_done(&r, "OU-DROP");
    let statuses: Vec<_> = seen.iter().map(|u| u.status.clone()).collect();
    assert_eq!(statuses, vec![OrderStatus::Pending, OrderStatus::Traded]);
    assert_eq!(seen[1].fill_since(Qty(0), Paise(0)).unwrap().quantity, Qty(75));
    assert_eq!(sim.order_updates_sent().1, 1);
    stop(r);
}

#[test]
fn a_reset_right_after_login_is_taken_as_a_token_problem_and_the_token_is_reloaded() {
    let (sim, _p) = start_sim(sim_config());
    let loads = Arc::new(AtomicU32::new(0));
    let counter = loads.clone();
    let creds = ReloadableCredentials::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(Credentials::new(CLIENT_ID, if n == 0 { "eyJ-rolled-over-token" } else { TOKEN }))
    })
    .unwrap();
    let r = run_worker(&sim, Arc::new(creds));
    match next_event(&r, Duration::from_secs(5)) {
        OrderUpdateEvent::Connected => {}
        other => panic!("the upgrade and login frame succeed first: {other:?}"),
    }
    match next_event(&r, Duration::from_secs(5)) {
        OrderUpdateEvent::Disconnected { token_suspect, reason } => {
            assert!(token_suspect, "{reason}")
        }
        other => panic!("expected the reset: {other:?}"),
    }
    wait_connected(&r, &sim);
    assert_eq!(loads.load(Ordering::SeqCst), 2, "reloaded once");
    assert_eq!(sim.order_socket_logins(), (1, 1));
    assert!(wait_until(Duration::from_secs(2), || sim.order_socket_clients() == 1));
    assert!(captured().iter().any(|l| l.contains("token may be invalid")));
    assert!(!captured().iter().any(|l| l.contains("eyJ-rolled-over-token")));
    stop(r);
    assert_token_never_logged();
}

#[test]
fn stopping_while_the_broker_is_unreachable_is_prompt() {
    let (sim, _p) = start_sim(sim_config());
    let url = sim.order_socket_url();
    sim.shutdown();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let health = HealthBoard::new();
    let cfg = OrderUpdateConfig {
        backoff: BackoffPolicy::new(Duration::from_secs(30), Duration::from_secs(60), 0.0).unwrap(),
        ..OrderUpdateConfig::new(url)
    };
    let shared = OrderUpdateShared::new(cfg, credentials(), tx, health.clone()).unwrap();
    let (stop_handle, ctx) = WorkerCtx::standalone("order_updates");
    let t = thread::spawn(move || OrderUpdateWorker::new(shared).run(&ctx));
    assert!(wait_until(Duration::from_secs(5), || health
        .get(HEALTH_COMPONENT)
        .is_some_and(|h| h.reason.contains("retry in"))));
    assert_eq!(health.get(HEALTH_COMPONENT).unwrap().status, Status::Degraded);
    let t0 = Instant::now();
    stop_handle.stop();
    t.join().unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "a 30 s backoff does not delay the stop");
}
