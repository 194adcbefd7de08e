//! The tiered ratchet stop (risk spec §3, rule 2).
//!
//! The active tier is the highest one whose `at` the best move has reached; its stop sits at
//! `stop_offset` from the entry price, rounded half away from zero to the paisa. The stop only
//! ever tightens. `rules` calls [`recompute`] on every tick after updating the best price.

use crate::domain::money::div_round_half_away;
use crate::domain::{Paise, Side};

use super::params::RatchetTier;

/// The stop of the highest tier reached by `best_price`, or `None` below the first tier.
pub fn tier_stop(
    tiers: &[RatchetTier],
    side: Side,
    entry: Paise,
    best_price: Paise,
) -> Option<Paise> {
    let e = i128::from(entry.0);
    let best_move = i128::from(side.sign()) * (i128::from(best_price.0) - e);
    let tier = tiers
        .iter()
        .filter(|t| best_move * 10_000 >= i128::from(t.at.0) * e)
        .max_by_key(|t| t.at)?;
    let factor = match side {
        Side::Long => 10_000 + i128::from(tier.stop_offset.0),
        Side::Short => 10_000 - i128::from(tier.stop_offset.0),
    };
    Some(Paise::saturating_from(div_round_half_away(e * factor, 10_000)))
}

/// The tighter of the current stop and a candidate: higher for a long, lower for a short.
pub fn tighten(side: Side, current: Option<Paise>, candidate: Option<Paise>) -> Option<Paise> {
    match (current, candidate) {
        (Some(c), Some(n)) => Some(match side {
            Side::Long => c.max(n),
            Side::Short => c.min(n),
        }),
        (c, n) => c.or(n),
    }
}

/// The new ratchet stop after the best price moved: the tier's stop, never looser than before.
pub fn recompute(
    tiers: &[RatchetTier],
    side: Side,
    entry: Paise,
    best_price: Paise,
    current: Option<Paise>,
) -> Option<Paise> {
    tighten(side, current, tier_stop(tiers, side, entry, best_price))
}

/// Whether `ltp` is through the stop: at or below it for a long, at or above for a short.
pub fn is_hit(side: Side, stop: Paise, ltp: Paise) -> bool {
    match side {
        Side::Long => ltp <= stop,
        Side::Short => ltp >= stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Bp;
    use crate::risk::params::RiskParams;

    fn tiers() -> Vec<RatchetTier> {
        RiskParams::default_ratchet()
    }

    #[test]
    fn no_stop_below_the_first_tier() {
        assert_eq!(tier_stop(&tiers(), Side::Long, Paise(10_000), Paise(10_999)), None);
        assert_eq!(tier_stop(&tiers(), Side::Short, Paise(10_000), Paise(9_001)), None);
    }

    #[test]
    fn tier_is_reached_at_exactly_its_threshold() {
        let cases = [
            // (side, best, expected stop)
            (Side::Long, 11_000, Some(9_500)),
            (Side::Long, 11_499, Some(9_500)),
            (Side::Long, 11_500, Some(10_000)),
            (Side::Long, 12_500, Some(11_000)),
            (Side::Long, 14_000, Some(12_000)),
            (Side::Long, 22_000, Some(16_000)),
            (Side::Long, 99_000, Some(16_000)),
            (Side::Short, 9_000, Some(10_500)),
            (Side::Short, 8_501, Some(10_500)),
            (Side::Short, 8_500, Some(10_000)),
            (Side::Short, 7_500, Some(9_000)),
        ];
        for (side, best, want) in cases {
            assert_eq!(
                tier_stop(&tiers(), side, Paise(10_000), Paise(best)),
                want.map(Paise),
                "{side} best {best}"
            );
        }
    }

    #[test]
    fn stop_rounds_half_away_from_zero_to_the_paisa() {
        let one = [RatchetTier::new(Bp(1_000), Bp(-500))];
        // 100.10 × 0.95 = 95.095 → 95.10; short: 100.10 × 1.05 = 105.105 → 105.11.
        assert_eq!(tier_stop(&one, Side::Long, Paise(10_010), Paise(11_011)), Some(Paise(9_510)));
        assert_eq!(tier_stop(&one, Side::Short, Paise(10_010), Paise(9_009)), Some(Paise(10_511)));
        // 100.01 × 0.95 = 95.0095 → 95.01.
        assert_eq!(tier_stop(&one, Side::Long, Paise(10_001), Paise(11_002)), Some(Paise(9_501)));
    }

    #[test]
    fn tightening_never_loosens() {
        assert_eq!(
            tighten(Side::Long, Some(Paise(11_000)), Some(Paise(9_500))),
            Some(Paise(11_000))
        );
        assert_eq!(
            tighten(Side::Long, Some(Paise(9_500)), Some(Paise(11_000))),
            Some(Paise(11_000))
        );
        assert_eq!(tighten(Side::Long, Some(Paise(9_500)), None), Some(Paise(9_500)));
        assert_eq!(
            tighten(Side::Short, Some(Paise(9_000)), Some(Paise(10_500))),
            Some(Paise(9_000))
        );
        assert_eq!(tighten(Side::Short, None, Some(Paise(10_500))), Some(Paise(10_500)));
    }

    #[test]
    fn hit_is_inclusive() {
        assert!(is_hit(Side::Long, Paise(11_000), Paise(11_000)));
        assert!(!is_hit(Side::Long, Paise(11_000), Paise(11_001)));
        assert!(is_hit(Side::Short, Paise(9_000), Paise(9_000)));
        assert!(!is_hit(Side::Short, Paise(9_000), Paise(8_999)));
    }
}
