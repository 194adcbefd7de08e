//! The REST client against the simulated broker over loopback: every endpoint, every
//! documented error shape, request hygiene, and the access token absent from every log line.

mod broker_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use broker_support::*;
use scalper::broker::credentials::{CredentialError, Credentials, ReloadableCredentials};
use scalper::broker::model::{
    DhanErrorCode, KillSwitchState, ModifyOrder, OrderStatus, OrderType, PlaceOrder, PositionType,
    Validity,
};
use scalper::broker::outcome::{CallError, NotSent, Unknown, WriteOutcome};
use scalper::broker::ratelimit::{LimiterConfig, Priority, RateLimiter};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::{OrderId, Paise, Qty, Txn};
use scalper::sim::broker::{Fault, Scope, SimBrokerConfig};

fn accepted(o: WriteOutcome) -> OrderId {
    match o {
        WriteOutcome::Accepted(ack) => {
            assert_eq!(ack.order_status, OrderStatus::Transit, "placements answer TRANSIT");
            ack.order_id
        }
        other => panic!("expected Accepted, got {other}"),
    }
}

#[test]
fn order_lifecycle_through_every_read_endpoint() {
    let (sim, _prices) = start_sim(sim_config());
    let c = client(&sim);
    let id = accepted(c.place_order(&market("LIFE-1", Txn::Buy, 75), Priority::Entry));

    // In TRANSIT: in the book, not findable by correlation id.
    let by_id = c.order(&id).unwrap().expect("known order id");
    assert_eq!(by_id.order_status, OrderStatus::Transit);
    assert_eq!(by_id.exchange_time, None, "sentinel exchange time while in transit");
    assert_eq!(c.order_by_correlation_id("LIFE-1").unwrap(), None, "404 DH-906 while in TRANSIT");
    assert!(c.orders().unwrap().iter().any(|o| o.order_id == id));

    assert!(wait_until(Duration::from_secs(5), || {
        c.order(&id).unwrap().is_some_and(|o| o.order_status == OrderStatus::Traded)
    }));
    let o = c.order_by_correlation_id("LIFE-1").unwrap().expect("visible after transit");
    assert_eq!(
        (o.order_id.clone(), o.filled_qty, o.average_traded_price),
        (id.clone(), Qty(75), Paise(12345))
    );
    assert!(o.exchange_time.is_some());

    let trades = c.trades().unwrap();
    assert_eq!(trades.len(), 1);
    assert_eq!((trades[0].traded_quantity, trades[0].traded_price), (Qty(75), Paise(12345)));
    assert_eq!(c.trades_for_order(&id).unwrap().len(), 1);
    assert!(c.trades_for_order(&OrderId("999".into())).unwrap().is_empty());

    let pos = c.positions().unwrap();
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0].net_qty, Qty(75));
    assert_eq!(pos[0].position_type.known(), Some(PositionType::Long));
    assert_eq!(pos[0].buy_avg, Paise(12345));
    assert_eq!(pos[0].instrument(), Some(NIFTY_PUT));

    let funds = c.fund_limit().unwrap();
    assert_eq!(funds.sod_limit, Paise(100_000_000));
    assert_eq!(funds.utilized_amount, Paise(12345 * 75));
    assert_eq!(
        funds.available_balance,
        Paise(100_000_000 - 12345 * 75),
        "read from availabelBalance"
    );

    assert_eq!(
        c.order(&OrderId("52000000000999".into())).unwrap(),
        None,
        "unknown id answers 200 []"
    );
    assert_token_never_logged();
}

#[test]
fn order_by_id_answered_as_an_array_of_one_is_read() {
    let (sim, _p) = start_sim(SimBrokerConfig { order_by_id_as_array: true, ..sim_config() });
    let c = client(&sim);
    let id = accepted(c.place_order(&market("ARR-1", Txn::Buy, 75), Priority::Entry));
    assert_eq!(c.order(&id).unwrap().map(|o| o.order_id), Some(id));
}

#[test]
fn modify_in_transit_is_accepted_cancel_in_transit_is_dh906_then_cancel_works() {
    let (sim, _p) =
        start_sim(SimBrokerConfig { transit: Duration::from_millis(400), ..sim_config() });
    let c = client(&sim);
    let mut limit = market("MOD-1", Txn::Buy, 75);
    limit.order_type = OrderType::Limit;
    limit.price = Paise(5000); // far below the market: rests PENDING
    let id = accepted(c.place_order(&limit, Priority::Entry));

    let change = ModifyOrder {
        order_id: id.clone(),
        order_type: OrderType::Limit,
        quantity: Qty(150),
        price: Paise(5100),
        trigger_price: Paise::ZERO,
        disclosed_quantity: Qty(0),
        validity: Validity::Day,
        leg_name: None,
    };
    assert!(matches!(c.modify_order(&change, Priority::Exit), WriteOutcome::Accepted(_)));
    match c.cancel_order(&id, Priority::Exit) {
        WriteOutcome::Rejected(r) => {
            assert_eq!((r.http_status, r.code.clone()), (400, DhanErrorCode::OrderError));
            assert!(r.is_transit(), "{r}");
        }
        other => panic!("cancel in transit: {other}"),
    }
    assert!(wait_until(Duration::from_secs(5), || {
        c.order(&id).unwrap().is_some_and(|o| o.order_status == OrderStatus::Pending)
    }));
    let o = c.order(&id).unwrap().unwrap();
    assert_eq!((o.quantity, o.price), (Qty(150), Paise(5100)), "the modification took");
    match c.cancel_order(&id, Priority::Exit) {
        WriteOutcome::Accepted(ack) => assert_eq!(ack.order_status, OrderStatus::Cancelled),
        other => panic!("cancel when pending: {other}"),
    }
    assert!(
        matches!(c.cancel_order(&id, Priority::Exit), WriteOutcome::Rejected(r) if r.code == DhanErrorCode::OrderError)
    );
}

#[test]
fn ltp_for_many_instruments_in_one_call() {
    let (sim, _p) = start_sim(sim_config());
    let c = client(&sim);
    let unknown = scalper::domain::InstrumentKey::new(scalper::domain::Segment::NseEq, 1333);
    let prices = c.ltp(&[NIFTY_PUT, NIFTY_CALL, unknown]).unwrap();
    assert_eq!(prices.get(&NIFTY_PUT), Some(&Paise(12345)));
    assert_eq!(prices.get(&NIFTY_CALL), Some(&Paise(9870)));
    assert_eq!(prices.get(&unknown), None, "no price, no entry");
    let calls: Vec<_> =
        sim.received().into_iter().filter(|r| r.path == "/v2/marketfeed/ltp").collect();
    assert_eq!(calls.len(), 1, "one request for all instruments");
    assert_eq!(calls[0].client_id_header.as_deref(), Some(CLIENT_ID), "client-id on data APIs");
}

#[test]
fn kill_switch_refused_while_positions_are_open_then_blocks_placement() {
    let (sim, _p) =
        start_sim(SimBrokerConfig { transit: Duration::from_millis(20), ..sim_config() });
    let c = client(&sim);
    accepted(c.place_order(&market("KS-1", Txn::Buy, 75), Priority::Entry));
    assert!(wait_until(Duration::from_secs(5), || c
        .positions()
        .unwrap()
        .first()
        .is_some_and(|p| p.net_qty == Qty(75))));
    assert_eq!(c.kill_switch_status().unwrap().state(), KillSwitchState::Inactive);
    match c.set_kill_switch(true) {
        Err(CallError::Rejected { rejection, .. }) => {
            assert_eq!(rejection.code, DhanErrorCode::OrderError)
        }
        other => panic!("activation with an open position: {other:?}"),
    }
    accepted(c.place_order(&market("KS-2", Txn::Sell, 75), Priority::Exit));
    assert!(wait_until(Duration::from_secs(5), || c
        .positions()
        .unwrap()
        .first()
        .is_some_and(|p| p.net_qty == Qty(0))));
    assert_eq!(c.set_kill_switch(true).unwrap().state(), KillSwitchState::Active);
    assert_eq!(c.kill_switch_status().unwrap().state(), KillSwitchState::Active);
    match c.place_order(&market("KS-3", Txn::Buy, 75), Priority::Entry) {
        WriteOutcome::Rejected(r) => {
            assert_eq!((r.http_status, r.code), (400, DhanErrorCode::OrderError))
        }
        other => panic!("placement with the kill switch on: {other}"),
    }
    let posted: Vec<_> = sim
        .received()
        .into_iter()
        .filter(|r| r.path == "/v2/killswitch" && r.method == "POST")
        .collect();
    assert!(posted.iter().all(|r| r.body.is_empty()
        && r.query == vec![("killSwitchStatus".to_string(), "ACTIVATE".to_string())]));
    assert_eq!(c.set_kill_switch(false).unwrap().state(), KillSwitchState::Inactive);
}

#[test]
fn every_request_carries_both_headers_and_typed_bodies_with_the_client_id() {
    let (sim, _p) = start_sim(sim_config());
    let c = client(&sim);
    let mut sl = market("HYG-1", Txn::Sell, 75);
    sl.order_type = OrderType::StopLoss;
    sl.price = Paise(9900);
    sl.trigger_price = Paise(9950);
    accepted(c.place_order(&sl, Priority::Exit));
    accepted(c.place_order(&market("HYG-2", Txn::Buy, 75), Priority::Entry));
    let _ = c.orders();
    let _ = c.fund_limit();
    let _ = c.ltp(&[NIFTY_PUT]);
    let received = sim.received();
    assert!(received.len() >= 5);
    for r in &received {
        assert!(r.had_access_token, "{} {} without access-token", r.method, r.path);
        assert_eq!(r.client_id_header.as_deref(), Some(CLIENT_ID), "{} {}", r.method, r.path);
        if !r.body.is_empty() {
            assert!(r.body.contains("\"dhanClientId\":\"1000000001\""), "{}", r.body);
            assert!(!r.body.contains("\"\""), "an empty string in {}", r.body);
        }
    }
    let sl_body = &received.iter().find(|r| r.body.contains("HYG-1")).unwrap().body;
    assert!(
        sl_body.contains("\"price\":99.0") && sl_body.contains("\"triggerPrice\":99.5"),
        "{sl_body}"
    );
}

#[test]
fn documented_error_shapes_become_the_right_outcomes() {
    let (sim, _p) = start_sim(sim_config());
    let c = client(&sim);

    // 400 DH-905: a bad value (a limit order without a price).
    let mut bad = market("ERR-905", Txn::Buy, 75);
    bad.order_type = OrderType::Limit;
    match c.place_order(&bad, Priority::Entry) {
        WriteOutcome::Rejected(r) => {
            assert_eq!((r.http_status, r.code.clone()), (400, DhanErrorCode::InputException));
            assert_eq!(r.message, "Missing required fields, bad values for parameters etc.");
        }
        other => panic!("DH-905: {other}"),
    }
    // 404 DH-906: an unknown correlation id reads as "not found".
    assert_eq!(c.order_by_correlation_id("NOPE-1").unwrap(), None);
    // 429 DH-904: not sent, and the limiter backs off.
    sim.faults().inject(Fault::Throttle, Scope::Place, 1);
    assert_eq!(
        c.place_order(&market("ERR-904", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::NotSent(NotSent::Throttled)
    );
    assert_eq!(c.limiter().stats(scalper::broker::ratelimit::ApiClass::Orders).throttles, 1);
    // 500 DH-908: unknown.
    sim.faults().inject(Fault::ServerError, Scope::Place, 1);
    match c.place_order(&market("ERR-908", Txn::Buy, 75), Priority::Entry) {
        WriteOutcome::Unknown(Unknown::ServerError { http_status: 500, error: Some(e) }) => {
            assert_eq!(e.code, DhanErrorCode::InternalServerError)
        }
        other => panic!("DH-908: {other}"),
    }
    // A garbage body: unknown.
    sim.faults().inject(Fault::Garbage, Scope::Place, 1);
    assert!(matches!(
        c.place_order(&market("ERR-GRB", Txn::Buy, 75), Priority::Entry),
        WriteOutcome::Unknown(Unknown::Unparseable { http_status: 200, .. })
    ));
    sim.faults().inject(Fault::Garbage, Scope::Reads, 1);
    assert!(matches!(
        c.orders(),
        Err(CallError::Failed { reason: Unknown::Unparseable { .. }, .. })
    ));
    // The gateway's 404 for an unknown path.
    let wrong = DhanClient::new(
        RestConfig { base_url: format!("{}/v9", sim.base_url()), ..rest_config(&sim) },
        credentials(),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
    );
    match wrong.orders() {
        Err(CallError::Rejected { rejection, .. }) => {
            assert_eq!(rejection.http_status, 404);
            assert_eq!(rejection.code, DhanErrorCode::Other("HTTP-404".into()));
            assert!(rejection.message.contains("/v2/v9/orders"), "{}", rejection.message);
        }
        other => panic!("gateway 404: {other:?}"),
    }
    assert_eq!(sim.orders_with_correlation_id("ERR-908"), 0);
    assert_token_never_logged();
}

#[test]
fn an_expired_token_is_rejected_with_dh901_and_the_credentials_are_reloaded() {
    let (sim, _p) = start_sim(sim_config());
    let loads = Arc::new(AtomicU32::new(0));
    let counter = loads.clone();
    let creds = ReloadableCredentials::new(move || -> Result<Credentials, CredentialError> {
        // First load: yesterday's token; every reload: today's.
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(Credentials::new(CLIENT_ID, if n == 0 { "eyJ-yesterdays-token" } else { TOKEN }))
    })
    .unwrap();
    let c = DhanClient::new(
        rest_config(&sim),
        Arc::new(creds),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
    );
    match c.positions() {
        Err(CallError::Rejected { rejection, .. }) => {
            assert_eq!(
                (rejection.http_status, rejection.code.clone()),
                (401, DhanErrorCode::InvalidAuthentication)
            );
            assert!(rejection.is_auth());
        }
        other => panic!("stale token: {other:?}"),
    }
    assert_eq!(loads.load(Ordering::SeqCst), 2, "reloaded once after DH-901");
    assert!(c.positions().is_ok(), "the reloaded token works");
    assert!(
        !captured().iter().any(|l| l.contains("eyJ-yesterdays-token")),
        "no token in any log line"
    );
    assert_token_never_logged();
}

#[test]
fn a_placement_from_the_web_app_shows_in_the_book_with_a_dhan_correlation_id() {
    let (sim, _p) =
        start_sim(SimBrokerConfig { transit: Duration::from_millis(10), ..sim_config() });
    let c = client(&sim);
    let placed = sim
        .inject_order(scalper::sim::orders::NewOrder {
            correlation_id: None,
            instrument: NIFTY_CALL,
            txn: Txn::Buy,
            product: scalper::broker::model::ProductType::Intraday,
            order_type: OrderType::Market,
            validity: Validity::Day,
            quantity: 75,
            disclosed_quantity: 0,
            price: Paise::ZERO,
            trigger_price: Paise::ZERO,
        })
        .unwrap();
    sim.inject_position(
        NIFTY_PUT,
        scalper::broker::model::ProductType::Intraday,
        -150,
        Paise(11000),
    );
    assert!(wait_until(Duration::from_secs(5), || c.positions().unwrap().len() == 2));
    let book = c.orders().unwrap();
    let web = book.iter().find(|o| o.order_id.0 == placed.order_id).unwrap();
    let cid = web.correlation_id.clone().unwrap();
    assert!(cid.starts_with("1000000001-"), "{cid}");
    let short =
        c.positions().unwrap().into_iter().find(|p| p.instrument() == Some(NIFTY_PUT)).unwrap();
    assert_eq!((short.net_qty, short.sell_avg), (Qty(-150), Paise(11000)));
    assert_eq!(short.position_type.known(), Some(PositionType::Short));
}

#[test]
fn placements_reject_with_the_same_outcome_types_whatever_the_priority() {
    // A definitive rejection is never confused with "unknown": retrying it is pointless, and it
    // must not trip the breaker.
    let (sim, _p) = start_sim(sim_config());
    let c = client(&sim);
    let mut zero: PlaceOrder = market("PRI-1", Txn::Sell, 75);
    zero.quantity = Qty(0);
    for priority in [Priority::Exit, Priority::Entry] {
        let o = c.place_order(&zero, priority);
        assert!(matches!(o, WriteOutcome::Rejected(_)), "{o}");
        assert_eq!(o.breaker_result(), scalper::broker::breaker::CallResult::Rejected);
    }
}

#[test]
fn calls_are_counted_and_timed_in_metrics() {
    let (sim, _p) = start_sim(sim_config());
    let metrics = scalper::ops::metrics::Metrics::new();
    let c = DhanClient::with_metrics(
        rest_config(&sim),
        credentials(),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
        scalper::broker::rest::RestMetrics::new(&metrics),
    );
    c.orders().unwrap();
    let _ = c.place_order(&market("MET-1", Txn::Buy, 75), Priority::Entry);
    let text = metrics.render();
    assert!(
        text.contains(r#"scalper_broker_requests_total{endpoint="orders",result="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"scalper_broker_requests_total{endpoint="place_order",result="accepted"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"scalper_broker_request_seconds_count{endpoint="place_order"} 1"#),
        "{text}"
    );
}
