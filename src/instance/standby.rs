//! A standby: a process configured for an account whose lease another process holds. It
//! builds no engine (so it has no order router, no feed, no broker connection: it cannot send
//! an order), answers `/health` with `"status": "standby"` and the control routes with 503,
//! tells systemd it is up, and tries to take the lease every `instance.renew_every_ms` until
//! it gets it or is asked to stop. The lease becomes free when its holder releases it (clean
//! shutdown) or stops renewing it (a crash: at most `instance.lease_ttl_ms` later).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, select};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::lease::RedisLease;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::ops::http::{ApiResponse, OpsApi, Route};
use crate::ops::metrics::Metrics;
use crate::publish::connection::{RedisTarget, describe_error};
use crate::runtime::signals::SignalEvent;
use crate::runtime::{monotonic_millis, systemd};

use super::gate::OrderGate;
use super::keeper::HEALTH_COMPONENT;

/// What a standby knows about the lease it waits for.
#[derive(Debug, Clone, Default)]
pub struct StandbyState {
    pub holder: Option<String>,
    pub redis_error: Option<String>,
}

/// The HTTP surface of a standby.
pub struct StandbyApi {
    pub state: Arc<Mutex<StandbyState>>,
    pub lease: String,
    pub since: Instant,
    pub metrics: Metrics,
    pub health: HealthBoard,
}

impl OpsApi for StandbyApi {
    fn health(&self) -> (bool, Value) {
        let s = self.state.lock().clone();
        (
            true,
            json!({
                "status": "standby",
                "healthy": true,
                "role": "standby",
                "trading_state": "standby",
                "lease": self.lease,
                "lease_holder": s.holder,
                "redis_error": s.redis_error,
                "waiting_secs": self.since.elapsed().as_secs(),
                "components": self.health.snapshot(),
            }),
        )
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn control(&self, _route: Route, _body: Option<Value>) -> ApiResponse {
        let holder = self.state.lock().holder.clone().unwrap_or_else(|| "nobody".into());
        ApiResponse::error(
            503,
            format!(
                "standby: this instance does not trade until it holds the lease (held by {holder})"
            ),
        )
    }
}

/// What the wait ended with.
pub enum Waited {
    /// The lease is ours: the gate, and the connection that took it.
    Acquired { gate: OrderGate, con: Option<redis::Connection> },
    /// Asked to shut down while waiting.
    Shutdown,
}

/// Waits for the lease; see the module doc.
pub fn wait_for_lease(
    lease: &RedisLease,
    target: &RedisTarget,
    state: &Mutex<StandbyState>,
    health: &HealthBoard,
    signals: &Receiver<SignalEvent>,
) -> Waited {
    let every = lease.timing().renew_every;
    let mut con: Option<redis::Connection> = None;
    let mut announced: Option<Option<String>> = None;
    let watchdog = systemd::watchdog_ping_interval();
    loop {
        if con.is_none() {
            match target.connect() {
                Ok(c) => con = Some(c),
                Err(e) => {
                    let why = describe_error(&e);
                    if state.lock().redis_error.as_deref() != Some(why.as_str()) {
                        log::warn!(target: "instance", "standby: Redis at {} unavailable ({why}); retrying", target.describe());
                    }
                    state.lock().redis_error = Some(why);
                }
            }
        }
        if let Some(c) = con.as_mut() {
            let sent = monotonic_millis();
            match lease.try_acquire(c) {
                Ok(Some(token)) => {
                    log::info!(target: "instance", "lease {} acquired (fencing token {token}); this instance becomes active and runs restart recovery", lease.key());
                    return Waited::Acquired { gate: lease.gate(token, sent), con };
                }
                Ok(None) => {
                    let holder = lease.current_holder(c).ok().flatten();
                    if announced.as_ref() != Some(&holder) {
                        log::info!(target: "instance", "standby: lease {} held by {}; waiting to take over", lease.key(), holder.as_deref().unwrap_or("nobody (just expired)"));
                        health.set(
                            HEALTH_COMPONENT,
                            ComponentHealth::new(Status::Ok, "standby: waiting for the lease")
                                .with_details(json!({
                                    "role": "standby",
                                    "lease": lease.key(),
                                    "holder": holder,
                                })),
                        );
                        announced = Some(holder.clone());
                    }
                    let mut s = state.lock();
                    s.holder = holder;
                    s.redis_error = None;
                }
                Err(e) => {
                    let why = describe_error(&e);
                    log::warn!(target: "instance", "standby: asking Redis for the lease failed ({why}); retrying");
                    state.lock().redis_error = Some(why);
                    con = None;
                }
            }
        }
        if watchdog.is_some() {
            systemd::notify_watchdog();
        }
        select! {
            recv(signals) -> sig => match sig {
                Ok(SignalEvent::Shutdown) | Err(_) => return Waited::Shutdown,
                Ok(SignalEvent::Reload) => {
                    log::info!(target: "instance", "standby: reload ignored (the configuration is read when this instance becomes active)");
                }
            },
            default(every) => {}
        }
    }
}
