//! Alerts that reach a person: the engine's warning and critical alerts, delivered to the
//! `[[alerts.targets]]` of the config (a generic JSON webhook, a Telegram bot, a Slack incoming
//! webhook) besides the log, `alerts_total` and the event stream.
//!
//! Nothing here is on the trading path: the engine hands alerts over through [`AlertSink`], an
//! event sink that only `try_send`s into a bounded queue (a full queue drops the alert and
//! counts it). The `alert_notifier` worker (`worker.rs`) owns everything else: deduplication
//! (one alert per code within `alerts.dedupe_window_secs`, the next one after it carrying the
//! count held back), a token bucket per target, delivery with a timeout, retries with
//! exponential backoff and jitter on connection errors, timeouts, 408, 429 and 5xx (never
//! sooner than a `Retry-After`), and giving up after `max_attempts` with a log line and
//! `alert_notifications_total{outcome="failed"}`. The decisions are pure (`policy.rs`), so are
//! the payloads (`payload.rs`). When the engine stops, what is still queued or waiting for a
//! retry gets one last attempt within `runtime.stop_deadline_ms` (the notifier is stopped after
//! the trading workers, so the alert of an escalation still goes out).
//!
//! A target's URL or bot token is a secret (`SCALPER_ALERT_<NAME>_URL`,
//! `SCALPER_ALERT_<NAME>_BOT_TOKEN`, from the environment or the secrets file): logs and errors
//! show the URL's scheme and host only.
//!
//! Wiring: [`Notifier::from_config`] while the engine is built (`None` without targets); its
//! [`Notifier::sink`] joins the engine's event sinks and [`Notifier::worker_spec`] its workers.

pub mod payload;
pub mod policy;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::config::{AlertTargetConfig, AlertTargetKind, AlertsConfig, Config, Secret, Secrets};
use crate::engine::seams::{EngineEvent, EventSink};
use crate::exec::{Alert, AlertLevel, CoreEvent};
use crate::ops::metrics::Metrics;
use crate::runtime::WorkerSpec;

use self::worker::{AlertNotifier, NotifierShared};

/// The worker's name.
pub const WORKER: &str = "alert_notifier";

/// Every outcome label of `alert_notifications_total`.
pub const OUTCOMES: [&str; 5] = ["delivered", "failed", "rate_limited", "deduplicated", "dropped"];

/// Metric handles, created once per engine; every series is present at 0 from startup.
#[derive(Clone)]
pub struct NotifyMetrics {
    /// `target`, `outcome`.
    pub notifications: prometheus::IntCounterVec,
    /// `target`.
    pub retries: prometheus::IntCounterVec,
    /// Alerts the engine could not hand over (the queue was full).
    pub queue_dropped: prometheus::IntCounter,
}

impl NotifyMetrics {
    pub fn new(m: &Metrics, targets: &[AlertTargetConfig]) -> NotifyMetrics {
        let notifications = m.counter_vec(
            "alert_notifications_total",
            "Alert notifications by target and outcome (delivered, failed: given up, rate_limited, deduplicated, dropped: not attempted)",
            &["target", "outcome"],
        );
        let retries = m.counter_vec(
            "alert_notification_retries_total",
            "Alert deliveries retried after a connection error, timeout, 408, 429 or 5xx",
            &["target"],
        );
        for t in targets {
            for outcome in OUTCOMES {
                notifications.with_label_values(&[t.name.as_str(), outcome]);
            }
            retries.with_label_values(&[t.name.as_str()]);
        }
        NotifyMetrics {
            notifications,
            retries,
            queue_dropped: m.counter(
                "alert_queue_dropped_total",
                "Alerts not handed to the notifier because its queue was full",
            ),
        }
    }
}

/// Hands alerts to the notifier without ever waiting.
pub struct AlertSink {
    tx: Sender<Alert>,
    dropped: prometheus::IntCounter,
}

impl AlertSink {
    /// Queues `alert` for delivery (`info` alerts are not delivered); never blocks.
    pub fn raise(&self, alert: &Alert) {
        if alert.level == AlertLevel::Info {
            return;
        }
        match self.tx.try_send(alert.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

impl EventSink for AlertSink {
    fn record(&self, event: &EngineEvent) {
        if let EngineEvent::Core(CoreEvent::Alert(a)) = event {
            self.raise(a);
        }
    }
}

/// A delivery target, resolved: its config and where its requests go.
pub struct Target {
    pub config: AlertTargetConfig,
    /// The full URL requests are POSTed to (a secret: it carries the token).
    pub endpoint: Secret,
    /// The URL as logs and errors show it.
    pub shown: String,
    /// Texts never to show: the URL, its path (which may carry the token), the raw secret.
    redactions: Vec<Secret>,
}

impl Target {
    /// `secret` is the target's URL (webhook, Slack) or bot token (Telegram).
    pub fn new(config: AlertTargetConfig, secret: &Secret) -> Target {
        let endpoint = match config.kind {
            AlertTargetKind::Telegram => {
                Secret::new(payload::telegram_url(&config.api_url, secret.expose().trim()))
            }
            AlertTargetKind::Webhook | AlertTargetKind::Slack => {
                Secret::new(secret.expose().trim())
            }
        };
        let shown = payload::mask_url(endpoint.expose());
        let path = url::Url::parse(endpoint.expose()).map(|u| u.path().to_string());
        let redactions = [Ok(endpoint.expose().to_string()), path, Ok(secret.expose().to_string())]
            .into_iter()
            .flatten()
            .map(|t| t.trim().to_string())
            .filter(|t| t.len() > 1)
            .map(Secret::new)
            .collect();
        Target { config, endpoint, shown, redactions }
    }

    /// `text` with the target's URL, its path and its secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        // Longest first, so that the whole URL goes before its path.
        let mut out = text.to_string();
        let mut r: Vec<&Secret> = self.redactions.iter().collect();
        r.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        for s in r {
            out = payload::redact(&out, s.expose());
        }
        out
    }

    /// `name (kind, scheme://host/***)`.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.config.name, self.config.kind, self.shown)
    }
}

/// The notifier being wired; see the module doc.
pub struct Notifier {
    shared: Arc<NotifierShared>,
    sink: Arc<AlertSink>,
}

impl Notifier {
    /// `None` when `[alerts]` has no target.
    pub fn from_config(
        config: &Config,
        secrets: &Secrets,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Notifier>> {
        let a = &config.alerts;
        if a.targets.is_empty() {
            return Ok(None);
        }
        let mut targets = Vec::new();
        for t in &a.targets {
            let secret = secrets.alert_targets.get(&t.name).ok_or_else(|| {
                anyhow::anyhow!("alert target {}: {} is not set", t.name, t.secret_key())
            })?;
            targets.push(Target::new(t.clone(), secret));
        }
        let origin = payload::origin(&config.mode.to_string(), &crate::publish::instance_name());
        Ok(Some(Notifier::new(a, targets, origin, config.runtime.stop_deadline, metrics)))
    }

    /// With resolved targets (tests build them by hand); `stop_deadline` is how long the
    /// worker may take to stop (`runtime.stop_deadline_ms`).
    pub fn new(
        a: &AlertsConfig,
        targets: Vec<Target>,
        origin: String,
        stop_deadline: Duration,
        m: &Metrics,
    ) -> Notifier {
        let configs: Vec<AlertTargetConfig> = targets.iter().map(|t| t.config.clone()).collect();
        let metrics = NotifyMetrics::new(m, &configs);
        let (tx, rx) = crossbeam_channel::bounded(a.queue.max(1));
        let sink = Arc::new(AlertSink { tx, dropped: metrics.queue_dropped.clone() });
        let shared = Arc::new(NotifierShared::new(
            rx,
            targets,
            a.dedupe_window,
            origin,
            metrics,
            stop_deadline,
        ));
        Notifier { shared, sink }
    }

    pub fn sink(&self) -> Arc<AlertSink> {
        self.sink.clone()
    }

    /// The shared state a notifier worker runs on (to run one by hand).
    pub fn shared(&self) -> Arc<NotifierShared> {
        self.shared.clone()
    }

    /// One line per target for the startup banner.
    pub fn describe(&self) -> String {
        let t: Vec<String> = self.shared.targets.iter().map(Target::describe).collect();
        format!("alerts to {}", t.join(", "))
    }

    /// The worker. Its heartbeat limit covers the longest delivery (each is bounded by its
    /// target's timeout).
    pub fn worker_spec(&self, config: &Config) -> WorkerSpec {
        let shared = self.shared.clone();
        let longest = shared.targets.iter().map(|t| t.config.timeout).max().unwrap_or_default();
        let floor = longest * 2 + Duration::from_secs(1);
        let limit = config.runtime.heartbeat_limit_for(WORKER).max(floor);
        WorkerSpec::new(WORKER, limit, move || {
            Box::new(AlertNotifier::new(shared.clone())) as Box<dyn crate::runtime::Worker>
        })
        .pinned_to(config.host.pin.get(WORKER).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    #[test]
    fn lines_of_the_http_library_that_may_print_a_whole_url_are_capped_at_info() {
        use log::LevelFilter::{Debug, Info, Trace};
        for (target, cap) in
            [("ureq", Info), ("ureq::run", Info), ("ureq_proto::client", Debug), ("alerts", Trace)]
        {
            assert_eq!(crate::broker::log_level_cap(target), cap, "{target}");
        }
    }

    #[test]
    fn the_sink_skips_info_and_drops_what_does_not_fit_without_waiting() {
        let a = AlertsConfig { dedupe_window: Duration::ZERO, queue: 2, targets: Vec::new() };
        let m = Metrics::new();
        let n = Notifier::new(&a, Vec::new(), "test".into(), Duration::from_secs(1), &m);
        let alert =
            |level| Alert { level, code: "c".into(), message: "m".into(), at: Timestamp(0) };
        let sink = n.sink();
        for _ in 0..5 {
            sink.record(&EngineEvent::Core(CoreEvent::Alert(alert(AlertLevel::Info))));
        }
        assert_eq!(n.shared().alerts.len(), 0, "info alerts are not queued");
        for level in [AlertLevel::Warning, AlertLevel::Critical, AlertLevel::Critical] {
            sink.record(&EngineEvent::Core(CoreEvent::Alert(alert(level))));
        }
        assert_eq!(n.shared().alerts.len(), 2);
        assert_eq!(n.shared().metrics.queue_dropped.get(), 1);
    }
}
