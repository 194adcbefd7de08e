//! What each kind of target receives, pure: the text a person reads, the generic webhook's
//! JSON object, Telegram's `sendMessage` body, Slack's incoming-webhook body; and URLs as they
//! may be shown (a webhook URL or a bot API path carries a token: never shown whole).

use serde_json::{Value, json};
use url::Url;

use crate::config::{AlertSeverity, AlertTargetKind};
use crate::domain::Timestamp;

/// One alert as a target receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub severity: AlertSeverity,
    /// The engine's alert code (`kill_switch`, `exit_blocked`, ...).
    pub code: String,
    pub message: String,
    /// When the engine raised it.
    pub at: Timestamp,
    /// Alerts of the same code held back by deduplication since the last one sent.
    pub repeats: u32,
    /// Alerts this target's rate limit dropped since the last one it was sent.
    pub rate_limited: u32,
}

/// Who sent it: `scalper <mode> on <host:pid>`.
pub fn origin(mode: &str, instance: &str) -> String {
    format!("scalper {mode} on {instance}")
}

/// The one text of an alert: `[CRITICAL] kill_switch: <message>`, then when and where, then
/// what was held back.
pub fn text(n: &Notice, origin: &str) -> String {
    let mut out = format!(
        "[{}] {}: {}\n{} ({origin})",
        n.severity.to_string().to_uppercase(),
        n.code,
        n.message,
        n.at.to_ist_iso()
    );
    if n.repeats > 0 {
        out.push_str(&format!(
            "\n{} more {} alert{} since the last one sent (deduplicated)",
            n.repeats,
            n.code,
            plural(n.repeats)
        ));
    }
    if n.rate_limited > 0 {
        out.push_str(&format!(
            "\n{} earlier alert{} not sent here (rate limit)",
            n.rate_limited,
            plural(n.rate_limited)
        ));
    }
    out
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The generic webhook's JSON object.
pub fn webhook_body(n: &Notice, origin: &str) -> Value {
    json!({
        "source": "scalper",
        "origin": origin,
        "severity": n.severity.to_string(),
        "code": n.code,
        "message": n.message,
        "at": n.at.to_ist_iso(),
        "repeats": n.repeats,
        "rate_limited": n.rate_limited,
        "text": text(n, origin),
    })
}

/// The body a target of `kind` receives (`chat_id` for Telegram).
pub fn body(kind: AlertTargetKind, n: &Notice, origin: &str, chat_id: &str) -> Value {
    match kind {
        AlertTargetKind::Webhook => webhook_body(n, origin),
        AlertTargetKind::Telegram => json!({
            "chat_id": chat_id,
            "text": text(n, origin),
            "disable_web_page_preview": true,
        }),
        AlertTargetKind::Slack => json!({ "text": text(n, origin) }),
    }
}

/// The Telegram bot API's `sendMessage` URL under `api` for `token`.
pub fn telegram_url(api: &Url, token: &str) -> String {
    format!("{}/bot{token}/sendMessage", api.as_str().trim_end_matches('/'))
}

/// A URL as it may be shown: scheme, host and port; the path (which may carry a token), the
/// query and any userinfo are replaced by `***`.
pub fn mask_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}/***", u.scheme())
        }
        Err(_) => "***".to_string(),
    }
}

/// `text` with every occurrence of `secret` replaced by `***` (for errors from libraries that
/// might quote a URL).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_string() } else { text.replace(secret, "***") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(repeats: u32, rate_limited: u32) -> Notice {
        Notice {
            severity: AlertSeverity::Critical,
            code: "kill_switch".into(),
            message: "kill switch: 2 positions exiting, trading halted".into(),
            at: Timestamp::parse("2026-03-02T10:15:00+05:30").unwrap(),
            repeats,
            rate_limited,
        }
    }

    const ORIGIN: &str = "scalper live on host:1";

    #[test]
    fn texts_name_severity_code_time_origin_and_what_was_held_back() {
        let head = "[CRITICAL] kill_switch: kill switch: 2 positions exiting, trading halted\n2026-03-02T10:15:00.000+05:30 (scalper live on host:1)";
        let cases = [
            (0, 0, head.to_string()),
            (
                1,
                0,
                format!("{head}\n1 more kill_switch alert since the last one sent (deduplicated)"),
            ),
            (
                3,
                2,
                format!(
                    "{head}\n3 more kill_switch alerts since the last one sent (deduplicated)\n2 earlier alerts not sent here (rate limit)"
                ),
            ),
        ];
        for (repeats, limited, want) in cases {
            assert_eq!(text(&notice(repeats, limited), ORIGIN), want);
        }
    }

    #[test]
    fn each_kind_gets_its_shape() {
        let n = notice(2, 0);
        let t = text(&n, ORIGIN);
        let generic = body(AlertTargetKind::Webhook, &n, ORIGIN, "");
        assert_eq!(generic["severity"], "critical");
        assert_eq!(generic["code"], "kill_switch");
        assert_eq!(generic["message"], n.message);
        assert_eq!(generic["at"], "2026-03-02T10:15:00.000+05:30");
        assert_eq!(generic["repeats"], 2);
        assert_eq!(generic["origin"], ORIGIN);
        assert_eq!(generic["text"], t);
        assert_eq!(
            body(AlertTargetKind::Telegram, &n, ORIGIN, "-100123"),
            json!({ "chat_id": "-100123", "text": t, "disable_web_page_preview": true })
        );
        assert_eq!(body(AlertTargetKind::Slack, &n, ORIGIN, ""), json!({ "text": t }));
    }

    #[test]
    fn urls_are_shown_without_their_tokens() {
        let api = Url::parse("https://api.telegram.org/").unwrap();
        assert_eq!(
            telegram_url(&api, "123:ABC"),
            "https://api.telegram.org/bot123:ABC/sendMessage"
        );
        let cases = [
            ("https://hooks.slack.com/services/T0/B0/XyZsecret", "https://hooks.slack.com/***"),
            ("https://api.telegram.org/bot123:ABC/sendMessage", "https://api.telegram.org/***"),
            ("http://user:pw@127.0.0.1:8081/hook?key=k", "http://127.0.0.1:8081/***"),
            ("not a url XyZsecret", "***"),
        ];
        for (url, shown) in cases {
            assert_eq!(mask_url(url), shown);
        }
        assert_eq!(redact("GET https://h/XyZ failed", "https://h/XyZ"), "GET *** failed");
        assert_eq!(redact("plain", ""), "plain");
    }
}
