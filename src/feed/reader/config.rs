//! The tick reader's settings and their validation. The TOML mapping lives in `config`.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::Secret;
use crate::feed::subscribe::{FeedMode, MAX_INSTRUMENTS_PER_CONNECTION};
use crate::runtime::backoff::BackoffPolicy;
use crate::runtime::spin::Waiting;

/// The reader's settings.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// `wss://api-feed.dhan.co` live, `ws://127.0.0.1:PORT` for the simulator.
    pub url: String,
    /// The Dhan client id: a secret (its `Debug` is `***`).
    pub client_id: Secret,
    pub mode: FeedMode,
    /// TCP connect, and separately the whole WebSocket handshake.
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    /// Socket read timeout slice; capped at the worker's `beat_every`.
    pub poll_interval: Duration,
    pub backoff: BackoffPolicy,
    /// No frame and no ping for this long: the socket is dead.
    pub stall_timeout: Duration,
    /// Minimum wait after a handshake 429.
    pub cool_off_429: Duration,
    /// Minimum wait after a 805 disconnect.
    pub back_off_805: Duration,
    /// A connection that delivered data for this long resets the backoff.
    pub healthy_after: Duration,
    pub max_instruments: usize,
    /// How often health, gauges and price ages are refreshed.
    pub health_every: Duration,
    /// TLS settings for `wss://`; `None` trusts the Mozilla roots (webpki-roots) with rustls'
    /// ring provider.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Asleep in `read()` (the default) or spinning on a non-blocking socket
    /// (`[host] busy_poll`).
    pub waiting: Waiting,
}

impl ReaderConfig {
    /// Spec §1.7 / §7 defaults: 2 s → 60 s backoff, 45 s stall, 60 s cool-offs.
    pub fn new(url: impl Into<String>, client_id: impl Into<String>) -> ReaderConfig {
        ReaderConfig {
            url: url.into(),
            client_id: Secret::new(client_id),
            mode: FeedMode::Quote,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            backoff: BackoffPolicy::default(),
            stall_timeout: Duration::from_secs(45),
            cool_off_429: Duration::from_secs(60),
            back_off_805: Duration::from_secs(60),
            healthy_after: Duration::from_secs(10),
            max_instruments: MAX_INSTRUMENTS_PER_CONNECTION,
            health_every: Duration::from_secs(1),
            tls: None,
            waiting: Waiting::Sleep,
        }
    }
}

impl ReaderConfig {
    /// Every problem with these settings, for the config checker to report at once.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            errors.push(format!("feed url {:?} must start with ws:// or wss://", self.url));
        }
        if self.client_id.expose().trim().is_empty() {
            errors.push("feed client id is empty".to_string());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
            ("poll_interval", self.poll_interval),
            ("health_every", self.health_every),
        ] {
            if d.is_zero() {
                errors.push(format!("feed {name} must be positive"));
            }
        }
        if self.stall_timeout <= self.poll_interval {
            errors.push(format!(
                "feed stall_timeout {:?} must exceed poll_interval {:?}",
                self.stall_timeout, self.poll_interval
            ));
        }
        if self.max_instruments == 0 || self.max_instruments > MAX_INSTRUMENTS_PER_CONNECTION {
            errors.push(format!(
                "feed max_instruments {} must be within 1..={MAX_INSTRUMENTS_PER_CONNECTION}",
                self.max_instruments
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_reports_every_problem() {
        assert!(ReaderConfig::new("ws://127.0.0.1:1", "1").validate().is_empty());
        let mut c = ReaderConfig::new("http://x", " ");
        c.poll_interval = Duration::ZERO;
        c.stall_timeout = Duration::ZERO;
        c.max_instruments = 5001;
        let errors = c.validate();
        assert_eq!(errors.len(), 5, "{errors:?}");
    }
}
