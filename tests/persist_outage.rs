//! Outages of the services around the engine while it trades: PostgreSQL (the store) and
//! Redis (the publisher), each behind a proxy the test cuts. Trading goes on — exits fire,
//! entries are taken, the trading state never changes — `/health` says which service is
//! degraded, and when the service returns nothing is missing: every store event arrives once
//! and in order; the Redis keys are republished and stale ones removed.

mod common;
mod engine_support;
mod persist_support;

use std::time::Duration;

use common::{PgSchema, Proxy, pg_addr, via_port, wait_until as poll};
use engine_support::*;
use persist_support::*;
use scalper::domain::{ExitReason, Side};
use scalper::risk::TradingState;
use scalper::store::Store;
use scalper::store::postgres::PgOptions;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn a_postgres_outage_during_trading_pauses_nothing_and_loses_nothing() {
    let schema = PgSchema::new("pg_outage");
    drop(schema.open()); // the schema exists before the proxy is in between
    let proxy = Proxy::start(pg_addr(&schema.url));
    let dir = tempfile::tempdir().unwrap();
    let opts = PgOptions { connect_timeout: Duration::from_secs(1), ..schema.options() };
    let setup = pg_setup(&via_port(&schema.url, proxy.port()), opts, dir.path());
    let (mut h, handle) = start_capturing("", setup);
    let mut store = schema.open();

    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    assert!(
        poll(LONG, || store.positions().unwrap().iter().any(|p| p.id == a)),
        "stored before the outage"
    );

    proxy.cut();
    assert!(
        poll(LONG, || component(&h, "store") == "degraded"),
        "/health shows the store degraded"
    );
    h.at("10:00:02");
    h.price(A, "90.00");
    assert_eq!(h.closed(&a).reason, ExitReason::StopLoss, "an exit fires during the outage");
    h.at("10:00:03");
    h.price(B, "100.00");
    let b = h.open(B, Side::Short, 75);
    h.at("10:00:04");
    h.price(B, "95.00");
    h.at("10:00:05");
    h.price(B, "80.00");
    assert_eq!(h.closed(&b).reason, ExitReason::TakeProfit);
    h.at("10:00:06");
    h.price(C, "100.00");
    let c = h.open(C, Side::Long, 75);
    assert_eq!(h.shared.trading.state(), TradingState::Active, "trading never paused");
    let (code, health) = h.get("/health");
    assert_eq!((code, health["status"].as_str()), (200, Some("degraded")), "{health}");
    // The writer spills a batch once its write to the database has failed: it may still be
    // trying (a connect times out after 1 s) when the last trade is taken.
    assert!(
        poll(LONG, || h.metric("scalper_store_spilled_events_total").unwrap_or(0.0) > 0.0),
        "events went to the spill"
    );

    proxy.restore();
    assert!(poll(LONG, || component(&h, "store") == "ok"), "the store recovers by itself");
    h.at("10:00:07");
    h.price(C, "120.00");
    assert_eq!(h.closed(&c).reason, ExitReason::TakeProfit);
    h.pnl_after(3);
    let events = h.recorder.events();
    h.stop();

    assert_store_has(&mut store, &events);
    let recorded = handle.stats().recorded;
    let mut client = schema.client();
    let applied: i64 = client.query_one("SELECT count(*) FROM applied_events", &[]).unwrap().get(0);
    assert_eq!(applied as u64, recorded, "every recorded event applied, each once");
    assert!(
        store.positions().unwrap().iter().all(|p| p.state == scalper::store::PositionState::Exited)
    );
}

fn redis_con() -> redis::Connection {
    redis::Client::open(common::redis_url()).unwrap().get_connection().unwrap()
}

fn hget(con: &mut redis::Connection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query(con).unwrap()
}

#[test]
fn a_redis_outage_never_stops_trading_and_the_state_is_republished_when_it_returns() {
    let upstream: std::net::SocketAddr = {
        let url = url::Url::parse(&common::redis_url()).unwrap();
        let host = url.host_str().unwrap().to_string();
        let port = url.port().unwrap_or(6379);
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).unwrap().next().unwrap()
    };
    let proxy = Proxy::start(upstream);
    let prefix = format!("t{}x{}:", std::process::id(), fastrand::u32(..));
    let extra = format!(
        "[redis]\nenabled = true\nurl = \"redis://127.0.0.1:{}\"\nkey_prefix = \"{prefix}\"\n",
        proxy.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut con = redis_con();
    let mut sub_con = redis_con();
    let mut sub = sub_con.as_pubsub();
    sub.subscribe(format!("{prefix}events")).unwrap();
    sub.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut h = start(&extra, sqlite_setup(&dir.path().join("s.db"), dir.path()));
    let key = |k: &str| format!("{prefix}{k}");

    h.at("10:00:01");
    h.price(A, "100.00");
    assert!(poll(LONG, || hget(&mut con, &key("tick:NSE_FNO:52175"), "ltp").as_deref()
        == Some("100.00")));
    let a = h.open(A, Side::Long, 75);
    let pos = key(&format!("pnl:position:{a}"));
    assert!(poll(LONG, || hget(&mut con, &pos, "entry_price").as_deref() == Some("100.00")));
    let open: Vec<String> =
        redis::cmd("SMEMBERS").arg(key("positions:open")).query(&mut con).unwrap();
    assert_eq!(open, vec![a.to_string()]);
    assert!(poll(LONG, || hget(&mut con, &key("account"), "trades_today").as_deref() == Some("1")));
    let ttl: i64 = redis::cmd("PTTL").arg(key("heartbeat")).query(&mut con).unwrap();
    assert!(ttl > 0, "the heartbeat expires by itself: {ttl}");
    let mut opened = false;
    for _ in 0..100 {
        if let Ok(msg) = sub.get_message() {
            let text: String = msg.get_payload().unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "position" && v["change"] == "opened" {
                opened = true;
                break;
            }
        }
    }
    assert!(opened, "the opening was published on the events channel");

    proxy.cut();
    assert!(poll(LONG, || component(&h, "redis") == "degraded"), "/health shows Redis degraded");
    // Trading goes on without Redis: the position closes, another opens.
    h.at("10:00:02");
    h.price(A, "120.00");
    assert_eq!(h.closed(&a).reason, ExitReason::TakeProfit);
    h.at("10:00:03");
    h.price(B, "50.00");
    let b = h.open(B, Side::Short, 75);
    assert_eq!(h.shared.trading.state(), TradingState::Active);
    // Redis lost part of its data meanwhile (a restart without persistence).
    let _: () = redis::cmd("DEL")
        .arg(key("tick:NSE_FNO:52176"))
        .arg(key("account"))
        .query(&mut con)
        .unwrap();

    proxy.restore();
    assert!(poll(LONG, || component(&h, "redis") == "ok"), "the publisher reconnects");
    assert!(poll(LONG, || hget(&mut con, &key("tick:NSE_FNO:52175"), "ltp").as_deref()
        == Some("120.00")));
    assert!(poll(LONG, || hget(&mut con, &key("tick:NSE_FNO:52176"), "ltp").as_deref()
        == Some("50.00")));
    assert!(poll(LONG, || hget(&mut con, &key("account"), "closed_today").as_deref() == Some("1")));
    let bkey = key(&format!("pnl:position:{b}"));
    assert!(poll(LONG, || hget(&mut con, &bkey, "side").as_deref() == Some("SHORT")));
    let exists: i64 = redis::cmd("EXISTS").arg(&pos).query(&mut con).unwrap();
    assert_eq!(exists, 0, "the key of the position that closed during the outage is gone");
    let open: Vec<String> =
        redis::cmd("SMEMBERS").arg(key("positions:open")).query(&mut con).unwrap();
    assert_eq!(open, vec![b.to_string()]);
    h.stop();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut con).unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
    }
}
