//! Mirroring the engine's live state to other processes: the Redis publisher (optional,
//! `[redis] enabled`). Keys and fields: `keys.rs` and the README (section "Redis keys"); the worker: `redis.rs`;
//! connections with timeouts: `connection.rs` (also used by the instance lease).
//!
//! Wiring: [`Publisher::new`] before the engine is built (its [`Publisher::sink`] joins the
//! engine's event sinks), [`Publisher::worker_spec`] after, with handles on the engine's state
//! ([`PublisherHandles`]: tick cache, PnL board, instrument master, clock).

pub mod connection;
pub mod keys;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::config::{Config, Secrets};
use crate::exec::seams::{EngineEvent, EventSink};
use crate::ops::health::HealthBoard;
use crate::ops::metrics::Metrics;
use crate::runtime::WorkerSpec;

use self::connection::RedisTarget;
use self::keys::Keys;
pub use self::redis::PublisherHandles;
use self::redis::{PublishMetrics, PublisherShared, RedisPublisher};

/// Engine events waiting for the publisher at most; more are dropped (and counted).
pub const EVENT_QUEUE: usize = 4_096;

/// Connect, read and write timeout of the publisher's connection.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The worker's name.
pub const WORKER: &str = "redis_publisher";

/// Hands engine events to the publisher without ever waiting.
pub struct RedisEvents {
    tx: Sender<EngineEvent>,
    dropped: prometheus::IntCounter,
}

impl EventSink for RedisEvents {
    fn record(&self, event: &EngineEvent) {
        // Snapshots are read from the PnL board; the order's intent is published when sent.
        if matches!(event, EngineEvent::PnlPublished(_)) {
            return;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// A publisher being wired; see the module doc.
pub struct Publisher {
    shared: Arc<PublisherShared>,
    sink: Arc<RedisEvents>,
}

impl Publisher {
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        metrics: &Metrics,
        health: &HealthBoard,
    ) -> anyhow::Result<Publisher> {
        let target =
            RedisTarget::from_config(&config.redis, secrets.redis_password.as_ref(), TIMEOUT)
                .map_err(|e| anyhow::anyhow!("redis publisher: {e}"))?;
        Ok(Publisher::with_target(target, config, metrics, health))
    }

    /// With an explicit target (tests point it at a proxy).
    pub fn with_target(
        target: RedisTarget,
        config: &Config,
        metrics: &Metrics,
        health: &HealthBoard,
    ) -> Publisher {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        let m = PublishMetrics::new(metrics);
        let sink = Arc::new(RedisEvents { tx, dropped: m.events_dropped.clone() });
        health.set(
            redis::HEALTH_COMPONENT,
            crate::ops::health::ComponentHealth::new(
                crate::ops::health::Status::Degraded,
                "starting",
            ),
        );
        let shared = Arc::new(PublisherShared {
            target,
            keys: Keys::new(&config.redis.key_prefix),
            events: rx,
            metrics: m,
            health: health.clone(),
            instance: instance_name(),
            mode: config.mode.to_string(),
            heartbeat_every: config.heartbeat.interval.max(Duration::from_millis(100)),
            heartbeat_ttl: config.redis.heartbeat_ttl,
        });
        Publisher { shared, sink }
    }

    /// The sink to add to the engine's.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.sink.clone()
    }

    pub fn target(&self) -> &str {
        self.shared.target.describe()
    }

    /// The shared state a publisher worker runs on (to run one by hand).
    pub fn shared(&self) -> Arc<PublisherShared> {
        self.shared.clone()
    }

    /// The worker, on its handles to the engine's state.
    pub fn worker_spec(&self, engine: PublisherHandles, config: &Config) -> WorkerSpec {
        let shared = self.shared.clone();
        // Connect, write and read may each take up to the timeout within one round.
        let floor = TIMEOUT * 4 + Duration::from_secs(1);
        let limit = config.runtime.heartbeat_limit_for(WORKER).max(floor);
        WorkerSpec::new(WORKER, limit, move || {
            Box::new(RedisPublisher::new(shared.clone(), engine.clone()))
                as Box<dyn crate::runtime::Worker>
        })
        .pinned_to(config.host.pin.get(WORKER).copied())
    }
}

/// This process as other processes see it: host and pid.
pub fn instance_name() -> String {
    let host = host_name().unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// The host's name from the kernel (uname), which works where /proc/sys is not mounted (the
/// systemd unit's `ProcSubset=pid`).
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_is_the_kernels() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(host_name().as_deref(), Some(proc.trim()));
        assert!(instance_name().ends_with(&format!(":{}", std::process::id())));
    }
}
