//! The JSON text frames a client sends on the feed socket (spec dhan-v2 §1.2): subscribe and
//! unsubscribe per mode, batched at ≤ 100 instruments per message with `SecurityId` as a JSON
//! string, and the disconnect request. The reader writes them; the simulator parses them with
//! [`parse_request`], which says exactly what is wrong with a bad one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{InstrumentKey, Segment};

/// Dhan's limit on instruments in one subscribe/unsubscribe message.
pub const MAX_INSTRUMENTS_PER_MESSAGE: usize = 100;
/// Dhan's limit on instruments subscribed on one connection.
pub const MAX_INSTRUMENTS_PER_CONNECTION: usize = 5000;
/// `{"RequestCode":12}`: the client ends the feed.
pub const DISCONNECT_REQUEST_CODE: u16 = 12;

/// Subscription mode: which packets the server sends for an instrument (spec §1.5).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FeedMode {
    /// Code 2 (LTP and LTT).
    Ticker,
    /// Codes 4 and 5 (quote statistics, open interest).
    #[default]
    Quote,
    /// Code 8 (quote, open interest, 5-level depth).
    Full,
}

impl FeedMode {
    pub const ALL: [FeedMode; 3] = [FeedMode::Ticker, FeedMode::Quote, FeedMode::Full];

    pub const fn subscribe_code(self) -> u16 {
        match self {
            FeedMode::Ticker => 15,
            FeedMode::Quote => 17,
            FeedMode::Full => 21,
        }
    }

    /// Unsubscribe is the subscribe code + 1.
    pub const fn unsubscribe_code(self) -> u16 {
        self.subscribe_code() + 1
    }

    pub const fn name(self) -> &'static str {
        match self {
            FeedMode::Ticker => "ticker",
            FeedMode::Quote => "quote",
            FeedMode::Full => "full",
        }
    }
}

impl fmt::Display for FeedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FeedMode {
    type Err = String;
    fn from_str(s: &str) -> Result<FeedMode, String> {
        FeedMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not a feed mode (ticker, quote or full)"))
    }
}

/// One client request on the feed socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedRequest {
    Subscribe { mode: FeedMode, instruments: Vec<InstrumentKey> },
    Unsubscribe { mode: FeedMode, instruments: Vec<InstrumentKey> },
    Disconnect,
}

impl FeedRequest {
    pub fn request_code(&self) -> u16 {
        match self {
            FeedRequest::Subscribe { mode, .. } => mode.subscribe_code(),
            FeedRequest::Unsubscribe { mode, .. } => mode.unsubscribe_code(),
            FeedRequest::Disconnect => DISCONNECT_REQUEST_CODE,
        }
    }

    /// The request as one JSON text frame, unbatched (use [`subscribe_messages`] /
    /// [`unsubscribe_messages`] to respect the 100-instrument limit).
    pub fn to_json(&self) -> String {
        match self {
            FeedRequest::Subscribe { instruments, .. }
            | FeedRequest::Unsubscribe { instruments, .. } => {
                list_message(self.request_code(), instruments)
            }
            FeedRequest::Disconnect => {
                json!({ "RequestCode": DISCONNECT_REQUEST_CODE }).to_string()
            }
        }
    }
}

fn list_message(code: u16, instruments: &[InstrumentKey]) -> String {
    let list: Vec<Value> = instruments
        .iter()
        .map(|k| {
            json!({ "ExchangeSegment": k.segment.name(), "SecurityId": k.security_id.to_string() })
        })
        .collect();
    json!({ "RequestCode": code, "InstrumentCount": list.len(), "InstrumentList": list })
        .to_string()
}

/// Subscribe messages for `instruments` in `mode`, at most 100 instruments each. Empty input
/// gives no message.
pub fn subscribe_messages(mode: FeedMode, instruments: &[InstrumentKey]) -> Vec<String> {
    instruments
        .chunks(MAX_INSTRUMENTS_PER_MESSAGE)
        .map(|c| list_message(mode.subscribe_code(), c))
        .collect()
}

/// Unsubscribe messages for `instruments` in `mode`, at most 100 instruments each.
pub fn unsubscribe_messages(mode: FeedMode, instruments: &[InstrumentKey]) -> Vec<String> {
    instruments
        .chunks(MAX_INSTRUMENTS_PER_MESSAGE)
        .map(|c| list_message(mode.unsubscribe_code(), c))
        .collect()
}

/// `{"RequestCode":12}`.
pub fn disconnect_message() -> String {
    FeedRequest::Disconnect.to_json()
}

/// Why a client's text frame is not a valid feed request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("feed request is not a JSON object: {0}")]
    NotJson(String),
    #[error("feed request has no numeric {0}")]
    MissingField(&'static str),
    #[error("feed request code {0} is not one of 12, 15-18, 21-22")]
    UnknownRequestCode(i64),
    #[error("feed request declares InstrumentCount {declared} but lists {actual} instruments")]
    CountMismatch { declared: i64, actual: usize },
    #[error("feed request lists {count} instruments, more than the {max} allowed per message", max = MAX_INSTRUMENTS_PER_MESSAGE)]
    TooManyInstruments { count: usize },
    #[error("feed request instrument #{index}: {what}")]
    BadInstrument { index: usize, what: String },
}

/// Parses one client text frame. Accepts exactly what Dhan documents: `RequestCode` and
/// `InstrumentCount` as numbers, `ExchangeSegment` as a segment name, `SecurityId` as a string
/// of digits (a JSON number is refused: Dhan's type is string).
pub fn parse_request(text: &str) -> Result<FeedRequest, RequestError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| RequestError::NotJson(format!("got {value}")))?;
    let code = obj
        .get("RequestCode")
        .and_then(Value::as_i64)
        .ok_or(RequestError::MissingField("RequestCode"))?;
    if code == i64::from(DISCONNECT_REQUEST_CODE) {
        return Ok(FeedRequest::Disconnect);
    }
    let (mode, subscribe) = FeedMode::ALL
        .into_iter()
        .find_map(|m| {
            if i64::from(m.subscribe_code()) == code {
                Some((m, true))
            } else if i64::from(m.unsubscribe_code()) == code {
                Some((m, false))
            } else {
                None
            }
        })
        .ok_or(RequestError::UnknownRequestCode(code))?;
    let declared = obj
        .get("InstrumentCount")
        .and_then(Value::as_i64)
        .ok_or(RequestError::MissingField("InstrumentCount"))?;
    let list = obj
        .get("InstrumentList")
        .and_then(Value::as_array)
        .ok_or(RequestError::MissingField("InstrumentList"))?;
    if declared < 0 || declared as usize != list.len() {
        return Err(RequestError::CountMismatch { declared, actual: list.len() });
    }
    if list.len() > MAX_INSTRUMENTS_PER_MESSAGE {
        return Err(RequestError::TooManyInstruments { count: list.len() });
    }
    let instruments = list
        .iter()
        .enumerate()
        .map(|(index, item)| {
            parse_instrument(item).map_err(|what| RequestError::BadInstrument { index, what })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if subscribe {
        FeedRequest::Subscribe { mode, instruments }
    } else {
        FeedRequest::Unsubscribe { mode, instruments }
    })
}

fn parse_instrument(item: &Value) -> Result<InstrumentKey, String> {
    let segment = match item.get("ExchangeSegment") {
        Some(Value::String(name)) => {
            Segment::from_name(name).ok_or_else(|| format!("unknown ExchangeSegment {name:?}"))?
        }
        Some(other) => return Err(format!("ExchangeSegment must be a string, got {other}")),
        None => return Err("missing ExchangeSegment".to_string()),
    };
    let id = match item.get("SecurityId") {
        Some(Value::String(text)) => text
            .parse::<u32>()
            .ok()
            .filter(|_| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("SecurityId {text:?} is not a positive integer"))?,
        Some(other) => return Err(format!("SecurityId must be a JSON string, got {other}")),
        None => return Err("missing SecurityId".to_string()),
    };
    Ok(InstrumentKey::new(segment, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u32) -> Vec<InstrumentKey> {
        (1..=n).map(|i| InstrumentKey::new(Segment::NseFno, 40_000 + i)).collect()
    }

    #[test]
    fn subscribe_message_matches_the_documented_shape() {
        let msgs = subscribe_messages(
            FeedMode::Quote,
            &[InstrumentKey::new(Segment::NseEq, 1333), InstrumentKey::new(Segment::NseFno, 52175)],
        );
        assert_eq!(msgs.len(), 1);
        let v: Value = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(
            v,
            json!({"RequestCode": 17, "InstrumentCount": 2, "InstrumentList": [
                {"ExchangeSegment": "NSE_EQ", "SecurityId": "1333"},
                {"ExchangeSegment": "NSE_FNO", "SecurityId": "52175"}]})
        );
    }

    #[test]
    fn request_codes_per_mode_are_15_17_21_and_plus_one_to_unsubscribe() {
        let got: Vec<(u16, u16)> =
            FeedMode::ALL.iter().map(|m| (m.subscribe_code(), m.unsubscribe_code())).collect();
        assert_eq!(got, [(15, 16), (17, 18), (21, 22)]);
        assert_eq!(disconnect_message(), r#"{"RequestCode":12}"#);
    }

    #[test]
    fn batches_hold_at_most_100_instruments() {
        for (n, expected) in [
            (0, vec![]),
            (1, vec![1]),
            (100, vec![100]),
            (101, vec![100, 1]),
            (250, vec![100, 100, 50]),
        ] {
            let sizes: Vec<usize> = unsubscribe_messages(FeedMode::Full, &keys(n))
                .iter()
                .map(|m| match parse_request(m).unwrap() {
                    FeedRequest::Unsubscribe { mode: FeedMode::Full, instruments } => {
                        instruments.len()
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(sizes, expected, "{n} instruments");
        }
    }

    #[test]
    fn written_requests_parse_back_to_the_same_request() {
        for mode in FeedMode::ALL {
            let instruments = keys(7);
            for req in [
                FeedRequest::Subscribe { mode, instruments: instruments.clone() },
                FeedRequest::Unsubscribe { mode, instruments: instruments.clone() },
            ] {
                assert_eq!(parse_request(&req.to_json()), Ok(req));
            }
        }
        assert_eq!(parse_request(r#"{"RequestCode":12}"#), Ok(FeedRequest::Disconnect));
    }

    #[test]
    fn malformed_requests_get_clear_errors() {
        let over_limit = FeedRequest::Subscribe { mode: FeedMode::Ticker, instruments: keys(101) };
        let cases: Vec<(&str, String, RequestError)> = vec![
            ("not_json", "subscribe".into(), RequestError::NotJson(String::new())),
            ("array", "[1]".into(), RequestError::NotJson(String::new())),
            ("no_code", "{}".into(), RequestError::MissingField("RequestCode")),
            ("v1_connect", r#"{"RequestCode":11}"#.into(), RequestError::UnknownRequestCode(11)),
            ("v1_depth", r#"{"RequestCode":19,"InstrumentCount":0,"InstrumentList":[]}"#.into(), RequestError::UnknownRequestCode(19)),
            ("no_count", r#"{"RequestCode":15,"InstrumentList":[]}"#.into(), RequestError::MissingField("InstrumentCount")),
            ("no_list", r#"{"RequestCode":15,"InstrumentCount":0}"#.into(), RequestError::MissingField("InstrumentList")),
            (
                "count_mismatch",
                r#"{"RequestCode":15,"InstrumentCount":2,"InstrumentList":[{"ExchangeSegment":"NSE_EQ","SecurityId":"1"}]}"#.into(),
                RequestError::CountMismatch { declared: 2, actual: 1 },
            ),
            ("over_100", over_limit.to_json(), RequestError::TooManyInstruments { count: 101 }),
            (
                "numeric_security_id",
                r#"{"RequestCode":17,"InstrumentCount":1,"InstrumentList":[{"ExchangeSegment":"NSE_EQ","SecurityId":1333}]}"#.into(),
                RequestError::BadInstrument { index: 0, what: "SecurityId must be a JSON string, got 1333".into() },
            ),
            (
                "negative_security_id",
                r#"{"RequestCode":17,"InstrumentCount":1,"InstrumentList":[{"ExchangeSegment":"NSE_EQ","SecurityId":"-5"}]}"#.into(),
                RequestError::BadInstrument { index: 0, what: "SecurityId \"-5\" is not a positive integer".into() },
            ),
            (
                "unknown_segment",
                r#"{"RequestCode":17,"InstrumentCount":1,"InstrumentList":[{"ExchangeSegment":"NSE_XX","SecurityId":"5"}]}"#.into(),
                RequestError::BadInstrument { index: 0, what: "unknown ExchangeSegment \"NSE_XX\"".into() },
            ),
        ];
        for (name, text, expected) in cases {
            let got = parse_request(&text);
            match (&got, &expected) {
                (Err(RequestError::NotJson(_)), RequestError::NotJson(_)) => {}
                _ => assert_eq!(got, Err(expected), "{name}"),
            }
        }
    }

    #[test]
    fn feed_mode_parses_case_insensitively() {
        assert_eq!("FULL".parse::<FeedMode>(), Ok(FeedMode::Full));
        assert!("depth".parse::<FeedMode>().is_err());
    }
}
