//! Every engine event through the store sink into both backends: a paper engine driven through
//! the API (entries, a ratchet exit, a take profit, operator halt and resume, a kill switch),
//! then the store read back and compared with what the engine reported — positions with their
//! risk state, orders with their status history, fills, closed trades, the day's totals, the
//! latched trading state and the audit log.

mod common;
mod engine_support;
mod persist_support;

use std::time::Duration;

use common::{PgSchema, wait_until as poll};
use engine_support::*;
use persist_support::*;
use scalper::domain::{ExitReason, Paise, Side};
use scalper::store::*;

/// The scenario; returns the engine's events and its last `/v1/pnl`.
fn run(
    h: Harness,
    mut open_store: impl FnMut() -> Box<dyn Store>,
) -> (Vec<scalper::engine::seams::EngineEvent>, serde_json::Value) {
    let mut h = h;
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(B, "100.00");
    let b = h.open(B, Side::Short, 75);
    h.at("10:00:03");
    h.price(A, "111.00");
    h.at("10:00:04");
    h.price(A, "115.00");
    // The risk state reaches the store by marks, while the position is open.
    let mut store = open_store();
    let marked = poll(Duration::from_secs(20), || {
        store.positions().unwrap().iter().any(|p| {
            p.id == a
                && p.best_price == rupees("115.00")
                && p.ratchet_stop == Some(rupees("100.00"))
        })
    });
    assert!(marked, "the ratchet stop and best price of {a} are stored while it is open");

    h.at("10:00:05");
    h.price(A, "100.00");
    assert_eq!(h.closed(&a).reason, ExitReason::RatchetStop);
    h.at("10:00:06");
    h.price(B, "80.00");
    assert_eq!(h.closed(&b).reason, ExitReason::TakeProfit);

    assert_eq!(h.post("/v1/halt", "").0, 200);
    assert_eq!(h.post("/v1/resume", "").0, 200);
    h.at("10:00:07");
    h.price(C, "100.00");
    let c = h.open(C, Side::Long, 75);
    h.at("10:00:08");
    assert_eq!(h.post("/v1/flatten", "").0, 200);
    assert_eq!(h.closed(&c).reason, ExitReason::KillSwitch);
    let pnl = h.pnl_after(3);
    let events = h.recorder.events();
    h.stop();
    (events, pnl)
}

fn check(
    store: &mut dyn Store,
    events: &[scalper::engine::seams::EngineEvent],
    pnl: &serde_json::Value,
) {
    assert_store_has(store, events);

    let positions = store.positions().unwrap();
    assert_eq!(positions.len(), 3);
    let a = positions.iter().find(|p| p.instrument == A).unwrap();
    assert_eq!(
        (a.state, a.exit_reason, a.exit_price, a.best_price, a.ratchet_stop),
        (
            PositionState::Exited,
            Some(ExitReason::RatchetStop),
            Some(rupees("100.00")),
            rupees("115.00"),
            Some(rupees("100.00"))
        )
    );
    for o in store.orders().unwrap() {
        let statuses: Vec<_> = o.history.iter().map(|h| h.status).collect();
        assert_eq!(
            statuses,
            [OrderStatus::Created, OrderStatus::Traded],
            "{}",
            o.order.correlation_id
        );
        assert!(o.order.broker_order_id.is_some());
    }
    assert_eq!(store.orders().unwrap().len(), 6);
    assert_eq!(store.fills().unwrap().len(), 6);
    assert_eq!(store.closed_trades().unwrap().len(), 3);

    let daily = store.daily_pnl().unwrap();
    assert_eq!(daily.len(), 1);
    let d = &daily[0];
    assert_eq!(d.trading_day, chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap());
    assert_eq!(d.realised_net, Paise(paise(&pnl["realised_net"])));
    assert_eq!(d.charges, Paise(paise(&pnl["charges"])));
    assert_eq!(d.trade_count, 3);

    let ts = store.trading_state().unwrap().expect("a trading state");
    assert_eq!((ts.state, ts.reason.as_str()), (TradingStateKind::Halted, "kill_switch"));
    assert_eq!(ts.latched_day, Some(d.trading_day));
    assert!(ts.is_halt_latched_on(d.trading_day));

    let audit = audit_actions(store);
    let operator: Vec<&str> = audit
        .iter()
        .filter(|(actor, _)| *actor == Actor::Operator)
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(operator, ["entry", "entry", "halt", "resume", "entry", "flatten"]);
    let engine: Vec<&str> = audit
        .iter()
        .filter(|(actor, _)| *actor == Actor::Engine)
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(engine.first(), Some(&"engine_started"));
    assert_eq!(engine.iter().filter(|a| **a == "trading_state").count(), 3, "{engine:?}");
    assert!(engine.contains(&"alert:kill_switch"), "{engine:?}");
}

#[test]
fn every_engine_event_reaches_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let h = start("", sqlite_setup(&db, dir.path()));
    let open = || Box::new(sqlite::SqliteStore::open(&db).unwrap()) as Box<dyn Store>;
    let (events, pnl) = run(h, open);
    check(open().as_mut(), &events, &pnl);
}

#[test]
fn every_engine_event_reaches_postgres() {
    let schema = PgSchema::new("round_trip");
    let dir = tempfile::tempdir().unwrap();
    let h = start("", pg_setup(&schema.url, schema.options(), dir.path()));
    let open = || Box::new(schema.open()) as Box<dyn Store>;
    let (events, pnl) = run(h, open);
    check(open().as_mut(), &events, &pnl);
}
