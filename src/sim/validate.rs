//! Validation of order requests as Dhan does it (spec dhan-v2 §4.1 hygiene, §4.3, §6): every
//! numeric field a typed JSON number (never `""`), the fields Dhan was seen to require present,
//! enum values spelled exactly, correlation ids of 1–25 `[A-Za-z0-9 _.-]`. A refusal is a
//! DH-905 in the REST layer; the reason goes to the simulator's debug log only, as Dhan names no
//! field.

use serde_json::{Map, Value};

use super::orders::{NewOrder, OrderChange};
use crate::broker::model::{OrderType, ProductType, Validity, WireEnum};
use crate::domain::{InstrumentKey, Paise, Segment, Txn};

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("body is not a JSON object".into()),
        Err(e) => Err(format!("body is not JSON: {e}")),
    }
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str, String> {
    match m.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(other) => Err(format!("{k} is {other}, not a non-empty string")),
        None => Err(format!("{k} is missing")),
    }
}

fn named<T: WireEnum>(m: &Map<String, Value>, k: &str) -> Result<T, String> {
    let t = text(m, k)?;
    // Dhan's enums are upper case; a different spelling is a bad value.
    T::from_wire(t)
        .filter(|v| v.wire_name() == t)
        .ok_or_else(|| format!("{k} {t:?} is not a valid value"))
}

/// A typed JSON integer (never `""`, never a string).
fn integer(m: &Map<String, Value>, k: &str) -> Result<i64, String> {
    match m.get(k) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("{k} {n} is not a whole number")),
        Some(other) => Err(format!("{k} is {other}, not a number")),
        None => Err(format!("{k} is missing")),
    }
}

/// A typed JSON number of rupees, as paise.
fn rupees(m: &Map<String, Value>, k: &str) -> Result<Paise, String> {
    match m.get(k) {
        Some(Value::Number(n)) => crate::broker::model::wire::decimal_to_paise(&n.to_string())
            .ok()
            .filter(|p| !p.is_negative())
            .ok_or_else(|| format!("{k} {n} is not a valid price")),
        Some(other) => Err(format!("{k} is {other}, not a number")),
        None => Err(format!("{k} is missing")),
    }
}

/// Correlation ids the simulator accepts: 1–25 of `[A-Za-z0-9 _.-]` (spec §6).
pub fn valid_correlation_id(cid: &str) -> bool {
    !cid.is_empty()
        && cid.chars().count() <= 25
        && cid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'.' | b'-'))
}

/// Validates a `POST /orders` body as Dhan does (spec §4.1 hygiene, §4.3, §6).
pub fn parse_place(body: &[u8], client_id: &str) -> Result<NewOrder, String> {
    let m = object(body)?;
    if text(&m, "dhanClientId")? != client_id {
        return Err("dhanClientId does not match the client".into());
    }
    let correlation_id = match m.get("correlationId") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if valid_correlation_id(c) => Some(c.clone()),
        Some(other) => return Err(format!("correlationId {other} is not 1-25 of [A-Za-z0-9 _.-]")),
    };
    let txn: Txn = named(&m, "transactionType")?;
    let segment: Segment = named(&m, "exchangeSegment")?;
    if !segment.is_tradable() {
        return Err(format!("{segment} is not tradable"));
    }
    let product: ProductType = named(&m, "productType")?;
    let order_type: OrderType = named(&m, "orderType")?;
    let validity: Validity = named(&m, "validity")?;
    let security_id: u32 = match m.get("securityId") {
        Some(Value::String(s)) => {
            s.trim().parse().map_err(|_| format!("securityId {s:?} is not a number"))?
        }
        Some(Value::Number(n)) => {
            n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or("securityId out of range")?
        }
        _ => return Err("securityId is missing".into()),
    };
    let quantity = integer(&m, "quantity")?;
    if quantity <= 0 {
        return Err("quantity must be positive".into());
    }
    let disclosed_quantity = integer(&m, "disclosedQuantity")?;
    if disclosed_quantity < 0 || disclosed_quantity > quantity {
        return Err("disclosedQuantity out of range".into());
    }
    let price = rupees(&m, "price")?;
    let trigger_price = match order_type {
        OrderType::StopLoss | OrderType::StopLossMarket => rupees(&m, "triggerPrice")?,
        _ if m.contains_key("triggerPrice") => rupees(&m, "triggerPrice")?,
        _ => Paise::ZERO,
    };
    if matches!(order_type, OrderType::Limit | OrderType::StopLoss) && price == Paise::ZERO {
        return Err("a limit price is required".into());
    }
    if matches!(order_type, OrderType::StopLoss | OrderType::StopLossMarket)
        && trigger_price == Paise::ZERO
    {
        return Err("a trigger price is required".into());
    }
    match m.get("afterMarketOrder") {
        Some(Value::Bool(_)) => {}
        Some(other) => return Err(format!("afterMarketOrder is {other}, not a boolean")),
        None => return Err("afterMarketOrder is missing".into()),
    }
    Ok(NewOrder {
        correlation_id,
        instrument: InstrumentKey::new(segment, security_id),
        txn,
        product,
        order_type,
        validity,
        quantity,
        disclosed_quantity,
        price,
        trigger_price,
    })
}

/// Validates a `PUT /orders/{id}` body.
pub fn parse_modify(body: &[u8], client_id: &str, path_id: &str) -> Result<OrderChange, String> {
    let m = object(body)?;
    if text(&m, "dhanClientId")? != client_id {
        return Err("dhanClientId does not match the client".into());
    }
    if text(&m, "orderId")? != path_id {
        return Err("orderId differs from the path".into());
    }
    let optional_int = |k: &str| if m.contains_key(k) { integer(&m, k) } else { Ok(0) };
    let optional_price = |k: &str| if m.contains_key(k) { rupees(&m, k) } else { Ok(Paise::ZERO) };
    let quantity = integer(&m, "quantity")?;
    if quantity <= 0 {
        return Err("quantity must be positive".into());
    }
    Ok(OrderChange {
        order_type: named(&m, "orderType")?,
        quantity,
        price: rupees(&m, "price")?,
        trigger_price: optional_price("triggerPrice")?,
        disclosed_quantity: optional_int("disclosedQuantity")?,
        validity: named(&m, "validity")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = r#"{"dhanClientId":"1000000001","correlationId":"AS-N-52175-30215","transactionType":"BUY",
        "exchangeSegment":"NSE_FNO","productType":"INTRADAY","orderType":"MARKET","validity":"DAY",
        "securityId":"52175","quantity":75,"disclosedQuantity":0,"price":0.0,"triggerPrice":0.0,
        "afterMarketOrder":false}"#;

    fn with(k: &str, v: Value) -> Vec<u8> {
        let mut m: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        if v.is_null() {
            m.remove(k);
        } else {
            m.insert(k.into(), v);
        }
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn the_spec_sample_is_accepted() {
        let n = parse_place(GOOD.as_bytes(), "1000000001").unwrap();
        assert_eq!(n.instrument, InstrumentKey::new(Segment::NseFno, 52175));
        assert_eq!((n.quantity, n.txn), (75, Txn::Buy));
        assert_eq!(n.correlation_id.as_deref(), Some("AS-N-52175-30215"));
    }

    #[test]
    fn dh905_for_empty_strings_missing_fields_and_bad_correlation_ids() {
        let cases: Vec<(&str, Value)> = vec![
            ("price", json!("")),
            ("disclosedQuantity", json!("")),
            ("quantity", json!("75")),
            ("disclosedQuantity", Value::Null),
            ("afterMarketOrder", Value::Null),
            ("transactionType", Value::Null),
            ("securityId", Value::Null),
            ("orderType", json!("market")),
            ("exchangeSegment", json!("IDX_I")),
            ("quantity", json!(0)),
            ("correlationId", json!("a".repeat(26))),
            ("correlationId", json!("bad/char")),
            ("correlationId", json!("")),
            ("dhanClientId", json!("someone-else")),
        ];
        for (k, v) in cases {
            assert!(parse_place(&with(k, v.clone()), "1000000001").is_err(), "{k} = {v}");
        }
        assert!(parse_place(b"not json", "1000000001").is_err());
    }

    #[test]
    fn correlation_ids_of_25_safe_characters_including_space_and_dot_are_accepted() {
        for ok in ["a".repeat(25), "a b.c_d-e".to_string()] {
            assert!(parse_place(&with("correlationId", json!(ok)), "1000000001").is_ok(), "{ok}");
        }
        assert!(parse_place(&with("correlationId", Value::Null), "1000000001").is_ok(), "optional");
    }

    #[test]
    fn stop_loss_orders_need_a_trigger_price() {
        let mut m: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        m.insert("orderType".into(), json!("STOP_LOSS_MARKET"));
        let body = serde_json::to_vec(&m).unwrap();
        assert!(parse_place(&body, "1000000001").is_err());
        m.insert("triggerPrice".into(), json!(99.5));
        let n = parse_place(&serde_json::to_vec(&m).unwrap(), "1000000001").unwrap();
        assert_eq!(n.trigger_price, Paise(9950));
    }
}
