//! Error bodies (spec dhan-v2 §4.8): Dhan's `{errorType, errorCode, errorMessage}`, the Spring
//! gateway's `{timestamp, status, error, path}` for an unknown path, and the data APIs'
//! `{"status":"failed","data":{"813":"..."}}`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire;

/// `errorCode`. Key decisions off the code; for DH-905/DH-906 also off the message, because each
/// covers unrelated causes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DhanErrorCode {
    /// DH-901: client id or token invalid or expired.
    InvalidAuthentication,
    /// DH-902: no Data API subscription or no trading access.
    InvalidAccess,
    /// DH-903: account problem (segment not activated...).
    UserAccount,
    /// DH-904: rate limit.
    RateLimit,
    /// DH-905: input exception (missing or bad fields, "Invalid IP", over-long correlation id).
    InputException,
    /// DH-906: order error ("Order is in Transit state", unknown order, "Invalid Token").
    OrderError,
    /// DH-907.
    DataError,
    /// DH-908.
    InternalServerError,
    /// DH-909.
    NetworkError,
    /// DH-910.
    Others,
    /// DH-911 ("Invalid IP", comms-sourced).
    InvalidIp,
    /// DH-1111: "No holdings available".
    NoHoldings,
    /// Any other code, as received.
    Other(String),
}

impl DhanErrorCode {
    pub fn parse(text: &str) -> DhanErrorCode {
        match text.trim().to_ascii_uppercase().as_str() {
            "DH-901" => DhanErrorCode::InvalidAuthentication,
            "DH-902" => DhanErrorCode::InvalidAccess,
            "DH-903" => DhanErrorCode::UserAccount,
            "DH-904" => DhanErrorCode::RateLimit,
            "DH-905" => DhanErrorCode::InputException,
            "DH-906" => DhanErrorCode::OrderError,
            "DH-907" => DhanErrorCode::DataError,
            "DH-908" => DhanErrorCode::InternalServerError,
            "DH-909" => DhanErrorCode::NetworkError,
            "DH-910" => DhanErrorCode::Others,
            "DH-911" => DhanErrorCode::InvalidIp,
            "DH-1111" => DhanErrorCode::NoHoldings,
            _ => DhanErrorCode::Other(text.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DhanErrorCode::InvalidAuthentication => "DH-901",
            DhanErrorCode::InvalidAccess => "DH-902",
            DhanErrorCode::UserAccount => "DH-903",
            DhanErrorCode::RateLimit => "DH-904",
            DhanErrorCode::InputException => "DH-905",
            DhanErrorCode::OrderError => "DH-906",
            DhanErrorCode::DataError => "DH-907",
            DhanErrorCode::InternalServerError => "DH-908",
            DhanErrorCode::NetworkError => "DH-909",
            DhanErrorCode::Others => "DH-910",
            DhanErrorCode::InvalidIp => "DH-911",
            DhanErrorCode::NoHoldings => "DH-1111",
            DhanErrorCode::Other(text) => text,
        }
    }
}

impl fmt::Display for DhanErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dhan's error body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub error_type: String,
    pub code: DhanErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(error_type: &str, code: DhanErrorCode, message: &str) -> ApiError {
        ApiError { error_type: error_type.into(), code, message: message.into() }
    }

    /// The wire form, for the simulator.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "errorType": self.error_type,
            "errorCode": self.code.as_str(),
            "errorMessage": self.message,
        })
    }

    /// DH-906 "Order is in Transit state": the order exists but has not reached the exchange.
    pub fn is_transit(&self) -> bool {
        self.code == DhanErrorCode::OrderError
            && self.message.to_ascii_lowercase().contains("transit")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.code, self.error_type, self.message)
    }
}

/// The Spring gateway's answer to an unknown path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayError {
    #[serde(default, deserialize_with = "wire::de_string")]
    pub timestamp: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default, deserialize_with = "wire::de_string")]
    pub error: String,
    #[serde(default, deserialize_with = "wire::de_string")]
    pub path: String,
}

/// Any error body we recognise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorBody {
    Dhan(ApiError),
    Gateway(GatewayError),
    /// `{"status":"failed","data":{"<code>":"<message>"}}` from the market-data endpoints.
    DataApi {
        code: String,
        message: String,
    },
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorBody::Dhan(e) => e.fmt(f),
            ErrorBody::Gateway(g) => write!(f, "gateway {} {:?} for {}", g.status, g.error, g.path),
            ErrorBody::DataApi { code, message } => write!(f, "data API {code} {message:?}"),
        }
    }
}

/// Recognises an error body; `None` when the bytes are none of the known shapes.
pub fn parse_error_body(bytes: &[u8]) -> Option<ErrorBody> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    if let Some(code) = obj.get("errorCode") {
        let text = |k: &str| obj.get(k).map(wire::string_from_value).unwrap_or_default();
        return Some(ErrorBody::Dhan(ApiError {
            error_type: text("errorType"),
            code: DhanErrorCode::parse(&wire::string_from_value(code)),
            message: text("errorMessage"),
        }));
    }
    if obj.contains_key("path") && obj.contains_key("status") && obj.contains_key("error") {
        return serde_json::from_value(v).ok().map(ErrorBody::Gateway);
    }
    if obj.get("status").and_then(Value::as_str) == Some("failed") {
        let (code, message) = obj
            .get("data")
            .and_then(Value::as_object)
            .and_then(|d| d.iter().next())
            .map(|(k, m)| (k.clone(), wire::string_from_value(m)))
            .unwrap_or_default();
        return Some(ErrorBody::DataApi { code, message });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dhan(body: &str) -> ApiError {
        match parse_error_body(body.as_bytes()) {
            Some(ErrorBody::Dhan(e)) => e,
            other => panic!("not a Dhan error: {other:?}"),
        }
    }

    #[test]
    fn input_exception_dh905() {
        let e = dhan(
            r#"{"errorType":"Input_Exception","errorCode":"DH-905","errorMessage":"Missing required fields, bad values for parameters etc."}"#,
        );
        assert_eq!(e.code, DhanErrorCode::InputException);
        assert_eq!(e.error_type, "Input_Exception");
    }

    #[test]
    fn order_in_transit_dh906() {
        let e = dhan(
            r#"{"errorType":"Order_Error","errorCode":"DH-906","errorMessage":"Order is in Transit state"}"#,
        );
        assert_eq!(e.code, DhanErrorCode::OrderError);
        assert!(e.is_transit());
        let unknown = dhan(
            r#"{"errorType":"Order_Error","errorCode":"DH-906","errorMessage":"Incorrect request for order and cannot be processed"}"#,
        );
        assert!(!unknown.is_transit());
    }

    #[test]
    fn rate_limit_dh904() {
        let e = dhan(
            r#"{"errorType":"Rate_Limit","errorCode":"DH-904","errorMessage":"Too many requests on server from single user breaching rate limits. Try throttling API calls."}"#,
        );
        assert_eq!(e.code, DhanErrorCode::RateLimit);
    }

    #[test]
    fn internal_error_dh908_and_unknown_codes() {
        assert_eq!(
            dhan(r#"{"errorType":"x","errorCode":"DH-908","errorMessage":"m"}"#).code,
            DhanErrorCode::InternalServerError
        );
        assert_eq!(dhan(r#"{"errorCode":"DH-999"}"#).code, DhanErrorCode::Other("DH-999".into()));
    }

    #[test]
    fn spring_gateway_404() {
        let b = r#"{"timestamp":"2026-09-08T04:10:11.123+00:00","status":404,"error":"Not Found","path":"/v2/nope"}"#;
        match parse_error_body(b.as_bytes()) {
            Some(ErrorBody::Gateway(g)) => {
                assert_eq!(g.status, 404);
                assert_eq!(g.path, "/v2/nope");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_api_failure_shape() {
        let b = r#"{"status":"failed","data":{"813":"Invalid SecurityId"}}"#;
        assert_eq!(
            parse_error_body(b.as_bytes()),
            Some(ErrorBody::DataApi { code: "813".into(), message: "Invalid SecurityId".into() })
        );
    }

    #[test]
    fn garbage_is_not_an_error_body() {
        for b in ["", "<html>oops</html>", "[]", "{\"orderId\":\"1\"}"] {
            assert_eq!(parse_error_body(b.as_bytes()), None, "{b}");
        }
    }
}
