//! Single active instance: two engines configured for the same Dhan account must never both
//! trade.
//!
//! With `instance.lease = "redis"` a process first claims the account's lease in Redis
//! ([`claim`]), *before* it builds the engine. While another process holds it, this one is a
//! standby (`standby.rs`): no engine, no orders, `/health` says `standby`. Once it holds the
//! lease, the lease keeper (`keeper.rs`) renews it, the process builds the engine — running
//! the full restart recovery from the shared store — and trades. Everything that acts on the
//! account asks the [`OrderGate`] (`gate.rs`): the router's gateway before each placement, the
//! store writer before each batch (`fence.rs`). If the lease cannot be renewed before its
//! safety margin, the gate shuts at once, and the process halts trading and exits non-zero.
//! With `instance.lease = "none"` the gate is always open and nothing of this runs.
//!
//! Keys, script semantics and why Redis rather than a PostgreSQL advisory lock: `lease.rs`.

pub mod fence;
pub mod gate;
pub mod keeper;
pub mod lease;
pub mod standby;

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::config::{Config, LeaseKind, Secrets};
use crate::ops::health::HealthBoard;
use crate::ops::http::HttpWorker;
use crate::ops::metrics::Metrics;
use crate::publish::connection::RedisTarget;
use crate::publish::keys::Keys;
use crate::runtime::signals::SignalEvent;
use crate::runtime::{Worker, WorkerCtx, systemd};

pub use gate::OrderGate;
use keeper::LeaseKeeper;
use lease::{LeaseTiming, RedisLease, holder_value};
use standby::{StandbyApi, StandbyState, Waited, wait_for_lease};

/// This process's right to trade.
pub struct Instance {
    gate: OrderGate,
    keeper: Option<LeaseKeeper>,
    never: Receiver<String>,
    /// Pings the systemd watchdog while the engine is built after a standby took over.
    watchdog: Option<WatchdogBridge>,
}

/// A standby told systemd it is ready, so the watchdog runs from then on; between taking the
/// lease and the main loop's own pings (restart recovery, building the engine) something must
/// keep pinging it.
struct WatchdogBridge {
    stop: crate::runtime::StopHandle,
}

impl WatchdogBridge {
    fn start() -> Option<WatchdogBridge> {
        let every = systemd::watchdog_ping_interval()?;
        let (stop, signal) = crate::runtime::StopSignal::new();
        std::thread::Builder::new()
            .name("watchdog_bridge".into())
            .spawn(move || {
                while signal.sleep(every) {
                    systemd::notify_watchdog();
                }
            })
            .ok()?;
        Some(WatchdogBridge { stop })
    }
}

impl Drop for WatchdogBridge {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

impl Instance {
    /// No lease: always allowed.
    pub fn unleased() -> Instance {
        Instance {
            gate: OrderGate::open(),
            keeper: None,
            never: crossbeam_channel::never(),
            watchdog: None,
        }
    }

    /// The engine runs: the main loop pings the watchdog from now on.
    pub fn engine_started(&mut self) {
        self.watchdog = None;
    }

    pub fn gate(&self) -> &OrderGate {
        &self.gate
    }

    /// Receives why, once, if the lease is lost.
    pub fn lost(&self) -> &Receiver<String> {
        self.keeper.as_ref().map_or(&self.never, |k| k.lost())
    }

    /// Stops renewing and releases the lease (if any).
    pub fn release(mut self) {
        self.engine_started();
        if let Some(k) = self.keeper.take() {
            k.stop();
        }
    }
}

/// What the standby serves its HTTP routes with.
pub struct StandbyHttp {
    pub server: Arc<crate::ops::http::Server>,
    pub control_token: crate::domain::Secret,
    pub max_body_bytes: usize,
}

/// Claims the right to trade: at once without a lease; with one, waits as a standby until this
/// process holds the lease. `None` when asked to shut down while waiting.
pub fn claim(
    config: &Config,
    secrets: &Secrets,
    metrics: &Metrics,
    health: &HealthBoard,
    http: &StandbyHttp,
    signals: &Receiver<SignalEvent>,
) -> anyhow::Result<Option<Instance>> {
    if config.instance.lease == LeaseKind::None {
        return Ok(Some(Instance::unleased()));
    }
    let timing = LeaseTiming::new(config.instance.lease_ttl, config.instance.renew_every);
    let target = RedisTarget::from_config(
        &config.redis,
        secrets.redis_password.as_ref(),
        timing.command_timeout(),
    )
    .map_err(|e| anyhow::anyhow!("instance lease: {e}"))?;
    let lease = RedisLease::new(
        &Keys::new(&config.redis.key_prefix),
        secrets.dhan_client_id.expose(),
        holder_value(),
        timing,
    );
    let state = Arc::new(Mutex::new(StandbyState::default()));
    let api = Arc::new(StandbyApi {
        state: state.clone(),
        lease: lease.key().to_string(),
        since: Instant::now(),
        metrics: metrics.clone(),
        health: health.clone(),
    });
    let (stop, ctx) = WorkerCtx::standalone("http");
    let mut worker =
        HttpWorker::new(http.server.clone(), api, http.control_token.clone(), http.max_body_bytes);
    let serving = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || worker.run(&ctx))
        .map_err(|e| anyhow::anyhow!("starting the standby HTTP thread: {e}"))?;
    systemd::notify_ready();
    systemd::notify_status("standby: waiting for the instance lease");
    log::info!(target: "instance", "claiming lease {} in Redis at {} (ttl {:?}, renewed every {:?})", lease.key(), target.describe(), timing.ttl, timing.renew_every);
    let waited = wait_for_lease(&lease, &target, &state, health, signals);
    stop.stop();
    let _ = serving.join();
    match waited {
        Waited::Shutdown => {
            log::info!(target: "instance", "standby: shutting down without having traded");
            Ok(None)
        }
        Waited::Acquired { gate, con } => {
            systemd::notify_status("active: holds the instance lease");
            let keeper = LeaseKeeper::start(lease, target, gate.clone(), health.clone(), con)
                .map_err(|e| anyhow::anyhow!("starting the lease keeper: {e}"))?;
            Ok(Some(Instance {
                gate,
                keeper: Some(keeper),
                never: crossbeam_channel::never(),
                watchdog: WatchdogBridge::start(),
            }))
        }
    }
}
