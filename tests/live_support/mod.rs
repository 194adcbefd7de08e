//! The engine in live mode against the real simulator, for the `live_*` integration tests: the
//! simulator's feed and broker halves on loopback sharing one price board, the engine built
//! from a live config pointing at them (with the Dhan broker's windows and limits shrunk
//! through `LiveOptions`), every worker under a real supervisor, the HTTP API on a loopback
//! port, and a logger that captures every line so a test can prove the access token never
//! appears. The engine's clock is a `ManualClock` (prices and decisions are deterministic);
//! every wait polls a condition with a deadline.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scalper::config::{Config, Secrets};
use scalper::domain::{Clock, ExitReason, InstrumentKey, ManualClock, PositionId, Side, Timestamp};
use scalper::engine::live::{LiveOptions, dhan_broker};
use scalper::engine::seams::{EventSink, NoopSink, Recovered, Seams};
use scalper::engine::shared::Shared;
use scalper::engine::{EngineEnv, build_with};
use scalper::exec::ClosedTrade;
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::risk::correlation::{self, OrderRole};
use scalper::runtime::{Supervisor, SupervisorConfig, SupervisorHandle};
use scalper::sim::broker::{FaultConfig, SimBroker, SimBrokerConfig};
use scalper::sim::feed::{SimFeed, SimFeedConfig, SimFeedControl};
use scalper::sim::orders::SimOrder;
use scalper::sim::prices::PriceBoard;
use serde_json::Value;

#[path = "../harness_common/mod.rs"]
mod harness_common;
pub use harness_common::*;

#[path = "../log_capture/mod.rs"]
mod log_capture;
#[allow(unused_imports)]
pub use log_capture::{capture_logs, captured};

/// Distinctive too: the client id is a secret (README: Secrets) and must not be logged either.
pub const CLIENT_ID: &str = "7305519246";
/// Long and distinctive, so that any leak into a log line is found by a substring search.
pub const TOKEN: &str = "eyJhbGciOiJIUzUxMiJ9.live-engine-secret-token-7d1e5b";
pub const CONTROL_TOKEN: &str = "live-test-control-token-0123456789";

pub const ALL: [InstrumentKey; 5] = [A, B, C, D, E];

/// Every captured line so far, checked for the access token and the client id.
pub fn assert_token_never_logged() {
    log_capture::assert_never_logged(TOKEN, 10);
    log_capture::assert_never_logged(CLIENT_ID, 10);
}

// ---------------------------------------------------------------- the simulator

/// The simulator's two halves on one price board, and a data directory for the engine.
pub struct LiveSim {
    pub feed: SimFeed,
    pub prices: SimFeedControl,
    pub board: PriceBoard,
    pub broker: SimBroker,
    pub dir: tempfile::TempDir,
}

/// The broker half for tests: quick transit, the given faults.
pub fn sim_config(faults: FaultConfig) -> SimBrokerConfig {
    SimBrokerConfig {
        client_id: CLIENT_ID.into(),
        access_token: TOKEN.into(),
        transit: Duration::from_millis(60),
        fill_interval: Duration::from_millis(20),
        faults: FaultConfig { withhold_for: Duration::from_millis(900), ..faults },
        ..SimBrokerConfig::default()
    }
}

impl LiveSim {
    pub fn start(cfg: SimBrokerConfig) -> LiveSim {
        capture_logs();
        let board = PriceBoard::new();
        for k in ALL {
            board.set(k, rupees("100.00"), Timestamp(0));
        }
        let feed = SimFeed::start(SimFeedConfig::new(CLIENT_ID, TOKEN), board.clone())
            .expect("the feed simulator starts");
        let broker = SimBroker::start(cfg, board.clone()).expect("the broker simulator starts");
        LiveSim {
            prices: feed.control(),
            feed,
            board,
            broker,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Orders at the simulator that are exits of `position` (any attempt).
    pub fn exits_of(&self, position: &PositionId) -> Vec<SimOrder> {
        self.broker
            .orders()
            .into_iter()
            .filter(|o| {
                correlation::parse(&o.correlation_id)
                    .is_some_and(|p| p.role == OrderRole::Exit && p.refers_to(position))
            })
            .collect()
    }

    /// POSTs of an order with this correlation id that reached the simulator.
    pub fn posts_of(&self, cid: &str) -> usize {
        self.broker
            .received()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v2/orders")
            .filter(|r| r.body.contains(&format!("\"correlationId\":\"{cid}\"")))
            .count()
    }

    /// Exactly one exit order of `position` exists at the simulator, and it traded.
    pub fn assert_one_filled_exit(&self, position: &PositionId) {
        let exits = self.exits_of(position);
        assert_eq!(
            exits.len(),
            1,
            "exactly one exit order of {position} at the simulator: {exits:#?}"
        );
        assert_eq!(
            exits[0].status,
            scalper::broker::model::OrderStatus::Traded,
            "the exit of {position} traded: {:#?}",
            exits[0]
        );
    }

    pub fn shutdown(self) {
        self.broker.shutdown();
        self.feed.shutdown();
    }
}

// ---------------------------------------------------------------- the engine

/// The live config of a test engine; `extra` adds tables.
pub fn live_config_text(sim: &LiveSim, extra: &str) -> String {
    format!(
        r#"
mode = "live"
data_dir = "{dir}"
[feed]
source = "dhan"
url = "ws://{feed}/"
mode = "ticker"
watchlist = ["NSE_FNO:52175", "NSE_FNO:52176", "NSE_FNO:52177", "NSE_FNO:52178", "NSE_FNO:52179"]
reconnect_base_ms = 20
reconnect_cap_ms = 200
[broker]
kind = "dhan"
rest_url = "{rest}"
order_update_url = "{ou}"
connect_timeout_ms = 300
request_timeout_ms = 400
resolve_window_ms = 600
# Off: the fault tests count the simulator's requests (tests/broker_faults.rs tests it).
keep_warm_ms = 0
breaker_failures = 50
breaker_open_secs = 1
[sim]
enabled = false
[limits]
max_daily_loss_rupees = 1000000
max_open_positions = 20
max_trades_per_day = 1000
reentry_cooldown_secs = 0
[pnl]
refresh_ms = 50
[heartbeat]
interval_secs = 1
# The tests move a price once and hold it (one tick, no more): a step beyond the price
# guard's ratio would wait for a confirming tick that never comes, so the guard only holds
# steps of more than 50 % here (its own tests: tests/engine_prices.rs).
[risk]
max_jump_pct = 50
{extra}
"#,
        dir = sim.dir.path().display(),
        feed = sim.feed.addr(),
        rest = sim.broker.base_url(),
        ou = sim.broker.order_socket_url(),
    )
}

/// The config of a live engine run as its own process (`scalper run`) against `sim`: an HTTP
/// port of its own, every day a trading day until a second before midnight IST, prices that
/// do not go stale while a test holds them, and Dhan
/// windows long enough that a loaded machine does not turn a slow answer into a resend.
pub fn process_config_text(sim: &LiveSim) -> String {
    let extra = r#"
[http]
listen = "127.0.0.1:0"
[runtime]
stop_deadline_ms = 5000
"#;
    live_config_text(sim, extra)
        .replace("[risk]\n", "[risk]\nstale_after_ms = 600000\n")
        .replace(
            "[limits]",
            "[session]\nentry_cutoff_time = \"23:59:58\"\nsquare_off_time = \"23:59:59\"\nweekends = true\n[limits]",
        )
        .replace("request_timeout_ms = 400", "request_timeout_ms = 5000")
        .replace("resolve_window_ms = 600", "resolve_window_ms = 2500")
}

/// The position's state as a live engine's SQLite store (in `data`) holds it.
pub fn stored_state(data: &std::path::Path, id: &PositionId) -> Option<String> {
    use rusqlite::{Connection, OpenFlags};
    let db = Connection::open_with_flags(data.join("scalper.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    db.busy_timeout(Duration::from_secs(2)).ok()?;
    db.query_row("SELECT state FROM positions WHERE id = ?1", [id.as_str()], |r| r.get(0)).ok()
}

/// Quick windows and limits for tests: polls every 100 ms, resends after 50 ms, a 429 closes
/// the order class for 200 ms (Dhan's per-class limits otherwise).
pub fn quick(o: &mut LiveOptions) {
    o.poll_every = Duration::from_millis(100);
    o.desk.retry_first = Duration::from_millis(50);
    o.desk.retry_max = Duration::from_millis(400);
    o.desk.undetermined_pause = Duration::from_millis(200);
    o.desk.breaker_poll = Duration::from_millis(20);
    o.desk.resolver.first_poll_ms = 50;
    o.desk.resolver.max_poll_ms = 150;
    o.desk.resolver.give_up_after_ms = 2_000;
    o.limiter.backoff_initial_ms = 200;
    o.limiter.backoff_max_ms = 800;
    o.limiter.margin_ms = 20;
}

pub fn supervisor_config() -> SupervisorConfig {
    SupervisorConfig {
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        restart_budget: 5,
        restart_window: Duration::from_secs(60),
        stop_deadline: Duration::from_secs(3),
        check_every: Duration::from_millis(20),
    }
}

/// A running live engine.
pub struct LiveEngine {
    pub config: Config,
    pub clock: ManualClock,
    pub shared: Arc<Shared>,
    pub recorder: Arc<Recorder>,
    pub health: HealthBoard,
    pub metrics: Metrics,
    pub addr: SocketAddr,
    api: ApiClient,
    supervisor: Option<SupervisorHandle>,
}

/// How to start an engine.
pub struct Start<'a> {
    pub extra: &'a str,
    /// Lines added to the `[broker]` table.
    pub broker: &'a str,
    pub options: &'a dyn Fn(&mut LiveOptions),
    pub recovered: Option<Recovered>,
    pub at: Timestamp,
    /// Wait until the startup reconciliation is done (trading has started).
    pub wait_started: bool,
}

impl Default for Start<'_> {
    fn default() -> Self {
        Start {
            extra: "",
            broker: "",
            options: &quick,
            recovered: None,
            at: ist("10:00:00"),
            wait_started: true,
        }
    }
}

impl LiveEngine {
    pub fn start(sim: &LiveSim, how: Start<'_>) -> LiveEngine {
        let text = live_config_text(sim, how.extra)
            .replace("[broker]\n", &format!("[broker]\n{}\n", how.broker));
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("test config: {e}"));
        let secrets = Secrets::resolve(&config, |k| match k {
            "DHAN_CLIENT_ID" => Some(CLIENT_ID.into()),
            "DHAN_ACCESS_TOKEN" => Some(TOKEN.into()),
            "SCALPER_CONTROL_TOKEN" => Some(CONTROL_TOKEN.into()),
            _ => None,
        })
        .expect("live secrets");
        let clock = ManualClock::new(how.at);
        let metrics = Metrics::new();
        let health = HealthBoard::new();
        let mut sup = Supervisor::new(supervisor_config(), metrics.clone());
        let recorder = Arc::new(Recorder::default());
        let mut options = LiveOptions::from_config(&config);
        (how.options)(&mut options);
        let env = EngineEnv {
            config: config.clone(),
            secrets,
            metrics: metrics.clone(),
            health: health.clone(),
            workers: sup.status_table(),
            clock: Arc::new(clock.clone()),
        };
        let seams = Seams {
            sink: recorder.clone(),
            sink_workers: Vec::new(),
            broker: Box::new(move |ctx| dhan_broker(ctx, options)),
            recovered: how.recovered,
        };
        let engine = build_with(env, seams).expect("engine builds");
        for w in engine.workers {
            sup.add(w);
        }
        let api = serve(&mut sup, engine.api.clone(), CONTROL_TOKEN);
        let supervisor = sup.start().expect("supervisor starts");
        let e = LiveEngine {
            config,
            clock,
            shared: engine.shared,
            recorder,
            health,
            metrics,
            addr: api.addr,
            api,
            supervisor: Some(supervisor),
        };
        if how.wait_started {
            e.wait_started();
        }
        wait_until("the feed is subscribed", || sim.prices.subscribed().contains(&A));
        e
    }

    /// Waits until the startup reconciliation is done.
    pub fn wait_started(&self) {
        wait_until("trading starts (startup reconciliation done)", || {
            self.health
                .get("reconciliation")
                .is_some_and(|h| h.status == scalper::ops::health::Status::Ok)
        });
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Trades `instrument` at `price` on the feed (a millisecond after the previous price, so
    /// that every tick is newer than the last) and waits until the engine has it: in the tick
    /// cache, and evaluated by the exit engine when a position holds it.
    pub fn price(&self, sim: &LiveSim, instrument: InstrumentKey, price: &str) {
        let price = rupees(price);
        self.clock.advance_millis(1);
        let now = self.now();
        sim.prices.set_price(instrument, price);
        wait_priced(&self.shared, instrument, price, now);
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.api.get(path)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.api.post(path, body)
    }

    /// Asks for an entry through the API; returns the position id it will have.
    /// Waits first until the tick cache has a price for the instrument, since an entry without
    /// one is refused (`no_price`): the feed's first tick of a second instrument may still be in
    /// transit on a busy machine.
    pub fn enter(&self, instrument: InstrumentKey, side: Side, quantity: i64) -> PositionId {
        let cache = self.shared.cache.clone();
        wait_until(&format!("the engine has a price for {instrument}"), || {
            cache.tick(instrument).is_some_and(|t| t.ltp.0 > 0)
        });
        let body = serde_json::json!({ "instrument": instrument.to_string(), "side": side.name(), "quantity": quantity });
        let (status, body) = self.post("/v1/orders", &body.to_string());
        assert_eq!(status, 202, "entry on {instrument} accepted: {body}");
        PositionId::new(body["position_id"].as_str().expect("position id"))
    }

    /// Opens a position with a live entry order and waits until it is open.
    pub fn open(&self, instrument: InstrumentKey, side: Side, quantity: i64) -> PositionId {
        let id = self.enter(instrument, side, quantity);
        let core = self.shared.core.clone();
        wait_until(&format!("position {id} is open"), || core.lock().position(&id).is_some());
        id
    }

    /// Waits until the position has closed; returns its trade.
    pub fn closed(&self, id: &PositionId) -> ClosedTrade {
        wait_until(&format!("position {id} closed"), || self.recorder.closed(id).is_some());
        self.recorder.closed(id).expect("closed")
    }

    /// Waits until `/v1/positions` no longer shows any of `ids`.
    pub fn wait_gone_from_api(&self, ids: &[PositionId]) {
        wait_until("the positions are gone from /v1/positions", || {
            let (_, body) = self.get("/v1/positions");
            let shown: Vec<&str> = body["positions"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
                .unwrap_or_default();
            ids.iter().all(|id| !shown.contains(&id.as_str()))
        });
    }

    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// The state a store would hold now (for an in-process restart).
    pub fn recoverable(&self) -> Recovered {
        Recovered { core: self.shared.core.lock().export(), trading: self.shared.trading.status() }
    }

    /// Stops every worker (in reverse start order).
    pub fn stop(mut self) {
        self.halt();
    }

    /// Stops every worker but keeps the engine's state readable (for a restart).
    pub fn halt(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            sup.shutdown();
            let _ = sup.join();
        }
    }
}

impl Drop for LiveEngine {
    fn drop(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            sup.shutdown();
            if !std::thread::panicking() {
                let _ = sup.join();
            }
        }
    }
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text exposition.
/// The reason and price of a closed trade.
pub fn reason(t: &ClosedTrade) -> ExitReason {
    t.reason
}

pub fn noop_sink() -> Arc<dyn EventSink> {
    Arc::new(NoopSink)
}
