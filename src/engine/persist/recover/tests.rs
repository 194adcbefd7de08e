use super::*;
use crate::domain::{ExitReason, OrderId, Segment};
use crate::exec::core::{CoreParams, ExitCore};
use crate::risk::trading_state::{HaltCause, TradingCell};
use crate::store::{DailyPnlRecord, EventId};

const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

fn ist(text: &str) -> Timestamp {
    Timestamp::parse(&format!("{text}+05:30")).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 11, d).unwrap()
}

fn cid(s: &str) -> CorrelationId {
    CorrelationId::new(s).unwrap()
}

fn record(id: &str, opened: &str) -> PositionRecord {
    let at = ist(opened);
    PositionRecord {
        best_price: Paise(11_000),
        hwm_pnl: Paise(75_000),
        ratchet_stop: Some(Paise(10_150)),
        last_price: Paise(10_900),
        last_price_at: Some(at.plus_millis(60_000)),
        updated_at: at.plus_millis(60_000),
        ..PositionRecord::opened(
            PositionId::new(id),
            A,
            Side::Long,
            Qty(75),
            Paise(10_000),
            at,
            PositionSource::Entry,
        )
    }
}

fn exiting(id: &str, opened: &str, attempt: u32) -> PositionRecord {
    PositionRecord {
        state: PositionState::Exiting,
        exit_attempts: attempt,
        exit_reason: Some(ExitReason::RatchetStop),
        exit_trigger_price: Some(Paise(10_150)),
        exit_trigger_at: Some(ist(opened).plus_millis(90_000)),
        exit_correlation_id: Some(correlation::exit_id(&PositionId::new(id), attempt).unwrap()),
        ..record(id, opened)
    }
}

fn fill(trade: &str, corr: &str, qty: i64, price: i64, at: Timestamp) -> FillRecord {
    FillRecord {
        trade_id: trade.into(),
        correlation_id: cid(corr),
        order_id: OrderId(format!("O-{trade}")),
        instrument: A,
        txn: Txn::Sell,
        quantity: Qty(qty),
        price: Paise(price),
        value: None,
        at,
    }
}

fn closed(id: &str, net: i64, charges: i64, at: Timestamp) -> ClosedTradeRecord {
    ClosedTradeRecord {
        position_id: PositionId::new(id),
        instrument: A,
        side: Side::Long,
        reason: ExitReason::TakeProfit,
        entry_price: Paise(10_000),
        exit_price: Paise(12_000),
        quantity: Qty(75),
        gross: Paise(net + charges),
        charges: Paise(charges),
        net: Paise(net),
        closed_at: at,
    }
}

fn halted(latched: Option<NaiveDate>, since: Timestamp) -> TradingStateRecord {
    TradingStateRecord {
        state: TradingStateKind::Halted,
        reason: "daily_loss_limit".into(),
        since,
        latched_day: latched,
        updated_at: since,
    }
}

fn stored(open: Vec<PositionRecord>, all: Vec<PositionRecord>) -> Stored {
    Stored {
        recovery: Recovery {
            trading_day: day(24),
            open_positions: open,
            open_orders: Vec::new(),
            trading_state: None,
            today: DailyPnlRecord::empty(day(24)),
            last_event_id: None,
        },
        positions: all,
        closed_trades: Vec::new(),
        fills: Vec::new(),
    }
}

fn params() -> RestoreParams {
    RestoreParams {
        session: SessionClock::default(),
        charges: ChargeSchedule::default(),
        paper: Some(PaperParams::default()),
    }
}

const NOW: &str = "2025-11-24T11:00:00";

#[test]
fn a_halt_latched_today_survives_a_restart_and_one_of_an_earlier_day_is_lifted() {
    let now = ist(NOW);
    let cases = [
        (Some(day(24)), TradingState::Halted, 0),
        (None, TradingState::Halted, 0), // unlatched record: its own day (today)
        (Some(day(21)), TradingState::Active, 2),
    ];
    for (latched, want, records) in cases {
        let since = if latched == Some(day(21)) {
            ist("2025-11-21T14:00:00")
        } else {
            ist("2025-11-24T10:30:00")
        };
        let mut out = Vec::new();
        let s = trading_status(Some(&halted(latched, since)), day(24), now, &mut out);
        assert_eq!(s.state, want, "{latched:?}");
        assert_eq!(out.len(), records, "{latched:?}");
        if want == TradingState::Halted {
            assert_eq!(
                (s.reason.clone(), s.since),
                (ChangeReason::Halt { cause: HaltCause::DailyLossLimit }, since)
            );
        } else {
            assert_eq!((s.reason.clone(), s.since), (ChangeReason::NewSession, now));
            assert!(
                matches!(&out[0], EventKind::TradingState(r) if r.state == TradingStateKind::Active)
            );
        }
    }
}

#[test]
fn reducing_restarts_active_and_nothing_stored_starts_active() {
    let now = ist(NOW);
    let mut out = Vec::new();
    let reducing = TradingStateRecord {
        state: TradingStateKind::Reducing,
        reason: "reduce: market feed stopped".into(),
        since: ist("2025-11-24T10:00:00"),
        latched_day: None,
        updated_at: ist("2025-11-24T10:00:00"),
    };
    assert_eq!(trading_status(Some(&reducing), day(24), now, &mut out).state, TradingState::Active);
    assert_eq!(out.len(), 2, "the change and its audit line are recorded");
    out.clear();
    assert_eq!(
        trading_status(None, day(24), now, &mut out),
        TradingStatus::new(TradingState::Active, now)
    );
    assert!(out.is_empty());
}

#[test]
fn an_exiting_position_keeps_its_exit_order_and_its_fills_wait_for_reconciliation() {
    let mut s = stored(vec![exiting("P1-1", "2025-11-24T10:00:00", 1)], vec![]);
    s.fills = vec![fill("T9", "X1-P1-1", 75, 10_150, ist("2025-11-24T10:01:31"))];
    let st = restart_state(&s, &params(), ist(NOW)).unwrap();
    let p = &st.core.positions[0];
    let Lifecycle::Exiting(x) = &p.lifecycle else { panic!("{:?}", p.lifecycle) };
    assert_eq!(
        (x.correlation_id.as_str(), x.attempt, x.reason),
        ("X1-P1-1", 1, ExitReason::RatchetStop)
    );
    assert_eq!((x.filled, p.open_quantity()), (Qty(0), Qty(75)), "not applied yet");
    assert_eq!(
        (p.risk.best_price, p.risk.hwm_pnl, p.risk.ratchet_stop),
        (Paise(11_000), Paise(75_000), Some(Paise(10_150)))
    );
    assert_eq!(st.exit_fills[&cid("X1-P1-1")].len(), 1);
    // The core takes it back and the exit in flight is known by its id.
    let mut core = ExitCore::restore(
        CoreParams::default(),
        TradingCell::new(st.trading.clone()),
        st.core.clone(),
    )
    .unwrap();
    let events = core.on_exit_filled(&cid("X1-P1-1"), Paise(10_150), Qty(75), ist(NOW)).unwrap();
    assert!(events.iter().any(|e| matches!(e, crate::exec::core::CoreEvent::TradeClosed(_))));
}

#[test]
fn exit_orders_rejected_after_part_fills_count_as_executed_legs() {
    let mut r = exiting("P1-1", "2025-11-24T10:00:00", 3);
    r.exit_attempts = 3;
    let mut s = stored(vec![r], vec![]);
    let at = ist("2025-11-24T10:02:00");
    s.fills = vec![
        fill("T1", "X1-P1-1", 20, 10_100, at),
        fill("T2", "X1-P1-1", 10, 10_050, at),
        // attempt 2 executed nothing; attempt 3 is in flight
        fill("T3", "X3-P1-1", 5, 10_000, at),
    ];
    let st = restart_state(&s, &params(), ist(NOW)).unwrap();
    let p = &st.core.positions[0];
    assert_eq!(p.exited.quantity, Qty(30));
    assert_eq!(p.exited.order_turnovers, vec![Paise(20 * 10_100 + 10 * 10_050)]);
    assert_eq!(p.open_quantity(), Qty(45));
    assert_eq!(st.exit_fills[&cid("X3-P1-1")].len(), 1);
}

#[test]
fn a_position_keeps_its_entrys_exact_value_and_a_row_without_it_derives_it() {
    // Entered 25 at 100.00 and 50 at 100.01: shown at 100.01, worth 7,500.50 exactly.
    let exact = PositionRecord {
        entry_price: Paise(10_001),
        entry_value: Some(Paise(750_050)),
        ..record("P1-1", "2025-11-24T10:00:00")
    };
    let old = PositionRecord { entry_value: None, ..record("P2-1", "2025-11-24T10:00:00") };
    // An earlier exit order's fill that stands for two trades, 10 at 101.00 and 20 at 101.01.
    let mut part = fill("T1", "X1-P1-1", 30, 10_101, ist("2025-11-24T10:02:00"));
    part.value = Some(Paise(10 * 10_100 + 20 * 10_101));
    let exact = PositionRecord { exit_attempts: 1, last_rejection: Some("RMS".into()), ..exact };
    let mut rows = stored(vec![exact, old], vec![]);
    rows.fills.push(part);
    let st = restart_state(&rows, &params(), ist(NOW)).unwrap();
    let by = |id: &str| st.core.positions.iter().find(|p| p.id.as_str() == id).unwrap();
    assert_eq!((by("P1-1").entry_price, by("P1-1").entry_value), (Paise(10_001), Paise(750_050)));
    assert_eq!(by("P1-1").exited.order_turnovers, vec![Paise(303_020)]);
    assert_eq!(by("P2-1").entry_value, Paise(750_000), "avg × quantity for a row without it");
}

#[test]
fn an_active_position_after_a_rejection_keeps_its_attempts_and_the_reason() {
    let r = PositionRecord {
        exit_attempts: 2,
        last_rejection: Some("RMS: margin".into()),
        ..record("P1-1", "2025-11-24T10:00:00")
    };
    let st = restart_state(&stored(vec![r], vec![]), &params(), ist(NOW)).unwrap();
    let Lifecycle::Active { attempts, last_rejection } = &st.core.positions[0].lifecycle else {
        panic!()
    };
    assert_eq!(*attempts, 2);
    let j = last_rejection.as_ref().unwrap();
    assert_eq!((j.correlation_id.as_str(), j.why.as_str()), ("X2-P1-1", "RMS: margin"));
}

#[test]
fn a_stored_position_that_cannot_be_restored_is_an_error_naming_it() {
    let broken = PositionRecord { exit_reason: None, ..exiting("P1-1", "2025-11-24T10:00:00", 1) };
    let err = restart_state(&stored(vec![broken], vec![]), &params(), ist(NOW)).unwrap_err();
    assert!(err.to_string().contains("P1-1") && err.to_string().contains("exit reason"), "{err}");
}

#[test]
fn todays_figures_come_from_todays_rows_only() {
    let open = record("P3", "2025-11-24T10:30:00");
    let all = vec![
        record("P0", "2025-11-21T10:00:00"), // Friday
        record("P1", "2025-11-24T09:20:00"),
        record("P2", "2025-11-24T09:40:00"),
        PositionRecord { source: PositionSource::Adopted, ..record("P9", "2025-11-24T09:50:00") },
        open.clone(),
    ];
    let mut s = stored(vec![open], all);
    s.closed_trades = vec![
        closed("P0", 50_000, 6_000, ist("2025-11-21T11:00:00")),
        closed("P1", 143_672, 6_328, ist("2025-11-24T09:30:00")),
        closed("P2", -20_000, 5_000, ist("2025-11-24T09:50:00")),
    ];
    let d = restart_state(&s, &params(), ist(NOW)).unwrap().core.day;
    assert_eq!(d.session, Some(day(24)));
    assert_eq!(
        (d.trades, d.closed),
        (3, 2),
        "entries P1, P2, P3 today; the adopted one is no trade"
    );
    assert_eq!(
        (d.realised_net, d.charges, d.realised_gross),
        (Paise(123_672), Paise(11_328), Paise(135_000))
    );
}

#[test]
fn the_paper_wallet_is_the_initial_cash_plus_closed_nets_minus_open_entries() {
    let open = record("P3", "2025-11-24T10:30:00");
    let mut s = stored(vec![open.clone()], vec![record("P1", "2025-11-21T10:00:00"), open]);
    s.closed_trades = vec![closed("P1", 143_672, 6_328, ist("2025-11-21T11:00:00"))];
    s.fills = vec![
        fill("PAPER-T1", "N1-P1", 75, 10_000, ist("2025-11-21T10:00:00")),
        fill("PAPER-T2", "X1-P1", 75, 12_000, ist("2025-11-21T11:00:00")),
        fill("PAPER-T3", "N1-P3", 75, 10_000, ist("2025-11-24T10:30:00")),
    ];
    let w = restart_state(&s, &params(), ist(NOW)).unwrap().paper_wallet.unwrap();
    // The spec's example: a 75-lot entry at 100.00 costs 7 500.00 + 26.95 of charges.
    assert_eq!(w.cash, Paise(10_000_000 + 143_672 - 750_000 - 2_695));
    assert_eq!(w.holdings, vec![(PositionId::new("P3"), Side::Long, Qty(75), Paise(10_000))]);
    assert_eq!(w.executions, 3);
}

#[test]
fn a_restarted_paper_wallet_charges_an_open_sliced_leg_per_child() {
    use crate::instruments::{Instruments, LoadCounts, synthetic};
    // P3 entered 450 at ₹100.00; freeze 150 (lot 75): three children, brokerage thrice.
    let mut open = record("P3", "2025-11-24T10:30:00");
    open.quantity = Qty(450);
    let s = stored(vec![open.clone()], vec![open]);
    let mut w = restart_state(&s, &params(), ist(NOW)).unwrap().paper_wallet.unwrap();
    let turnover = Paise(4_500_000);
    let one = ChargeSchedule::default().leg_on_turnover(Txn::Buy, turnover).total();
    assert_eq!(w.cash, Paise(10_000_000) - turnover - one, "one order before the master");
    let master = |freeze: i64| {
        let mut rows: Vec<_> = synthetic::generate(&[(A, Paise(10_000))]).iter().cloned().collect();
        rows[0].freeze = Some(Qty(freeze));
        Instruments::build(rows, LoadCounts::default())
    };
    // Without slicing nothing changes.
    let mut unsliced = w.clone();
    unsliced.charge_slices(&master(1800), &ChargeSchedule::default());
    assert_eq!(unsliced.cash, w.cash);
    w.charge_slices(&master(150), &ChargeSchedule::default());
    // ₹20 of brokerage per extra child and its 18% GST: 2 × (2 000 + 360) paise.
    assert_eq!(w.cash, Paise(10_000_000) - turnover - one - Paise(2 * 2_360));
    assert_eq!(
        w.cash,
        Paise(10_000_000)
            - turnover
            - ChargeSchedule::default().leg_on_turnover_orders(Txn::Buy, turnover, 3).total()
    );
    // Once only.
    let cash = w.cash;
    w.charge_slices(&master(150), &ChargeSchedule::default());
    assert_eq!(w.cash, cash);
}

#[test]
fn the_clock_resumes_from_the_last_write_so_timed_rules_missed_while_down_still_fire() {
    let mut s = stored(vec![], vec![]);
    s.recovery.last_event_id = Some(EventId(ist("2025-11-24T10:59:00").0 * 1_000 + 7));
    let st = restart_state(&s, &params(), ist(NOW)).unwrap();
    assert_eq!(st.core.clock, Some(ist("2025-11-24T10:59:00")));
}

fn order(corr: &str, pos: &str, purpose: OrderPurpose) -> OrderRecord {
    OrderRecord {
        correlation_id: cid(corr),
        broker_order_id: None,
        position_id: PositionId::new(pos),
        instrument: A,
        txn: if purpose.is_exit() { Txn::Sell } else { Txn::Buy },
        quantity: Qty(75),
        purpose,
        status: OrderStatus::Created,
        created_at: ist("2025-11-24T10:00:00"),
        updated_at: ist("2025-11-24T10:00:00"),
        limit_price: None,
    }
}

#[test]
fn paper_restart_resends_an_exit_without_fills_and_replays_the_fills_of_one_with() {
    let a = exiting("PA", "2025-11-24T10:00:00", 1);
    let b = exiting("PB", "2025-11-24T10:00:00", 2);
    let mut s = stored(vec![a.clone(), b.clone()], vec![a, b]);
    s.fills = vec![fill("PAPER-T7", "X2-PB", 75, 10_150, ist("2025-11-24T10:01:31"))];
    s.recovery.open_orders =
        vec![order("X1-PA", "PA", OrderPurpose::Exit(ExitReason::RatchetStop))];
    let mut st = restart_state(&s, &params(), ist(NOW)).unwrap();
    PaperRestart.reconcile(&mut st).unwrap();
    assert_eq!(st.resend.len(), 1);
    let r = &st.resend[0];
    assert_eq!(
        (r.correlation_id.as_str(), r.reference_price, r.quantity, r.txn),
        ("X1-PA", Paise(10_150), Qty(75), Txn::Sell)
    );
    assert_eq!(st.outcomes.len(), 1);
    assert!(
        matches!(&st.outcomes[0], OrderEvent::Filled { fill, .. } if fill.trade_id == "PAPER-T7")
    );
    assert!(
        !st.records.iter().any(
            |e| matches!(e, EventKind::OrderStatus(c) if c.correlation_id.as_str() == "X1-PA")
        ),
        "the exit in flight is not settled: it is sent again"
    );
}

#[test]
fn paper_restart_settles_entries_in_flight() {
    let p = record("PF", "2025-11-24T10:00:00");
    let mut s = stored(vec![p.clone()], vec![p]);
    s.recovery.open_orders = vec![
        order("N1-PF", "PF", OrderPurpose::Entry), // its position exists: it filled
        order("N1-PL", "PL", OrderPurpose::Entry), // none: lost with the process
    ];
    let mut st = restart_state(&s, &params(), ist(NOW)).unwrap();
    assert_eq!(st.core.pending_entries.len(), 1, "PL is pending until reconciled");
    PaperRestart.reconcile(&mut st).unwrap();
    assert!(st.core.pending_entries.is_empty());
    assert!(st.core.entry_attempts.is_empty());
    let statuses: Vec<(String, OrderStatus)> = st
        .records
        .iter()
        .filter_map(|e| match e {
            EventKind::OrderStatus(c) => Some((c.correlation_id.to_string(), c.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![("N1-PF".into(), OrderStatus::Traded), ("N1-PL".into(), OrderStatus::Cancelled)]
    );
    assert!(
        st.records
            .iter()
            .any(|e| matches!(e, EventKind::Audit(a) if a.actor == Actor::Reconciliation))
    );
}
