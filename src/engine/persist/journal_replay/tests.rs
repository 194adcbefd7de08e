use super::*;
use crate::domain::{ExitReason, InstrumentKey, OrderIntent, Paise, Segment, Timestamp};
use crate::engine::persist::recover::{RestoreParams, Stored, restart_state};
use crate::pnl::ChargeSchedule;
use crate::risk::SessionClock;
use crate::store::{DailyPnlRecord, PositionRecord, PositionSource, PositionState, Recovery};

const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

fn ist(text: &str) -> Timestamp {
    Timestamp::parse(&format!("{text}+05:30")).unwrap()
}

fn sent(cid: &str, pos: &str, txn: Txn, purpose: OrderPurpose, price: i64) -> Sent {
    let at = ist("2025-11-24T10:30:00");
    Sent {
        at,
        intent: OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new(pos),
            instrument: A,
            txn,
            quantity: Qty(75),
            purpose,
            reference_price: Paise(price),
            price_is_stale: false,
            created_at: at,
            limit_price: None,
        },
        previous_run: true,
        presumed: false,
    }
}

fn entry(cid: &str, pos: &str) -> Sent {
    sent(cid, pos, Txn::Buy, OrderPurpose::Entry, 10_000)
}

fn exit(cid: &str, pos: &str) -> Sent {
    sent(cid, pos, Txn::Sell, OrderPurpose::Exit(ExitReason::StopLoss), 8_900)
}

fn stored_position(id: &str, state: PositionState, attempts: u32) -> PositionRecord {
    let at = ist("2025-11-24T10:00:00");
    let mut r = PositionRecord::opened(
        PositionId::new(id),
        A,
        Side::Long,
        Qty(75),
        Paise(10_000),
        at,
        PositionSource::Entry,
    );
    r.state = state;
    r.exit_attempts = attempts;
    if state == PositionState::Exiting {
        r.exit_reason = Some(ExitReason::TakeProfit);
        r.exit_trigger_price = Some(Paise(12_000));
        r.exit_trigger_at = Some(at);
        r.exit_correlation_id = Some(correlation::exit_id(&PositionId::new(id), attempts).unwrap());
    }
    r
}

fn state(open: Vec<PositionRecord>, closed: &[&str]) -> RestartState {
    state_with_orders(open, closed, Vec::new())
}

/// [`state`] with these orders open in the store.
fn state_with_orders(
    open: Vec<PositionRecord>,
    closed: &[&str],
    open_orders: Vec<OrderRecord>,
) -> RestartState {
    let day = ist("2025-11-24T11:00:00").ist_date();
    let mut all = open.clone();
    for id in closed {
        let mut r = stored_position(id, PositionState::Active, 1);
        r.state = PositionState::Exited;
        all.push(r);
    }
    let stored = Stored {
        recovery: Recovery {
            trading_day: day,
            open_positions: open,
            open_orders,
            trading_state: None,
            today: DailyPnlRecord::empty(day),
            last_event_id: None,
        },
        positions: all,
        closed_trades: Vec::new(),
        fills: Vec::new(),
    };
    let params = RestoreParams {
        session: SessionClock::default(),
        charges: ChargeSchedule::default(),
        paper: None,
    };
    restart_state(&stored, &params, ist("2025-11-24T11:00:00")).unwrap()
}

fn lifecycle_of(st: &RestartState, id: &str) -> Lifecycle {
    st.core.positions.iter().find(|p| p.id.as_str() == id).unwrap().lifecycle.clone()
}

#[test]
fn an_entry_the_store_never_heard_of_becomes_a_pending_entry_settled_by_its_own_id() {
    let mut st = state(Vec::new(), &[]);
    let n = replay(&mut st, &[entry("N1-p1", "p1")]);
    assert_eq!(n, 1);
    let pending: Vec<(&str, u32, Side, Qty)> = st
        .core
        .pending_entries
        .iter()
        .map(|e| (e.correlation_id.as_str(), e.attempt, e.side, e.quantity))
        .collect();
    assert_eq!(pending, [("N1-p1", 1, Side::Long, Qty(75))]);
    assert_eq!(st.core.entry_attempts, [(PositionId::new("p1"), 1)]);
    let records = format!("{:?}", st.records);
    assert!(records.contains("OrderPlaced"), "{records}");
    assert!(records.contains("order_from_journal"), "{records}");
}

#[test]
fn the_latest_entry_attempt_wins_and_entries_of_known_positions_change_nothing() {
    let mut st = state(vec![stored_position("p2", PositionState::Active, 0)], &["p3"]);
    let journal =
        [entry("N1-p1", "p1"), entry("N2-p1", "p1"), entry("N1-p2", "p2"), entry("N1-p3", "p3")];
    assert_eq!(replay(&mut st, &journal), 1);
    let pending: Vec<&str> =
        st.core.pending_entries.iter().map(|e| e.correlation_id.as_str()).collect();
    assert_eq!(pending, ["N2-p1"]);
}

#[test]
fn an_exit_the_store_missed_puts_its_position_exiting_under_that_id() {
    let mut st = state(vec![stored_position("p1", PositionState::Active, 0)], &[]);
    assert_eq!(replay(&mut st, &[entry("N1-p1", "p1"), exit("X1-p1", "p1")]), 1);
    let Lifecycle::Exiting(x) = lifecycle_of(&st, "p1") else { panic!("not exiting") };
    assert_eq!(
        (x.correlation_id.as_str(), x.attempt, x.reason, x.trigger_price),
        ("X1-p1", 1, ExitReason::StopLoss, Paise(8_900))
    );
    assert!(st.exits_in_flight().iter().any(|(_, x)| x.correlation_id.as_str() == "X1-p1"));
}

#[test]
fn journaled_children_of_a_sliced_exit_put_the_position_exiting_under_the_parent_id() {
    let mut st = state(vec![stored_position("p1", PositionState::Active, 0)], &[]);
    let journal = [exit("X1s1-p1", "p1"), exit("X1s2-p1", "p1")];
    assert_eq!(replay(&mut st, &journal), 1);
    let Lifecycle::Exiting(x) = lifecycle_of(&st, "p1") else { panic!("not exiting") };
    assert_eq!((x.correlation_id.as_str(), x.attempt), ("X1-p1", 1));
    // A store that already holds that exit is newer: nothing changes.
    let mut st = state(vec![stored_position("p1", PositionState::Exiting, 1)], &[]);
    assert_eq!(replay(&mut st, &journal), 0);
}

#[test]
fn journaled_children_of_a_sliced_entry_leave_one_pending_entry_of_the_parent() {
    // The parent's own line (the whole 450) comes first, then the child that left.
    let mut parent = entry("N1-p9", "p9");
    parent.intent.quantity = Qty(450);
    let mut child = entry("N1s1-p9", "p9");
    child.intent.quantity = Qty(150);
    let mut st = state(vec![], &[]);
    assert_eq!(replay(&mut st, &[parent.clone(), child.clone()]), 1);
    let pending: Vec<(&str, i64, u32)> = st
        .core
        .pending_entries
        .iter()
        .map(|e| (e.correlation_id.as_str(), e.quantity.0, e.attempt))
        .collect();
    assert_eq!(pending, [("N1-p9", 450, 1)]);
    // Its order record is the parent's, once.
    let placed: Vec<String> = st
        .records
        .iter()
        .filter_map(|r| match r {
            EventKind::OrderPlaced(o) => Some(format!("{} {}", o.correlation_id, o.quantity)),
            _ => None,
        })
        .collect();
    assert_eq!(placed, ["N1-p9 450"]);
    // Without the parent's line the child stands for it, under the parent's id.
    let mut st = state(vec![], &[]);
    assert_eq!(replay(&mut st, &[child]), 1);
    assert_eq!(st.core.pending_entries[0].correlation_id.as_str(), "N1-p9");
}

#[test]
fn a_pending_limit_entry_keeps_its_limit_price_from_the_journal_or_the_store() {
    let limited = |cid: &str, quantity: i64| {
        let mut s = entry(cid, "p9");
        s.intent.quantity = Qty(quantity);
        s.intent.limit_price = Some(Paise(10_050));
        s
    };
    let limit_of = |st: &RestartState| -> Vec<(String, Option<Paise>)> {
        let e = st.core.pending_entries.iter();
        e.map(|e| (e.correlation_id.to_string(), e.limit_price)).collect()
    };
    let want = [("N1-p9".to_string(), Some(Paise(10_050)))];
    // The store never heard of it: the parent's line, or a child's standing for it.
    for journal in
        [vec![limited("N1-p9", 450), limited("N1s1-p9", 150)], vec![limited("N1s1-p9", 150)]]
    {
        let mut st = state(vec![], &[]);
        assert_eq!(replay(&mut st, &journal), 1);
        assert_eq!(limit_of(&st), want, "{journal:?}");
        let stored: Vec<Option<Paise>> = st
            .records
            .iter()
            .filter_map(|r| match r {
                EventKind::OrderPlaced(o) => Some(o.limit_price),
                _ => None,
            })
            .collect();
        assert_eq!(stored, [Some(Paise(10_050))]);
    }
    // The store holds it pending with its limit price: kept, nothing to replay.
    let mut order = OrderRecord {
        correlation_id: CorrelationId::new("N1-p9").unwrap(),
        broker_order_id: None,
        position_id: PositionId::new("p9"),
        instrument: A,
        txn: Txn::Buy,
        quantity: Qty(450),
        purpose: OrderPurpose::Entry,
        status: OrderStatus::Created,
        created_at: ist("2025-11-24T10:30:00"),
        updated_at: ist("2025-11-24T10:30:00"),
        limit_price: Some(Paise(10_050)),
    };
    let mut st = state_with_orders(vec![], &[], vec![order.clone()]);
    assert_eq!(limit_of(&st), want, "from the store alone");
    assert_eq!(replay(&mut st, &[limited("N1-p9", 450), limited("N1s1-p9", 150)]), 0);
    assert_eq!(limit_of(&st), want);
    // A row written before the store kept the price: the journal's line supplies it.
    order.limit_price = None;
    let mut st = state_with_orders(vec![], &[], vec![order.clone()]);
    assert_eq!(limit_of(&st), [("N1-p9".to_string(), None)]);
    assert_eq!(replay(&mut st, &[limited("N1-p9", 450), limited("N1s1-p9", 150)]), 0);
    assert_eq!(limit_of(&st), want);
    // A MARKET entry stays MARKET.
    let mut st = state_with_orders(vec![], &[], vec![order]);
    let mut market = limited("N1-p9", 450);
    market.intent.limit_price = None;
    replay(&mut st, &[market]);
    assert_eq!(limit_of(&st), [("N1-p9".to_string(), None)]);
}

#[test]
fn a_later_exit_attempt_replaces_an_earlier_one_and_older_ones_change_nothing() {
    let mut st = state(
        vec![
            stored_position("p1", PositionState::Exiting, 1),
            stored_position("p2", PositionState::Active, 2),
            stored_position("p3", PositionState::Exiting, 2),
        ],
        &["p4"],
    );
    let journal = [
        exit("X1-p1", "p1"),
        exit("X2-p1", "p1"),
        exit("X2-p2", "p2"),
        exit("X2-p3", "p3"),
        exit("X1-p4", "p4"),
    ];
    assert_eq!(replay(&mut st, &journal), 1);
    let Lifecycle::Exiting(x) = lifecycle_of(&st, "p1") else { panic!("not exiting") };
    assert_eq!((x.correlation_id.as_str(), x.reason), ("X2-p1", ExitReason::StopLoss));
    assert!(matches!(lifecycle_of(&st, "p2"), Lifecycle::Active { attempts: 2, .. }));
    let Lifecycle::Exiting(x) = lifecycle_of(&st, "p3") else { panic!("not exiting") };
    assert_eq!((x.correlation_id.as_str(), x.reason), ("X2-p3", ExitReason::TakeProfit));
}

#[test]
fn a_presumed_line_changes_nothing_in_the_state() {
    let mut st = state(vec![stored_position("p1", PositionState::Active, 0)], &[]);
    let mut presumed = exit("X1-p1", "p1");
    presumed.presumed = true;
    let mut entry = entry("N1-p9", "p9");
    entry.presumed = true;
    assert_eq!(replay(&mut st, &[presumed, entry]), 0);
    assert!(matches!(lifecycle_of(&st, "p1"), Lifecycle::Active { attempts: 0, .. }));
    assert!(st.core.pending_entries.is_empty());
}

#[test]
fn a_takeover_presumes_the_next_exit_attempt_of_every_open_position_sent() {
    let st = state(
        vec![
            stored_position("p1", PositionState::Active, 0),
            stored_position("p2", PositionState::Active, 2),
            stored_position("p3", PositionState::Exiting, 1),
            stored_position("p4", PositionState::Active, 0),
        ],
        &["p5"],
    );
    let journal = [exit("X1-p4", "p4")];
    let ids: Vec<(String, Txn, Qty)> = presumed_exits(&st, &journal)
        .into_iter()
        .map(|i| (i.correlation_id.to_string(), i.txn, i.quantity))
        .collect();
    let want = |c: &str| (c.to_string(), Txn::Sell, Qty(75));
    assert_eq!(ids, [want("X1-p1"), want("X3-p2"), want("X2-p3")]);
}
