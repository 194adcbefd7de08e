//! The operator files against a live scrape: README's metric table lists exactly the metric
//! families `/metrics` exports, and every metric the Grafana dashboard
//! (`ops/grafana/scalper.json`) and the Prometheus alert rules (`ops/prometheus/alerts.yml`)
//! name exists. The engine is the real binary in live mode against the in-process simulator,
//! with the SQLite store and Redis on, so every metric of the table is exported; an open
//! position makes the per-position series appear. Needs Redis (`make test`).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "ops-metrics-control-token";
const DEADLINE: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    prefix: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.prefix.is_empty()
            && let Ok(client) = redis::Client::open(common::redis_url())
            && let Ok(mut con) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut con)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
        }
    }
}

fn config_text(dir: &Path, redis: &str, prefix: &str) -> String {
    format!(
        r#"
mode = "live"
data_dir = {data:?}
[http]
listen = "127.0.0.1:0"
[feed]
source = "dhan"
url = "ws://127.0.0.1:0/"
watchlist = ["NSE_FNO:52175"]
[broker]
kind = "dhan"
rest_url = "http://127.0.0.1:0/v2"
order_update_url = "ws://127.0.0.1:0/order-update"
[sim]
enabled = true
broker = true
listen = "127.0.0.1:0"
client_id = "1000000001"
access_token = "sim-access-token"
seed = 5
tick_interval_ms = 100
transit_ms = 20
instruments = [{{ instrument = "NSE_FNO:52175", price = "120.00" }}]
[limits]
max_daily_loss_rupees = 5000
[session]
entry_cutoff_time = "23:58"
square_off_time = "23:59"
weekends = true
[heartbeat]
interval_secs = 1
[store]
backend = "sqlite"
[redis]
enabled = true
url = "{redis}"
key_prefix = "{prefix}"
[[alerts.targets]]
name = "ops"
kind = "webhook"
"#,
        data = dir.join("data").display().to_string(),
    )
}

/// A paper engine with the in-process simulator and the SQLite store, no Redis.
fn paper_config_text(dir: &Path) -> String {
    format!(
        r#"
mode = "paper"
data_dir = {data:?}
[http]
listen = "127.0.0.1:0"
[feed]
source = "sim"
watchlist = ["NSE_FNO:52175"]
[sim]
enabled = true
listen = "127.0.0.1:0"
seed = 5
tick_interval_ms = 100
instruments = [{{ instrument = "NSE_FNO:52175", price = "120.00" }}]
[session]
entry_cutoff_time = "23:58"
square_off_time = "23:59"
weekends = true
[heartbeat]
interval_secs = 1
[store]
backend = "sqlite"
"#,
        data = dir.join("data").display().to_string(),
    )
}

impl Engine {
    /// The live engine with the store and Redis: every metric of README's table.
    fn start() -> Engine {
        let redis = common::redis_url();
        let prefix = format!("opsmetrics:{}:{}:", std::process::id(), fastrand::u32(..));
        let p = prefix.clone();
        Engine::start_with(prefix, move |dir| config_text(dir, &redis, &p))
    }

    /// A paper engine with the store (no live broker, no Redis).
    fn start_paper() -> Engine {
        Engine::start_with(String::new(), paper_config_text)
    }

    fn start_with(prefix: String, config_text: impl FnOnce(&Path) -> String) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("scalper.toml");
        std::fs::write(&config, config_text(dir.path())).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scalper"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("DHAN_CLIENT_ID", "1000000001")
            .env("DHAN_ACCESS_TOKEN", "sim-access-token")
            .env("SCALPER_CONTROL_TOKEN", TOKEN)
            // The live engine's alert target: a closed port (deliveries fail and are counted).
            .env("SCALPER_ALERT_OPS_URL", "http://127.0.0.1:9/alerts")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut e = Engine { child, dir, addr: "127.0.0.1:1".parse().unwrap(), prefix };
        e.addr = e.wait_address();
        e
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("stderr.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn wait_address(&mut self) -> SocketAddr {
        let addr_file = self.dir.path().join("data").join("http.addr");
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "no HTTP address in time; log:\n{}", self.log());
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("engine exited early with {status}; log:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
                && http(addr, "GET", "/health", None).0 != 0
            {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> String {
        http(self.addr, "GET", "/metrics", None).1
    }

    /// Opens one position through the control API (retried while the startup reconciliation
    /// holds entries back or the instrument has no price yet), then waits until the scrape
    /// shows every family `want` names, or the deadline passes; returns the last scrape.
    fn open_position_and_scrape(&self, want: &BTreeSet<String>) -> String {
        let order = r#"{"instrument":"NSE_FNO:52175","side":"LONG","quantity":75}"#;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, body) = http(self.addr, "POST", "/v1/orders", Some(order));
            if status == 202 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no entry accepted in time: {status} {body}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let text = self.metrics();
            if want.is_subset(&families(&text)) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let auth = format!("Bearer {TOKEN}");
    let result = match (method, body) {
        ("POST", Some(b)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(b),
        _ => agent.get(&url).header("Authorization", &auth).call(),
    };
    match result {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// The metric families of a Prometheus text exposition (from its `# TYPE` lines).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every sample name of a scrape (`x_bucket`, `x_sum`, `x_count` of a histogram included).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The metric names of README's metric table (its rows start with `` | `scalper_ ``) whose
/// *when* column (the fifth cell) is one of `when`, or all of them for an empty `when`.
fn readme_table(when: &[&str]) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo("README.md")).unwrap();
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("| `scalper_"))
        .filter(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            when.is_empty() || cells.get(4).is_some_and(|w| when.contains(w))
        })
        .filter_map(|l| l.strip_prefix("| `scalper_")?.split('`').next())
        .map(|n| format!("scalper_{n}"))
        .collect();
    assert!(names.len() > 40, "README's metric table found: {names:?}");
    names
}

/// Both directions of the difference, as a failure message, or `None` when equal.
fn diff(scraped: &BTreeSet<String>, table: &BTreeSet<String>) -> Option<String> {
    let not_in_readme: Vec<_> = scraped.difference(table).collect();
    let not_scraped: Vec<_> = table.difference(scraped).collect();
    (!not_in_readme.is_empty() || !not_scraped.is_empty()).then(|| {
        format!(
            "exported but not in README's table: {not_in_readme:?}\n\
             in README's table but not exported: {not_scraped:?}"
        )
    })
}

/// Every `scalper_*` name in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("scalper_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Expressions that name no `scalper_` metric, on purpose: series Prometheus makes itself.
const PROMETHEUS_SERIES: &[&str] = &["up{job=\"scalper\"} == 0"];

/// What is wrong with `exprs` (from `source`) against a scrape: names that do not exist, and
/// expressions that name no scalper metric at all (a misspelt prefix).
fn check_expressions(source: &str, exprs: &[String], scrape: &str) -> Vec<String> {
    let have = sample_names(scrape);
    let mut problems = Vec::new();
    for expr in exprs {
        let names = names_in(expr);
        if names.is_empty() && !PROMETHEUS_SERIES.contains(&expr.as_str()) {
            problems.push(format!("{source}: `{expr}` names no scalper_ metric"));
        }
        for n in names {
            if !have.contains(&n) {
                problems.push(format!("{source}: `{n}` (in `{expr}`) is not in /metrics"));
            }
        }
    }
    problems
}

/// Every PromQL expression of the dashboard: the panels' targets and the query variables.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(repo("ops/grafana/scalper.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        ("query" | "definition", serde_json::Value::String(e))
                            if e.contains('(') =>
                        {
                            out.push(e.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dash, &mut out);
    assert!(out.len() > 30, "the dashboard's expressions: {out:?}");
    // Provisionable: a uid, unique panel ids, every panel placed and on the datasource
    // variable.
    assert_eq!(dash["uid"], "scalper");
    let panels = dash["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");
    for p in panels {
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        }
    }
    out
}

/// Every alert rule's `expr:` (one line each, as the file's header asks).
fn rule_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(repo("ops/prometheus/alerts.yml")).unwrap();
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    let alerts = text.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    assert_eq!(exprs.len(), alerts, "one single-line expr per alert rule");
    assert!(alerts >= 10, "{alerts} alert rules");
    exprs
}

#[test]
fn readme_metric_table_matches_metrics_exactly() {
    let table = readme_table(&[]);
    let e = Engine::start();
    // The per-position families need the position and a heartbeat: wait for the table's
    // families (up to the deadline), then compare both ways.
    let text = e.open_position_and_scrape(&table);
    if let Some(d) = diff(&families(&text), &table) {
        panic!("{d}");
    }
}

#[test]
fn a_paper_engine_exports_the_tables_always_and_store_metrics_only() {
    let table = readme_table(&["always", "store"]);
    let e = Engine::start_paper();
    let text = e.open_position_and_scrape(&table);
    if let Some(d) = diff(&families(&text), &table) {
        panic!("{d}");
    }
}

#[test]
fn known_label_values_are_exported_at_zero_from_startup() {
    let e = Engine::start();
    let text = e.metrics();
    for sample in [
        "scalper_worker_restarts_total{worker=\"exit_engine\"} 0",
        "scalper_worker_restarts_total{worker=\"order_updates\"} 0",
        "scalper_worker_stuck{worker=\"order_router\"} 0",
        "scalper_alerts_total{code=\"exit_blocked\",severity=\"critical\"} 0",
        "scalper_alerts_total{code=\"component_down\",severity=\"critical\"} 0",
        "scalper_exits_total{reason=\"stop_loss\"} 0",
        "scalper_exits_total{reason=\"daily_loss_limit\"} 0",
        "scalper_orders_total{outcome=\"rejected\",purpose=\"exit\"} 0",
        "scalper_entries_total{outcome=\"max_open_positions\"} 0",
        "scalper_feed_disconnects_total{cause=\"stall\"} 0",
        "scalper_store_write_errors_total{kind=\"unavailable\"} 0",
        "scalper_broker_resolutions_total{result=\"absent\"} 0",
        "scalper_trading_state{state=\"halted\"} 0",
        "scalper_broker_breaker_state{state=\"open\"} 0",
    ] {
        assert!(text.contains(sample), "{sample} in:\n{text}");
    }
    assert!(text.contains("scalper_trading_state{state=\"active\"} 1"), "{text}");
    assert!(text.contains("scalper_broker_breaker_state{state=\"closed\"} 1"), "{text}");
    // No milliseconds and no precomputed rates.
    for name in families(&text) {
        assert!(!name.ends_with("_ms") && !name.contains("per_second"), "{name}");
    }
}

#[test]
fn dashboard_and_alert_rules_name_only_exported_metrics() {
    let dashboard = dashboard_expressions();
    let rules = rule_expressions();
    let mut want: BTreeSet<String> = BTreeSet::new();
    for e in dashboard.iter().chain(&rules) {
        for n in names_in(e) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(&n)
                .to_string();
            want.insert(family);
        }
    }
    let e = Engine::start();
    // Waits for what the files name (a misspelt name waits out the deadline, then is reported).
    let text = e.open_position_and_scrape(&want);
    let mut problems = check_expressions("ops/grafana/scalper.json", &dashboard, &text);
    problems.extend(check_expressions("ops/prometheus/alerts.yml", &rules, &text));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    promtool_check_rules();
}

/// `promtool check rules` when promtool is installed.
fn promtool_check_rules() {
    let rules = repo("ops/prometheus/alerts.yml");
    match Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: promtool is not installed; `promtool check rules` skipped")
        }
        Err(e) => panic!("running promtool: {e}"),
    }
}

#[test]
fn the_name_check_reports_a_misspelt_or_unknown_name() {
    let scrape = "# TYPE scalper_feed_state gauge\nscalper_feed_state{state=\"connected\"} 1\n\
                  # TYPE scalper_x_seconds histogram\nscalper_x_seconds_bucket{le=\"1\"} 0\n";
    let ok = vec![
        "scalper_feed_state{state=\"connected\"} == 0".to_string(),
        "histogram_quantile(0.99, rate(scalper_x_seconds_bucket[5m]))".to_string(),
        "up{job=\"scalper\"} == 0".to_string(),
    ];
    assert_eq!(check_expressions("t", &ok, scrape), Vec::<String>::new());
    let bad = vec![
        "scalper_feed_stat{state=\"connected\"} == 0".to_string(),
        "scalpr_feed_state == 1".to_string(),
        "rate(scalper_x_second_bucket[5m])".to_string(),
    ];
    let problems = check_expressions("t", &bad, scrape);
    assert_eq!(problems.len(), 3, "{problems:?}");
}
