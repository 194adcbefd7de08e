//! The simulated broker's wire shapes, written from the spec's samples (dhan-v2 §3.2, §4.3–
//! §4.5) independently of the client's decoders: order objects, trades, positions, the fund
//! limit and order-update messages. Prices go out as rupee floats, times as IST strings with
//! the `0001-01-01 00:00:00` sentinel.

use serde_json::{Value, json};

use super::orders::{SimOrder, SimPosition, SimTrade, Source};
use crate::broker::model::order_alert::exchange_letters;
use crate::broker::model::wire::{UNSET_TIME, format_ist};
use crate::broker::model::{OrderStatus, OrderType, ProductType};
use crate::domain::{InstrumentKey, Paise, Timestamp};

fn rupees(p: Paise) -> f64 {
    p.as_rupees_f64()
}

fn time(t: Option<Timestamp>) -> String {
    t.map(format_ist).unwrap_or_else(|| UNSET_TIME.to_string())
}

/// The trading symbol the simulator shows for an instrument.
pub fn symbol(i: InstrumentKey) -> String {
    format!("SIM-{}-{}", i.segment.name(), i.security_id)
}

pub fn order(o: &SimOrder, client_id: &str) -> Value {
    json!({
        "dhanClientId": client_id,
        "orderId": o.order_id,
        "exchangeOrderId": o.exchange_order_id,
        "correlationId": o.correlation_id,
        "orderStatus": o.status.wire_upper(),
        "transactionType": o.txn.name(),
        "exchangeSegment": o.instrument.segment.name(),
        "productType": o.product.to_string(),
        "orderType": o.order_type.to_string(),
        "validity": o.validity.to_string(),
        "tradingSymbol": symbol(o.instrument),
        "securityId": o.instrument.security_id.to_string(),
        "quantity": o.quantity,
        "disclosedQuantity": o.disclosed_quantity,
        "price": rupees(o.price),
        "triggerPrice": rupees(o.trigger_price),
        "afterMarketOrder": false,
        "boProfitValue": 0.0,
        "boStopLossValue": 0.0,
        "legName": "NA",
        "createTime": format_ist(o.created),
        "updateTime": format_ist(o.updated),
        "exchangeTime": time(o.exchange_time),
        "drvExpiryDate": UNSET_TIME,
        "drvOptionType": "NA",
        "drvStrikePrice": 0.0,
        "omsErrorCode": if o.status == OrderStatus::Rejected { "RMS" } else { "" },
        "omsErrorDescription": o.reason,
        "algoId": "0",
        "remainingQuantity": o.remaining(),
        "averageTradedPrice": rupees(o.average_price()),
        "filledQty": o.filled_qty,
    })
}

pub fn trade(t: &SimTrade, client_id: &str) -> Value {
    json!({
        "dhanClientId": client_id,
        "orderId": t.order_id,
        "exchangeOrderId": t.exchange_order_id,
        "exchangeTradeId": t.trade_id,
        "transactionType": t.txn.name(),
        "exchangeSegment": t.instrument.segment.name(),
        "productType": t.product.to_string(),
        "orderType": t.order_type.to_string(),
        "tradingSymbol": symbol(t.instrument),
        "customSymbol": symbol(t.instrument),
        "securityId": t.instrument.security_id.to_string(),
        "tradedQuantity": t.quantity,
        "tradedPrice": rupees(t.price),
        "createTime": format_ist(t.time),
        "updateTime": format_ist(t.time),
        "exchangeTime": format_ist(t.time),
        "drvExpiryDate": UNSET_TIME,
        "drvOptionType": null,
        "drvStrikePrice": 0.0,
    })
}

pub fn position(p: &SimPosition, ltp: Option<Paise>, client_id: &str) -> Value {
    let kind = match p.net() {
        n if n > 0 => "LONG",
        n if n < 0 => "SHORT",
        _ => "CLOSED",
    };
    json!({
        "dhanClientId": client_id,
        "tradingSymbol": symbol(p.instrument),
        "securityId": p.instrument.security_id.to_string(),
        "positionType": kind,
        "exchangeSegment": p.instrument.segment.name(),
        "productType": p.product.to_string(),
        "buyAvg": rupees(p.buy_avg()),
        "sellAvg": rupees(p.sell_avg()),
        "costPrice": rupees(p.cost_price()),
        "buyQty": p.buy_qty,
        "sellQty": p.sell_qty,
        "netQty": p.net(),
        "realizedProfit": rupees(p.realized()),
        "unrealizedProfit": rupees(p.unrealized(ltp)),
        "rbiReferenceRate": 1.0,
        "multiplier": 1,
        "carryForwardBuyQty": 0,
        "carryForwardSellQty": 0,
        "carryForwardBuyValue": 0.0,
        "carryForwardSellValue": 0.0,
        "dayBuyQty": p.buy_qty,
        "daySellQty": p.sell_qty,
        "dayBuyValue": p.buy_value as f64 / 100.0,
        "daySellValue": p.sell_value as f64 / 100.0,
        "drvExpiryDate": UNSET_TIME,
        "drvOptionType": null,
        "drvStrikePrice": 0.0,
        "crossCurrency": false,
    })
}

/// `GET /fundlimit`, with Dhan's `availabelBalance` and `receiveableAmount` spellings.
pub fn fund_limit(client_id: &str, sod: Paise, utilized: Paise, realized: Paise) -> Value {
    let available = sod - utilized + realized;
    json!({
        "dhanClientId": client_id,
        "availabelBalance": rupees(available),
        "sodLimit": rupees(sod),
        "collateralAmount": 0.0,
        "receiveableAmount": 0.0,
        "utilizedAmount": rupees(utilized),
        "blockedPayoutAmount": 0.0,
        "withdrawableBalance": rupees(available),
    })
}

fn product_letter(p: ProductType) -> &'static str {
    match p {
        ProductType::Cnc => "C",
        ProductType::Intraday => "I",
        ProductType::Margin => "M",
        ProductType::Mtf => "F",
        ProductType::Co => "V",
        ProductType::Bo => "B",
    }
}

fn order_type_code(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "LMT",
        OrderType::Market => "MKT",
        OrderType::StopLoss => "SL",
        OrderType::StopLossMarket => "SLM",
    }
}

/// One `order_alert` message for an order's current state. `upper_status` switches the
/// `Status` spelling from the sample's title case (`Traded`) to upper case (`TRADED`).
pub fn order_alert(o: &SimOrder, client_id: &str, upper_status: bool) -> Value {
    let (exchange, segment) = exchange_letters(o.instrument.segment);
    let status =
        if upper_status { o.status.wire_upper().to_string() } else { o.status.title_case() };
    // Two halves: one `json!` of ~50 keys exceeds the macro's recursion limit.
    let mut data = json!({
        "Exchange": exchange,
        "Segment": segment,
        "Source": if o.source == Source::Api { "P" } else { "N" },
        "SecurityId": o.instrument.security_id.to_string(),
        "ClientId": client_id,
        "ExchOrderNo": o.exchange_order_id,
        "OrderNo": o.order_id,
        "Product": product_letter(o.product),
        "TxnType": if o.txn == crate::domain::Txn::Buy { "B" } else { "S" },
        "OrderType": order_type_code(o.order_type),
        "Validity": o.validity.to_string(),
        "DiscQuantity": o.disclosed_quantity,
        "DiscQtyRem": o.disclosed_quantity,
        "RemainingQuantity": o.remaining(),
        "Quantity": o.quantity,
        "TradedQty": o.filled_qty,
        "Price": rupees(o.price),
        "TriggerPrice": rupees(o.trigger_price),
        "TradedPrice": rupees(o.last_fill_price),
        "AvgTradedPrice": rupees(o.average_price()),
        "AlgoOrdNo": "",
        "OffMktFlag": "0",
        "OrderDateTime": format_ist(o.created),
        "ExchOrderTime": time(o.exchange_time),
        "LastUpdatedTime": format_ist(o.updated),
        "Remarks": "",
        "MktType": "NL",
        "ReasonDescription": o.reason,
    });
    let rest = json!({
        "LegNo": 1,
        "Instrument": "OPTIDX",
        "Symbol": symbol(o.instrument),
        "ProductName": o.product.to_string(),
        "Status": status,
        "LotSize": 1,
        "StrikePrice": 0.0,
        "ExpiryDate": UNSET_TIME,
        "OptType": "XX",
        "DisplayName": symbol(o.instrument),
        "Isin": "NA",
        "Series": "XX",
        "GoodTillDaysDate": format_ist(o.created).get(..10).unwrap_or_default(),
        "RefLtp": rupees(o.last_fill_price),
        "TickSize": 0.05,
        "AlgoId": "0",
        "Multiplier": 1,
        "CorrelationId": o.correlation_id,
    });
    if let (Value::Object(d), Value::Object(r)) = (&mut data, rest) {
        d.extend(r);
    }
    json!({"Type": "order_alert", "Data": data})
}
