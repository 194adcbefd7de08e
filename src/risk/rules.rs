//! The five per-tick exit rules of risk spec §3, evaluated in integers.
//!
//! On each tick of a position's instrument: update `best_price` and `hwm_pnl`, recompute the
//! ratchet stop (`ratchet`), then evaluate rules 1→5; the first that fires is the reason. Every
//! comparison is a cross-multiplication in `i128` (no division, no overflow for any realistic
//! price × quantity) and every boundary is inclusive. A rule whose percentage is 0 never fires.
//! The exit core owns the [`RiskState`] of each position and calls [`on_tick`].

use serde::{Deserialize, Serialize};

use crate::domain::{ExitReason, Paise, Qty, Side};

use super::params::RiskParams;
use super::ratchet;

/// What the rules need to know about a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub side: Side,
    pub entry: Paise,
    pub quantity: Qty,
}

impl Terms {
    /// `L − E` for a long, `E − L` for a short.
    pub fn move_at(&self, price: Paise) -> i64 {
        let mv = i128::from(self.side.sign()) * (i128::from(price.0) - i128::from(self.entry.0));
        Paise::saturating_from(mv).0
    }

    /// Unrealised gross PnL at `price` (saturating: see `pnl::gross_pnl`).
    pub fn pnl_at(&self, price: Paise) -> Paise {
        crate::pnl::gross_pnl(self.side, self.entry, price, self.quantity)
    }

    fn is_better(&self, price: Paise, than: Paise) -> bool {
        match self.side {
            Side::Long => price > than,
            Side::Short => price < than,
        }
    }
}

/// A position's risk state (§2); it must survive a restart, so it is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskState {
    /// Most favourable price since entry (highest for a long, lowest for a short).
    pub best_price: Paise,
    /// Highest unrealised gross PnL seen.
    pub hwm_pnl: Paise,
    /// Current ratchet stop, if a tier has been reached.
    pub ratchet_stop: Option<Paise>,
}

impl RiskState {
    pub fn new(entry: Paise) -> RiskState {
        RiskState { best_price: entry, hwm_pnl: Paise::ZERO, ratchet_stop: None }
    }
}

/// Steps 1 and 2 of a tick: best price, high-water mark, ratchet stop.
pub fn update(params: &RiskParams, terms: &Terms, state: &mut RiskState, ltp: Paise) {
    if terms.is_better(ltp, state.best_price) {
        state.best_price = ltp;
    }
    let pnl = terms.pnl_at(ltp);
    if pnl > state.hwm_pnl {
        state.hwm_pnl = pnl;
    }
    if !params.ratchet.is_empty() {
        state.ratchet_stop = ratchet::recompute(
            &params.ratchet,
            terms.side,
            terms.entry,
            state.best_price,
            state.ratchet_stop,
        );
    }
}

/// Step 3: rules 1→5 on an already updated state; the first that fires.
pub fn evaluate(
    params: &RiskParams,
    terms: &Terms,
    state: &RiskState,
    ltp: Paise,
) -> Option<ExitReason> {
    let e = i128::from(terms.entry.0);
    let mv = i128::from(terms.move_at(ltp));

    // 1. stop loss
    let sl = i128::from(params.stop_loss.0);
    if sl != 0 && mv * 10_000 <= -sl * e {
        return Some(ExitReason::StopLoss);
    }
    // 2. ratchet stop
    if let Some(stop) = state.ratchet_stop
        && ratchet::is_hit(terms.side, stop, ltp)
    {
        return Some(ExitReason::RatchetStop);
    }
    // 3. take profit
    let tp = i128::from(params.take_profit.0);
    if tp != 0 && mv * 10_000 >= tp * e {
        return Some(ExitReason::TakeProfit);
    }
    // 4. trailing stop on the PnL high-water mark
    let drop = i128::from(params.trail_drop.0);
    let hwm = i128::from(state.hwm_pnl.0);
    let pnl = mv * i128::from(terms.quantity.0);
    if drop != 0
        && hwm > 0
        && hwm >= i128::from(params.trail_activation.0)
        && (hwm - pnl) * 10_000 >= drop * hwm
    {
        return Some(ExitReason::TrailingStop);
    }
    // 5. peak drawdown, in points of the entry price
    let pd = i128::from(params.peak_drawdown.0);
    let best_move = i128::from(terms.move_at(state.best_price));
    if pd != 0
        && best_move * 10_000 >= i128::from(params.peak_drawdown_activation.0) * e
        && (best_move - mv) * 10_000 >= pd * e
    {
        return Some(ExitReason::PeakDrawdown);
    }
    None
}

/// One tick for one position: update its risk state, then evaluate the rules.
pub fn on_tick(
    params: &RiskParams,
    terms: &Terms,
    state: &mut RiskState,
    ltp: Paise,
) -> Option<ExitReason> {
    update(params, terms, state, ltp);
    evaluate(params, terms, state, ltp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Bp;
    use crate::risk::params::RatchetTier;

    const E: i64 = 10_000; // ₹100.00

    fn long(q: i64) -> Terms {
        Terms { side: Side::Long, entry: Paise(E), quantity: Qty(q) }
    }

    fn short(q: i64) -> Terms {
        Terms { side: Side::Short, entry: Paise(E), quantity: Qty(q) }
    }

    /// Feeds `prices` in order; returns the reason of the first tick that fires and its index.
    fn run(params: &RiskParams, terms: Terms, prices: &[i64]) -> Option<(usize, ExitReason)> {
        let mut state = RiskState::new(terms.entry);
        prices
            .iter()
            .enumerate()
            .find_map(|(i, &p)| on_tick(params, &terms, &mut state, Paise(p)).map(|r| (i, r)))
    }

    fn only(f: impl FnOnce(&mut RiskParams)) -> RiskParams {
        let mut p = RiskParams::all_off();
        f(&mut p);
        p
    }

    fn stop_loss_only() -> RiskParams {
        only(|p| p.stop_loss = Bp(1_000))
    }

    fn take_profit_only() -> RiskParams {
        only(|p| p.take_profit = Bp(2_000))
    }

    fn trailing_only() -> RiskParams {
        only(|p| {
            p.trail_drop = Bp(300);
            p.trail_activation = Paise(100_000);
        })
    }

    fn peak_drawdown_only() -> RiskParams {
        only(|p| {
            p.peak_drawdown = Bp(500);
            p.peak_drawdown_activation = Bp(500);
        })
    }

    fn ratchet_only() -> RiskParams {
        only(|p| p.ratchet = RiskParams::default_ratchet())
    }

    #[test]
    fn stop_loss_fires_at_exactly_minus_ten_percent() {
        assert_eq!(run(&stop_loss_only(), long(75), &[9_000]), Some((0, ExitReason::StopLoss)));
        assert_eq!(run(&stop_loss_only(), short(75), &[11_000]), Some((0, ExitReason::StopLoss)));
    }

    #[test]
    fn stop_loss_holds_one_paisa_before() {
        assert_eq!(run(&stop_loss_only(), long(75), &[9_001]), None);
        assert_eq!(run(&stop_loss_only(), short(75), &[10_999]), None);
    }

    #[test]
    fn take_profit_fires_at_exactly_plus_twenty_percent() {
        assert_eq!(
            run(&take_profit_only(), long(75), &[12_000]),
            Some((0, ExitReason::TakeProfit))
        );
        assert_eq!(
            run(&take_profit_only(), short(75), &[8_000]),
            Some((0, ExitReason::TakeProfit))
        );
    }

    #[test]
    fn take_profit_holds_one_paisa_before() {
        assert_eq!(run(&take_profit_only(), long(75), &[11_999]), None);
        assert_eq!(run(&take_profit_only(), short(75), &[8_001]), None);
    }

    #[test]
    fn trailing_stop_fires_at_exactly_three_percent_off_the_high_water_mark() {
        // 75 × ₹15.00 = ₹1,125.00 high-water mark (armed: ≥ ₹1,000); 3 % of it is ₹33.75, so
        // the stop is at PnL ₹1,091.25 = 75 × ₹14.55, i.e. LTP ₹114.55.
        assert_eq!(
            run(&trailing_only(), long(75), &[11_500, 11_455]),
            Some((1, ExitReason::TrailingStop))
        );
        assert_eq!(
            run(&trailing_only(), short(75), &[8_500, 8_545]),
            Some((1, ExitReason::TrailingStop))
        );
    }

    #[test]
    fn trailing_stop_holds_one_paisa_before() {
        assert_eq!(run(&trailing_only(), long(75), &[11_500, 11_456]), None);
        assert_eq!(run(&trailing_only(), short(75), &[8_500, 8_544]), None);
    }

    #[test]
    fn trailing_stop_arms_at_exactly_the_activation_pnl() {
        // 100 units: a ₹10.00 move is exactly ₹1,000.00 of PnL; 3 % of it is ₹30.00 = ₹0.30/unit.
        assert_eq!(
            run(&trailing_only(), long(100), &[11_000, 10_970]),
            Some((1, ExitReason::TrailingStop))
        );
        // One paisa short of activation: ₹999.00 high-water mark, any drop is ignored.
        assert_eq!(run(&trailing_only(), long(100), &[10_999, 10_000]), None);
    }

    #[test]
    fn trailing_stop_never_fires_without_a_positive_high_water_mark() {
        let p = only(|p| p.trail_drop = Bp(300)); // activation 0
        assert_eq!(run(&p, long(75), &[10_000, 9_000, 8_000]), None);
    }

    #[test]
    fn peak_drawdown_fires_at_exactly_five_points_off_the_best() {
        assert_eq!(
            run(&peak_drawdown_only(), long(1), &[10_500, 10_000]),
            Some((1, ExitReason::PeakDrawdown))
        );
        assert_eq!(
            run(&peak_drawdown_only(), short(1), &[9_500, 10_000]),
            Some((1, ExitReason::PeakDrawdown))
        );
    }

    #[test]
    fn peak_drawdown_holds_one_paisa_before() {
        assert_eq!(run(&peak_drawdown_only(), long(1), &[10_500, 10_001]), None);
        assert_eq!(run(&peak_drawdown_only(), short(1), &[9_500, 9_999]), None);
    }

    #[test]
    fn peak_drawdown_arms_at_exactly_the_activation_move() {
        // Best move one paisa short of +5 %: a 5-point drop does not count.
        assert_eq!(run(&peak_drawdown_only(), long(1), &[10_499, 9_999]), None);
        assert_eq!(run(&peak_drawdown_only(), short(1), &[9_501, 10_001]), None);
    }

    #[test]
    fn ratchet_stop_fires_at_exactly_the_stop() {
        assert_eq!(
            run(&ratchet_only(), long(1), &[12_500, 11_000]),
            Some((1, ExitReason::RatchetStop))
        );
        assert_eq!(
            run(&ratchet_only(), short(1), &[7_500, 9_000]),
            Some((1, ExitReason::RatchetStop))
        );
    }

    #[test]
    fn ratchet_stop_holds_one_paisa_before() {
        assert_eq!(run(&ratchet_only(), long(1), &[12_500, 11_001]), None);
        assert_eq!(run(&ratchet_only(), short(1), &[7_500, 8_999]), None);
    }

    #[test]
    fn ratchet_example_of_the_spec_step_by_step() {
        let params = ratchet_only();
        let terms = long(75);
        let mut s = RiskState::new(terms.entry);
        let steps = [
            (11_200, Some(9_500), None),
            (12_000, Some(10_000), None),
            (13_000, Some(11_000), None),
            (11_200, Some(11_000), None),
            (11_000, Some(11_000), Some(ExitReason::RatchetStop)),
        ];
        for (ltp, stop, reason) in steps {
            let fired = on_tick(&params, &terms, &mut s, Paise(ltp));
            assert_eq!(s.ratchet_stop, stop.map(Paise), "stop after {ltp}");
            assert_eq!(fired, reason, "reason at {ltp}");
        }
        assert_eq!(s.best_price, Paise(13_000));
    }

    #[test]
    fn ratchet_never_loosens_on_a_pullback() {
        let params = ratchet_only();
        for terms in [long(10), short(10)] {
            let mut s = RiskState::new(terms.entry);
            let mut previous: Option<Paise> = None;
            let path: &[i64] = match terms.side {
                Side::Long => &[11_000, 13_000, 11_200, 10_500, 14_500, 12_100],
                Side::Short => &[9_000, 7_000, 8_800, 9_500, 5_500, 7_900],
            };
            for &p in path {
                update(&params, &terms, &mut s, Paise(p));
                if let (Some(prev), Some(now)) = (previous, s.ratchet_stop) {
                    match terms.side {
                        Side::Long => assert!(now >= prev, "{prev} → {now}"),
                        Side::Short => assert!(now <= prev, "{prev} → {now}"),
                    }
                }
                assert!(previous.is_none() || s.ratchet_stop.is_some());
                previous = s.ratchet_stop;
            }
        }
    }

    #[test]
    fn plus_sixteen_then_straight_to_99_50_exits_ratchet_stop_not_peak_drawdown() {
        let params = RiskParams::default();
        assert_eq!(run(&params, long(75), &[11_600, 9_950]), Some((1, ExitReason::RatchetStop)));
        // Peak drawdown would also fire on that tick; rule 2 comes first.
        let mut s = RiskState::new(Paise(E));
        on_tick(&params, &long(75), &mut s, Paise(11_600));
        update(&params, &long(75), &mut s, Paise(9_950));
        // Without the ratchet, trailing (rule 4) would have been the reason.
        let no_ratchet = RiskParams { ratchet: Vec::new(), ..RiskParams::default() };
        let s = RiskState { ratchet_stop: None, ..s };
        assert_eq!(
            evaluate(&no_ratchet, &long(75), &s, Paise(9_950)),
            Some(ExitReason::TrailingStop)
        );
        let pd_only = peak_drawdown_only();
        assert_eq!(evaluate(&pd_only, &long(75), &s, Paise(9_950)), Some(ExitReason::PeakDrawdown));
    }

    #[test]
    fn precedence_is_rule_order_when_several_fire() {
        let params = RiskParams::default();
        // Best +16 % (ratchet at ₹100.00, trailing and peak drawdown armed), then ₹90.00:
        // stop loss, ratchet, trailing and peak drawdown all fire; stop loss wins.
        assert_eq!(run(&params, long(75), &[11_600, 9_000]), Some((1, ExitReason::StopLoss)));
        assert_eq!(run(&params, short(75), &[8_400, 11_000]), Some((1, ExitReason::StopLoss)));
        // Ratchet before take profit: a tier at +10 % with its stop at +25 % puts the stop above
        // a +20 % tick, which then hits both; rule 2 wins.
        let p = RiskParams {
            ratchet: vec![RatchetTier::new(Bp(1_000), Bp(2_500))],
            take_profit: Bp(2_000),
            ..RiskParams::all_off()
        };
        assert_eq!(run(&p, long(1), &[12_000]), Some((0, ExitReason::RatchetStop)));
        assert_eq!(run(&p, short(1), &[8_000]), Some((0, ExitReason::RatchetStop)));
        // Take profit before trailing and peak drawdown: on a tick path take profit fires at the
        // best price first, so the state is given directly (e.g. restored after a restart).
        let p = RiskParams { take_profit: Bp(2_000), ..RiskParams::default() };
        let s =
            RiskState { best_price: Paise(13_000), hwm_pnl: Paise(3_000_000), ratchet_stop: None };
        assert_eq!(evaluate(&p, &long(1_000), &s, Paise(12_000)), Some(ExitReason::TakeProfit));
        // Trailing before peak drawdown.
        let p =
            RiskParams { trail_drop: Bp(300), trail_activation: Paise(0), ..peak_drawdown_only() };
        assert_eq!(run(&p, long(1), &[11_000, 10_500]), Some((1, ExitReason::TrailingStop)));
    }

    #[test]
    fn rules_are_off_at_zero() {
        let off = RiskParams::all_off();
        for terms in [long(75), short(75)] {
            assert_eq!(run(&off, terms, &[10_000, 20_000, 1, 15_000, 5, 10_000]), None);
        }
        // A single rule off while the rest stay on: no stop loss at −50 % without rule 1
        // (no ratchet tier reached, nothing else fires on a straight fall).
        let p = RiskParams { stop_loss: Bp::ZERO, ..RiskParams::default() };
        assert_eq!(run(&p, long(75), &[5_000]), None);
        let p = RiskParams { take_profit: Bp::ZERO, ratchet: Vec::new(), ..RiskParams::default() };
        assert_eq!(run(&p, long(75), &[50_000]), None);
    }

    #[test]
    fn best_price_and_high_water_mark_follow_the_favourable_side() {
        let params = RiskParams::all_off();
        let mut s = RiskState::new(Paise(E));
        for p in [10_500, 9_000, 10_200] {
            update(&params, &short(2), &mut s, Paise(p));
        }
        assert_eq!(s.best_price, Paise(9_000));
        assert_eq!(s.hwm_pnl, Paise(2_000));
        let mut s = RiskState::new(Paise(E));
        update(&params, &long(2), &mut s, Paise(9_000));
        assert_eq!((s.best_price, s.hwm_pnl), (Paise(E), Paise(0)));
    }

    #[test]
    fn absurd_prices_and_quantities_saturate_instead_of_wrapping() {
        // ₹1e9 (and the largest price a feed value can become) times huge quantities: the
        // rules decide without overflow, and the PnL saturates at the i64 bounds.
        let huge = Qty(i64::MAX / 2);
        for price in [100_000_000_000, i64::MAX / 2, i64::MAX] {
            let mut state = RiskState::new(Paise(E));
            let reason = on_tick(&RiskParams::default(), &long(huge.0), &mut state, Paise(price));
            assert_eq!(reason, Some(ExitReason::TakeProfit), "long at {price}");
            assert_eq!(state.hwm_pnl, Paise(i64::MAX), "long at {price}");
            let mut state = RiskState::new(Paise(E));
            let reason = on_tick(&RiskParams::default(), &short(huge.0), &mut state, Paise(price));
            assert_eq!(reason, Some(ExitReason::StopLoss), "short at {price}");
            assert_eq!(short(huge.0).pnl_at(Paise(price)), Paise(i64::MIN));
        }
        assert_eq!(long(75).move_at(Paise(i64::MIN)), i64::MIN);
        assert_eq!(long(1).pnl_at(Paise(100_000_000_000)), Paise(100_000_000_000 - E));
    }
}
