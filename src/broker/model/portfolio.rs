//! Positions, funds, the kill switch and last-traded prices (spec dhan-v2 §4.4–§4.6, and the
//! market-quote endpoint `POST /marketfeed/ltp`).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::{self, de_date, de_opt_text, de_paise, de_qty, de_string};
use super::{Lenient, PositionType, ProductType, WireError};
use crate::domain::{InstrumentKey, Paise, Qty, Segment};

/// One row of `GET /positions`. `net_qty` is `buy_qty − sell_qty` (negative when short).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    #[serde(default, deserialize_with = "de_string")]
    pub dhan_client_id: String,
    #[serde(default, deserialize_with = "de_string")]
    pub trading_symbol: String,
    #[serde(default, deserialize_with = "de_string")]
    pub security_id: String,
    #[serde(default)]
    pub position_type: Lenient<PositionType>,
    #[serde(default)]
    pub exchange_segment: Lenient<Segment>,
    #[serde(default)]
    pub product_type: Lenient<ProductType>,
    #[serde(default, deserialize_with = "de_paise")]
    pub buy_avg: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub sell_avg: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub cost_price: Paise,
    #[serde(default, deserialize_with = "de_qty")]
    pub buy_qty: Qty,
    #[serde(default, deserialize_with = "de_qty")]
    pub sell_qty: Qty,
    #[serde(default, deserialize_with = "de_qty")]
    pub net_qty: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub realized_profit: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub unrealized_profit: Paise,
    #[serde(default, deserialize_with = "wire::de_i64")]
    pub multiplier: i64,
    #[serde(default, deserialize_with = "de_qty")]
    pub carry_forward_buy_qty: Qty,
    #[serde(default, deserialize_with = "de_qty")]
    pub carry_forward_sell_qty: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub carry_forward_buy_value: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub carry_forward_sell_value: Paise,
    #[serde(default, deserialize_with = "de_qty")]
    pub day_buy_qty: Qty,
    #[serde(default, deserialize_with = "de_qty")]
    pub day_sell_qty: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub day_buy_value: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub day_sell_value: Paise,
    #[serde(default, deserialize_with = "de_date")]
    pub drv_expiry_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "de_opt_text")]
    pub drv_option_type: Option<String>,
    #[serde(default, deserialize_with = "de_paise")]
    pub drv_strike_price: Paise,
}

impl Position {
    pub fn instrument(&self) -> Option<InstrumentKey> {
        super::orders::instrument_of(&self.exchange_segment, &self.security_id)
    }
}

/// `GET /fundlimit`. The wire keys `availabelBalance` and `receiveableAmount` are Dhan's
/// spellings; the correct spellings are accepted too.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundLimit {
    #[serde(default, deserialize_with = "de_string")]
    pub dhan_client_id: String,
    #[serde(default, alias = "availabelBalance", deserialize_with = "de_paise")]
    pub available_balance: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub sod_limit: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub collateral_amount: Paise,
    #[serde(default, alias = "receiveableAmount", deserialize_with = "de_paise")]
    pub receivable_amount: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub utilized_amount: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub blocked_payout_amount: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub withdrawable_balance: Paise,
}

/// What `GET /killswitch` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillSwitchState {
    /// Trading disabled for the rest of the day.
    Active,
    Inactive,
    /// Text we could not classify, as received.
    Other(String),
}

impl KillSwitchState {
    pub fn parse(text: &str) -> KillSwitchState {
        let t = text.trim().to_ascii_uppercase();
        match t.as_str() {
            "ACTIVATE" | "ACTIVATED" | "ACTIVE" => KillSwitchState::Active,
            "DEACTIVATE" | "DEACTIVATED" | "INACTIVE" => KillSwitchState::Inactive,
            _ if t.contains("DEACTIVATED") => KillSwitchState::Inactive,
            _ if t.contains("ACTIVATED") => KillSwitchState::Active,
            _ => KillSwitchState::Other(text.to_string()),
        }
    }
}

/// `{"dhanClientId": "...", "killSwitchStatus": "..."}`: the answer to both the status query
/// (`ACTIVATE`/`DEACTIVATE`) and a change (free text such as "Kill Switch has been successfully
/// activated").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KillSwitchStatus {
    #[serde(default, deserialize_with = "de_string")]
    pub dhan_client_id: String,
    #[serde(default, deserialize_with = "de_string")]
    pub kill_switch_status: String,
}

impl KillSwitchStatus {
    pub fn state(&self) -> KillSwitchState {
        KillSwitchState::parse(&self.kill_switch_status)
    }
}

/// The body of `POST /marketfeed/ltp`: security ids (as JSON numbers) grouped by segment name,
/// e.g. `{"NSE_FNO":[52175,52176],"NSE_EQ":[1333]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LtpRequest(pub BTreeMap<&'static str, Vec<u32>>);

impl LtpRequest {
    pub fn new(instruments: &[InstrumentKey]) -> LtpRequest {
        let mut by_segment: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
        for i in instruments {
            let ids = by_segment.entry(i.segment.name()).or_default();
            if !ids.contains(&i.security_id.0) {
                ids.push(i.security_id.0);
            }
        }
        LtpRequest(by_segment)
    }
}

/// Decodes `{"status":"success","data":{"NSE_FNO":{"52175":{"last_price":123.45}}}}` into a
/// price per instrument. Entries for segments or ids we cannot read are skipped (the caller
/// sees them missing), and so are zero and negative prices, which are not prices any rule may act on
/// (logged); a malformed price is an error.
pub fn parse_ltp_response(v: &Value) -> Result<HashMap<InstrumentKey, Paise>, WireError> {
    let data = v.get("data").and_then(Value::as_object).ok_or(WireError::WrongType {
        expected: "an object with a \"data\" object",
        found: "something else".into(),
    })?;
    let mut out = HashMap::new();
    for (seg_name, ids) in data {
        let Some(segment) = Segment::from_name(seg_name) else { continue };
        let Some(ids) = ids.as_object() else { continue };
        for (id, quote) in ids {
            let Ok(id) = id.trim().parse::<u32>() else { continue };
            let price = quote.get("last_price").or_else(|| quote.get("lastPrice"));
            let Some(price) = price else { continue };
            let key = InstrumentKey::new(segment, id);
            let paise = wire::paise_from_value(price)?;
            if paise.0 <= 0 {
                // Not a price any rule may act on: left out, as if Dhan had not reported it.
                log::warn!(target: "broker", "ltp: {seg_name}:{id} reported at {paise}, not a price; left out");
                continue;
            }
            out.insert(key, paise);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fund_limit_reads_the_availabel_balance_spelling() {
        let f: FundLimit = serde_json::from_str(
            r#"{"dhanClientId":"1000000001","availabelBalance":241765.5,"sodLimit":250000.0,"collateralAmount":0.0,
 "receiveableAmount":0.0,"utilizedAmount":8234.5,"blockedPayoutAmount":0.0,"withdrawableBalance":241765.5}"#,
        )
        .unwrap();
        assert_eq!(f.available_balance, Paise(24176550));
        assert_eq!(f.utilized_amount, Paise(823450));
        assert_eq!(f.sod_limit, Paise(25000000));
        let correct: FundLimit = serde_json::from_str(r#"{"availableBalance":"10.5"}"#).unwrap();
        assert_eq!(correct.available_balance, Paise(1050));
    }

    #[test]
    fn short_position_has_negative_net_qty_and_signed_profit() {
        let p: Position = serde_json::from_value(json!({
            "dhanClientId":"1000000001","tradingSymbol":"NIFTY-Nov2025-25900-PE","securityId":"52175",
            "positionType":"SHORT","exchangeSegment":"NSE_FNO","productType":"INTRADAY",
            "buyAvg":0.0,"sellAvg":120.5,"costPrice":120.5,"buyQty":0,"sellQty":75,"netQty":-75,
            "realizedProfit":-12.35,"unrealizedProfit":"-150.75","multiplier":1,
            "drvExpiryDate":"2025-11-25","drvOptionType":"PUT","drvStrikePrice":25900.0,"crossCurrency":false
        }))
        .unwrap();
        assert_eq!(p.net_qty, Qty(-75));
        assert_eq!(p.position_type, Lenient::Known(PositionType::Short));
        assert_eq!(p.realized_profit, Paise(-1235));
        assert_eq!(p.unrealized_profit, Paise(-15075));
        assert_eq!(p.instrument(), Some(InstrumentKey::new(Segment::NseFno, 52175)));
    }

    #[test]
    fn kill_switch_status_texts() {
        assert_eq!(KillSwitchState::parse("ACTIVATE"), KillSwitchState::Active);
        assert_eq!(KillSwitchState::parse("DEACTIVATE"), KillSwitchState::Inactive);
        assert_eq!(
            KillSwitchState::parse("Kill Switch has been successfully activated"),
            KillSwitchState::Active
        );
        assert_eq!(
            KillSwitchState::parse("Kill Switch has been successfully deactivated"),
            KillSwitchState::Inactive
        );
    }

    #[test]
    fn ltp_request_groups_ids_by_segment() {
        let r = LtpRequest::new(&[
            InstrumentKey::new(Segment::NseFno, 52175),
            InstrumentKey::new(Segment::NseEq, 1333),
            InstrumentKey::new(Segment::NseFno, 52176),
            InstrumentKey::new(Segment::NseFno, 52175),
        ]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"NSE_EQ":[1333],"NSE_FNO":[52175,52176]})
        );
    }

    #[test]
    fn ltp_response_becomes_paise_per_instrument() {
        let v = json!({"status":"success","data":{
            "NSE_FNO":{"52175":{"last_price":123.45},"52176":{"last_price":"0.05"}},
            "NSE_EQ":{"1333":{"last_price":1000.5}},
            "XYZ":{"1":{"last_price":1}}}});
        let m = parse_ltp_response(&v).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&InstrumentKey::new(Segment::NseFno, 52175)], Paise(12345));
        assert_eq!(m[&InstrumentKey::new(Segment::NseFno, 52176)], Paise(5));
        assert_eq!(m[&InstrumentKey::new(Segment::NseEq, 1333)], Paise(100050));
    }

    #[test]
    fn ltp_response_leaves_out_zero_and_negative_prices() {
        let v = json!({"status":"success","data":{
            "NSE_FNO":{"52174":{"last_price":123.45},"52176":{"last_price":0}},
            "IDX_I":{"13":{"last_price":-25910.05}}}});
        let m = parse_ltp_response(&v).unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[&InstrumentKey::new(Segment::NseFno, 52174)], Paise(12345));
    }
}
