//! The order book: the one owner of order state. One [`Record`] per correlation id — the
//! intent, its parent or children when it went out as freeze-quantity slices, the broker's
//! order id, its [`State`], the cumulative traded quantity, its exact value and the broker's
//! average, its executions, and the trades read from the trade book keyed by trade id — changed by one transition function, [`OrderBook::apply`], through which
//! every source of truth about an order goes:
//!
//! | source | event |
//! |---|---|
//! | the router admits an order (exactly-once guard) | [`Event::Admit`] |
//! | the live broker writes it ahead and sends it (one order, or its slices) | [`Event::Register`], [`Event::RegisterSliced`] |
//! | the placement's answer (router, order desk) | [`Event::Placed`], [`Event::Bind`], [`Event::Finish`], [`Event::Abandon`] |
//! | an order-update message, an order-book poll, a read by order id | [`Event::Report`] |
//! | the order's trades from the trade book, read before a report that would otherwise be valued from averages | [`Event::Trades`] |
//! | a startup lookup by correlation id of an order a previous run sent | [`Event::Register`] with what was applied, [`Event::Applied`], then [`Event::Bind`] and [`Event::Report`] |
//! | housekeeping (orders that ended long ago) | [`Event::Prune`] |
//!
//! States: `intent` (admitted) → `sent` (written ahead, on its way) → `accepted` / `rejected` /
//! `unknown` → `part_filled` → `filled` / `cancelled`. A state only moves forward: a report
//! that says less than the book knows (a stale poll, a placement answer that arrives after the
//! order-update stream told the fill) changes nothing, and the outcome says so.
//!
//! Fills are counted once: a report carries cumulative figures, so an execution is the growth
//! of the traded quantity since the last report applied, recorded under its trade id
//! (`<order id>-<cumulative quantity>` when the broker gave none). The same message seen twice,
//! or seen on the socket and then in a poll, adds nothing. Each execution is valued exactly
//! (Σ price × quantity, not an average times a quantity): from the order's trades when the
//! trade book was read for it ([`Event::Trades`], kept by the exchange's trade id, each once),
//! else from the latest trade's price when that agrees with the broker's average, else from
//! the averages (see `tracker`).
//!
//! The book is pure: no threads, no I/O, no locks. [`handle::OrderBookHandle`] puts it behind a
//! lock, outside any worker, so it survives a worker's panic like the exit core does; the
//! router, the live gateway, the order desk, the order tracker and the reconciler change it
//! only through `apply`; the API, the heartbeat and tests read it through
//! [`handle::OrderBookView`]. The order journal (`broker::journal`) is its write-ahead log:
//! an order is journaled and fsynced before its first byte leaves. The exit core keeps its
//! own *decision* state (which position has an exit pending, at which attempt); the book
//! keeps the *order* state.

pub mod handle;
#[cfg(test)]
mod table;
pub mod tracker;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::domain::{CorrelationId, OrderId, OrderIntent, OrderPurpose, Paise, Qty, Timestamp};

pub use handle::{OrderBookHandle, OrderBookView};
pub use tracker::{Report, Seen};

/// Where an order stands in the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Admitted by the router; not handed to a broker yet.
    Intent,
    /// Registered for placement: written ahead in the journal and on its way.
    Sent,
    /// The broker holds it.
    Accepted,
    /// The placement's answer was lost: settled by correlation id.
    Unknown { detail: String },
    /// Part of it traded; more may.
    PartFilled,
    /// Traded in full.
    Filled,
    /// Refused (at placement or by the exchange), or proved never to have reached the broker.
    Rejected { reason: String },
    /// Ended at the broker (cancelled, expired, the rest of a sliced order ended) short of its
    /// quantity.
    Cancelled { reason: String },
}

impl State {
    pub const fn name(&self) -> &'static str {
        match self {
            State::Intent => "intent",
            State::Sent => "sent",
            State::Accepted => "accepted",
            State::Unknown { .. } => "unknown",
            State::PartFilled => "part_filled",
            State::Filled => "filled",
            State::Rejected { .. } => "rejected",
            State::Cancelled { .. } => "cancelled",
        }
    }

    /// Nothing more will happen to the order.
    pub const fn is_final(&self) -> bool {
        matches!(self, State::Filled | State::Rejected { .. } | State::Cancelled { .. })
    }

    /// The order is at the broker, or may be.
    const fn rank(&self) -> u8 {
        match self {
            State::Intent => 0,
            State::Sent => 1,
            State::Unknown { .. } => 2,
            State::Accepted => 3,
            State::PartFilled => 4,
            State::Filled | State::Rejected { .. } | State::Cancelled { .. } => 5,
        }
    }
}

/// An order's state as the router, the store and the API have always told it (`sending`,
/// `accepted`, `filled` with what traded so far, `rejected`, `unknown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    /// Recorded, handed to the broker, no answer yet.
    Sending,
    Accepted {
        order_id: OrderId,
    },
    /// Filled in full (`quantity` so far for a part-filled live order).
    Filled {
        order_id: OrderId,
        price: Paise,
        quantity: Qty,
    },
    Rejected {
        reason: String,
    },
    /// The broker's answer was lost; to be resolved by correlation id.
    Unknown {
        detail: String,
    },
}

impl OrderState {
    pub const fn name(&self) -> &'static str {
        match self {
            OrderState::Sending => "sending",
            OrderState::Accepted { .. } => "accepted",
            OrderState::Filled { .. } => "filled",
            OrderState::Rejected { .. } => "rejected",
            OrderState::Unknown { .. } => "unknown",
        }
    }

    /// Nothing more will happen to the order.
    pub const fn is_settled(&self) -> bool {
        matches!(self, OrderState::Filled { .. } | OrderState::Rejected { .. })
    }
}

/// One execution of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Execution {
    pub quantity: Qty,
    pub price: Paise,
}

/// An order sent as several child orders (freeze-quantity slicing, `exec::slicing`): what the
/// parent's record adds up while its children report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sliced {
    pub(crate) children: Vec<CorrelationId>,
    /// Entries: the value of everything traded (paise × units) and the last execution.
    pub(crate) value: i128,
    pub(crate) last_fill: Option<(OrderId, Timestamp)>,
    /// How the last child that ended unfilled ended: `(order id, status, reason)`.
    pub(crate) last_end: Option<(OrderId, crate::broker::model::OrderStatus, String)>,
}

/// One order in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub intent: OrderIntent,
    pub state: State,
    /// The broker's id, once known (a sliced parent: its first child's).
    pub order_id: Option<OrderId>,
    /// Cumulative traded quantity, its exact value (Σ price × quantity of the executions
    /// reported) and the broker's average price, as last applied.
    pub traded: Qty,
    pub value: Paise,
    pub avg: Paise,
    /// The order's trades read from the broker's trade book ([`Event::Trades`]), by the
    /// exchange's trade id: `(price, quantity)`. What values its executions exactly.
    pub trades: BTreeMap<String, (Paise, Qty)>,
    /// Executions by trade id.
    pub fills: BTreeMap<String, Execution>,
    /// The sliced order this one is a child of.
    pub parent: Option<CorrelationId>,
    pub(crate) sliced: Option<Sliced>,
    /// Tracked at the live broker (registered for placement, or found there at startup).
    pub(crate) tracked: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the last event was applied, in the book's monotonic ms.
    pub(crate) last_seen_ms: u64,
}

impl Record {
    fn new(intent: &OrderIntent, state: State, now: Now) -> Record {
        Record {
            intent: intent.clone(),
            state,
            order_id: None,
            traded: Qty(0),
            value: Paise::ZERO,
            avg: Paise::ZERO,
            trades: BTreeMap::new(),
            fills: BTreeMap::new(),
            parent: None,
            sliced: None,
            tracked: false,
            created_at: now.at,
            updated_at: now.at,
            last_seen_ms: now.ms,
        }
    }

    /// The children, when the order went out as slices.
    pub fn children(&self) -> &[CorrelationId] {
        self.sliced.as_ref().map_or(&[], |s| &s.children)
    }

    /// Moves the state forward; `false` (nothing changed) if it would go back.
    fn advance(&mut self, state: State, now: Now) -> bool {
        if self.state.is_final() || state.rank() < self.state.rank() {
            return false;
        }
        self.state = state;
        self.updated_at = now.at;
        true
    }

    /// The state as the router, the store and the API tell it.
    pub fn order_state(&self) -> OrderState {
        let order_id = || self.order_id.clone().unwrap_or_else(|| OrderId(String::new()));
        match &self.state {
            State::Intent | State::Sent => OrderState::Sending,
            State::Accepted => OrderState::Accepted { order_id: order_id() },
            State::Unknown { detail } => OrderState::Unknown { detail: detail.clone() },
            State::PartFilled | State::Filled => {
                OrderState::Filled { order_id: order_id(), price: self.avg, quantity: self.traded }
            }
            State::Rejected { reason } | State::Cancelled { reason } if self.traded.0 == 0 => {
                OrderState::Rejected { reason: reason.clone() }
            }
            State::Cancelled { .. } | State::Rejected { .. } => {
                OrderState::Filled { order_id: order_id(), price: self.avg, quantity: self.traded }
            }
        }
    }

    /// What a reader sees of it.
    pub fn view(&self) -> OrderView {
        OrderView {
            intent: self.intent.clone(),
            state: self.order_state(),
            book_state: self.state.clone(),
            sent_at: self.created_at,
            updated_at: self.updated_at,
            traded: self.traded,
            fills: self.fills.len(),
        }
    }
}

/// A read-only copy of one order (`/v1/orders`, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub intent: OrderIntent,
    pub state: OrderState,
    pub book_state: State,
    pub sent_at: Timestamp,
    pub updated_at: Timestamp,
    pub traded: Qty,
    pub fills: usize,
}

/// The time an event is applied at: the wall clock (fills and records are stamped with it)
/// and the process's monotonic milliseconds (quiet orders, pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Timestamp,
    pub ms: u64,
}

/// What a placement answered, as the router heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted(OrderId),
    /// Traded (paper: at once, in full): cumulative `traded` at `price`.
    Filled {
        order_id: OrderId,
        price: Paise,
        traded: Qty,
    },
    Rejected(String),
    Unknown(String),
}

impl Answer {
    /// The answer an order state tells (`sending` tells none).
    pub fn of(state: &OrderState) -> Option<Answer> {
        Some(match state {
            OrderState::Sending => return None,
            OrderState::Accepted { order_id } => Answer::Accepted(order_id.clone()),
            OrderState::Filled { order_id, price, quantity } => {
                Answer::Filled { order_id: order_id.clone(), price: *price, traded: *quantity }
            }
            OrderState::Rejected { reason } => Answer::Rejected(reason.clone()),
            OrderState::Unknown { detail } => Answer::Unknown(detail.clone()),
        })
    }
}

/// Everything that can happen to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The router is about to hand an order to its broker: refused if the id is known.
    Admit(OrderIntent),
    /// The live broker is about to write it ahead and send it; `traded` worth `value` (Σ price
    /// × quantity) was already applied (an order of a previous run found at startup): only
    /// what trades beyond is told.
    Register { intent: OrderIntent, traded: Qty, value: Paise },
    /// The live broker is about to send it as `children`.
    RegisterSliced { parent: OrderIntent, children: Vec<OrderIntent> },
    /// After a restart: of the sliced parent's `parent_traded` already applied, `child_traded`
    /// at `avg` was child `child`'s.
    Applied { child: CorrelationId, parent_traded: Qty, child_traded: Qty, avg: Paise },
    /// The placement's answer as the router heard it.
    Placed { correlation_id: CorrelationId, answer: Answer },
    /// The broker holds the order under this id (placement answer, lookup).
    Bind { correlation_id: CorrelationId, order_id: OrderId },
    /// Nothing more will come of it: refused at placement, or proved absent.
    Finish { correlation_id: CorrelationId, reason: String },
    /// A sliced order ended by its placement (every child refused at once).
    Abandon { parent: CorrelationId },
    /// What the broker says of an order (order-update message, order-book poll, read by id).
    Report(Seen),
    /// The order `seen` is about traded these trades (`GET /trades/{order-id}`, read because
    /// [`OrderBook::wants_trades`] asked for them before `seen` is reported): kept by trade id,
    /// so that the report that follows is valued exactly. Changes no state.
    Trades { seen: Seen, trades: Vec<crate::broker::model::Trade> },
    /// Forget orders that ended more than `keep_ms` ago.
    Prune { keep_ms: u64 },
}

impl Event {
    pub const fn name(&self) -> &'static str {
        match self {
            Event::Admit(_) => "admit",
            Event::Register { .. } => "register",
            Event::RegisterSliced { .. } => "register_sliced",
            Event::Applied { .. } => "applied",
            Event::Placed { .. } => "placed",
            Event::Bind { .. } => "bind",
            Event::Finish { .. } => "finish",
            Event::Abandon { .. } => "abandon",
            Event::Report(_) => "report",
            Event::Trades { .. } => "trades",
            Event::Prune { .. } => "prune",
        }
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such order (or not ours).
    UnknownOrder,
    /// The id is already known: never placed twice.
    AlreadyKnown,
    /// The order already went further (or ended): a state never goes back.
    Stale,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; what the engine must be told (fills, acceptances, ends), in order.
    Applied(Vec<Report>),
    /// The router may not send it: the id is known, in this state.
    Duplicate(OrderState),
    /// Nothing changed.
    Refused(Refusal),
    /// `Prune`: how many orders were forgotten.
    Pruned(usize),
}

impl Outcome {
    /// The reports, if any.
    pub fn reports(self) -> Vec<Report> {
        match self {
            Outcome::Applied(r) => r,
            _ => Vec::new(),
        }
    }

    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied(_))
    }
}

/// The book. See the module doc.
#[derive(Debug, Default)]
pub struct OrderBook {
    pub(crate) orders: HashMap<CorrelationId, Record>,
    pub(crate) by_order: HashMap<OrderId, CorrelationId>,
    pub(crate) seq: u64,
    pub(crate) activity: HashMap<crate::domain::InstrumentKey, u64>,
    pub(crate) ignored: u64,
}

impl OrderBook {
    pub fn new() -> OrderBook {
        OrderBook::default()
    }

    /// The one transition function.
    pub fn apply(&mut self, event: Event, now: Now) -> Outcome {
        match event {
            Event::Admit(intent) => self.admit(&intent, now),
            Event::Register { intent, traded, value } => {
                if self.expect_filled(&intent, traded, value, now) {
                    Outcome::Applied(Vec::new())
                } else {
                    self.refusal(&intent.correlation_id)
                }
            }
            Event::RegisterSliced { parent, children } => {
                if self.expect_sliced(&parent, &children, now) {
                    Outcome::Applied(Vec::new())
                } else {
                    self.refusal(&parent.correlation_id)
                }
            }
            Event::Applied { child, parent_traded, child_traded, avg } => {
                if !self.orders.contains_key(&child) {
                    return Outcome::Refused(Refusal::UnknownOrder);
                }
                self.applied(&child, parent_traded, child_traded, avg);
                Outcome::Applied(Vec::new())
            }
            Event::Placed { correlation_id, answer } => self.placed(&correlation_id, answer, now),
            Event::Bind { correlation_id, order_id } => {
                match self.orders.get(&correlation_id) {
                    None => return Outcome::Refused(Refusal::UnknownOrder),
                    Some(r) if r.order_id.is_some() || r.state.is_final() => {
                        return Outcome::Refused(Refusal::Stale);
                    }
                    Some(_) => {}
                }
                Outcome::Applied(self.bind(&correlation_id, &order_id, now).into_iter().collect())
            }
            Event::Finish { correlation_id, reason } => {
                match self.orders.get(&correlation_id) {
                    None => return Outcome::Refused(Refusal::UnknownOrder),
                    Some(r) if r.state.is_final() => return Outcome::Refused(Refusal::Stale),
                    Some(_) => {}
                }
                Outcome::Applied(self.finish(&correlation_id, &reason, now))
            }
            Event::Abandon { parent } => match self.orders.get(&parent) {
                Some(r) if r.sliced.is_some() && !r.state.is_final() => {
                    self.abandon_sliced(&parent, now);
                    Outcome::Applied(Vec::new())
                }
                Some(_) => Outcome::Refused(Refusal::Stale),
                None => Outcome::Refused(Refusal::UnknownOrder),
            },
            Event::Report(seen) => {
                let (ignored, seq) = (self.ignored, self.seq);
                let reports = self.observe(&seen, now);
                if self.ignored > ignored {
                    Outcome::Refused(Refusal::UnknownOrder)
                } else if reports.is_empty() && self.seq == seq {
                    // A duplicate, a stale poll, an ended order, another order with our id.
                    Outcome::Refused(Refusal::Stale)
                } else {
                    Outcome::Applied(reports)
                }
            }
            Event::Trades { seen, trades } => match self.record_trades(&seen, &trades, now) {
                Ok(()) => Outcome::Applied(Vec::new()),
                Err(refusal) => Outcome::Refused(refusal),
            },
            Event::Prune { keep_ms } => Outcome::Pruned(self.prune(keep_ms, now.ms)),
        }
    }

    fn refusal(&self, cid: &CorrelationId) -> Outcome {
        match self.orders.get(cid) {
            Some(r) => Outcome::Duplicate(r.order_state()),
            None => Outcome::Refused(Refusal::AlreadyKnown),
        }
    }

    /// Records `intent` as `intent` unless its correlation id is already known.
    fn admit(&mut self, intent: &OrderIntent, now: Now) -> Outcome {
        if let Some(r) = self.orders.get(&intent.correlation_id) {
            return Outcome::Duplicate(r.order_state());
        }
        self.orders.insert(intent.correlation_id.clone(), Record::new(intent, State::Intent, now));
        Outcome::Applied(Vec::new())
    }

    /// The placement's answer as the router heard it: it moves the state only forward (the
    /// order-update stream may have told more already).
    fn placed(&mut self, cid: &CorrelationId, answer: Answer, now: Now) -> Outcome {
        let Some(r) = self.orders.get_mut(cid) else {
            return Outcome::Refused(Refusal::UnknownOrder);
        };
        let moved = match answer {
            Answer::Accepted(order_id) => {
                let moved = r.advance(State::Accepted, now);
                if moved && r.order_id.is_none() {
                    r.order_id = Some(order_id.clone());
                    self.by_order.insert(order_id, cid.clone());
                }
                moved
            }
            // Once the broker reported executions, a placement's refusal is stale.
            Answer::Rejected(reason) => {
                r.state.rank() < State::PartFilled.rank()
                    && r.advance(State::Rejected { reason }, now)
            }
            Answer::Unknown(detail) => {
                r.state.rank() < State::Unknown { detail: String::new() }.rank()
                    && r.advance(State::Unknown { detail }, now)
            }
            Answer::Filled { order_id, price, traded } => {
                let state =
                    if traded >= r.intent.quantity { State::Filled } else { State::PartFilled };
                if r.state.is_final() || traded <= r.traded {
                    false
                } else {
                    let dq = Qty(traded.0 - r.traded.0);
                    r.fills.insert(
                        format!("{}-{}", order_id.0, traded.0),
                        Execution { quantity: dq, price },
                    );
                    r.value = price * traded;
                    r.traded = traded;
                    r.avg = price;
                    if r.order_id.is_none() {
                        r.order_id = Some(order_id.clone());
                        self.by_order.insert(order_id, cid.clone());
                    }
                    r.state = state;
                    r.updated_at = now.at;
                    true
                }
            }
        };
        if moved {
            r.last_seen_ms = now.ms;
            Outcome::Applied(Vec::new())
        } else {
            Outcome::Refused(Refusal::Stale)
        }
    }

    pub fn get(&self, cid: &CorrelationId) -> Option<&Record> {
        self.orders.get(cid)
    }

    /// Every order the router handed over (not the children of sliced orders), oldest first
    /// (ties by correlation id).
    pub fn entries(&self) -> Vec<OrderView> {
        let mut v: Vec<OrderView> =
            self.orders.values().filter(|r| r.parent.is_none()).map(Record::view).collect();
        v.sort_by(|a, b| {
            (a.sent_at, &a.intent.correlation_id).cmp(&(b.sent_at, &b.intent.correlation_id))
        });
        v
    }

    /// Orders (not children) with this purpose kind (exits of any reason count as exits).
    pub fn count(&self, exits: bool) -> usize {
        self.orders
            .values()
            .filter(|r| r.parent.is_none() && r.intent.purpose.is_exit() == exits)
            .count()
    }

    /// Orders (not children) not ended yet.
    pub fn open_orders(&self) -> usize {
        self.orders.values().filter(|r| r.parent.is_none() && !r.state.is_final()).count()
    }

    /// Every record, children included.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

/// `entry` or `exit`, for logs and metric labels.
pub fn purpose_kind(p: OrderPurpose) -> &'static str {
    if p.is_exit() { "exit" } else { "entry" }
}
