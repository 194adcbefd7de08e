//! Tolerant decoding of Dhan's JSON values (spec dhan-v2 §3.2 and §4.1 quirks): numbers that
//! arrive as strings and strings that arrive as numbers, prices turned into exact paise once,
//! IST `YYYY-MM-DD HH:MM:SS` strings with their `0001-01-01` sentinels, and the endpoints that
//! answer an object, an array of one or an empty array. Used by the REST models and the
//! order-update parser; no I/O.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::{Paise, Qty, TimeOfDay, Timestamp};

/// Why a wire value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("{0:?} is not a whole number")]
    NotWhole(String),
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
}

/// Rupees written as decimal text (`"123.45"`, `"-5"`, `"1e-7"`, `"0.125"`) to paise, rounded
/// half away from zero on the decimal digits themselves (so `"1.005"` is 101 paise, which a
/// float multiplication would get wrong).
pub fn decimal_to_paise(text: &str) -> Result<Paise, WireError> {
    decimal_scaled(text, 2).map(Paise)
}

/// Decimal text times 10^`places`, rounded half away from zero.
fn decimal_scaled(text: &str, places: i32) -> Result<i64, WireError> {
    let bad = || WireError::NotANumber(text.to_string());
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = digits × 10^(exp − frac_len); we want round(value × 10^places).
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let shift = exp
        .checked_sub(frac_part.len() as i32)
        .and_then(|e| e.checked_add(places))
        .ok_or_else(|| WireError::OutOfRange(text.to_string()))?;
    let magnitude: i64 = if digits.is_empty() {
        0
    } else if shift >= 0 {
        let base: i64 = digits.parse().map_err(|_| WireError::OutOfRange(text.to_string()))?;
        10i64
            .checked_pow(shift as u32)
            .and_then(|p| base.checked_mul(p))
            .ok_or_else(|| WireError::OutOfRange(text.to_string()))?
    } else {
        let drop = (-shift) as usize;
        if drop > digits.len() {
            0 // below half of the last place: every dropped digit sits after a leading zero
        } else {
            let (keep, rest) = digits.split_at(digits.len() - drop);
            let kept: i64 = if keep.is_empty() {
                0
            } else {
                keep.parse().map_err(|_| WireError::OutOfRange(text.to_string()))?
            };
            let round_up = rest.as_bytes().first().is_some_and(|&b| b >= b'5');
            kept.checked_add(i64::from(round_up))
                .ok_or_else(|| WireError::OutOfRange(text.to_string()))?
        }
    };
    Ok(if neg { -magnitude } else { magnitude })
}

/// A JSON value that should hold rupees: a number, a numeric string, or absent (`null`, `""`,
/// missing) which reads as zero (Dhan sends 0 or nothing for "not applicable").
pub fn paise_from_value(v: &Value) -> Result<Paise, WireError> {
    match v {
        Value::Null => Ok(Paise::ZERO),
        Value::Number(n) => decimal_to_paise(&n.to_string()),
        Value::String(s) if s.trim().is_empty() => Ok(Paise::ZERO),
        Value::String(s) => decimal_to_paise(s),
        other => Err(WireError::WrongType { expected: "a price", found: kind(other) }),
    }
}

/// A JSON value that should hold a whole number: a number (`75`, `75.0`), a numeric string
/// (`"75"`), or absent (zero).
pub fn int_from_value(v: &Value) -> Result<i64, WireError> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            whole(&n.to_string())
        }
        Value::String(s) if s.trim().is_empty() => Ok(0),
        Value::String(s) => whole(s),
        other => Err(WireError::WrongType { expected: "a whole number", found: kind(other) }),
    }
}

fn whole(text: &str) -> Result<i64, WireError> {
    let micro = decimal_scaled(text, 6)?;
    if micro % 1_000_000 != 0 {
        return Err(WireError::NotWhole(text.to_string()));
    }
    Ok(micro / 1_000_000)
}

/// A JSON value that should hold text; numbers and booleans become their text, `null` is empty.
pub fn string_from_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A JSON value that should hold a flag: `true`/`false`, `"true"`, `1`/`0`, `"Y"`/`"N"`.
pub fn bool_from_value(v: &Value) -> Result<bool, WireError> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|x| x != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "n" | "no" => Ok(false),
            "true" | "1" | "y" | "yes" => Ok(true),
            _ => Err(WireError::WrongType { expected: "a flag", found: format!("{s:?}") }),
        },
        other => Err(WireError::WrongType { expected: "a flag", found: kind(other) }),
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Text that means "no value" on Dhan's wire: empty, `NA`, or a `0001-01-01` sentinel.
fn is_unset(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t.eq_ignore_ascii_case("NA") || t.starts_with("0001-01-01")
}

/// An IST wall-clock time `YYYY-MM-DD HH:MM:SS` (also with a `T`, fractional seconds, or only a
/// date, read as midnight) as an instant. Sentinels and empty values are `None`, and so is text
/// that is not a time at all: a time is informational and never worth losing an order over.
pub fn ist_time(text: &str) -> Option<Timestamp> {
    if is_unset(text) {
        return None;
    }
    let t = text.trim();
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            let secs = dt.and_utc().timestamp() - i64::from(crate::domain::IST_OFFSET_SECS);
            let ms = secs * 1000 + i64::from(dt.and_utc().timestamp_subsec_millis());
            return Some(Timestamp(ms));
        }
    }
    ist_date(t).map(|d| Timestamp::from_ist(d, TimeOfDay(0)))
}

/// A `YYYY-MM-DD` date (a longer time string keeps its date part); sentinels are `None`.
pub fn ist_date(text: &str) -> Option<NaiveDate> {
    if is_unset(text) {
        return None;
    }
    let t = text.trim();
    let date_part = t.get(..10).unwrap_or(t);
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()
}

/// Formats an instant as Dhan does: IST `YYYY-MM-DD HH:MM:SS`.
pub fn format_ist(t: Timestamp) -> String {
    t.to_ist().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The sentinel Dhan writes for a time that never happened.
pub const UNSET_TIME: &str = "0001-01-01 00:00:00";

/// `GET /orders/{id}` answers an object, an array of one, or `[]` for an unknown id.
pub fn one_or_none(v: Value) -> Result<Option<Value>, WireError> {
    match v {
        Value::Array(items) => Ok(items.into_iter().next()),
        Value::Object(_) => Ok(Some(v)),
        Value::Null => Ok(None),
        other => {
            Err(WireError::WrongType { expected: "an object or an array", found: kind(&other) })
        }
    }
}

// ---- serde adapters for `#[serde(deserialize_with = ...)]` ----

fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

pub fn de_paise<'de, D: Deserializer<'de>>(d: D) -> Result<Paise, D::Error> {
    paise_from_value(&value(d)?).map_err(serde::de::Error::custom)
}

pub fn de_qty<'de, D: Deserializer<'de>>(d: D) -> Result<Qty, D::Error> {
    int_from_value(&value(d)?).map(Qty).map_err(serde::de::Error::custom)
}

pub fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    int_from_value(&value(d)?).map_err(serde::de::Error::custom)
}

pub fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(string_from_value(&value(d)?))
}

pub fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool_from_value(&value(d)?).map_err(serde::de::Error::custom)
}

pub fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(ist_time(&string_from_value(&value(d)?)))
}

pub fn de_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Ok(ist_date(&string_from_value(&value(d)?)))
}

/// Text that Dhan leaves `null` or `"NA"` when not applicable, as `None`.
pub fn de_opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = string_from_value(&value(d)?);
    Ok(if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("NA") { None } else { Some(s) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_prices_round_half_away_from_zero_on_the_decimal_text() {
        let cases = [
            ("123.45", 12345),
            ("0.125", 13),
            ("-0.125", -13),
            ("1.005", 101),
            ("0.004", 0),
            ("0.005", 1),
            ("100", 10000),
            ("1e-7", 0),
            ("1.5e2", 15000),
            ("25900.0", 2590000),
            ("-5", -500),
            (".5", 50),
        ];
        for (text, paise) in cases {
            assert_eq!(decimal_to_paise(text), Ok(Paise(paise)), "{text}");
        }
        for bad in ["", "abc", "1.2.3", "-", "1e", "12,5"] {
            assert!(decimal_to_paise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_float_prices_become_exact_paise() {
        // 123.45 is not representable; the shortest round-trip text is, and that is what we round.
        assert_eq!(paise_from_value(&json!(123.45)), Ok(Paise(12345)));
        assert_eq!(paise_from_value(&json!(0.05)), Ok(Paise(5)));
        assert_eq!(paise_from_value(&json!(241765.5)), Ok(Paise(24176550)));
        assert!(paise_from_value(&json!(-3.4e38)).is_err(), "Swagger placeholder is out of range");
    }

    #[test]
    fn prices_may_arrive_as_strings_or_not_at_all() {
        assert_eq!(paise_from_value(&json!("1500.00")), Ok(Paise(150000)));
        assert_eq!(paise_from_value(&json!("")), Ok(Paise::ZERO));
        assert_eq!(paise_from_value(&Value::Null), Ok(Paise::ZERO));
        assert!(paise_from_value(&json!(true)).is_err());
    }

    #[test]
    fn quantities_may_arrive_as_strings_or_integral_floats() {
        assert_eq!(int_from_value(&json!(75)), Ok(75));
        assert_eq!(int_from_value(&json!("25")), Ok(25));
        assert_eq!(int_from_value(&json!(75.0)), Ok(75));
        assert_eq!(int_from_value(&json!("")), Ok(0));
        assert!(matches!(int_from_value(&json!(7.5)), Err(WireError::NotWhole(_))));
        assert!(int_from_value(&json!("x")).is_err());
    }

    #[test]
    fn strings_may_arrive_as_numbers() {
        assert_eq!(string_from_value(&json!(52511243008123u64)), "52511243008123");
        assert_eq!(string_from_value(&json!("AS-1")), "AS-1");
        assert_eq!(string_from_value(&Value::Null), "");
    }

    #[test]
    fn ist_times_are_converted_to_utc_instants() {
        let t = ist_time("2025-11-24 10:30:15").unwrap();
        assert_eq!(t.to_ist_iso(), "2025-11-24T10:30:15.000+05:30");
        assert_eq!(format_ist(t), "2025-11-24 10:30:15");
        assert_eq!(ist_time("2025-11-24T10:30:15"), Some(t));
    }

    #[test]
    fn sentinel_and_empty_times_are_unset() {
        for unset in ["0001-01-01 00:00:00", "0001-01-01", "", "NA", "not a time"] {
            assert_eq!(ist_time(unset), None, "{unset}");
        }
        assert_eq!(ist_date("2025-11-25"), NaiveDate::from_ymd_opt(2025, 11, 25));
        assert_eq!(ist_date("0001-01-01"), None);
    }

    #[test]
    fn order_by_id_accepts_object_array_of_one_and_empty_array() {
        let o = json!({"orderId": "1"});
        assert_eq!(one_or_none(o.clone()), Ok(Some(o.clone())));
        assert_eq!(one_or_none(json!([o.clone()])), Ok(Some(o)));
        assert_eq!(one_or_none(json!([])), Ok(None));
        assert!(one_or_none(json!("x")).is_err());
    }
}
