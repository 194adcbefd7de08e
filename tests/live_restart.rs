//! A restart between sending an exit and seeing its answer.
//!
//! - The real binary, SIGKILLed while it waits for the answer to an exit the simulator took
//!   but never answered (`TimeoutAfterAccept`), then started again on the same data directory:
//!   the order journal shows the exit was written ahead; the restarted engine recovers the
//!   position `Exiting` from its SQLite store, asks Dhan for the exit by correlation id (still
//!   in TRANSIT), tracks it, and closes the position at its fill: exactly one exit order, and
//!   nothing sent by the reconciliation rounds that follow.
//! - In process, with the state a store would have recovered: an exit in flight is found at
//!   the broker and never sent again (the position ends `Exited` at its fill); an exit the store
//!   missed (the position recovered `Active`) is recomputed under the same id by the next
//!   trigger, recognised from the journal and settled instead of sent; an exit that never left
//!   (not in the journal) is proved absent and placed under the next id.

mod live_support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use live_support::*;
use scalper::broker::credentials::{Credentials, StaticCredentials};
use scalper::broker::journal::OrderJournal;
use scalper::broker::model::{PlaceOrder, ProductType};
use scalper::broker::outcome::WriteOutcome;
use scalper::broker::ratelimit::{LimiterConfig, Priority, RateLimiter};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::{ExitReason, OrderIntent, PositionId, Qty, Side, Tick, Timestamp};
use scalper::engine::seams::Recovered;
use scalper::exec::CoreEvent;
use scalper::exec::ExitCore;
use scalper::risk::trading_state::TradingCell;
use scalper::sim::broker::{Fault, FaultConfig, Scope, SimBrokerConfig};

// ---------------------------------------------------------------- the real binary

fn spawn_engine(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_scalper"))
        .args(["run", "--config"])
        .arg(config)
        .env("DHAN_CLIENT_ID", CLIENT_ID)
        .env("DHAN_ACCESS_TOKEN", TOKEN)
        .env("SCALPER_CONTROL_TOKEN", CONTROL_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("scalper run starts")
}

/// The engine's HTTP address, once it has written it.
fn http_addr(data_dir: &std::path::Path) -> String {
    let file = data_dir.join(scalper::app::HTTP_ADDR_FILE);
    let mut addr = String::new();
    wait_until("the engine writes its HTTP address", || {
        addr = std::fs::read_to_string(&file).unwrap_or_default().trim().to_string();
        !addr.is_empty()
    });
    addr
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(addr: &str, path: &str) -> serde_json::Value {
    let mut r = agent()
        .get(&format!("http://{addr}{path}"))
        .header("Authorization", &format!("Bearer {CONTROL_TOKEN}"))
        .call()
        .expect("GET works");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

fn metric(addr: &str, sample: &str) -> f64 {
    let mut r = agent().get(&format!("http://{addr}/metrics")).call().expect("metrics");
    metric_value(&r.body_mut().read_to_string().unwrap_or_default(), sample).unwrap_or(0.0)
}

#[test]
fn the_real_process_killed_while_an_exit_answer_is_outstanding_sends_it_once() {
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::from_millis(1_500),
        ..sim_config(FaultConfig { withhold_for: Duration::from_secs(8), ..FaultConfig::default() })
    });
    let data = sim.dir.path().to_path_buf();
    let text = process_config_text(&sim);
    let config = data.join("engine.toml");
    std::fs::write(&config, text).unwrap();
    let log = data.join("engine.log");

    let mut first = spawn_engine(&config, &log);
    let addr = http_addr(&data);
    wait_until("trading starts", || {
        get(&addr, "/health").to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    // Until the feed's first price of the instrument has arrived the entry is refused.
    let mut answer = serde_json::Value::Null;
    wait_until("an entry is accepted", || {
        let mut r = agent()
            .post(&format!("http://{addr}/v1/orders"))
            .header("Authorization", &format!("Bearer {CONTROL_TOKEN}"))
            .header("Content-Type", "application/json")
            .send(r#"{"instrument":"NSE_FNO:52175","side":"LONG","quantity":75}"#)
            .expect("entry");
        answer = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        answer["code"] != "no_price"
    });
    let id = PositionId::new(answer["position_id"].as_str().expect("position id"));
    wait_until("the position is open", || {
        get(&addr, "/v1/positions").to_string().contains(id.as_str())
    });

    // The stop loss fires; Dhan takes the exit but its answer never comes; the process dies.
    sim.broker.faults().inject(Fault::TimeoutAfterAccept, Scope::Place, 1);
    sim.prices.set_price(A, rupees("89.00"));
    let cid = format!("X1-{id}");
    wait_until("the exit reached the broker", || sim.broker.orders_with_correlation_id(&cid) == 1);
    // The store has recorded the position `Exiting` (its writer is write-behind; the case of a
    // store that lags behind the send is the in-process test below).
    wait_until("the store shows the exit in flight", || {
        stored_state(&data, &id).as_deref() == Some("exiting")
    });
    kill(&mut first, libc::SIGKILL);
    first.wait().unwrap();
    let journal = std::fs::read_dir(data.join("journal")).unwrap().next().unwrap().unwrap().path();
    let written = std::fs::read_to_string(&journal).unwrap();
    assert!(written.contains(&format!("\"correlation_id\":\"{cid}\"")), "written ahead: {written}");
    std::fs::remove_file(data.join(scalper::app::HTTP_ADDR_FILE)).ok();

    // The restart: the store gives back the position `Exiting` under X1; the exit is still in
    // TRANSIT at the broker. Dhan is asked, never sent it again.
    let mut second = spawn_engine(&config, &log);
    let addr = http_addr(&data);
    wait_until("trading starts again", || {
        get(&addr, "/health").to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    wait_until("the position ends exited", || {
        let positions = get(&addr, "/v1/positions");
        let pnl = get(&addr, "/v1/pnl");
        !positions.to_string().contains(id.as_str()) && pnl["closed_today"].as_u64() == Some(1)
    });
    sim.assert_one_filled_exit(&id);
    assert_eq!(sim.posts_of(&cid), 1, "never sent again");
    let posts = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .count();
    assert_eq!(posts, 2, "the entry and the one exit, nothing else");
    let rounds = metric(&addr, "scalper_reconcile_rounds_total{result=\"ok\"}");
    wait_until("two more reconciliations after the close", || {
        metric(&addr, "scalper_reconcile_rounds_total{result=\"ok\"}") >= rounds + 2.0
    });
    assert_eq!(sim.exits_of(&id).len(), 1, "reconciliation sent nothing");
    kill(&mut second, libc::SIGTERM);
    assert_eq!(second.wait().unwrap().code(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN), "the access token is in the engine's log");
    assert!(text.contains(&format!("recovered position {id}")), "recovered from the store");
    let about: Vec<&str> = text.lines().filter(|l| l.contains(cid.as_str())).collect();
    assert!(
        text.contains(&format!("startup: {cid} of {id} is at the broker as order")),
        "settled with the broker by correlation id: {about:#?}"
    );
    assert!(text.contains(&format!("position {id} closed stop_loss")), "closed at its fill");
    sim.shutdown();
}

// ---------------------------------------------------------------- in process, with a store's state

fn client(sim: &LiveSim) -> DhanClient {
    DhanClient::new(
        RestConfig::new(sim.broker.base_url()),
        Arc::new(StaticCredentials::new(Credentials::new(CLIENT_ID, TOKEN))),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
    )
}

/// A core holding `P1`, long 75 at 100.00 on A, as a store would have it; with `exiting` its
/// stop loss fired at 89.00 (exit X1-P1 in flight). Returns the state and the exit's intent.
fn stored(sim: &LiveSim, exiting: bool) -> (Recovered, OrderIntent) {
    let config = scalper::config::Config::from_toml_str(&live_config_text(sim, "")).unwrap();
    let t0 = ist("09:59:00");
    let mut core = ExitCore::new(config.core_params(), TradingCell::active(t0));
    core.adopt(PositionId::new("P1"), A, Side::Long, Qty(75), rupees("100.00"), t0).unwrap();
    let before = core.export();
    let tick = Tick::at(A, rupees("89.00"), t0);
    let intent = core
        .on_tick(&tick)
        .into_iter()
        .find_map(|e| match e {
            CoreEvent::ExitIntent(i) => Some(i),
            _ => None,
        })
        .expect("the stop loss fires");
    let state = if exiting { core.export() } else { before };
    (Recovered { core: state, trading: TradingCell::active(t0).status() }, intent)
}

/// What the previous run did before it died: wrote `intent` ahead and sent it.
fn sent_before(sim: &LiveSim, intent: &OrderIntent) {
    let journal = OrderJournal::open(&sim.dir.path().join("journal"), ist("09:59:00")).unwrap();
    journal.record(intent, ist("09:59:00")).unwrap();
    let outcome =
        client(sim).place_order(&PlaceOrder::market(intent, ProductType::Intraday), Priority::Exit);
    assert!(matches!(outcome, WriteOutcome::Accepted(_)), "{outcome}");
}

#[test]
fn a_recovered_exit_in_flight_is_found_at_the_broker_and_never_sent_again() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    sim.broker.inject_position(A, ProductType::Intraday, 75, rupees("100.00"));
    sim.board.set(A, rupees("89.00"), Timestamp(0));
    let (recovered, intent) = stored(&sim, true);
    sent_before(&sim, &intent);
    let e = LiveEngine::start(&sim, Start { recovered: Some(recovered), ..Start::default() });
    let t = e.closed(&PositionId::new("P1"));
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("89.00")));
    sim.assert_one_filled_exit(&PositionId::new("P1"));
    assert_eq!(sim.posts_of("X1-P1"), 1, "only the previous run's post");
    e.wait_gone_from_api(&[PositionId::new("P1")]);
    e.stop();
    sim.shutdown();
}

#[test]
fn an_exit_the_store_missed_is_recomputed_and_settled_from_the_journal_instead_of_sent() {
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::from_millis(1_500),
        ..sim_config(FaultConfig::default())
    });
    sim.broker.inject_position(A, ProductType::Intraday, 75, rupees("100.00"));
    let (recovered, intent) = stored(&sim, false);
    sent_before(&sim, &intent);
    let e = LiveEngine::start(&sim, Start { recovered: Some(recovered), ..Start::default() });
    // The same trigger again: the core recomputes X1-P1, which the journal knows was sent.
    e.price(&sim, A, "89.00");
    let t = e.closed(&PositionId::new("P1"));
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("89.00")));
    assert_eq!(e.recorder.exit_intents(), ["X1-P1"]);
    assert_eq!(sim.posts_of("X1-P1"), 1, "the recomputed exit was settled, not sent");
    sim.assert_one_filled_exit(&PositionId::new("P1"));
    assert!(captured().iter().any(|l| l.contains("X1-P1") && l.contains("before a restart")));
    e.stop();
    sim.shutdown();
}

#[test]
fn a_recovered_exit_that_never_left_is_proved_absent_and_placed_under_the_next_id() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    sim.broker.inject_position(A, ProductType::Intraday, 75, rupees("100.00"));
    sim.board.set(A, rupees("89.00"), Timestamp(0));
    let (recovered, _intent) = stored(&sim, true);
    let e = LiveEngine::start(&sim, Start { recovered: Some(recovered), ..Start::default() });
    let t = e.closed(&PositionId::new("P1"));
    assert_eq!((t.reason, t.attempt), (ExitReason::StopLoss, 2));
    assert_eq!(sim.posts_of("X1-P1"), 0);
    assert_eq!(sim.posts_of("X2-P1"), 1);
    sim.assert_one_filled_exit(&PositionId::new("P1"));
    let audit = e.recorder.reconciliations();
    assert!(audit.iter().any(|a| a.contains("exit_absent") && a.contains("X1-P1")), "{audit:?}");
    e.stop();
    sim.shutdown();
}
