//! The order book's owner handle and its read-only view. The book lives behind one lock,
//! outside every worker, so a worker's panic loses none of it; [`OrderBookHandle::apply`] is
//! the only way to change it, and [`OrderBookView`] (the API, the heartbeat, tests) can only
//! read copies.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::domain::{Clock, CorrelationId, InstrumentKey, OrderId, SystemClock};
use crate::runtime::monotonic_millis;

use super::{Event, Now, OrderBook, OrderView, Outcome, Record};

/// Changes the book (router, live gateway, order desk, order tracker, reconciler, heartbeat's
/// pruning). Cheap to clone.
#[derive(Clone)]
pub struct OrderBookHandle {
    book: Arc<Mutex<OrderBook>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OrderBookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderBookHandle").field("orders", &self.book.lock().len()).finish()
    }
}

impl Default for OrderBookHandle {
    fn default() -> OrderBookHandle {
        OrderBookHandle::new(Arc::new(SystemClock))
    }
}

impl OrderBookHandle {
    /// An empty book; `clock` stamps what is applied (fills, records).
    pub fn new(clock: Arc<dyn Clock>) -> OrderBookHandle {
        OrderBookHandle { book: Arc::new(Mutex::new(OrderBook::new())), clock }
    }

    /// The time events are applied at.
    pub fn now(&self) -> Now {
        Now { at: self.clock.now(), ms: monotonic_millis() }
    }

    /// Applies one event now.
    pub fn apply(&self, event: Event) -> Outcome {
        let now = self.now();
        self.book.lock().apply(event, now)
    }

    /// Applies several events under one lock, in order (what a worker learned at once).
    pub fn apply_all(&self, events: impl IntoIterator<Item = Event>) -> Vec<Outcome> {
        let now = self.now();
        let mut book = self.book.lock();
        events.into_iter().map(|e| book.apply(e, now)).collect()
    }

    /// A reader's handle.
    pub fn view(&self) -> OrderBookView {
        OrderBookView(self.book.clone())
    }

    /// The order's intent, if the book holds it.
    pub fn intent(&self, cid: &CorrelationId) -> Option<crate::domain::OrderIntent> {
        self.book.lock().get(cid).map(|r| r.intent.clone())
    }

    /// Whether the live broker tracks `cid`.
    pub fn is_tracked(&self, cid: &CorrelationId) -> bool {
        self.book.lock().is_tracked(cid)
    }

    pub fn is_done(&self, cid: &CorrelationId) -> bool {
        self.book.lock().is_done(cid)
    }

    pub fn is_slice(&self, cid: &CorrelationId) -> bool {
        self.book.lock().is_slice(cid)
    }

    /// The order id whose trades to read before applying `seen` (see
    /// [`OrderBook::wants_trades`]); a read-only question, the answer goes back through
    /// [`Event::Trades`](super::Event::Trades).
    pub fn wants_trades(&self, seen: &super::Seen) -> Option<OrderId> {
        self.book.lock().wants_trades(seen)
    }

    /// The broker's id of an order, once known.
    pub fn order_id(&self, cid: &CorrelationId) -> Option<OrderId> {
        self.book.lock().order_id(cid)
    }

    /// Orders the broker holds that had no report for `quiet_ms`.
    pub fn quiet_working(&self, quiet_ms: u64) -> Vec<(CorrelationId, OrderId)> {
        self.book.lock().quiet_working(quiet_ms, monotonic_millis())
    }

    /// The activity marker (see [`OrderBook::busy_since`]).
    pub fn seq(&self) -> u64 {
        self.book.lock().seq()
    }

    pub fn busy_since(&self, marker: u64) -> std::collections::BTreeSet<InstrumentKey> {
        self.book.lock().busy_since(marker)
    }
}

/// Reads the book: copies and counts, never a way to change it.
#[derive(Clone, Debug)]
pub struct OrderBookView(Arc<Mutex<OrderBook>>);

impl OrderBookView {
    pub fn get(&self, cid: &CorrelationId) -> Option<OrderView> {
        self.0.lock().get(cid).map(Record::view)
    }

    /// A copy of one record, fills included.
    pub fn record(&self, cid: &CorrelationId) -> Option<Record> {
        self.0.lock().get(cid).cloned()
    }

    /// Every order the router handed over, oldest first.
    pub fn entries(&self) -> Vec<OrderView> {
        self.0.lock().entries()
    }

    /// Every record (children of sliced orders included).
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Orders (not slices) with this purpose kind.
    pub fn count(&self, exits: bool) -> usize {
        self.0.lock().count(exits)
    }

    /// Orders (not slices) not ended.
    pub fn open_orders(&self) -> usize {
        self.0.lock().open_orders()
    }

    /// Reports about orders that were not ours, so far.
    pub fn ignored(&self) -> u64 {
        self.0.lock().ignored()
    }
}
