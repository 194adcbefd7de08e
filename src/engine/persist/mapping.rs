//! Engine values as store records, and back where recovery needs it. Pure functions: the sink
//! (`sink.rs`) calls them on the engine's threads, recovery (`recover.rs`) on startup.

use chrono::NaiveDate;

use crate::domain::{Fill, OrderIntent, Qty, Timestamp};
use crate::exec::core::{AccountView, Alert, AlertLevel, ClosedTrade, PositionView};
use crate::exec::order_book::OrderState;
use crate::risk::SessionClock;
use crate::risk::correlation;
use crate::risk::position::{Lifecycle, Origin, Position};
use crate::risk::trading_state::{ChangeReason, HaltCause, TradingState, TradingStateChange};
use crate::store::{
    Actor, AuditRecord, ClosedTradeRecord, DailyPnlRecord, FillRecord, OrderRecord, OrderStatus,
    OrderStatusChange, PositionMark, PositionRecord, PositionSource, PositionState,
    TradingStateKind, TradingStateRecord,
};

/// A position with its whole risk state and lifecycle, as of `at`.
pub fn position_record(p: &Position, at: Timestamp) -> PositionRecord {
    let source = match p.origin {
        Origin::Entry => PositionSource::Entry,
        Origin::Adopted => PositionSource::Adopted,
        Origin::AdoptedAtBrokerAverage => PositionSource::AdoptedBrokerAverage,
    };
    let mut r = PositionRecord {
        best_price: p.risk.best_price,
        hwm_pnl: p.risk.hwm_pnl,
        ratchet_stop: p.risk.ratchet_stop,
        last_price: p.last_price,
        last_price_at: p.last_price_at,
        updated_at: at,
        entry_value: Some(p.entry_value),
        ..PositionRecord::opened(
            p.id.clone(),
            p.instrument,
            p.side,
            p.quantity,
            p.entry_price,
            p.opened_at,
            source,
        )
    };
    match &p.lifecycle {
        Lifecycle::Active { attempts, last_rejection } => {
            r.exit_attempts = *attempts;
            r.last_rejection = last_rejection.as_ref().map(|j| j.why.clone());
        }
        Lifecycle::Exiting(x) => {
            r.state = PositionState::Exiting;
            r.exit_attempts = x.attempt;
            r.exit_reason = Some(x.reason);
            r.exit_trigger_price = Some(x.trigger_price);
            r.exit_trigger_at = Some(x.triggered_at);
            r.exit_correlation_id = Some(x.correlation_id.clone());
        }
        Lifecycle::Exited(e) => {
            r.state = PositionState::Exited;
            r.exit_attempts = e.attempt;
            r.exit_reason = Some(e.reason);
            // The order that completed it, for an operator reading the row.
            r.exit_correlation_id = correlation::exit_id(&p.id, e.attempt).ok();
            r.exit_price = Some(e.exit_price);
            r.exited_at = Some(e.exited_at);
        }
    }
    r
}

/// The per-tick part of a position's risk state as a published snapshot shows it.
pub fn position_mark(v: &PositionView, at: Timestamp) -> PositionMark {
    PositionMark {
        id: v.id.clone(),
        best_price: v.risk.best_price,
        hwm_pnl: v.risk.hwm_pnl,
        ratchet_stop: v.risk.ratchet_stop,
        last_price: v.last_price,
        last_price_at: v.last_price_at,
        updated_at: at,
    }
}

/// An order the router is about to hand to the broker.
pub fn order_placed(intent: &OrderIntent, at: Timestamp) -> OrderRecord {
    OrderRecord {
        correlation_id: intent.correlation_id.clone(),
        broker_order_id: None,
        position_id: intent.position_id.clone(),
        instrument: intent.instrument,
        txn: intent.txn,
        quantity: intent.quantity,
        purpose: intent.purpose,
        status: OrderStatus::Created,
        created_at: at,
        updated_at: at,
        limit_price: intent.limit_price,
    }
}

/// What became of an order, as a status change. `ordered` is the order's quantity when known,
/// to tell a part fill from a full one.
pub fn order_status(
    correlation_id: &crate::domain::CorrelationId,
    state: &OrderState,
    ordered: Option<Qty>,
    at: Timestamp,
) -> OrderStatusChange {
    let (status, broker_order_id, detail) = match state {
        OrderState::Sending => {
            (OrderStatus::Unknown, None, Some("sent, no answer yet".to_string()))
        }
        OrderState::Accepted { order_id } => (OrderStatus::Pending, Some(order_id.clone()), None),
        OrderState::Filled { order_id, price, quantity } => {
            let part = ordered.is_some_and(|q| *quantity < q);
            let status = if part { OrderStatus::PartTraded } else { OrderStatus::Traded };
            (status, Some(order_id.clone()), Some(format!("{quantity} at {price}")))
        }
        OrderState::Rejected { reason } => (OrderStatus::Rejected, None, Some(reason.clone())),
        OrderState::Unknown { detail } => (OrderStatus::Unknown, None, Some(detail.clone())),
    };
    OrderStatusChange {
        correlation_id: correlation_id.clone(),
        status,
        broker_order_id,
        at,
        detail,
    }
}

pub fn fill_record(f: &Fill) -> FillRecord {
    FillRecord::from(f)
}

/// A stored fill as the domain's [`Fill`] (to hand it to the exit engine again at a restart).
pub fn fill_from_record(f: &FillRecord) -> Fill {
    Fill {
        correlation_id: f.correlation_id.clone(),
        order_id: f.order_id.clone(),
        trade_id: f.trade_id.clone(),
        instrument: f.instrument,
        txn: f.txn,
        quantity: f.quantity,
        price: f.price,
        value: f.value.unwrap_or(f.price * f.quantity),
        at: f.at,
    }
}

pub fn closed_trade_record(t: &ClosedTrade) -> ClosedTradeRecord {
    ClosedTradeRecord {
        position_id: t.position_id.clone(),
        instrument: t.instrument,
        side: t.side,
        reason: t.reason,
        entry_price: t.entry_price,
        exit_price: t.exit_price,
        quantity: t.quantity,
        gross: t.gross,
        charges: t.charges(),
        net: t.net,
        closed_at: t.exited_at,
    }
}

pub fn trading_state_kind(s: TradingState) -> TradingStateKind {
    match s {
        TradingState::Active => TradingStateKind::Active,
        TradingState::Reducing => TradingStateKind::Reducing,
        TradingState::Halted => TradingStateKind::Halted,
    }
}

/// The trading state after `change`. Every halt is latched for the IST trading day it happened
/// on: the core lifts any halt when a new session begins, so a halt of an earlier day has
/// expired by the time anyone reads it back.
pub fn trading_state_record(
    change: &TradingStateChange,
    session: &SessionClock,
) -> TradingStateRecord {
    let halted = change.current == TradingState::Halted;
    TradingStateRecord {
        state: trading_state_kind(change.current),
        reason: change.reason.to_string(),
        since: change.at,
        latched_day: halted.then(|| session.session_of(change.at)),
        updated_at: change.at,
    }
}

/// The stored reason text back as a [`ChangeReason`] (the inverse of its `Display`); unknown
/// text reads as `Start`.
pub fn parse_change_reason(text: &str) -> ChangeReason {
    match text {
        "restore" => ChangeReason::Restore,
        "resume" => ChangeReason::Resume,
        "new_session" => ChangeReason::NewSession,
        "daily_loss_limit" => ChangeReason::Halt { cause: HaltCause::DailyLossLimit },
        "kill_switch" => ChangeReason::Halt { cause: HaltCause::KillSwitch },
        "escalation" => ChangeReason::Halt { cause: HaltCause::Escalation },
        "operator" => ChangeReason::Halt { cause: HaltCause::Operator },
        other => match other.strip_prefix("reduce: ") {
            Some(why) => ChangeReason::Reduce { why: why.to_string() },
            None => ChangeReason::Start,
        },
    }
}

/// The audit line of a trading-state change (the state table keeps only the latest).
pub fn trading_state_audit(change: &TradingStateChange) -> AuditRecord {
    AuditRecord {
        at: change.at,
        actor: Actor::Engine,
        action: "trading_state".to_string(),
        detail: format!("{} -> {} ({})", change.prev, change.current, change.reason),
    }
}

pub fn alert_audit(a: &Alert) -> AuditRecord {
    let level = match a.level {
        AlertLevel::Info => "info",
        AlertLevel::Warning => "warning",
        AlertLevel::Critical => "critical",
    };
    AuditRecord {
        at: a.at,
        actor: Actor::Engine,
        action: format!("alert:{}", a.code),
        detail: format!("[{level}] {}", a.message),
    }
}

pub fn session_audit(session: NaiveDate, at: Timestamp) -> AuditRecord {
    AuditRecord {
        at,
        actor: Actor::Engine,
        action: "session_started".to_string(),
        detail: format!("trading session {}", session.format("%Y-%m-%d")),
    }
}

/// The day's realised account as a published snapshot shows it, once the day is known.
pub fn daily_record(a: &AccountView, at: Timestamp) -> Option<DailyPnlRecord> {
    Some(DailyPnlRecord {
        trading_day: a.session?,
        realised_net: a.realised_net,
        charges: a.charges,
        trade_count: a.trades_today,
        updated_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        CorrelationId, ExitReason, InstrumentKey, OrderId, Paise, PositionId, Segment, Side,
    };
    use crate::risk::position::LifecycleEvent;

    fn pos() -> Position {
        Position::open(
            PositionId::new("P1-1"),
            InstrumentKey::new(Segment::NseFno, 52175),
            Side::Long,
            Qty(75),
            Paise(10_000),
            Timestamp(1_000),
            Origin::Entry,
        )
    }

    #[test]
    fn a_position_record_carries_the_lifecycle_of_each_state() {
        let mut p = pos();
        p.risk.best_price = Paise(11_000);
        p.risk.ratchet_stop = Some(Paise(10_500));
        let r = position_record(&p, Timestamp(5));
        assert_eq!(
            (r.state, r.exit_attempts, r.exit_correlation_id.clone()),
            (PositionState::Active, 0, None)
        );
        assert_eq!(
            (r.best_price, r.ratchet_stop, r.updated_at),
            (Paise(11_000), Some(Paise(10_500)), Timestamp(5))
        );

        let trigger = |price| LifecycleEvent::Trigger {
            reason: ExitReason::RatchetStop,
            price: Paise(price),
            at: Timestamp(2_000),
            stale: false,
        };
        p.apply(trigger(10_500)).unwrap();
        let r = position_record(&p, Timestamp(6));
        assert_eq!(r.state, PositionState::Exiting);
        assert_eq!(r.exit_correlation_id.as_ref().map(|c| c.as_str()), Some("X1-P1-1"));
        assert_eq!(
            (r.exit_reason, r.exit_trigger_price, r.exit_attempts),
            (Some(ExitReason::RatchetStop), Some(Paise(10_500)), 1)
        );

        let cid = CorrelationId::new("X1-P1-1").unwrap();
        p.apply(LifecycleEvent::Rejected {
            correlation_id: cid,
            why: "RMS".into(),
            at: Timestamp(3_000),
        })
        .unwrap();
        let r = position_record(&p, Timestamp(7));
        assert_eq!(
            (r.state, r.exit_attempts, r.last_rejection.as_deref()),
            (PositionState::Active, 1, Some("RMS"))
        );

        p.apply(trigger(10_400)).unwrap();
        let cid = CorrelationId::new("X2-P1-1").unwrap();
        p.apply(LifecycleEvent::Fill {
            correlation_id: cid,
            price: Paise(10_400),
            quantity: Qty(75),
            value: Paise(10_400 * 75),
            at: Timestamp(4_000),
        })
        .unwrap();
        let r = position_record(&p, Timestamp(8));
        assert_eq!(r.state, PositionState::Exited);
        assert_eq!(
            (r.exit_price, r.exited_at, r.exit_attempts),
            (Some(Paise(10_400)), Some(Timestamp(4_000)), 2)
        );
        assert_eq!(r.exit_correlation_id.as_ref().map(|c| c.as_str()), Some("X2-P1-1"));
    }

    #[test]
    fn order_states_map_to_broker_statuses() {
        let cid = CorrelationId::new("N1-P1-1").unwrap();
        let oid = OrderId("o1".into());
        let cases = [
            (OrderState::Accepted { order_id: oid.clone() }, Some(Qty(75)), OrderStatus::Pending),
            (
                OrderState::Filled { order_id: oid.clone(), price: Paise(1), quantity: Qty(75) },
                Some(Qty(75)),
                OrderStatus::Traded,
            ),
            (
                OrderState::Filled { order_id: oid.clone(), price: Paise(1), quantity: Qty(25) },
                Some(Qty(75)),
                OrderStatus::PartTraded,
            ),
            (
                OrderState::Filled { order_id: oid.clone(), price: Paise(1), quantity: Qty(25) },
                None,
                OrderStatus::Traded,
            ),
            (OrderState::Rejected { reason: "no".into() }, None, OrderStatus::Rejected),
            (OrderState::Unknown { detail: "timeout".into() }, None, OrderStatus::Unknown),
        ];
        for (state, ordered, want) in cases {
            assert_eq!(order_status(&cid, &state, ordered, Timestamp(1)).status, want, "{state:?}");
        }
    }

    #[test]
    fn a_halt_is_latched_for_the_ist_day_it_happened_on_and_other_states_are_not() {
        let session = SessionClock::default();
        // 2025-11-24 23:00 IST is still the 24th in IST (17:30 UTC).
        let at = Timestamp::parse("2025-11-24T23:00:00+05:30").unwrap();
        let halt = TradingStateChange {
            prev: TradingState::Active,
            current: TradingState::Halted,
            reason: ChangeReason::Halt { cause: HaltCause::DailyLossLimit },
            at,
        };
        let r = trading_state_record(&halt, &session);
        assert_eq!(r.latched_day, NaiveDate::from_ymd_opt(2025, 11, 24));
        assert_eq!(r.reason, "daily_loss_limit");
        let resume = TradingStateChange {
            prev: TradingState::Halted,
            current: TradingState::Active,
            reason: ChangeReason::Resume,
            at,
        };
        assert_eq!(trading_state_record(&resume, &session).latched_day, None);
    }

    #[test]
    fn change_reasons_read_back_from_their_text() {
        let reasons = [
            ChangeReason::Start,
            ChangeReason::Restore,
            ChangeReason::Resume,
            ChangeReason::NewSession,
            ChangeReason::Reduce { why: "feed: stopped".into() },
            ChangeReason::Halt { cause: HaltCause::DailyLossLimit },
            ChangeReason::Halt { cause: HaltCause::KillSwitch },
            ChangeReason::Halt { cause: HaltCause::Escalation },
            ChangeReason::Halt { cause: HaltCause::Operator },
        ];
        for r in reasons {
            assert_eq!(parse_change_reason(&r.to_string()), r);
        }
        assert_eq!(parse_change_reason("something else"), ChangeReason::Start);
    }
}
