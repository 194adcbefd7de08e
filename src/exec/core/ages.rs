//! Ages on the monotonic clock, and the price guard in front of the rules.
//!
//! Staleness (the `stale` flag of an exit and a view, the stale-feed exit) is measured on the
//! monotonic readings the callers pass in with ticks and clock steps ([`Mono`]), never on the
//! wall clock: a system-time correction of an hour either way makes no price stale and fires
//! no exit. Each position keeps the monotonic reading of its last confirmed price (else of
//! its opening). A position restored from the store or opened between two readings gets its
//! marks from its wall-clock age at the next reading (the only age that survives a restart),
//! and from then on only the monotonic clock counts. Calls that carry only a wall time
//! (`flatten`, `check_account`, `snapshot`) judge staleness at the latest monotonic reading,
//! which the exit-engine worker refreshes at least every clock step.

use crate::domain::{InstrumentKey, Mono, Tick, Timestamp};
use crate::risk::position::Position;
use crate::risk::price_guard::{GuardCounts, PriceBand, Verdict};

use super::{ExitCore, fresh_at};

/// A position's monotonic marks; `None` until the first reading after it was inserted.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Marks {
    opened: Option<Mono>,
    pub(super) fresh: Option<Mono>,
}

impl ExitCore {
    /// Takes a monotonic reading taken at wall time `now`: the latest reading, and the marks of
    /// positions that had none yet (from their wall-clock ages at `now`).
    pub(super) fn note_mono(&mut self, now: Timestamp, mono: Mono) {
        self.mono = Some(self.mono.map_or(mono, |m| m.max(mono)));
        let Self { slots, marks, .. } = self;
        for p in slots.iter().flatten() {
            let m = marks.entry(p.id.clone()).or_default();
            let back = |t: Timestamp| mono.plus_millis(-now.millis_since(t).max(0));
            if m.opened.is_none() {
                m.opened = Some(back(p.opened_at));
            }
            if m.fresh.is_none() {
                m.fresh = Some(back(fresh_at(p)));
            }
        }
    }

    /// The latest monotonic reading the core has judged at.
    pub fn mono_reading(&self) -> Option<Mono> {
        self.mono
    }

    /// How long the position has had no fresh price at the latest reading.
    pub(super) fn silent_ms(&self, p: &Position, now: Timestamp) -> i64 {
        self.silent_ms_at(p, now, self.mono)
    }

    /// How long the position has had no fresh price: at reading `mono` once it has its marks,
    /// else (before the first reading) on the wall clock at `now`.
    pub(super) fn silent_ms_at(&self, p: &Position, now: Timestamp, mono: Option<Mono>) -> i64 {
        match (mono, self.marks.get(&p.id).and_then(|m| m.fresh)) {
            (Some(mono), Some(fresh)) => mono.millis_since(fresh),
            _ => now.millis_since(fresh_at(p)),
        }
    }

    /// When the position's stale-feed exit comes due, on the monotonic clock.
    pub(super) fn stale_due(&self, p: &Position, stale_ms: i64) -> Option<Mono> {
        self.marks.get(&p.id).and_then(|m| m.fresh).map(|f| f.plus_millis(stale_ms))
    }

    /// Whether a tick received at `tick` is later than the position's opening (a tick from
    /// before it opened is not its price).
    pub(super) fn is_live_at(&self, p: &Position, tick: &Tick) -> bool {
        match self.marks.get(&p.id).and_then(|m| m.opened) {
            Some(opened) => tick.received_mono >= opened,
            None => tick.received_at >= p.opened_at,
        }
    }

    /// The price guard's verdict on a tick of an instrument some position holds (live at the
    /// tick); `None` when no position holds it (the guard does not judge it).
    pub(super) fn guard(&mut self, tick: &Tick) -> Option<Verdict> {
        let slots = self.by_instrument.get(&tick.instrument)?;
        let reference = slots
            .iter()
            .filter_map(|&s| self.slots[s].as_ref())
            .find(|p| self.is_live_at(p, tick))
            .map(|p| p.last_price)?;
        Some(self.guard.judge(
            &self.risk.price_guard,
            tick.instrument,
            tick.ltp,
            tick.received_mono,
            tick.source,
            Some(reference),
        ))
    }

    /// The instrument master's hook: the instrument's day band (or none).
    pub fn set_price_band(&mut self, instrument: InstrumentKey, band: Option<PriceBand>) {
        self.guard.set_band(instrument, band);
    }

    /// What the price guard has dropped, held, confirmed and discarded so far.
    pub fn price_guard_counts(&self) -> GuardCounts {
        self.guard.counts()
    }

    /// Milliseconds since each open position's last confirmed price (else its opening), at the
    /// latest monotonic reading `mono`; for the heartbeat's staleness report.
    pub fn price_ages(&self, now: Timestamp, mono: Mono) -> Vec<(&Position, i64)> {
        self.positions()
            .map(|p| {
                let age = match self.marks.get(&p.id).and_then(|m| m.fresh) {
                    Some(fresh) => mono.millis_since(fresh),
                    None => now.millis_since(fresh_at(p)),
                };
                (p, age.max(0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoreEvent, CoreParams, NewPosition};
    use super::*;
    use crate::domain::{ExitReason, Paise, PositionId, Qty, Segment, Side, TickSource};
    use crate::risk::RiskParams;
    use crate::risk::position::Origin;
    use crate::risk::trading_state::TradingCell;

    const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 1);
    const HOUR: i64 = 3_600_000;

    fn ist(text: &str) -> Timestamp {
        Timestamp::parse(&format!("2025-11-24T{text}+05:30")).unwrap()
    }

    /// A core with a stale-feed exit after 60 s and `side` 75 of A at ₹100.00 opened at 10:00.
    fn held(side: Side) -> ExitCore {
        let risk = RiskParams { stale_exit_after_secs: 60, ..RiskParams::default() };
        let params = CoreParams { risk, ..CoreParams::default() };
        let mut c = ExitCore::new(params, TradingCell::active(ist("09:00:00")));
        let new = NewPosition {
            id: PositionId::new("p"),
            instrument: A,
            side,
            quantity: Qty(75),
            entry_price: Paise(10_000),
            opened_at: ist("10:00:00"),
        };
        c.open_position(new, Origin::Adopted).unwrap();
        c
    }

    /// A feed tick of A at `ltp` received at wall `at` and monotonic `mono`.
    fn tick(ltp: i64, at: Timestamp, mono: i64) -> Tick {
        Tick { received_mono: Mono(mono), ..Tick::at(A, Paise(ltp), at) }
    }

    fn exits(events: &[CoreEvent]) -> Vec<(ExitReason, Paise)> {
        events
            .iter()
            .filter_map(|e| match e {
                CoreEvent::ExitIntent(i) => match i.purpose {
                    crate::domain::OrderPurpose::Exit(r) => Some((r, i.reference_price)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn is_active(c: &ExitCore) -> bool {
        c.positions().all(|p| p.is_active())
    }

    #[test]
    fn zero_absurd_and_spiking_prices_fire_nothing_and_leave_the_last_price() {
        for side in [Side::Long, Side::Short] {
            let mut c = held(side);
            let t = ist("10:00:01");
            let m = t.millis();
            // 0.00 would be a stop loss for a long and a take profit for a short; ₹1e9 and a
            // 10x spike a take profit for a long and a stop loss for a short.
            for (i, ltp) in [0, -100, 100_000_000_000, 100_000, 10_050].into_iter().enumerate() {
                let at = t.plus_millis(i as i64);
                let events = c.on_tick(&tick(ltp, at, m + i as i64));
                assert_eq!(exits(&events), [], "{side:?} at {ltp}");
            }
            assert!(is_active(&c));
            let p = c.positions().next().unwrap();
            assert_eq!(p.last_price, Paise(10_050), "only accepted prices are the position's");
            assert_eq!(c.last_tick(&A), Some((Paise(10_050), t.plus_millis(4))));
            let counts = c.price_guard_counts();
            assert_eq!((counts.dropped, counts.suspect, counts.discarded), (2, 2, 2));
        }
    }

    #[test]
    fn a_confirmed_move_fires_at_the_confirming_price() {
        let mut c = held(Side::Long);
        let t = ist("10:00:01");
        assert_eq!(exits(&c.on_tick(&tick(7_500, t, t.millis()))), []);
        assert_eq!(c.positions().next().unwrap().last_price, Paise(10_000));
        let events = c.on_tick(&tick(7_400, t.plus_millis(200), t.millis() + 200));
        assert_eq!(exits(&events), [(ExitReason::StopLoss, Paise(7_400))]);
        // A move within the jump limit needs no confirmation.
        let mut c = held(Side::Short);
        assert_eq!(
            exits(&c.on_tick(&tick(11_000, t, t.millis()))),
            [(ExitReason::StopLoss, Paise(11_000))]
        );
    }

    #[test]
    fn a_rest_price_confirms_a_suspect() {
        let mut c = held(Side::Long);
        let t = ist("10:00:01");
        assert_eq!(exits(&c.on_tick(&tick(7_500, t, t.millis()))), []);
        let rest = Tick {
            source: TickSource::Rest,
            ..tick(7_600, t.plus_millis(9_000), t.millis() + 9_000)
        };
        assert_eq!(exits(&c.on_tick(&rest)), [(ExitReason::StopLoss, Paise(7_600))]);
    }

    #[test]
    fn a_band_holds_prices_outside_it() {
        let mut c = held(Side::Long);
        c.set_price_band(A, Some(PriceBand { low: Paise(9_500), high: Paise(20_000) }));
        let t = ist("10:00:01");
        assert_eq!(exits(&c.on_tick(&tick(8_900, t, t.millis()))), [], "below the band");
        c.set_price_band(A, None);
        assert_eq!(
            exits(&c.on_tick(&tick(8_950, t, t.millis() + 1))),
            [(ExitReason::StopLoss, Paise(8_950))]
        );
    }

    #[test]
    fn a_wall_clock_step_either_way_makes_nothing_stale_and_fires_nothing() {
        let mut c = held(Side::Long);
        let t = ist("10:00:01");
        let m = 5_000; // the monotonic clock has its own origin
        assert_eq!(exits(&c.on_tick(&tick(10_100, t, m))), []);
        assert_eq!(exits(&c.on_clock_at(t, Mono(m))), []);
        for (step, elapsed) in [(HOUR, 1_000), (-HOUR, 1_500), (0, 2_000)] {
            let now = t.plus_millis(step + elapsed);
            let mono = Mono(m + elapsed);
            assert_eq!(exits(&c.on_clock_at(now, mono)), [], "step {step}");
            assert!(!c.snapshot(now, mono).positions[0].price_is_stale, "step {step}");
            assert!(is_active(&c));
        }
        // Stepped back an hour, the position's ticks still reach its rules.
        let back = t.plus_millis(-HOUR + 4_000);
        assert_eq!(exits(&c.on_tick(&tick(10_150, back, m + 4_000))), []);
        assert_eq!(c.positions().next().unwrap().last_price, Paise(10_150));
        // Real silence still counts: 60 s on the monotonic clock, whatever the wall says.
        let now = back.plus_millis(59_999);
        assert!(c.snapshot(now, Mono(m + 63_999)).positions[0].price_is_stale);
        assert_eq!(exits(&c.on_clock_at(now, Mono(m + 63_999))), []);
        let events = c.on_clock_at(now.plus_millis(1), Mono(m + 64_000));
        assert_eq!(exits(&events), [(ExitReason::StaleFeed, Paise(10_150))]);
    }

    #[test]
    fn entry_price_ages_follow_the_monotonic_clock_and_a_zero_price_is_no_price() {
        use crate::risk::entry::{EntryRefusal, EntryRequest};
        let mut c = held(Side::Long);
        let request = EntryRequest {
            position_id: PositionId::new("e"),
            instrument: A,
            side: Side::Long,
            quantity: Qty(75),
            available_cash: None,
        };
        let t = ist("10:00:01");
        let m = 5_000;
        // A zero price is no price to enter at.
        c.on_tick(&tick(0, t, m));
        let refused = c.check_entry(&request, t);
        assert!(matches!(refused, Err(EntryRefusal::NoPrice { .. })), "{refused:?}");
        c.on_tick(&tick(10_100, t.plus_millis(10), m + 10));
        c.on_clock_at(t.plus_millis(HOUR + 20), Mono(m + 20));
        let ok = c.check_entry(&request, t.plus_millis(HOUR + 20));
        assert_eq!(ok.map(|a| a.reference_price), Ok(Paise(10_100)), "fresh after a +1 h step");
        // Stepped back an hour, a price as old as the stale limit is stale all the same.
        let stale = c.risk.stale_after_ms;
        let now = t.plus_millis(-HOUR + 10 + stale);
        c.on_clock_at(now, Mono(m + 10 + stale));
        let refused = c.check_entry(&request, now);
        assert!(matches!(refused, Err(EntryRefusal::StalePrice { .. })), "{refused:?}");
    }

    #[test]
    fn a_restored_position_takes_its_wall_age_once() {
        // Before any reading, a position opened 30 s ago (wall) is 30 s old on the first one.
        let mut c = held(Side::Long);
        let now = ist("10:00:30");
        assert_eq!(exits(&c.on_clock_at(now, Mono(1_000))), []);
        assert_eq!(exits(&c.on_clock_at(now.plus_millis(HOUR), Mono(30_999))), []);
        let events = c.on_clock_at(now.plus_millis(HOUR), Mono(31_000));
        assert_eq!(exits(&events), [(ExitReason::StaleFeed, Paise(10_000))]);
    }
}
