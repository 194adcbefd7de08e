//! Dhan v2 wire models: what the REST client sends and receives and what the order-update
//! socket pushes (spec dhan-v2 §3, §4). Decoding is tolerant exactly where the spec lists quirks
//! (status casing, unknown enum values, numbers as strings, `availabelBalance`, object-or-array,
//! IST strings and sentinels); prices become exact [`Paise`](crate::domain::Paise) at the parse
//! and never travel further as floats. The REST client (`rest.rs`) and the order-update client
//! (`order_updates.rs`) use these; the simulator (`sim::broker`) writes the same shapes.

pub mod errors;
pub mod order_alert;
pub mod orders;
pub mod portfolio;
pub mod wire;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{Segment, Txn};

pub use errors::{ApiError, DhanErrorCode, ErrorBody, GatewayError, parse_error_body};
pub use order_alert::{AlertParseError, FrameItem, OrderUpdate, parse_frame, parse_order_alert};
pub use orders::{
    ModifyOrder, ModifyOrderBody, Order, OrderAck, PlaceOrder, PlaceOrderBody, Trade,
};
pub use portfolio::{
    FundLimit, KillSwitchState, KillSwitchStatus, LtpRequest, Position, parse_ltp_response,
};
pub use wire::WireError;

/// A closed set of names as Dhan spells them on the wire.
pub trait WireEnum: Sized + Copy {
    /// Case-insensitive; `None` for a name this build does not know.
    fn from_wire(text: &str) -> Option<Self>;
    fn wire_name(self) -> &'static str;
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl WireEnum for $name {
            fn from_wire(text: &str) -> Option<$name> {
                let t = text.trim();
                $(if t.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
            fn wire_name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.wire_name())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.wire_name())
            }
        }
    };
}

wire_enum!(
    /// `productType` (spec §4.2).
    ProductType { Cnc => "CNC", Intraday => "INTRADAY", Margin => "MARGIN", Mtf => "MTF", Co => "CO", Bo => "BO" }
);
wire_enum!(
    /// `orderType` (spec §4.2).
    OrderType { Limit => "LIMIT", Market => "MARKET", StopLoss => "STOP_LOSS", StopLossMarket => "STOP_LOSS_MARKET" }
);
wire_enum!(
    /// `validity` (spec §4.2).
    Validity { Day => "DAY", Ioc => "IOC" }
);
wire_enum!(
    /// `positionType` (spec §4.2).
    PositionType { Long => "LONG", Short => "SHORT", Closed => "CLOSED" }
);

impl WireEnum for Txn {
    fn from_wire(text: &str) -> Option<Txn> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("BUY") || t.eq_ignore_ascii_case("B") {
            Some(Txn::Buy)
        } else if t.eq_ignore_ascii_case("SELL") || t.eq_ignore_ascii_case("S") {
            Some(Txn::Sell)
        } else {
            None
        }
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireEnum for Segment {
    fn from_wire(text: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(text.trim()))
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

/// An enum field decoded without failing: a name we know, or the text as received (an order
/// placed from the web app may carry values this build has never seen).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lenient<T> {
    Known(T),
    Unknown(String),
}

impl<T: WireEnum> Lenient<T> {
    pub fn parse(text: &str) -> Lenient<T> {
        match T::from_wire(text) {
            Some(v) => Lenient::Known(v),
            None => Lenient::Unknown(text.to_string()),
        }
    }

    pub fn known(&self) -> Option<T> {
        match self {
            Lenient::Known(v) => Some(*v),
            Lenient::Unknown(_) => None,
        }
    }
}

impl<T> Default for Lenient<T> {
    fn default() -> Lenient<T> {
        Lenient::Unknown(String::new())
    }
}

impl<T: WireEnum> From<T> for Lenient<T> {
    fn from(v: T) -> Lenient<T> {
        Lenient::Known(v)
    }
}

impl<'de, T: WireEnum> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient<T>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Lenient::parse(&wire::string_from_value(&v)))
    }
}

impl<T: WireEnum> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Known(v) => s.serialize_str(v.wire_name()),
            Lenient::Unknown(text) => s.serialize_str(text),
        }
    }
}

/// `orderStatus` / `Status` (spec §4.2, §3.2). Read case-insensitively (`Traded`, `TRADED`,
/// `Part_Traded`, `part-traded` are all understood); a value this build does not know is kept
/// as `Other` rather than failing the whole message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Transit,
    Pending,
    PartTraded,
    Traded,
    Cancelled,
    Rejected,
    Expired,
    /// Super orders.
    Closed,
    /// Super orders.
    Triggered,
    /// The slicing response.
    Confirm,
    Modified,
    Inactive,
    Other(String),
}

impl OrderStatus {
    pub fn parse(text: &str) -> OrderStatus {
        let norm: String = text
            .trim()
            .chars()
            .filter_map(|c| match c {
                '-' | ' ' | '_' => None,
                c => Some(c.to_ascii_uppercase()),
            })
            .collect();
        match norm.as_str() {
            "TRANSIT" => OrderStatus::Transit,
            "PENDING" | "OPEN" => OrderStatus::Pending,
            "PARTTRADED" | "PARTIALLYTRADED" | "PARTIALLYFILLED" => OrderStatus::PartTraded,
            "TRADED" | "FILLED" => OrderStatus::Traded,
            "CANCELLED" | "CANCELED" => OrderStatus::Cancelled,
            "REJECTED" => OrderStatus::Rejected,
            "EXPIRED" => OrderStatus::Expired,
            "CLOSED" => OrderStatus::Closed,
            "TRIGGERED" => OrderStatus::Triggered,
            "CONFIRM" | "CONFIRMED" => OrderStatus::Confirm,
            "MODIFIED" => OrderStatus::Modified,
            "INACTIVE" => OrderStatus::Inactive,
            _ => OrderStatus::Other(text.to_string()),
        }
    }

    /// The REST spelling: `PART_TRADED`.
    pub fn wire_upper(&self) -> &str {
        match self {
            OrderStatus::Transit => "TRANSIT",
            OrderStatus::Pending => "PENDING",
            OrderStatus::PartTraded => "PART_TRADED",
            OrderStatus::Traded => "TRADED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Closed => "CLOSED",
            OrderStatus::Triggered => "TRIGGERED",
            OrderStatus::Confirm => "CONFIRM",
            OrderStatus::Modified => "MODIFIED",
            OrderStatus::Inactive => "INACTIVE",
            OrderStatus::Other(text) => text,
        }
    }

    /// The title-case spelling the order-update socket's sample shows: `Traded`, `Part_Traded`.
    pub fn title_case(&self) -> String {
        let upper = self.wire_upper();
        let mut out = String::with_capacity(upper.len());
        let mut start = true;
        for c in upper.chars() {
            out.push(if start { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
            start = c == '_';
        }
        out
    }

    /// No further fill or transition can follow.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderStatus::Traded
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
                | OrderStatus::Closed
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_upper())
    }
}

impl<'de> Deserialize<'de> for OrderStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrderStatus, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(OrderStatus::parse(&wire::string_from_value(&v)))
    }
}

impl Serialize for OrderStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.wire_upper())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_case_insensitively() {
        let cases = [
            ("TRADED", OrderStatus::Traded),
            ("Traded", OrderStatus::Traded),
            ("traded", OrderStatus::Traded),
            ("Part_Traded", OrderStatus::PartTraded),
            ("PART_TRADED", OrderStatus::PartTraded),
            ("part-traded", OrderStatus::PartTraded),
            ("Cancelled", OrderStatus::Cancelled),
            ("Transit", OrderStatus::Transit),
            (" PENDING ", OrderStatus::Pending),
        ];
        for (text, want) in cases {
            assert_eq!(OrderStatus::parse(text), want, "{text}");
        }
    }

    #[test]
    fn unknown_status_is_kept_without_failing() {
        let s: OrderStatus = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(s, OrderStatus::Other("SOMETHING_NEW".into()));
        assert!(!s.is_terminal());
    }

    #[test]
    fn status_spellings_for_the_simulator() {
        assert_eq!(OrderStatus::PartTraded.wire_upper(), "PART_TRADED");
        assert_eq!(OrderStatus::PartTraded.title_case(), "Part_Traded");
        assert_eq!(OrderStatus::Cancelled.title_case(), "Cancelled");
    }

    #[test]
    fn unknown_enum_values_decode_as_lenient_unknown() {
        let p: Lenient<ProductType> = serde_json::from_str("\"intraday\"").unwrap();
        assert_eq!(p, Lenient::Known(ProductType::Intraday));
        let s: Lenient<Segment> = serde_json::from_str("\"NSE_COMM\"").unwrap();
        assert_eq!(s, Lenient::Unknown("NSE_COMM".into()));
        let n: Lenient<OrderType> = serde_json::from_str("null").unwrap();
        assert_eq!(n, Lenient::Unknown(String::new()));
    }
}
