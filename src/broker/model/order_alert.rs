//! The order-update socket's messages (spec dhan-v2 §3.2): `{"Type":"order_alert","Data":{...}}`
//! text frames, decoded into [`OrderUpdate`] events. Tolerates what the spec lists: PascalCase and
//! camelCase keys (PascalCase wins when both are present), numbers as strings and strings as
//! numbers, status in any casing, two JSON objects in one frame, and non-JSON keep-alive text.
//! Unknown `Type`s are reported so the caller can log them.

use serde_json::{Map, Value};

use super::OrderStatus;
use super::wire::{self, WireError};
use crate::domain::{InstrumentKey, OrderId, Paise, Qty, Segment, Timestamp, Txn};

/// One order's state as the socket reported it. Quantities and the average price are
/// cumulative, so a consumer that remembers the last `(traded_qty, avg_traded_price)` per order
/// derives each new fill exactly once with [`OrderUpdate::fill_since`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderUpdate {
    pub order_id: OrderId,
    /// `CorrelationId` as received (ours, or Dhan's auto-generated one), `None` if absent.
    pub correlation_id: Option<String>,
    pub exchange_order_id: Option<String>,
    pub status: OrderStatus,
    pub instrument: Option<InstrumentKey>,
    pub txn: Option<Txn>,
    /// `P` placed via API, `N` via Dhan web/app.
    pub source: String,
    /// Product letter (`I`, `C`, `M`, ...).
    pub product: String,
    /// `LMT`, `MKT`, `SL`, `SLM`.
    pub order_type: String,
    pub quantity: Qty,
    /// Cumulative filled quantity.
    pub traded_qty: Qty,
    pub remaining_qty: Qty,
    pub price: Paise,
    pub trigger_price: Paise,
    /// Average price over all fills so far.
    pub avg_traded_price: Paise,
    /// Price of the latest fill.
    pub last_fill_price: Paise,
    /// `ReasonDescription`: a rejection reason, or `CONFIRMED` / `TRADE CONFIRMED`.
    pub reason: String,
    pub remarks: String,
    pub symbol: String,
    pub leg_no: i64,
    pub order_time: Option<Timestamp>,
    pub exchange_time: Option<Timestamp>,
    pub last_updated: Option<Timestamp>,
}

/// The part of an order that filled between two updates.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FillDelta {
    pub quantity: Qty,
    /// Derived from the cumulative averages: `(avg·traded − prev_avg·prev_traded) / Δqty`,
    /// rounded half away from zero. Exact when both averages are exact paise.
    pub price: Paise,
}

impl OrderUpdate {
    /// What filled since the consumer last saw `(prev_traded, prev_avg)` for this order;
    /// `None` when nothing new filled (a status-only update, or a duplicate message).
    pub fn fill_since(&self, prev_traded: Qty, prev_avg: Paise) -> Option<FillDelta> {
        let dq = self.traded_qty.0 - prev_traded.0;
        if dq <= 0 {
            return None;
        }
        let value = i128::from(self.avg_traded_price.0) * i128::from(self.traded_qty.0)
            - i128::from(prev_avg.0) * i128::from(prev_traded.0);
        let price = crate::domain::money::div_round_half_away(value, i128::from(dq));
        Some(FillDelta { quantity: Qty(dq), price: Paise(price as i64) })
    }
}

/// Why an `order_alert` could not become an [`OrderUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertParseError {
    #[error("order_alert without Data object")]
    NoData,
    #[error("order_alert without OrderNo")]
    NoOrderNo,
    #[error("order_alert for order {order_no}: field {field}: {source}")]
    Field { order_no: String, field: &'static str, source: WireError },
}

/// One JSON object (or piece of text) found in a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameItem {
    Update(Box<OrderUpdate>),
    /// A message whose `Type` is not `order_alert`: log it and move on.
    UnknownType(String),
    /// An `order_alert` we could not decode: log it loudly, the order book will tell the truth.
    Malformed(AlertParseError),
    /// Text that is not JSON (keep-alive) or JSON that is not a message object.
    Noise(String),
}

/// Splits a text frame into its JSON objects and decodes each.
pub fn parse_frame(text: &str) -> Vec<FrameItem> {
    let mut items = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(Value::Object(obj))) => items.push(parse_message(&obj)),
            Some(Ok(other)) => items.push(FrameItem::Noise(truncate(&other.to_string()))),
            Some(Err(_)) => {
                items.push(FrameItem::Noise(truncate(text[offset..].trim())));
                break;
            }
        }
    }
    items
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

fn parse_message(obj: &Map<String, Value>) -> FrameItem {
    let kind = field(obj, "Type").map(wire::string_from_value).unwrap_or_default();
    if !kind.eq_ignore_ascii_case("order_alert") {
        return FrameItem::UnknownType(if kind.is_empty() { "<none>".into() } else { kind });
    }
    match field(obj, "Data") {
        Some(Value::Object(data)) => match parse_order_alert(data) {
            Ok(u) => FrameItem::Update(Box::new(u)),
            Err(e) => FrameItem::Malformed(e),
        },
        _ => FrameItem::Malformed(AlertParseError::NoData),
    }
}

/// Looks `key` up in PascalCase first, then in camelCase.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(key) {
        return Some(v);
    }
    let mut chars = key.chars();
    let camel: String = match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => return None,
    };
    obj.get(&camel)
}

/// Decodes an `order_alert`'s `Data` object.
pub fn parse_order_alert(data: &Map<String, Value>) -> Result<OrderUpdate, AlertParseError> {
    let text = |k: &str| field(data, k).map(wire::string_from_value).unwrap_or_default();
    let opt_text = |k: &str| {
        let t = text(k);
        if t.trim().is_empty() { None } else { Some(t) }
    };
    let order_no = text("OrderNo");
    if order_no.trim().is_empty() {
        return Err(AlertParseError::NoOrderNo);
    }
    let err = |field: &'static str| {
        let order_no = order_no.clone();
        move |source| AlertParseError::Field { order_no, field, source }
    };
    let null = Value::Null;
    let qty = |k: &'static str| {
        wire::int_from_value(field(data, k).unwrap_or(&null)).map(Qty).map_err(err(k))
    };
    let price =
        |k: &'static str| wire::paise_from_value(field(data, k).unwrap_or(&null)).map_err(err(k));
    let time = |k: &str| wire::ist_time(&text(k));
    Ok(OrderUpdate {
        order_id: OrderId(order_no.clone()),
        correlation_id: opt_text("CorrelationId"),
        exchange_order_id: opt_text("ExchOrderNo"),
        status: OrderStatus::parse(&text("Status")),
        instrument: instrument(&text("Exchange"), &text("Segment"), &text("SecurityId")),
        txn: match text("TxnType").trim() {
            t if t.eq_ignore_ascii_case("B") || t.eq_ignore_ascii_case("BUY") => Some(Txn::Buy),
            t if t.eq_ignore_ascii_case("S") || t.eq_ignore_ascii_case("SELL") => Some(Txn::Sell),
            _ => None,
        },
        source: text("Source"),
        product: text("Product"),
        order_type: text("OrderType"),
        quantity: qty("Quantity")?,
        traded_qty: qty("TradedQty")?,
        remaining_qty: qty("RemainingQuantity")?,
        price: price("Price")?,
        trigger_price: price("TriggerPrice")?,
        avg_traded_price: price("AvgTradedPrice")?,
        last_fill_price: price("TradedPrice")?,
        reason: text("ReasonDescription"),
        remarks: text("Remarks"),
        symbol: text("Symbol"),
        leg_no: wire::int_from_value(field(data, "LegNo").unwrap_or(&null)).unwrap_or(1),
        order_time: time("OrderDateTime"),
        exchange_time: time("ExchOrderTime"),
        last_updated: time("LastUpdatedTime"),
    })
}

/// `Exchange` + `Segment` letter (spec §3.2) to our segment (MCX writes `D` as well as `M`;
/// an index is never traded).
fn instrument(exchange: &str, segment: &str, security_id: &str) -> Option<InstrumentKey> {
    let seg = match (exchange.trim().to_ascii_uppercase().as_str(), segment.trim()) {
        ("MCX", "D") => Segment::McxComm,
        (_, "I") => return None,
        (exchange, letter) => Segment::from_exchange_letters(exchange, letter)?,
    };
    let id: u32 = security_id.trim().parse().ok()?;
    Some(InstrumentKey::new(seg, id))
}

/// The `(Exchange, Segment)` letters for one of our segments: the simulator writes these.
pub fn exchange_letters(seg: Segment) -> (&'static str, &'static str) {
    seg.exchange_letters()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"Type":"order_alert","Data":{"Exchange":"NSE","Segment":"D","Source":"P","SecurityId":"52175",
 "ClientId":"1000000001","ExchOrderNo":"1600000085011333","OrderNo":"52511243008123","Product":"I",
 "TxnType":"B","OrderType":"MKT","Validity":"DAY","DiscQuantity":0,"DiscQtyRem":0,
 "RemainingQuantity":0,"Quantity":75,"TradedQty":75,"Price":0,"TriggerPrice":0,
 "TradedPrice":123.45,"AvgTradedPrice":123.45,"AlgoOrdNo":"","OffMktFlag":"0",
 "OrderDateTime":"2025-11-24 10:30:14","ExchOrderTime":"2025-11-24 10:30:15",
 "LastUpdatedTime":"2025-11-24 10:30:15","Remarks":"","MktType":"NL",
 "ReasonDescription":"TRADE CONFIRMED","LegNo":1,"Instrument":"OPTIDX","Symbol":"NIFTY-Nov2025-25900-PE",
 "ProductName":"INTRADAY","Status":"Traded","LotSize":75,"StrikePrice":25900.0,
 "ExpiryDate":"2025-11-25","OptType":"PE","DisplayName":"NIFTY 25 NOV 25900 PUT","Isin":"NA",
 "Series":"XX","GoodTillDaysDate":"2025-11-24","RefLtp":123.4,"TickSize":0.05,"AlgoId":"0",
 "Multiplier":1,"CorrelationId":"AS-N-52175-30215"}}"#;

    fn one(text: &str) -> OrderUpdate {
        match parse_frame(text).as_slice() {
            [FrameItem::Update(u)] => (**u).clone(),
            other => panic!("expected one update, got {other:?}"),
        }
    }

    #[test]
    fn spec_sample_decodes() {
        let u = one(SAMPLE);
        assert_eq!(u.order_id, OrderId("52511243008123".into()));
        assert_eq!(u.correlation_id.as_deref(), Some("AS-N-52175-30215"));
        assert_eq!(u.status, OrderStatus::Traded);
        assert_eq!(u.instrument, Some(InstrumentKey::new(Segment::NseFno, 52175)));
        assert_eq!(u.txn, Some(Txn::Buy));
        assert_eq!((u.quantity, u.traded_qty, u.remaining_qty), (Qty(75), Qty(75), Qty(0)));
        assert_eq!((u.avg_traded_price, u.last_fill_price), (Paise(12345), Paise(12345)));
        assert_eq!(u.reason, "TRADE CONFIRMED");
        assert_eq!(
            u.exchange_time.map(|t| t.to_ist_iso()).as_deref(),
            Some("2025-11-24T10:30:15.000+05:30")
        );
    }

    #[test]
    fn upper_case_status_and_numbers_as_strings() {
        let u = one(
            r#"{"Type":"order_alert","Data":{"OrderNo":52511243008123,"Status":"PART_TRADED",
            "Quantity":"150","TradedQty":"75","RemainingQuantity":"75","AvgTradedPrice":"123.45","AlgoOrdNo":12}}"#,
        );
        assert_eq!(u.order_id, OrderId("52511243008123".into()));
        assert_eq!(u.status, OrderStatus::PartTraded);
        assert_eq!((u.quantity, u.traded_qty), (Qty(150), Qty(75)));
        assert_eq!(u.avg_traded_price, Paise(12345));
    }

    #[test]
    fn camel_case_keys_are_accepted_and_pascal_case_wins() {
        let u = one(
            r#"{"type":"order_alert","data":{"orderNo":"7","status":"Pending","correlationId":"c-1",
            "tradedQty":0,"quantity":75}}"#,
        );
        assert_eq!(u.order_id, OrderId("7".into()));
        assert_eq!(u.status, OrderStatus::Pending);
        assert_eq!(u.correlation_id.as_deref(), Some("c-1"));
        let both = one(
            r#"{"Type":"order_alert","Data":{"OrderNo":"8","orderNo":"9","Status":"Traded","status":"Pending"}}"#,
        );
        assert_eq!(both.order_id, OrderId("8".into()));
        assert_eq!(both.status, OrderStatus::Traded);
    }

    #[test]
    fn two_objects_in_one_frame() {
        let frame = r#"{"Type":"order_alert","Data":{"OrderNo":"1","Status":"Transit"}}{"Type":"order_alert","Data":{"OrderNo":"1","Status":"Pending"}}"#;
        let items = parse_frame(frame);
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1], FrameItem::Update(u) if u.status == OrderStatus::Pending));
    }

    #[test]
    fn keep_alive_text_and_unknown_types_are_not_updates() {
        assert!(matches!(parse_frame("ping").as_slice(), [FrameItem::Noise(_)]));
        assert!(matches!(parse_frame("").as_slice(), []));
        assert!(matches!(
            parse_frame(r#"{"Type":"heartbeat"}"#).as_slice(),
            [FrameItem::UnknownType(t)] if t == "heartbeat"
        ));
    }

    #[test]
    fn alert_without_order_number_or_with_bad_quantity_is_malformed() {
        assert!(matches!(
            parse_frame(r#"{"Type":"order_alert","Data":{"Status":"Traded"}}"#).as_slice(),
            [FrameItem::Malformed(AlertParseError::NoOrderNo)]
        ));
        assert!(matches!(
            parse_frame(r#"{"Type":"order_alert","Data":{"OrderNo":"1","TradedQty":"x"}}"#)
                .as_slice(),
            [FrameItem::Malformed(AlertParseError::Field { field: "TradedQty", .. })]
        ));
    }

    #[test]
    fn cumulative_quantities_give_each_partial_fill_once() {
        let mut u = one(
            r#"{"Type":"order_alert","Data":{"OrderNo":"1","Status":"Part_Traded","Quantity":150,
            "TradedQty":50,"AvgTradedPrice":100.0,"TradedPrice":100.0}}"#,
        );
        let first = u.fill_since(Qty(0), Paise(0)).unwrap();
        assert_eq!(first, FillDelta { quantity: Qty(50), price: Paise(10000) });
        // second fill of 100 at 101.50: avg = (50*100 + 100*101.5)/150 = 101.00
        u.traded_qty = Qty(150);
        u.avg_traded_price = Paise(10100);
        let second = u.fill_since(Qty(50), Paise(10000)).unwrap();
        assert_eq!(second, FillDelta { quantity: Qty(100), price: Paise(10150) });
        assert_eq!(u.fill_since(Qty(150), Paise(10100)), None, "a repeated update is no new fill");
    }
}
