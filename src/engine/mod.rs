//! The engine as the process runs it: everything built from the configuration after startup
//! recovery — the workers in their start order, the operator API, the trading-state cell, and
//! the hook that applies a live config reload. `app` (the process lifecycle: signals,
//! supervisor, systemd, HTTP) runs what [`build`] returns.

use std::sync::Arc;

use crate::config::{Config, Secrets};
use crate::domain::Clock;
use crate::ops::health::HealthBoard;
use crate::ops::http::OpsApi;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::TradingCell;
use crate::runtime::{StatusTable, WorkerSpec};

/// What the process gives the engine to build itself with.
pub struct EngineEnv {
    pub config: Config,
    pub secrets: Secrets,
    pub metrics: Metrics,
    pub health: HealthBoard,
    /// The supervisor's worker status table (for `/health`).
    pub workers: StatusTable,
    pub clock: Arc<dyn Clock>,
}

/// A built engine, ready to be supervised.
pub struct Engine {
    /// Workers in start order; the supervisor stops them in reverse order.
    pub workers: Vec<WorkerSpec>,
    /// Behind `/health`, `/metrics` and the `/v1/` control routes.
    pub api: Arc<dyn OpsApi>,
    /// The trading state; the supervisor's escalation halts trading through it.
    pub trading: TradingCell,
    /// Applies a validated live reload (the `[risk]` and `[limits]` tables) to the running
    /// engine.
    pub reload: Box<dyn Fn(&Config) + Send>,
    /// Lines for the startup banner (where the simulator listens, which store is used...).
    pub banner: Vec<String>,
}

/// Builds the engine: runs startup recovery, then creates every worker. Fails (and the process
/// exits non-zero without trading) when recovery cannot complete.
pub fn build(env: EngineEnv) -> anyhow::Result<Engine> {
    let _ = env;
    anyhow::bail!("the engine is not assembled in this build")
}
