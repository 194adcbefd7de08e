//! The `alert_notifier` worker: takes alerts from the engine's queue, deduplicates them,
//! applies each target's rate limit, and delivers them one request at a time, each bounded by
//! its target's timeout; failed deliveries wait for their retry in a bounded list while new
//! alerts keep arriving. Its decisions are `policy.rs`'s; the bodies `payload.rs`'s.
//!
//! A respawned worker starts with empty deduplication, buckets and retries (alerts still in the
//! queue are kept: the queue outlives the worker).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::payload::{self, Notice};

use super::policy::{self, Admit, Attempt, Dedupe, Next, TokenBucket};
use super::{NotifyMetrics, Target};
use crate::exec::Alert;
use crate::runtime::backoff::BackoffPolicy;
use crate::runtime::{Worker, WorkerCtx};

/// Deliveries waiting for a retry (or their turn) at most; beyond, the oldest is dropped.
pub const MAX_PENDING: usize = 256;

/// What outlives one notifier value.
pub struct NotifierShared {
    pub alerts: Receiver<Alert>,
    pub targets: Vec<Target>,
    pub dedupe_window: Duration,
    /// Who sends (`scalper live on host:pid`).
    pub origin: String,
    pub metrics: NotifyMetrics,
    /// How long the worker may take to return once told to stop (`runtime.stop_deadline_ms`):
    /// the last attempts made on the way out fit in it.
    pub stop_deadline: Duration,
    agents: Vec<ureq::Agent>,
}

impl NotifierShared {
    pub fn new(
        alerts: Receiver<Alert>,
        targets: Vec<Target>,
        dedupe_window: Duration,
        origin: String,
        metrics: NotifyMetrics,
        stop_deadline: Duration,
    ) -> NotifierShared {
        let agents = targets
            .iter()
            .map(|t| {
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(t.config.timeout))
                    // A redirect would repeat the POST somewhere the operator did not name.
                    .max_redirects(0)
                    .user_agent(concat!("scalper/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .into()
            })
            .collect();
        NotifierShared { alerts, targets, dedupe_window, origin, metrics, stop_deadline, agents }
    }
}

/// One alert on its way to one target.
struct Delivery {
    target: usize,
    notice: Notice,
    /// Attempts made so far.
    attempts: u32,
    due: Instant,
}

pub struct AlertNotifier {
    shared: Arc<NotifierShared>,
    dedupe: Dedupe,
    buckets: Vec<TokenBucket>,
    /// Per target: alerts its rate limit dropped since the last one it was sent.
    rate_limited: Vec<u32>,
    backoff: Vec<BackoffPolicy>,
    pending: VecDeque<Delivery>,
    /// When the last request started (the stop may have been asked for during it).
    last_request: Option<Instant>,
}

impl AlertNotifier {
    pub fn new(shared: Arc<NotifierShared>) -> AlertNotifier {
        let now = Instant::now();
        let buckets = shared
            .targets
            .iter()
            .map(|t| TokenBucket::new(t.config.rate_per_minute, t.config.burst, now))
            .collect();
        let backoff = shared
            .targets
            .iter()
            .map(|t| {
                BackoffPolicy::new(t.config.backoff_base, t.config.backoff_cap, 0.2)
                    .unwrap_or_default()
            })
            .collect();
        AlertNotifier {
            dedupe: Dedupe::new(shared.dedupe_window),
            buckets,
            rate_limited: vec![0; shared.targets.len()],
            backoff,
            pending: VecDeque::new(),
            last_request: None,
            shared,
        }
    }

    fn count(&self, target: usize, outcome: &str) {
        let name = self.shared.targets[target].config.name.as_str();
        self.shared.metrics.notifications.with_label_values(&[name, outcome]).inc();
    }

    /// An alert from the engine: deduplicated, then queued for each target that wants it and
    /// whose rate limit allows it.
    fn accept(&mut self, alert: Alert) {
        let Some(severity) = policy::severity(alert.level) else { return };
        let now = Instant::now();
        let wanted: Vec<usize> = (0..self.shared.targets.len())
            .filter(|&i| policy::wants(self.shared.targets[i].config.min_severity, severity))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let repeats = match self.dedupe.admit(&alert.code, now) {
            Admit::Hold => {
                for &i in &wanted {
                    self.count(i, "deduplicated");
                }
                return;
            }
            Admit::Send { repeats } => repeats,
        };
        for i in wanted {
            if !self.buckets[i].try_take(now) {
                self.rate_limited[i] = self.rate_limited[i].saturating_add(1);
                self.count(i, "rate_limited");
                log::warn!(target: "alerts", "alert {} not sent to {}: rate limit", alert.code, self.shared.targets[i].describe());
                continue;
            }
            let notice = Notice {
                severity,
                code: alert.code.clone(),
                message: alert.message.clone(),
                at: alert.at,
                repeats,
                rate_limited: std::mem::take(&mut self.rate_limited[i]),
            };
            if self.pending.len() >= MAX_PENDING
                && let Some(old) = self.pending.pop_front()
            {
                self.count(old.target, "dropped");
                log::error!(target: "alerts", "alert {} to {} dropped: {MAX_PENDING} deliveries already waiting", old.notice.code, self.shared.targets[old.target].describe());
            }
            self.pending.push_back(Delivery { target: i, notice, attempts: 0, due: now });
        }
    }

    /// One POST; what came of it.
    fn attempt(&mut self, d: &Delivery) -> Attempt {
        self.last_request = Some(Instant::now());
        let t = &self.shared.targets[d.target];
        let body = payload::body(t.config.kind, &d.notice, &self.shared.origin, &t.config.chat_id);
        let sent = self.shared.agents[d.target]
            .post(t.endpoint.expose())
            .header("Content-Type", "application/json")
            .send(body.to_string());
        match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(policy::parse_retry_after);
                // Read the answer so that the connection can be reused; its content is not needed.
                let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
                policy::classify_status(status, retry_after)
            }
            Err(e) => Attempt::Transient { why: describe_error(&e, t), retry_after: None },
        }
    }

    /// Delivers the first delivery that is due, if any. Returns whether one was attempted.
    fn deliver_one(&mut self) -> bool {
        let now = Instant::now();
        let Some(pos) = self.pending.iter().position(|d| d.due <= now) else { return false };
        let Some(mut d) = self.pending.remove(pos) else { return false };
        let outcome = self.attempt(&d);
        d.attempts += 1;
        let t = &self.shared.targets[d.target];
        let next = policy::next_step(
            &outcome,
            d.attempts,
            t.config.max_attempts,
            &self.backoff[d.target],
            fastrand::f64(),
        );
        match next {
            Next::Done => {
                self.count(d.target, "delivered");
                log::info!(target: "alerts", "alert {} delivered to {} (attempt {})", d.notice.code, t.describe(), d.attempts);
            }
            Next::RetryIn(wait) => {
                let why = match &outcome {
                    Attempt::Transient { why, .. } | Attempt::Permanent { why } => why.as_str(),
                    Attempt::Delivered => "",
                };
                self.shared.metrics.retries.with_label_values(&[t.config.name.as_str()]).inc();
                log::warn!(target: "alerts", "alert {} to {}: attempt {} failed ({why}); retrying in {wait:?}", d.notice.code, t.describe(), d.attempts);
                d.due = Instant::now() + wait;
                self.pending.push_back(d);
            }
            Next::GiveUp { why } => {
                self.count(d.target, "failed");
                log::error!(target: "alerts", "alert {} NOT delivered to {}: {why}; given up after {} attempts", d.notice.code, t.describe(), d.attempts);
            }
        }
        true
    }

    /// How long until the next delivery is due (`None`: nothing waits).
    fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        self.pending.iter().map(|d| d.due.saturating_duration_since(now)).min()
    }
}

impl AlertNotifier {
    /// On the way out (the engine stops, maybe after an escalation whose alert is queued): one
    /// last attempt for everything queued or waiting for a retry, due or not, as long as it
    /// fits in the stop deadline; what does not fit is dropped.
    fn last_attempts(&mut self, ctx: &WorkerCtx) {
        // The stop may have been asked for while a request was under way: count from its start.
        let longest = self.shared.targets.iter().map(|t| t.config.timeout).max();
        let started = match (self.last_request, longest) {
            (Some(at), Some(longest)) if at.elapsed() < longest => at,
            _ => Instant::now(),
        };
        while let Ok(a) = self.shared.alerts.try_recv() {
            self.accept(a);
        }
        let mut dropped = 0;
        let shared = self.shared.clone();
        while let Some(d) = self.pending.pop_front() {
            ctx.beat();
            let t = &shared.targets[d.target];
            if started.elapsed() + t.config.timeout >= self.shared.stop_deadline {
                self.count(d.target, "dropped");
                dropped += 1;
                continue;
            }
            match self.attempt(&d) {
                Attempt::Delivered => {
                    self.count(d.target, "delivered");
                    log::info!(target: "alerts", "alert {} delivered to {} on shutdown", d.notice.code, t.describe());
                }
                Attempt::Transient { why, .. } | Attempt::Permanent { why } => {
                    self.count(d.target, "failed");
                    log::error!(target: "alerts", "alert {} NOT delivered to {}: {why}; the notifier is stopping", d.notice.code, t.describe());
                }
            }
        }
        if dropped > 0 {
            log::warn!(target: "alerts", "{dropped} alert deliveries not made: the notifier stopped");
        }
    }
}

/// A transport error as it may be logged: never the URL (it may carry a token).
fn describe_error(e: &ureq::Error, t: &Target) -> String {
    let text = match e {
        ureq::Error::Timeout(_) => format!("no answer within {:?}", t.config.timeout),
        ureq::Error::Io(io) => format!("connection error ({})", io.kind()),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS error".to_string(),
        ureq::Error::Protocol(p) => format!("HTTP protocol error ({p})"),
        other => format!("request failed ({other})"),
    };
    t.redact(&text)
}

impl Worker for AlertNotifier {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let alerts = self.shared.alerts.clone();
        while !ctx.should_stop() {
            ctx.beat();
            // Everything already queued first, then whatever is due, one request at a time.
            while let Ok(a) = alerts.try_recv() {
                self.accept(a);
            }
            if self.deliver_one() {
                continue;
            }
            let wait = self.next_due().unwrap_or(ctx.beat_every()).min(ctx.beat_every());
            select! {
                recv(alerts) -> a => {
                    if let Ok(a) = a {
                        self.accept(a);
                    }
                }
                recv(ctx.stopped()) -> _ => {}
                default(wait) => {}
            }
        }
        self.last_attempts(ctx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secret};

    #[test]
    fn transport_errors_never_show_the_url_its_path_or_the_token() {
        let c = Config::from_toml_str(
            "[[alerts.targets]]\nname = \"tg\"\nkind = \"telegram\"\nchat_id = \"1\"\n\
             [[alerts.targets]]\nname = \"team\"\nkind = \"slack\"\n",
        )
        .unwrap();
        let tg = Target::new(c.alerts.targets[0].clone(), &Secret::new("123:tok-en"));
        let slack = Target::new(
            c.alerts.targets[1].clone(),
            &Secret::new("https://hooks.slack.com/services/T0/B0/s3cr3t"),
        );
        let cases = [
            (&tg, ureq::Error::BadUri("https://api.telegram.org/bot123:tok-en/sendMessage".into())),
            (&tg, ureq::Error::BadUri("/bot123:tok-en/sendMessage".into())),
            (&tg, ureq::Error::BadUri("tok 123:tok-en".into())),
            (&slack, ureq::Error::BadUri("https://hooks.slack.com/services/T0/B0/s3cr3t".into())),
            (&slack, ureq::Error::BadUri("/services/T0/B0/s3cr3t?x".into())),
        ];
        for (t, e) in cases {
            let text = describe_error(&e, t);
            assert!(!text.contains("tok-en") && !text.contains("s3cr3t"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert_eq!(tg.shown, "https://api.telegram.org/***");
        assert_eq!(slack.describe(), "team (slack, https://hooks.slack.com/***)");
    }
}
