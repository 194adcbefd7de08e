//! The watchdog means "the process is alive", and the order router is never taken for hung
//! while it places:
//!
//! - the real binary in live mode under a systemd notify socket with `WATCHDOG_USEC`, its feed
//!   through a proxy that is cut for longer than the stall timeout plus two watchdog intervals:
//!   the feed is reported down, WATCHDOG=1 keeps arriving, and the position's stop fires on the
//!   REST price fallback with exactly one exit order at the simulator;
//! - a flatten of ten positions while every REST answer of the simulator takes 1.5 s: the
//!   router is never reported stuck (`/health`, metrics) and each exit is sent once.

mod common;
mod live_support;
mod process_support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use live_support::{
    ALL, CLIENT_ID, LiveEngine, LiveSim, Start, TOKEN, process_config_text, quick, rupees,
    sim_config, wait_until,
};
use process_support::{get, notify_until, open, spawn};
use scalper::domain::{PositionId, Side};
use scalper::sim::broker::FaultConfig;

/// The feed's stall timeout and the stale-price age of the process test.
const STALL_MS: u64 = 1_000;
/// `WatchdogSec` of the process test: WATCHDOG=1 is due every second.
const WATCHDOG: Duration = Duration::from_secs(2);

/// The datagrams arriving on `sock` until `until`, with when each arrived.
fn collect(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
    got
}

#[test]
fn a_feed_outage_beyond_the_stall_timeout_keeps_the_watchdog_fed_and_the_stop_fires_over_rest() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let proxy = common::Proxy::start(sim.feed.addr());
    let data = sim.dir.path().to_path_buf();
    let config = data.join("engine.toml");
    let text = process_config_text(&sim)
        .replace(
            &format!("ws://{}/", sim.feed.addr()),
            &format!("ws://127.0.0.1:{}/", proxy.port()),
        )
        .replace(
            "reconnect_cap_ms = 200",
            &format!("reconnect_cap_ms = 200\nstall_timeout_ms = {STALL_MS}"),
        )
        .replace("stale_after_ms = 600000", &format!("stale_after_ms = {STALL_MS}"));
    std::fs::write(&config, text).unwrap();

    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let usec = WATCHDOG.as_micros().to_string();
    let mut engine = spawn(
        &data,
        &config,
        "engine",
        &[
            ("DHAN_CLIENT_ID", CLIENT_ID),
            ("DHAN_ACCESS_TOKEN", TOKEN),
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", &usec),
        ],
    );
    let mut seen = Vec::new();
    notify_until(&sock, "READY=1", &mut seen, || engine.log());
    let addr = engine.wait_active(&data);
    wait_until("trading starts", || {
        get(addr, "/health").1.to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    let id = PositionId::new(open(addr, ALL[0], "LONG"));

    // The feed goes away; the market falls through the stop (10 % under the 100.00 entry)
    // where only Dhan's REST LTP can see it.
    proxy.cut();
    sim.board.set(ALL[0], rupees("89.00"), scalper::domain::Timestamp(0));
    wait_until("the feed is reported down", || {
        get(addr, "/health").1["components"]["feed"]["status"] == "down"
    });
    let down_at = Instant::now();
    let window_end = down_at + Duration::from_millis(STALL_MS) + 2 * WATCHDOG;
    let pings: Vec<Instant> = collect(&sock, window_end)
        .into_iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| at)
        .collect();
    let mut marks = vec![down_at];
    marks.extend(&pings);
    marks.push(window_end);
    let longest = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(
        pings.len() >= 3 && longest < WATCHDOG,
        "WATCHDOG=1 keeps arriving while the feed is down: {} pings, longest silence {longest:?}; log:\n{}",
        pings.len(),
        engine.log()
    );
    assert_eq!(get(addr, "/health").1["components"]["feed"]["status"], "down", "still down");
    assert!(
        engine.log().contains("ALERT health component feed is down"),
        "the outage is alerted; log:\n{}",
        engine.log()
    );

    wait_until("the position is closed on the REST price", || {
        let pnl = get(addr, "/v1/pnl").1;
        pnl["closed_today"].as_u64() == Some(1) && pnl["open_positions"].as_u64() == Some(0)
    });
    sim.assert_one_filled_exit(&id);
    assert!(engine.child.try_wait().unwrap().is_none(), "the same process all along");
    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(Duration::from_secs(30)), 0, "{}", engine.log());
    drop(engine);
    sim.shutdown();
}

#[test]
fn a_flatten_of_ten_positions_with_slow_rest_answers_never_reports_the_router_stuck() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let slow_enough = |o: &mut scalper::engine::live::LiveOptions| {
        quick(o);
        o.rest.request_timeout = Duration::from_secs(4);
    };
    let e = LiveEngine::start(&sim, Start { options: &slow_enough, ..Start::default() });
    let ids: Vec<PositionId> =
        (0..10).map(|i| e.open(ALL[i % ALL.len()], Side::Long, 75)).collect();

    let faults = sim.broker.faults();
    faults.set_config(FaultConfig { latency: Duration::from_millis(1_500), ..faults.config() });
    let (status, body) = e.post("/v1/flatten", "");
    assert_eq!(status, 200, "{body}");

    let stuck_metric = "scalper_worker_stuck{worker=\"order_router\"} 1";
    let mut checks = 0;
    wait_until("every position is closed", || {
        let (_, health) = e.get("/health");
        let router = health["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == "order_router").cloned())
            .expect("the router in /health");
        assert_eq!(router["stuck"], false, "the router is reported stuck: {router}");
        assert!(!e.metrics_text().contains(stuck_metric), "the metrics say the router is stuck");
        checks += 1;
        std::thread::sleep(Duration::from_millis(50));
        ids.iter().all(|id| e.recorder.closed(id).is_some())
    });
    assert!(checks > 50, "watched through the whole flatten ({checks} checks)");
    for id in &ids {
        sim.assert_one_filled_exit(id);
        for o in sim.exits_of(id) {
            assert_eq!(sim.posts_of(&o.correlation_id), 1, "{} was POSTed once", o.correlation_id);
        }
    }
    e.stop();
    sim.shutdown();
}
