//! The operator's view of a running engine: `/health` (workers, components, stale prices),
//! `/metrics`, the `scalper status` and `scalper flatten` commands against it, `scalper sim`
//! standalone, and the in-process simulator with demo entries.

mod engine_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::*;
use scalper::config::{Config, Secrets};
use scalper::domain::{ExitReason, ManualClock, Side};
use scalper::engine::{EngineEnv, build};
use scalper::feed::reader::{
    AccessToken, FeedFatal, FeedReader, FeedStats, ReaderConfig, ReaderShared,
};
use scalper::feed::{SubscriptionSet, TickCache};
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::ops::remote::HTTP_ADDR_FILE;
use scalper::runtime::{Supervisor, Worker, WorkerCtx};

#[test]
fn health_shows_workers_components_and_positions_and_stale_prices_degrade_it() {
    let mut h = Harness::start("");
    // The feed publishes its health once a second: wait for the connected state.
    wait_until("the engine is healthy", || h.get("/health").1["status"] == "ok");
    let (status, health) = h.get("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (health["status"].as_str(), health["trading_state"].as_str()),
        (Some("ok"), Some("active")),
        "{health}"
    );
    let names: Vec<&str> =
        health["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["order_router", "exit_engine", "tick_reader", "pnl_refresher", "heartbeat", "http"]
    );
    assert!(
        health["workers"].as_array().unwrap().iter().all(|w| w["state"] == "running"),
        "{health}"
    );
    assert_eq!(health["components"]["feed"]["status"], "ok", "{health}");

    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    // No tick for 3 s: the position's price is stale (boundary inclusive).
    h.at("10:00:04");
    let mut last = serde_json::Value::Null;
    wait_until("the heartbeat reports the stale price", || {
        let (status, health) = h.get("/health");
        let degraded = status == 200 && health["status"] == "degraded";
        last = health;
        degraded
    });
    assert_eq!(last["components"]["prices"]["status"], "degraded", "{last}");
    assert!(last["components"]["prices"]["details"][id.as_str()].is_object(), "{last}");
    assert_eq!(last["positions"], 1);
    assert_eq!(h.metric("scalper_stale_positions"), Some(1.0));
    let (_, positions) = h.get("/v1/positions");
    assert_eq!(positions["positions"][0]["price_is_stale"], true, "{positions}");

    h.price(A, "100.50");
    wait_until("the price is fresh again", || h.get("/health").1["status"] == "ok");
    assert_eq!(h.metric("scalper_stale_positions"), Some(0.0));

    let text = h.metrics_text();
    for name in [
        "scalper_uptime_seconds",
        "scalper_feed_ticks_total",
        "scalper_positions_open 1",
        "scalper_trading_state{state=\"active\"} 1",
        "scalper_trading_state{state=\"halted\"} 0",
    ] {
        assert!(text.contains(name), "{name} in /metrics");
    }
    h.stop();
}

fn scalper(args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalper"));
    cmd.args(args).env_remove("SCALPER_CONTROL_TOKEN").env("RUST_LOG", "off");
    if let Some(t) = token {
        cmd.env("SCALPER_CONTROL_TOKEN", t);
    }
    let out = cmd.output().expect("scalper runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn status_and_flatten_commands_talk_to_the_running_engine() {
    let mut h = Harness::start("");
    let config = h.config_path.to_str().unwrap().to_string();
    let (code, _, err) = scalper(&["status", "--config", &config], Some(CONTROL_TOKEN));
    assert_eq!(code, 1, "no address file yet");
    assert!(err.contains(HTTP_ADDR_FILE), "{err}");

    std::fs::write(h.dir.path().join(HTTP_ADDR_FILE), format!("{}\n", h.addr)).unwrap();
    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "102.00");
    wait_until("the snapshot marks the position", || {
        h.get("/v1/pnl").1["unrealised_gross"] == "150.00"
    });
    let (code, out, err) = scalper(&["status", "--config", &config], Some(CONTROL_TOKEN));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("trading active"), "{out}");
    assert!(
        out.contains(&format!(
            "{id} NSE_FNO:52175 LONG 75 entry 100.00 last 102.00 unrealised 150.00 active"
        )),
        "{out}"
    );
    assert!(out.contains("day PnL 150.00"), "{out}");

    let (code, _, err) = scalper(&["flatten", "--config", &config], Some("wrong-token"));
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    assert!(h.recorder.closed(&id).is_none());

    // The token from the data directory's file this time.
    std::fs::write(h.dir.path().join("control-token"), CONTROL_TOKEN).unwrap();
    let (code, out, err) = scalper(&["flatten", "--config", &config], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(
            "kill switch: 1 positions exiting, 0 already exiting; trading halted (kill_switch)"
        ),
        "{out}"
    );
    assert!(out.contains(&format!("{id} exit order X1-{id} at last price 102.00")), "{out}");
    let t = h.closed(&id);
    assert_eq!((t.reason, t.exit_price), (ExitReason::KillSwitch, rupees("102.00")));
    let (code, out, _) = scalper(&["status", "--config", &config], Some(CONTROL_TOKEN));
    assert_eq!(code, 0);
    assert!(out.contains("trading halted (kill_switch"), "{out}");
    assert!(out.contains("positions: 0"), "{out}");
    h.stop();
}

#[test]
fn sim_command_prints_its_addresses_and_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalper"))
        .arg("sim")
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scalper sim starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("one line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let url = info["feed"].as_str().expect("feed url").to_string();
    assert!(url.starts_with("ws://127.0.0.1:") && url.ends_with('/'), "{url}");
    let rest = info["broker"]["rest"].as_str().expect("broker REST url");
    assert!(rest.starts_with("http://127.0.0.1:") && rest.ends_with("/v2"), "{rest}");
    let ou = info["broker"]["order_update"].as_str().expect("order-update url");
    assert!(ou.starts_with("ws://127.0.0.1:") && ou.ends_with("/order-update"), "{ou}");

    // A real reader gets the simulator's prices.
    let cache = TickCache::with_capacity(16);
    let (tx, _rx) = crossbeam_channel::bounded(16);
    let shared = ReaderShared {
        cache: cache.clone(),
        subscriptions: SubscriptionSet::with_watchlist([A]),
        position_ticks: tx,
        token_source: Arc::new(|| Ok(AccessToken::new("sim-access-token"))),
        stats: FeedStats::new(&Metrics::new()),
        health: HealthBoard::new(),
        on_fatal: Arc::new(|_: &FeedFatal| {}),
        clock: Arc::new(scalper::domain::SystemClock),
    };
    let (stop, ctx) = WorkerCtx::standalone("reader");
    let reader = std::thread::spawn(move || {
        FeedReader::new(ReaderConfig::new(url, "1000000001"), shared).run(&ctx)
    });
    wait_until("the simulator's price of NSE_FNO:52175 arrives", || cache.ltp(A).is_some());
    stop.stop();
    reader.join().unwrap().unwrap();

    let pid = child.id() as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "scalper sim stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_in_process_simulator_starts_with_the_engine_and_demo_entries_open_positions() {
    scalper::ops::logging::init();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
data_dir = "{}"
[feed]
source = "sim"
mode = "ticker"
[sim]
enabled = true
tick_interval_ms = 20
[entries]
demo = true
demo_interval_secs = 1
"#,
        dir.path().display()
    );
    let config = Config::from_toml_str(&text).unwrap();
    let metrics = Metrics::new();
    let mut sup = Supervisor::new(supervisor_config(), metrics.clone());
    let env = EngineEnv {
        secrets: Secrets::resolve(&config, |_| None).unwrap(),
        config,
        metrics,
        health: HealthBoard::new(),
        workers: sup.status_table(),
        // A trading morning, whatever the hour of the test run.
        clock: Arc::new(ManualClock::new(ist("10:00:00"))),
    };
    let engine = build(env).expect("engine builds");
    let sim = engine.keep_alive.simulator.as_ref().expect("in-process simulator");
    let url = format!("ws://{}/", sim.addr());
    assert!(engine.banner.iter().any(|l| l.contains(&url)), "{:?}", engine.banner);
    assert!(engine.workers.iter().any(|w| w.name == "entries_demo"));
    let shared = engine.shared.clone();
    for w in engine.workers {
        sup.add(w);
    }
    let handle = sup.start().unwrap();
    wait_until("a demo entry opens a position", || shared.core.lock().day().trades > 0);
    handle.shutdown();
    assert!(!handle.join().is_escalation());
    drop(engine.keep_alive);
}
