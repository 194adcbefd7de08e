//! The engine in-process for integration tests: a simulator feed with scripted prices on a real
//! loopback socket, the engine built from a config pointing at it, every worker under a real
//! supervisor, and the HTTP API on a real loopback port. Time is a `ManualClock` the test moves,
//! so every decision is deterministic; conditions are awaited with deadlines, never with
//! sleeps. The ticks the test sends and the positions the engine opens can be written as
//! `ticks.csv` and `positions.csv` and replayed with the same parameters.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalper::config::{Config, Secrets};
use scalper::domain::{
    Clock, InstrumentKey, ManualClock, Paise, PositionId, Segment, Side, Timestamp,
};
use scalper::engine::seams::{EventSink, Seams};
use scalper::engine::shared::Shared;
use scalper::engine::{Engine, EngineEnv, build_with};
use scalper::exec::ClosedTrade;
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::replay::{self, ReplaySummary};
use scalper::runtime::{Supervisor, SupervisorConfig, SupervisorEvent, SupervisorHandle};
use scalper::sim::feed::{SimFeed, SimFeedConfig, SimFeedControl};
use scalper::sim::prices::PriceBoard;
use serde_json::{Value, json};

#[path = "../harness_common/mod.rs"]
mod harness_common;
pub use harness_common::*;

pub const CONTROL_TOKEN: &str = "engine-test-control-token";
const CLIENT_ID: &str = "1000000001";
const ACCESS_TOKEN: &str = "sim-access-token";

/// Not on any watchlist.
pub const UNWATCHED: InstrumentKey = InstrumentKey::new(Segment::NseFno, 60001);

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The config as a file (for the command-line tools).
    pub config_path: PathBuf,
    pub clock: ManualClock,
    pub prices: SimFeedControl,
    pub shared: Arc<Shared>,
    pub recorder: Arc<Recorder>,
    pub reload: Box<dyn Fn(&Config) + Send>,
    pub addr: SocketAddr,
    /// Every price the test sent, in order (for `ticks.csv`).
    pub ticks: Vec<(Timestamp, InstrumentKey, Paise)>,
    api: ApiClient,
    supervisor: Option<SupervisorHandle>,
    sim: Option<SimFeed>,
}

/// The config of a test engine: paper mode, the test's simulator as an external feed, quick
/// PnL refreshes and heartbeats; `extra` adds or overrides tables (`[risk]`, `[limits]`,
/// `[session]`...).
pub fn test_config(data_dir: &std::path::Path, feed_url: &str, extra: &str) -> Config {
    let text = test_config_text(data_dir, feed_url, extra);
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// The text of [`test_config`].
pub fn test_config_text(data_dir: &std::path::Path, feed_url: &str, extra: &str) -> String {
    format!(
        r#"
mode = "paper"
data_dir = "{}"
[feed]
source = "sim"
url = "{feed_url}"
mode = "ticker"
watchlist = ["NSE_FNO:52175", "NSE_FNO:52176", "NSE_FNO:52177", "NSE_FNO:52178", "NSE_FNO:52179"]
reconnect_base_ms = 20
reconnect_cap_ms = 200
[sim]
enabled = false
[pnl]
refresh_ms = 50
[heartbeat]
interval_secs = 1
{extra}
"#,
        data_dir.display()
    )
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

impl Harness {
    /// An engine with the paper broker, started at 10:00:00 IST.
    pub fn start(extra: &str) -> Harness {
        Harness::start_with(extra, |recorder| Seams { sink: recorder, ..Seams::paper() })
    }

    /// An engine with the given seams (the recorder must be their sink for the helpers to work).
    pub fn start_with(extra: &str, seams: impl FnOnce(Arc<dyn EventSink>) -> Seams) -> Harness {
        Harness::start_engine(extra, |env, recorder| build_with(env, seams(recorder)))
    }

    /// An engine built by `build` from the harness's environment (the recorder must be among
    /// its sinks for the helpers to work).
    pub fn start_engine(
        extra: &str,
        build: impl FnOnce(EngineEnv, Arc<dyn EventSink>) -> anyhow::Result<Engine>,
    ) -> Harness {
        scalper::ops::logging::init();
        let sim = SimFeed::start(SimFeedConfig::new(CLIENT_ID, ACCESS_TOKEN), PriceBoard::new())
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let text = test_config_text(dir.path(), &format!("{}/", sim.url()), extra);
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, &text).expect("config file");
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("test config: {e}"));
        let secrets = Secrets::resolve(&config, |_| None).expect("simulator credentials");
        let clock = ManualClock::new(ist("10:00:00"));
        let metrics = Metrics::new();
        let mut sup = Supervisor::new(supervisor_config(), metrics.clone());
        let recorder = Arc::new(Recorder::default());
        let env = EngineEnv {
            config: config.clone(),
            secrets,
            metrics: metrics.clone(),
            health: HealthBoard::new(),
            workers: sup.status_table(),
            clock: Arc::new(clock.clone()),
        };
        let engine = build(env, recorder.clone()).expect("engine builds");
        for w in engine.workers {
            sup.add(w);
        }
        let api = serve(&mut sup, engine.api.clone(), CONTROL_TOKEN);
        let supervisor = sup.start().expect("supervisor starts");
        let h = Harness {
            dir,
            config,
            config_path,
            clock,
            prices: sim.control(),
            shared: engine.shared,
            recorder,
            reload: engine.reload,
            addr: api.addr,
            ticks: Vec::new(),
            api,
            supervisor: Some(supervisor),
            sim: Some(sim),
        };
        wait_until("every worker runs", || h.supervisor().all_healthy());
        wait_until("the feed is subscribed", || h.prices.subscribed().contains(&A));
        h
    }

    pub fn supervisor(&self) -> &SupervisorHandle {
        self.supervisor.as_ref().expect("running")
    }

    /// Waits for a supervisor event.
    pub fn wait_event(
        &self,
        what: &str,
        pred: impl Fn(&SupervisorEvent) -> bool,
    ) -> SupervisorEvent {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.supervisor().events().recv_timeout(left) {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn at(&self, time: &str) {
        self.clock.set(ist(time));
    }

    /// Trades `instrument` at `price` at the clock's time and waits until the engine has it:
    /// in the tick cache, and evaluated by the exit engine when a position holds it.
    pub fn price(&mut self, instrument: InstrumentKey, price: &str) {
        let price = rupees(price);
        let now = self.now();
        self.ticks.push((now, instrument, price));
        self.prices.set_price(instrument, price);
        wait_priced(&self.shared, instrument, price, now);
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.api.get(path)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.api.post(path, body)
    }

    pub fn metrics_text(&self) -> String {
        self.api.metrics_text()
    }

    /// The value of one sample in `/metrics` (`name{labels}` exactly as rendered).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        metric_value(&self.metrics_text(), sample)
    }

    pub fn order(&self, instrument: InstrumentKey, side: Side, quantity: i64) -> (u16, Value) {
        let body = json!({ "instrument": instrument.to_string(), "side": side.name(), "quantity": quantity });
        self.post("/v1/orders", &body.to_string())
    }

    /// Opens a position through the API and waits until it is open; returns its id.
    pub fn open(&self, instrument: InstrumentKey, side: Side, quantity: i64) -> PositionId {
        let (status, body) = self.order(instrument, side, quantity);
        assert_eq!(status, 202, "entry on {instrument} accepted: {body}");
        let id = PositionId::new(body["position_id"].as_str().expect("position id"));
        let core = self.shared.core.clone();
        wait_until(&format!("position {id} is open"), || core.lock().position(&id).is_some());
        id
    }

    /// Waits until the position has closed; returns its trade.
    pub fn closed(&self, id: &PositionId) -> ClosedTrade {
        wait_until(&format!("position {id} closed"), || self.recorder.closed(id).is_some());
        self.recorder.closed(id).expect("closed")
    }

    /// Waits until the published snapshot shows `closed` trades today and no open position
    /// changes pending; returns `/v1/pnl`.
    pub fn pnl_after(&self, closed: u64) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("/v1/pnl shows {closed} closed trades"), || {
            let (_, body) = self.get("/v1/pnl");
            let done = body["closed_today"].as_u64() == Some(closed);
            last = body;
            done
        });
        last
    }

    /// Writes `ticks.csv` (every price the test sent) and `positions.csv` (every position the
    /// engine opened) and replays them with the engine's parameters.
    pub fn replay(&self) -> ReplaySummary {
        let dir = self.dir.path().join("replay");
        std::fs::create_dir_all(&dir).expect("replay dir");
        let mut ticks = String::from("ts,segment,security_id,ltp\n");
        for (ts, k, p) in &self.ticks {
            ticks.push_str(&format!(
                "{},{},{},{}\n",
                ts.to_ist_iso(),
                k.segment.name(),
                k.security_id,
                p
            ));
        }
        let mut positions =
            String::from("id,segment,security_id,side,quantity,entry_price,opened_at\n");
        for p in self.recorder.opened() {
            positions.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                p.id,
                p.instrument.segment.name(),
                p.instrument.security_id,
                p.side.name(),
                p.quantity.0,
                p.entry_price,
                p.opened_at.to_ist_iso()
            ));
        }
        let (tp, pp): (PathBuf, PathBuf) = (dir.join("ticks.csv"), dir.join("positions.csv"));
        std::fs::write(&tp, ticks).expect("ticks.csv");
        std::fs::write(&pp, positions).expect("positions.csv");
        replay::run(&self.config.replay_params(), &tp, &pp, &dir.join("out")).expect("replay runs")
    }

    /// Stops everything; panics if a worker had to be left behind.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            sup.shutdown();
            let outcome = sup.join();
            assert_eq!(
                outcome,
                scalper::runtime::SupervisorOutcome::Stopped { left_behind: Vec::new() },
                "every worker stops within its deadline"
            );
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(sup) = self.supervisor.take() {
                sup.shutdown();
            }
            return;
        }
        self.shutdown();
    }
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text exposition.
/// The sum of the samples of `name` whose labels include every `(label, value)` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let rest = head.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The fields of a closed trade that replay and the engine must agree on (the stale flag may
/// differ: the engine's position does not see the tick it was entered on).
pub fn trade_key(t: &ClosedTrade) -> (String, String, i64, i64, String, i64, i64, i64, i64) {
    (
        t.position_id.to_string(),
        t.reason.code().to_string(),
        t.exit_price.0,
        t.exited_at.0,
        t.instrument.to_string(),
        t.gross.0,
        t.entry_charges.0,
        t.exit_charges.0,
        t.net.0,
    )
}
