//! A position, its risk state and its exit lifecycle `Active → Exiting → Exited` (risk spec §2).
//!
//! [`Position::apply`] is the only way the lifecycle moves: one `match (state, event)` that
//! returns the next state or a [`LifecycleError`] for an impossible transition. A trigger while
//! an exit is in flight (or done) is not an error but a no-op, which is what makes exits
//! exactly-once. A definitive rejection returns the position to `Active` with the rejection and
//! the attempt count kept, so the next trigger places attempt n + 1 under a new correlation id
//! (`correlation`). Exit fills may arrive in parts; a rejection after a part fill keeps the
//! executed part on record (`exited`) and leaves the rest `Active`. The exit core owns the
//! positions; everything here is plain data that persists as it is.

use serde::{Deserialize, Serialize};

use crate::domain::money::div_round_half_away;
use crate::domain::{
    CorrelationId, ExitReason, InstrumentKey, Paise, PositionId, Qty, Side, Timestamp,
};

use super::correlation::{self, CorrelationError};
use super::rules::{RiskState, Terms};

/// How the engine came to hold a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Opened by one of our entry orders (counts towards the day's trades).
    Entry,
    /// Found open at the broker (or given to replay): taken as it is, no entry checks; its
    /// entry price is its own orders' fills (or the given one).
    Adopted,
    /// Found open at the broker with no order of ours to explain it: its entry price is the
    /// broker's average for the contract (the day's, not this position's), a figure to check.
    AdoptedAtBrokerAverage,
}

impl Origin {
    /// Where the entry price comes from: `fills` (our entry order's fills, an adopted
    /// position's own orders' fills, or a price an operator gave) or `broker_average`.
    pub const fn entry_price_source(self) -> &'static str {
        match self {
            Origin::Entry | Origin::Adopted => "fills",
            Origin::AdoptedAtBrokerAverage => "broker_average",
        }
    }
}

/// A definitive rejection of an exit order, kept on the position for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub correlation_id: CorrelationId,
    pub attempt: u32,
    pub why: String,
    pub at: Timestamp,
}

/// An exit order in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exiting {
    pub reason: ExitReason,
    /// The LTP that fired a per-tick rule, or the last price for timed and account exits.
    pub trigger_price: Paise,
    pub triggered_at: Timestamp,
    pub correlation_id: CorrelationId,
    pub attempt: u32,
    /// Whether `trigger_price` was stale when the exit started.
    pub price_was_stale: bool,
    /// Filled so far by this order.
    pub filled: Qty,
    /// Σ price × quantity of this order's fills.
    pub turnover: Paise,
}

/// A closed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exited {
    pub reason: ExitReason,
    /// Average of all exit fills, rounded half away from zero to the paisa.
    pub exit_price: Paise,
    pub exited_at: Timestamp,
    pub attempt: u32,
    pub price_was_stale: bool,
}

/// Where a position is in its exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Lifecycle {
    /// Open; rules may start an exit. `attempts` exits were tried and rejected so far.
    Active {
        attempts: u32,
        last_rejection: Option<Rejection>,
    },
    Exiting(Exiting),
    Exited(Exited),
}

impl Lifecycle {
    pub const fn new() -> Lifecycle {
        Lifecycle::Active { attempts: 0, last_rejection: None }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Lifecycle::Active { .. } => "active",
            Lifecycle::Exiting(_) => "exiting",
            Lifecycle::Exited(_) => "exited",
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle::new()
    }
}

/// Exit orders that executed (in full or in part) before the current one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitedPart {
    pub quantity: Qty,
    /// Turnover of each executed exit order, in order: each is one charged leg.
    pub order_turnovers: Vec<Paise>,
    /// What each of those orders executed, in the same order (how many child orders a leg
    /// sliced at the freeze quantity was charged as). Empty in states written before it was
    /// kept: each leg then counts as one order.
    #[serde(default)]
    pub order_quantities: Vec<Qty>,
}

impl ExitedPart {
    pub fn turnover(&self) -> Paise {
        self.order_turnovers.iter().copied().sum()
    }
}

/// The correlation id of a position's next exit attempt, made ahead of the trigger: when the
/// position opens ([`Position::open`], or when the exit core takes it in) and when a rejection
/// returns it to `Active`. Starting an exit then takes the id instead of formatting it on the
/// path from the tick to the order. A cache, not state: not persisted, and equal whatever it
/// holds (a position read back is the same position and makes its id again when needed).
#[derive(Debug, Clone, Default)]
pub struct NextExitId(Option<(u32, CorrelationId)>);

impl NextExitId {
    /// Makes the id of exit attempt `attempt` of `position` unless it is already made.
    fn prepare(&mut self, position: &PositionId, attempt: u32) {
        if !matches!(&self.0, Some((a, _)) if *a == attempt) {
            self.0 = correlation::exit_id(position, attempt).ok().map(|c| (attempt, c));
        }
    }

    /// The id made for `attempt`, if that is the attempt it was made for (taken out).
    fn take(&mut self, attempt: u32) -> Option<CorrelationId> {
        match self.0.take() {
            Some((a, c)) if a == attempt => Some(c),
            _ => None,
        }
    }
}

impl PartialEq for NextExitId {
    fn eq(&self, _: &NextExitId) -> bool {
        true
    }
}

impl Eq for NextExitId {}

/// What can happen to a position's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A rule (or a timed/account rule, or the kill switch) wants the position out.
    Trigger { reason: ExitReason, price: Paise, at: Timestamp, stale: bool },
    /// An execution of the exit order: `quantity` at average `price`, worth exactly `value`
    /// (Σ price × quantity of the trades it stands for).
    Fill { correlation_id: CorrelationId, price: Paise, quantity: Qty, value: Paise, at: Timestamp },
    /// The exit order is definitively rejected (nothing more of it will execute).
    Rejected { correlation_id: CorrelationId, why: String, at: Timestamp },
}

impl LifecycleEvent {
    fn name(&self) -> &'static str {
        match self {
            LifecycleEvent::Trigger { .. } => "trigger",
            LifecycleEvent::Fill { .. } => "fill",
            LifecycleEvent::Rejected { .. } => "rejection",
        }
    }
}

/// What a lifecycle event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An exit starts: place an order under this id.
    ExitStarted { correlation_id: CorrelationId, attempt: u32 },
    /// A trigger while an exit is in flight or done: nothing to do.
    Ignored,
    /// Part of the exit order executed; `remaining` is still open.
    PartFilled { remaining: Qty },
    /// The position is closed.
    Exited,
    /// Back to `Active` after a rejection; `executed` of that order had filled before.
    Returned { attempts: u32, executed: Qty },
}

/// An event that cannot apply to the position in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("position {position}: {event} while no exit order is in flight")]
    NoExitInFlight { position: PositionId, event: &'static str },
    #[error("position {position}: {event} for {got} but the exit in flight is {expected}")]
    WrongOrder { position: PositionId, event: &'static str, expected: String, got: String },
    #[error("position {position}: {event} after the position was closed")]
    AlreadyExited { position: PositionId, event: &'static str },
    #[error("position {position}: fill of {fill} with only {open} open")]
    Overfill { position: PositionId, fill: Qty, open: Qty },
    #[error("position {position}: fill of non-positive quantity {fill}")]
    EmptyFill { position: PositionId, fill: Qty },
    #[error(transparent)]
    Correlation(#[from] CorrelationError),
}

/// An open (or closing) position and everything the rules and PnL need about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    /// Units entered (always positive).
    pub quantity: Qty,
    /// Average entry fill, rounded to the paisa: what the rules measure from and what is shown.
    pub entry_price: Paise,
    /// The entry's exact value, Σ price × quantity of its fills (paise): what the entry cost
    /// (or, short, brought in). PnL and charges use it; an entry that traded at several prices
    /// has an average that is not a whole paisa, so `entry_price × quantity` may be off by up
    /// to half a paisa per unit.
    pub entry_value: Paise,
    pub opened_at: Timestamp,
    pub origin: Origin,
    pub risk: RiskState,
    /// LTP of the last tick seen at or after `opened_at`, else the entry price.
    pub last_price: Paise,
    /// When that tick was received; `None` until the first tick.
    pub last_price_at: Option<Timestamp>,
    pub exited: ExitedPart,
    pub lifecycle: Lifecycle,
    /// The next exit attempt's correlation id, made ahead (see [`NextExitId`]).
    #[serde(skip)]
    pub next_exit_id: NextExitId,
}

impl Position {
    /// A freshly opened position: risk state at entry, `Active`, no exit tried.
    pub fn open(
        id: PositionId,
        instrument: InstrumentKey,
        side: Side,
        quantity: Qty,
        entry_price: Paise,
        opened_at: Timestamp,
        origin: Origin,
    ) -> Position {
        Position {
            id,
            instrument,
            side,
            quantity,
            entry_price,
            entry_value: entry_price * quantity,
            opened_at,
            origin,
            risk: RiskState::new(entry_price),
            last_price: entry_price,
            last_price_at: None,
            exited: ExitedPart::default(),
            lifecycle: Lifecycle::new(),
            next_exit_id: NextExitId::default(),
        }
        .with_next_exit_id()
    }

    /// Makes the correlation id of the next exit attempt now, while the position is `Active`
    /// and it is not made yet (the exit core calls it as it takes a position in).
    pub fn prepare_next_exit_id(&mut self) {
        if let Lifecycle::Active { attempts, .. } = &self.lifecycle {
            self.next_exit_id.prepare(&self.id, attempts.saturating_add(1));
        }
    }

    fn with_next_exit_id(mut self) -> Position {
        self.prepare_next_exit_id();
        self
    }

    /// The same position with the entry's exact value (Σ price × quantity of its fills)
    /// instead of `entry_price × quantity`.
    pub fn with_entry_value(mut self, value: Paise) -> Position {
        self.entry_value = value;
        self
    }

    /// Units still open (entered minus executed exits).
    pub fn open_quantity(&self) -> Qty {
        let in_flight = match &self.lifecycle {
            Lifecycle::Exiting(x) => x.filled.0,
            _ => 0,
        };
        Qty(self.quantity.0 - self.exited.quantity.0 - in_flight)
    }

    /// The rules' view: side, entry and the quantity the rules act on.
    pub fn terms(&self) -> Terms {
        Terms { side: self.side, entry: self.entry_price, quantity: self.open_quantity() }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Active { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Exited(_))
    }

    /// Gross PnL of the whole position with the open part at `price` and executed exits at
    /// their fills.
    pub fn gross_at(&self, price: Paise) -> Paise {
        let (_, turnover) = self.executed_exits();
        let open_value = i128::from(price.0) * i128::from(self.open_quantity().0);
        crate::pnl::gross_on_values(
            self.side,
            self.entry_value,
            Paise::saturating_from(open_value + i128::from(turnover.0)),
        )
    }

    /// Unrealised gross PnL at the last price.
    pub fn unrealised(&self) -> Paise {
        self.gross_at(self.last_price)
    }

    /// Quantity and turnover of every exit execution so far, including the order in flight.
    pub fn executed_exits(&self) -> (Qty, Paise) {
        let (q, t) = match &self.lifecycle {
            Lifecycle::Exiting(x) => (x.filled, x.turnover),
            _ => (Qty(0), Paise::ZERO),
        };
        (Qty(self.exited.quantity.0 + q.0), self.exited.turnover() + t)
    }

    /// Moves the lifecycle; the only place it changes.
    pub fn apply(&mut self, event: LifecycleEvent) -> Result<Outcome, LifecycleError> {
        let event_name = event.name();
        let open = self.open_quantity();
        let (next, outcome) = match (&self.lifecycle, event) {
            (
                Lifecycle::Active { attempts, .. },
                LifecycleEvent::Trigger { reason, price, at, stale },
            ) => {
                let attempt = attempts + 1;
                let correlation_id = match self.next_exit_id.take(attempt) {
                    Some(made) => made,
                    None => correlation::exit_id(&self.id, attempt)?,
                };
                let next = Lifecycle::Exiting(Exiting {
                    reason,
                    trigger_price: price,
                    triggered_at: at,
                    correlation_id: correlation_id.clone(),
                    attempt,
                    price_was_stale: stale,
                    filled: Qty(0),
                    turnover: Paise::ZERO,
                });
                (next, Outcome::ExitStarted { correlation_id, attempt })
            }
            (Lifecycle::Exiting(_) | Lifecycle::Exited(_), LifecycleEvent::Trigger { .. }) => {
                return Ok(Outcome::Ignored);
            }
            (
                Lifecycle::Active { .. },
                LifecycleEvent::Fill { .. } | LifecycleEvent::Rejected { .. },
            ) => {
                return Err(LifecycleError::NoExitInFlight {
                    position: self.id.clone(),
                    event: event_name,
                });
            }
            (
                Lifecycle::Exited(_),
                LifecycleEvent::Fill { .. } | LifecycleEvent::Rejected { .. },
            ) => {
                return Err(LifecycleError::AlreadyExited {
                    position: self.id.clone(),
                    event: event_name,
                });
            }
            (
                Lifecycle::Exiting(x),
                LifecycleEvent::Fill { correlation_id, quantity, value, at, .. },
            ) => {
                self.check_order(x, &correlation_id, event_name)?;
                if quantity.0 <= 0 {
                    return Err(LifecycleError::EmptyFill {
                        position: self.id.clone(),
                        fill: quantity,
                    });
                }
                if quantity > open {
                    return Err(LifecycleError::Overfill {
                        position: self.id.clone(),
                        fill: quantity,
                        open,
                    });
                }
                let mut x = x.clone();
                x.filled = Qty(x.filled.0 + quantity.0);
                x.turnover += value;
                if quantity < open {
                    let remaining = Qty(open.0 - quantity.0);
                    (Lifecycle::Exiting(x), Outcome::PartFilled { remaining })
                } else {
                    self.exited.quantity = Qty(self.exited.quantity.0 + x.filled.0);
                    self.exited.order_turnovers.push(x.turnover);
                    self.exited.order_quantities.push(x.filled);
                    let exit_price = Paise(div_round_half_away(
                        i128::from(self.exited.turnover().0),
                        i128::from(self.exited.quantity.0),
                    ) as i64);
                    let next = Lifecycle::Exited(Exited {
                        reason: x.reason,
                        exit_price,
                        exited_at: at,
                        attempt: x.attempt,
                        price_was_stale: x.price_was_stale,
                    });
                    (next, Outcome::Exited)
                }
            }
            (Lifecycle::Exiting(x), LifecycleEvent::Rejected { correlation_id, why, at }) => {
                self.check_order(x, &correlation_id, event_name)?;
                let executed = x.filled;
                if executed.0 > 0 {
                    self.exited.quantity = Qty(self.exited.quantity.0 + executed.0);
                    self.exited.order_turnovers.push(x.turnover);
                    self.exited.order_quantities.push(x.filled);
                }
                let rejection = Rejection { correlation_id, attempt: x.attempt, why, at };
                let attempts = x.attempt;
                (
                    Lifecycle::Active { attempts, last_rejection: Some(rejection) },
                    Outcome::Returned { attempts, executed },
                )
            }
        };
        self.lifecycle = next;
        if matches!(outcome, Outcome::Returned { .. }) {
            // Off the order's path: the next attempt's id is made now, not at its trigger.
            self.prepare_next_exit_id();
        }
        Ok(outcome)
    }

    fn check_order(
        &self,
        x: &Exiting,
        got: &CorrelationId,
        event: &'static str,
    ) -> Result<(), LifecycleError> {
        if &x.correlation_id == got {
            Ok(())
        } else {
            Err(LifecycleError::WrongOrder {
                position: self.id.clone(),
                event,
                expected: x.correlation_id.to_string(),
                got: got.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    fn pos() -> Position {
        Position::open(
            PositionId::new("p1"),
            InstrumentKey::new(Segment::NseFno, 52175),
            Side::Long,
            Qty(75),
            Paise(10_000),
            Timestamp(1_000),
            Origin::Adopted,
        )
    }

    fn trigger(reason: ExitReason, price: i64) -> LifecycleEvent {
        LifecycleEvent::Trigger { reason, price: Paise(price), at: Timestamp(2_000), stale: false }
    }

    fn fill(cid: &str, price: i64, qty: i64) -> LifecycleEvent {
        LifecycleEvent::Fill {
            correlation_id: CorrelationId::new(cid).unwrap(),
            price: Paise(price),
            quantity: Qty(qty),
            value: Paise(price * qty),
            at: Timestamp(3_000),
        }
    }

    fn reject(cid: &str) -> LifecycleEvent {
        LifecycleEvent::Rejected {
            correlation_id: CorrelationId::new(cid).unwrap(),
            why: "RMS: margin".into(),
            at: Timestamp(3_000),
        }
    }

    fn cid(s: &str) -> CorrelationId {
        CorrelationId::new(s).unwrap()
    }

    #[test]
    fn active_trigger_starts_exit_attempt_one() {
        let mut p = pos();
        let out = p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        assert_eq!(out, Outcome::ExitStarted { correlation_id: cid("X1-p1"), attempt: 1 });
        let Lifecycle::Exiting(x) = &p.lifecycle else { panic!("{:?}", p.lifecycle) };
        assert_eq!(
            (x.reason, x.trigger_price, x.triggered_at),
            (ExitReason::StopLoss, Paise(9_000), Timestamp(2_000))
        );
        assert_eq!(x.correlation_id, cid("X1-p1"));
    }

    #[test]
    fn second_trigger_while_exiting_does_nothing() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        let before = p.clone();
        assert_eq!(p.apply(trigger(ExitReason::SquareOff, 9_100)).unwrap(), Outcome::Ignored);
        assert_eq!(p, before);
    }

    #[test]
    fn full_fill_exits_and_later_triggers_do_nothing() {
        let mut p = pos();
        p.apply(trigger(ExitReason::TakeProfit, 12_000)).unwrap();
        assert_eq!(p.apply(fill("X1-p1", 12_000, 75)).unwrap(), Outcome::Exited);
        let Lifecycle::Exited(e) = &p.lifecycle else { panic!() };
        assert_eq!(
            (e.reason, e.exit_price, e.exited_at, e.attempt),
            (ExitReason::TakeProfit, Paise(12_000), Timestamp(3_000), 1)
        );
        assert_eq!(p.open_quantity(), Qty(0));
        assert_eq!(p.apply(trigger(ExitReason::StopLoss, 1)).unwrap(), Outcome::Ignored);
    }

    #[test]
    fn part_fills_accumulate_until_the_position_is_closed() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        assert_eq!(
            p.apply(fill("X1-p1", 9_000, 25)).unwrap(),
            Outcome::PartFilled { remaining: Qty(50) }
        );
        assert_eq!(p.open_quantity(), Qty(50));
        assert_eq!(p.apply(fill("X1-p1", 8_995, 50)).unwrap(), Outcome::Exited);
        // (25 × 90.00 + 50 × 89.95) / 75 = 89.9666… → 89.97
        let Lifecycle::Exited(e) = &p.lifecycle else { panic!() };
        assert_eq!(e.exit_price, Paise(8_997));
        assert_eq!(p.executed_exits(), (Qty(75), Paise(25 * 9_000 + 50 * 8_995)));
    }

    #[test]
    fn the_next_exit_id_is_made_ahead_of_its_trigger() {
        let mut p = pos();
        assert_eq!(p.next_exit_id.0, Some((1, cid("X1-p1"))), "made when the position opens");
        let out = p.apply(trigger(ExitReason::StopLoss, 9_800)).unwrap();
        assert_eq!(out, Outcome::ExitStarted { correlation_id: cid("X1-p1"), attempt: 1 });
        assert_eq!(p.next_exit_id.0, None, "taken by the trigger");
        p.apply(reject("X1-p1")).unwrap();
        assert_eq!(p.next_exit_id.0, Some((2, cid("X2-p1"))), "made at the rejection");
        let out = p.apply(trigger(ExitReason::StopLoss, 9_800)).unwrap();
        assert_eq!(out, Outcome::ExitStarted { correlation_id: cid("X2-p1"), attempt: 2 });
        // An id made for another attempt is never used: the trigger makes the right one.
        p.apply(reject("X2-p1")).unwrap();
        p.next_exit_id = NextExitId(Some((7, cid("X7-p1"))));
        let out = p.apply(trigger(ExitReason::StopLoss, 9_800)).unwrap();
        assert_eq!(out, Outcome::ExitStarted { correlation_id: cid("X3-p1"), attempt: 3 });
        // A cache: a position without it is the same position.
        let mut q = p.clone();
        q.next_exit_id = NextExitId::default();
        assert_eq!(p, q);
    }

    #[test]
    fn rejection_returns_to_active_with_attempt_kept_and_next_trigger_uses_a_new_id() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        assert_eq!(
            p.apply(reject("X1-p1")).unwrap(),
            Outcome::Returned { attempts: 1, executed: Qty(0) }
        );
        let Lifecycle::Active { attempts, last_rejection } = &p.lifecycle else { panic!() };
        assert_eq!(*attempts, 1);
        let r = last_rejection.as_ref().unwrap();
        assert_eq!(
            (r.correlation_id.as_str(), r.attempt, r.why.as_str()),
            ("X1-p1", 1, "RMS: margin")
        );
        let out = p.apply(trigger(ExitReason::StopLoss, 8_900)).unwrap();
        assert_eq!(out, Outcome::ExitStarted { correlation_id: cid("X2-p1"), attempt: 2 });
    }

    #[test]
    fn rejection_after_a_part_fill_keeps_the_executed_part() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        p.apply(fill("X1-p1", 9_000, 30)).unwrap();
        assert_eq!(
            p.apply(reject("X1-p1")).unwrap(),
            Outcome::Returned { attempts: 1, executed: Qty(30) }
        );
        assert_eq!(p.open_quantity(), Qty(45));
        assert_eq!(p.exited.order_turnovers, vec![Paise(270_000)]);
        // Marked at 95.00: 45 × −5.00 open + 30 × −10.00 executed.
        assert_eq!(p.gross_at(Paise(9_500)), Paise(-22_500 - 30_000));
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        assert_eq!(p.apply(fill("X2-p1", 9_100, 45)).unwrap(), Outcome::Exited);
        assert_eq!(p.exited.order_turnovers, vec![Paise(270_000), Paise(409_500)]);
    }

    #[test]
    fn fill_or_rejection_while_active_is_refused() {
        let mut p = pos();
        assert!(matches!(p.apply(fill("X1-p1", 1, 1)), Err(LifecycleError::NoExitInFlight { .. })));
        assert!(matches!(p.apply(reject("X1-p1")), Err(LifecycleError::NoExitInFlight { .. })));
        assert_eq!(p, pos());
    }

    #[test]
    fn fill_or_rejection_after_exit_is_refused() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        p.apply(fill("X1-p1", 9_000, 75)).unwrap();
        let closed = p.clone();
        assert!(matches!(
            p.apply(fill("X1-p1", 9_000, 75)),
            Err(LifecycleError::AlreadyExited { .. })
        ));
        assert!(matches!(p.apply(reject("X1-p1")), Err(LifecycleError::AlreadyExited { .. })));
        assert_eq!(p, closed);
    }

    #[test]
    fn events_for_another_order_are_refused() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        p.apply(reject("X1-p1")).unwrap();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        // A late answer about attempt 1 while attempt 2 is in flight.
        assert!(matches!(
            p.apply(fill("X1-p1", 9_000, 75)),
            Err(LifecycleError::WrongOrder { .. })
        ));
        assert!(matches!(p.apply(reject("X1-p1")), Err(LifecycleError::WrongOrder { .. })));
        assert!(matches!(p.lifecycle, Lifecycle::Exiting(ref x) if x.attempt == 2));
    }

    #[test]
    fn overfill_and_empty_fill_are_refused() {
        let mut p = pos();
        p.apply(trigger(ExitReason::StopLoss, 9_000)).unwrap();
        assert!(matches!(p.apply(fill("X1-p1", 9_000, 76)), Err(LifecycleError::Overfill { .. })));
        assert!(matches!(p.apply(fill("X1-p1", 9_000, 0)), Err(LifecycleError::EmptyFill { .. })));
        assert_eq!(p.open_quantity(), Qty(75));
    }

    #[test]
    fn lifecycle_round_trips_through_json() {
        let mut p = pos();
        p.apply(trigger(ExitReason::RatchetStop, 11_000)).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: Position = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
