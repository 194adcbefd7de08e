//! Orders and trades (spec dhan-v2 §4.3): the place and modify requests we send, the
//! acknowledgement, the order-book entry and the trade-book entry we read back.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{self, de_date, de_opt_text, de_paise, de_qty, de_string, de_time};
use super::{Lenient, OrderStatus, OrderType, ProductType, Validity, WireEnum};
use crate::domain::{
    CorrelationId, InstrumentKey, OrderId, OrderIntent, Paise, Qty, Segment, Timestamp, Txn,
};

/// Rupees as a JSON number (the one place a price becomes a float again: the request body).
fn ser_rupees<S: Serializer>(p: &Paise, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(p.as_rupees_f64())
}

fn ser_qty<S: Serializer>(q: &Qty, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(q.0)
}

fn de_order_id<'de, D: Deserializer<'de>>(d: D) -> Result<OrderId, D::Error> {
    de_string(d).map(OrderId)
}

/// A new order, as the engine describes it. [`PlaceOrder::body`] adds the client id and gives
/// the exact JSON body: every numeric field typed and present, never `""` (spec §4.1 hygiene).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceOrder {
    pub correlation_id: Option<CorrelationId>,
    pub txn: Txn,
    pub instrument: InstrumentKey,
    pub product: ProductType,
    pub order_type: OrderType,
    pub validity: Validity,
    pub quantity: Qty,
    pub disclosed_quantity: Qty,
    /// Zero for MARKET and STOP_LOSS_MARKET.
    pub price: Paise,
    /// Zero unless STOP_LOSS or STOP_LOSS_MARKET.
    pub trigger_price: Paise,
    pub after_market_order: bool,
}

impl PlaceOrder {
    /// The engine's market order for an intent: MARKET, DAY, no disclosed quantity.
    pub fn market(intent: &OrderIntent, product: ProductType) -> PlaceOrder {
        PlaceOrder {
            correlation_id: Some(intent.correlation_id.clone()),
            txn: intent.txn,
            instrument: intent.instrument,
            product,
            order_type: OrderType::Market,
            validity: Validity::Day,
            quantity: intent.quantity,
            disclosed_quantity: Qty(0),
            price: Paise::ZERO,
            trigger_price: Paise::ZERO,
            after_market_order: false,
        }
    }

    /// Writes the JSON body of `POST /orders` into `out` (cleared first): the very bytes
    /// `serde_json::to_vec(&self.body(client_id))` gives, field by field in the same order,
    /// without the serializer's intermediate strings. With `out` reused from call to call
    /// (the REST client keeps one per thread), building the body allocates nothing once the
    /// buffer has grown to a body's size.
    pub fn write_body(&self, client_id: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"{\"dhanClientId\":");
        json_string(out, client_id);
        if let Some(cid) = &self.correlation_id {
            out.extend_from_slice(b",\"correlationId\":");
            json_string(out, cid.as_str());
        }
        let fields: [(&[u8], &str); 5] = [
            (b",\"transactionType\":\"", self.txn.name()),
            (b"\",\"exchangeSegment\":\"", self.instrument.segment.name()),
            (b"\",\"productType\":\"", self.product.wire_name()),
            (b"\",\"orderType\":\"", self.order_type.wire_name()),
            (b"\",\"validity\":\"", self.validity.wire_name()),
        ];
        // Wire names are upper-case letters and underscores: nothing to escape.
        for (key, name) in fields {
            out.extend_from_slice(key);
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(b"\",\"securityId\":\"");
        json_integer(out, i64::from(self.instrument.security_id.0));
        out.extend_from_slice(b"\",\"quantity\":");
        json_integer(out, self.quantity.0);
        out.extend_from_slice(b",\"disclosedQuantity\":");
        json_integer(out, self.disclosed_quantity.0);
        out.extend_from_slice(b",\"price\":");
        json_rupees(out, self.price);
        out.extend_from_slice(b",\"triggerPrice\":");
        json_rupees(out, self.trigger_price);
        out.extend_from_slice(if self.after_market_order {
            b",\"afterMarketOrder\":true}"
        } else {
            b",\"afterMarketOrder\":false}"
        });
    }

    pub fn body<'a>(&'a self, client_id: &'a str) -> PlaceOrderBody<'a> {
        PlaceOrderBody {
            dhan_client_id: client_id,
            correlation_id: self.correlation_id.as_ref().map(CorrelationId::as_str),
            transaction_type: self.txn,
            exchange_segment: self.instrument.segment,
            product_type: self.product,
            order_type: self.order_type,
            validity: self.validity,
            security_id: self.instrument.security_id.0.to_string(),
            quantity: self.quantity,
            disclosed_quantity: self.disclosed_quantity,
            price: self.price,
            trigger_price: self.trigger_price,
            after_market_order: self.after_market_order,
        }
    }
}

/// A JSON string as serde_json writes it (its escaping), appended to `out` without
/// allocating beyond `out`'s own growth.
fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing a string into a Vec cannot fail");
}

/// An integer in decimal, as serde_json writes it.
fn json_integer(out: &mut Vec<u8>, n: i64) {
    use std::io::Write as _;
    write!(out, "{n}").expect("writing into a Vec cannot fail");
}

/// Rupees as the JSON number [`ser_rupees`] gives (serde_json's float formatting).
fn json_rupees(out: &mut Vec<u8>, p: Paise) {
    serde_json::to_writer(&mut *out, &p.as_rupees_f64()).expect("writing into a Vec cannot fail");
}

/// The JSON body of `POST /orders`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrderBody<'a> {
    pub dhan_client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<&'a str>,
    pub transaction_type: Txn,
    pub exchange_segment: Segment,
    pub product_type: ProductType,
    pub order_type: OrderType,
    pub validity: Validity,
    pub security_id: String,
    #[serde(serialize_with = "ser_qty")]
    pub quantity: Qty,
    #[serde(serialize_with = "ser_qty")]
    pub disclosed_quantity: Qty,
    #[serde(serialize_with = "ser_rupees")]
    pub price: Paise,
    #[serde(serialize_with = "ser_rupees")]
    pub trigger_price: Paise,
    pub after_market_order: bool,
}

/// A change to a resting order (`PUT /orders/{id}`). `quantity` is the **total** order
/// quantity, not what remains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModifyOrder {
    pub order_id: OrderId,
    pub order_type: OrderType,
    pub quantity: Qty,
    pub price: Paise,
    pub trigger_price: Paise,
    pub disclosed_quantity: Qty,
    pub validity: Validity,
    /// Only for BO/CO legs (`ENTRY_LEG`, `TARGET_LEG`, `STOP_LOSS_LEG`).
    pub leg_name: Option<String>,
}

impl ModifyOrder {
    pub fn body<'a>(&'a self, client_id: &'a str) -> ModifyOrderBody<'a> {
        ModifyOrderBody {
            dhan_client_id: client_id,
            order_id: &self.order_id.0,
            order_type: self.order_type,
            leg_name: self.leg_name.as_deref(),
            quantity: self.quantity,
            price: self.price,
            trigger_price: self.trigger_price,
            disclosed_quantity: self.disclosed_quantity,
            validity: self.validity,
        }
    }
}

/// The JSON body of `PUT /orders/{id}`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModifyOrderBody<'a> {
    pub dhan_client_id: &'a str,
    pub order_id: &'a str,
    pub order_type: OrderType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leg_name: Option<&'a str>,
    #[serde(serialize_with = "ser_qty")]
    pub quantity: Qty,
    #[serde(serialize_with = "ser_rupees")]
    pub price: Paise,
    #[serde(serialize_with = "ser_rupees")]
    pub trigger_price: Paise,
    #[serde(serialize_with = "ser_qty")]
    pub disclosed_quantity: Qty,
    pub validity: Validity,
}

/// `{"orderId": "...", "orderStatus": "TRANSIT"}`: the answer to place, modify and cancel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAck {
    #[serde(deserialize_with = "de_order_id")]
    pub order_id: OrderId,
    #[serde(default = "OrderStatus::unknown")]
    pub order_status: OrderStatus,
}

impl OrderStatus {
    fn unknown() -> OrderStatus {
        OrderStatus::Other(String::new())
    }
}

/// One order of the order book (`GET /orders`, `/orders/{id}`, `/orders/external/{cid}`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[serde(default, deserialize_with = "de_string")]
    pub dhan_client_id: String,
    #[serde(deserialize_with = "de_order_id")]
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "de_string")]
    pub exchange_order_id: String,
    /// As received: ours when we placed the order, Dhan's `<clientId>-<epoch ms>` when another
    /// platform did, `None` when absent. Match only ids we generated.
    #[serde(default, deserialize_with = "de_opt_text")]
    pub correlation_id: Option<String>,
    #[serde(default = "OrderStatus::unknown")]
    pub order_status: OrderStatus,
    #[serde(default)]
    pub transaction_type: Lenient<Txn>,
    #[serde(default)]
    pub exchange_segment: Lenient<Segment>,
    #[serde(default)]
    pub product_type: Lenient<ProductType>,
    #[serde(default)]
    pub order_type: Lenient<OrderType>,
    #[serde(default)]
    pub validity: Lenient<Validity>,
    #[serde(default, deserialize_with = "de_string")]
    pub trading_symbol: String,
    #[serde(default, deserialize_with = "de_string")]
    pub security_id: String,
    #[serde(default, deserialize_with = "de_qty")]
    pub quantity: Qty,
    #[serde(default, deserialize_with = "de_qty")]
    pub disclosed_quantity: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub price: Paise,
    #[serde(default, deserialize_with = "de_paise")]
    pub trigger_price: Paise,
    #[serde(default, deserialize_with = "wire::de_bool")]
    pub after_market_order: bool,
    #[serde(default, deserialize_with = "de_opt_text")]
    pub leg_name: Option<String>,
    #[serde(default, deserialize_with = "de_time")]
    pub create_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "de_time")]
    pub update_time: Option<Timestamp>,
    /// `None` while the order has never reached the exchange (sentinel on the wire).
    #[serde(default, deserialize_with = "de_time")]
    pub exchange_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "de_date")]
    pub drv_expiry_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "de_opt_text")]
    pub drv_option_type: Option<String>,
    #[serde(default, deserialize_with = "de_paise")]
    pub drv_strike_price: Paise,
    #[serde(default, deserialize_with = "de_string")]
    pub oms_error_code: String,
    /// Rejection reason; reads `CONFIRMED`/`TRADE CONFIRMED` on healthy orders.
    #[serde(default, deserialize_with = "de_string")]
    pub oms_error_description: String,
    #[serde(default, deserialize_with = "de_string")]
    pub algo_id: String,
    #[serde(default, deserialize_with = "de_qty")]
    pub remaining_quantity: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub average_traded_price: Paise,
    #[serde(default, deserialize_with = "de_qty")]
    pub filled_qty: Qty,
}

impl Order {
    /// The instrument, when the segment is one we know and the security id is numeric.
    pub fn instrument(&self) -> Option<InstrumentKey> {
        instrument_of(&self.exchange_segment, &self.security_id)
    }
}

pub(crate) fn instrument_of(seg: &Lenient<Segment>, security_id: &str) -> Option<InstrumentKey> {
    let id: u32 = security_id.trim().parse().ok()?;
    Some(InstrumentKey::new(seg.known()?, id))
}

/// One fill of the trade book (`GET /trades`, `/trades/{order-id}`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    #[serde(default, deserialize_with = "de_string")]
    pub dhan_client_id: String,
    #[serde(deserialize_with = "de_order_id")]
    pub order_id: OrderId,
    #[serde(default, deserialize_with = "de_string")]
    pub exchange_order_id: String,
    #[serde(default, deserialize_with = "de_string")]
    pub exchange_trade_id: String,
    #[serde(default)]
    pub transaction_type: Lenient<Txn>,
    #[serde(default)]
    pub exchange_segment: Lenient<Segment>,
    #[serde(default)]
    pub product_type: Lenient<ProductType>,
    #[serde(default)]
    pub order_type: Lenient<OrderType>,
    #[serde(default, deserialize_with = "de_string")]
    pub trading_symbol: String,
    #[serde(default, deserialize_with = "de_string")]
    pub custom_symbol: String,
    #[serde(default, deserialize_with = "de_string")]
    pub security_id: String,
    #[serde(default, deserialize_with = "de_qty")]
    pub traded_quantity: Qty,
    #[serde(default, deserialize_with = "de_paise")]
    pub traded_price: Paise,
    #[serde(default, deserialize_with = "de_time")]
    pub create_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "de_time")]
    pub update_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "de_time")]
    pub exchange_time: Option<Timestamp>,
    #[serde(default, deserialize_with = "de_date")]
    pub drv_expiry_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "de_opt_text")]
    pub drv_option_type: Option<String>,
    #[serde(default, deserialize_with = "de_paise")]
    pub drv_strike_price: Paise,
}

impl Trade {
    pub fn instrument(&self) -> Option<InstrumentKey> {
        instrument_of(&self.exchange_segment, &self.security_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExitReason, OrderPurpose, PositionId};
    use serde_json::{Value, json};

    fn intent() -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new("AS-N-52175-30215").unwrap(),
            position_id: PositionId::new("p1"),
            instrument: InstrumentKey::new(Segment::NseFno, 52175),
            txn: Txn::Buy,
            quantity: Qty(75),
            purpose: OrderPurpose::Exit(ExitReason::StopLoss),
            reference_price: Paise(12345),
            price_is_stale: false,
            created_at: Timestamp(0),
            limit_price: None,
        }
    }

    #[test]
    fn market_order_body_matches_the_spec_sample() {
        let order = PlaceOrder::market(&intent(), ProductType::Intraday);
        let body = serde_json::to_value(order.body("1000000001")).unwrap();
        let sample = json!({"dhanClientId":"1000000001","correlationId":"AS-N-52175-30215",
            "transactionType":"BUY","exchangeSegment":"NSE_FNO","productType":"INTRADAY",
            "orderType":"MARKET","validity":"DAY","securityId":"52175","quantity":75,
            "disclosedQuantity":0,"price":0.0,"triggerPrice":0.0,"afterMarketOrder":false});
        assert_eq!(body, sample);
    }

    /// The body writer gives exactly the serializer's bytes: every segment, side, product,
    /// order type and validity, market and limit prices, stop-loss triggers, sliced children's
    /// ids and quantities, with and without a correlation id, and client ids that need escaping.
    #[test]
    fn written_body_is_byte_for_byte_the_serialized_one() {
        use crate::risk::correlation::{self, OrderRole};
        let products = [
            ProductType::Cnc,
            ProductType::Intraday,
            ProductType::Margin,
            ProductType::Mtf,
            ProductType::Co,
            ProductType::Bo,
        ];
        let order_types =
            [OrderType::Market, OrderType::Limit, OrderType::StopLoss, OrderType::StopLossMarket];
        let prices = [0, 1, 5, 10, 99, 100, 105, 995, 9800, 9805, 12345, 9_999_999, 1 << 40];
        let quantities = [0, 1, 15, 75, 1800, 1801, 36_000, i64::from(u32::MAX), i64::MAX, -3];
        let position = PositionId::new("p17");
        let mut cids: Vec<Option<CorrelationId>> = vec![None];
        for attempt in [1, 2, 12, 999_999] {
            cids.push(Some(correlation::exit_id(&position, attempt).unwrap()));
            cids.push(Some(correlation::entry_id(&PositionId::new("a b"), attempt).unwrap()));
        }
        for slice in [1, 2, 30] {
            cids.push(Some(correlation::slice_id(OrderRole::Exit, &position, 1, slice).unwrap()));
        }
        let clients = ["1000000001", "", "a\"b\\c", "tab\tnl\n\u{1}\u{7f}", "पद-é"];
        let mut rng = fastrand::Rng::with_seed(13);
        let mut out = Vec::new();
        let mut n = 0;
        for segment in Segment::ALL {
            for txn in [Txn::Buy, Txn::Sell] {
                for product in products {
                    for order_type in order_types {
                        for validity in [Validity::Day, Validity::Ioc] {
                            for _ in 0..12 {
                                let pick =
                                    |rng: &mut fastrand::Rng, xs: &[i64]| xs[rng.usize(..xs.len())];
                                let priced = order_type != OrderType::Market;
                                let order = PlaceOrder {
                                    correlation_id: cids[rng.usize(..cids.len())].clone(),
                                    txn,
                                    instrument: InstrumentKey::new(segment, rng.u32(..)),
                                    product,
                                    order_type,
                                    validity,
                                    quantity: Qty(pick(&mut rng, &quantities)),
                                    disclosed_quantity: Qty(pick(&mut rng, &[0, 0, 25, 1000])),
                                    price: Paise(if priced {
                                        pick(&mut rng, &prices) * if rng.bool() { 1 } else { -1 }
                                    } else {
                                        0
                                    }),
                                    trigger_price: Paise(
                                        if order_type == OrderType::StopLoss
                                            || order_type == OrderType::StopLossMarket
                                        {
                                            pick(&mut rng, &prices)
                                        } else {
                                            0
                                        },
                                    ),
                                    after_market_order: rng.u8(..8) == 0,
                                };
                                let client = clients[rng.usize(..clients.len())];
                                let want = serde_json::to_vec(&order.body(client)).unwrap();
                                order.write_body(client, &mut out);
                                assert_eq!(
                                    String::from_utf8_lossy(&out),
                                    String::from_utf8_lossy(&want),
                                    "{order:?}"
                                );
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 8 * 2 * 6 * 4 * 2 * 12);
        // The same buffer, reused for a shorter body, holds only that body.
        let order = PlaceOrder::market(&intent(), ProductType::Intraday);
        order.write_body("1000000001", &mut out);
        assert_eq!(out, serde_json::to_vec(&order.body("1000000001")).unwrap());
    }

    #[test]
    fn request_bodies_never_carry_empty_strings() {
        let mut order = PlaceOrder::market(&intent(), ProductType::Intraday);
        order.order_type = OrderType::StopLoss;
        order.price = Paise(9900);
        order.trigger_price = Paise(9950);
        let text = serde_json::to_string(&order.body("1")).unwrap();
        assert!(!text.contains("\"\""), "{text}");
        assert!(
            text.contains("\"price\":99.0") && text.contains("\"triggerPrice\":99.5"),
            "{text}"
        );
        let m = ModifyOrder {
            order_id: OrderId("5".into()),
            order_type: OrderType::Limit,
            quantity: Qty(75),
            price: Paise(12345),
            trigger_price: Paise::ZERO,
            disclosed_quantity: Qty(0),
            validity: Validity::Day,
            leg_name: None,
        };
        let v: Value = serde_json::to_value(m.body("1")).unwrap();
        assert_eq!(v["price"], json!(123.45));
        assert!(v.get("legName").is_none());
        assert!(!v.to_string().contains("\"\""));
    }

    #[test]
    fn order_book_sample_parses() {
        let text = r#"[{"dhanClientId":"1000000001","orderId":"52511243008123","exchangeOrderId":"1600000085011333",
  "correlationId":"AS-N-52175-30215","orderStatus":"TRADED","transactionType":"BUY",
  "exchangeSegment":"NSE_FNO","productType":"INTRADAY","orderType":"MARKET","validity":"DAY",
  "tradingSymbol":"NIFTY-Nov2025-25900-PE","securityId":"52175","quantity":75,"disclosedQuantity":0,
  "price":0.0,"triggerPrice":0.0,"afterMarketOrder":false,"boProfitValue":0.0,"boStopLossValue":0.0,
  "legName":"NA","createTime":"2025-11-24 10:30:14","updateTime":"2025-11-24 10:30:15",
  "exchangeTime":"2025-11-24 10:30:15","drvExpiryDate":"2025-11-25","drvOptionType":"PUT",
  "drvStrikePrice":25900.0,"omsErrorCode":"","omsErrorDescription":"TRADE CONFIRMED","algoId":"0",
  "remainingQuantity":0,"averageTradedPrice":123.45,"filledQty":75}]"#;
        let orders: Vec<Order> = serde_json::from_str(text).unwrap();
        let o = &orders[0];
        assert_eq!(o.order_id, OrderId("52511243008123".into()));
        assert_eq!(o.correlation_id.as_deref(), Some("AS-N-52175-30215"));
        assert_eq!(o.order_status, OrderStatus::Traded);
        assert_eq!(o.instrument(), Some(InstrumentKey::new(Segment::NseFno, 52175)));
        assert_eq!(o.average_traded_price, Paise(12345));
        assert_eq!(o.filled_qty, Qty(75));
        assert_eq!(o.drv_strike_price, Paise(2590000));
        assert_eq!(o.leg_name, None);
        assert_eq!(
            o.exchange_time.map(|t| t.to_ist_iso()).as_deref(),
            Some("2025-11-24T10:30:15.000+05:30")
        );
    }

    #[test]
    fn transit_order_has_sentinel_exchange_time_and_numbers_as_strings() {
        let o: Order = serde_json::from_value(json!({
            "orderId": 52511243008124u64, "orderStatus": "Transit", "quantity": "75",
            "price": "123.45", "exchangeTime": "0001-01-01 00:00:00", "filledQty": "",
            "exchangeSegment": "NSE_COMM", "drvOptionType": null
        }))
        .unwrap();
        assert_eq!(o.order_id, OrderId("52511243008124".into()));
        assert_eq!(o.order_status, OrderStatus::Transit);
        assert_eq!(o.quantity, Qty(75));
        assert_eq!(o.price, Paise(12345));
        assert_eq!(o.exchange_time, None);
        assert_eq!(o.filled_qty, Qty(0));
        assert_eq!(o.instrument(), None, "unknown segment decodes but has no instrument");
    }

    #[test]
    fn ack_sample_parses_with_transit() {
        let a: OrderAck =
            serde_json::from_str(r#"{"orderId":"52511243008123","orderStatus":"TRANSIT"}"#)
                .unwrap();
        assert_eq!(a.order_status, OrderStatus::Transit);
    }

    #[test]
    fn trade_book_entry_parses() {
        let t: Trade = serde_json::from_value(json!({
            "dhanClientId":"1000000001","orderId":"112111182198","exchangeOrderId":"15112111182938",
            "exchangeTradeId":"15112111182938","transactionType":"SELL","exchangeSegment":"NSE_FNO",
            "productType":"INTRADAY","orderType":"MARKET","tradingSymbol":"NIFTY","customSymbol":"x",
            "securityId":"52175","tradedQuantity":75,"tradedPrice":123.45,
            "createTime":"2025-11-24 10:30:15","updateTime":"2025-11-24 10:30:15",
            "exchangeTime":"2025-11-24 10:30:15","drvExpiryDate":"2025-11-25","drvOptionType":"PUT",
            "drvStrikePrice":25900}))
        .unwrap();
        assert_eq!(t.traded_quantity, Qty(75));
        assert_eq!(t.traded_price, Paise(12345));
        assert_eq!(t.transaction_type, Lenient::Known(Txn::Sell));
    }
}
