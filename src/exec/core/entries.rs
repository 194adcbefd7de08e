//! The exit core's entries: checks against the limits, pending entry orders, and opening
//! positions from entry fills or adoption.

use crate::domain::{
    CorrelationId, ExitReason, OrderIntent, OrderPurpose, Paise, Qty, Timestamp, Txn,
};
use crate::risk::correlation;
use crate::risk::entry::{self, EntryApproval, EntryContext, EntryRefusal, EntryRequest};
use crate::risk::position::{Origin, Position};
use crate::risk::trading_state::{ChangeReason, HaltCause, TradingState};

use super::{
    AlertLevel, CoreError, CoreEvent, ExitCore, NewPosition, PendingEntry, PositionChange, alert,
    position_event,
};

impl ExitCore {
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
            last_tick_age_ms: self.last_tick_age_ms(&request.instrument),
            id_in_use: self.by_id.contains_key(&request.position_id)
                || self.pending.contains_key(&request.position_id),
        };
        entry::check(&ctx, request)
    }

    /// Checks `request` and, if accepted, records it as pending (it counts towards the limits)
    /// and returns the entry order to place: a MARKET order.
    pub fn begin_entry(
        &mut self,
        request: &EntryRequest,
        now: Timestamp,
    ) -> Result<OrderIntent, EntryRefusal> {
        self.begin_entry_at(request, now, None)
    }

    /// [`Self::begin_entry`] for a LIMIT order at `limit_price` (already on the tick and in
    /// the band; `None`: MARKET). The pending entry keeps the price, so that what of the
    /// order is still to send after a restart (the children of a sliced entry) goes at it.
    pub fn begin_entry_at(
        &mut self,
        request: &EntryRequest,
        now: Timestamp,
        limit_price: Option<Paise>,
    ) -> Result<OrderIntent, EntryRefusal> {
        let approval = self.check_entry(request, now)?;
        let attempt = self.entry_attempts.get(&request.position_id).copied().unwrap_or(0) + 1;
        // The attempt bound is far above any real retry count; refuse rather than panic.
        let correlation_id =
            correlation::entry_id(&request.position_id, attempt).map_err(|_| {
                EntryRefusal::AttemptsExhausted {
                    id: request.position_id.clone(),
                    attempts: attempt - 1,
                }
            })?;
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
                limit_price,
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
            limit_price,
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
        self.on_entry_filled_at_value(correlation_id, price, quantity, price * quantity, at)
    }

    /// [`Self::on_entry_filled`] with the exact value of the order's fills (Σ price × quantity):
    /// the position's entry value, which PnL and charges use; `price` (their average rounded to
    /// the paisa) is what the rules measure from.
    pub fn on_entry_filled_at_value(
        &mut self,
        correlation_id: &CorrelationId,
        price: Paise,
        quantity: Qty,
        value: Paise,
        at: Timestamp,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let pending = self
            .pending
            .values()
            .find(|e| &e.correlation_id == correlation_id)
            .cloned()
            .ok_or_else(|| CoreError::UnknownOrder(correlation_id.clone()))?;
        let id = pending.position_id.clone();
        let new = NewPosition {
            id: pending.position_id,
            instrument: pending.instrument,
            side: pending.side,
            quantity,
            entry_price: price,
            opened_at: at,
        };
        let mut events = self.open_position_at_value(new, Origin::Entry, value)?;
        // The kill switch or the daily loss limit flattened the book while this entry was in
        // flight: the position it opens is flattened too, at once.
        let status = self.trading.status();
        let reason = match status.reason {
            ChangeReason::Halt { cause: HaltCause::KillSwitch } => Some(ExitReason::KillSwitch),
            ChangeReason::Halt { cause: HaltCause::DailyLossLimit } => {
                Some(ExitReason::DailyLossLimit)
            }
            _ => None,
        };
        if status.state == TradingState::Halted
            && let Some(reason) = reason
            && let Some(&slot) = self.by_id.get(&id)
            && let Some(p) = self.slots[slot].as_ref()
        {
            let (price, stale) = (p.last_price, self.is_stale(p, at));
            self.start_exit(slot, reason, price, at, stale, &mut events);
        }
        Ok(events)
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
        let value = new.entry_price * new.quantity;
        self.open_position_at_value(new, origin, value)
    }

    /// [`Self::open_position`] with the entry's exact value (Σ price × quantity of its fills).
    pub fn open_position_at_value(
        &mut self,
        new: NewPosition,
        origin: Origin,
        entry_value: Paise,
    ) -> Result<Vec<CoreEvent>, CoreError> {
        let invalid = |why: String| CoreError::InvalidPosition { id: new.id.clone(), why };
        if entry_value.0 <= 0 {
            return Err(invalid(format!("entry value {entry_value} is not positive")));
        }
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
            Origin::Adopted | Origin::AdoptedAtBrokerAverage => {
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
        )
        .with_entry_value(entry_value);
        let event = position_event(PositionChange::Opened, at, &pos);
        self.insert(pos);
        Ok(vec![event])
    }
}
