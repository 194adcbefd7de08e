//! Alerts reaching a person: the notifier against a real HTTP receiver on a loopback port
//! (generic, Telegram and Slack shapes; deduplication; the rate limit; a receiver that is down,
//! answers 503 or 429, then comes back; one that accepts and never answers), and the engine's
//! own kill-switch alert reaching the receiver through the control API.

mod engine_support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine_support::*;
use parking_lot::Mutex;
use scalper::alerts::worker::AlertNotifier;
use scalper::alerts::{AlertSink, Notifier, Target};
use scalper::config::Config;
use scalper::domain::{Secret, Side};
use scalper::engine::seams::EngineEvent;
use scalper::exec::{Alert, AlertLevel, CoreEvent};
use scalper::ops::metrics::Metrics;
use scalper::runtime::{StopHandle, Worker, WorkerCtx};
use serde_json::Value;

// ---- a loopback HTTP receiver ------------------------------------------------------------

/// How the receiver answers one request.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16, Vec<(&'static str, &'static str)>),
    /// Accept, read the request, never answer (the connection is held until the receiver is
    /// dropped).
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    path: String,
    body: Value,
    at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Request>>,
    /// Answers in order; 200 once they run out.
    script: Mutex<VecDeque<Reply>>,
    held: Mutex<Vec<TcpStream>>,
    connections: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
}

struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(script: Vec<Reply>) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    fn on(listener: TcpListener, script: Vec<Reply>) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        state.script.lock().extend(script);
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Receiver { addr, state, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().clone()
    }

    fn count(&self) -> usize {
        self.state.requests.lock().len()
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state.held.lock().clear();
    }
}

/// Reads one request (headers, then Content-Length bytes), records it, answers per the script
/// with `Connection: close`.
fn serve(conn: TcpStream, s: &ReceiverState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = s.script.lock().pop_front().unwrap_or(Reply::Status(200, Vec::new()));
    s.requests.lock().push(Request { path, body, at: Instant::now() });
    let mut conn = conn;
    match reply {
        Reply::Hang => s.held.lock().push(conn),
        Reply::Status(code, headers) => {
            let mut head =
                format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n{}");
            let _ = conn.write_all(head.as_bytes());
        }
    }
}

// ---- a notifier run by hand --------------------------------------------------------------

struct Running {
    sink: Arc<AlertSink>,
    metrics: Metrics,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// `alerts` is the `[alerts]` table (targets included); `secrets` each target's URL or
    /// token, in order.
    fn start(alerts: &str, secrets: &[String]) -> Running {
        scalper::ops::logging::init();
        let config = Config::from_toml_str(alerts).unwrap_or_else(|e| panic!("{e}"));
        let targets: Vec<Target> = config
            .alerts
            .targets
            .iter()
            .zip(secrets)
            .map(|(t, s)| Target::new(t.clone(), &Secret::new(s.clone())))
            .collect();
        let metrics = Metrics::new();
        let n = Notifier::new(
            &config.alerts,
            targets,
            "scalper paper on test:1".into(),
            config.runtime.stop_deadline,
            &metrics,
        );
        let mut worker = AlertNotifier::new(n.shared());
        let (stop, ctx) = WorkerCtx::standalone("alert_notifier");
        let thread = std::thread::spawn(move || worker.run(&ctx).unwrap());
        Running { sink: n.sink(), metrics, stop, thread: Some(thread) }
    }

    fn raise(&self, level: AlertLevel, code: &str, message: &str) {
        self.sink.raise(&Alert {
            level,
            code: code.into(),
            message: message.into(),
            at: ist("10:15:00"),
        });
    }

    fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics.render(), sample).unwrap_or(-1.0)
    }

    fn outcome(&self, target: &str, outcome: &str) -> f64 {
        self.metric(&format!(
            "scalper_alert_notifications_total{{outcome=\"{outcome}\",target=\"{target}\"}}"
        ))
    }

    /// Stops the worker and waits for it.
    fn stop(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn retries(&self, target: &str) -> f64 {
        self.metric(&format!("scalper_alert_notification_retries_total{{target=\"{target}\"}}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A target with quick retries (unless `extra` sets its own backoff).
fn target(name: &str, kind: &str, extra: &str) -> String {
    let backoff = if extra.contains("backoff_") {
        ""
    } else {
        "backoff_base_ms = 20\nbackoff_cap_ms = 100\n"
    };
    format!("[[alerts.targets]]\nname = \"{name}\"\nkind = \"{kind}\"\n{backoff}{extra}\n")
}

// ---- delivery ------------------------------------------------------------------------------

#[test]
fn generic_telegram_and_slack_targets_receive_their_shapes() {
    let rx = Receiver::start(Vec::new());
    let alerts = format!(
        "[alerts]\n{}{}{}",
        target("hook", "webhook", ""),
        target(
            "phone",
            "telegram",
            &format!(
                "chat_id = \"-100123\"\nmin_severity = \"critical\"\napi_url = \"{}\"",
                rx.url("/")
            )
        ),
        target("team", "slack", ""),
    );
    let n = Running::start(
        &alerts,
        &[rx.url("/hook"), "123:bot-token".into(), rx.url("/services/T0/B0/slack-token")],
    );
    // Every series is there from the start.
    for t in ["hook", "phone", "team"] {
        for o in ["delivered", "failed", "rate_limited", "deduplicated", "dropped"] {
            assert_eq!(n.outcome(t, o), 0.0, "{t} {o}");
        }
        assert_eq!(n.retries(t), 0.0);
    }
    assert_eq!(n.metric("scalper_alert_queue_dropped_total"), 0.0);

    n.raise(
        AlertLevel::Critical,
        "kill_switch",
        "kill switch: 1 positions exiting, trading halted",
    );
    wait_until("three deliveries", || rx.count() == 3);
    let mut got = rx.requests();
    got.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/bot123:bot-token/sendMessage", "/hook", "/services/T0/B0/slack-token"]);
    let (telegram, generic, slack) = (&got[0].body, &got[1].body, &got[2].body);
    assert_eq!(generic["severity"], "critical", "{generic}");
    assert_eq!(generic["code"], "kill_switch");
    assert_eq!(generic["message"], "kill switch: 1 positions exiting, trading halted");
    assert_eq!(generic["at"], "2025-11-24T10:15:00.000+05:30");
    assert_eq!(generic["repeats"], 0);
    assert_eq!(telegram["chat_id"], "-100123", "{telegram}");
    let text = telegram["text"].as_str().unwrap();
    assert!(text.starts_with("[CRITICAL] kill_switch: kill switch: 1 positions exiting"), "{text}");
    assert_eq!(slack.as_object().unwrap().keys().collect::<Vec<_>>(), ["text"], "{slack}");
    assert_eq!(slack["text"], telegram["text"]);

    // A warning skips the critical-only Telegram target; info goes nowhere.
    n.raise(AlertLevel::Info, "info_only", "nothing to see");
    n.raise(AlertLevel::Warning, "exit_rejected", "exit rejected, retrying");
    wait_until("two more deliveries", || rx.count() == 5);
    for (t, delivered) in [("hook", 2.0), ("phone", 1.0), ("team", 2.0)] {
        wait_until("the metrics count them", || n.outcome(t, "delivered") == delivered);
    }
    let later: Vec<String> = rx.requests()[3..].iter().map(|r| r.path.clone()).collect();
    assert!(later.iter().all(|p| !p.starts_with("/bot")), "{later:?}");
    // Secrets never appear in the metrics.
    let text = n.metrics.render();
    assert!(!text.contains("bot-token") && !text.contains("slack-token"), "{text}");
}

#[test]
fn the_same_alert_within_the_window_is_sent_once_and_counted_when_it_resumes() {
    let rx = Receiver::start(Vec::new());
    let alerts = format!("[alerts]\ndedupe_window_secs = 1\n{}", target("hook", "webhook", ""));
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    for _ in 0..3 {
        n.raise(AlertLevel::Critical, "exit_blocked", "position P1 EXIT BLOCKED");
    }
    n.raise(AlertLevel::Critical, "kill_switch", "another code goes through");
    wait_until("counted", || {
        n.outcome("hook", "delivered") == 2.0 && n.outcome("hook", "deduplicated") == 2.0
    });
    assert_eq!(rx.count(), 2);
    // Once the window is over the next one goes, with the count of those held back since.
    wait_until("the window ends and the alert resumes", || {
        n.raise(AlertLevel::Critical, "exit_blocked", "position P1 EXIT BLOCKED");
        std::thread::sleep(Duration::from_millis(50));
        rx.requests().iter().filter(|r| r.body["code"] == "exit_blocked").count() == 2
    });
    let resumed = rx.requests().into_iter().filter(|r| r.body["code"] == "exit_blocked").nth(1);
    let body = resumed.unwrap().body;
    assert!(body["repeats"].as_u64().unwrap() >= 2, "{body}");
    assert!(body["text"].as_str().unwrap().contains("more exit_blocked alerts"), "{body}");
}

#[test]
fn a_target_rate_limit_sends_the_burst_and_counts_the_rest() {
    let rx = Receiver::start(Vec::new());
    let alerts = format!(
        "[alerts]\ndedupe_window_secs = 0\n{}",
        target("hook", "webhook", "burst = 2\nrate_per_minute = 1")
    );
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    for code in ["a", "b", "c", "d"] {
        n.raise(AlertLevel::Critical, code, "distinct alerts");
    }
    wait_until("counted", || {
        n.outcome("hook", "delivered") == 2.0 && n.outcome("hook", "rate_limited") == 2.0
    });
    let codes: Vec<Value> = rx.requests().into_iter().map(|r| r.body["code"].clone()).collect();
    assert_eq!(codes, ["a", "b"]);
}

// ---- retries -------------------------------------------------------------------------------

#[test]
fn a_receiver_that_is_down_then_back_gets_the_alert_once() {
    // A port nobody listens on (yet).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let alerts = format!("[alerts]\n{}", target("hook", "webhook", "max_attempts = 100"));
    let n = Running::start(&alerts, &[format!("http://{addr}/hook/secret-path")]);
    n.raise(AlertLevel::Critical, "component_down", "health component feed is down");
    wait_until("a few failed attempts", || n.retries("hook") >= 3.0);
    assert_eq!(n.outcome("hook", "delivered"), 0.0);
    let rx = Receiver::on(TcpListener::bind(addr).expect("the same port again"), Vec::new());
    wait_until("delivered", || n.outcome("hook", "delivered") == 1.0);
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.requests()[0].body["code"], "component_down");
    assert_eq!(n.outcome("hook", "failed"), 0.0);
}

#[test]
fn answers_503_and_429_are_retried_after_retry_after_and_delivered_once() {
    let rx = Receiver::start(vec![
        Reply::Status(503, Vec::new()),
        Reply::Status(429, vec![("Retry-After", "1")]),
    ]);
    let alerts = format!("[alerts]\n{}", target("hook", "webhook", ""));
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    n.raise(AlertLevel::Critical, "daily_loss_limit", "day PnL reached the limit");
    wait_until("delivered", || n.outcome("hook", "delivered") == 1.0);
    let got = rx.requests();
    assert_eq!(got.len(), 3, "503, 429, 200");
    assert_eq!(n.retries("hook"), 2.0);
    assert!(
        got[2].at.duration_since(got[1].at) >= Duration::from_secs(1),
        "Retry-After: 1 is honoured (the backoff alone is 40 ms at most)"
    );
    assert_eq!(n.outcome("hook", "failed"), 0.0);
}

#[test]
fn delivery_is_given_up_after_max_attempts_or_a_permanent_refusal() {
    let rx = Receiver::start(vec![
        Reply::Status(500, Vec::new()),
        Reply::Status(500, Vec::new()),
        Reply::Status(500, Vec::new()),
        Reply::Status(404, Vec::new()),
    ]);
    let alerts = format!("[alerts]\n{}", target("hook", "webhook", "max_attempts = 3"));
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    n.raise(AlertLevel::Critical, "a", "three 500s");
    wait_until("given up", || n.outcome("hook", "failed") == 1.0);
    assert_eq!((rx.count(), n.retries("hook")), (3, 2.0));
    n.raise(AlertLevel::Critical, "b", "one 404");
    wait_until("given up at once", || n.outcome("hook", "failed") == 2.0);
    assert_eq!((rx.count(), n.retries("hook")), (4, 2.0));
    assert_eq!(n.outcome("hook", "delivered"), 0.0);
}

#[test]
fn an_alert_waiting_for_its_retry_gets_a_last_attempt_when_the_notifier_stops() {
    let rx = Receiver::start(vec![Reply::Status(503, Vec::new())]);
    let alerts = format!(
        "[alerts]\n{}",
        target("hook", "webhook", "backoff_base_ms = 60000\nbackoff_cap_ms = 60000")
    );
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    n.raise(AlertLevel::Critical, "worker_escalation", "the engine is stopping");
    wait_until("the first attempt failed", || n.retries("hook") == 1.0);
    let metrics = n.metrics.clone();
    n.stop();
    assert_eq!(rx.count(), 2, "the retry a minute away was made on the way out");
    let delivered = "scalper_alert_notifications_total{outcome=\"delivered\",target=\"hook\"}";
    assert_eq!(metric_value(&metrics.render(), delivered), Some(1.0));
}

// ---- never on the trading path -------------------------------------------------------------

#[test]
fn raising_never_waits_for_a_receiver_that_hangs() {
    let rx = Receiver::start(vec![Reply::Hang]);
    let alerts = format!(
        "[alerts]\nqueue = 16\ndedupe_window_secs = 0\n[runtime]\nstop_deadline_ms = 120000\n{}",
        target("hook", "webhook", "timeout_ms = 60000\nburst = 1000\nrate_per_minute = 6000")
    );
    let n = Running::start(&alerts, &[rx.url("/hook")]);
    n.raise(AlertLevel::Critical, "first", "the receiver takes this and never answers");
    wait_until("the notifier is stuck in its request", || rx.count() == 1);
    // The notifier cannot take anything while it waits (up to a minute): every raise returns
    // at once, the queue fills, the rest is dropped and counted.
    for i in 0..10_000 {
        n.raise(AlertLevel::Critical, &format!("code_{i}"), "more");
    }
    assert_eq!(n.metric("scalper_alert_queue_dropped_total"), (10_000 - 16) as f64);
    assert_eq!(rx.count(), 1);
    // Releasing the receiver lets the notifier go on.
    drop(rx);
}

// ---- the engine ----------------------------------------------------------------------------

/// A secrets file with the webhook's URL, and the `[alerts]` text for the harness.
fn engine_alerts(dir: &std::path::Path, url: &str, target_extra: &str, tables: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("secrets.env");
    std::fs::write(&path, format!("SCALPER_ALERT_ONCALL_URL={url}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "{tables}\n[secrets]\nfile = {:?}\n[alerts]\n[[alerts.targets]]\nname = \"oncall\"\nkind = \"webhook\"\nmin_severity = \"critical\"\nbackoff_base_ms = 20\nbackoff_cap_ms = 100\n{target_extra}\n",
        path.display().to_string()
    )
}

#[test]
fn the_kill_switch_through_the_control_api_reaches_the_receiver() {
    let rx = Receiver::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&engine_alerts(dir.path(), &rx.url("/oncall"), "", ""));
    h.at("10:00:01");
    h.price(A, "100.00");
    h.open(A, Side::Long, 75);
    let (status, body) = h.post("/v1/flatten", "");
    assert!((200..300).contains(&status), "{status} {body}");
    wait_until("the kill-switch alert arrives", || {
        rx.requests().iter().any(|r| r.body["code"] == "kill_switch")
    });
    let alert = rx.requests().into_iter().find(|r| r.body["code"] == "kill_switch").unwrap();
    assert_eq!(alert.body["severity"], "critical", "{}", alert.body);
    assert!(alert.body["message"].as_str().unwrap().contains("trading halted"), "{}", alert.body);
    wait_until("counted", || {
        h.metric("scalper_alert_notifications_total{outcome=\"delivered\",target=\"oncall\"}")
            == Some(1.0)
    });
    let text = h.metrics_text();
    assert!(!text.contains("/oncall"), "the URL is not in the metrics");
    h.stop();
}

#[test]
fn the_exit_path_keeps_working_while_the_receiver_hangs() {
    let rx = Receiver::start(vec![Reply::Hang; 64]);
    let dir = tempfile::tempdir().unwrap();
    // The notifier waits up to a minute for each answer (the receiver is dropped, and the held
    // connections closed, before the engine stops).
    let extra = "timeout_ms = 60000\nburst = 1000\nrate_per_minute = 6000";
    let tables = "[runtime]\nstop_deadline_ms = 120000";
    let mut h = Harness::start(&engine_alerts(dir.path(), &rx.url("/oncall"), extra, tables));
    let raise = |code: String| {
        let alert = Alert {
            level: AlertLevel::Critical,
            code,
            message: "raised through the engine's sink".into(),
            at: h.now(),
        };
        h.shared.sink.record(&EngineEvent::Core(CoreEvent::Alert(alert)));
    };
    raise("first".into());
    wait_until("the notifier is stuck in its request", || rx.connections() >= 1);
    for i in 0..5_000 {
        raise(format!("code_{i}"));
    }
    // Stop loss: long 75 at 100.00, down 10 %: the exit is decided and filled meanwhile.
    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "90.00");
    let t = h.closed(&id);
    assert_eq!(t.reason, scalper::domain::ExitReason::StopLoss);
    // The notifier is still in its first request: the queue (1024) took what it could, the
    // rest was dropped instead of waiting.
    assert_eq!(rx.count(), 1);
    assert_eq!(h.metric("scalper_alert_queue_dropped_total"), Some((5_000 - 1_024) as f64));
    drop(rx);
    h.stop();
}
