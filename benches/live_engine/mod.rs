//! The engine in live mode against the simulator, for the end-to-end benchmarks: built as the
//! live tests build it (`tests/live_support`), with the order journal where the benchmark
//! says, no rate limit and room for thousands of trades.
#![allow(dead_code)]

#[path = "../../tests/live_support/mod.rs"]
mod live_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use live_support::*;
use scalper::broker::ratelimit::LimiterConfig;
use scalper::config::{Config, Secrets};
use scalper::domain::{Clock, InstrumentKey, ManualClock, PositionId};
use scalper::engine::live::{LiveOptions, dhan_broker};
use scalper::engine::seams::Seams;
use scalper::engine::shared::Shared;
use scalper::engine::{EngineEnv, build_with};
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::Supervisor;

pub fn unlimited() -> LimiterConfig {
    LimiterConfig {
        orders: vec![],
        data: vec![],
        quote: vec![],
        non_trading: vec![],
        ..LimiterConfig::dhan()
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// The engine as the live tests build it, with the journal in `journal_dir`, no rate limit and
/// room for thousands of trades.
pub struct Engine {
    pub clock: ManualClock,
    pub shared: Arc<Shared>,
    pub recorder: Arc<Recorder>,
    api: ApiClient,
    supervisor: Option<scalper::runtime::SupervisorHandle>,
}

impl Engine {
    pub fn start(sim: &LiveSim, journal_dir: &Path) -> Engine {
        Engine::start_with(sim, journal_dir, "")
    }

    /// [`Engine::start`] with `extra` TOML tables (e.g. `[host]`).
    pub fn start_with(sim: &LiveSim, journal_dir: &Path, extra: &str) -> Engine {
        let text = live_config_text(sim, extra)
            .replace("max_trades_per_day = 1000", "max_trades_per_day = 1000000")
            .replace("request_timeout_ms = 400", "request_timeout_ms = 5000")
            .replace("resolve_window_ms = 600", "resolve_window_ms = 5000")
            .replace("[risk]\n", "[risk]\nstale_after_ms = 600000\nstop_loss_pct = 1.5\n");
        let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("bench config: {e}"));
        let secrets = Secrets::resolve(&config, |k| match k {
            "DHAN_CLIENT_ID" => Some(CLIENT_ID.into()),
            "DHAN_ACCESS_TOKEN" => Some(TOKEN.into()),
            "SCALPER_CONTROL_TOKEN" => Some(CONTROL_TOKEN.into()),
            _ => None,
        })
        .expect("live secrets");
        let clock = ManualClock::new(ist("10:00:00"));
        let metrics = Metrics::new();
        let health = HealthBoard::new();
        let mut sup = Supervisor::new(supervisor_config(), metrics.clone());
        let recorder = Arc::new(Recorder::default());
        let mut options = LiveOptions::from_config(&config);
        quick(&mut options);
        options.limiter = unlimited();
        options.poll_every = Duration::from_secs(5);
        options.journal_dir = Some(journal_dir.to_path_buf());
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
            recovered: None,
        };
        let engine = build_with(env, seams).expect("engine builds");
        for w in engine.workers {
            sup.add(w);
        }
        let api = serve(&mut sup, engine.api.clone(), CONTROL_TOKEN);
        let supervisor = Some(sup.start().expect("supervisor starts"));
        wait_until("trading starts (startup reconciliation done)", || {
            health
                .get("reconciliation")
                .is_some_and(|h| h.status == scalper::ops::health::Status::Ok)
        });
        wait_until("the feed is subscribed", || sim.prices.subscribed().contains(&A));
        Engine { clock, shared: engine.shared, recorder, api, supervisor }
    }

    pub fn price(&self, sim: &LiveSim, instrument: InstrumentKey, price: &str) {
        let price = rupees(price);
        self.clock.advance_millis(1);
        let now = self.clock.now();
        sim.prices.set_price(instrument, price);
        wait_priced(&self.shared, instrument, price, now);
    }

    pub fn open(&self, instrument: InstrumentKey) -> PositionId {
        let body = serde_json::json!({ "instrument": instrument.to_string(), "side": "LONG", "quantity": 75 });
        let (status, body) = self.api.post("/v1/orders", &body.to_string());
        assert_eq!(status, 202, "entry accepted: {body}");
        let id = PositionId::new(body["position_id"].as_str().expect("position id"));
        let core = self.shared.core.clone();
        wait_until(&format!("position {id} is open"), || core.lock().position(&id).is_some());
        id
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(sup) = self.supervisor.take() {
            sup.shutdown();
            let _ = sup.join();
        }
    }
}
