//! The operator's surface: metrics, health, the HTTP server with the control API, logging, and
//! `remote`, the command-line client of a running engine (`scalper status`, `scalper flatten`).

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod remote;
