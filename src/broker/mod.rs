//! The broker side of the engine: Dhan's v2 REST API and order-update socket.
//!
//! `model` holds the wire shapes; `rest` is the blocking HTTP client; `outcome` says what a
//! write ended as (accepted, rejected, not sent, unknown) and `resolve` settles an unknown
//! placement by correlation id; `ratelimit` and `breaker` guard the link; `order_updates` is the
//! worker that reads the order-update socket. `journal` is the write-ahead record of every
//! placement (the write-ahead log of the order book, `exec::order_book`, which turns the
//! broker's reports into our fills exactly once), and `reconcile` compares the broker's books with the engine's positions. The order router (in `exec`) decides when to call
//! any of this; the simulator (`sim::broker`) is the other end of every test.

pub mod breaker;
pub mod credentials;
mod dns;
pub mod journal;
pub mod keep_warm;
pub mod model;
pub mod order_updates;
pub mod outcome;
pub mod ratelimit;
pub mod reconcile;
pub mod resolve;
pub mod rest;
mod send_watch;

pub use credentials::{
    AccessToken, CredentialError, CredentialSource, Credentials, ReloadableCredentials,
    StaticCredentials,
};

/// Log targets of dependencies that print what they send at `trace` level: tungstenite the
/// WebSocket frame payloads (the order-update login frame carries the access token), ureq_proto
/// a hex dump of every HTTP request (the `access-token` and `client-id` headers). Whatever sets
/// up logging must cap these at `debug`; [`log_level_cap`] says so for any target.
pub const TOKEN_BEARING_LOG_TARGETS: &[&str] = &["tungstenite", "ureq_proto"];

/// Log targets that print a request's whole URL at `debug` once `trace` is enabled anywhere
/// (ureq): an alert target's URL carries its token (a Slack webhook, the Telegram bot API), so
/// these are capped at `info`.
pub const URL_BEARING_LOG_TARGETS: &[&str] = &["ureq"];

/// The most verbose level at which `target` may log without risking the access token.
pub fn log_level_cap(target: &str) -> log::LevelFilter {
    if URL_BEARING_LOG_TARGETS.iter().any(|t| target == *t || target.starts_with(&format!("{t}::")))
    {
        return log::LevelFilter::Info;
    }
    if TOKEN_BEARING_LOG_TARGETS
        .iter()
        .any(|t| target == *t || target.starts_with(&format!("{t}::")))
    {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Trace
    }
}
