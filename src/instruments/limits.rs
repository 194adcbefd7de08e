//! The exchange's limits on one order (spec dhan-v2 §8.2), as pure checks and roundings.

use chrono::{NaiveDate, NaiveTime};

use super::Instrument;
use crate::domain::{Paise, Qty, Txn};

/// NSE's close, the moment a contract without an explicit expiry time stops trading.
pub const DEFAULT_EXPIRY_TIME: (u32, u32) = (15, 30);

/// Why an order breaks an exchange limit (or the engine's own per-order maximum).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("quantity {qty} is not a positive multiple of the lot size {lot}")]
    NotALotMultiple { qty: Qty, lot: Qty },
    #[error("the contract expires {expiry}{}, before the session's square-off",
        .time.map(|t| format!(" {t}")).unwrap_or_default())]
    ContractExpired { expiry: NaiveDate, time: Option<NaiveTime> },
    #[error("{lots} lots exceeds limits.max_lots_per_order = {max}")]
    OverMaxLots { lots: i64, max: i64 },
    #[error("order value ₹{value} exceeds limits.max_order_value_rupees = ₹{max}")]
    OverMaxValue { value: Paise, max: Paise },
    #[error("quantity {qty} exceeds the exchange's freeze quantity {freeze} for one order")]
    OverFreeze { qty: Qty, freeze: Qty },
    #[error("price {price} is not a multiple of the tick {tick}")]
    OffTick { price: Paise, tick: Paise },
    #[error("price {price} is outside the day's band {lower}..{upper}")]
    OutsideBand { price: Paise, lower: Paise, upper: Paise },
    #[error(
        "a limit price needs the instrument's day band, which the instrument master does not give"
    )]
    BandUnknown,
    #[error(
        "limit price {price} is not a price for this contract (its day band is {lower}..{upper}; a limit price must be positive and at most twice the band's upper edge)"
    )]
    AbsurdPrice { price: Paise, lower: Paise, upper: Paise },
}

impl LimitError {
    /// The stable code the API answers with.
    pub const fn code(&self) -> &'static str {
        match self {
            LimitError::NotALotMultiple { .. } => "not_a_lot_multiple",
            LimitError::ContractExpired { .. } => "contract_expired",
            LimitError::OverMaxLots { .. }
            | LimitError::OverMaxValue { .. }
            | LimitError::OverFreeze { .. } => "over_max_quantity",
            LimitError::OffTick { .. } => "price_off_tick",
            LimitError::OutsideBand { .. } => "price_outside_band",
            LimitError::BandUnknown => "price_band_unknown",
            LimitError::AbsurdPrice { .. } => "price_absurd",
        }
    }
}

/// A quantity must be a positive multiple of the lot.
pub fn check_lot(inst: &Instrument, qty: Qty) -> Result<(), LimitError> {
    let lot = inst.lot.0.max(1);
    if qty.0 <= 0 || qty.0 % lot != 0 {
        return Err(LimitError::NotALotMultiple { qty, lot: inst.lot });
    }
    Ok(())
}

/// A contract that expired before `today`, or expires today before the session's square-off,
/// cannot be entered.
pub fn check_not_expired(
    inst: &Instrument,
    today: NaiveDate,
    square_off: NaiveTime,
) -> Result<(), LimitError> {
    let Some(expiry) = inst.expiry else { return Ok(()) };
    let close = inst.expiry_time.unwrap_or_else(|| {
        NaiveTime::from_hms_opt(DEFAULT_EXPIRY_TIME.0, DEFAULT_EXPIRY_TIME.1, 0)
            .unwrap_or(NaiveTime::MIN)
    });
    if expiry < today || (expiry == today && close < square_off) {
        return Err(LimitError::ContractExpired { expiry, time: inst.expiry_time });
    }
    Ok(())
}

/// The engine's own per-order maxima; `0` turns a limit off. `price` is the reference price
/// (the last traded price for a market order).
pub fn check_max(
    inst: &Instrument,
    qty: Qty,
    price: Paise,
    max_lots: i64,
    max_value: Paise,
) -> Result<(), LimitError> {
    let lots = qty.0 / inst.lot.0.max(1);
    if max_lots > 0 && lots > max_lots {
        return Err(LimitError::OverMaxLots { lots, max: max_lots });
    }
    if max_value.0 > 0 {
        let value = Paise::saturating_from(i128::from(price.0) * i128::from(qty.0));
        if value > max_value {
            return Err(LimitError::OverMaxValue { value, max: max_value });
        }
    }
    Ok(())
}

/// Every exchange rule (and the engine's per-order maxima) an entry must pass, in this order: lot
/// multiple, not expired, maxima. The freeze quantity is not one of them: the live broker sends
/// an order above it as child orders (`exec::slicing`). `reference` is the price the value
/// check uses (none: the value check waits for a price, which the entry needs anyway).
pub fn check_entry(
    inst: &Instrument,
    qty: Qty,
    reference: Option<Paise>,
    today: NaiveDate,
    square_off: NaiveTime,
    max_lots: i64,
    max_value: Paise,
) -> Result<(), LimitError> {
    check_lot(inst, qty)?;
    check_not_expired(inst, today, square_off)?;
    check_max(inst, qty, reference.unwrap_or(Paise(0)), max_lots, max_value)
}

/// A single order may carry at most the freeze quantity.
pub fn check_freeze(inst: &Instrument, qty: Qty) -> Result<(), LimitError> {
    match inst.freeze {
        Some(freeze) if qty > freeze => Err(LimitError::OverFreeze { qty, freeze }),
        _ => Ok(()),
    }
}

/// A limit or trigger price must sit on the tick and inside the band.
pub fn check_price(inst: &Instrument, price: Paise) -> Result<(), LimitError> {
    let tick = inst.tick.0.max(1);
    if price.0 % tick != 0 {
        return Err(LimitError::OffTick { price, tick: inst.tick });
    }
    if let Some((lower, upper)) = inst.band
        && (price < lower || price > upper)
    {
        return Err(LimitError::OutsideBand { price, lower, upper });
    }
    Ok(())
}

/// Rounds to a multiple of `tick` toward the passive side: down for a buy, up for a sell.
pub fn round_to_tick(price: Paise, tick: Paise, txn: Txn) -> Paise {
    let t = tick.0.max(1);
    let floor = price.0.div_euclid(t).saturating_mul(t);
    match txn {
        Txn::Buy => Paise(floor),
        Txn::Sell if floor == price.0 => Paise(floor),
        Txn::Sell => Paise(floor.saturating_add(t)),
    }
}

/// The price the exchange will take: on the tick (passive side), then inside the band (the band's
/// edges themselves rounded inward onto the tick).
pub fn exchange_price(inst: &Instrument, price: Paise, txn: Txn) -> Paise {
    let p = round_to_tick(price, inst.tick, txn);
    match inst.band {
        Some((lower, upper)) => {
            let lo = round_to_tick(lower, inst.tick, Txn::Sell);
            let hi = round_to_tick(upper, inst.tick, Txn::Buy);
            if lo > hi { p } else { p.clamp(lo, hi) }
        }
        None => p,
    }
}

/// The limit price an order asking for `price` goes out with: on the instrument's tick toward
/// the passive side (a buy down, a sell up), then clamped into the day's band (its edges rounded
/// inward onto the tick), as [`exchange_price`] does. Refused when the master gives no band
/// (nothing to clamp into: `price_band_unknown`) and when the price is not positive or more than
/// twice the band's upper edge (`price_absurd`: a typo, such as a strike for a premium, rather
/// than a limit a trader means to have clamped).
pub fn limit_price(inst: &Instrument, price: Paise, txn: Txn) -> Result<Paise, LimitError> {
    let Some((lower, upper)) = inst.band else { return Err(LimitError::BandUnknown) };
    if price.0 <= 0 || i128::from(price.0) > 2 * i128::from(upper.0) {
        return Err(LimitError::AbsurdPrice { price, lower, upper });
    }
    Ok(exchange_price(inst, price, txn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstrumentKey;
    use crate::domain::Segment;

    fn opt() -> Instrument {
        Instrument {
            key: InstrumentKey::new(Segment::NseFno, 52175),
            kind: "OPTIDX".into(),
            underlying: "NIFTY".into(),
            symbol: "NIFTY-Dec2026-24500-CE".into(),
            display_name: "NIFTY 30 DEC 24500 CALL".into(),
            lot: Qty(75),
            expiry: NaiveDate::from_ymd_opt(2026, 12, 30),
            expiry_time: None,
            strike: Some(Paise(2_450_000)),
            option: Some(super::super::OptionKind::Call),
            tick: Paise(5),
            band: Some((Paise(5), Paise(152_030))),
            freeze: Some(Qty(1800)),
        }
    }

    #[test]
    fn lots() {
        let i = opt();
        assert!(check_lot(&i, Qty(75)).is_ok());
        assert!(check_lot(&i, Qty(150)).is_ok());
        for q in [0, -75, 70, 76] {
            assert_eq!(check_lot(&i, Qty(q)).unwrap_err().code(), "not_a_lot_multiple");
        }
    }

    #[test]
    fn expiry_against_today_and_square_off() {
        let i = opt();
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(check_not_expired(&i, d(12, 29), t(15, 20)).is_ok());
        assert!(check_not_expired(&i, d(12, 30), t(15, 20)).is_ok());
        assert!(check_not_expired(&i, d(12, 30), t(15, 45)).is_err());
        assert_eq!(
            check_not_expired(&i, d(12, 31), t(15, 20)).unwrap_err().code(),
            "contract_expired"
        );
    }

    #[test]
    fn maxima() {
        let i = opt();
        assert!(check_max(&i, Qty(750), Paise(10_000), 10, Paise(0)).is_ok());
        assert_eq!(
            check_max(&i, Qty(825), Paise(10_000), 10, Paise(0)).unwrap_err().code(),
            "over_max_quantity"
        );
        // 150 × ₹100 = ₹15,000 > ₹10,000.
        assert!(check_max(&i, Qty(150), Paise(10_000), 0, Paise(1_000_000)).is_err());
        assert!(check_max(&i, Qty(75), Paise(10_000), 0, Paise(1_000_000)).is_ok());
    }

    #[test]
    fn an_entry_above_the_freeze_quantity_passes_as_it_is_sliced() {
        let i = opt();
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let t = NaiveTime::from_hms_opt(15, 20, 0).unwrap();
        assert!(check_entry(&i, Qty(3675), Some(Paise(10_000)), d, t, 0, Paise(0)).is_ok());
        assert!(check_entry(&i, Qty(3670), Some(Paise(10_000)), d, t, 0, Paise(0)).is_err());
    }

    /// (price asked, txn) → the limit price sent, or the refusal's code.
    type LimitCase = (i64, Txn, Result<i64, &'static str>);

    #[test]
    fn limit_prices_round_toward_the_passive_side_and_clamp_into_the_band() {
        // Tick ₹0.05, band ₹0.05 ..= ₹1520.30.
        let i = opt();
        let cases: &[LimitCase] = &[
            (12_345, Txn::Buy, Ok(12_345)),
            (12_345, Txn::Sell, Ok(12_345)),
            (12_347, Txn::Buy, Ok(12_345)),
            (12_347, Txn::Sell, Ok(12_350)),
            (12_341, Txn::Buy, Ok(12_340)),
            (12_341, Txn::Sell, Ok(12_345)),
            // Below the band's lower edge: up to it.
            (3, Txn::Buy, Ok(5)),
            (1, Txn::Sell, Ok(5)),
            // Above the upper edge, still plausible: down to it.
            (160_000, Txn::Buy, Ok(152_030)),
            (152_032, Txn::Sell, Ok(152_030)),
            (304_060, Txn::Buy, Ok(152_030)),
            // Absurd: not positive, or beyond twice the upper edge.
            (0, Txn::Buy, Err("price_absurd")),
            (-5, Txn::Sell, Err("price_absurd")),
            (304_061, Txn::Buy, Err("price_absurd")),
            (2_450_000, Txn::Sell, Err("price_absurd")),
        ];
        for (price, txn, want) in cases {
            let got = limit_price(&i, Paise(*price), *txn).map(|p| p.0).map_err(|e| e.code());
            assert_eq!(&got, want, "{price} {txn}");
            if let Ok(p) = got {
                assert!(check_price(&i, Paise(p)).is_ok(), "{p} is on the tick, in the band");
            }
        }
        let no_band = Instrument { band: None, ..opt() };
        assert_eq!(
            limit_price(&no_band, Paise(12_345), Txn::Buy).unwrap_err().code(),
            "price_band_unknown"
        );
    }

    #[test]
    fn prices_round_passively_and_clamp() {
        let i = opt();
        assert_eq!(round_to_tick(Paise(10_003), Paise(5), Txn::Buy), Paise(10_000));
        assert_eq!(round_to_tick(Paise(10_003), Paise(5), Txn::Sell), Paise(10_005));
        assert_eq!(round_to_tick(Paise(10_005), Paise(5), Txn::Sell), Paise(10_005));
        assert_eq!(exchange_price(&i, Paise(200_001), Txn::Sell), Paise(152_030));
        assert_eq!(exchange_price(&i, Paise(1), Txn::Buy), Paise(5));
        assert!(check_price(&i, Paise(10_003)).is_err());
        assert!(check_price(&i, Paise(200_000)).is_err());
        assert!(check_price(&i, Paise(10_005)).is_ok());
        assert!(check_freeze(&i, Qty(1875)).is_err());
        assert!(check_freeze(&i, Qty(1800)).is_ok());
    }
}
