//! What the store keeps: plain record types (one per table) and the events that carry them
//! from the engine's hot threads to the write-behind worker (`writer.rs`), which applies them
//! through a backend (`sqlite.rs`, `postgres.rs`). No I/O here.
//!
//! Every change is a [`StoreEvent`] with an [`EventId`]; applying an event is idempotent by that
//! id, so a batch replayed from the spill file after a crash or an outage changes nothing the
//! second time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderId, OrderPurpose, Paise, PositionId, Qty, Side,
    Timestamp, Txn,
};

/// The identity of one store event.
///
/// The value is the wall clock in microseconds since the Unix epoch at the time the event was
/// recorded, raised when needed so that ids are **strictly increasing within a process** (two
/// events in the same microsecond get consecutive values). Ids are therefore unique across
/// restarts as long as the wall clock does not step back across a restart by more than the
/// restart took; to close even that gap the writer raises the generator's floor above the
/// highest id it finds in the database and in a leftover spill file when it starts. Ids are
/// assigned under the queue's lock, so the queue, the spill file and the database all see
/// events in id order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

impl EventId {
    /// The id that follows `last` when the wall clock reads `now_micros`: the clock, unless it
    /// has not moved past `last` (same microsecond, or a step back), then `last + 1`.
    pub const fn next_after(last: EventId, now_micros: i64) -> EventId {
        if now_micros > last.0 { EventId(now_micros) } else { EventId(last.0 + 1) }
    }

    /// The wall clock in microseconds since the epoch.
    pub fn wall_clock_micros() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A source of increasing event ids, shared by every producer of one queue.
#[derive(Debug, Default)]
pub struct EventIdGen {
    last: AtomicU64,
}

impl EventIdGen {
    pub fn new() -> EventIdGen {
        EventIdGen::default()
    }

    /// The next id for a wall clock of `now_micros`.
    pub fn next(&self, now_micros: i64) -> EventId {
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let id = EventId::next_after(EventId(last as i64), now_micros);
            match self.last.compare_exchange_weak(
                last,
                id.0 as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// Makes every later id greater than `floor` (an id already used by an earlier run).
    pub fn raise_floor(&self, floor: EventId) {
        self.last.fetch_max(floor.0.max(0) as u64, Ordering::AcqRel);
    }

    /// The last id handed out (or the floor).
    pub fn last(&self) -> EventId {
        EventId(self.last.load(Ordering::Acquire) as i64)
    }
}

/// How a position came to be ours.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionSource {
    /// Opened by one of our entry orders.
    Entry,
    /// Found at the broker and taken over (reconciliation, `positions.csv`), priced at its
    /// own orders' fills (or the given price).
    Adopted,
    /// Found at the broker with no order of ours to explain it, priced at the broker's
    /// average (`entry_price_source = broker_average`).
    AdoptedBrokerAverage,
}

/// A position's lifecycle (risk spec §2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionState {
    Active,
    Exiting,
    Exited,
}

/// An order's status: ours before the broker answers, then the broker's (dhan-v2 §4.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Persisted before it was sent.
    Created,
    /// Sent, no answer yet, or the answer was lost: in flight until resolved.
    Unknown,
    Transit,
    Pending,
    PartTraded,
    Traded,
    Cancelled,
    Rejected,
    Expired,
}

/// The trading state of the account (risk spec §4).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingStateKind {
    Active,
    Reducing,
    Halted,
}

/// Who did what the audit log records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Operator,
    Reconciliation,
    Engine,
}

/// Text codes for the enums above, as stored in the database.
macro_rules! text_codes {
    ($ty:ty { $($variant:ident => $code:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn code(self) -> &'static str {
                match self { $(<$ty>::$variant => $code),+ }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<$ty, String> {
                match s {
                    $($code => Ok(<$ty>::$variant),)+
                    _ => Err(format!("{s:?} is not a {}", stringify!($ty))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

text_codes!(PositionSource {
    Entry => "entry",
    Adopted => "adopted",
    AdoptedBrokerAverage => "adopted_broker_average"
});
text_codes!(PositionState { Active => "active", Exiting => "exiting", Exited => "exited" });
text_codes!(OrderStatus {
    Created => "created",
    Unknown => "unknown",
    Transit => "transit",
    Pending => "pending",
    PartTraded => "part_traded",
    Traded => "traded",
    Cancelled => "cancelled",
    Rejected => "rejected",
    Expired => "expired",
});
text_codes!(TradingStateKind { Active => "active", Reducing => "reducing", Halted => "halted" });
text_codes!(Actor { Operator => "operator", Reconciliation => "reconciliation", Engine => "engine" });

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Created,
        OrderStatus::Unknown,
        OrderStatus::Transit,
        OrderStatus::Pending,
        OrderStatus::PartTraded,
        OrderStatus::Traded,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
    ];

    /// A terminal order will not change again; the others are still in flight.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Traded
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }
}

/// An order's purpose as stored: `entry` or `exit:<reason code>`.
pub fn purpose_code(p: OrderPurpose) -> String {
    match p {
        OrderPurpose::Entry => "entry".to_string(),
        OrderPurpose::Exit(r) => format!("exit:{}", r.code()),
    }
}

pub fn parse_purpose(s: &str) -> Result<OrderPurpose, String> {
    match s {
        "entry" => Ok(OrderPurpose::Entry),
        _ => match s.strip_prefix("exit:") {
            Some(code) => code.parse().map(OrderPurpose::Exit),
            None => Err(format!("{s:?} is not an order purpose (entry or exit:<reason>)")),
        },
    }
}

/// A position and its risk state: everything needed to resume watching it after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRecord {
    pub id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    pub entry_price: Paise,
    pub opened_at: Timestamp,
    pub source: PositionSource,
    pub state: PositionState,
    /// The most favourable price seen since entry.
    pub best_price: Paise,
    /// The highest unrealised gross PnL seen.
    pub hwm_pnl: Paise,
    pub ratchet_stop: Option<Paise>,
    /// The position's last price (risk spec §4): the entry price until a tick is seen.
    pub last_price: Paise,
    /// When `last_price` was seen; `None` while it is still the entry price.
    pub last_price_at: Option<Timestamp>,
    /// Exit orders tried so far (a rejected exit returns the position to `Active`).
    pub exit_attempts: u32,
    pub exit_reason: Option<ExitReason>,
    pub exit_trigger_price: Option<Paise>,
    pub exit_trigger_at: Option<Timestamp>,
    pub exit_correlation_id: Option<CorrelationId>,
    pub exit_price: Option<Paise>,
    pub exited_at: Option<Timestamp>,
    /// The broker's text for the last rejected exit order.
    pub last_rejection: Option<String>,
    pub updated_at: Timestamp,
    /// The entry's exact value, Σ price × quantity of its fills (paise); `None` in rows written
    /// before it was recorded (then `entry_price × quantity` stands for it).
    #[serde(default)]
    pub entry_value: Option<Paise>,
}

impl PositionRecord {
    /// The entry's exact value, or `entry_price × quantity` for a row without it.
    pub fn entry_value(&self) -> Paise {
        self.entry_value.unwrap_or(self.entry_price * self.quantity)
    }

    /// A position just opened at `entry_price` on `opened_at`: `Active`, no tick seen yet (its
    /// best and last price are the entry price), no exit tried.
    pub fn opened(
        id: PositionId,
        instrument: InstrumentKey,
        side: Side,
        quantity: Qty,
        entry_price: Paise,
        opened_at: Timestamp,
        source: PositionSource,
    ) -> PositionRecord {
        PositionRecord {
            id,
            instrument,
            side,
            quantity,
            entry_price,
            opened_at,
            source,
            state: PositionState::Active,
            best_price: entry_price,
            hwm_pnl: Paise::ZERO,
            ratchet_stop: None,
            last_price: entry_price,
            last_price_at: None,
            exit_attempts: 0,
            exit_reason: None,
            exit_trigger_price: None,
            exit_trigger_at: None,
            exit_correlation_id: None,
            exit_price: None,
            exited_at: None,
            last_rejection: None,
            updated_at: opened_at,
            entry_value: None,
        }
    }
}

/// The per-tick part of a position's risk state: a cheaper update than a full upsert, for the
/// throttled persistence of marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionMark {
    pub id: PositionId,
    pub best_price: Paise,
    pub hwm_pnl: Paise,
    pub ratchet_stop: Option<Paise>,
    pub last_price: Paise,
    pub last_price_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// An order we placed, keyed by its correlation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub correlation_id: CorrelationId,
    pub broker_order_id: Option<OrderId>,
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub quantity: Qty,
    pub purpose: OrderPurpose,
    pub status: OrderStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The LIMIT price the order was placed at; `None`: a MARKET order (or a row written
    /// before the store kept it).
    #[serde(default)]
    pub limit_price: Option<Paise>,
}

/// A change of an order's status; also appended to the order's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChange {
    pub correlation_id: CorrelationId,
    pub status: OrderStatus,
    /// The broker's order id when this change reveals it (kept if `None`).
    pub broker_order_id: Option<OrderId>,
    pub at: Timestamp,
    /// Free text: the broker's rejection reason, what resolved an unknown outcome, …
    pub detail: Option<String>,
}

/// One line of an order's history, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderHistoryEntry {
    pub event_id: EventId,
    pub status: OrderStatus,
    pub broker_order_id: Option<OrderId>,
    pub at: Timestamp,
    pub detail: Option<String>,
}

/// An order with every status it went through, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWithHistory {
    pub order: OrderRecord,
    pub history: Vec<OrderHistoryEntry>,
}

/// One execution, keyed by the broker's trade id (a duplicate report is ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    pub trade_id: String,
    pub correlation_id: CorrelationId,
    pub order_id: OrderId,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub quantity: Qty,
    /// The average price of the trades the fill stands for (rounded to the paisa).
    pub price: Paise,
    /// Their exact Σ price × quantity; `None` in rows written before it was recorded (then
    /// `price × quantity` stands for it).
    #[serde(default)]
    pub value: Option<Paise>,
    pub at: Timestamp,
}

impl From<&crate::domain::Fill> for FillRecord {
    fn from(f: &crate::domain::Fill) -> FillRecord {
        FillRecord {
            trade_id: f.trade_id.clone(),
            correlation_id: f.correlation_id.clone(),
            order_id: f.order_id.clone(),
            instrument: f.instrument,
            txn: f.txn,
            quantity: f.quantity,
            price: f.price,
            value: Some(f.value()),
            at: f.at,
        }
    }
}

/// A closed position's result (risk spec §6), keyed by position id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedTradeRecord {
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub reason: ExitReason,
    pub entry_price: Paise,
    pub exit_price: Paise,
    pub quantity: Qty,
    pub gross: Paise,
    pub charges: Paise,
    pub net: Paise,
    pub closed_at: Timestamp,
}

/// The account's realised result for one IST trading day. Written as absolute values (not
/// increments), so replays and reorderings cannot double count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyPnlRecord {
    #[serde(with = "ymd")]
    pub trading_day: NaiveDate,
    pub realised_net: Paise,
    pub charges: Paise,
    pub trade_count: u32,
    pub updated_at: Timestamp,
}

impl DailyPnlRecord {
    /// A day with nothing closed yet.
    pub fn empty(trading_day: NaiveDate) -> DailyPnlRecord {
        DailyPnlRecord {
            trading_day,
            realised_net: Paise::ZERO,
            charges: Paise::ZERO,
            trade_count: 0,
            updated_at: Timestamp(0),
        }
    }
}

/// The account's trading state (a single row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStateRecord {
    pub state: TradingStateKind,
    pub reason: String,
    pub since: Timestamp,
    /// The IST trading day a halt is latched for (daily loss limit, kill switch); `None` when
    /// not latched. A halt latched for today survives a restart; one latched for an earlier
    /// day has expired with the new session.
    #[serde(with = "ymd_opt")]
    pub latched_day: Option<NaiveDate>,
    pub updated_at: Timestamp,
}

impl TradingStateRecord {
    /// Whether this is a halt latched for `trading_day`.
    pub fn is_halt_latched_on(&self, trading_day: NaiveDate) -> bool {
        self.state == TradingStateKind::Halted && self.latched_day == Some(trading_day)
    }
}

/// An operator action or a reconciliation adjustment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: Actor,
    pub action: String,
    pub detail: String,
}

/// An audit line as read back, with the id of the event that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub event_id: EventId,
    pub record: AuditRecord,
}

/// One change to persist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    /// Insert or replace a position with its whole risk state.
    PositionUpsert(PositionRecord),
    /// Update the per-tick risk state of a known position (no effect on an unknown one).
    PositionMark(PositionMark),
    /// A new order (before it is sent); also starts its history.
    OrderPlaced(OrderRecord),
    /// An order's status changed; appended to its history (also for an order not known here,
    /// whose status row then does not exist).
    OrderStatus(OrderStatusChange),
    /// An execution (ignored if its trade id is known).
    Fill(FillRecord),
    /// A position closed.
    TradeClosed(ClosedTradeRecord),
    /// The day's account totals.
    DailyPnl(DailyPnlRecord),
    /// The account's trading state.
    TradingState(TradingStateRecord),
    /// An audit log line.
    Audit(AuditRecord),
}

impl EventKind {
    /// A short name for logs and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            EventKind::PositionUpsert(_) => "position_upsert",
            EventKind::PositionMark(_) => "position_mark",
            EventKind::OrderPlaced(_) => "order_placed",
            EventKind::OrderStatus(_) => "order_status",
            EventKind::Fill(_) => "fill",
            EventKind::TradeClosed(_) => "trade_closed",
            EventKind::DailyPnl(_) => "daily_pnl",
            EventKind::TradingState(_) => "trading_state",
            EventKind::Audit(_) => "audit",
        }
    }
}

/// A change to persist, with its identity and the time it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEvent {
    pub id: EventId,
    pub at: Timestamp,
    pub kind: EventKind,
}

/// What the engine needs from the store to resume after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub trading_day: NaiveDate,
    /// Positions not yet `Exited`, with their risk state.
    pub open_positions: Vec<PositionRecord>,
    /// Orders not in a terminal status (in flight, or with an unknown outcome), with their
    /// correlation ids: an exiting position's exit order is among them.
    pub open_orders: Vec<OrderRecord>,
    /// The stored trading state, as last written (see
    /// [`TradingStateRecord::is_halt_latched_on`]).
    pub trading_state: Option<TradingStateRecord>,
    /// Today's account totals (zeros if nothing closed today).
    pub today: DailyPnlRecord,
    /// The highest event id applied so far (to raise the id generator's floor).
    pub last_event_id: Option<EventId>,
}

impl Recovery {
    /// The stored halt, if it is latched for the recovery's trading day.
    pub fn latched_halt(&self) -> Option<&TradingStateRecord> {
        self.trading_state.as_ref().filter(|s| s.is_halt_latched_on(self.trading_day))
    }
}

/// `YYYY-MM-DD`, the storage form of a trading day.
pub fn day_to_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub fn day_from_text(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("{s:?} is not a YYYY-MM-DD day ({e})"))
}

mod ymd {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::day_to_text(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        super::day_from_text(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod ymd_opt {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::day_to_text(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(t) => super::day_from_text(&t).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_follow_the_clock_and_never_repeat_within_a_microsecond() {
        let cases = [
            (0, 1_000, 1_000),     // clock ahead: the clock
            (1_000, 1_000, 1_001), // same microsecond: last + 1
            (1_000, 900, 1_001),   // clock stepped back: last + 1
            (1_001, 5_000, 5_000), // clock moved on: the clock again
        ];
        for (last, now, want) in cases {
            assert_eq!(EventId::next_after(EventId(last), now), EventId(want), "{last} {now}");
        }
    }

    #[test]
    fn event_id_generator_is_strictly_increasing_and_respects_its_floor() {
        let g = EventIdGen::new();
        let a = g.next(10);
        let b = g.next(10);
        let c = g.next(5);
        assert!(a < b && b < c);
        g.raise_floor(EventId(1_000));
        assert_eq!(g.next(20), EventId(1_001));
        g.raise_floor(EventId(3)); // never lowers
        assert_eq!(g.next(20), EventId(1_002));
    }

    #[test]
    fn status_codes_round_trip_and_terminal_statuses_are_final() {
        for s in OrderStatus::ALL {
            assert_eq!(s.code().parse::<OrderStatus>(), Ok(s));
        }
        let terminal: Vec<_> = OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                OrderStatus::Traded,
                OrderStatus::Cancelled,
                OrderStatus::Rejected,
                OrderStatus::Expired
            ]
        );
        assert!("TRADED".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn purposes_are_stored_as_entry_or_exit_with_reason() {
        for p in std::iter::once(OrderPurpose::Entry)
            .chain(ExitReason::ALL.into_iter().map(OrderPurpose::Exit))
        {
            assert_eq!(parse_purpose(&purpose_code(p)), Ok(p));
        }
        assert_eq!(purpose_code(OrderPurpose::Exit(ExitReason::StopLoss)), "exit:stop_loss");
        assert!(parse_purpose("exit:nope").is_err());
        assert!(parse_purpose("bogus").is_err());
    }

    #[test]
    fn a_halt_is_latched_only_for_its_own_trading_day() {
        let day = NaiveDate::from_ymd_opt(2025, 11, 24).unwrap();
        let next = day.succ_opt().unwrap();
        let halted = TradingStateRecord {
            state: TradingStateKind::Halted,
            reason: "daily_loss_limit".into(),
            since: Timestamp(1),
            latched_day: Some(day),
            updated_at: Timestamp(1),
        };
        assert!(halted.is_halt_latched_on(day));
        assert!(!halted.is_halt_latched_on(next));
        let unlatched = TradingStateRecord { latched_day: None, ..halted.clone() };
        assert!(!unlatched.is_halt_latched_on(day));
    }

    #[test]
    fn events_survive_a_json_round_trip() {
        let ev = StoreEvent {
            id: EventId(1_763_960_415_000_123),
            at: Timestamp(1_763_960_415_000),
            kind: EventKind::DailyPnl(DailyPnlRecord {
                trading_day: NaiveDate::from_ymd_opt(2025, 11, 24).unwrap(),
                realised_net: Paise(143_672),
                charges: Paise(6_328),
                trade_count: 1,
                updated_at: Timestamp(5),
            }),
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert!(text.contains("\"2025-11-24\""), "{text}");
        assert_eq!(serde_json::from_str::<StoreEvent>(&text).unwrap(), ev);
    }
}
