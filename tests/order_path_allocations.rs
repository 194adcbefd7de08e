//! The pieces of the tick → wire path that must not allocate, counted with a counting global
//! allocator (per thread: other tests of this binary running at the same time are not counted).
//! The end-to-end count per exit is the `tick_to_order` benchmark's; these pin the parts whose
//! count is exactly known:
//!
//! - starting an exit takes the correlation id made when the position opened (or at the last
//!   rejection) and copies of the id share its text: a trigger allocates nothing;
//! - the place-order body is written into a reused buffer: nothing once it has grown.

#[path = "../benches/support/counting_alloc.rs"]
mod counting_alloc;

use std::cell::Cell;

use scalper::broker::model::{OrderType, PlaceOrder, ProductType, Validity};
use scalper::domain::{
    CorrelationId, ExitReason, InstrumentKey, Paise, PositionId, Qty, Segment, Side, Timestamp, Txn,
};
use scalper::risk::position::Outcome;
use scalper::risk::{LifecycleEvent, Origin, Position};

thread_local! {
    /// Allocations of this thread while counting (`None`: not counting). No destructor, so
    /// the allocator may read it at any point of the thread's life.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count() {
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting(count);

/// What `f` returns and how many allocations it made on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|c| c.set(Some(0)));
    let r = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (r, n)
}

fn opened(id: &str) -> Position {
    Position::open(
        PositionId::new(id),
        InstrumentKey::new(Segment::NseFno, 52175),
        Side::Long,
        Qty(75),
        Paise(10_000),
        Timestamp(1_000),
        Origin::Entry,
    )
}

fn trigger() -> LifecycleEvent {
    LifecycleEvent::Trigger {
        reason: ExitReason::StopLoss,
        price: Paise(9_800),
        at: Timestamp(2_000),
        stale: false,
    }
}

#[test]
fn starting_an_exit_allocates_nothing() {
    let mut p = opened("p17");
    let (out, n) = allocations(|| p.apply(trigger()).unwrap());
    let cid = CorrelationId::new("X1-p17").unwrap();
    assert_eq!(out, Outcome::ExitStarted { correlation_id: cid.clone(), attempt: 1 });
    assert_eq!(n, 0, "the first attempt's id was made when the position opened");

    // After a rejection, the next attempt's id is made with it, not at the next trigger.
    let reject =
        LifecycleEvent::Rejected { correlation_id: cid, why: "RMS".into(), at: Timestamp(3_000) };
    p.apply(reject).unwrap();
    let (out, n) = allocations(|| p.apply(trigger()).unwrap());
    let cid = CorrelationId::new("X2-p17").unwrap();
    assert_eq!(out, Outcome::ExitStarted { correlation_id: cid.clone(), attempt: 2 });
    assert_eq!(n, 0, "the second attempt's id was made at the rejection");

    // The intent, the order book, the journal: each copy of the id shares its text.
    let (copies, n) = allocations(|| [cid.clone(), cid.clone(), cid.clone()]);
    assert_eq!(n, 0);
    assert!(copies.iter().all(|c| c == &cid));
}

#[test]
fn writing_an_order_body_into_a_reused_buffer_allocates_nothing() {
    let order = |cid: &str, quantity: i64, price: i64| PlaceOrder {
        correlation_id: Some(CorrelationId::new(cid).unwrap()),
        txn: Txn::Sell,
        instrument: InstrumentKey::new(Segment::NseFno, 52175),
        product: ProductType::Intraday,
        order_type: if price == 0 { OrderType::Market } else { OrderType::Limit },
        validity: Validity::Day,
        quantity: Qty(quantity),
        disclosed_quantity: Qty(0),
        price: Paise(price),
        trigger_price: Paise::ZERO,
        after_market_order: false,
    };
    let mut buffer = Vec::new();
    // The first body grows the buffer; the next ones, no longer than it, reuse it.
    order("X1-p17", 1800, 0).write_body("1000000001", &mut buffer);
    for (cid, quantity, price) in [("X2-p17", 75, 0), ("X1s3-p17", 1800, 0), ("N1-p18", 75, 9805)] {
        let order = order(cid, quantity, price);
        let ((), n) = allocations(|| order.write_body("1000000001", &mut buffer));
        assert_eq!(n, 0, "{cid}");
        assert_eq!(buffer, serde_json::to_vec(&order.body("1000000001")).unwrap());
    }
}
