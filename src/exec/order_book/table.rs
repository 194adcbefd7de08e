//! The transition table: every state × every event, the transitions the book makes and the
//! ones it refuses.

use super::*;
use crate::broker::model::OrderStatus;
use crate::domain::{ExitReason, InstrumentKey, PositionId, Segment, Txn};

const AT: Timestamp = Timestamp(1_000);
const NOW: Now = Now { at: AT, ms: 10 };

fn cid() -> CorrelationId {
    CorrelationId::new("X1-p1").unwrap()
}

fn intent() -> OrderIntent {
    OrderIntent {
        correlation_id: cid(),
        position_id: PositionId::new("p1"),
        instrument: InstrumentKey::new(Segment::NseFno, 52175),
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::StopLoss),
        reference_price: Paise(10_000),
        price_is_stale: false,
        limit_price: None,
        created_at: AT,
    }
}

fn seen(order: &str, status: OrderStatus, traded: i64) -> Seen {
    Seen {
        order_id: OrderId(order.into()),
        correlation_id: Some("X1-p1".into()),
        status,
        traded: Qty(traded),
        avg_price: Paise(9_000),
        last_fill_price: None,
        reason: String::new(),
    }
}

fn report(order: &str, status: OrderStatus, traded: i64) -> Event {
    Event::Report(seen(order, status, traded))
}

/// A trade of order `9` from the trade book.
fn trade(id: &str, qty: i64, price: i64) -> crate::broker::model::Trade {
    serde_json::from_value(serde_json::json!({
        "orderId": "9", "exchangeTradeId": id, "tradedQuantity": qty,
        "tradedPrice": price as f64 / 100.0,
    }))
    .unwrap()
}

/// The trades of order `9` read before a report that it traded 75.
fn trades() -> Event {
    Event::Trades {
        seen: seen("9", OrderStatus::Traded, 75),
        trades: vec![trade("T1", 25, 9_001), trade("T2", 50, 9_000)],
    }
}

fn admit() -> Event {
    Event::Admit(intent())
}
fn register() -> Event {
    Event::Register { intent: intent(), traded: Qty(0), value: Paise::ZERO }
}
fn bind() -> Event {
    Event::Bind { correlation_id: cid(), order_id: OrderId("9".into()) }
}
fn placed(answer: Answer) -> Event {
    Event::Placed { correlation_id: cid(), answer }
}
fn finish() -> Event {
    Event::Finish { correlation_id: cid(), reason: "refused".into() }
}

/// The events that bring a fresh book's `X1-p1` into each state.
fn states() -> Vec<(&'static str, Vec<Event>)> {
    let accepted = vec![admit(), register(), bind()];
    let part = [accepted.clone(), vec![report("9", OrderStatus::PartTraded, 25)]].concat();
    vec![
        ("intent", vec![admit()]),
        ("sent", vec![admit(), register()]),
        ("accepted", accepted.clone()),
        ("unknown", vec![admit(), register(), placed(Answer::Unknown("timeout".into()))]),
        ("part_filled", part.clone()),
        ("filled", [accepted.clone(), vec![report("9", OrderStatus::Traded, 75)]].concat()),
        ("rejected", vec![admit(), register(), finish()]),
        ("cancelled", [part, vec![report("9", OrderStatus::Cancelled, 25)]].concat()),
    ]
}

/// Every kind of event, as a column of the table.
fn events() -> Vec<(&'static str, Event)> {
    vec![
        ("admit", admit()),
        ("register", register()),
        ("placed accepted", placed(Answer::Accepted(OrderId("9".into())))),
        ("placed rejected", placed(Answer::Rejected("RMS".into()))),
        ("placed unknown", placed(Answer::Unknown("timeout".into()))),
        (
            "placed filled",
            placed(Answer::Filled {
                order_id: OrderId("9".into()),
                price: Paise(9_000),
                traded: Qty(75),
            }),
        ),
        ("bind", bind()),
        ("finish", finish()),
        ("report part", report("9", OrderStatus::PartTraded, 25)),
        ("report traded", report("9", OrderStatus::Traded, 75)),
        ("report rejected", report("9", OrderStatus::Rejected, 0)),
        ("report other order", report("10", OrderStatus::Traded, 75)),
        ("trades", trades()),
        ("prune", Event::Prune { keep_ms: 0 }),
    ]
}

/// What an outcome and the state after it are called in the table.
fn cell(book: &OrderBook, outcome: &Outcome) -> String {
    let state = book.get(&cid()).map_or("gone", |r| r.state.name());
    match outcome {
        Outcome::Applied(_) => state.to_string(),
        Outcome::Duplicate(_) => "dup".into(),
        Outcome::Refused(Refusal::Stale) => "stale".into(),
        Outcome::Refused(Refusal::UnknownOrder) => "not_ours".into(),
        Outcome::Refused(Refusal::AlreadyKnown) => "known".into(),
        Outcome::Pruned(n) => format!("pruned {n}"),
    }
}

#[test]
fn every_state_by_every_event() {
    // Columns in the order of `events()`.
    #[rustfmt::skip]
    let expected: [(&str, [&str; 14]); 8] = [
        //               admit  register  p.accepted   p.rejected  p.unknown  p.filled  bind        finish       r.part         r.traded  r.rejected   r.other     trades         prune
        ("intent",      ["dup", "sent",  "accepted",  "rejected", "unknown", "filled", "accepted", "rejected",  "not_ours",    "not_ours", "not_ours", "not_ours", "not_ours",    "pruned 0"]),
        ("sent",        ["dup", "dup",   "accepted",  "rejected", "unknown", "filled", "accepted", "rejected",  "part_filled", "filled",   "rejected", "filled",   "sent",        "pruned 0"]),
        ("accepted",    ["dup", "dup",   "accepted",  "rejected", "stale",   "filled", "stale",    "rejected",  "part_filled", "filled",   "rejected", "stale",    "accepted",    "pruned 0"]),
        ("unknown",     ["dup", "dup",   "accepted",  "rejected", "stale",   "filled", "accepted", "rejected",  "part_filled", "filled",   "rejected", "filled",   "unknown",     "pruned 0"]),
        ("part_filled", ["dup", "dup",   "stale",     "stale",    "stale",   "filled", "stale",    "cancelled", "stale",       "filled",   "cancelled","stale",    "part_filled", "pruned 0"]),
        ("filled",      ["dup", "dup",   "stale",     "stale",    "stale",   "stale",  "stale",    "stale",     "stale",       "stale",    "stale",    "stale",    "stale",       "pruned 1"]),
        // An order refused or proved absent that turns up at the broker after all: its id is
        // bound and reported (the engine hears of it), its executions never counted.
        ("rejected",    ["dup", "dup",   "stale",     "stale",    "stale",   "stale",  "stale",    "stale",     "rejected",    "rejected", "rejected", "rejected", "stale",       "pruned 1"]),
        ("cancelled",   ["dup", "dup",   "stale",     "stale",    "stale",   "stale",  "stale",    "stale",     "stale",       "stale",    "stale",    "stale",    "stale",       "pruned 1"]),
    ];
    let mut wrong = Vec::new();
    for ((state, setup), (row, cells)) in states().into_iter().zip(expected) {
        assert_eq!(state, row);
        for ((event, e), want) in events().into_iter().zip(cells) {
            let mut book = OrderBook::new();
            for s in &setup {
                book.apply(s.clone(), NOW);
            }
            assert_eq!(book.get(&cid()).map(|r| r.state.name()), Some(state), "setup of {state}");
            let later = Now { at: AT, ms: NOW.ms + 1 };
            let outcome = book.apply(e, later);
            let got = cell(&book, &outcome);
            if got != want {
                wrong.push(format!("{state} × {event}: {got}, expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_execution_seen_twice_counts_once_whatever_its_source() {
    let mut book = OrderBook::new();
    for e in [admit(), register(), bind()] {
        book.apply(e, NOW);
    }
    // The socket tells 25, the poll repeats it, then the socket tells 75 and the poll 75.
    let part = report("9", OrderStatus::PartTraded, 25);
    let done = report("9", OrderStatus::Traded, 75);
    let mut fills = Vec::new();
    for e in [part.clone(), part, done.clone(), done] {
        for r in book.apply(e, NOW).reports() {
            if let Report::Fill { fill, .. } = r {
                fills.push((fill.trade_id, fill.quantity.0));
            }
        }
    }
    assert_eq!(fills, [("9-25".to_string(), 25), ("9-75".to_string(), 50)]);
    let r = book.get(&cid()).unwrap();
    assert_eq!((r.traded, r.fills.len(), r.state.name()), (Qty(75), 2, "filled"));
    assert_eq!(r.fills.values().map(|e| e.quantity.0).sum::<i64>(), 75);
}

#[test]
fn the_router_view_keeps_what_the_ledger_told() {
    let mut book = OrderBook::new();
    assert_eq!(book.apply(admit(), NOW), Outcome::Applied(Vec::new()));
    assert_eq!(book.apply(admit(), NOW), Outcome::Duplicate(OrderState::Sending));
    let filled =
        Answer::Filled { order_id: OrderId("o1".into()), price: Paise(100), traded: Qty(75) };
    assert!(book.apply(placed(filled), NOW).is_applied());
    let want =
        OrderState::Filled { order_id: OrderId("o1".into()), price: Paise(100), quantity: Qty(75) };
    assert_eq!(book.apply(admit(), NOW), Outcome::Duplicate(want));
    // A late "accepted" never takes a filled order back.
    assert_eq!(
        book.apply(placed(Answer::Accepted(OrderId("o1".into()))), NOW),
        Outcome::Refused(Refusal::Stale)
    );
    assert_eq!((book.count(true), book.count(false), book.open_orders()), (1, 0, 0));
    // Pruned only past the retention.
    assert_eq!(
        book.apply(Event::Prune { keep_ms: 100 }, Now { at: AT, ms: 110 }),
        Outcome::Pruned(0)
    );
    assert_eq!(
        book.apply(Event::Prune { keep_ms: 100 }, Now { at: AT, ms: 111 }),
        Outcome::Pruned(1)
    );
}

#[test]
fn trades_read_before_a_report_value_it_exactly_and_each_counts_once() {
    let mut book = OrderBook::new();
    for e in [admit(), register(), bind()] {
        book.apply(e, NOW);
    }
    // 25 at 90.01 and 50 at 90.00: the broker's average 90.0033… is 90.00 on the wire; the
    // trades say the order is worth 675,025, not 675,000. Read twice: each trade counts once.
    assert_eq!(book.wants_trades(&seen("9", OrderStatus::Traded, 75)), Some(OrderId("9".into())));
    assert!(book.apply(trades(), NOW).is_applied());
    assert!(book.apply(trades(), NOW).is_applied());
    assert_eq!(book.wants_trades(&seen("9", OrderStatus::Traded, 75)), None);
    let values: Vec<i64> = book
        .apply(report("9", OrderStatus::Traded, 75), NOW)
        .reports()
        .into_iter()
        .filter_map(|r| match r {
            Report::Fill { fill, .. } => Some(fill.value.0),
            _ => None,
        })
        .collect();
    assert_eq!(values, [675_025]);
    let r = book.get(&cid()).unwrap();
    assert_eq!((r.trades.len(), r.value, r.state.name()), (2, Paise(675_025), "filled"));
    assert_eq!(book.apply(trades(), NOW), Outcome::Refused(Refusal::Stale), "ended");
}
