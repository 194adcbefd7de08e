//! What a call to Dhan ended as. Every write (place, modify, cancel) ends as exactly one
//! [`WriteOutcome`]:
//!
//! * `Accepted`: a 2xx with an order id. Dhan took the request (the exchange may still reject
//!   the order later; the order book and the order-update socket tell).
//! * `Rejected`: a definitive "no" from the broker, a 4xx with an error body. Nothing was
//!   created; resending the same request gets the same answer.
//! * `NotSent`: the request provably never reached the order system: our rate limiter had no
//!   slot in time, the connection could not be opened or broke while the request was being
//!   written (`send_watch`), or Dhan's gateway answered 429 / DH-904.
//!   Safe to send again later with the same correlation id.
//! * `Unknown`: anything else (timeout, connection lost mid-call, 5xx, a body we cannot read).
//!   The order may or may not exist; never resend blindly: settle it with
//!   [`resolve`](super::resolve) first (spec dhan-v2 §6).
//!
//! Reads fail with a [`CallError`] built from the same parts; a failed read is harmless to retry.

use std::fmt;

use serde::de::DeserializeOwned;

use super::breaker::CallResult;
use super::model::{self, ApiError, DhanErrorCode, ErrorBody, OrderAck};
use super::ratelimit::RateLimitError;

/// A definitive refusal: HTTP 4xx (not 429) with a Dhan or gateway error body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub http_status: u16,
    /// For a gateway error without a Dhan code: `HTTP-<status>`.
    pub code: DhanErrorCode,
    pub error_type: String,
    pub message: String,
}

impl Rejection {
    pub fn from_body(http_status: u16, body: ErrorBody) -> Rejection {
        match body {
            ErrorBody::Dhan(ApiError { error_type, code, message }) => {
                Rejection { http_status, code, error_type, message }
            }
            ErrorBody::Gateway(g) => Rejection {
                http_status,
                code: DhanErrorCode::Other(format!("HTTP-{http_status}")),
                error_type: "Gateway".into(),
                message: format!("{} ({})", g.error, g.path),
            },
            ErrorBody::DataApi { code, message } => Rejection {
                http_status,
                code: DhanErrorCode::Other(code),
                error_type: "Data_API".into(),
                message,
            },
        }
    }

    /// DH-906 "Order is in Transit state" (cancel of an order not yet at the exchange).
    pub fn is_transit(&self) -> bool {
        self.code == DhanErrorCode::OrderError
            && self.message.to_ascii_lowercase().contains("transit")
    }

    /// DH-901, or DH-906 "Invalid Token": the credentials need a reload.
    pub fn is_auth(&self) -> bool {
        self.code == DhanErrorCode::InvalidAuthentication
            || self.http_status == 401
            || (self.code == DhanErrorCode::OrderError
                && self.message.to_ascii_lowercase().contains("token"))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {} {:?}", self.http_status, self.code, self.message)
    }
}

/// The request provably did not reach Dhan's order system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// HTTP 429 / DH-904: Dhan's rate limit. Retry after the limiter's backoff.
    Throttled,
    /// Our own limiter had no slot before the call's deadline.
    RateLimited(RateLimitError),
    /// No connection could be opened (refused, DNS, connect timeout): no byte was sent.
    ConnectFailed(String),
    /// The connection broke while the request was being written (a stale keep-alive
    /// connection): its last bytes never left, so the server cannot have acted on it
    /// (`send_watch`).
    SendFailed(String),
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSent::Throttled => f.write_str("throttled by Dhan (429 DH-904)"),
            NotSent::RateLimited(e) => e.fmt(f),
            NotSent::ConnectFailed(e) => write!(f, "could not connect: {e}"),
            NotSent::SendFailed(e) => write!(f, "connection broke while sending: {e}"),
        }
    }
}

/// Why the answer is unknown: the request may or may not have taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// No complete answer within the call's timeout.
    Timeout(String),
    /// The connection broke after the request started (reset, closed, broken pipe).
    ConnectionLost(String),
    /// HTTP 5xx (DH-908/DH-909 or a bare gateway failure).
    ServerError { http_status: u16, error: Option<ApiError> },
    /// An answer we cannot read: a 2xx without an order id, a 4xx without an error body,
    /// a status we do not expect.
    Unparseable { http_status: u16, detail: String },
    /// Any other transport failure.
    Transport(String),
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unknown::Timeout(e) => write!(f, "timed out: {e}"),
            Unknown::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            Unknown::ServerError { http_status, error: Some(e) } => {
                write!(f, "server error HTTP {http_status}: {e}")
            }
            Unknown::ServerError { http_status, error: None } => {
                write!(f, "server error HTTP {http_status}")
            }
            Unknown::Unparseable { http_status, detail } => {
                write!(f, "unreadable answer (HTTP {http_status}): {detail}")
            }
            Unknown::Transport(e) => write!(f, "transport failure: {e}"),
        }
    }
}

/// How a place, modify or cancel ended. `#[must_use]`: an ignored outcome is a lost order.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Accepted(OrderAck),
    Rejected(Rejection),
    NotSent(NotSent),
    Unknown(Unknown),
}

impl WriteOutcome {
    /// How the circuit breaker should count this call.
    pub fn breaker_result(&self) -> CallResult {
        match self {
            WriteOutcome::Accepted(_) => CallResult::Success,
            WriteOutcome::Rejected(_) => CallResult::Rejected,
            // Dhan answered (429), or we never tried: says nothing bad about the link.
            WriteOutcome::NotSent(NotSent::Throttled | NotSent::RateLimited(_)) => {
                CallResult::Rejected
            }
            WriteOutcome::NotSent(NotSent::ConnectFailed(_) | NotSent::SendFailed(_))
            | WriteOutcome::Unknown(_) => CallResult::TransportFailure,
        }
    }

    pub const fn kind(&self) -> &'static str {
        match self {
            WriteOutcome::Accepted(_) => "accepted",
            WriteOutcome::Rejected(_) => "rejected",
            WriteOutcome::NotSent(_) => "not_sent",
            WriteOutcome::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteOutcome::Accepted(a) => {
                write!(f, "accepted as order {} ({})", a.order_id, a.order_status)
            }
            WriteOutcome::Rejected(r) => write!(f, "rejected: {r}"),
            WriteOutcome::NotSent(n) => write!(f, "not sent: {n}"),
            WriteOutcome::Unknown(u) => write!(f, "unknown: {u}"),
        }
    }
}

/// Why a read failed. Reads change nothing, so any of these may simply be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{endpoint}: rejected: {rejection}")]
    Rejected { endpoint: &'static str, rejection: Rejection },
    #[error("{endpoint}: not sent: {reason}")]
    NotSent { endpoint: &'static str, reason: NotSent },
    #[error("{endpoint}: failed: {reason}")]
    Failed { endpoint: &'static str, reason: Unknown },
}

impl CallError {
    pub fn breaker_result(&self) -> CallResult {
        match self {
            CallError::Rejected { .. }
            | CallError::NotSent { reason: NotSent::Throttled | NotSent::RateLimited(_), .. } => {
                CallResult::Rejected
            }
            CallError::NotSent {
                reason: NotSent::ConnectFailed(_) | NotSent::SendFailed(_),
                ..
            }
            | CallError::Failed { .. } => CallResult::TransportFailure,
        }
    }
}

/// Interprets the answer to a write. Pure: the heart of "accepted / rejected / not sent /
/// unknown".
pub fn classify_write(status: u16, body: &[u8]) -> WriteOutcome {
    match status {
        200..=299 => match serde_json::from_slice::<OrderAck>(body) {
            Ok(ack) if !ack.order_id.0.is_empty() => WriteOutcome::Accepted(ack),
            Ok(_) => WriteOutcome::Unknown(Unknown::Unparseable {
                http_status: status,
                detail: "empty orderId".into(),
            }),
            Err(e) => WriteOutcome::Unknown(Unknown::Unparseable {
                http_status: status,
                detail: format!("no order acknowledgement: {e}"),
            }),
        },
        429 => WriteOutcome::NotSent(NotSent::Throttled),
        400..=499 => match model::parse_error_body(body) {
            Some(ErrorBody::Dhan(e)) if e.code == DhanErrorCode::RateLimit => {
                WriteOutcome::NotSent(NotSent::Throttled)
            }
            Some(b) => WriteOutcome::Rejected(Rejection::from_body(status, b)),
            None => WriteOutcome::Unknown(Unknown::Unparseable {
                http_status: status,
                detail: format!("no error body: {}", snippet(body)),
            }),
        },
        500..=599 => WriteOutcome::Unknown(Unknown::ServerError {
            http_status: status,
            error: match model::parse_error_body(body) {
                Some(ErrorBody::Dhan(e)) => Some(e),
                _ => None,
            },
        }),
        _ => WriteOutcome::Unknown(Unknown::Unparseable {
            http_status: status,
            detail: format!("unexpected status: {}", snippet(body)),
        }),
    }
}

/// Interprets the answer to a read.
pub(crate) fn classify_read<T: DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    body: &[u8],
) -> Result<T, CallError> {
    match status {
        200..=299 => {
            // An empty 2xx body (Dhan's 202s) reads as `{}`.
            let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
            serde_json::from_slice(bytes).map_err(|e| CallError::Failed {
                endpoint,
                reason: Unknown::Unparseable {
                    http_status: status,
                    detail: format!("{e}: {}", snippet(body)),
                },
            })
        }
        _ => match classify_write(status, body) {
            WriteOutcome::Rejected(rejection) => Err(CallError::Rejected { endpoint, rejection }),
            WriteOutcome::NotSent(reason) => Err(CallError::NotSent { endpoint, reason }),
            WriteOutcome::Unknown(reason) => Err(CallError::Failed { endpoint, reason }),
            WriteOutcome::Accepted(_) => unreachable!("only 2xx is accepted"),
        },
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::model::{GatewayError, OrderStatus};
    use crate::domain::OrderId;

    #[test]
    fn only_transport_trouble_counts_against_the_breaker() {
        let ack = OrderAck { order_id: OrderId("1".into()), order_status: OrderStatus::Transit };
        let rej = Rejection {
            http_status: 400,
            code: DhanErrorCode::InputException,
            error_type: "Input_Exception".into(),
            message: "bad".into(),
        };
        let table = [
            (WriteOutcome::Accepted(ack), CallResult::Success),
            (WriteOutcome::Rejected(rej), CallResult::Rejected),
            (WriteOutcome::NotSent(NotSent::Throttled), CallResult::Rejected),
            (
                WriteOutcome::NotSent(NotSent::ConnectFailed("refused".into())),
                CallResult::TransportFailure,
            ),
            (WriteOutcome::Unknown(Unknown::Timeout("2s".into())), CallResult::TransportFailure),
            (
                WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, error: None }),
                CallResult::TransportFailure,
            ),
        ];
        for (outcome, want) in table {
            assert_eq!(outcome.breaker_result(), want, "{outcome}");
        }
    }

    #[test]
    fn gateway_404_becomes_a_rejection_with_an_http_code() {
        let r = Rejection::from_body(
            404,
            ErrorBody::Gateway(GatewayError {
                timestamp: String::new(),
                status: 404,
                error: "Not Found".into(),
                path: "/v2/nope".into(),
            }),
        );
        assert_eq!(r.code, DhanErrorCode::Other("HTTP-404".into()));
        assert!(r.message.contains("/v2/nope"));
    }

    #[test]
    fn transit_and_auth_rejections_are_recognised() {
        let transit = Rejection::from_body(
            400,
            ErrorBody::Dhan(ApiError::new(
                "Order_Error",
                DhanErrorCode::OrderError,
                "Order is in Transit state",
            )),
        );
        assert!(transit.is_transit() && !transit.is_auth());
        let token = Rejection::from_body(
            400,
            ErrorBody::Dhan(ApiError::new(
                "Order_Error",
                DhanErrorCode::OrderError,
                "Invalid Token",
            )),
        );
        assert!(token.is_auth());
    }
    #[test]
    fn write_answers_classify_per_the_spec() {
        let dh = |code: &str, msg: &str| {
            format!(r#"{{"errorType":"x","errorCode":"{code}","errorMessage":"{msg}"}}"#)
                .into_bytes()
        };
        assert!(matches!(
            classify_write(200, br#"{"orderId":"5","orderStatus":"TRANSIT"}"#),
            WriteOutcome::Accepted(OrderAck { order_status: OrderStatus::Transit, .. })
        ));
        assert!(
            matches!(classify_write(400, &dh("DH-905", "bad")), WriteOutcome::Rejected(r) if r.code == DhanErrorCode::InputException)
        );
        assert!(
            matches!(classify_write(400, &dh("DH-906", "Order is in Transit state")), WriteOutcome::Rejected(r) if r.is_transit())
        );
        assert!(matches!(
            classify_write(429, &dh("DH-904", "slow")),
            WriteOutcome::NotSent(NotSent::Throttled)
        ));
        assert!(matches!(
            classify_write(400, &dh("DH-904", "slow")),
            WriteOutcome::NotSent(NotSent::Throttled)
        ));
        assert!(matches!(classify_write(429, b""), WriteOutcome::NotSent(NotSent::Throttled)));
        assert!(matches!(
            classify_write(500, &dh("DH-908", "oops")),
            WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, error: Some(_) })
        ));
        assert!(matches!(
            classify_write(502, b"<html>"),
            WriteOutcome::Unknown(Unknown::ServerError { error: None, .. })
        ));
        assert!(matches!(
            classify_write(200, b"<html>"),
            WriteOutcome::Unknown(Unknown::Unparseable { .. })
        ));
        assert!(matches!(
            classify_write(200, b"{}"),
            WriteOutcome::Unknown(Unknown::Unparseable { .. })
        ));
        assert!(matches!(
            classify_write(400, b"garbage"),
            WriteOutcome::Unknown(Unknown::Unparseable { .. })
        ));
        assert!(matches!(
            classify_write(404, br#"{"timestamp":"t","status":404,"error":"Not Found","path":"/v2/x"}"#),
            WriteOutcome::Rejected(r) if r.http_status == 404
        ));
        assert!(matches!(classify_write(302, b""), WriteOutcome::Unknown(_)));
    }
}
