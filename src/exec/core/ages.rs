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
