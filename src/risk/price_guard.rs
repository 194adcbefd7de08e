//! The price guard: which prices of a position's instrument the exit rules may act on.
//!
//! Pure: a price, its monotonic receive time and its source in, a verdict out. The exit core
//! asks it before the rules see a tick. Policy:
//!
//! - a price ≤ 0 is dropped (counted; never an error);
//! - a REST LTP above 0 is accepted (it is the broker's own price: it confirms a suspect);
//! - a feed price outside the instrument's day band (when a band is known), or more than
//!   `max_jump` (basis points) away from the last accepted price, is *suspect*: held, not
//!   acted on;
//! - a later feed price within `max_jump` of the suspect, received within `confirm_window_ms`
//!   of it, confirms it (the confirming price is accepted); a price that is neither near the
//!   last accepted one nor a confirmation replaces the suspect (the old one is discarded,
//!   counted); a normal price accepted while a suspect is held discards the suspect.
//!
//! With no accepted price yet, the caller's reference (the position's entry price) stands in.

use std::collections::HashMap;

use crate::domain::{Bp, InstrumentKey, Mono, Paise, TickSource};

/// The guard's settings (`[risk]` `max_jump_pct`, `jump_confirm_window_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceGuardParams {
    /// A feed price further than this from the last accepted price is suspect; 0 = no jump
    /// check (prices ≤ 0 and out-of-band prices are still held back).
    pub max_jump: Bp,
    /// A suspect is confirmed by a near price received within this many milliseconds.
    pub confirm_window_ms: i64,
}

impl Default for PriceGuardParams {
    fn default() -> PriceGuardParams {
        PriceGuardParams { max_jump: Bp(2_000), confirm_window_ms: 5_000 }
    }
}

/// The prices an instrument can trade at today (the exchange's circuit limits), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceBand {
    pub low: Paise,
    pub high: Paise,
}

impl PriceBand {
    pub fn contains(&self, price: Paise) -> bool {
        self.low <= price && price <= self.high
    }
}

/// What to do with a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The rules may act on it.
    Accept,
    /// A held suspect confirmed by this price: the rules may act on it.
    Confirmed,
    /// Held as suspect: the rules must not act on it.
    Suspect(SuspectWhy),
    /// Not a price (≤ 0): ignored.
    Dropped,
}

impl Verdict {
    pub fn is_accepted(self) -> bool {
        matches!(self, Verdict::Accept | Verdict::Confirmed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspectWhy {
    OutsideBand,
    Jump,
}

/// Running counts, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// Prices ≤ 0 dropped.
    pub dropped: u64,
    /// Prices held as suspect.
    pub suspect: u64,
    /// Suspects confirmed (by a near feed price or a REST LTP).
    pub confirmed: u64,
    /// Suspects never confirmed: replaced or overtaken by a normal price.
    pub discarded: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    price: Paise,
    at: Mono,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    accepted: Option<Paise>,
    suspect: Option<Held>,
}

/// Per-instrument guard state. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct PriceGuard {
    states: HashMap<InstrumentKey, State>,
    bands: HashMap<InstrumentKey, PriceBand>,
    counts: GuardCounts,
}

/// Whether `price` is within `max_jump` basis points of `reference` (exact, in i128).
fn near(price: Paise, reference: Paise, max_jump: Bp) -> bool {
    if max_jump.0 <= 0 {
        return true;
    }
    let diff = (i128::from(price.0) - i128::from(reference.0)).abs();
    diff * 10_000 <= i128::from(max_jump.0) * i128::from(reference.0).abs()
}

impl PriceGuard {
    pub fn new() -> PriceGuard {
        PriceGuard::default()
    }

    /// Sets (or with `None` clears) the instrument's day band; the instrument master's hook.
    pub fn set_band(&mut self, instrument: InstrumentKey, band: Option<PriceBand>) {
        match band {
            Some(b) => self.bands.insert(instrument, b),
            None => self.bands.remove(&instrument),
        };
    }

    /// Forgets what the guard knew about the instrument's prices (its band stays).
    pub fn forget(&mut self, instrument: &InstrumentKey) {
        self.states.remove(instrument);
    }

    pub fn counts(&self) -> GuardCounts {
        self.counts
    }

    /// Judges `price` of `instrument` received at `at` from `source`; `reference` stands in
    /// for the last accepted price when there is none yet.
    pub fn judge(
        &mut self,
        params: &PriceGuardParams,
        instrument: InstrumentKey,
        price: Paise,
        at: Mono,
        source: TickSource,
        reference: Option<Paise>,
    ) -> Verdict {
        if price.0 <= 0 {
            self.counts.dropped += 1;
            return Verdict::Dropped;
        }
        let band = self.bands.get(&instrument).copied();
        let state = self.states.entry(instrument).or_default();
        let held = state.suspect.take();
        let accept = |state: &mut State, counts: &mut GuardCounts, v: Verdict| {
            state.accepted = Some(price);
            match v {
                Verdict::Confirmed => counts.confirmed += 1,
                _ if held.is_some() => counts.discarded += 1,
                _ => {}
            }
            v
        };
        if source == TickSource::Rest {
            let v = if held.is_some() { Verdict::Confirmed } else { Verdict::Accept };
            return accept(state, &mut self.counts, v);
        }
        let in_band = band.is_none_or(|b| b.contains(price));
        let last = state.accepted.or(reference);
        let normal = in_band && last.is_none_or(|l| near(price, l, params.max_jump));
        if normal {
            return accept(state, &mut self.counts, Verdict::Accept);
        }
        if let Some(h) = held {
            let fresh = at.millis_since(h.at) <= params.confirm_window_ms;
            if fresh && near(price, h.price, params.max_jump) {
                return accept(state, &mut self.counts, Verdict::Confirmed);
            }
            self.counts.discarded += 1;
        }
        state.suspect = Some(Held { price, at });
        self.counts.suspect += 1;
        Verdict::Suspect(if in_band { SuspectWhy::Jump } else { SuspectWhy::OutsideBand })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    const K: InstrumentKey = InstrumentKey::new(Segment::NseFno, 1);
    const FEED: TickSource = TickSource::Feed;
    const REST: TickSource = TickSource::Rest;

    fn params() -> PriceGuardParams {
        PriceGuardParams { max_jump: Bp(2_000), confirm_window_ms: 1_000 }
    }

    /// Runs `(price, at_ms, source)` through a fresh guard with reference ₹100.00; returns
    /// the verdicts and the final counts.
    fn run(
        ticks: &[(i64, i64, TickSource)],
        band: Option<PriceBand>,
    ) -> (Vec<Verdict>, GuardCounts) {
        let mut g = PriceGuard::new();
        g.set_band(K, band);
        let v = ticks
            .iter()
            .map(|&(p, at, src)| {
                g.judge(&params(), K, Paise(p), Mono(at), src, Some(Paise(10_000)))
            })
            .collect();
        (v, g.counts())
    }

    use Verdict::*;
    const JUMP: Verdict = Suspect(SuspectWhy::Jump);
    const BAND: Verdict = Suspect(SuspectWhy::OutsideBand);

    /// `(name, ticks as (price, at_ms, source), band, expected verdicts)`.
    type Case = (&'static str, Vec<(i64, i64, TickSource)>, Option<PriceBand>, Vec<Verdict>);

    #[test]
    fn verdicts_table() {
        let band = Some(PriceBand { low: Paise(5_000), high: Paise(15_000) });
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("ltp 0 and negative are dropped", vec![(0, 0, FEED), (-5, 1, FEED), (0, 2, REST)], None, vec![Dropped, Dropped, Dropped]),
            ("moves within 20 % are accepted, boundary inclusive", vec![(12_000, 0, FEED), (9_600, 1, FEED)], None, vec![Accept, Accept]),
            ("just beyond 20 % is suspect", vec![(12_001, 0, FEED)], None, vec![JUMP]),
            ("₹1e9 is suspect", vec![(100_000_000_000, 0, FEED)], None, vec![JUMP]),
            ("a single 10x spike is held, then discarded by a normal price", vec![(100_000, 0, FEED), (10_100, 1, FEED)], None, vec![JUMP, Accept]),
            ("a second near price within the window confirms", vec![(7_000, 0, FEED), (6_900, 500, FEED), (6_800, 600, FEED)], None, vec![JUMP, Confirmed, Accept]),
            ("a second near price after the window is a new suspect", vec![(7_000, 0, FEED), (6_900, 1_001, FEED), (6_900, 1_500, FEED)], None, vec![JUMP, JUMP, Confirmed]),
            ("a far second price replaces the suspect", vec![(7_000, 0, FEED), (200_000, 1, FEED), (200_000, 2, FEED)], None, vec![JUMP, JUMP, Confirmed]),
            ("a REST price confirms a suspect", vec![(7_000, 0, FEED), (7_100, 10_000, REST), (7_000, 10_001, FEED)], None, vec![JUMP, Confirmed, Accept]),
            ("a REST price is accepted on its own", vec![(30_000, 0, REST)], None, vec![Accept]),
            ("outside the band is suspect even when near", vec![(15_001, 0, FEED), (15_002, 1, FEED)], band, vec![BAND, Confirmed]),
            ("inside the band and near is accepted", vec![(11_000, 0, FEED)], band, vec![Accept]),
            ("dropped prices do not disturb a suspect", vec![(7_000, 0, FEED), (0, 1, FEED), (7_000, 2, FEED)], None, vec![JUMP, Dropped, Confirmed]),
        ];
        for (name, ticks, band, want) in cases {
            assert_eq!(run(&ticks, band).0, want, "{name}");
        }
    }

    #[test]
    fn counts_track_every_outcome() {
        let ticks = [
            (0, 0, FEED),
            (100_000, 1, FEED),
            (10_000, 2, FEED),
            (7_000, 3, FEED),
            (7_000, 4, FEED),
        ];
        let (_, c) = run(&ticks, None);
        assert_eq!(c, GuardCounts { dropped: 1, suspect: 2, confirmed: 1, discarded: 1 });
    }

    #[test]
    fn the_reference_stands_in_until_a_price_is_accepted_and_forget_resets() {
        let mut g = PriceGuard::new();
        let p = params();
        assert_eq!(g.judge(&p, K, Paise(11_000), Mono(0), FEED, Some(Paise(10_000))), Accept);
        // The accepted 110.00 is the reference now, not the caller's.
        assert_eq!(g.judge(&p, K, Paise(13_000), Mono(1), FEED, Some(Paise(13_000))), Accept);
        assert_eq!(g.judge(&p, K, Paise(50_000), Mono(2), FEED, Some(Paise(50_000))), JUMP);
        g.forget(&K);
        assert_eq!(g.judge(&p, K, Paise(50_000), Mono(3), FEED, Some(Paise(50_000))), Accept);
        assert_eq!(g.judge(&p, K, Paise(1), Mono(4), FEED, None), JUMP);
    }

    #[test]
    fn no_jump_check_when_switched_off_and_no_overflow_at_extremes() {
        let mut g = PriceGuard::new();
        let off = PriceGuardParams { max_jump: Bp(0), ..params() };
        assert_eq!(g.judge(&off, K, Paise(i64::MAX), Mono(0), FEED, Some(Paise(1))), Accept);
        let mut g = PriceGuard::new();
        let wide = PriceGuardParams { max_jump: Bp(i64::MAX), ..params() };
        assert_eq!(
            g.judge(&wide, K, Paise(i64::MAX), Mono(0), FEED, Some(Paise(i64::MAX))),
            Accept
        );
        assert_eq!(g.judge(&params(), K, Paise(1), Mono(i64::MAX), FEED, None), JUMP);
        assert_eq!(g.judge(&params(), K, Paise(1), Mono(i64::MIN), FEED, None), Confirmed);
    }
}
