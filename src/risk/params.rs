//! Risk, limit and session parameters in engine units (basis points, paise, seconds), with the
//! defaults of the risk spec (§3, §4, §5).
//!
//! The config module builds these from the `[risk]`, `[limits]` and `[session]` tables (and
//! validates them there, with key paths); the rules
//! (`rules`, `ratchet`), the session clock and the exit core read them. A percentage of 0 switches
//! its rule off.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::domain::{Bp, Paise, TimeOfDay};

use super::price_guard::PriceGuardParams;

/// One ratchet tier: once the best move reaches `at`, the stop sits at `stop_offset` from entry
/// (negative = below entry for a long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatchetTier {
    pub at: Bp,
    pub stop_offset: Bp,
}

impl RatchetTier {
    pub const fn new(at: Bp, stop_offset: Bp) -> RatchetTier {
        RatchetTier { at, stop_offset }
    }
}

/// Per-position rule parameters (§3, §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskParams {
    /// Rule 1; 0 = off.
    pub stop_loss: Bp,
    /// Rule 3; 0 = off.
    pub take_profit: Bp,
    /// Rule 4: drop from the PnL high-water mark, as a share of it; 0 = off.
    pub trail_drop: Bp,
    /// Rule 4 arms once the high-water mark reaches this much PnL.
    pub trail_activation: Paise,
    /// Rule 5: drop from the best move, in points of the entry price; 0 = off.
    pub peak_drawdown: Bp,
    /// Rule 5 arms once the best move reaches this share of the entry price.
    pub peak_drawdown_activation: Bp,
    /// Rule 2, in ascending `at` order; empty = off.
    pub ratchet: Vec<RatchetTier>,
    /// A price is stale when no tick for its instrument has arrived for this long.
    pub stale_after_ms: i64,
    /// Exit `stale_feed` after this long without a fresh price; 0 = never.
    pub stale_exit_after_secs: i64,
    /// Which prices the rules may act on (bad ticks, suspect jumps).
    pub price_guard: PriceGuardParams,
}

impl RiskParams {
    /// The spec's default ratchet tiers (§3).
    pub fn default_ratchet() -> Vec<RatchetTier> {
        [(10, -5), (15, 0), (25, 10), (40, 20), (60, 30), (80, 40), (120, 60)]
            .into_iter()
            .map(|(at, off)| RatchetTier::new(Bp(at * 100), Bp(off * 100)))
            .collect()
    }

    /// All rules off: a base for tests and tools that switch on one rule at a time.
    pub fn all_off() -> RiskParams {
        RiskParams {
            stop_loss: Bp::ZERO,
            take_profit: Bp::ZERO,
            trail_drop: Bp::ZERO,
            trail_activation: Paise::ZERO,
            peak_drawdown: Bp::ZERO,
            peak_drawdown_activation: Bp::ZERO,
            ratchet: Vec::new(),
            ..RiskParams::default()
        }
    }
}

impl Default for RiskParams {
    fn default() -> RiskParams {
        RiskParams {
            stop_loss: Bp(1_000),
            take_profit: Bp(2_000),
            trail_drop: Bp(300),
            trail_activation: Paise(100_000),
            peak_drawdown: Bp(500),
            peak_drawdown_activation: Bp(500),
            ratchet: RiskParams::default_ratchet(),
            stale_after_ms: 3_000,
            stale_exit_after_secs: 0,
            price_guard: PriceGuardParams::default(),
        }
    }
}

/// Account limits (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Halt and flatten when the day's PnL reaches minus this; 0 = off (the config refuses 0 in
    /// live mode).
    pub max_daily_loss: Paise,
    pub max_trades_per_day: u32,
    pub max_open_positions: u32,
    pub reentry_cooldown_secs: i64,
    /// Most lots one entry may carry; 0 = off.
    pub max_lots_per_order: i64,
    /// Largest value of one entry; 0 = off.
    pub max_order_value: Paise,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_daily_loss: Paise(500_000),
            max_trades_per_day: 20,
            max_open_positions: 5,
            reentry_cooldown_secs: 180,
            max_lots_per_order: 0,
            max_order_value: Paise(0),
        }
    }
}

/// The trading session (§4), all times IST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub square_off_time: TimeOfDay,
    pub entry_cutoff_time: TimeOfDay,
    /// Exchange holidays: not trading days.
    pub holidays: BTreeSet<NaiveDate>,
    /// Whether Saturdays and Sundays are trading days (special sessions); normally not.
    pub weekends_are_trading_days: bool,
}

impl Default for SessionParams {
    fn default() -> SessionParams {
        SessionParams {
            square_off_time: TimeOfDay::hms(15, 20, 0),
            entry_cutoff_time: TimeOfDay::hms(15, 15, 0),
            holidays: BTreeSet::new(),
            weekends_are_trading_days: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_defaults() {
        let r = RiskParams::default();
        assert_eq!(r.stop_loss, Bp(1000));
        assert_eq!(r.take_profit, Bp(2000));
        assert_eq!(r.trail_drop, Bp(300));
        assert_eq!(r.trail_activation, Paise(100_000));
        assert_eq!(r.peak_drawdown, Bp(500));
        assert_eq!(r.peak_drawdown_activation, Bp(500));
        assert_eq!(r.stale_after_ms, 3000);
        assert_eq!(r.stale_exit_after_secs, 0);
        let tiers: Vec<(i64, i64)> = r.ratchet.iter().map(|t| (t.at.0, t.stop_offset.0)).collect();
        assert_eq!(
            tiers,
            [
                (1000, -500),
                (1500, 0),
                (2500, 1000),
                (4000, 2000),
                (6000, 3000),
                (8000, 4000),
                (12000, 6000)
            ]
        );
        let l = Limits::default();
        assert_eq!(
            (l.max_daily_loss, l.max_trades_per_day, l.max_open_positions, l.reentry_cooldown_secs),
            (Paise(500_000), 20, 5, 180)
        );
        let s = SessionParams::default();
        assert_eq!(s.square_off_time, TimeOfDay::hms(15, 20, 0));
        assert_eq!(s.entry_cutoff_time, TimeOfDay::hms(15, 15, 0));
        assert!(!s.weekends_are_trading_days);
    }
}
