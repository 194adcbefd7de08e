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

use super::exit_retry::{ExitRetries, Gate, Verdict};
use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, Mono, OrderIntent, OrderPurpose, Paise, PositionId,
    Qty, Tick, Timestamp, Txn,
};
use crate::pnl::{self, ChargeSchedule};
use crate::risk::position::{Lifecycle, LifecycleEvent, Outcome, Position};
use crate::risk::trading_state::{HaltCause, TradingCell, TradingCommand};
use crate::risk::{Limits, PriceGuard, RiskParams, SessionClock, rules};

mod ages;
mod broker_sync;
mod entries;
mod held_exits;
mod timed;
mod types;
mod upkeep;
mod view;

pub use types::*;
pub use upkeep::Pruned;
pub use view::{CoreRead, CoreView};

#[derive(Debug, Clone, Copy)]
struct LastTick {
    ltp: Paise,
    at: Timestamp,
    /// When it was received, on the monotonic clock: the entry checks' price age.
    mono: Mono,
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
    /// Exit orders per position and rejected exits waiting for their retry.
    retries: ExitRetries,
    day: DayFigures,
    clock: Option<Timestamp>,
    /// Exit orders held until the broker's books are reconciled (`held_exits.rs`).
    held: held_exits::HeldExits,
    /// Monotonic time (see `ages`): the latest reading, the last `on_clock`'s, and each
    /// position's marks.
    mono: Option<Mono>,
    clock_mono: Option<Mono>,
    marks: HashMap<PositionId, ages::Marks>,
    guard: PriceGuard,
    /// The instrument master, for how many orders a leg sliced at the freeze quantity was
    /// charged as (`exec::slicing::leg_orders`); without it every leg is one order.
    instruments: Option<crate::instruments::SharedInstruments>,
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
            retries: ExitRetries::new(params.exit_retry),
            day: DayFigures::default(),
            clock: None,
            held: held_exits::HeldExits::default(),
            mono: None,
            clock_mono: None,
            marks: HashMap::new(),
            guard: PriceGuard::new(),
            instruments: None,
        }
    }

    /// Charges a leg above its instrument's freeze quantity per child order (brokerage is per
    /// executed order), as the broker slices it.
    pub fn set_instruments(&mut self, instruments: crate::instruments::SharedInstruments) {
        self.instruments = Some(instruments);
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

    /// How long ago the instrument's last price was received, on the monotonic clock (0 when
    /// it is newer than the core's latest reading).
    fn last_tick_age_ms(&self, instrument: &InstrumentKey) -> Option<i64> {
        let t = self.last_ticks.get(instrument)?;
        Some(self.mono.map_or(0, |m| m.millis_since(t.mono).max(0)))
    }

    // ---- ticks ----------------------------------------------------------------------------

    /// A tick: record the instrument's price; when the price guard accepts it (see
    /// `risk::price_guard`), for each position on it that is live at the tick's time
    /// (`opened_at` inclusive) update last price and risk state and evaluate the rules; then
    /// the account rules.
    pub fn on_tick(&mut self, tick: &Tick) -> Vec<CoreEvent> {
        let now = tick.received_at;
        self.note_mono(now, tick.received_mono);
        let mut events = Vec::new();
        let last = LastTick { ltp: tick.ltp, at: now, mono: tick.received_mono };
        self.last_ticks.insert(tick.instrument, last);
        if self.guard(tick).is_some_and(|v| !v.is_accepted()) {
            self.account_rules(now, &mut events);
            return events;
        }
        // By index, so that the tick path allocates nothing: `is_live_at` reads the core, the
        // rest of the loop writes it.
        let on_instrument = self.by_instrument.get(&tick.instrument).map_or(0, Vec::len);
        for k in 0..on_instrument {
            let slot = self.by_instrument[&tick.instrument][k];
            if !self.slots[slot].as_ref().is_some_and(|p| self.is_live_at(p, tick)) {
                continue;
            }
            let Self { slots, exits_in_flight, risk, marks, retries, .. } = self;
            let Some(pos) = slots[slot].as_mut() else { continue };
            pos.last_price = tick.ltp;
            pos.last_price_at = Some(now);
            match marks.get_mut(&pos.id) {
                Some(m) => m.fresh = Some(tick.received_mono),
                None => marks.entry(pos.id.clone()).or_default().fresh = Some(tick.received_mono),
            }
            let terms = pos.terms();
            rules::update(risk, &terms, &mut pos.risk, tick.ltp);
            if !pos.is_active() {
                continue;
            }
            if let Some(reason) = rules::evaluate(risk, &terms, &pos.risk, tick.ltp) {
                let trigger = Trigger { reason, price: tick.ltp, at: now, stale: false };
                trigger_exit(pos, slot, trigger, exits_in_flight, retries, &mut events);
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
        trigger_exit(pos, slot, trigger, &mut self.exits_in_flight, &mut self.retries, events)
    }

    /// The slot of the position whose exit order `correlation_id` is in flight.
    fn exit_slot(&self, correlation_id: &CorrelationId) -> Result<usize, CoreError> {
        self.exits_in_flight
            .get(correlation_id)
            .copied()
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))
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
        self.on_exit_filled_at_value(correlation_id, price, quantity, price * quantity, at)
    }

    /// [`Self::on_exit_filled`] with the exact value of the execution (Σ price × quantity of
    /// the trades it stands for), which the exit's turnover adds up.
    pub fn on_exit_filled_at_value(
        &mut self,
        correlation_id: &CorrelationId,
        price: Paise,
        quantity: Qty,
        value: Paise,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let slot = self.exit_slot(correlation_id)?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let fill = LifecycleEvent::Fill {
            correlation_id: correlation_id.clone(),
            price,
            quantity,
            value,
            at,
        };
        let mut events = Vec::new();
        match pos.apply(fill)? {
            Outcome::PartFilled { remaining } => {
                events.push(position_event(PositionChange::PartFilled { remaining }, at, pos));
            }
            Outcome::Exited => {
                self.exits_in_flight.remove(correlation_id);
                let pos = self.remove(slot);
                self.retries.forget(&pos.id);
                let master = self.instruments.as_ref().map(|m| m.load());
                let trade = closed_trade(&self.charges, master.as_deref(), &pos);
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
    /// kept, rejection recorded) and its exit is retried per the retry policy (`exit_retry`):
    /// after a backoff when the rejection is transient; when it is permanent the position is
    /// exit blocked, a critical alert names it and the cause (again at each slow retry), and
    /// the exit is retried only every `blocked_retry`. Ticks in between start no order.
    pub fn on_exit_rejected(
        &mut self,
        correlation_id: &CorrelationId,
        why: &str,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let slot = self.exit_slot(correlation_id)?;
        let pos = self.slots[slot].as_mut().expect("an exit in flight points at a live slot");
        let Lifecycle::Exiting(x) = &pos.lifecycle else {
            unreachable!("an exit in flight belongs to an exiting position")
        };
        let reason = x.reason;
        let event = LifecycleEvent::Rejected {
            correlation_id: correlation_id.clone(),
            why: why.to_string(),
            at,
        };
        let Outcome::Returned { attempts, executed } = pos.apply(event)? else {
            unreachable!("a rejection of an exit in flight returns the position to active")
        };
        self.exits_in_flight.remove(correlation_id);
        let v = self.retries.rejected(&pos.id, reason, why, at);
        let change = PositionChange::ExitRejected { attempt: attempts, why: why.to_string() };
        let mut events = vec![position_event(change, at, pos)];
        let open = pos.open_quantity();
        let retry_in = v.retry_at.millis_since(at);
        let Verdict { classified: c, .. } = v;
        if v.blocked {
            if v.newly_blocked {
                let change = PositionChange::ExitBlocked {
                    cause: c.cause.to_string(),
                    why: why.to_string(),
                    retry_at: v.retry_at,
                };
                events.push(position_event(change, at, pos));
            }
            events.push(alert(
                AlertLevel::Critical,
                "exit_blocked",
                format!(
                    "position {} EXIT BLOCKED ({}): {reason} exit {correlation_id} rejected ({why}); {open} still open, {} rejections; retrying in {retry_in} ms, or POST /v1/positions/{}/retry-exit",
                    pos.id, c.cause, v.rejections, pos.id
                ),
                at,
            ));
        } else {
            events.push(alert(
                AlertLevel::Warning,
                "exit_rejected",
                format!(
                    "exit {correlation_id} of position {} rejected ({why}, {}); {executed} had executed, {open} still open; retrying in {retry_in} ms",
                    pos.id, c.cause
                ),
                at,
            ));
        }
        Ok(events)
    }

    /// An operator's `retry-exit`: the rejected exit of `id` is tried again now, with exactly
    /// one order, past the backoff and the per-window cap.
    pub fn retry_exit(
        &mut self,
        id: &PositionId,
        now: Timestamp,
    ) -> Result<Vec<CoreEvent>, RetryExitError> {
        let slot =
            *self.by_id.get(id).ok_or_else(|| RetryExitError::UnknownPosition(id.clone()))?;
        let pos = self.slots[slot].as_ref().expect("an indexed position has a live slot");
        let state = pos.lifecycle.name();
        let not_retryable = || RetryExitError::NotRetryable { id: id.clone(), state };
        if !pos.is_active() {
            return Err(not_retryable());
        }
        let (price, stale) = (pos.last_price, self.is_stale(pos, now));
        let reason = self.retries.operator_retry(id).map_err(|_| not_retryable())?;
        let mut events = Vec::new();
        if !self.start_exit(slot, reason, price, now, stale, &mut events) {
            self.retries.cancel_operator_retry(id);
            return Err(not_retryable());
        }
        Ok(events)
    }

    /// Rejected exits whose retry is due at `now` start again (run by `on_clock`).
    pub(super) fn retry_due_exits(&mut self, now: Timestamp, events: &mut Vec<CoreEvent>) {
        for (id, reason) in self.retries.due(now) {
            let Some(&slot) = self.by_id.get(&id) else {
                self.retries.forget(&id);
                continue;
            };
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active()) {
                let (price, stale) = (p.last_price, self.is_stale(p, now));
                self.start_exit(slot, reason, price, now, stale, events);
            }
        }
    }

    /// Positions whose exit is blocked.
    pub fn exits_blocked(&self) -> usize {
        self.retries.blocked()
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

    /// Positions (sorted by id) and the day's account at wall time `now` and monotonic reading
    /// `mono` (staleness), for the PnL refresher and the API.
    pub fn snapshot(&self, now: Timestamp, mono: Mono) -> CoreSnapshot {
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
                price_is_stale: self.silent_ms_at(p, now, Some(mono)) >= self.risk.stale_after_ms,
                unrealised_gross: p.unrealised(),
                risk: p.risk,
                lifecycle: p.lifecycle.clone(),
                exit_retry: self.retries.view(&p.id, now),
                origin: p.origin,
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
        self.silent_ms_at(p, now, self.mono) >= self.risk.stale_after_ms
    }

    fn insert(&mut self, mut pos: Position) -> usize {
        // A position read back (restart, adoption) makes its next exit id here, off the path.
        pos.prepare_next_exit_id();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.by_id.insert(pos.id.clone(), slot);
        let held = self.by_instrument.entry(pos.instrument).or_default();
        if held.is_empty() {
            self.guard.forget(&pos.instrument);
        }
        held.push(slot);
        self.slots[slot] = Some(pos);
        slot
    }

    fn remove(&mut self, slot: usize) -> Position {
        let pos = self.slots[slot].take().expect("removing a live slot");
        self.by_id.remove(&pos.id);
        self.marks.remove(&pos.id);
        if let Some(list) = self.by_instrument.get_mut(&pos.instrument) {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.by_instrument.remove(&pos.instrument);
                self.guard.forget(&pos.instrument);
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
/// in flight or done: exactly one intent per exit; false while the retry policy holds the
/// position's next exit order back).
fn trigger_exit(
    pos: &mut Position,
    slot: usize,
    t: Trigger,
    exits_in_flight: &mut HashMap<CorrelationId, usize>,
    retries: &mut ExitRetries,
    events: &mut Vec<CoreEvent>,
) -> bool {
    if pos.is_active() && retries.gate(&pos.id, t.at) != Gate::Go {
        // A rejected exit waits for its retry, or the position used its orders this window.
        return false;
    }
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
                limit_price: None,
            }));
            let change = PositionChange::ExitStarted { reason: t.reason, attempt };
            events.push(position_event(change, t.at, pos));
            exits_in_flight.insert(correlation_id, slot);
            retries.sent(&pos.id, t.at);
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

/// The PnL of a closed position: exact gross from the entry's value and the exit turnover
/// (Σ price × quantity of their fills), the entry leg charged on its value, each exit order
/// charged as its own leg on its turnover. A leg above the instrument's freeze quantity
/// (`master`) went out as child orders and pays brokerage per child
/// (`exec::slicing::leg_orders`), the turnover-based charges on the leg's total.
fn closed_trade(
    charges: &ChargeSchedule,
    master: Option<&crate::instruments::Instruments>,
    pos: &Position,
) -> ClosedTrade {
    let Lifecycle::Exited(done) = &pos.lifecycle else {
        unreachable!("closed_trade is called on exited positions only")
    };
    let orders = |quantity: Qty| {
        master.map_or(1, |m| crate::exec::slicing::leg_orders(m, pos.instrument, quantity))
    };
    let gross = pnl::gross_on_values(pos.side, pos.entry_value, pos.exited.turnover());
    let entry_charges = charges
        .leg_on_turnover_orders(Txn::opening(pos.side), pos.entry_value, orders(pos.quantity))
        .total();
    let quantities = &pos.exited.order_quantities;
    let exit_charges: Paise = pos
        .exited
        .order_turnovers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n = quantities.get(i).map_or(1, |q| orders(*q));
            charges.leg_on_turnover_orders(Txn::closing(pos.side), *t, n).total()
        })
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod retry_tests;
