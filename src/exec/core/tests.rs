//! Tests of the exit core: exactly-once exits, order feedback, timed and account rules,
//! entries, snapshots and restore.

use super::*;
use crate::domain::{Bp, Segment, Side};
use crate::risk::TradingState;
use crate::risk::entry::{EntryRefusal, EntryRequest};
use crate::risk::position::Origin;
use crate::risk::trading_state::{TradingCell, TradingCommand};

const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);

fn ist(text: &str) -> Timestamp {
    Timestamp::parse(&format!("2025-11-24T{text}+05:30")).unwrap()
}

fn tick(instrument: InstrumentKey, ltp: i64, at: Timestamp) -> Tick {
    Tick::at(instrument, Paise(ltp), at)
}

fn core_with(params: CoreParams) -> ExitCore {
    ExitCore::new(params, TradingCell::active(ist("09:00:00")))
}

fn core() -> ExitCore {
    core_with(CoreParams::default())
}

fn adopt(
    core: &mut ExitCore,
    id: &str,
    instrument: InstrumentKey,
    side: Side,
    qty: i64,
    entry: i64,
    at: Timestamp,
) {
    let new = NewPosition {
        id: PositionId::new(id),
        instrument,
        side,
        quantity: Qty(qty),
        entry_price: Paise(entry),
        opened_at: at,
    };
    core.open_position(new, Origin::Adopted).unwrap();
}

fn intents(events: &[CoreEvent]) -> Vec<&OrderIntent> {
    events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::ExitIntent(i) => Some(i),
            _ => None,
        })
        .collect()
}

fn trades(events: &[CoreEvent]) -> Vec<&ClosedTrade> {
    events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::TradeClosed(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect()
}

fn cid(s: &str) -> CorrelationId {
    CorrelationId::new(s).unwrap()
}

/// Fills every intent in `events` in full at its reference price; returns the closed trades.
fn fill_all(core: &mut ExitCore, events: &[CoreEvent]) -> Vec<ClosedTrade> {
    let mut closed = Vec::new();
    for i in intents(events) {
        let ev = core
            .on_exit_filled(&i.correlation_id, i.reference_price, i.quantity, i.created_at)
            .unwrap();
        closed.extend(trades(&ev).into_iter().cloned());
    }
    closed
}

#[test]
fn a_firing_tick_emits_exactly_one_exit_intent() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    let ev = c.on_tick(&tick(A, 9_000, ist("09:31:00")));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    let x = xs[0];
    assert_eq!(x.correlation_id, cid("X1-p1"));
    assert_eq!(x.purpose, OrderPurpose::Exit(ExitReason::StopLoss));
    assert_eq!((x.txn, x.quantity, x.reference_price), (Txn::Sell, Qty(75), Paise(9_000)));
    assert_eq!((x.created_at, x.price_is_stale), (ist("09:31:00"), false));
    // Further triggers while exiting produce nothing more.
    assert!(intents(&c.on_tick(&tick(A, 8_000, ist("09:31:01")))).is_empty());
    assert!(intents(&c.on_clock(ist("15:20:00"))).is_empty());
    assert!(intents(&c.flatten(ist("15:21:00"))).is_empty());
}

#[test]
fn a_tick_firing_a_rule_and_the_daily_loss_limit_emits_one_intent() {
    let params = CoreParams {
        limits: Limits { max_daily_loss: Paise(50_000), ..Limits::default() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    // −₹10.00 × 75 = −₹750.00: stop loss and the ₹500 daily loss limit on the same tick.
    let ev = c.on_tick(&tick(A, 9_000, ist("09:31:00")));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].purpose, OrderPurpose::Exit(ExitReason::StopLoss));
    assert_eq!(c.trading().state(), TradingState::Halted);
}

#[test]
fn ticks_before_opened_at_are_ignored() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    assert!(c.on_tick(&tick(A, 5_000, ist("09:29:59.999"))).is_empty());
    let p = c.position(&PositionId::new("p1")).unwrap();
    assert_eq!((p.last_price, p.last_price_at), (Paise(10_000), None));
    assert_eq!(intents(&c.on_tick(&tick(A, 9_000, ist("09:30:00")))).len(), 1);
}

#[test]
fn ticks_of_other_instruments_do_not_touch_a_position() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    assert!(c.on_tick(&tick(B, 1, ist("09:31:00"))).is_empty());
    assert_eq!(c.position(&PositionId::new("p1")).unwrap().last_price, Paise(10_000));
}

#[test]
fn exit_fill_closes_the_trade_with_the_spec_pnl() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_clock(ist("09:30:00"));
    let ev = c.on_tick(&tick(A, 12_000, ist("09:40:00")));
    let closed = fill_all(&mut c, &ev);
    assert_eq!(closed.len(), 1);
    let t = &closed[0];
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::TakeProfit, Paise(12_000), ist("09:40:00"))
    );
    assert_eq!(
        (t.gross, t.entry_charges, t.exit_charges, t.net),
        (Paise(150_000), Paise(2_695), Paise(3_633), Paise(143_672))
    );
    assert!(c.position(&PositionId::new("p1")).is_none());
    assert_eq!(c.day().realised_net, Paise(143_672));
    assert_eq!(c.day().charges, Paise(6_328));
    assert_eq!(c.day().closed, 1);
    // A second fill for the same order is refused, not double counted.
    assert!(matches!(
        c.on_exit_filled(&cid("X1-p1"), Paise(12_000), Qty(75), ist("09:40:01")),
        Err(CoreError::UnknownOrder(_))
    ));
    assert_eq!(c.day().realised_net, Paise(143_672));
}

#[test]
fn rejected_exit_returns_to_active_and_the_next_trigger_after_the_backoff_is_attempt_two() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_tick(&tick(A, 9_000, ist("09:31:00")));
    let ev = c.on_exit_rejected(&cid("X1-p1"), "Exchange busy", ist("09:31:01")).unwrap();
    assert!(ev.iter().any(|e| matches!(e, CoreEvent::Alert(a) if a.code == "exit_rejected")));
    let p = c.position(&PositionId::new("p1")).unwrap();
    assert!(
        matches!(&p.lifecycle, Lifecycle::Active { attempts: 1, last_rejection: Some(r) } if r.why == "Exchange busy")
    );
    let ev = c.on_tick(&tick(A, 8_990, ist("09:31:02")));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].correlation_id, cid("X2-p1"));
    // The rejected order's id is no longer in flight.
    assert!(c.on_exit_rejected(&cid("X1-p1"), "again", ist("09:31:03")).is_err());
}

#[test]
fn part_fills_close_the_trade_on_the_last_part_with_one_exit_leg() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_tick(&tick(A, 12_000, ist("09:40:00")));
    let ev = c.on_exit_filled(&cid("X1-p1"), Paise(12_000), Qty(25), ist("09:40:01")).unwrap();
    assert!(trades(&ev).is_empty());
    assert_eq!(c.position(&PositionId::new("p1")).unwrap().open_quantity(), Qty(50));
    let ev = c.on_exit_filled(&cid("X1-p1"), Paise(12_000), Qty(50), ist("09:40:02")).unwrap();
    let t = trades(&ev)[0];
    assert_eq!((t.quantity, t.net), (Qty(75), Paise(143_672)));
}

#[test]
fn daily_loss_limit_flattens_every_active_position_at_its_last_price_and_halts() {
    let params = CoreParams {
        risk: RiskParams::all_off(),
        limits: Limits { max_daily_loss: Paise(100_000), ..Limits::default() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    adopt(&mut c, "p1", A, Side::Long, 100, 10_000, ist("09:30:00"));
    adopt(&mut c, "p2", B, Side::Short, 100, 10_000, ist("09:30:00"));
    assert!(c.on_tick(&tick(B, 10_500, ist("09:31:00"))).is_empty()); // −₹500
    assert!(c.on_tick(&tick(A, 9_501, ist("09:32:00"))).is_empty()); // −₹499: −₹999 in all
    let ev = c.on_tick(&tick(A, 9_500, ist("09:33:00"))); // −₹1,000: at the limit
    let xs = intents(&ev);
    assert_eq!(xs.len(), 2);
    assert!(xs.iter().all(|x| x.purpose == OrderPurpose::Exit(ExitReason::DailyLossLimit)));
    let prices: Vec<(String, Paise)> =
        xs.iter().map(|x| (x.position_id.to_string(), x.reference_price)).collect();
    assert_eq!(prices, [("p1".to_string(), Paise(9_500)), ("p2".to_string(), Paise(10_500))]);
    assert_eq!(c.trading().state(), TradingState::Halted);
    assert!(
        ev.iter().any(
            |e| matches!(e, CoreEvent::TradingState(ch) if ch.current == TradingState::Halted)
        )
    );
    assert!(ev.iter().any(|e| matches!(e, CoreEvent::Alert(a) if a.code == "daily_loss_limit")));
    // Latched: nothing more on later ticks.
    assert!(c.on_tick(&tick(A, 9_000, ist("09:34:00"))).is_empty());
}

#[test]
fn daily_loss_counts_realised_net_of_closed_trades() {
    let params = CoreParams {
        limits: Limits { max_daily_loss: Paise(90_000), ..Limits::default() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    c.on_clock(ist("09:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    adopt(&mut c, "p2", B, Side::Long, 10, 10_000, ist("09:30:00"));
    // p1 stops out at ₹90.00: gross −₹750.00; entry leg ₹26.95; exit leg (sell ₹6,750.00):
    // brokerage 20.00 + STT 6.75 + exchange 2.36 + SEBI 0.01 + GST 18 % × 22.37 = 4.03 → 33.15.
    let ev = c.on_tick(&tick(A, 9_000, ist("09:31:00")));
    fill_all(&mut c, &ev);
    assert_eq!(c.day().realised_net, Paise(-81_010));
    // p2 (10 units): −₹8.98/unit leaves the day at −₹899.90; −₹8.99 reaches −₹900.00.
    assert!(intents(&c.on_tick(&tick(B, 9_102, ist("09:32:00")))).is_empty());
    let ev = c.on_tick(&tick(B, 9_101, ist("09:33:00")));
    assert_eq!(intents(&ev).len(), 1);
    assert_eq!(intents(&ev)[0].purpose, OrderPurpose::Exit(ExitReason::DailyLossLimit));
    assert_eq!(c.trading().state(), TradingState::Halted);
}

#[test]
fn square_off_exits_at_the_square_off_instant_with_the_last_price() {
    let mut c = core();
    c.on_clock(ist("15:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("15:00:00"));
    adopt(&mut c, "p2", B, Side::Short, 75, 10_000, ist("15:00:00"));
    c.on_tick(&tick(A, 10_100, ist("15:10:00")));
    assert!(c.on_clock(ist("15:19:59.999")).is_empty());
    let ev = c.on_clock(ist("15:25:00"));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 2);
    for x in &xs {
        assert_eq!(x.purpose, OrderPurpose::Exit(ExitReason::SquareOff));
        assert_eq!(x.created_at, ist("15:20:00"));
    }
    assert_eq!(xs[0].reference_price, Paise(10_100));
    assert_eq!(xs[1].reference_price, Paise(10_000)); // no tick seen: entry price
    assert!(xs[1].price_is_stale);
    // A rejected square-off is retried at the first clock step after its backoff.
    c.on_exit_rejected(&cid("X1-p1"), "exchange busy", ist("15:25:01")).unwrap();
    let ev = c.on_clock(ist("15:25:02"));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!((xs[0].correlation_id.as_str(), xs[0].created_at), ("X2-p1", ist("15:25:02")));
}

#[test]
fn square_off_is_not_on_a_holiday() {
    let mut params = CoreParams::default();
    params.session.holidays.insert(chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap());
    let mut c = core_with(params);
    c.on_clock(ist("15:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("15:00:00"));
    assert!(intents(&c.on_clock(ist("15:30:00"))).is_empty());
}

#[test]
fn stale_feed_exit_after_the_configured_silence_only_when_configured() {
    let mut off = core();
    off.on_clock(ist("10:00:00"));
    adopt(&mut off, "p1", A, Side::Long, 75, 10_000, ist("10:00:00"));
    assert!(intents(&off.on_clock(ist("11:00:00"))).is_empty());

    let params = CoreParams {
        risk: RiskParams { stale_exit_after_secs: 30, ..RiskParams::default() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    c.on_clock(ist("10:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("10:00:00"));
    c.on_tick(&tick(A, 10_050, ist("10:00:10")));
    assert!(intents(&c.on_clock(ist("10:00:39.999"))).is_empty());
    let ev = c.on_clock(ist("10:00:45"));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].purpose, OrderPurpose::Exit(ExitReason::StaleFeed));
    assert_eq!(
        (xs[0].created_at, xs[0].reference_price, xs[0].price_is_stale),
        (ist("10:00:40"), Paise(10_050), true)
    );
}

#[test]
fn kill_switch_flattens_and_halts_until_resumed() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    adopt(&mut c, "p2", B, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_tick(&tick(A, 9_000, ist("09:31:00"))); // p1 already exiting on stop loss
    let ev = c.flatten(ist("09:32:00"));
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!(
        (xs[0].position_id.as_str(), xs[0].purpose),
        ("p2", OrderPurpose::Exit(ExitReason::KillSwitch))
    );
    assert_eq!(c.trading().state(), TradingState::Halted);
    // Halted: no new session on the same day, an explicit resume lifts it.
    assert!(c.on_clock(ist("09:40:00")).iter().all(|e| !matches!(e, CoreEvent::TradingState(_))));
    assert_eq!(c.resume(ist("09:45:00")).unwrap().len(), 1);
    assert_eq!(c.trading().state(), TradingState::Active);
}

#[test]
fn an_entry_that_fills_after_the_kill_switch_exits_at_once() {
    let mut c = core();
    c.on_clock(ist("09:59:00"));
    c.on_tick(&tick(A, 10_000, ist("10:00:00")));
    let req = EntryRequest {
        position_id: PositionId::new("e1"),
        instrument: A,
        side: Side::Long,
        quantity: Qty(75),
        available_cash: None,
    };
    let intent = c.begin_entry(&req, ist("10:00:01")).unwrap();
    assert!(intents(&c.flatten(ist("10:00:02"))).is_empty(), "nothing open yet");
    let ev =
        c.on_entry_filled(&intent.correlation_id, Paise(10_005), Qty(75), ist("10:00:03")).unwrap();
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1, "{ev:?}");
    assert_eq!(
        (xs[0].position_id.as_str(), xs[0].purpose),
        ("e1", OrderPurpose::Exit(ExitReason::KillSwitch))
    );
}

#[test]
fn a_new_trading_day_lifts_the_halt_and_resets_the_counters() {
    let mut c = core();
    c.on_clock(ist("09:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    let ev = c.on_tick(&tick(A, 9_000, ist("09:31:00")));
    fill_all(&mut c, &ev);
    c.flatten(ist("10:00:00"));
    assert_ne!(c.day().realised_net, Paise::ZERO);
    // Monday's halt and figures end when Tuesday's session begins.
    let tuesday = Timestamp::parse("2025-11-25T00:00:00+05:30").unwrap();
    let ev = c.on_clock(tuesday);
    assert!(ev.iter().any(|e| matches!(e, CoreEvent::SessionStarted { .. })));
    assert_eq!(c.trading().state(), TradingState::Active);
    assert_eq!(c.day().realised_net, Paise::ZERO);
    assert_eq!(c.day().session, chrono::NaiveDate::from_ymd_opt(2025, 11, 25));
}

#[test]
fn a_weekend_does_not_lift_a_halt() {
    let mut c = core();
    let fri = |t: &str| Timestamp::parse(&format!("2025-11-21T{t}+05:30")).unwrap();
    c.on_clock(fri("10:00:00"));
    c.flatten(fri("10:00:01"));
    c.on_clock(Timestamp::parse("2025-11-22T10:00:00+05:30").unwrap());
    assert_eq!(c.trading().state(), TradingState::Halted);
    c.on_clock(Timestamp::parse("2025-11-24T00:00:00+05:30").unwrap());
    assert_eq!(c.trading().state(), TradingState::Active);
}

#[test]
fn entries_count_pending_orders_and_open_on_fill() {
    let params = CoreParams {
        limits: Limits { max_open_positions: 1, ..Limits::default() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    c.on_clock(ist("09:59:00"));
    c.on_tick(&tick(A, 10_000, ist("10:00:00")));
    let req = |id: &str| EntryRequest {
        position_id: PositionId::new(id),
        instrument: A,
        side: Side::Long,
        quantity: Qty(75),
        available_cash: None,
    };
    let intent = c.begin_entry(&req("e1"), ist("10:00:01")).unwrap();
    assert_eq!(
        (intent.correlation_id.as_str(), intent.txn, intent.purpose),
        ("N1-e1", Txn::Buy, OrderPurpose::Entry)
    );
    assert!(matches!(
        c.check_entry(&req("e2"), ist("10:00:01")),
        Err(EntryRefusal::MaxOpenPositions { pending: 1, .. })
    ));
    c.on_entry_filled(&intent.correlation_id, Paise(10_005), Qty(75), ist("10:00:02")).unwrap();
    assert_eq!(c.day().trades, 1);
    let p = c.position(&PositionId::new("e1")).unwrap();
    assert_eq!((p.entry_price, p.origin), (Paise(10_005), Origin::Entry));
    assert!(matches!(
        c.check_entry(&req("e2"), ist("10:00:02")),
        Err(EntryRefusal::MaxOpenPositions { open: 1, pending: 0, .. })
    ));
}

#[test]
fn rejected_entry_frees_its_place_and_a_retry_gets_a_new_id() {
    let mut c = core();
    c.on_tick(&tick(A, 10_000, ist("10:00:00")));
    let req = EntryRequest {
        position_id: PositionId::new("e1"),
        instrument: A,
        side: Side::Short,
        quantity: Qty(75),
        available_cash: Some(Paise(10_000_000)),
    };
    let first = c.begin_entry(&req, ist("10:00:01")).unwrap();
    c.on_entry_rejected(&first.correlation_id, "margin", ist("10:00:02")).unwrap();
    let second = c.begin_entry(&req, ist("10:00:02")).unwrap();
    assert_eq!((first.correlation_id.as_str(), second.correlation_id.as_str()), ("N1-e1", "N2-e1"));
}

#[test]
fn a_limit_entry_keeps_its_price_pending_in_flight_and_across_a_restore() {
    let params = CoreParams::default();
    let mut c = core_with(params.clone());
    c.on_tick(&tick(A, 10_000, ist("10:00:00")));
    let req = EntryRequest {
        position_id: PositionId::new("e1"),
        instrument: A,
        side: Side::Long,
        quantity: Qty(450),
        available_cash: None,
    };
    let intent = c.begin_entry_at(&req, ist("10:00:01"), Some(Paise(9_950))).unwrap();
    assert_eq!(intent.limit_price, Some(Paise(9_950)));
    let in_flight = |c: &ExitCore| -> Vec<(String, Option<Paise>)> {
        let v = c.orders_in_flight();
        v.into_iter().map(|o| (o.intent.correlation_id.to_string(), o.intent.limit_price)).collect()
    };
    let want = [("N1-e1".to_string(), Some(Paise(9_950)))];
    assert_eq!(in_flight(&c), want);
    let json = serde_json::to_string(&c.export()).unwrap();
    let back: CoreState = serde_json::from_str(&json).unwrap();
    let r = ExitCore::restore(params, TradingCell::new(c.trading().status()), back).unwrap();
    assert_eq!(in_flight(&r), want, "the price survives a restart");
    // A market entry has none.
    let req = EntryRequest { position_id: PositionId::new("e2"), ..req };
    assert_eq!(c.begin_entry(&req, ist("10:00:02")).unwrap().limit_price, None);
}

#[test]
fn reentry_cooldown_runs_from_the_exit_fill() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    let ev = c.on_tick(&tick(A, 9_000, ist("10:00:00")));
    fill_all(&mut c, &ev);
    let req = EntryRequest {
        position_id: PositionId::new("e1"),
        instrument: A,
        side: Side::Long,
        quantity: Qty(75),
        available_cash: None,
    };
    c.on_tick(&tick(A, 9_000, ist("10:03:00")));
    assert!(matches!(
        c.check_entry(&req, ist("10:03:00")),
        Err(EntryRefusal::ReentryCooldown { .. })
    ));
    c.on_tick(&tick(A, 9_000, ist("10:03:00.001")));
    assert!(c.check_entry(&req, ist("10:03:00.001")).is_ok());
}

#[test]
fn entries_are_refused_while_halted_or_reducing() {
    let mut c = core();
    c.on_tick(&tick(A, 10_000, ist("10:00:00")));
    let req = EntryRequest {
        position_id: PositionId::new("e1"),
        instrument: A,
        side: Side::Long,
        quantity: Qty(75),
        available_cash: None,
    };
    c.trading()
        .apply(TradingCommand::Reduce { why: "broker down".into() }, ist("10:00:00"))
        .unwrap();
    assert!(matches!(
        c.check_entry(&req, ist("10:00:01")),
        Err(EntryRefusal::TradingNotActive { state: TradingState::Reducing })
    ));
    c.flatten(ist("10:00:01"));
    assert!(matches!(
        c.check_entry(&req, ist("10:00:01")),
        Err(EntryRefusal::TradingNotActive { state: TradingState::Halted })
    ));
}

#[test]
fn snapshot_shows_unrealised_at_last_price_and_the_day() {
    let mut c = core();
    c.on_clock(ist("09:00:00"));
    adopt(&mut c, "p2", B, Side::Short, 50, 8_000, ist("09:30:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_tick(&tick(A, 10_500, ist("09:31:00")));
    c.on_tick(&tick(B, 8_100, ist("09:31:00")));
    let s = c.snapshot(ist("09:31:01"), Mono::of_wall(ist("09:31:01")));
    let ids: Vec<&str> = s.positions.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(s.positions[0].unrealised_gross, Paise(37_500));
    assert_eq!(s.positions[1].unrealised_gross, Paise(-5_000));
    assert!(!s.positions[0].price_is_stale);
    assert_eq!(s.account.unrealised_gross, Paise(32_500));
    assert_eq!(s.account.day_pnl, Paise(32_500));
    assert_eq!(s.account.open_positions, 2);
    let later = ist("09:31:04");
    assert!(c.snapshot(later, Mono::of_wall(later)).positions[0].price_is_stale);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["account"]["session"], "2025-11-24");
}

#[test]
fn restore_continues_exactly_including_an_exit_in_flight() {
    let params = CoreParams::default();
    let mut c = core_with(params.clone());
    c.on_clock(ist("09:00:00"));
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    adopt(&mut c, "p2", B, Side::Long, 75, 10_000, ist("09:30:00"));
    c.on_tick(&tick(A, 11_600, ist("09:31:00"))); // ratchet stop at ₹100.00
    c.on_tick(&tick(B, 9_000, ist("09:31:00"))); // p2 exiting on stop loss
    let state = c.export();
    let json = serde_json::to_string(&state).unwrap();
    let back: CoreState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);

    let trading = TradingCell::new(c.trading().status());
    let mut r = ExitCore::restore(params, trading, back).unwrap();
    assert_eq!(r.export(), state);
    // The exit in flight is still known by its id, and no second intent is made for it.
    assert!(intents(&r.on_tick(&tick(B, 8_000, ist("09:32:00")))).is_empty());
    let ev = r.on_exit_filled(&cid("X1-p2"), Paise(9_000), Qty(75), ist("09:32:01")).unwrap();
    assert_eq!(trades(&ev).len(), 1);
    // The risk state survived: the ratchet stop fires at exactly ₹100.00.
    let ev = r.on_tick(&tick(A, 10_000, ist("09:33:00")));
    assert_eq!(intents(&ev)[0].purpose, OrderPurpose::Exit(ExitReason::RatchetStop));
}

#[test]
fn restore_refuses_inconsistent_state() {
    let p = Position::open(
        PositionId::new("p1"),
        A,
        Side::Long,
        Qty(75),
        Paise(10_000),
        ist("09:30:00"),
        Origin::Adopted,
    );
    let state = CoreState { positions: vec![p.clone(), p], ..CoreState::default() };
    let err = ExitCore::restore(CoreParams::default(), TradingCell::active(ist("09:00:00")), state)
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn positions_are_refused_with_bad_terms_or_duplicate_ids() {
    let mut c = core();
    adopt(&mut c, "p1", A, Side::Long, 75, 10_000, ist("09:30:00"));
    let new = |id: &str, qty: i64, price: i64| NewPosition {
        id: PositionId::new(id),
        instrument: A,
        side: Side::Long,
        quantity: Qty(qty),
        entry_price: Paise(price),
        opened_at: ist("09:30:00"),
    };
    assert!(matches!(
        c.open_position(new("p1", 75, 10_000), Origin::Adopted),
        Err(CoreError::DuplicatePosition { .. })
    ));
    assert!(matches!(
        c.open_position(new("p2", 0, 10_000), Origin::Adopted),
        Err(CoreError::InvalidPosition { .. })
    ));
    assert!(matches!(
        c.open_position(new("p3", 1, 0), Origin::Adopted),
        Err(CoreError::InvalidPosition { .. })
    ));
}

#[test]
fn shorts_exit_on_rising_prices() {
    let params = CoreParams {
        risk: RiskParams { take_profit: Bp(2_000), ..RiskParams::all_off() },
        ..CoreParams::default()
    };
    let mut c = core_with(params);
    adopt(&mut c, "s1", A, Side::Short, 50, 8_000, ist("09:30:00"));
    assert!(c.on_tick(&tick(A, 6_401, ist("09:31:00"))).is_empty());
    let ev = c.on_tick(&tick(A, 6_400, ist("09:32:00")));
    let x = intents(&ev)[0];
    assert_eq!((x.txn, x.purpose), (Txn::Buy, OrderPurpose::Exit(ExitReason::TakeProfit)));
}
