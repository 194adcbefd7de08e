//! Money and ratios as exact integers.
//!
//! Prices and amounts are integer paise (`Paise`), ratios are basis points (`Bp`, 1 % = 100 bp),
//! quantities are units (`Qty`). Decimal text is parsed exactly (never through a float), and the
//! only float that ever becomes money is the feed's `f32` price, converted once by
//! [`Paise::from_rupees_f32`] with half-away-from-zero rounding.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};

use serde::{Deserialize, Serialize};

/// Why a decimal text could not become money or a ratio.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{text:?} has more than {max} decimals")]
    TooPrecise { text: String, max: u32 },
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("price {0} is not finite")]
    NotFinite(f64),
    #[error("price {0} is negative")]
    Negative(f64),
}

/// An amount or price in integer paise (₹1 = 100 paise).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Paise(pub i64);

impl Paise {
    pub const ZERO: Paise = Paise(0);

    /// Converts a feed price (rupees as IEEE binary32) to paise: `round(price * 100)`, half away
    /// from zero, computed in f64 so that 123.45f32 (really 123.4499969…) becomes 12345.
    /// Refuses NaN, infinities and negative prices.
    pub fn from_rupees_f32(price: f32) -> Result<Paise, MoneyError> {
        Self::from_rupees_f64(price as f64)
    }

    /// As [`Paise::from_rupees_f32`] for a price already widened to f64.
    pub fn from_rupees_f64(price: f64) -> Result<Paise, MoneyError> {
        if !price.is_finite() {
            return Err(MoneyError::NotFinite(price));
        }
        if price < 0.0 {
            return Err(MoneyError::Negative(price));
        }
        let scaled = (price * 100.0).round();
        if scaled > i64::MAX as f64 / 2.0 {
            return Err(MoneyError::OutOfRange(price.to_string()));
        }
        Ok(Paise(scaled as i64))
    }

    /// Parses decimal rupees (`"123.45"`, `"-5"`, `"0.5"`) exactly. More than two decimals is an
    /// error rather than a silent rounding.
    pub fn parse_rupees(text: &str) -> Result<Paise, MoneyError> {
        parse_scaled(text, 2).map(Paise)
    }

    /// The price as rupees for a broker request or a display; never used for a decision.
    pub fn as_rupees_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// Rupees with exactly two decimals: `12345` → `"123.45"`, `-50` → `"-0.50"`.
    pub fn to_rupees_string(self) -> String {
        self.to_string()
    }

    pub fn abs(self) -> Paise {
        Paise(self.0.abs())
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Paise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

// Paise arithmetic saturates instead of wrapping: a price comes from outside (the feed, a
// broker) and must never turn a huge gain into a loss or panic the engine. Real amounts are
// many orders of magnitude below the bounds.

impl Paise {
    /// The paise nearest to an `i128` amount (clamped to the `i64` range).
    pub fn saturating_from(v: i128) -> Paise {
        Paise(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

impl Add for Paise {
    type Output = Paise;
    fn add(self, rhs: Paise) -> Paise {
        Paise(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Paise {
    fn add_assign(&mut self, rhs: Paise) {
        *self = *self + rhs;
    }
}

impl Sub for Paise {
    type Output = Paise;
    fn sub(self, rhs: Paise) -> Paise {
        Paise(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for Paise {
    fn sub_assign(&mut self, rhs: Paise) {
        *self = *self - rhs;
    }
}

impl Neg for Paise {
    type Output = Paise;
    fn neg(self) -> Paise {
        Paise(self.0.saturating_neg())
    }
}

impl Mul<Qty> for Paise {
    type Output = Paise;
    fn mul(self, rhs: Qty) -> Paise {
        Paise(self.0.saturating_mul(rhs.0))
    }
}

impl std::iter::Sum for Paise {
    fn sum<I: Iterator<Item = Paise>>(iter: I) -> Paise {
        iter.fold(Paise::ZERO, |a, b| a + b)
    }
}

/// Basis points: 1 % = 100 bp. Risk percentages in config have at most two decimals, so they
/// are exact in basis points.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bp(pub i64);

impl Bp {
    pub const ZERO: Bp = Bp(0);

    /// Parses a percentage with at most two decimals (`"10"`, `"2.5"`, `"0.03"`, `"-5"`) into
    /// basis points.
    pub fn parse_pct(text: &str) -> Result<Bp, MoneyError> {
        parse_scaled(text, 2).map(Bp)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Bp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shown as the percentage it came from.
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        if abs.is_multiple_of(100) {
            write!(f, "{sign}{}%", abs / 100)
        } else {
            write!(f, "{sign}{}.{:02}%", abs / 100, abs % 100)
        }
    }
}

/// A quantity in units (lots × lot size). Always positive for a position; the side says long or
/// short.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Qty(pub i64);

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a decimal text into an integer scaled by 10^`places`, exactly. Accepts an optional sign,
/// digits, and an optional fraction of at most `places` digits. Trailing zeros beyond `places` are
/// tolerated (`"12.500"` with 2 places is 1250) because they carry no precision.
pub fn parse_scaled(text: &str, places: u32) -> Result<i64, MoneyError> {
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        || (body.contains('.') && frac_part.is_empty() && int_part.is_empty())
    {
        return Err(MoneyError::NotANumber(text.to_string()));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > places as usize {
        return Err(MoneyError::TooPrecise { text: text.to_string(), max: places });
    }
    let scale = 10i64.pow(places);
    let int_val: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| MoneyError::OutOfRange(text.to_string()))?
    };
    let mut frac_val: i64 = 0;
    for (i, b) in frac_trimmed.bytes().enumerate() {
        frac_val += i64::from(b - b'0') * 10i64.pow(places - 1 - i as u32);
    }
    let v = int_val
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_val))
        .ok_or_else(|| MoneyError::OutOfRange(text.to_string()))?;
    Ok(if neg { -v } else { v })
}

/// `num / den` rounded half away from zero, in integers. `den` must be positive.
/// The exact value of `quantity` traded at `price` (paise × units = paise); `None` on overflow.
pub fn trade_value(price: Paise, quantity: Qty) -> Option<Paise> {
    price.0.checked_mul(quantity.0).map(Paise)
}

/// The average price of trades worth `value` for `quantity`, rounded half away from zero to
/// the paisa (for display and the rules; PnL uses the value); `None` for no quantity.
pub fn average_price(value: Paise, quantity: Qty) -> Option<Paise> {
    if quantity.0 <= 0 {
        return None;
    }
    Some(Paise(div_round_half_away(i128::from(value.0), i128::from(quantity.0)) as i64))
}

/// Sums the values of trades `(price, quantity)`: total quantity and exact value, `None` on
/// overflow or a non-positive quantity.
pub fn sum_trades(trades: impl IntoIterator<Item = (Paise, Qty)>) -> Option<(Qty, Paise)> {
    let (mut q, mut v) = (0i64, 0i64);
    for (price, quantity) in trades {
        if quantity.0 <= 0 {
            return None;
        }
        q = q.checked_add(quantity.0)?;
        v = v.checked_add(trade_value(price, quantity)?.0)?;
    }
    Some((Qty(q), Paise(v)))
}

pub fn div_round_half_away(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den { q + num.signum() } else { q }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_values_are_exact_and_checked() {
        // 25 at 100.00 and 50 at 100.01: 7,500.50 exactly, an average of 100.00666… → 100.01.
        let (q, v) = sum_trades([(Paise(10_000), Qty(25)), (Paise(10_001), Qty(50))]).unwrap();
        assert_eq!((q, v), (Qty(75), Paise(750_050)));
        assert_eq!(average_price(v, q), Some(Paise(10_001)));
        // The rounded average times the quantity is 25 paise more than the trades.
        assert_eq!(Paise(10_001) * q - v, Paise(25));
        assert_eq!(average_price(Paise(-5), Qty(2)), Some(Paise(-3)), "half away from zero");
        assert_eq!(average_price(v, Qty(0)), None);
        assert_eq!(trade_value(Paise(i64::MAX), Qty(2)), None);
        assert_eq!(sum_trades([(Paise(i64::MAX), Qty(1)), (Paise(1), Qty(1))]), None);
        assert_eq!(sum_trades([(Paise(1), Qty(0))]), None);
        assert_eq!(sum_trades([]), Some((Qty(0), Paise(0))));
    }

    #[test]
    fn feed_price_rounds_half_away_from_zero() {
        assert_eq!(Paise::from_rupees_f32(123.45).unwrap(), Paise(12345));
        assert_eq!(Paise::from_rupees_f32(25910.05).unwrap(), Paise(2591005));
        assert_eq!(Paise::from_rupees_f64(0.005).unwrap(), Paise(1));
        assert_eq!(Paise::from_rupees_f32(0.0).unwrap(), Paise(0));
    }

    #[test]
    fn feed_price_refuses_nan_infinite_and_negative() {
        assert!(matches!(Paise::from_rupees_f32(f32::NAN), Err(MoneyError::NotFinite(_))));
        assert!(matches!(Paise::from_rupees_f32(f32::INFINITY), Err(MoneyError::NotFinite(_))));
        assert!(matches!(Paise::from_rupees_f32(-1.0), Err(MoneyError::Negative(_))));
    }

    #[test]
    fn rupee_text_parses_exactly() {
        let cases = [
            ("123.45", 12345),
            ("0.5", 50),
            ("-5", -500),
            ("100", 10000),
            ("12.500", 1250),
            (".05", 5),
        ];
        for (text, paise) in cases {
            assert_eq!(Paise::parse_rupees(text), Ok(Paise(paise)), "{text}");
        }
        assert!(matches!(Paise::parse_rupees("12.345"), Err(MoneyError::TooPrecise { .. })));
        for bad in ["", "abc", "1.2.3", "-", ".", "1e5", "12,5"] {
            assert!(matches!(Paise::parse_rupees(bad), Err(MoneyError::NotANumber(_))), "{bad}");
        }
    }

    #[test]
    fn percentages_become_basis_points() {
        assert_eq!(Bp::parse_pct("10"), Ok(Bp(1000)));
        assert_eq!(Bp::parse_pct("2.5"), Ok(Bp(250)));
        assert_eq!(Bp::parse_pct("0.03"), Ok(Bp(3)));
        assert_eq!(Bp::parse_pct("-5"), Ok(Bp(-500)));
        assert!(matches!(Bp::parse_pct("12.345"), Err(MoneyError::TooPrecise { .. })));
    }

    #[test]
    fn paise_display_has_two_decimals() {
        assert_eq!(Paise(12345).to_string(), "123.45");
        assert_eq!(Paise(-50).to_string(), "-0.50");
        assert_eq!(Paise(0).to_string(), "0.00");
        assert_eq!(Paise(143672).to_string(), "1436.72");
    }

    #[test]
    fn integer_division_rounds_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 2), 3);
        assert_eq!(div_round_half_away(-5, 2), -3);
        assert_eq!(div_round_half_away(4, 3), 1);
        assert_eq!(div_round_half_away(-4, 3), -1);
        assert_eq!(div_round_half_away(0, 7), 0);
    }

    #[test]
    fn paise_arithmetic_saturates() {
        let max = Paise(i64::MAX);
        assert_eq!(max + Paise(1), max);
        assert_eq!(Paise(i64::MIN) - Paise(1), Paise(i64::MIN));
        assert_eq!(-Paise(i64::MIN), max);
        assert_eq!(Paise(100_000_000_000) * Qty(1_000_000_000), max);
        assert_eq!(Paise(100_000_000_000) * Qty(-1_000_000_000), Paise(i64::MIN));
        assert_eq!([max, max, Paise(-5)].into_iter().sum::<Paise>(), max - Paise(5));
        let mut p = max;
        p += Paise(7);
        p -= Paise(i64::MAX);
        assert_eq!(p, Paise(0));
        assert_eq!(Paise::saturating_from(i128::MAX), max);
        assert_eq!(Paise(12_345) * Qty(75), Paise(925_875));
    }
}
