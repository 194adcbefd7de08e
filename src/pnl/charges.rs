//! Charges of one executed order (a leg) per the `[charges]` schedule (risk spec §6).
//!
//! Rates are exact decimals of a percent with up to six places, held as integer millionths of a
//! percent ([`Rate`]), so `0.03503 %` is `35_030` and a charge is `turnover × rate / 10^8`
//! rounded half away from zero to the paisa. Each component is rounded on its own; GST is taken
//! on the already-rounded brokerage, exchange charge and SEBI fee of the same leg. Used by the
//! PnL code, the exit core and the paper broker.

use std::fmt;

use crate::domain::money::{div_round_half_away, parse_scaled};
use crate::domain::{MoneyError, Paise, Qty, Txn};

/// Millionths of a percent: 1 % = 1_000_000, so an amount times a rate is divided by 10^8.
const RATE_DENOMINATOR: i128 = 100_000_000;

/// A charge rate as an exact integer count of millionths of a percent.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(pub i64);

impl Rate {
    pub const ZERO: Rate = Rate(0);
    /// Decimals a rate may have.
    pub const PLACES: u32 = 6;
    /// 100 %.
    pub const HUNDRED: Rate = Rate(100_000_000);

    /// Parses a percentage with at most six decimals: `"0.03503"` → `Rate(35_030)`.
    pub fn parse_pct(text: &str) -> Result<Rate, MoneyError> {
        let v = parse_scaled(text, 6)?;
        if v < 0 {
            return Err(MoneyError::OutOfRange(text.to_string()));
        }
        Ok(Rate(v))
    }

    /// `amount × rate`, rounded half away from zero to the paisa.
    pub fn of(self, amount: Paise) -> Paise {
        let v = div_round_half_away(i128::from(amount.0) * i128::from(self.0), RATE_DENOMINATOR);
        Paise::saturating_from(v)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1_000_000;
        let frac = self.0 % 1_000_000;
        if frac == 0 {
            return write!(f, "{whole}%");
        }
        let digits = format!("{frac:06}");
        write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
    }
}

/// The charge schedule (`[charges]`). Defaults: NSE index options on premium turnover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeSchedule {
    /// Flat brokerage per executed order, both legs.
    pub brokerage_per_order: Paise,
    /// Securities transaction tax, sell leg only.
    pub stt_sell: Rate,
    /// Exchange transaction charge, both legs.
    pub exchange: Rate,
    /// SEBI turnover fee, both legs.
    pub sebi: Rate,
    /// Stamp duty, buy leg only.
    pub stamp_buy: Rate,
    /// GST on brokerage + exchange charge + SEBI fee.
    pub gst: Rate,
}

impl Default for ChargeSchedule {
    fn default() -> ChargeSchedule {
        ChargeSchedule {
            brokerage_per_order: Paise(2_000),
            stt_sell: Rate(100_000),
            exchange: Rate(35_030),
            sebi: Rate(100),
            stamp_buy: Rate(3_000),
            gst: Rate(18_000_000),
        }
    }
}

/// The charges of one leg, component by component, each already rounded to the paisa.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCharges {
    pub brokerage: Paise,
    pub stt: Paise,
    pub exchange: Paise,
    pub sebi: Paise,
    pub stamp: Paise,
    pub gst: Paise,
}

impl LegCharges {
    pub fn total(&self) -> Paise {
        self.brokerage + self.stt + self.exchange + self.sebi + self.stamp + self.gst
    }
}

impl ChargeSchedule {
    /// Charges of one executed order of `quantity` at `price`.
    pub fn leg(&self, txn: Txn, price: Paise, quantity: Qty) -> LegCharges {
        self.leg_on_turnover(txn, price * quantity)
    }

    /// Charges of one executed order whose turnover (Σ price × quantity of its fills) is known.
    pub fn leg_on_turnover(&self, txn: Txn, turnover: Paise) -> LegCharges {
        self.leg_on_turnover_orders(txn, turnover, 1)
    }

    /// Charges of a leg that went to the exchange as `orders` executed orders (the children of
    /// an order sliced at the freeze quantity, `exec::slicing`): brokerage is per executed
    /// order, the turnover-based components are on the leg's whole turnover, GST on the sum
    /// of the rounded brokerage, exchange charge and SEBI fee. `orders` below 1 counts as 1.
    pub fn leg_on_turnover_orders(&self, txn: Txn, turnover: Paise, orders: u32) -> LegCharges {
        let brokerage = self.brokerage_per_order * Qty(i64::from(orders.max(1)));
        let stt = if txn == Txn::Sell { self.stt_sell.of(turnover) } else { Paise::ZERO };
        let exchange = self.exchange.of(turnover);
        let sebi = self.sebi.of(turnover);
        let stamp = if txn == Txn::Buy { self.stamp_buy.of(turnover) } else { Paise::ZERO };
        let gst = self.gst.of(brokerage + exchange + sebi);
        LegCharges { brokerage, stt, exchange, sebi, stamp, gst }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_exactly_to_six_places() {
        assert_eq!(Rate::parse_pct("0.03503"), Ok(Rate(35_030)));
        assert_eq!(Rate::parse_pct("0.1"), Ok(Rate(100_000)));
        assert_eq!(Rate::parse_pct("0.0001"), Ok(Rate(100)));
        assert_eq!(Rate::parse_pct("0.003"), Ok(Rate(3_000)));
        assert_eq!(Rate::parse_pct("18"), Ok(Rate(18_000_000)));
        assert_eq!(Rate::parse_pct("0.000001"), Ok(Rate(1)));
        assert!(matches!(Rate::parse_pct("0.0000001"), Err(MoneyError::TooPrecise { .. })));
        assert!(matches!(Rate::parse_pct("-0.1"), Err(MoneyError::OutOfRange(_))));
        assert!(matches!(Rate::parse_pct("abc"), Err(MoneyError::NotANumber(_))));
        assert_eq!(Rate(35_030).to_string(), "0.03503%");
        assert_eq!(Rate(18_000_000).to_string(), "18%");
    }

    #[test]
    fn spec_example_entry_leg_is_26_95() {
        let c = ChargeSchedule::default().leg(Txn::Buy, Paise(10_000), Qty(75));
        assert_eq!(c.brokerage, Paise(2_000));
        assert_eq!(c.stt, Paise(0));
        assert_eq!(c.exchange, Paise(263)); // 262.725 rounds up
        assert_eq!(c.sebi, Paise(1)); // 0.75 rounds up
        assert_eq!(c.stamp, Paise(23)); // 22.5 rounds half away from zero
        assert_eq!(c.gst, Paise(408)); // 18 % of 22.64 = 4.0752
        assert_eq!(c.total(), Paise(2_695));
    }

    #[test]
    fn spec_example_exit_leg_is_36_33() {
        let c = ChargeSchedule::default().leg(Txn::Sell, Paise(12_000), Qty(75));
        assert_eq!(c.brokerage, Paise(2_000));
        assert_eq!(c.stt, Paise(900));
        assert_eq!(c.exchange, Paise(315)); // 315.27
        assert_eq!(c.sebi, Paise(1)); // 0.9
        assert_eq!(c.stamp, Paise(0));
        assert_eq!(c.gst, Paise(417)); // 18 % of 23.16 = 4.1688
        assert_eq!(c.total(), Paise(3_633));
    }

    /// (txn, turnover, executed orders) → (brokerage, stt, exchange, sebi, stamp, gst, total).
    type LegCase = (Txn, i64, u32, [i64; 7]);

    #[test]
    fn a_sliced_leg_pays_brokerage_per_executed_order_and_the_rest_on_its_turnover() {
        let cases: &[LegCase] = &[
            // One order: the spec's entry leg.
            (Txn::Buy, 750_000, 1, [2_000, 0, 263, 1, 23, 408, 2_695]),
            // 0 counts as one order.
            (Txn::Buy, 750_000, 0, [2_000, 0, 263, 1, 23, 408, 2_695]),
            // 450 at ₹100.00 sent as three children of 150: brokerage 3 × ₹20, exchange
            // 0.03503 % of ₹45,000 = 15.7635, SEBI 0.045, stamp 1.35, GST 18 % of 75.81.
            (Txn::Buy, 4_500_000, 3, [6_000, 0, 1_576, 5, 135, 1_365, 9_081]),
            // Its exit at ₹89.00: STT 0.1 % of ₹40,050 = 40.05; exchange 14.029515;
            // SEBI 0.04005; GST 18 % of 74.07 = 13.3326.
            (Txn::Sell, 4_005_000, 3, [6_000, 4_005, 1_403, 4, 0, 1_333, 12_745]),
            // Two children executed of a leg: two brokerages.
            (Txn::Sell, 2_670_000, 2, [4_000, 2_670, 935, 3, 0, 889, 8_497]),
        ];
        let s = ChargeSchedule::default();
        for (txn, turnover, orders, want) in cases {
            let c = s.leg_on_turnover_orders(*txn, Paise(*turnover), *orders);
            let got =
                [c.brokerage, c.stt, c.exchange, c.sebi, c.stamp, c.gst, c.total()].map(|p| p.0);
            assert_eq!(&got, want, "{txn} {turnover} in {orders} orders");
        }
        // Three orders cost more than one by the two extra brokerages and their GST only.
        let one = s.leg_on_turnover(Txn::Buy, Paise(4_500_000)).total();
        let three = s.leg_on_turnover_orders(Txn::Buy, Paise(4_500_000), 3).total();
        assert_eq!(three - one, Paise(2 * 2_000 + 720));
    }

    #[test]
    fn small_leg_rounds_each_component_on_its_own() {
        // Buy 25 at ₹0.05: turnover ₹1.25. Exchange 0.0437875 p → 0, SEBI 0.000125 p → 0,
        // stamp 0.00375 p → 0, GST 18 % of ₹20.00 = 3.60.
        let c = ChargeSchedule::default().leg(Txn::Buy, Paise(5), Qty(25));
        assert_eq!(
            (c.exchange, c.sebi, c.stamp, c.gst),
            (Paise(0), Paise(0), Paise(0), Paise(360))
        );
        assert_eq!(c.total(), Paise(2_360));
    }
}
