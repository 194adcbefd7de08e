//! Validation of `[alerts]`: the delivery of alerts to people (webhook, Telegram, Slack).

use std::collections::HashSet;
use std::time::Duration;

use super::super::raw::RawAlerts;
use super::super::types::*;
use super::super::value::Collector;
use super::placeholder_url;

/// The longest target name (it becomes a metric label and part of a secrets key).
const MAX_NAME_LEN: usize = 32;

pub(super) fn alerts(c: &mut Collector, a: &RawAlerts, runtime: &RuntimeConfig) -> AlertsConfig {
    let dedupe_window =
        c.secs("alerts.dedupe_window_secs", a.dedupe_window_secs, 0).unwrap_or_default();
    let queue = c.int("alerts.queue", a.queue, 1, 65_536).unwrap_or(1) as usize;
    let mut names = HashSet::new();
    let mut targets = Vec::new();
    for (i, t) in a.targets.iter().enumerate() {
        let key = |field: &str| format!("alerts.targets[{i}].{field}");
        let name = t.name.trim();
        if name.is_empty() {
            c.push(key("name"), "must not be empty");
        } else if name.len() > MAX_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            c.push(key("name"), format!("{name:?}: use at most {MAX_NAME_LEN} of a-z, 0-9 and _"));
        } else if !names.insert(name.to_string()) {
            c.push(key("name"), format!("{name:?} is used by an earlier target"));
        }
        let kind = t.kind.or_else(|| {
            c.push(key("kind"), "required: \"webhook\", \"telegram\" or \"slack\"");
            None
        });
        let chat_id = t.chat_id.trim().to_string();
        match kind {
            Some(AlertTargetKind::Telegram) if chat_id.is_empty() => {
                c.push(key("chat_id"), "required for kind = \"telegram\"")
            }
            Some(k) if k != AlertTargetKind::Telegram && !chat_id.is_empty() => {
                c.push(key("chat_id"), format!("only for kind = \"telegram\", not \"{k}\""))
            }
            _ => {}
        }
        let api_url = c.url(&key("api_url"), &t.api_url, &["http", "https"]);
        let timeout = c.millis(&key("timeout_ms"), t.timeout_ms, 1);
        if let Some(d) = timeout
            && !runtime.stop_deadline.is_zero()
            && d >= runtime.stop_deadline
        {
            c.push(
                key("timeout_ms"),
                format!(
                    "{} must be below runtime.stop_deadline_ms {} (a hanging receiver must not keep the notifier from stopping)",
                    t.timeout_ms,
                    runtime.stop_deadline.as_millis()
                ),
            );
        }
        let base = c.millis(&key("backoff_base_ms"), t.backoff_base_ms, 1);
        let cap = c.millis(&key("backoff_cap_ms"), t.backoff_cap_ms, 1);
        if let (Some(b), Some(k)) = (base, cap)
            && k < b
        {
            c.push(
                key("backoff_cap_ms"),
                format!("{} is below backoff_base_ms {}", t.backoff_cap_ms, t.backoff_base_ms),
            );
        }
        let target = AlertTargetConfig {
            name: name.to_string(),
            kind: kind.unwrap_or(AlertTargetKind::Webhook),
            min_severity: t.min_severity,
            chat_id,
            api_url: api_url.unwrap_or_else(placeholder_url),
            rate_per_minute: c
                .int(&key("rate_per_minute"), t.rate_per_minute, 1, 6_000)
                .unwrap_or(1) as u32,
            burst: c.int(&key("burst"), t.burst, 1, 1_000).unwrap_or(1) as u32,
            timeout: timeout.unwrap_or(Duration::from_millis(1)),
            max_attempts: c.int(&key("max_attempts"), t.max_attempts, 1, 100).unwrap_or(1) as u32,
            backoff_base: base.unwrap_or(Duration::from_millis(1)),
            backoff_cap: cap.unwrap_or(Duration::from_millis(1)),
        };
        targets.push(target);
    }
    AlertsConfig { dedupe_window, queue, targets }
}
