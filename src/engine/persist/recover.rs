//! Restart recovery: the state a restarting engine continues from, derived from what the store
//! holds. Pure: the stored rows and `now` in, a [`RestartState`] out.
//!
//! - **Open positions** come back as they were written, with their risk state (best price,
//!   HWM, ratchet stop, last price) and lifecycle; an `Exiting` position keeps its exit
//!   order's correlation id and attempt, so the order is resolved by that id and never placed
//!   a second time under another one. What earlier (rejected) exit orders executed comes from
//!   the stored fills, which are the record of what executed. Fills of the exit order still in
//!   flight are *not* applied here: they are handed to the reconciliation step
//!   ([`RestartState::exit_fills`]), which decides what the exit engine is told first.
//! - **The trading state**: a halt latched for today stays; a halt of an earlier IST trading
//!   day was lifted by the new session (recorded as such); `Reducing` was a reaction to
//!   something that no longer runs (a stopped feed) and starts `Active`, to be set again by
//!   whatever still finds a problem.
//! - **Today's figures** (trades entered, positions closed, realised gross, charges, net) are
//!   derived from the positions and closed trades of today's session, not from the `daily_pnl`
//!   row, so a crash between a trade and its daily total cannot make them disagree.
//! - **The paper wallet** is derived the same way: the initial cash, plus the net of every
//!   closed trade, minus what the open positions' entries cost, plus what exits of open
//!   positions already returned. Nothing of it is stored separately.
//! - **Entry orders in flight** come back as pending entries for the reconciliation step to
//!   settle; reconciliation ([`Reconcile`]) runs next, before the engine is built.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::mapping::{fill_from_record, parse_change_reason, trading_state_kind};
use crate::domain::{
    CorrelationId, Fill, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId, Qty, Side,
    Timestamp, Txn,
};
use crate::exec::core::{CoreState, DayFigures, PendingEntry};
use crate::exec::messages::OrderEvent;
use crate::exec::paper::PaperParams;
use crate::pnl::ChargeSchedule;
use crate::risk::correlation::{self, OrderRole};
use crate::risk::position::{ExitedPart, Exiting, Lifecycle, Origin, Position, Rejection};
use crate::risk::trading_state::{ChangeReason, TradingState, TradingStateChange, TradingStatus};
use crate::risk::{RiskState, SessionClock};
use crate::store::{
    Actor, AuditRecord, ClosedTradeRecord, EventKind, FillRecord, OrderRecord, OrderStatus,
    OrderStatusChange, PositionRecord, PositionSource, PositionState, Recovery, TradingStateKind,
    TradingStateRecord,
};

/// A stored row that cannot be turned back into engine state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("stored position {id} cannot be restored: {why}")]
    Position { id: PositionId, why: String },
}

/// Everything recovery reads from the store.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Open positions, open orders, the trading state, today's row, the last event id.
    pub recovery: Recovery,
    /// Every position ever written (today's entries are counted from them).
    pub positions: Vec<PositionRecord>,
    pub closed_trades: Vec<ClosedTradeRecord>,
    pub fills: Vec<FillRecord>,
}

/// What recovery needs besides the rows.
#[derive(Debug, Clone)]
pub struct RestoreParams {
    pub session: SessionClock,
    pub charges: ChargeSchedule,
    /// The paper wallet's settings in paper mode (`None`: no paper wallet to derive).
    pub paper: Option<PaperParams>,
}

/// The paper wallet as derived from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperWallet {
    pub cash: Paise,
    /// Open holdings: position, side, open quantity, entry price.
    pub holdings: Vec<(PositionId, Side, Qty, Paise)>,
    /// The highest execution number used so far (`PAPER-T<n>`), so that new fills get new
    /// trade ids.
    pub executions: u64,
    /// The executed legs of the open positions (entries, and exit orders before the one in
    /// flight), charged in `cash` as one order each: the instrument master is not loaded yet
    /// when the wallet is derived. [`PaperWallet::charge_slices`] charges the legs the master
    /// slices at the freeze quantity their other orders.
    pub open_legs: Vec<OpenLeg>,
}

/// A leg of an open position as the paper wallet charged it: `quantity` executed for
/// `turnover`, as one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLeg {
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub quantity: Qty,
    pub turnover: Paise,
}

impl PaperWallet {
    /// Charges each open leg as the orders it went to the exchange as, by the slicing rule on
    /// what it executed (`exec::slicing::leg_orders`, as the paper broker and the exit core
    /// count them): the brokerage (and its GST) of every child beyond the first. Once: the
    /// legs are cleared.
    pub fn charge_slices(
        &mut self,
        master: &crate::instruments::Instruments,
        charges: &ChargeSchedule,
    ) {
        for leg in self.open_legs.drain(..) {
            let orders = crate::exec::slicing::leg_orders(master, leg.instrument, leg.quantity);
            if orders > 1 {
                let sliced = charges.leg_on_turnover_orders(leg.txn, leg.turnover, orders);
                let one = charges.leg_on_turnover(leg.txn, leg.turnover);
                self.cash -= sliced.total() - one.total();
            }
        }
    }
}

/// The state a restarting engine continues from, and what reconciliation decides about the
/// orders that were in flight.
#[derive(Debug, Clone)]
pub struct RestartState {
    pub trading_day: NaiveDate,
    pub now: Timestamp,
    pub core: CoreState,
    pub trading: TradingStatus,
    /// Orders not in a terminal status when the engine stopped (entries and exits).
    pub open_orders: Vec<OrderRecord>,
    /// Fills recorded for the exit order each `Exiting` position has in flight, by its
    /// correlation id (not applied to the position yet).
    pub exit_fills: BTreeMap<CorrelationId, Vec<Fill>>,
    /// Every position id the store knows, open or closed (an entry whose position exists was
    /// filled).
    pub known_positions: Vec<PositionId>,
    pub paper_wallet: Option<PaperWallet>,
    // ---- decided by reconciliation ----
    /// Order outcomes the exit engine applies first, before it evaluates any rule.
    pub outcomes: Vec<OrderEvent>,
    /// Exit orders to hand to the router as if just decided (same correlation id).
    pub resend: Vec<OrderIntent>,
    /// Store events to record before anything else (order settlements, audit lines, a
    /// trading-state change).
    pub records: Vec<EventKind>,
}

impl RestartState {
    /// Records an audit line of an adjustment made at startup.
    pub fn audit(&mut self, actor: Actor, action: &str, detail: impl Into<String>) {
        self.records.push(EventKind::Audit(AuditRecord {
            at: self.now,
            actor,
            action: action.to_string(),
            detail: detail.into(),
        }));
    }

    /// Records a status change of an order found in flight.
    pub fn settle_order(&mut self, cid: &CorrelationId, status: OrderStatus, detail: String) {
        self.records.push(EventKind::OrderStatus(OrderStatusChange {
            correlation_id: cid.clone(),
            status,
            broker_order_id: None,
            at: self.now,
            detail: Some(detail),
        }));
    }

    /// The exit order in flight of every `Exiting` position.
    pub fn exits_in_flight(&self) -> Vec<(&Position, &Exiting)> {
        self.core
            .positions
            .iter()
            .filter_map(|p| match &p.lifecycle {
                Lifecycle::Exiting(x) => Some((p, x)),
                _ => None,
            })
            .collect()
    }
}

/// Settles the orders a restart found in flight, before the engine is built. The live broker
/// asks the broker by correlation id; paper trading has [`PaperRestart`].
pub trait Reconcile {
    /// May change `state`: add outcomes for the exit engine, exits to re-send, pending entries
    /// to drop, store records (with an audit line for every adjustment). An error stops the
    /// startup: trading does not begin on a state nobody could confirm.
    fn reconcile(&mut self, state: &mut RestartState) -> anyhow::Result<()>;
}

/// Paper trading: the paper broker lived in the process, so what it did is exactly what the
/// store recorded.
/// - An exit in flight with recorded fills: those fills are replayed to the exit engine (the
///   position closes as it would have).
/// - An exit in flight without: it never reached the paper broker (or its fill died with the
///   process, and so did the broker's record of it): it is sent again, once, under the same
///   correlation id and at its trigger price, as decided before the stop.
/// - An entry in flight whose position exists was filled; one without died with the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct PaperRestart;

impl Reconcile for PaperRestart {
    fn reconcile(&mut self, state: &mut RestartState) -> anyhow::Result<()> {
        let mut outcomes = Vec::new();
        let mut resend = Vec::new();
        let mut audits = Vec::new();
        for (p, x) in state.exits_in_flight() {
            let fills = state.exit_fills.get(&x.correlation_id).cloned().unwrap_or_default();
            if fills.is_empty() {
                resend.push(OrderIntent {
                    correlation_id: x.correlation_id.clone(),
                    position_id: p.id.clone(),
                    instrument: p.instrument,
                    txn: Txn::closing(p.side),
                    quantity: p.open_quantity(),
                    purpose: OrderPurpose::Exit(x.reason),
                    reference_price: x.trigger_price,
                    price_is_stale: x.price_was_stale,
                    created_at: x.triggered_at,
                    limit_price: None,
                });
                audits.push(("exit_resent", format!("exit {} of {} ({}) had no recorded fill: sent again at its trigger price {}", x.correlation_id, p.id, x.reason, x.trigger_price)));
            } else {
                audits.push((
                    "exit_fills_replayed",
                    format!(
                        "exit {} of {}: {} recorded fills applied",
                        x.correlation_id,
                        p.id,
                        fills.len()
                    ),
                ));
                outcomes.extend(fills.into_iter().map(|fill| OrderEvent::Filled {
                    purpose: OrderPurpose::Exit(x.reason),
                    fill,
                }));
            }
        }
        let in_flight: Vec<CorrelationId> =
            state.exits_in_flight().iter().map(|(_, x)| x.correlation_id.clone()).collect();
        let mut settle = Vec::new();
        for o in &state.open_orders {
            if in_flight.contains(&o.correlation_id) {
                continue;
            }
            let (status, why) = match o.purpose {
                OrderPurpose::Entry if state.known_positions.contains(&o.position_id) => {
                    (OrderStatus::Traded, "settled at restart: its position exists")
                }
                OrderPurpose::Entry => {
                    (OrderStatus::Cancelled, "the paper broker restarted before the entry filled")
                }
                OrderPurpose::Exit(_) => {
                    (OrderStatus::Cancelled, "no longer in flight: its position moved on")
                }
            };
            settle.push((o.correlation_id.clone(), status, why.to_string()));
        }
        let dropped: Vec<PositionId> = settle
            .iter()
            .filter(|(_, s, _)| *s == OrderStatus::Cancelled)
            .filter_map(|(cid, _, _)| {
                state.core.pending_entries.iter().find(|e| &e.correlation_id == cid)
            })
            .map(|e| e.position_id.clone())
            .collect();
        state
            .core
            .pending_entries
            .retain(|e| !settle.iter().any(|(c, _, _)| c == &e.correlation_id));
        state.core.entry_attempts.retain(|(id, _)| !dropped.contains(id));
        for (cid, status, why) in settle {
            state.audit(Actor::Reconciliation, "order_settled", format!("{cid}: {status} ({why})"));
            state.settle_order(&cid, status, why);
        }
        for (action, detail) in audits {
            state.audit(Actor::Reconciliation, action, detail);
        }
        state.outcomes.extend(outcomes);
        state.resend.extend(resend);
        Ok(())
    }
}

/// Derives the restart state for `now` (see the module doc).
pub fn restart_state(
    stored: &Stored,
    params: &RestoreParams,
    now: Timestamp,
) -> Result<RestartState, RecoveryError> {
    let rec = &stored.recovery;
    let today = rec.trading_day;
    let mut fills: HashMap<&str, Vec<&FillRecord>> = HashMap::new();
    for f in &stored.fills {
        fills.entry(f.correlation_id.as_str()).or_default().push(f);
    }
    let mut positions = Vec::new();
    let mut exit_fills = BTreeMap::new();
    for r in &rec.open_positions {
        let p = position_from_record(r, &fills)?;
        if let Lifecycle::Exiting(x) = &p.lifecycle {
            let recorded: Vec<Fill> = fills
                .get(x.correlation_id.as_str())
                .map(|v| v.iter().map(|f| fill_from_record(f)).collect())
                .unwrap_or_default();
            exit_fills.insert(x.correlation_id.clone(), recorded);
        }
        positions.push(p);
    }

    let mut records = Vec::new();
    let trading = trading_status(rec.trading_state.as_ref(), today, now, &mut records);

    let mut pending_entries = Vec::new();
    let mut entry_attempts = Vec::new();
    for o in rec.open_orders.iter().filter(|o| o.purpose == OrderPurpose::Entry) {
        let attempt = correlation::parse(o.correlation_id.as_str())
            .filter(|c| c.role == OrderRole::Entry)
            .map_or(1, |c| c.attempt);
        if positions.iter().any(|p| p.id == o.position_id) {
            continue;
        }
        pending_entries.push(PendingEntry {
            position_id: o.position_id.clone(),
            instrument: o.instrument,
            side: if o.txn == Txn::Buy { Side::Long } else { Side::Short },
            quantity: o.quantity,
            correlation_id: o.correlation_id.clone(),
            attempt,
            // Not stored: only the order's own fill price matters from here on.
            reference_price: Paise::ZERO,
            placed_at: o.created_at,
            limit_price: o.limit_price,
        });
        entry_attempts.push((o.position_id.clone(), attempt));
    }

    let core = CoreState {
        positions,
        pending_entries,
        entry_attempts,
        day: day_figures(stored, &params.session, today),
        last_exits: last_exits(&stored.closed_trades),
        // The last instant the previous run is known to have been alive (its last write):
        // timed rules that fell due since (a square-off) still fire.
        clock: rec.last_event_id.map(|id| Timestamp(id.0.div_euclid(1_000)).min(now)),
    };
    let paper_wallet =
        params.paper.as_ref().map(|p| paper_wallet(stored, &core, p, &params.charges));
    Ok(RestartState {
        trading_day: today,
        now,
        known_positions: stored.positions.iter().map(|p| p.id.clone()).collect(),
        core,
        trading,
        open_orders: rec.open_orders.clone(),
        exit_fills,
        paper_wallet,
        outcomes: Vec::new(),
        resend: Vec::new(),
        records,
    })
}

/// The stored trading state as it stands at a restart on `today` (see the module doc); any
/// change from what was stored is added to `records`.
pub fn trading_status(
    stored: Option<&TradingStateRecord>,
    today: NaiveDate,
    now: Timestamp,
    records: &mut Vec<EventKind>,
) -> TradingStatus {
    let Some(s) = stored else { return TradingStatus::new(TradingState::Active, now) };
    let restored =
        |state| TradingStatus { state, reason: parse_change_reason(&s.reason), since: s.since };
    let (prev, reason, why) = match s.state {
        TradingStateKind::Active => return restored(TradingState::Active),
        TradingStateKind::Halted => {
            // A halt written before latch days were recorded counts for the day it began.
            let latched = s.latched_day.unwrap_or_else(|| s.since.ist_date());
            if latched >= today {
                return restored(TradingState::Halted);
            }
            let why = format!(
                "the halt latched for {} ({}) ended with the new session",
                latched.format("%Y-%m-%d"),
                s.reason
            );
            (TradingState::Halted, ChangeReason::NewSession, why)
        }
        TradingStateKind::Reducing => {
            let why = format!(
                "was reducing before the restart ({}); starts active, to be reduced again if the cause remains",
                s.reason
            );
            (TradingState::Reducing, ChangeReason::Start, why)
        }
    };
    let change =
        TradingStateChange { prev, current: TradingState::Active, reason: reason.clone(), at: now };
    records.push(EventKind::TradingState(TradingStateRecord {
        state: trading_state_kind(TradingState::Active),
        reason: reason.to_string(),
        since: now,
        latched_day: None,
        updated_at: now,
    }));
    records.push(EventKind::Audit(AuditRecord {
        at: now,
        actor: Actor::Engine,
        action: "trading_state".to_string(),
        detail: format!("{} -> {} at restart: {why}", change.prev, change.current),
    }));
    TradingStatus { state: TradingState::Active, reason, since: now }
}

/// A stored open position as the exit core's [`Position`].
pub fn position_from_record(
    r: &PositionRecord,
    fills: &HashMap<&str, Vec<&FillRecord>>,
) -> Result<Position, RecoveryError> {
    let bad = |why: &str| RecoveryError::Position { id: r.id.clone(), why: why.to_string() };
    let exit_id =
        |attempt: u32| correlation::exit_id(&r.id, attempt).map_err(|e| bad(&e.to_string()));
    // Exit orders before the current one: what each executed is one charged leg.
    let done_attempts = match r.state {
        PositionState::Exiting => r.exit_attempts.saturating_sub(1),
        _ => r.exit_attempts,
    };
    let mut exited = ExitedPart::default();
    for attempt in 1..=done_attempts {
        let cid = exit_id(attempt)?;
        let (q, t) = fills.get(cid.as_str()).map_or((0, 0), |v| {
            v.iter().fold((0i64, 0i64), |(q, t), f| {
                let value = f.value.unwrap_or(f.price * f.quantity);
                (q.saturating_add(f.quantity.0), t.saturating_add(value.0))
            })
        });
        if q > 0 {
            exited.quantity = Qty(exited.quantity.0 + q);
            exited.order_turnovers.push(Paise(t));
            exited.order_quantities.push(Qty(q));
        }
    }
    let lifecycle = match r.state {
        PositionState::Active => Lifecycle::Active {
            attempts: r.exit_attempts,
            last_rejection: match (&r.last_rejection, r.exit_attempts) {
                (Some(why), n) if n > 0 => Some(Rejection {
                    correlation_id: exit_id(n)?,
                    attempt: n,
                    why: why.clone(),
                    at: r.updated_at,
                }),
                _ => None,
            },
        },
        PositionState::Exiting => Lifecycle::Exiting(Exiting {
            reason: r.exit_reason.ok_or_else(|| bad("exiting without an exit reason"))?,
            trigger_price: r
                .exit_trigger_price
                .ok_or_else(|| bad("exiting without a trigger price"))?,
            triggered_at: r.exit_trigger_at.ok_or_else(|| bad("exiting without a trigger time"))?,
            correlation_id: match &r.exit_correlation_id {
                Some(c) => c.clone(),
                None => exit_id(r.exit_attempts.max(1))?,
            },
            attempt: r.exit_attempts.max(1),
            // Not stored: only marks the closed trade.
            price_was_stale: false,
            filled: Qty(0),
            turnover: Paise::ZERO,
        }),
        PositionState::Exited => {
            return Err(bad("already exited"));
        }
    };
    let p = Position {
        id: r.id.clone(),
        instrument: r.instrument,
        side: r.side,
        quantity: r.quantity,
        entry_price: r.entry_price,
        entry_value: r.entry_value(),
        opened_at: r.opened_at,
        origin: match r.source {
            PositionSource::Entry => Origin::Entry,
            PositionSource::Adopted => Origin::Adopted,
            PositionSource::AdoptedBrokerAverage => Origin::AdoptedAtBrokerAverage,
        },
        risk: RiskState {
            best_price: r.best_price,
            hwm_pnl: r.hwm_pnl,
            ratchet_stop: r.ratchet_stop,
        },
        last_price: r.last_price,
        last_price_at: r.last_price_at,
        exited,
        lifecycle,
        next_exit_id: Default::default(),
    };
    if p.open_quantity().0 <= 0 {
        return Err(bad(&format!(
            "nothing left open ({} entered, {} executed by earlier exit orders)",
            p.quantity, p.exited.quantity
        )));
    }
    Ok(p)
}

/// Today's figures from the rows of today's session.
fn day_figures(stored: &Stored, session: &SessionClock, today: NaiveDate) -> DayFigures {
    let mut day = DayFigures { session: Some(today), ..DayFigures::default() };
    for t in stored.closed_trades.iter().filter(|t| session.session_of(t.closed_at) == today) {
        day.realised_gross += t.gross;
        day.charges += t.charges;
        day.realised_net += t.net;
        day.closed += 1;
    }
    day.trades = stored
        .positions
        .iter()
        .filter(|p| p.source == PositionSource::Entry)
        .filter(|p| session.session_of(p.opened_at) == today)
        .count() as u32;
    day
}

/// When a position on each instrument last closed (re-entry cooldown).
fn last_exits(closed: &[ClosedTradeRecord]) -> Vec<(InstrumentKey, Timestamp)> {
    let mut by: BTreeMap<InstrumentKey, Timestamp> = BTreeMap::new();
    for t in closed {
        let e = by.entry(t.instrument).or_insert(t.closed_at);
        *e = (*e).max(t.closed_at);
    }
    by.into_iter().collect()
}

/// The paper wallet after everything the store recorded (see the module doc). Adopted
/// positions never went through the paper broker's entry, so only their exits would count;
/// paper trading adopts none.
fn paper_wallet(
    stored: &Stored,
    core: &CoreState,
    params: &PaperParams,
    charges: &ChargeSchedule,
) -> PaperWallet {
    let entered: Vec<&PositionId> = stored
        .positions
        .iter()
        .filter(|p| p.source == PositionSource::Entry)
        .map(|p| &p.id)
        .collect();
    let mut cash = params.initial_cash;
    for t in stored.closed_trades.iter().filter(|t| entered.contains(&&t.position_id)) {
        cash += t.net;
    }
    let mut holdings = Vec::new();
    let mut open_legs = Vec::new();
    for p in core.positions.iter().filter(|p| p.origin == Origin::Entry) {
        let entry_turnover = p.entry_value;
        cash -=
            entry_turnover + charges.leg_on_turnover(Txn::opening(p.side), entry_turnover).total();
        open_legs.push(OpenLeg {
            instrument: p.instrument,
            txn: Txn::opening(p.side),
            quantity: p.quantity,
            turnover: entry_turnover,
        });
        for (i, t) in p.exited.order_turnovers.iter().enumerate() {
            // Without the executed quantity (a state written before it was kept): one order.
            if let Some(q) = p.exited.order_quantities.get(i) {
                open_legs.push(OpenLeg {
                    instrument: p.instrument,
                    txn: Txn::closing(p.side),
                    quantity: *q,
                    turnover: *t,
                });
            }
        }
        // Exit orders that executed before the one in flight: what they returned.
        let q = p.exited.quantity;
        let released_and_gross: Paise = match p.side {
            Side::Long => p.exited.turnover(),
            Side::Short => Paise(2 * p.entry_price.0 * q.0) - p.exited.turnover(),
        };
        let exit_charges: Paise = p
            .exited
            .order_turnovers
            .iter()
            .map(|t| charges.leg_on_turnover(Txn::closing(p.side), *t).total())
            .sum();
        cash += released_and_gross - exit_charges;
        holdings.push((p.id.clone(), p.side, Qty(p.quantity.0 - q.0), p.entry_price));
    }
    let executions = stored
        .fills
        .iter()
        .filter_map(|f| f.trade_id.strip_prefix("PAPER-T")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    PaperWallet { cash, holdings, executions, open_legs }
}

#[cfg(test)]
mod tests;
