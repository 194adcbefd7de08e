//! The operator's surface: metrics, health, the HTTP server with the control API, logging.

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
