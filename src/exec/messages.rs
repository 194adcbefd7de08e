//! The messages the engine's workers exchange. Channels are named after who sends and who
//! receives (see `engine::shared::Channels`):
//!
//! - exit engine → order router: [`RouterOrder`] on two channels, exits and entries (the router
//!   always drains exits first);
//! - order router (and later the live broker's order-update stream) → exit engine:
//!   [`OrderEvent`];
//! - control API, PnL refresher, heartbeat, demo entries, reload → exit engine:
//!   [`EngineCommand`], some with a reply channel;
//! - tick reader → exit engine: `Tick`s of position instruments (lossless);
//! - exit engine → PnL refresher: [`PnlWake`].

use std::time::Instant;

use crossbeam_channel::Sender;

use crate::broker::reconcile::BrokerCheck;
use crate::domain::{
    CorrelationId, Fill, InstrumentKey, OrderId, OrderIntent, OrderPurpose, Paise, PositionId, Qty,
    Side, Tick, Timestamp,
};
use crate::exec::core::RetryExitError;
use crate::risk::entry::EntryRefusal;
use crate::risk::trading_state::TradingStatus;
use crate::risk::{Limits, RiskParams};

/// An order for the router, with the monotonic instant the exit engine decided it (for the
/// decision → fill latency).
#[derive(Debug, Clone)]
pub struct RouterOrder {
    pub intent: OrderIntent,
    pub decided: Instant,
}

/// What became of an order, reported to the exit engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// The broker took the order; fills follow.
    Accepted {
        correlation_id: CorrelationId,
        purpose: OrderPurpose,
        order_id: OrderId,
        at: Timestamp,
    },
    /// An execution. For an exit, each execution as it comes (part fills add up); for an entry,
    /// the order's total filled quantity at its average price once it is complete.
    Filled { purpose: OrderPurpose, fill: Fill },
    /// Definitively refused: nothing of it will execute.
    Rejected { correlation_id: CorrelationId, purpose: OrderPurpose, reason: String, at: Timestamp },
    /// The broker's answer was lost (timeout, 5xx): the order may or may not exist. The live
    /// broker resolves it by correlation id and reports the outcome later.
    Unknown { correlation_id: CorrelationId, purpose: OrderPurpose, detail: String, at: Timestamp },
    /// Resolution proved the order never reached the broker: an exit starts its next attempt
    /// (a new correlation id), an entry counts as rejected.
    Absent { correlation_id: CorrelationId, purpose: OrderPurpose, detail: String, at: Timestamp },
}

impl OrderEvent {
    pub fn correlation_id(&self) -> &CorrelationId {
        match self {
            OrderEvent::Accepted { correlation_id, .. }
            | OrderEvent::Rejected { correlation_id, .. }
            | OrderEvent::Unknown { correlation_id, .. }
            | OrderEvent::Absent { correlation_id, .. } => correlation_id,
            OrderEvent::Filled { fill, .. } => &fill.correlation_id,
        }
    }
}

/// Who asked for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntrySource {
    /// `POST /v1/orders`.
    Operator,
    /// The `entries_demo` worker.
    Demo,
}

impl EntrySource {
    pub const fn name(self) -> &'static str {
        match self {
            EntrySource::Operator => "operator",
            EntrySource::Demo => "demo",
        }
    }
}

/// A request to open a position with a market order, or a limit order at `limit_price` (as
/// asked: the exit engine rounds it onto the tick and into the band before it is placed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOrder {
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    pub source: EntrySource,
    pub limit_price: Option<Paise>,
}

/// An entry that passed the checks and went to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAccepted {
    pub position_id: PositionId,
    pub correlation_id: CorrelationId,
    /// The price the checks used (the paper broker fills at it).
    pub reference_price: Paise,
}

/// Why an entry was not placed: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRefused {
    pub code: &'static str,
    pub message: String,
}

impl EntryRefused {
    pub fn new(code: &'static str, message: impl Into<String>) -> EntryRefused {
        EntryRefused { code, message: message.into() }
    }

    pub fn from_refusal(r: &EntryRefusal) -> EntryRefused {
        EntryRefused::new(refusal_code(r), r.to_string())
    }
}

/// The stable code of an entry refusal (API answers, metric labels).
pub fn refusal_code(r: &EntryRefusal) -> &'static str {
    match r {
        EntryRefusal::TradingNotActive { .. } => "trading_not_active",
        EntryRefusal::NotATradingDay { .. } => "not_a_trading_day",
        EntryRefusal::AfterEntryCutoff { .. } => "after_entry_cutoff",
        EntryRefusal::MaxOpenPositions { .. } => "max_open_positions",
        EntryRefusal::MaxTradesPerDay { .. } => "max_trades_per_day",
        EntryRefusal::ReentryCooldown { .. } => "reentry_cooldown",
        EntryRefusal::NoPrice { .. } => "no_price",
        EntryRefusal::StalePrice { .. } => "stale_price",
        EntryRefusal::InsufficientCash { .. } => "insufficient_cash",
        EntryRefusal::BadQuantity { .. } => "bad_quantity",
        EntryRefusal::NotTradable { .. } => "not_tradable",
        EntryRefusal::DuplicateId { .. } => "duplicate_id",
        EntryRefusal::AttemptsExhausted { .. } => "attempts_exhausted",
    }
}

/// One exit started by a kill switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStarted {
    pub position_id: PositionId,
    pub correlation_id: CorrelationId,
    /// The last price the exit was decided on.
    pub price: Paise,
}

/// What a kill switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlattenReport {
    pub exits: Vec<ExitStarted>,
    /// Positions already exiting, left to their order in flight.
    pub already_exiting: usize,
    pub trading: TradingStatus,
}

/// A request to the exit engine, the single owner of positions' risk state.
#[derive(Debug)]
pub enum EngineCommand {
    /// Check and place an entry; the answer comes back on `reply`.
    PlaceEntry { order: EntryOrder, reply: Sender<Result<EntryAccepted, EntryRefused>> },
    /// Kill switch: every open position exits `kill_switch`, then trading halts.
    Flatten { reply: Option<Sender<FlattenReport>> },
    /// Operator halt: entries stop, exits continue.
    Halt { reply: Option<Sender<Result<TradingStatus, String>>> },
    /// Lift a halt.
    Resume { reply: Option<Sender<Result<TradingStatus, String>>> },
    /// Run the account rules now (the PnL refresher saw the daily loss limit reached).
    CheckAccount,
    /// Apply reloaded `[risk]` and `[limits]` from the next tick on.
    Reload { risk: RiskParams, limits: Limits },
    /// Prices fetched another way (REST) for instruments whose feed went stale: evaluated as
    /// ticks.
    FallbackPrices(Vec<Tick>),
    /// Forget state no decision needs any more.
    Prune,
    /// An operator retries a position's rejected exit now, with exactly one order.
    RetryExit { id: PositionId, reply: Sender<Result<ExitStarted, RetryExitError>> },
    /// The broker's books, read by the live reconciler: compared with the positions and
    /// adjusted (`broker::reconcile`).
    Reconcile(Box<BrokerCheck>),
}

impl EngineCommand {
    pub const fn name(&self) -> &'static str {
        match self {
            EngineCommand::PlaceEntry { .. } => "place_entry",
            EngineCommand::Flatten { .. } => "flatten",
            EngineCommand::Halt { .. } => "halt",
            EngineCommand::Resume { .. } => "resume",
            EngineCommand::CheckAccount => "check_account",
            EngineCommand::Reload { .. } => "reload",
            EngineCommand::FallbackPrices(_) => "fallback_prices",
            EngineCommand::Prune => "prune",
            EngineCommand::RetryExit { .. } => "retry_exit",
            EngineCommand::Reconcile(_) => "reconcile",
        }
    }
}

/// Tells the PnL refresher to publish a fresh snapshot now (a position opened or closed, the
/// trading state changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PnlWake;
