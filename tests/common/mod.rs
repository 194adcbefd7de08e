//! Helpers shared by the integration tests: where the test services are, a private
//! PostgreSQL schema or SQLite file per test (so tests run in parallel without meeting), a TCP
//! proxy that can cut a connection like an outage, sample records, and condition polling.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use parking_lot::Mutex;
use scalper::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderId, OrderPurpose, Paise, PositionId, Qty,
    Segment, Side, Timestamp, Txn,
};
use scalper::store::postgres::{PgOptions, PgStore};
use scalper::store::sqlite::SqliteStore;
use scalper::store::*;

/// The PostgreSQL server to test against. Tests that need one fail (never skip) without it.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: this test needs PostgreSQL. Run the tests with `make test` \
             (scripts/with-test-services starts PostgreSQL and Redis, or reuses DATABASE_URL and \
             REDIS_URL when they are set)"
        ),
    }
}

/// The Redis server to test against (same rule as [`database_url`]).
pub fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "REDIS_URL is not set: this test needs Redis. Run the tests with `make test` \
             (scripts/with-test-services starts PostgreSQL and Redis)"
        ),
    }
}

/// A schema of its own in the test database, dropped when this guard goes.
pub struct PgSchema {
    pub url: String,
    pub schema: String,
}

impl PgSchema {
    pub fn new(test: &str) -> PgSchema {
        let url = database_url();
        let clean: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(30)
            .collect();
        let schema = format!("t_{clean}_{}_{}", std::process::id(), fastrand::u32(..));
        PgSchema { url, schema }
    }

    pub fn options(&self) -> PgOptions {
        PgOptions { schema: Some(self.schema.clone()), ..PgOptions::default() }
    }

    pub fn open(&self) -> PgStore {
        PgStore::connect(&self.url, &self.options()).expect("connect to the test PostgreSQL")
    }

    /// A plain client on the same database, for checks behind the store's back.
    pub fn client(&self) -> ::postgres::Client {
        let cfg = scalper::store::postgres::config(&self.url, &self.options()).unwrap();
        let mut c = cfg.connect(::postgres::NoTls).expect("connect to the test PostgreSQL");
        c.batch_execute(&format!("SET search_path TO {}", self.schema)).unwrap();
        c
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(cfg) = scalper::store::postgres::config(&self.url, &PgOptions::default())
            && let Ok(mut c) = cfg.connect(::postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// A SQLite file of its own, removed with its directory.
pub struct SqliteFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new() -> SqliteFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        SqliteFile { dir, path }
    }

    pub fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path).expect("open the test SQLite store")
    }
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- sample records -------------------------------------------------------------------------

pub const T0: i64 = 1_763_960_415_000; // 2025-11-24 10:30:15 IST

pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 11, 24).unwrap()
}

pub fn nifty_ce() -> InstrumentKey {
    InstrumentKey::new(Segment::NseFno, 52175)
}

pub fn cid(s: &str) -> CorrelationId {
    CorrelationId::new(s).unwrap()
}

pub fn position(id: &str) -> PositionRecord {
    PositionRecord::opened(
        PositionId::new(id),
        nifty_ce(),
        Side::Long,
        Qty(75),
        Paise(10_000),
        Timestamp(T0),
        PositionSource::Entry,
    )
}

/// A position in `Exiting` with every optional field set.
pub fn exiting_position(id: &str) -> PositionRecord {
    PositionRecord {
        side: Side::Short,
        source: PositionSource::Adopted,
        state: PositionState::Exiting,
        best_price: Paise(8_800),
        hwm_pnl: Paise(90_000),
        ratchet_stop: Some(Paise(9_500)),
        last_price: Paise(9_450),
        last_price_at: Some(Timestamp(T0 + 5_000)),
        exit_attempts: 2,
        exit_reason: Some(ExitReason::RatchetStop),
        exit_trigger_price: Some(Paise(9_500)),
        exit_trigger_at: Some(Timestamp(T0 + 5_000)),
        exit_correlation_id: Some(cid(&format!("X-{id}-2"))),
        exit_price: None,
        exited_at: None,
        last_rejection: Some("RMS: margin shortfall".into()),
        updated_at: Timestamp(T0 + 5_001),
        // Entered 25 at 100.00 and 50 at 100.01: 100.01 shown, 7,500.50 exactly.
        entry_price: Paise(10_001),
        entry_value: Some(Paise(750_050)),
        ..position(id)
    }
}

pub fn order(corr: &str, pos: &str, purpose: OrderPurpose, status: OrderStatus) -> OrderRecord {
    OrderRecord {
        correlation_id: cid(corr),
        broker_order_id: None,
        position_id: PositionId::new(pos),
        instrument: nifty_ce(),
        txn: if purpose.is_exit() { Txn::Sell } else { Txn::Buy },
        quantity: Qty(75),
        purpose,
        status,
        created_at: Timestamp(T0),
        updated_at: Timestamp(T0),
        limit_price: None,
    }
}

pub fn status_change(corr: &str, status: OrderStatus, at: i64) -> OrderStatusChange {
    OrderStatusChange {
        correlation_id: cid(corr),
        status,
        broker_order_id: Some(OrderId(format!("5251124300{at}"))),
        at: Timestamp(at),
        detail: if status == OrderStatus::Rejected { Some("DH-906 rejected".into()) } else { None },
    }
}

pub fn fill(trade: &str, corr: &str, price: i64) -> FillRecord {
    FillRecord {
        trade_id: trade.into(),
        correlation_id: cid(corr),
        order_id: OrderId("52511243008123".into()),
        instrument: nifty_ce(),
        txn: Txn::Sell,
        quantity: Qty(75),
        price: Paise(price),
        value: Some(Paise(price * 75)),
        at: Timestamp(T0 + 9_000),
    }
}

pub fn closed(pos: &str) -> ClosedTradeRecord {
    ClosedTradeRecord {
        position_id: PositionId::new(pos),
        instrument: nifty_ce(),
        side: Side::Long,
        reason: ExitReason::TakeProfit,
        entry_price: Paise(10_000),
        exit_price: Paise(12_000),
        quantity: Qty(75),
        gross: Paise(150_000),
        charges: Paise(6_328),
        net: Paise(143_672),
        closed_at: Timestamp(T0 + 9_000),
    }
}

pub fn daily(trades: u32, net: i64) -> DailyPnlRecord {
    DailyPnlRecord {
        trading_day: day(),
        realised_net: Paise(net),
        charges: Paise(6_328),
        trade_count: trades,
        updated_at: Timestamp(T0 + 9_001),
    }
}

pub fn halted(latched: Option<NaiveDate>) -> TradingStateRecord {
    TradingStateRecord {
        state: TradingStateKind::Halted,
        reason: "daily_loss_limit".into(),
        since: Timestamp(T0 + 10_000),
        latched_day: latched,
        updated_at: Timestamp(T0 + 10_000),
    }
}

pub fn audit(actor: Actor, action: &str, detail: &str) -> AuditRecord {
    AuditRecord { at: Timestamp(T0 + 11_000), actor, action: action.into(), detail: detail.into() }
}

/// Events with explicit ids (`base`, `base + 1`, …) in the given order.
pub fn events(base: i64, kinds: Vec<EventKind>) -> Vec<StoreEvent> {
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| StoreEvent {
            id: EventId(base + i as i64),
            at: Timestamp(T0 + i as i64),
            kind,
        })
        .collect()
}

/// An audit event whose detail carries a sequence number, for order checks.
pub fn numbered(seq: u64) -> EventKind {
    EventKind::Audit(audit(Actor::Engine, "seq", &seq.to_string()))
}

pub fn seq_of(entry: &AuditEntry) -> u64 {
    entry.record.detail.parse().expect("a numbered audit entry")
}

// ---- a TCP proxy that can play an outage ---------------------------------------------------

/// Forwards 127.0.0.1:`port()` to `upstream`. `cut()` closes every open connection and makes
/// new ones fail at once (accepted, then closed); `restore()` forwards again.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (c, cs, s, a) = (cut.clone(), conns.clone(), stop.clone(), accepted.clone());
        std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    a.fetch_add(1, Ordering::Relaxed);
                    if c.load(Ordering::Acquire) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    {
                        let mut list = cs.lock();
                        list.push(client.try_clone().unwrap());
                        list.push(server.try_clone().unwrap());
                    }
                    pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pump(server, client);
                }
            })
            .unwrap();
        Proxy { port, cut, conns, stop, accepted }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for s in self.conns.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// The TCP address of the test PostgreSQL server.
pub fn pg_addr(url: &str) -> std::net::SocketAddr {
    let cfg = scalper::store::postgres::config(url, &PgOptions::default()).unwrap();
    let ip = cfg.get_hostaddrs()[0];
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    std::net::SocketAddr::new(ip, port)
}

/// `url` with its host and port replaced by 127.0.0.1:`port` (user and database kept).
pub fn via_port(url: &str, port: u16) -> String {
    let cfg = scalper::store::postgres::config(url, &PgOptions::default()).unwrap();
    let mut out = format!(
        "host=127.0.0.1 port={port} user={} dbname={}",
        cfg.get_user().unwrap_or("postgres"),
        cfg.get_dbname().unwrap_or("postgres")
    );
    if let Some(pw) = cfg.get_password() {
        let pw = String::from_utf8_lossy(pw).replace('\\', "\\\\").replace('\'', "\\'");
        out.push_str(&format!(" password='{pw}'"));
    }
    out
}
