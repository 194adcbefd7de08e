//! The exit core's values: parameters, the events it returns, closed trades, views for the
//! API, the persisted state and its errors.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderIntent, Paise, PositionId, Qty, Side, Timestamp,
};
use crate::pnl::ChargeSchedule;
use crate::risk::correlation::CorrelationError;
use crate::risk::position::{Lifecycle, LifecycleError, Position};
use crate::risk::rules::RiskState;
use crate::risk::trading_state::{TradingStateChange, TradingStateError, TradingStatus};
use crate::risk::{Limits, RiskParams, SessionParams};

use crate::exec::exit_retry::{ExitRetryPolicy, RetryView};

/// Everything the core is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreParams {
    pub risk: RiskParams,
    pub limits: Limits,
    pub session: SessionParams,
    pub charges: ChargeSchedule,
    /// What a rejected exit leads to (`exit_retry`).
    pub exit_retry: ExitRetryPolicy,
}

/// An effect of a core call, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    /// Place this exit order (purpose `Exit(reason)`), once.
    ExitIntent(OrderIntent),
    /// A position opened or moved in its lifecycle; carries the position as it now is.
    Position(Box<PositionEvent>),
    /// A position closed, with its PnL.
    TradeClosed(Box<ClosedTrade>),
    TradingState(TradingStateChange),
    /// A new IST trading day began: the day's counters were reset.
    SessionStarted {
        session: NaiveDate,
        at: Timestamp,
    },
    Alert(Alert),
}

/// What happened to a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionChange {
    Opened,
    ExitStarted {
        reason: ExitReason,
        attempt: u32,
    },
    PartFilled {
        remaining: Qty,
    },
    ExitRejected {
        attempt: u32,
        why: String,
    },
    /// A rejection was permanent: the exit is retried only slowly (`exit_retry`) until the
    /// cause clears or an operator retries it.
    ExitBlocked {
        cause: String,
        why: String,
        retry_at: Timestamp,
    },
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionEvent {
    pub change: PositionChange,
    pub at: Timestamp,
    pub position: Position,
}

/// A closed position and its PnL (risk spec §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedTrade {
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    pub entry_price: Paise,
    pub opened_at: Timestamp,
    /// Average of the exit fills, rounded half away from zero.
    pub exit_price: Paise,
    pub exited_at: Timestamp,
    pub reason: ExitReason,
    /// The exit attempt that completed it.
    pub attempt: u32,
    /// The exit was decided on a stale price.
    pub price_was_stale: bool,
    pub gross: Paise,
    pub entry_charges: Paise,
    pub exit_charges: Paise,
    pub net: Paise,
}

impl ClosedTrade {
    pub fn charges(&self) -> Paise {
        self.entry_charges + self.exit_charges
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Info,
    Warning,
    Critical,
}

impl AlertLevel {
    /// As in the event stream and the `severity` label of `scalper_alerts_total`.
    pub const fn name(self) -> &'static str {
        match self {
            AlertLevel::Info => "info",
            AlertLevel::Warning => "warning",
            AlertLevel::Critical => "critical",
        }
    }
}

/// Something an operator should see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub level: AlertLevel,
    /// Stable machine-readable code (`daily_loss_limit`, `exit_rejected`, …).
    pub code: String,
    pub message: String,
    pub at: Timestamp,
}

/// An entry order placed and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    pub correlation_id: CorrelationId,
    pub attempt: u32,
    pub reference_price: Paise,
    pub placed_at: Timestamp,
    /// The LIMIT price the entry was placed at; `None`: a MARKET order. Kept so that the
    /// children of a sliced limit entry still to send after a restart go at the same price.
    #[serde(default)]
    pub limit_price: Option<Paise>,
}

/// A position to open: an entry fill or a position adopted from the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPosition {
    pub id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    pub entry_price: Paise,
    pub opened_at: Timestamp,
}

/// The day's account figures; reset when a new session begins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFigures {
    /// The IST trading day these figures belong to.
    #[serde(with = "date_opt")]
    pub session: Option<NaiveDate>,
    pub realised_gross: Paise,
    /// Both legs' charges of the trades closed today.
    pub charges: Paise,
    pub realised_net: Paise,
    /// Entries filled today.
    pub trades: u32,
    /// Positions closed today.
    pub closed: u32,
}

/// Everything needed to continue exactly after a restart (with the trading status, which
/// lives in its own cell).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreState {
    /// Positions not yet closed, in any lifecycle state but `Exited`.
    pub positions: Vec<Position>,
    pub pending_entries: Vec<PendingEntry>,
    /// Entry attempts used per position id (a re-placed entry gets a new correlation id).
    pub entry_attempts: Vec<(PositionId, u32)>,
    pub day: DayFigures,
    /// When a position on each instrument last closed (re-entry cooldown).
    pub last_exits: Vec<(InstrumentKey, Timestamp)>,
    /// The last instant `on_clock` processed: timed rules that came due in between still fire.
    pub clock: Option<Timestamp>,
}

/// A position as the API and the PnL refresher show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionView {
    pub id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub open_quantity: Qty,
    pub entry_price: Paise,
    pub opened_at: Timestamp,
    pub last_price: Paise,
    pub last_price_at: Option<Timestamp>,
    pub price_is_stale: bool,
    pub unrealised_gross: Paise,
    pub risk: RiskState,
    pub lifecycle: Lifecycle,
    /// A rejected exit waiting for its next try (blocked or backing off).
    #[serde(default)]
    pub exit_retry: Option<RetryView>,
    /// How the engine came to hold it (and so where its entry price comes from).
    #[serde(default = "entry_origin")]
    pub origin: crate::risk::position::Origin,
}

fn entry_origin() -> crate::risk::position::Origin {
    crate::risk::position::Origin::Entry
}

impl PositionView {
    /// `exit_blocked` for a position whose exit was refused permanently, else the lifecycle's
    /// name (`active`, `exiting`).
    pub fn state_name(&self) -> &'static str {
        match &self.exit_retry {
            Some(r) if r.blocked.is_some() && !matches!(self.lifecycle, Lifecycle::Exited(_)) => {
                "exit_blocked"
            }
            _ => self.lifecycle.name(),
        }
    }
}

/// The account's day as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    #[serde(with = "date_opt")]
    pub session: Option<NaiveDate>,
    pub realised_gross: Paise,
    pub realised_net: Paise,
    /// Charges of the trades closed today (both legs).
    pub charges: Paise,
    pub unrealised_gross: Paise,
    /// `realised_net + unrealised_gross`: what the daily loss limit is checked against.
    pub day_pnl: Paise,
    pub max_daily_loss: Paise,
    pub trades_today: u32,
    pub closed_today: u32,
    pub open_positions: u32,
    pub pending_entries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreSnapshot {
    pub at: Timestamp,
    pub trading: TradingStatus,
    pub positions: Vec<PositionView>,
    pub account: AccountView,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("no order in flight has correlation id {0}")]
    UnknownOrder(CorrelationId),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Correlation(#[from] CorrelationError),
    #[error(transparent)]
    Trading(#[from] TradingStateError),
    #[error("position {id} is already open or pending")]
    DuplicatePosition { id: PositionId },
    #[error("position {id} cannot be opened: {why}")]
    InvalidPosition { id: PositionId, why: String },
    #[error("cannot restore: {0}")]
    Restore(String),
}

/// Why an operator's exit retry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryExitError {
    #[error("no open position {0}")]
    UnknownPosition(PositionId),
    #[error("position {id} has no rejected exit to retry (it is {state})")]
    NotRetryable { id: PositionId, state: &'static str },
}

/// `Option<NaiveDate>` as `"YYYY-MM-DD"` or null.
mod date_opt {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&d.format("%Y-%m-%d")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| NaiveDate::parse_from_str(&t, "%Y-%m-%d").map_err(serde::de::Error::custom))
            .transpose()
    }
}
