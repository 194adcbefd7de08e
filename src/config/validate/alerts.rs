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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use crate::config::{
        AlertSeverity, AlertTargetKind, Config, Secrets, SecretsError, read_secrets_file,
    };

    fn errors_of(text: &str) -> Vec<String> {
        match Config::from_toml_str(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn targets_are_read_with_their_defaults() {
        let c = Config::from_toml_str(
            "[alerts]\ndedupe_window_secs = 60\n\
             [[alerts.targets]]\nname = \"oncall\"\nkind = \"webhook\"\n\
             [[alerts.targets]]\nname = \"phone\"\nkind = \"telegram\"\nchat_id = \"-100123\"\nmin_severity = \"critical\"\n\
             [[alerts.targets]]\nname = \"team_2\"\nkind = \"slack\"\nrate_per_minute = 6\nburst = 1\n",
        )
        .unwrap();
        let a = &c.alerts;
        assert_eq!(a.dedupe_window, Duration::from_secs(60));
        assert_eq!(a.queue, 1_024);
        let kinds: Vec<_> = a.targets.iter().map(|t| (t.name.as_str(), t.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("oncall", AlertTargetKind::Webhook),
                ("phone", AlertTargetKind::Telegram),
                ("team_2", AlertTargetKind::Slack)
            ]
        );
        let phone = &a.targets[1];
        assert_eq!(phone.min_severity, AlertSeverity::Critical);
        assert_eq!(a.targets[0].min_severity, AlertSeverity::Warning);
        assert_eq!(phone.api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(phone.secret_key(), "SCALPER_ALERT_PHONE_BOT_TOKEN");
        assert_eq!(a.targets[2].secret_key(), "SCALPER_ALERT_TEAM_2_URL");
        assert_eq!((a.targets[2].rate_per_minute, a.targets[2].burst), (6, 1));
        assert_eq!(a.targets[0].timeout, Duration::from_millis(1_500));
        assert!(Config::from_toml_str("").unwrap().alerts.targets.is_empty());
    }

    #[test]
    fn every_mistake_in_alerts_is_listed_at_once() {
        let got = errors_of(
            "[alerts]\nqueue = 0\n\
             [[alerts.targets]]\nname = \"Pager Duty\"\nkind = \"webhook\"\nchat_id = \"1\"\n\
             [[alerts.targets]]\nname = \"tg\"\nkind = \"telegram\"\ntimeout_ms = 2000\nburst = 0\n\
             [[alerts.targets]]\nname = \"tg\"\nkind = \"slack\"\nbackoff_base_ms = 500\nbackoff_cap_ms = 100\napi_url = \"ftp://x\"\n\
             [[alerts.targets]]\nmax_attempts = 0\n",
        );
        let want = [
            "alerts.queue: 0 is out of range: must be between 1 and 65536",
            "alerts.targets[0].name: \"Pager Duty\": use at most 32 of a-z, 0-9 and _",
            "alerts.targets[0].chat_id: only for kind = \"telegram\", not \"webhook\"",
            "alerts.targets[1].chat_id: required for kind = \"telegram\"",
            "alerts.targets[1].timeout_ms: 2000 must be below runtime.stop_deadline_ms 2000 (a hanging receiver must not keep the notifier from stopping)",
            "alerts.targets[1].burst: 0 is out of range: must be between 1 and 1000",
            "alerts.targets[2].name: \"tg\" is used by an earlier target",
            "alerts.targets[2].api_url: scheme ftp:// is not allowed here (use http:// or https://)",
            "alerts.targets[2].backoff_cap_ms: 100 is below backoff_base_ms 500",
            "alerts.targets[3].name: must not be empty",
            "alerts.targets[3].kind: required: \"webhook\", \"telegram\" or \"slack\"",
            "alerts.targets[3].max_attempts: 0 is out of range: must be between 1 and 100",
        ];
        assert_eq!(got, want);
        let bad_enum = errors_of("[[alerts.targets]]\nname = \"a\"\nkind = \"sms\"\n");
        assert_eq!(bad_enum.len(), 1, "{bad_enum:?}");
        assert!(bad_enum[0].contains("unknown variant `sms`"), "{bad_enum:?}");
    }

    #[test]
    fn a_reload_that_changes_alerts_needs_a_restart() {
        let running = Config::from_toml_str("").unwrap();
        let new = Config::from_toml_str("[[alerts.targets]]\nname = \"a\"\nkind = \"slack\"\n");
        match crate::config::plan_reload(&running, new) {
            Err(crate::config::ReloadError::NeedsRestart { keys }) => assert_eq!(keys, ["alerts"]),
            other => panic!("{other:?}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn target_secrets_come_from_the_environment_or_the_secrets_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        std::fs::write(
            &path,
            "SCALPER_ALERT_PHONE_BOT_TOKEN=123:hunter2\nSCALPER_ALERT_TEAM_URL=https://hooks.slack.com/services/T/B/hunter3\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secrets_file(&path).unwrap().len(), 2);
        let text = format!(
            "[secrets]\nfile = {:?}\n\
             [[alerts.targets]]\nname = \"phone\"\nkind = \"telegram\"\nchat_id = \"42\"\n\
             [[alerts.targets]]\nname = \"team\"\nkind = \"slack\"\n\
             [[alerts.targets]]\nname = \"hook\"\nkind = \"webhook\"\n",
            path.display().to_string()
        );
        let c = Config::from_toml_str(&text).unwrap();
        let err = Secrets::resolve(&c, env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[alerts] targets need SCALPER_ALERT_HOOK_URL: set them in the environment or in the secrets file"
        );
        let s = Secrets::resolve(&c, env(&[("SCALPER_ALERT_HOOK_URL", "http://127.0.0.1:9/h")]))
            .unwrap();
        assert_eq!(s.alert_targets["phone"].expose(), "123:hunter2");
        assert_eq!(s.alert_targets["hook"].expose(), "http://127.0.0.1:9/h");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter"), "{shown}");

        let bad = Secrets::resolve(&c, env(&[("SCALPER_ALERT_HOOK_URL", "hunter4-not-a-url")]))
            .unwrap_err();
        assert!(matches!(bad, SecretsError::BadAlertUrl { .. }), "{bad}");
        assert!(!bad.to_string().contains("hunter4"), "{bad}");
        assert_eq!(
            bad.to_string(),
            "SCALPER_ALERT_HOOK_URL is not an http:// or https:// URL with a host (value not shown)"
        );

        // Lower case or a bare prefix is not an alert key.
        for line in ["SCALPER_ALERT_=x\n", "scalper_alert_a_url=x\n"] {
            std::fs::write(&path, line).unwrap();
            assert!(read_secrets_file(&path).is_err(), "{line}");
        }
    }
}
