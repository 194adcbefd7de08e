//! The exit core's upkeep in a long-running engine: parameters changed by a live reload, prices
//! noted for entry checks, the operator's halt, when the next timed rule comes due, and pruning
//! of state that no longer matters. Replay does not need these; the exit-engine worker does.

use std::collections::HashSet;

use crate::domain::{InstrumentKey, Tick, Timestamp};
use crate::risk::trading_state::HaltCause;
use crate::risk::{Limits, RiskParams};

use super::{CoreEvent, ExitCore, LastTick, fresh_at};

/// What [`ExitCore::prune`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Last prices of instruments with neither an open position nor a pending entry.
    pub prices: usize,
    /// Re-entry cooldown marks that have run out.
    pub cooldowns: usize,
}

impl ExitCore {
    pub fn risk_params(&self) -> &RiskParams {
        &self.risk
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Applies reloaded `[risk]` and `[limits]` tables; they decide from the next call on.
    /// Positions keep their risk state (best price, high-water mark, ratchet stop), so a stop
    /// that was already set does not loosen. Returns whether anything changed.
    pub fn set_params(&mut self, risk: RiskParams, limits: Limits) -> bool {
        let changed = self.risk != risk || self.limits != limits;
        self.risk = risk;
        self.limits = limits;
        changed
    }

    /// Records an instrument's price for the entry checks without evaluating any position.
    /// The exit engine receives ticks of position instruments only; an entry on another
    /// instrument is checked against the tick cache's price, noted here first. An older tick
    /// than the one already known is ignored.
    pub fn note_price(&mut self, tick: &Tick) {
        let newer = self.last_ticks.get(&tick.instrument).is_none_or(|t| tick.received_at >= t.at);
        if newer {
            let last = LastTick { ltp: tick.ltp, at: tick.received_at, mono: tick.received_mono };
            self.last_ticks.insert(tick.instrument, last);
        }
    }

    /// An operator's halt: entries stop, open positions keep their exit rules. Lifted by a
    /// resume or a new session.
    pub fn operator_halt(&mut self, now: Timestamp) -> Vec<CoreEvent> {
        let mut events = Vec::new();
        self.halt(HaltCause::Operator, now, &mut events);
        events
    }

    /// The next instant a timed rule comes due after the last [`ExitCore::on_clock`]: a
    /// square-off, the start of the next session, a stale-feed exit, or the retry of a rejected
    /// exit. `None` before the first
    /// `on_clock`. A worker uses it to run the timed rules before a tick received at or after
    /// that instant, as replay does.
    pub fn next_timed_event(&self) -> Option<Timestamp> {
        let from = self.clock?;
        let mut next = self.session.next_square_off_after(from);
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(day) = self.day.session {
            consider(self.session.next_session_start_after(day));
        }
        let stale_ms = self.risk.stale_exit_after_secs.saturating_mul(1_000);
        if stale_ms > 0 {
            for p in self.positions().filter(|p| p.is_active()) {
                // Due on the monotonic clock; as a wall instant relative to the last clock
                // step (a hint for the worker's wake-up, which also runs every clock step).
                let due = match (self.stale_due(p, stale_ms), self.clock_mono) {
                    (Some(d), Some(m)) => from.plus_millis(d.millis_since(m)),
                    _ => fresh_at(p).plus_millis(stale_ms),
                };
                consider(Some(due));
            }
        }
        consider(self.retries.next_due(from));
        next
    }

    /// Forgets what no decision needs any more: last prices of instruments with neither an
    /// open position nor a pending entry (an entry check notes a fresh one from the tick
    /// cache), and re-entry cooldown marks older than the current cooldown.
    pub fn prune(&mut self, now: Timestamp) -> Pruned {
        let live: HashSet<InstrumentKey> = self
            .by_instrument
            .keys()
            .copied()
            .chain(self.pending.values().map(|e| e.instrument))
            .collect();
        let before = (self.last_ticks.len(), self.last_exits.len());
        self.last_ticks.retain(|k, _| live.contains(k));
        let open = &self.by_id;
        self.retries.retain(|id| open.contains_key(id));
        let cooldown_ms = self.limits.reentry_cooldown_secs * 1_000;
        self.last_exits.retain(|_, at| now.millis_since(*at) <= cooldown_ms);
        Pruned {
            prices: before.0 - self.last_ticks.len(),
            cooldowns: before.1 - self.last_exits.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoreParams, NewPosition};
    use super::*;
    use crate::domain::{Bp, ExitReason, Paise, PositionId, Qty, Segment, Side};
    use crate::risk::TradingState;
    use crate::risk::entry::{EntryRefusal, EntryRequest};
    use crate::risk::position::Origin;
    use crate::risk::trading_state::TradingCell;

    const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
    const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);

    fn ist(text: &str) -> Timestamp {
        Timestamp::parse(&format!("2025-11-24T{text}+05:30")).unwrap()
    }

    fn tick(instrument: InstrumentKey, ltp: i64, at: Timestamp) -> Tick {
        Tick::at(instrument, Paise(ltp), at)
    }

    fn core() -> ExitCore {
        ExitCore::new(CoreParams::default(), TradingCell::active(ist("09:00:00")))
    }

    fn adopt(core: &mut ExitCore, id: &str, instrument: InstrumentKey, at: Timestamp) {
        let new = NewPosition {
            id: PositionId::new(id),
            instrument,
            side: Side::Long,
            quantity: Qty(75),
            entry_price: Paise(10_000),
            opened_at: at,
        };
        core.open_position(new, Origin::Adopted).unwrap();
    }

    fn request(id: &str, instrument: InstrumentKey) -> EntryRequest {
        EntryRequest {
            position_id: PositionId::new(id),
            instrument,
            side: Side::Long,
            quantity: Qty(75),
            available_cash: None,
        }
    }

    #[test]
    fn tighter_stop_loss_applies_from_the_next_tick() {
        let mut c = core();
        adopt(&mut c, "p1", A, ist("10:00:00"));
        assert!(c.on_tick(&tick(A, 9_500, ist("10:00:01"))).is_empty(), "-5% under a 10% stop");
        let risk = RiskParams { stop_loss: Bp(400), ..RiskParams::default() };
        assert!(c.set_params(risk.clone(), Limits::default()));
        assert!(!c.set_params(risk, Limits::default()), "same parameters change nothing");
        let events = c.on_tick(&tick(A, 9_500, ist("10:00:02")));
        let reasons: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                CoreEvent::ExitIntent(i) => Some(i.purpose),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, [crate::domain::OrderPurpose::Exit(ExitReason::StopLoss)]);
    }

    #[test]
    fn a_noted_price_serves_entry_checks_and_an_older_one_is_ignored() {
        let mut c = core();
        let now = ist("10:00:00");
        assert!(matches!(c.check_entry(&request("p1", A), now), Err(EntryRefusal::NoPrice { .. })));
        c.note_price(&tick(A, 12_000, now));
        c.note_price(&tick(A, 11_000, ist("09:59:59")));
        assert_eq!(c.last_tick(&A), Some((Paise(12_000), now)));
        assert_eq!(c.check_entry(&request("p1", A), now).unwrap().reference_price, Paise(12_000));
    }

    #[test]
    fn operator_halt_stops_entries_and_keeps_positions_active() {
        let mut c = core();
        adopt(&mut c, "p1", A, ist("10:00:00"));
        let events = c.operator_halt(ist("10:01:00"));
        assert!(
            matches!(events.as_slice(), [CoreEvent::TradingState(ch)] if ch.current == TradingState::Halted)
        );
        assert!(c.positions().all(|p| p.is_active()));
        assert!(c.operator_halt(ist("10:02:00")).is_empty(), "a second halt changes nothing");
        c.note_price(&tick(B, 10_000, ist("10:03:00")));
        assert!(matches!(
            c.check_entry(&request("p2", B), ist("10:03:00")),
            Err(EntryRefusal::TradingNotActive { state: TradingState::Halted })
        ));
        assert_eq!(c.resume(ist("10:04:00")).unwrap().len(), 1);
    }

    #[test]
    fn next_timed_event_is_the_square_off_then_the_next_session() {
        let mut c = core();
        assert_eq!(c.next_timed_event(), None, "nothing before the first clock step");
        c.on_clock(ist("10:00:00"));
        assert_eq!(c.next_timed_event(), Some(ist("15:20:00")));
        c.on_clock(ist("15:30:00"));
        // Monday 24 Nov 2025: the next session starts on Tuesday.
        let tuesday = Timestamp::parse("2025-11-25T00:00:00+05:30").unwrap();
        assert_eq!(c.next_timed_event(), Some(tuesday));
    }

    #[test]
    fn next_timed_event_includes_a_stale_feed_exit_when_configured() {
        let params = CoreParams {
            risk: RiskParams { stale_exit_after_secs: 60, ..RiskParams::default() },
            ..CoreParams::default()
        };
        let mut c = ExitCore::new(params, TradingCell::active(ist("09:00:00")));
        adopt(&mut c, "p1", A, ist("10:00:00"));
        c.on_clock(ist("10:00:00"));
        assert_eq!(c.next_timed_event(), Some(ist("10:01:00")));
        c.on_tick(&tick(A, 10_100, ist("10:00:30")));
        assert_eq!(c.next_timed_event(), Some(ist("10:01:30")));
    }

    #[test]
    fn prune_keeps_prices_in_use_and_cooldowns_still_running() {
        let params = CoreParams {
            limits: Limits { reentry_cooldown_secs: 60, ..Limits::default() },
            risk: RiskParams { stop_loss: Bp(1_000), ..RiskParams::default() },
            ..CoreParams::default()
        };
        let mut c = ExitCore::new(params, TradingCell::active(ist("09:00:00")));
        adopt(&mut c, "p1", A, ist("10:00:00"));
        c.note_price(&tick(B, 10_000, ist("10:00:00")));
        // p1 exits at 10:00:10: A's cooldown runs to 10:01:10.
        let events = c.on_tick(&tick(A, 8_900, ist("10:00:10")));
        let intent = events
            .iter()
            .find_map(|e| match e {
                CoreEvent::ExitIntent(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        c.on_exit_filled(&intent.correlation_id, Paise(8_900), Qty(75), ist("10:00:10")).unwrap();
        assert_eq!(c.prune(ist("10:01:10")), Pruned { prices: 2, cooldowns: 0 });
        assert_eq!(c.last_tick(&B), None);
        assert_eq!(c.prune(ist("10:01:11")), Pruned { prices: 0, cooldowns: 1 });
    }
}
