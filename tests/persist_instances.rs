//! Two engines configured for one account, as real processes sharing a PostgreSQL database and
//! a Redis lease: only the lease holder trades, the other is a standby that places no order and
//! says so; when the active one is killed the standby takes the lease within the lease time,
//! recovers the open positions from the shared store and manages them. An engine that cannot
//! renew its lease stops trading and exits non-zero.

mod common;
mod process_support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Proxy, redis_url};
use process_support::*;
use scalper::store::Store;
use scalper::store::postgres::{PgOptions, PgStore};

const TTL_MS: u64 = 1_500;
const RENEW_MS: u64 = 300;

/// A database of its own on the test server, dropped afterwards.
struct TestDb {
    admin: String,
    name: String,
    /// A `key=value` URL without password, as the config wants it.
    url: String,
    password: Option<String>,
}

impl TestDb {
    fn new() -> TestDb {
        let admin = common::database_url();
        let cfg = scalper::store::postgres::config(&admin, &PgOptions::default()).unwrap();
        let name = format!("scalper_inst_{}_{}", std::process::id(), fastrand::u32(..));
        let mut c = cfg.connect(::postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let addr = common::pg_addr(&admin);
        let url = format!(
            "host={} port={} user={} dbname={name}",
            addr.ip(),
            addr.port(),
            cfg.get_user().unwrap_or("postgres")
        );
        let password = cfg.get_password().map(|p| String::from_utf8_lossy(p).to_string());
        TestDb { admin, name, url, password }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.password.as_deref().map(|p| vec![("PGPASSWORD", p)]).unwrap_or_default()
    }

    fn store(&self) -> PgStore {
        let opts = PgOptions {
            password: self.password.clone().map(scalper::config::Secret::new),
            ..PgOptions::default()
        };
        PgStore::connect(&self.url, &opts).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(cfg) = scalper::store::postgres::config(&self.admin, &PgOptions::default())
            && let Ok(mut c) = cfg.connect(::postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn lease_tables(redis: &str, prefix: &str, store: &str) -> String {
    format!(
        "[redis]\nenabled = true\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\
         [instance]\nlease = \"redis\"\nlease_ttl_ms = {TTL_MS}\nrenew_every_ms = {RENEW_MS}\n{store}"
    )
}

fn write_config(dir: &Path, feed: &str, extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    let config = dir.join("scalper.toml");
    std::fs::write(&config, config_text(&data, feed, extra)).unwrap();
    (config, data)
}

fn health_status(addr: std::net::SocketAddr) -> String {
    get(addr, "/health").1["status"].as_str().unwrap_or("").to_string()
}

/// The wall-clock instant at the start of the first log line containing `needle`.
fn logged_at(log: &str, needle: &str) -> SystemTime {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"));
    let stamp = line.split_whitespace().next().unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.timestamp_millis() as u64)
}

#[test]
fn only_the_lease_holder_trades_and_the_standby_takes_over_the_open_positions() {
    let (sim, prices) = sim_feed();
    prices.set_price(A, rupees("100.00"));
    prices.set_price(B, rupees("100.00"));
    let feed = format!("ws://{}", sim.addr());
    let db = TestDb::new();
    let prefix = format!("t{}i{}:", std::process::id(), fastrand::u32(..));
    let extra = lease_tables(
        &redis_url(),
        &prefix,
        &format!("[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n", db.url),
    );
    let (d1, d2, d3) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c1, data1) = write_config(d1.path(), &feed, &extra);
    let (c2, data2) = write_config(d2.path(), &feed, &extra);
    let (c3, data3) = write_config(d3.path(), &feed, &extra);

    let mut e1 = spawn(d1.path(), &c1, "first", &db.env());
    let addr1 = e1.wait_active(&data1);
    let mut e2 = spawn(d2.path(), &c2, "second", &db.env());
    let addr2 = e2.wait_http(&data2);
    e2.wait_log("standby: lease");
    assert_eq!(health_status(addr2), "standby");
    let mut e3 = spawn(d3.path(), &c3, "third", &db.env());
    let addr3 = e3.wait_http(&data3);
    e3.wait_log("standby: lease");

    // The active one trades; the standbys refuse and have no order path at all.
    let a = open(addr1, A, "LONG");
    let b = open(addr1, B, "SHORT");
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    let (code, refused) = post(addr2, "/v1/orders", &body.to_string());
    assert_eq!(code, 503, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("standby"), "{refused}");
    prices.set_price(A, rupees("111.00"));
    prices.set_price(A, rupees("115.00"));
    let mut store = db.store();
    wait_for("the ratchet stop in the shared store", || {
        store
            .positions()
            .unwrap()
            .iter()
            .any(|p| p.id.as_str() == a && p.ratchet_stop == Some(rupees("100.00")))
    });
    for addr in [addr2, addr3] {
        let (_, metrics) = get(addr, "/metrics");
        let metrics = metrics.as_str().unwrap_or("").to_string();
        assert!(
            !metrics.contains("scalper_orders_total"),
            "a standby has no order router:\n{metrics}"
        );
    }
    let orders = store.orders().unwrap();
    assert_eq!(orders.len(), 2, "the two entries, both by the active engine");

    // A standby asked to stop leaves without ever trading.
    e3.signal(libc::SIGTERM);
    assert_eq!(e3.wait_exit(Duration::from_secs(20)), 0, "{}", e3.log());
    assert!(e3.log().contains("standby: shutting down without having traded"), "{}", e3.log());

    // Kill the active one: the standby takes the lease within the lease time.
    let killed = SystemTime::now();
    e1.kill9();
    let addr2 = e2.wait_active(&data2);
    let acquired = logged_at(&e2.log(), "acquired (fencing token");
    let took = acquired.duration_since(killed).unwrap_or_default();
    assert!(
        took <= Duration::from_millis(TTL_MS + RENEW_MS + 500),
        "the standby took over {took:?} after the kill (lease {TTL_MS} ms, tries every {RENEW_MS} ms)"
    );

    // It recovered the open positions from the shared store and manages them.
    let pa = position(addr2, &a).expect("A is managed by the new active engine");
    assert_eq!(
        (pa["risk"]["ratchet_stop"].as_str(), pa["risk"]["best_price"].as_str()),
        (Some("100.00"), Some("115.00"))
    );
    assert!(position(addr2, &b).is_some());
    prices.set_price(A, rupees("100.00"));
    wait_for("A closes under the new active engine", || position(addr2, &a).is_none());
    wait_for("its exit is stored", || {
        store.closed_trades().unwrap().iter().any(|t| t.position_id.as_str() == a)
    });
    let t =
        store.closed_trades().unwrap().into_iter().find(|t| t.position_id.as_str() == a).unwrap();
    assert_eq!((t.reason.code(), t.exit_price), ("ratchet_stop", rupees("100.00")));

    let tokens: Vec<u64> = store
        .audit()
        .unwrap()
        .iter()
        .filter(|e| e.record.action == "engine_started")
        .filter_map(|e| e.record.detail.rsplit("fencing token ").next()?.parse().ok())
        .collect();
    assert_eq!(tokens.len(), 2, "each active engine recorded its fencing token");
    assert!(tokens[0] < tokens[1], "{tokens:?}");

    e2.signal(libc::SIGTERM);
    assert_eq!(e2.wait_exit(Duration::from_secs(30)), 0, "{}", e2.log());
    let mut con = redis::Client::open(redis_url()).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut con).unwrap();
    assert!(
        !keys.iter().any(|k| k.contains("lease:") && !k.ends_with(":token")),
        "released at shutdown: {keys:?}"
    );
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
    }
}

#[test]
fn an_engine_that_cannot_renew_its_lease_stops_trading_and_exits_non_zero() {
    let (sim, prices) = sim_feed();
    prices.set_price(A, rupees("100.00"));
    let upstream = {
        let u = url::Url::parse(&redis_url()).unwrap();
        let host = u.host_str().unwrap().to_string();
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), u.port().unwrap_or(6379)))
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(upstream);
    let prefix = format!("t{}l{}:", std::process::id(), fastrand::u32(..));
    let dir = tempfile::tempdir().unwrap();
    let extra = lease_tables(&format!("redis://127.0.0.1:{}", proxy.port()), &prefix, "");
    let (config, data) = write_config(dir.path(), &format!("ws://{}", sim.addr()), &extra);
    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    open(addr, A, "LONG");

    let cut = Instant::now();
    proxy.cut();
    assert_eq!(e.wait_exit(Duration::from_secs(30)), 1, "{}", e.log());
    let log = e.log();
    assert!(
        cut.elapsed() < Duration::from_millis(TTL_MS) + Duration::from_secs(5),
        "took {:?}",
        cut.elapsed()
    );
    assert!(log.contains("ALERT instance lease"), "{log}");
    assert!(log.contains("ALERT halting trading: the instance lease is lost"), "{log}");
    assert!(log.contains("Stopped after losing the instance lease"), "{log}");
    let mut con = redis::Client::open(redis_url()).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut con).unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
    }
}
