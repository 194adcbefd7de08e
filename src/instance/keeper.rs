//! The lease keeper: renews the lease every `instance.renew_every_ms` from the moment it is
//! acquired (before the engine is even built, since startup recovery can take longer than the
//! TTL) until the process stops, on a thread of its own, outside the supervisor: it must keep
//! running while the supervisor is not started yet or is stopping workers.
//!
//! Each successful renewal moves the order gate's deadline to `sent + ttl − margin`. A
//! renewal that fails (Redis down, a timeout) is retried on a fresh connection until the
//! deadline; at the deadline — or at once when Redis says another process holds the lease —
//! the lease is lost: the gate closes (nothing more is sent or written), `instance` health goes
//! down, and the loss is reported on [`LeaseKeeper::lost`] so that the process halts trading
//! and exits non-zero (systemd then restarts it, as a standby). On a clean stop the keeper
//! releases the lease.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use redis::Connection;

use super::gate::OrderGate;
use super::lease::RedisLease;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::publish::connection::{RedisTarget, describe_error};
use crate::runtime::{StopHandle, StopSignal, monotonic_millis};

/// The health board's component name.
pub const HEALTH_COMPONENT: &str = "instance";

/// A running keeper.
pub struct LeaseKeeper {
    stop: StopHandle,
    join: Option<JoinHandle<()>>,
    lost: Receiver<String>,
}

struct Keeper {
    lease: RedisLease,
    target: RedisTarget,
    gate: OrderGate,
    health: HealthBoard,
    lost: Sender<String>,
    con: Option<Connection>,
    failing_since: Option<String>,
}

impl LeaseKeeper {
    /// Starts renewing a lease just acquired (`con` is the connection that acquired it).
    pub fn start(
        lease: RedisLease,
        target: RedisTarget,
        gate: OrderGate,
        health: HealthBoard,
        con: Option<Connection>,
    ) -> std::io::Result<LeaseKeeper> {
        let (stop, signal) = StopSignal::new();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut k = Keeper { lease, target, gate, health, lost: tx, con, failing_since: None };
        k.report_ok();
        let join = std::thread::Builder::new()
            .name("lease_keeper".into())
            .spawn(move || k.run(&signal))?;
        Ok(LeaseKeeper { stop, join: Some(join), lost: rx })
    }

    /// Receives one message when the lease is lost (it says why); disconnected if the
    /// keeper ended without losing it.
    pub fn lost(&self) -> &Receiver<String> {
        &self.lost
    }

    /// Stops renewing and releases the lease if it is still ours.
    pub fn stop(mut self) {
        self.stop.stop();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Keeper {
    fn report_ok(&self) {
        let token = self.gate.token().unwrap_or(0);
        self.health.set(
            HEALTH_COMPONENT,
            ComponentHealth::new(
                Status::Ok,
                format!("active: holds the lease (fencing token {token})"),
            )
            .with_details(serde_json::json!({
                "role": "active",
                "lease": self.lease.key(),
                "holder": self.lease.holder(),
                "token": token,
            })),
        );
    }

    fn connection(&mut self) -> Result<&mut Connection, String> {
        if self.con.is_none() {
            self.con = Some(self.target.connect().map_err(|e| describe_error(&e))?);
        }
        Ok(self.con.as_mut().expect("a connection was just set"))
    }

    /// One renewal: `Ok(true)` renewed, `Ok(false)` the lease belongs to someone else,
    /// `Err` Redis could not be asked.
    fn renew(&mut self) -> Result<bool, String> {
        let lease = self.lease.clone();
        let result = lease.renew(self.connection()?).map_err(|e| describe_error(&e));
        if result.is_err() {
            self.con = None;
        }
        result
    }

    fn lose(&mut self, why: String) {
        self.gate.close(why.clone());
        log::error!(target: "instance", "ALERT instance lease {} lost: {why}; orders and store writes stopped, trading halts and the process exits", self.lease.key());
        self.health.set(
            HEALTH_COMPONENT,
            ComponentHealth::new(Status::Down, format!("lease lost: {why}")),
        );
        let _ = self.lost.try_send(why);
    }

    fn run(&mut self, stop: &StopSignal) {
        let timing = self.lease.timing();
        loop {
            let sent = monotonic_millis();
            match self.renew() {
                Ok(true) => {
                    self.gate.extend_to(timing.valid_until(sent));
                    if let Some(why) = self.failing_since.take() {
                        log::info!(target: "instance", "lease {} renewed again (after: {why})", self.lease.key());
                        self.report_ok();
                    }
                }
                Ok(false) => {
                    self.lose("Redis says another process holds it, or it expired".into());
                    return;
                }
                Err(why) => {
                    if self.failing_since.is_none() {
                        log::warn!(target: "instance", "lease {} not renewed ({why}); retrying until it must count as lost", self.lease.key());
                        self.health.set(
                            HEALTH_COMPONENT,
                            ComponentHealth::new(
                                Status::Degraded,
                                format!("lease renewal failing: {why}"),
                            ),
                        );
                    }
                    self.failing_since = Some(why);
                }
            }
            // Wake for the next renewal, or at the deadline, whichever comes first.
            let now = monotonic_millis();
            let deadline = self.gate.valid_until();
            if now >= deadline {
                let why = self.failing_since.clone().unwrap_or_else(|| "no renewal in time".into());
                self.lose(format!("not renewed before its safety margin ({why})"));
                return;
            }
            let next = if self.failing_since.is_some() {
                timing.renew_every / 4
            } else {
                timing.renew_every
            };
            let wait = next.min(Duration::from_millis(deadline - now));
            if !stop.sleep(wait) {
                self.release();
                return;
            }
        }
    }

    fn release(&mut self) {
        let lease = self.lease.clone();
        let released =
            self.connection().and_then(|c| lease.release(c).map_err(|e| describe_error(&e)));
        self.gate.close("released at shutdown");
        match released {
            Ok(true) => log::info!(target: "instance", "lease {} released", self.lease.key()),
            Ok(false) => {
                log::warn!(target: "instance", "lease {} was no longer ours at shutdown", self.lease.key())
            }
            Err(e) => {
                log::warn!(target: "instance", "lease {} not released ({e}); it expires by itself", self.lease.key())
            }
        }
    }
}
