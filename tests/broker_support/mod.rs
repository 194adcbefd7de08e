//! Shared setup for the broker integration tests: a simulator on loopback with a price for
//! the test instrument, a client pointed at it, condition polling, and a logger that captures
//! every log line so a test can prove the access token never appears in one.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use scalper::broker::credentials::{CredentialSource, Credentials, StaticCredentials};
use scalper::broker::ratelimit::{LimiterConfig, RateLimiter};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::{CorrelationId, InstrumentKey, Paise, Qty, Segment, Timestamp, Txn};
use scalper::sim::broker::{SimBroker, SimBrokerConfig};
use scalper::sim::prices::PriceBoard;

#[path = "../log_capture/mod.rs"]
mod log_capture;
#[allow(unused_imports)]
pub use log_capture::{capture_logs, captured};

pub const CLIENT_ID: &str = "1000000001";
/// Long and distinctive, so that any leak into a log line is found by a substring search.
pub const TOKEN: &str = "eyJhbGciOiJIUzUxMiJ9.simulated-secret-token-4f7c2a9e";
pub const NIFTY_PUT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
pub const NIFTY_CALL: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);

pub fn sim_config() -> SimBrokerConfig {
    SimBrokerConfig {
        client_id: CLIENT_ID.into(),
        access_token: TOKEN.into(),
        transit: Duration::from_millis(150),
        ..SimBrokerConfig::default()
    }
}

pub fn start_sim(cfg: SimBrokerConfig) -> (SimBroker, PriceBoard) {
    capture_logs();
    let prices = PriceBoard::new();
    prices.set(NIFTY_PUT, Paise(12345), Timestamp(0));
    prices.set(NIFTY_CALL, Paise(9870), Timestamp(0));
    let sim = SimBroker::start(cfg, prices.clone()).expect("the simulator starts on loopback");
    (sim, prices)
}

pub fn credentials() -> Arc<dyn CredentialSource> {
    Arc::new(StaticCredentials::new(Credentials::new(CLIENT_ID, TOKEN)))
}

pub fn rest_config(sim: &SimBroker) -> RestConfig {
    RestConfig {
        request_timeout: Duration::from_millis(1500),
        connect_timeout: Duration::from_millis(500),
        ..RestConfig::new(sim.base_url())
    }
}

pub fn client(sim: &SimBroker) -> DhanClient {
    DhanClient::new(
        rest_config(sim),
        credentials(),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
    )
}

pub fn cid(text: &str) -> CorrelationId {
    CorrelationId::new(text).expect("a valid test correlation id")
}

pub fn market(cid_text: &str, txn: Txn, qty: i64) -> scalper::broker::model::PlaceOrder {
    use scalper::broker::model::{OrderType, PlaceOrder, ProductType, Validity};
    PlaceOrder {
        correlation_id: Some(cid(cid_text)),
        txn,
        instrument: NIFTY_PUT,
        product: ProductType::Intraday,
        order_type: OrderType::Market,
        validity: Validity::Day,
        quantity: Qty(qty),
        disclosed_quantity: Qty(0),
        price: Paise::ZERO,
        trigger_price: Paise::ZERO,
        after_market_order: false,
    }
}

/// Polls `cond` every 5 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every captured line so far, checked for the access token.
pub fn assert_token_never_logged() {
    log_capture::assert_never_logged(TOKEN, 1);
}
