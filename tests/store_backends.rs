//! Both store backends against real databases: every table round trips, migrations apply from
//! empty and re-apply as a no-op, a batch applied twice changes nothing, and recovery returns
//! what a restarting engine needs. PostgreSQL tests need `DATABASE_URL` (run `make test`).

mod common;

use common::*;
use scalper::domain::{ExitReason, OrderPurpose, Paise, PositionId, Timestamp};
use scalper::store::*;

/// Runs `body` against a fresh store of each backend; `open` opens another connection to the
/// same database.
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let file = SqliteFile::new();
                $body(&|| Box::new(file.open()) as Box<dyn Store>);
            }

            #[test]
            fn postgres() {
                let schema = PgSchema::new(stringify!($name));
                $body(&|| Box::new(schema.open()) as Box<dyn Store>);
            }
        }
    };
}

type Open<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// One of everything, with the follow-ups that change rows.
fn every_kind() -> Vec<EventKind> {
    let mut entry = order("E-p1-1", "p1", OrderPurpose::Entry, OrderStatus::Created);
    entry.limit_price = Some(Paise(9_950));
    let exit =
        order("X-p2-2", "p2", OrderPurpose::Exit(ExitReason::RatchetStop), OrderStatus::Created);
    vec![
        EventKind::PositionUpsert(position("p1")),
        EventKind::PositionUpsert(exiting_position("p2")),
        EventKind::PositionMark(PositionMark {
            id: PositionId::new("p1"),
            best_price: Paise(11_200),
            hwm_pnl: Paise(90_000),
            ratchet_stop: Some(Paise(9_500)),
            last_price: Paise(11_000),
            last_price_at: Some(Timestamp(T0 + 3_000)),
            updated_at: Timestamp(T0 + 3_001),
        }),
        EventKind::OrderPlaced(entry),
        EventKind::OrderStatus(status_change("E-p1-1", OrderStatus::Transit, T0 + 100)),
        EventKind::OrderStatus(status_change("E-p1-1", OrderStatus::Traded, T0 + 200)),
        EventKind::OrderPlaced(exit),
        EventKind::OrderStatus(status_change("X-p2-2", OrderStatus::Rejected, T0 + 300)),
        EventKind::Fill(fill("T-1", "E-p1-1", 10_000)),
        // The same trade reported again (with a different price) is ignored.
        EventKind::Fill(fill("T-1", "E-p1-1", 99_999)),
        EventKind::Fill(fill("T-2", "X-p2-2", 9_450)),
        EventKind::TradeClosed(closed("p0")),
        EventKind::DailyPnl(daily(1, 143_672)),
        EventKind::TradingState(halted(Some(day()))),
        EventKind::Audit(audit(Actor::Operator, "flatten", "from the control API")),
        EventKind::Audit(audit(Actor::Reconciliation, "adopt", "{\"position\":\"p2\"}")),
        EventKind::Audit(audit(Actor::Operator, "note", QUOTED)),
    ]
}

/// Text that must arrive unchanged: quotes, a backslash, SQL, non-ASCII.
const QUOTED: &str = "it's O'Brien's \\ call'; DROP TABLE audit_log; -- ₹ '' $1";

fn round_trip(open: Open<'_>) {
    let mut store = open();
    let evs = events(1_000, every_kind());
    let outcome = store.apply(&evs).unwrap();
    assert_eq!(outcome, ApplyOutcome { applied: evs.len(), duplicates: 0 });

    let mut p1 = position("p1");
    p1.best_price = Paise(11_200);
    p1.hwm_pnl = Paise(90_000);
    p1.ratchet_stop = Some(Paise(9_500));
    p1.last_price = Paise(11_000);
    p1.last_price_at = Some(Timestamp(T0 + 3_000));
    p1.updated_at = Timestamp(T0 + 3_001);
    assert_eq!(store.positions().unwrap(), vec![p1, exiting_position("p2")]);

    let orders = store.orders().unwrap();
    assert_eq!(orders.len(), 2);
    let entry = &orders[0];
    assert_eq!(entry.order.correlation_id.as_str(), "E-p1-1");
    assert_eq!(entry.order.status, OrderStatus::Traded);
    assert_eq!(
        entry.order.broker_order_id,
        status_change("E-p1-1", OrderStatus::Traded, T0 + 200).broker_order_id
    );
    assert_eq!(entry.order.updated_at, Timestamp(T0 + 200));
    assert_eq!(entry.order.purpose, OrderPurpose::Entry);
    assert_eq!(entry.order.limit_price, Some(Paise(9_950)), "a limit entry keeps its price");
    let statuses: Vec<_> = entry.history.iter().map(|h| (h.status, h.at)).collect();
    assert_eq!(
        statuses,
        [
            (OrderStatus::Created, Timestamp(T0)),
            (OrderStatus::Transit, Timestamp(T0 + 100)),
            (OrderStatus::Traded, Timestamp(T0 + 200)),
        ]
    );
    assert_eq!(entry.history[0].event_id, EventId(1_003));
    let exit = &orders[1];
    assert_eq!(exit.order.purpose, OrderPurpose::Exit(ExitReason::RatchetStop));
    assert_eq!(exit.order.status, OrderStatus::Rejected);
    assert_eq!(exit.order.limit_price, None, "a MARKET order has none");
    assert_eq!(exit.history.last().unwrap().detail.as_deref(), Some("DH-906 rejected"));

    assert_eq!(
        store.fills().unwrap(),
        vec![fill("T-1", "E-p1-1", 10_000), fill("T-2", "X-p2-2", 9_450)]
    );
    assert_eq!(store.closed_trades().unwrap(), vec![closed("p0")]);
    assert_eq!(store.daily_pnl().unwrap(), vec![daily(1, 143_672)]);
    assert_eq!(store.trading_state().unwrap(), Some(halted(Some(day()))));
    let audit_log = store.audit().unwrap();
    assert_eq!(
        audit_log.iter().map(|a| (a.event_id, a.record.clone())).collect::<Vec<_>>(),
        vec![
            (EventId(1_014), audit(Actor::Operator, "flatten", "from the control API")),
            (EventId(1_015), audit(Actor::Reconciliation, "adopt", "{\"position\":\"p2\"}")),
            (EventId(1_016), audit(Actor::Operator, "note", QUOTED)),
        ]
    );
    assert_eq!(store.last_event_id().unwrap(), Some(EventId(1_016)));

    // Later upserts replace: the position exits, the day moves on, trading resumes.
    let mut p2 = exiting_position("p2");
    p2.state = PositionState::Exited;
    p2.exit_price = Some(Paise(9_450));
    p2.exited_at = Some(Timestamp(T0 + 9_000));
    let resumed = TradingStateRecord {
        state: TradingStateKind::Active,
        reason: "operator resume".into(),
        since: Timestamp(T0 + 20_000),
        latched_day: None,
        updated_at: Timestamp(T0 + 20_000),
    };
    store
        .apply(&events(
            2_000,
            vec![
                EventKind::PositionUpsert(p2.clone()),
                EventKind::DailyPnl(daily(2, 150_000)),
                EventKind::TradingState(resumed.clone()),
            ],
        ))
        .unwrap();
    assert_eq!(store.positions().unwrap()[1], p2);
    assert_eq!(store.daily_pnl().unwrap(), vec![daily(2, 150_000)]);
    assert_eq!(store.trading_state().unwrap(), Some(resumed));

    // A second connection reads the same.
    let mut again = open();
    assert_eq!(again.positions().unwrap(), store.positions().unwrap());
    assert_eq!(again.orders().unwrap(), store.orders().unwrap());
}
both_backends!(every_table_round_trips, round_trip);

fn migrations(open: Open<'_>) {
    let mut first = open();
    let known: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(first.schema_versions().unwrap(), known, "applied from empty");
    first.apply(&events(1, vec![EventKind::PositionUpsert(position("p1"))])).unwrap();
    drop(first);
    // Opening again re-runs the migrator: nothing to do, data untouched.
    let mut second = open();
    assert_eq!(second.schema_versions().unwrap(), known, "re-applied as a no-op");
    assert_eq!(second.positions().unwrap(), vec![position("p1")]);
    drop(second);
    let mut third = open();
    assert_eq!(third.schema_versions().unwrap(), known);
}
both_backends!(migrations_apply_from_empty_and_reapply_idempotently, migrations);

fn twice(open: Open<'_>) {
    let mut store = open();
    let batch = events(5_000, every_kind());
    store.apply(&batch).unwrap();
    let snapshot = |s: &mut Box<dyn Store>| {
        (
            s.positions().unwrap(),
            s.orders().unwrap(),
            s.fills().unwrap(),
            s.closed_trades().unwrap(),
            s.daily_pnl().unwrap(),
            s.trading_state().unwrap(),
            s.audit().unwrap(),
        )
    };
    let before = snapshot(&mut store);
    let outcome = store.apply(&batch).unwrap();
    assert_eq!(outcome, ApplyOutcome { applied: 0, duplicates: batch.len() });
    assert_eq!(snapshot(&mut store), before, "the same batch twice changes nothing");

    // A batch that overlaps (a replay that was half committed) applies only the new part; a
    // stale upsert replayed under its old id does not undo the newer one.
    let mut newer = position("p1");
    newer.best_price = Paise(12_345);
    let fresh = events(6_000, vec![EventKind::PositionUpsert(newer.clone())]);
    store.apply(&fresh).unwrap();
    let mut overlap = batch[..1].to_vec(); // the old upsert of p1, id 5_000
    overlap.extend(events(7_000, vec![EventKind::Audit(audit(Actor::Engine, "new", "x"))]));
    let outcome = store.apply(&overlap).unwrap();
    assert_eq!(outcome, ApplyOutcome { applied: 1, duplicates: 1 });
    assert_eq!(store.positions().unwrap()[0], newer);
    assert_eq!(store.audit().unwrap().len(), 4);
}
both_backends!(applying_the_same_batch_twice_is_a_no_op, twice);

fn recovery(open: Open<'_>) {
    let mut store = open();
    let mut p3 = position("p3");
    p3.state = PositionState::Exited;
    p3.exited_at = Some(Timestamp(T0 + 9_000));
    let exit_order =
        order("X-p2-2", "p2", OrderPurpose::Exit(ExitReason::RatchetStop), OrderStatus::Created);
    let yesterday = day().pred_opt().unwrap();
    store
        .apply(&events(
            10_000,
            vec![
                EventKind::PositionUpsert(position("p1")),
                EventKind::PositionUpsert(exiting_position("p2")),
                EventKind::PositionUpsert(p3),
                EventKind::OrderPlaced(order(
                    "E-p1-1",
                    "p1",
                    OrderPurpose::Entry,
                    OrderStatus::Created,
                )),
                EventKind::OrderStatus(status_change("E-p1-1", OrderStatus::Traded, T0 + 50)),
                EventKind::OrderPlaced(exit_order.clone()),
                EventKind::OrderStatus(status_change("X-p2-2", OrderStatus::Unknown, T0 + 60)),
                EventKind::OrderPlaced(order(
                    "X-p3-1",
                    "p3",
                    OrderPurpose::Exit(ExitReason::StopLoss),
                    OrderStatus::Created,
                )),
                EventKind::OrderStatus(status_change("X-p3-1", OrderStatus::Traded, T0 + 70)),
                EventKind::DailyPnl(DailyPnlRecord {
                    trading_day: yesterday,
                    ..daily(7, -250_000)
                }),
                EventKind::DailyPnl(daily(3, -480_000)),
                EventKind::TradingState(halted(Some(day()))),
            ],
        ))
        .unwrap();

    let r = store.load_recovery(day()).unwrap();
    assert_eq!(r.trading_day, day());
    assert_eq!(r.open_positions, vec![position("p1"), exiting_position("p2")]);
    let p2 = &r.open_positions[1];
    assert_eq!(p2.exit_correlation_id, Some(cid("X-p2-2")));
    assert_eq!(p2.ratchet_stop, Some(Paise(9_500)));
    assert_eq!(p2.hwm_pnl, Paise(90_000));
    assert_eq!(r.open_orders.len(), 1, "only the exit order in flight");
    let o = &r.open_orders[0];
    assert_eq!(o.correlation_id, cid("X-p2-2"));
    assert_eq!(o.status, OrderStatus::Unknown);
    assert_eq!(o.position_id, PositionId::new("p2"));
    assert_eq!(r.latched_halt(), Some(&halted(Some(day()))), "a halt latched today survives");
    assert_eq!(r.today, daily(3, -480_000));
    assert_eq!(r.last_event_id, Some(EventId(10_011)));

    // The next session: the halt has expired and the day starts at zero.
    let tomorrow = day().succ_opt().unwrap();
    let r = store.load_recovery(tomorrow).unwrap();
    assert_eq!(r.latched_halt(), None);
    assert_eq!(r.trading_state, Some(halted(Some(day()))), "the stored row is returned as is");
    assert_eq!(r.today, DailyPnlRecord::empty(tomorrow));
    assert_eq!(r.open_positions.len(), 2);
}
both_backends!(recovery_returns_open_positions_in_flight_orders_latched_halt_and_today, recovery);

fn empty_recovery(open: Open<'_>) {
    let mut store = open();
    let r = store.load_recovery(day()).unwrap();
    assert!(r.open_positions.is_empty() && r.open_orders.is_empty());
    assert_eq!(r.trading_state, None);
    assert_eq!(r.today, DailyPnlRecord::empty(day()));
    assert_eq!(r.last_event_id, None);
}
both_backends!(recovery_from_an_empty_store_is_empty, empty_recovery);
