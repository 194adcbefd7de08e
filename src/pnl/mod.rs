//! Profit and loss: charges per leg (`charges`) and the gross/net PnL of a trade (risk spec §6).
//!
//! Pure arithmetic on paise. The exit core uses it to close trades and to mark open positions
//! to market; the paper broker uses the charges for its wallet; replay writes what it returns.

pub mod charges;

pub use charges::{ChargeSchedule, LegCharges, Rate};

use crate::domain::{Paise, Qty, Side, Txn};

/// Gross PnL of `quantity` entered at `entry` and valued (or exited) at `price`:
/// `(price − entry) × Q` for a long, `(entry − price) × Q` for a short.
pub fn gross_pnl(side: Side, entry: Paise, price: Paise, quantity: Qty) -> Paise {
    let mv = i128::from(side.sign()) * (i128::from(price.0) - i128::from(entry.0));
    Paise::saturating_from(mv * i128::from(quantity.0))
}

/// Gross PnL from exit turnover (Σ price × quantity of the exit fills), exact when a position
/// was closed by several fills at different prices.
pub fn gross_pnl_on_turnover(
    side: Side,
    entry: Paise,
    quantity: Qty,
    exit_turnover: Paise,
) -> Paise {
    let cost = i128::from(entry.0) * i128::from(quantity.0);
    Paise::saturating_from(i128::from(side.sign()) * (i128::from(exit_turnover.0) - cost))
}

/// Gross PnL from exact values: what the entry's fills were worth (`entry_value`, Σ price ×
/// quantity) against what the exits' fills were worth (or the position is worth now):
/// `exit − entry` for a long, `entry − exit` for a short. Exact to the paisa whatever the
/// number of fills and prices on either side.
pub fn gross_on_values(side: Side, entry_value: Paise, exit_value: Paise) -> Paise {
    let d = i128::from(exit_value.0) - i128::from(entry_value.0);
    Paise::saturating_from(i128::from(side.sign()) * d)
}

/// The PnL of a closed trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TradePnl {
    pub gross: Paise,
    pub entry_charges: Paise,
    pub exit_charges: Paise,
    pub net: Paise,
}

impl TradePnl {
    pub fn charges(&self) -> Paise {
        self.entry_charges + self.exit_charges
    }
}

/// PnL of a round trip filled in one order each way: gross, each leg's charges, net.
pub fn round_trip(
    schedule: &ChargeSchedule,
    side: Side,
    quantity: Qty,
    entry: Paise,
    exit: Paise,
) -> TradePnl {
    let gross = gross_pnl(side, entry, exit, quantity);
    let entry_charges = schedule.leg(Txn::opening(side), entry, quantity).total();
    let exit_charges = schedule.leg(Txn::closing(side), exit, quantity).total();
    TradePnl { gross, entry_charges, exit_charges, net: gross - entry_charges - exit_charges }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_long_75_from_100_to_120_nets_1436_72() {
        let pnl = round_trip(
            &ChargeSchedule::default(),
            Side::Long,
            Qty(75),
            Paise(10_000),
            Paise(12_000),
        );
        assert_eq!(pnl.gross, Paise(150_000));
        assert_eq!(pnl.entry_charges, Paise(2_695));
        assert_eq!(pnl.exit_charges, Paise(3_633));
        assert_eq!(pnl.charges(), Paise(6_328));
        assert_eq!(pnl.net, Paise(143_672));
    }

    #[test]
    fn short_example_sell_50_at_80_buy_back_at_72_50() {
        // Entry leg (sell, turnover ₹4,000.00): brokerage 20.00, STT 4.00, exchange 1.4012 → 1.40,
        // SEBI 0.40 p → 0.00, GST 18 % × 21.40 = 3.852 → 3.85; total 29.25.
        // Exit leg (buy, turnover ₹3,625.00): brokerage 20.00, exchange 1.2698375 → 1.27,
        // SEBI 0.3625 p → 0.00, stamp 0.10875 → 0.11, GST 18 % × 21.27 = 3.8286 → 3.83; total 25.21.
        // Gross (80.00 − 72.50) × 50 = 375.00; charges 54.46; net 320.54.
        let pnl = round_trip(
            &ChargeSchedule::default(),
            Side::Short,
            Qty(50),
            Paise(8_000),
            Paise(7_250),
        );
        assert_eq!(pnl.gross, Paise(37_500));
        assert_eq!(pnl.entry_charges, Paise(2_925));
        assert_eq!(pnl.exit_charges, Paise(2_521));
        assert_eq!(pnl.net, Paise(32_054));
    }

    #[test]
    fn losing_long_has_negative_gross_and_net_below_it() {
        let pnl = round_trip(
            &ChargeSchedule::default(),
            Side::Long,
            Qty(75),
            Paise(10_000),
            Paise(9_000),
        );
        assert_eq!(pnl.gross, Paise(-75_000));
        assert!(pnl.net < pnl.gross);
    }

    #[test]
    fn gross_on_turnover_matches_single_price_gross() {
        let a = gross_pnl(Side::Short, Paise(8_000), Paise(7_250), Qty(50));
        let b = gross_pnl_on_turnover(Side::Short, Paise(8_000), Qty(50), Paise(7_250 * 50));
        assert_eq!(a, b);
    }

    #[test]
    fn gross_on_values_is_exact_where_averages_are_not() {
        // 25 at 100.00 + 50 at 100.01 in, 50 at 88.00 + 25 at 88.01 out.
        let entry = Paise(25 * 10_000 + 50 * 10_001);
        let exit = Paise(50 * 8_800 + 25 * 8_801);
        assert_eq!(gross_on_values(Side::Long, entry, exit), Paise(-90_025));
        assert_eq!(gross_on_values(Side::Short, entry, exit), Paise(90_025));
        // The averages (100.01 and 88.00) book 0.50 more loss.
        assert_eq!(gross_pnl(Side::Long, Paise(10_001), Paise(8_800), Qty(75)), Paise(-90_075));
        assert_eq!(gross_on_values(Side::Long, Paise(i64::MAX), Paise(i64::MIN)), Paise(i64::MIN));
    }

    #[test]
    fn untrusted_prices_saturate_instead_of_wrapping() {
        let big = Paise(100_000_000_000); // ₹1e9
        let q = Qty(1_000_000_000);
        assert_eq!(gross_pnl(Side::Long, Paise(10_000), big, q), Paise(i64::MAX));
        assert_eq!(gross_pnl(Side::Short, Paise(10_000), big, q), Paise(i64::MIN));
        assert_eq!(
            gross_pnl(Side::Long, Paise(10_000), big, Qty(75)).0,
            (100_000_000_000 - 10_000) * 75
        );
        assert_eq!(gross_pnl_on_turnover(Side::Long, big, q, Paise(0)), Paise(i64::MIN));
        assert_eq!(gross_pnl_on_turnover(Side::Short, big, q, Paise(i64::MAX)), Paise(i64::MAX));
        let c = ChargeSchedule::default();
        let leg = c.leg(Txn::Sell, Paise(i64::MAX), Qty(i64::MAX));
        assert!(leg.total() >= Paise(0), "charges of an absurd leg stay positive: {leg:?}");
    }
}
