//! The exit core: every position's risk state and lifecycle, the instruments' last prices, the
//! day's account figures, and the decisions made on them, as one single-threaded state machine.
//!
//! Inputs are method calls with the time as an argument (`on_tick`, `on_clock`, `flatten`,
//! order feedback, entries); every effect comes back as a list of [`CoreEvent`] values: exit
//! intents for the router, position changes and closed trades for the store, trading-state
//! changes and alerts for operators. Nothing here reads a clock, sleeps, locks more than the
//! shared [`TradingCell`] or does I/O, so the exit-engine worker, replay, tests and the
//! benchmark all drive the very same code.
//!
//! Order of work: [`ExitCore::on_clock`] runs the timed rules whose instant has come (square-off,
//! stale-feed exits, a new session); [`ExitCore::on_tick`] runs the per-tick rules of the
//! positions on the tick's instrument, then the account rules. Exactly one exit intent leaves
//! per trigger: a position that is `Exiting` or `Exited` ignores every further trigger.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId, Qty,
    Side, Tick, Timestamp, Txn,
};
use crate::pnl::{self, ChargeSchedule};
use crate::risk::correlation::{self, CorrelationError};
use crate::risk::entry::{self, EntryApproval, EntryContext, EntryRefusal, EntryRequest};
use crate::risk::position::{Lifecycle, LifecycleError, LifecycleEvent, Origin, Outcome, Position};
use crate::risk::trading_state::{
    HaltCause, TradingCell, TradingCommand, TradingStateChange, TradingStateError, TradingStatus,
};
use crate::risk::{Limits, RiskParams, SessionClock, SessionParams, rules};

/// Everything the core is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreParams {
    pub risk: RiskParams,
    pub limits: Limits,
    pub session: SessionParams,
    pub charges: ChargeSchedule,
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
    ExitStarted { reason: ExitReason, attempt: u32 },
    PartFilled { remaining: Qty },
    ExitRejected { attempt: u32, why: String },
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
    pub risk: rules::RiskState,
    pub lifecycle: Lifecycle,
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

#[derive(Debug, Clone, Copy)]
struct LastTick {
    ltp: Paise,
    at: Timestamp,
}

/// The exit engine's state machine. See the module doc.
#[derive(Debug)]
pub struct ExitCore {
    risk: RiskParams,
    limits: Limits,
    charges: ChargeSchedule,
    session: SessionClock,
    trading: TradingCell,
    /// Positions by slot; a closed position's slot is freed and reused.
    slots: Vec<Option<Position>>,
    free: Vec<usize>,
    by_id: HashMap<PositionId, usize>,
    by_instrument: HashMap<InstrumentKey, Vec<usize>>,
    exits_in_flight: HashMap<CorrelationId, usize>,
    last_ticks: HashMap<InstrumentKey, LastTick>,
    pending: BTreeMap<PositionId, PendingEntry>,
    entry_attempts: BTreeMap<PositionId, u32>,
    last_exits: HashMap<InstrumentKey, Timestamp>,
    day: DayFigures,
    clock: Option<Timestamp>,
}

impl ExitCore {
    pub fn new(params: CoreParams, trading: TradingCell) -> ExitCore {
        ExitCore {
            risk: params.risk,
            limits: params.limits,
            charges: params.charges,
            session: SessionClock::new(params.session),
            trading,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_instrument: HashMap::new(),
            exits_in_flight: HashMap::new(),
            last_ticks: HashMap::new(),
            pending: BTreeMap::new(),
            entry_attempts: BTreeMap::new(),
            last_exits: HashMap::new(),
            day: DayFigures::default(),
            clock: None,
        }
    }

    /// A core that continues from persisted state. `trading` must already hold the persisted
    /// trading status.
    pub fn restore(
        params: CoreParams,
        trading: TradingCell,
        state: CoreState,
    ) -> Result<ExitCore, CoreError> {
        let mut core = ExitCore::new(params, trading);
        for p in state.positions {
            if p.is_closed() {
                return Err(CoreError::Restore(format!("position {} is already exited", p.id)));
            }
            if p.open_quantity().0 <= 0 || p.quantity.0 <= 0 {
                return Err(CoreError::Restore(format!(
                    "position {} has no open quantity ({} entered)",
                    p.id, p.quantity
                )));
            }
            if core.by_id.contains_key(&p.id) {
                return Err(CoreError::Restore(format!("position {} appears twice", p.id)));
            }
            let cid = match &p.lifecycle {
                Lifecycle::Exiting(x) => Some(x.correlation_id.clone()),
                _ => None,
            };
            let slot = core.insert(p);
            if let Some(cid) = cid {
                core.exits_in_flight.insert(cid, slot);
            }
        }
        for e in state.pending_entries {
            if core.by_id.contains_key(&e.position_id) || core.pending.contains_key(&e.position_id)
            {
                return Err(CoreError::Restore(format!(
                    "pending entry {} duplicates a position or another entry",
                    e.position_id
                )));
            }
            core.pending.insert(e.position_id.clone(), e);
        }
        core.entry_attempts = state.entry_attempts.into_iter().collect();
        core.last_exits = state.last_exits.into_iter().collect();
        core.day = state.day;
        core.clock = state.clock;
        Ok(core)
    }

    /// The state to persist; [`ExitCore::restore`] takes it back.
    pub fn export(&self) -> CoreState {
        let mut last_exits: Vec<_> = self.last_exits.iter().map(|(k, t)| (*k, *t)).collect();
        last_exits.sort();
        CoreState {
            positions: self.positions().cloned().collect(),
            pending_entries: self.pending.values().cloned().collect(),
            entry_attempts: self.entry_attempts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            day: self.day.clone(),
            last_exits,
            clock: self.clock,
        }
    }

    pub fn trading(&self) -> &TradingCell {
        &self.trading
    }

    pub fn session_clock(&self) -> &SessionClock {
        &self.session
    }

    pub fn charges(&self) -> &ChargeSchedule {
        &self.charges
    }

    /// Open positions (not yet `Exited`), in slot order.
    pub fn positions(&self) -> impl Iterator<Item = &Position> {
        self.slots.iter().flatten()
    }

    pub fn position(&self, id: &PositionId) -> Option<&Position> {
        self.by_id.get(id).and_then(|&s| self.slots[s].as_ref())
    }

    pub fn day(&self) -> &DayFigures {
        &self.day
    }

    /// The instrument's last tick: LTP and when it was received.
    pub fn last_tick(&self, instrument: &InstrumentKey) -> Option<(Paise, Timestamp)> {
        self.last_ticks.get(instrument).map(|t| (t.ltp, t.at))
    }

    // ---- ticks ----------------------------------------------------------------------------

    /// A tick: record the instrument's price; for each position on it that is live at the
    /// tick's time (`opened_at` inclusive) update last price and risk state and evaluate the
    /// rules; then the account rules.
    pub fn on_tick(&mut self, tick: &Tick) -> Vec<CoreEvent> {
        let now = tick.received_at;
        let mut events = Vec::new();
        self.last_ticks.insert(tick.instrument, LastTick { ltp: tick.ltp, at: now });
        let Self { by_instrument, slots, exits_in_flight, risk, .. } = self;
        for &slot in by_instrument.get(&tick.instrument).map_or(&[][..], Vec::as_slice) {
            let Some(pos) = slots[slot].as_mut() else { continue };
            if now < pos.opened_at {
                continue;
            }
            pos.last_price = tick.ltp;
            pos.last_price_at = Some(now);
            let terms = pos.terms();
            rules::update(risk, &terms, &mut pos.risk, tick.ltp);
            if !pos.is_active() {
                continue;
            }
            if let Some(reason) = rules::evaluate(risk, &terms, &pos.risk, tick.ltp) {
                let trigger = Trigger { reason, price: tick.ltp, at: now, stale: false };
                trigger_exit(pos, slot, trigger, exits_in_flight, &mut events);
            }
        }
        self.account_rules(now, &mut events);
        events
    }

    /// The account rules (§4) at `now`: when the day's PnL is at or below minus the daily
    /// loss limit, every `Active` position exits `daily_loss_limit` at its last price and
    /// trading halts (latched). Run by `on_tick`; the PnL refresher calls it on its cadence.
    pub fn check_account(&mut self, now: Timestamp) -> Vec<CoreEvent> {
        let mut events = Vec::new();
        self.account_rules(now, &mut events);
        events
    }

    fn account_rules(&mut self, now: Timestamp, events: &mut Vec<CoreEvent>) {
        let limit = self.limits.max_daily_loss;
        if limit.0 <= 0 {
            return;
        }
        let day_pnl = self.day.realised_net + self.unrealised_gross();
        if day_pnl > -limit {
            return;
        }
        let mut started = 0;
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active()) {
                let (price, stale) = (p.last_price, self.is_stale(p, now));
                if self.start_exit(slot, ExitReason::DailyLossLimit, price, now, stale, events) {
                    started += 1;
                }
            }
        }
        let halted = self.halt(HaltCause::DailyLossLimit, now, events);
        if halted || started > 0 {
            events.push(alert(
                AlertLevel::Critical,
                "daily_loss_limit",
                format!(
                    "day PnL {day_pnl} reached the daily loss limit of -{limit}: {started} positions exiting, trading halted"
                ),
                now,
            ));
        }
    }

    // ---- clock ----------------------------------------------------------------------------

    /// The timed rules whose instant has come, in time order: each day's square-off at
    /// `square_off_time` (exit time = that instant), stale-feed exits after
    /// `stale_exit_after_secs` without a fresh price (exit time = when it came due), then a new
    /// session (counters reset, halt lifted). A position still `Active` past its day's
    /// square-off (a rejected exit, a late adoption) exits at `now`.
    pub fn on_clock(&mut self, now: Timestamp) -> Vec<CoreEvent> {
        let mut events = Vec::new();
        let prev = self.clock;
        if self.day.session.is_none() {
            self.day.session = Some(self.session.session_of(now));
        }
        let stale_ms = self.risk.stale_exit_after_secs * 1_000;

        if let Some(prev) = prev.filter(|p| now > *p) {
            // Instants in (prev, now]: square-offs rank before stale exits at the same instant.
            let mut due: Vec<(Timestamp, u8, usize)> = self
                .session
                .square_offs_between(prev, now)
                .into_iter()
                .map(|t| (t, 0, usize::MAX))
                .collect();
            if stale_ms > 0 {
                for (slot, p) in self.slots.iter().enumerate() {
                    if let Some(p) = p.as_ref().filter(|p| p.is_active()) {
                        let t = fresh_at(p).plus_millis(stale_ms);
                        if t > prev && t <= now {
                            due.push((t, 1, slot));
                        }
                    }
                }
            }
            due.sort();
            for (t, kind, slot) in due {
                if kind == 0 {
                    self.square_off(t, |p| p.opened_at <= t, &mut events);
                } else {
                    self.stale_exit(slot, t, &mut events);
                }
            }
        }

        if self.session.is_past_square_off(now) {
            self.square_off(now, |_| true, &mut events);
        }
        if stale_ms > 0 {
            for slot in 0..self.slots.len() {
                let late = self.slots[slot]
                    .as_ref()
                    .is_some_and(|p| p.is_active() && fresh_at(p).plus_millis(stale_ms) <= now);
                if late {
                    self.stale_exit(slot, now, &mut events);
                }
            }
        }
        self.roll_session(now, &mut events);
        self.clock = Some(prev.map_or(now, |p| p.max(now)));
        events
    }

    fn square_off(
        &mut self,
        at: Timestamp,
        include: impl Fn(&Position) -> bool,
        events: &mut Vec<CoreEvent>,
    ) {
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active() && include(p)) {
                let (price, stale) = (p.last_price, self.is_stale(p, at));
                self.start_exit(slot, ExitReason::SquareOff, price, at, stale, events);
            }
        }
    }

    fn stale_exit(&mut self, slot: usize, at: Timestamp, events: &mut Vec<CoreEvent>) {
        let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active()) else { return };
        let (price, id, since) = (p.last_price, p.id.clone(), fresh_at(p));
        if self.start_exit(slot, ExitReason::StaleFeed, price, at, true, events) {
            events.push(alert(
                AlertLevel::Warning,
                "stale_feed",
                format!(
                    "position {id}: no fresh price since {since}, exiting at last price {price}"
                ),
                at,
            ));
        }
    }

    /// Starts a new session when `at` falls on a later trading day than the current one.
    fn roll_session(&mut self, at: Timestamp, events: &mut Vec<CoreEvent>) {
        let current = match self.day.session {
            Some(d) => d,
            None => {
                self.day.session = Some(self.session.session_of(at));
                return;
            }
        };
        let Some(new) = self.session.new_session(current, at) else { return };
        self.day = DayFigures { session: Some(new), ..DayFigures::default() };
        self.entry_attempts.clear();
        events.push(CoreEvent::SessionStarted { session: new, at });
        if let Ok(Some(change)) = self.trading.apply(TradingCommand::NewSession, at) {
            events.push(CoreEvent::TradingState(change));
        }
    }

    // ---- operator -------------------------------------------------------------------------

    /// Kill switch: every `Active` position exits `kill_switch` at its last price and trading
    /// halts until resumed.
    pub fn flatten(&mut self, now: Timestamp) -> Vec<CoreEvent> {
        let mut events = Vec::new();
        let mut started = 0;
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active()) {
                let (price, stale) = (p.last_price, self.is_stale(p, now));
                if self.start_exit(slot, ExitReason::KillSwitch, price, now, stale, &mut events) {
                    started += 1;
                }
            }
        }
        self.halt(HaltCause::KillSwitch, now, &mut events);
        events.push(alert(
            AlertLevel::Critical,
            "kill_switch",
            format!("kill switch: {started} positions exiting, trading halted"),
            now,
        ));
        events
    }

    /// An operator lifts a halt.
    pub fn resume(&mut self, now: Timestamp) -> Result<Vec<CoreEvent>, CoreError> {
        Ok(self
            .trading
            .apply(TradingCommand::Resume, now)?
            .map(CoreEvent::TradingState)
            .into_iter()
            .collect())
    }

    fn halt(&mut self, cause: HaltCause, at: Timestamp, events: &mut Vec<CoreEvent>) -> bool {
        match self.trading.apply(TradingCommand::Halt { cause }, at) {
            Ok(Some(change)) => {
                events.push(CoreEvent::TradingState(change));
                true
            }
            _ => false,
        }
    }

    // ---- exits ----------------------------------------------------------------------------

    /// Triggers an exit of the position in `slot`; see [`trigger_exit`].
    fn start_exit(
        &mut self,
        slot: usize,
        reason: ExitReason,
        price: Paise,
        at: Timestamp,
        stale: bool,
        events: &mut Vec<CoreEvent>,
    ) -> bool {
        let Some(pos) = self.slots[slot].as_mut() else { return false };
        let trigger = Trigger { reason, price, at, stale };
        trigger_exit(pos, slot, trigger, &mut self.exits_in_flight, events)
    }

    /// An execution of an exit order. A full fill closes the position and yields its
    /// [`ClosedTrade`]; a part fill keeps the exit in flight.
    pub fn on_exit_filled(
        &mut self,
        correlation_id: &CorrelationId,
        price: Paise,
        quantity: Qty,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let slot = *self
            .exits_in_flight
            .get(correlation_id)
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let fill =
            LifecycleEvent::Fill { correlation_id: correlation_id.clone(), price, quantity, at };
        let mut events = Vec::new();
        match pos.apply(fill)? {
            Outcome::PartFilled { remaining } => {
                events.push(position_event(PositionChange::PartFilled { remaining }, at, pos));
            }
            Outcome::Exited => {
                self.exits_in_flight.remove(correlation_id);
                let pos = self.remove(slot);
                let trade = closed_trade(&self.charges, &pos);
                self.roll_session(at, &mut events);
                if self.day.session == Some(self.session.session_of(at)) {
                    self.day.realised_gross += trade.gross;
                    self.day.charges += trade.charges();
                    self.day.realised_net += trade.net;
                    self.day.closed += 1;
                }
                let last = self.last_exits.entry(pos.instrument).or_insert(at);
                *last = (*last).max(at);
                events.push(position_event(PositionChange::Exited, at, &pos));
                events.push(CoreEvent::TradeClosed(Box::new(trade)));
            }
            other => unreachable!("a fill on an exit in flight yields {other:?}"),
        }
        Ok(events)
    }

    /// The exit order was definitively rejected: the position is `Active` again (attempt count
    /// kept, rejection recorded) and the next trigger places a new order.
    pub fn on_exit_rejected(
        &mut self,
        correlation_id: &CorrelationId,
        why: &str,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let slot = *self
            .exits_in_flight
            .get(correlation_id)
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let event = LifecycleEvent::Rejected {
            correlation_id: correlation_id.clone(),
            why: why.to_string(),
            at,
        };
        let Outcome::Returned { attempts, executed } = pos.apply(event)? else {
            unreachable!("a rejection of an exit in flight returns the position to active")
        };
        self.exits_in_flight.remove(correlation_id);
        let change = PositionChange::ExitRejected { attempt: attempts, why: why.to_string() };
        let message = format!(
            "exit {correlation_id} of position {} rejected ({why}); {executed} had executed, {} still open",
            pos.id,
            pos.open_quantity()
        );
        Ok(vec![
            position_event(change, at, pos),
            alert(AlertLevel::Warning, "exit_rejected", message, at),
        ])
    }

    // ---- entries --------------------------------------------------------------------------

    /// Whether `request` may be placed now; every refusal says why.
    pub fn check_entry(
        &self,
        request: &EntryRequest,
        now: Timestamp,
    ) -> Result<EntryApproval, EntryRefusal> {
        let ctx = EntryContext {
            now,
            trading: self.trading.state(),
            session: &self.session,
            limits: &self.limits,
            charges: &self.charges,
            stale_after_ms: self.risk.stale_after_ms,
            open_positions: self.by_id.len() as u32,
            pending_entries: self.pending.len() as u32,
            trades_today: self.day.trades,
            last_exit: self.last_exits.get(&request.instrument).copied(),
            last_tick: self.last_tick(&request.instrument),
            id_in_use: self.by_id.contains_key(&request.position_id)
                || self.pending.contains_key(&request.position_id),
        };
        entry::check(&ctx, request)
    }

    /// Checks `request` and, if accepted, records it as pending (it counts towards the limits)
    /// and returns the entry order to place.
    pub fn begin_entry(
        &mut self,
        request: &EntryRequest,
        now: Timestamp,
    ) -> Result<OrderIntent, EntryRefusal> {
        let approval = self.check_entry(request, now)?;
        let attempt = self.entry_attempts.get(&request.position_id).copied().unwrap_or(0) + 1;
        // The attempt bound is far above any real retry count; refuse rather than panic.
        let correlation_id = correlation::entry_id(&request.position_id, attempt)
            .map_err(|_| EntryRefusal::DuplicateId { id: request.position_id.clone() })?;
        self.entry_attempts.insert(request.position_id.clone(), attempt);
        self.pending.insert(
            request.position_id.clone(),
            PendingEntry {
                position_id: request.position_id.clone(),
                instrument: request.instrument,
                side: request.side,
                quantity: request.quantity,
                correlation_id: correlation_id.clone(),
                attempt,
                reference_price: approval.reference_price,
                placed_at: now,
            },
        );
        Ok(OrderIntent {
            correlation_id,
            position_id: request.position_id.clone(),
            instrument: request.instrument,
            txn: Txn::opening(request.side),
            quantity: request.quantity,
            purpose: OrderPurpose::Entry,
            reference_price: approval.reference_price,
            price_is_stale: false,
            created_at: now,
        })
    }

    /// The entry order filled: `quantity` is the order's total filled quantity and `price` its
    /// average price. Opens the position (it counts as a trade today).
    pub fn on_entry_filled(
        &mut self,
        correlation_id: &CorrelationId,
        price: Paise,
        quantity: Qty,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let pending = self
            .pending
            .values()
            .find(|e| &e.correlation_id == correlation_id)
            .cloned()
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))?;
        let new = NewPosition {
            id: pending.position_id,
            instrument: pending.instrument,
            side: pending.side,
            quantity,
            entry_price: price,
            opened_at: at,
        };
        self.open_position(new, Origin::Entry)
    }

    /// The entry order was rejected: it no longer counts towards the limits.
    pub fn on_entry_rejected(
        &mut self,
        correlation_id: &CorrelationId,
        why: &str,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let id = self
            .pending
            .values()
            .find(|e| &e.correlation_id == correlation_id)
            .map(|e| e.position_id.clone())
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))?;
        self.pending.remove(&id);
        Ok(vec![alert(
            AlertLevel::Warning,
            "entry_rejected",
            format!("entry {correlation_id} of position {id} rejected: {why}"),
            at,
        )])
    }

    /// Opens a position: an entry fill (`Origin::Entry`: its pending entry is settled and it
    /// counts as a trade) or a position adopted from the broker (`Origin::Adopted`: taken as
    /// given, no entry checks).
    pub fn open_position(
        &mut self,
        new: NewPosition,
        origin: Origin,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let invalid = |why: String| CoreError::InvalidPosition { id: new.id.clone(), why };
        if new.quantity.0 <= 0 {
            return Err(invalid(format!("quantity {} is not positive", new.quantity)));
        }
        if new.entry_price.0 <= 0 {
            return Err(invalid(format!("entry price {} is not positive", new.entry_price)));
        }
        if self.by_id.contains_key(&new.id) {
            return Err(CoreError::DuplicatePosition { id: new.id });
        }
        match origin {
            Origin::Entry => {
                self.pending.remove(&new.id);
                if self.day.session.is_none() {
                    self.day.session = Some(self.session.session_of(new.opened_at));
                }
                self.day.trades += 1;
            }
            Origin::Adopted => {
                if self.pending.contains_key(&new.id) {
                    return Err(CoreError::DuplicatePosition { id: new.id });
                }
            }
        }
        let at = new.opened_at;
        let pos = Position::open(
            new.id,
            new.instrument,
            new.side,
            new.quantity,
            new.entry_price,
            new.opened_at,
            origin,
        );
        let event = position_event(PositionChange::Opened, at, &pos);
        self.insert(pos);
        Ok(vec![event])
    }

    // ---- views ----------------------------------------------------------------------------

    /// Unrealised gross PnL of every open position at its last price.
    pub fn unrealised_gross(&self) -> Paise {
        self.positions().map(Position::unrealised).sum()
    }

    /// The day's PnL as the daily loss limit sees it.
    pub fn day_pnl(&self) -> Paise {
        self.day.realised_net + self.unrealised_gross()
    }

    /// Positions (sorted by id) and the day's account, for the PnL refresher and the API.
    pub fn snapshot(&self, now: Timestamp) -> CoreSnapshot {
        let mut positions: Vec<PositionView> = self
            .positions()
            .map(|p| PositionView {
                id: p.id.clone(),
                instrument: p.instrument,
                side: p.side,
                open_quantity: p.open_quantity(),
                entry_price: p.entry_price,
                opened_at: p.opened_at,
                last_price: p.last_price,
                last_price_at: p.last_price_at,
                price_is_stale: self.is_stale(p, now),
                unrealised_gross: p.unrealised(),
                risk: p.risk,
                lifecycle: p.lifecycle.clone(),
            })
            .collect();
        positions.sort_by(|a, b| a.id.cmp(&b.id));
        let unrealised = self.unrealised_gross();
        CoreSnapshot {
            at: now,
            trading: self.trading.status(),
            positions,
            account: AccountView {
                session: self.day.session,
                realised_gross: self.day.realised_gross,
                realised_net: self.day.realised_net,
                charges: self.day.charges,
                unrealised_gross: unrealised,
                day_pnl: self.day.realised_net + unrealised,
                max_daily_loss: self.limits.max_daily_loss,
                trades_today: self.day.trades,
                closed_today: self.day.closed,
                open_positions: self.by_id.len() as u32,
                pending_entries: self.pending.len() as u32,
            },
        }
    }

    // ---- internals ------------------------------------------------------------------------

    fn is_stale(&self, p: &Position, now: Timestamp) -> bool {
        now.millis_since(fresh_at(p)) >= self.risk.stale_after_ms
    }

    fn insert(&mut self, pos: Position) -> usize {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.by_id.insert(pos.id.clone(), slot);
        self.by_instrument.entry(pos.instrument).or_default().push(slot);
        self.slots[slot] = Some(pos);
        slot
    }

    fn remove(&mut self, slot: usize) -> Position {
        let pos = self.slots[slot].take().expect("removing a live slot");
        self.by_id.remove(&pos.id);
        if let Some(list) = self.by_instrument.get_mut(&pos.instrument) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.by_instrument.remove(&pos.instrument);
            }
        }
        self.free.push(slot);
        pos
    }
}

#[derive(Debug, Clone, Copy)]
struct Trigger {
    reason: ExitReason,
    price: Paise,
    at: Timestamp,
    stale: bool,
}

/// Triggers an exit: when it starts, pushes the exit intent and the position change and
/// records the order as in flight. Returns whether it started (false while an exit is already
/// in flight or done: exactly one intent per exit).
fn trigger_exit(
    pos: &mut Position,
    slot: usize,
    t: Trigger,
    exits_in_flight: &mut HashMap<CorrelationId, usize>,
    events: &mut Vec<CoreEvent>,
) -> bool {
    let quantity = pos.open_quantity();
    let event =
        LifecycleEvent::Trigger { reason: t.reason, price: t.price, at: t.at, stale: t.stale };
    match pos.apply(event) {
        Ok(Outcome::ExitStarted { correlation_id, attempt }) => {
            events.push(CoreEvent::ExitIntent(OrderIntent {
                correlation_id: correlation_id.clone(),
                position_id: pos.id.clone(),
                instrument: pos.instrument,
                txn: Txn::closing(pos.side),
                quantity,
                purpose: OrderPurpose::Exit(t.reason),
                reference_price: t.price,
                price_is_stale: t.stale,
                created_at: t.at,
            }));
            let change = PositionChange::ExitStarted { reason: t.reason, attempt };
            events.push(position_event(change, t.at, pos));
            exits_in_flight.insert(correlation_id, slot);
            true
        }
        Ok(_) => false,
        Err(e) => {
            events.push(alert(
                AlertLevel::Critical,
                "exit_not_started",
                format!("{} exit of {} could not start: {e}", t.reason, pos.id),
                t.at,
            ));
            false
        }
    }
}

/// When the position last had a fresh price: its last tick, else its opening.
fn fresh_at(p: &Position) -> Timestamp {
    p.last_price_at.unwrap_or(p.opened_at)
}

fn position_event(change: PositionChange, at: Timestamp, position: &Position) -> CoreEvent {
    CoreEvent::Position(Box::new(PositionEvent { change, at, position: position.clone() }))
}

fn alert(level: AlertLevel, code: &str, message: String, at: Timestamp) -> CoreEvent {
    CoreEvent::Alert(Alert { level, code: code.to_string(), message, at })
}

/// The PnL of a closed position: exact gross from the exit turnover, entry leg charged on the
/// entered quantity, each exit order charged as its own leg.
fn closed_trade(charges: &ChargeSchedule, pos: &Position) -> ClosedTrade {
    let Lifecycle::Exited(done) = &pos.lifecycle else {
        unreachable!("closed_trade is called on exited positions only")
    };
    let gross =
        pnl::gross_pnl_on_turnover(pos.side, pos.entry_price, pos.quantity, pos.exited.turnover());
    let entry_charges = charges.leg(Txn::opening(pos.side), pos.entry_price, pos.quantity).total();
    let exit_charges: Paise = pos
        .exited
        .order_turnovers
        .iter()
        .map(|t| charges.leg_on_turnover(Txn::closing(pos.side), *t).total())
        .sum();
    ClosedTrade {
        position_id: pos.id.clone(),
        instrument: pos.instrument,
        side: pos.side,
        quantity: pos.quantity,
        entry_price: pos.entry_price,
        opened_at: pos.opened_at,
        exit_price: done.exit_price,
        exited_at: done.exited_at,
        reason: done.reason,
        attempt: done.attempt,
        price_was_stale: done.price_was_stale,
        gross,
        entry_charges,
        exit_charges,
        net: gross - entry_charges - exit_charges,
    }
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

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
