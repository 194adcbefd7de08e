//! The simulated broker on its own, spoken to with raw HTTP and WebSocket requests: the
//! behaviour the spec asks of it (auth, envelopes, DH-905 hygiene, correlation-id rules,
//! TRANSIT visibility, its own rate limits, the order-update login and message casing).

mod broker_support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use broker_support::*;
use serde_json::{Value, json};
use tungstenite::Message;

struct Raw {
    agent: ureq::Agent,
    base: String,
}

impl Raw {
    fn new(sim: &scalper::sim::broker::SimBroker) -> Raw {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Raw { agent, base: format!("http://{}", sim.rest_addr()) }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
        client: Option<&str>,
    ) -> (u16, Value, Option<String>) {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" | "DELETE" => {
                let mut r =
                    if method == "GET" { self.agent.get(&url) } else { self.agent.delete(&url) };
                if let Some(t) = token {
                    r = r.header("access-token", t);
                }
                if let Some(c) = client {
                    r = r.header("client-id", c);
                }
                r.call()
            }
            _ => {
                let mut r =
                    if method == "POST" { self.agent.post(&url) } else { self.agent.put(&url) };
                if let Some(t) = token {
                    r = r.header("access-token", t);
                }
                if let Some(c) = client {
                    r = r.header("client-id", c);
                }
                r.header("Content-Type", "application/json").send(body.unwrap_or("").as_bytes())
            }
        };
        let mut resp = resp.expect("the simulator answers");
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string());
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), retry_after)
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (s, v, _) = self.send(method, path, body, Some(TOKEN), Some(CLIENT_ID));
        (s, v)
    }
}

const SAMPLE: &str = r#"{"dhanClientId":"1000000001","correlationId":"AS-N-52175-30215","transactionType":"BUY",
 "exchangeSegment":"NSE_FNO","productType":"INTRADAY","orderType":"MARKET","validity":"DAY",
 "securityId":"52175","quantity":75,"disclosedQuantity":0,"price":0.0,"triggerPrice":0.0,
 "afterMarketOrder":false}"#;

fn with_field(k: &str, v: Value) -> String {
    let mut m: serde_json::Map<String, Value> = serde_json::from_str(SAMPLE).unwrap();
    m.insert(k.into(), v);
    Value::Object(m).to_string()
}

fn without_field(k: &str) -> String {
    let mut m: serde_json::Map<String, Value> = serde_json::from_str(SAMPLE).unwrap();
    m.remove(k);
    Value::Object(m).to_string()
}

fn error_code(v: &Value) -> &str {
    v["errorCode"].as_str().unwrap_or("")
}

#[test]
fn unknown_paths_get_the_spring_gateway_404() {
    let (sim, _p) = start_sim(sim_config());
    let raw = Raw::new(&sim);
    for path in ["/v2/nope", "/v3/orders", "/"] {
        let (s, v) = raw.call("GET", path, None);
        assert_eq!(s, 404, "{path}");
        assert_eq!(
            (v["status"].as_u64(), v["error"].as_str(), v["path"].as_str()),
            (Some(404), Some("Not Found"), Some(path))
        );
        assert!(v["timestamp"].is_string());
    }
}

#[test]
fn missing_or_wrong_credentials_get_401_dh901() {
    let (sim, _p) = start_sim(sim_config());
    let raw = Raw::new(&sim);
    let (s, v, _) = raw.send("GET", "/v2/orders", None, None, None);
    assert_eq!((s, error_code(&v)), (401, "DH-901"));
    let (s, v, _) = raw.send("GET", "/v2/orders", None, Some("wrong"), Some(CLIENT_ID));
    assert_eq!((s, error_code(&v)), (401, "DH-901"));
    // The token alone is enough for trading APIs; the data APIs also need client-id.
    let (s, _, _) = raw.send("GET", "/v2/orders", None, Some(TOKEN), None);
    assert_eq!(s, 200);
    let (s, v, _) =
        raw.send("POST", "/v2/marketfeed/ltp", Some(r#"{"NSE_FNO":[52175]}"#), Some(TOKEN), None);
    assert_eq!((s, error_code(&v)), (401, "DH-901"));
    sim.set_access_token("todays-token");
    let (s, _, _) = raw.send("GET", "/v2/orders", None, Some(TOKEN), Some(CLIENT_ID));
    assert_eq!(s, 401, "a rolled token invalidates the old one");
}

#[test]
fn the_documented_sample_with_empty_strings_gets_dh905_and_the_typed_one_is_accepted() {
    let (sim, _p) = start_sim(sim_config());
    let raw = Raw::new(&sim);
    for bad in [
        with_field("price", json!("")),
        with_field("disclosedQuantity", json!("")),
        with_field("quantity", json!("")),
        without_field("disclosedQuantity"),
        without_field("afterMarketOrder"),
        with_field("correlationId", json!("A".repeat(26))),
        with_field("correlationId", json!("bad#char")),
    ] {
        let (s, v) = raw.call("POST", "/v2/orders", Some(&bad));
        assert_eq!((s, error_code(&v)), (400, "DH-905"), "{bad}");
        assert_eq!(v["errorType"], "Input_Exception");
    }
    for good in [
        with_field("correlationId", json!("A".repeat(25))),
        with_field("correlationId", json!("a b.c")),
        SAMPLE.to_string(),
    ] {
        let (s, v) = raw.call("POST", "/v2/orders", Some(&good));
        assert_eq!(s, 200, "{good}: {v}");
        assert_eq!(v["orderStatus"], "TRANSIT");
        assert!(v["orderId"].is_string());
    }
    assert_eq!(sim.orders().len(), 3);
}

#[test]
fn an_order_in_transit_is_in_the_book_but_not_by_correlation_id_and_cannot_be_cancelled() {
    let (sim, _p) = start_sim(scalper::sim::broker::SimBrokerConfig {
        transit: Duration::from_millis(500),
        ..sim_config()
    });
    let raw = Raw::new(&sim);
    let (_, placed) = raw.call("POST", "/v2/orders", Some(SAMPLE));
    let id = placed["orderId"].as_str().unwrap().to_string();
    let (s, v) = raw.call("GET", "/v2/orders/external/AS-N-52175-30215", None);
    assert_eq!((s, error_code(&v)), (404, "DH-906"));
    assert_eq!(v["errorMessage"], "Incorrect request for order and cannot be processed");
    let (s, v) = raw.call("DELETE", &format!("/v2/orders/{id}"), None);
    assert_eq!(
        (s, error_code(&v), v["errorMessage"].as_str()),
        (400, "DH-906", Some("Order is in Transit state"))
    );
    let (s, book) = raw.call("GET", "/v2/orders", None);
    assert_eq!(s, 200);
    assert_eq!(book[0]["orderStatus"], "TRANSIT");
    assert_eq!(book[0]["exchangeTime"], "0001-01-01 00:00:00");
    let (s, v) = raw.call("GET", "/v2/orders/52999999999999", None);
    assert_eq!((s, v), (200, json!([])));
    assert!(wait_until(Duration::from_secs(5), || raw
        .call("GET", "/v2/orders/external/AS-N-52175-30215", None)
        .0
        == 200));
}

#[test]
fn the_simulator_enforces_ten_orders_per_second_with_429_dh904_and_no_retry_after() {
    let (sim, _p) = start_sim(sim_config());
    let raw = Raw::new(&sim);
    let t0 = Instant::now();
    let mut answers = Vec::new();
    for i in 0..12 {
        let body = with_field("correlationId", json!(format!("RL-{i}")));
        answers.push(raw.send("POST", "/v2/orders", Some(&body), Some(TOKEN), Some(CLIENT_ID)));
    }
    let burst = t0.elapsed();
    let throttled: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    for (_, v, retry_after) in &throttled {
        assert_eq!(error_code(v), "DH-904");
        assert_eq!(v["errorType"], "Rate_Limit");
        assert_eq!(retry_after, &None, "Dhan sends no Retry-After");
    }
    assert_eq!(sim.orders().len() + throttled.len(), 12, "every request is placed or throttled");
    let (admitted, _) = sim.arrivals(scalper::broker::ratelimit::ApiClass::Orders);
    let mut times = admitted.clone();
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|u| **u < *t + Duration::from_secs(1)).count();
        assert!(inside <= 10, "{inside} orders admitted within one second");
    }
    if burst < Duration::from_millis(900) {
        assert_eq!(throttled.len(), 2, "the 11th and 12th within a second");
    }
}

#[test]
fn order_update_socket_pushes_title_case_status_after_a_valid_login_and_resets_a_bad_one() {
    let (sim, _p) = start_sim(scalper::sim::broker::SimBrokerConfig {
        transit: Duration::from_millis(30),
        ..sim_config()
    });
    let url = sim.order_socket_url();
    // A bad token: the upgrade and the login frame go through, then a reset without close frame.
    let (mut bad, _) = tungstenite::connect(&url).unwrap();
    bad.send(Message::text(json!({"LoginReq": {"MsgCode": 42, "ClientId": CLIENT_ID, "Token": "nope"}, "UserType": "SELF"}).to_string())).unwrap();
    let t0 = Instant::now();
    match bad.read() {
        Err(e) => assert!(!matches!(e, tungstenite::Error::ConnectionClosed), "{e}"),
        Ok(m) => panic!("expected a reset, got {m:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));

    let (mut ws, _) = tungstenite::connect(&url).unwrap();
    ws.send(Message::text(json!({"LoginReq": {"MsgCode": 42, "ClientId": CLIENT_ID, "Token": TOKEN}, "UserType": "SELF"}).to_string())).unwrap();
    assert!(wait_until(Duration::from_secs(5), || sim.order_socket_clients() == 1));
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = TcpStream::set_read_timeout(s, Some(Duration::from_secs(5)));
    }
    let raw = Raw::new(&sim);
    raw.call("POST", "/v2/orders", Some(SAMPLE));
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("Traded") {
        if let Message::Text(t) = ws.read().expect("an order update") {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["Type"], "order_alert");
            assert_eq!(v["Data"]["CorrelationId"], "AS-N-52175-30215");
            statuses.push(v["Data"]["Status"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(statuses, vec!["Transit", "Pending", "Traded"]);
    assert_eq!(sim.order_socket_logins(), (1, 1));
}

/// A simulator that enforces the generated master (lot 75, tick ₹0.05, freeze 1800, band
/// ₹0.05–₹1234.50 for the put at ₹123.45).
fn exchange_sim() -> (scalper::sim::broker::SimBroker, scalper::sim::prices::PriceBoard) {
    let master = scalper::instruments::synthetic::generate(&[
        (NIFTY_PUT, scalper::domain::Paise(12_345)),
        (NIFTY_CALL, scalper::domain::Paise(9_870)),
    ]);
    start_sim(scalper::sim::broker::SimBrokerConfig {
        instruments: Some(std::sync::Arc::new(master)),
        ..sim_config()
    })
}

#[test]
fn the_exchange_refuses_a_non_lot_multiple_and_an_over_freeze_quantity_with_dhans_error_shape() {
    let (sim, _p) = exchange_sim();
    let raw = Raw::new(&sim);
    for (qty, needle) in [(70, "multiples of lot size 75"), (1875, "freeze quantity 1800")] {
        let body = with_field("quantity", json!(qty));
        let (s, v) = raw.call("POST", "/v2/orders", Some(&body));
        assert_eq!(s, 400, "{qty}: {v}");
        assert_eq!(v["errorType"], "Input_Exception", "{v}");
        assert_eq!(error_code(&v), "DH-905", "{v}");
        assert!(v["errorMessage"].as_str().unwrap_or("").contains(needle), "{v}");
    }
    let (_, book) = raw.call("GET", "/v2/orders", None);
    assert_eq!(book.as_array().map(Vec::len), Some(0), "refused orders never reach the book");
    // Lot multiples up to the freeze go through.
    for qty in [75, 1800] {
        let body =
            with_field("quantity", json!(qty)).replace("AS-N-52175-30215", &format!("lots-{qty}"));
        let (s, v) = raw.call("POST", "/v2/orders", Some(&body));
        assert_eq!(s, 200, "{qty}: {v}");
    }
}

#[test]
fn a_limit_price_off_the_tick_or_outside_the_band_is_rejected_by_the_exchange() {
    let (sim, _p) = exchange_sim();
    let raw = Raw::new(&sim);
    let limit = |price: f64, cid: &str| {
        let mut m: serde_json::Map<String, Value> = serde_json::from_str(SAMPLE).unwrap();
        m.insert("orderType".into(), json!("LIMIT"));
        m.insert("price".into(), json!(price));
        m.insert("correlationId".into(), json!(cid));
        Value::Object(m).to_string()
    };
    for (price, cid, needle) in
        [(123.42, "off-tick", "tick size"), (1300.0, "over-band", "Circuit Limits")]
    {
        let (s, v) = raw.call("POST", "/v2/orders", Some(&limit(price, cid)));
        assert_eq!(s, 200, "accepted by Dhan, then rejected by the exchange: {v}");
        let id = v["orderId"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, o) = raw.call("GET", &format!("/v2/orders/{id}"), None);
            if o["orderStatus"] == "REJECTED" {
                assert!(o["omsErrorDescription"].as_str().unwrap_or("").contains(needle), "{o}");
                break;
            }
            assert!(Instant::now() < deadline, "never rejected: {o}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_simulator_serves_its_master_per_segment() {
    let (sim, _p) = exchange_sim();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("http://{}/v2/instrument/NSE_FNO", sim.rest_addr());
    let mut resp = agent.get(&url).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.body_mut().read_to_string().unwrap();
    let table = scalper::instruments::parse_master(text.as_bytes()).unwrap();
    assert_eq!(table.len(), 2);
    let put = table.get(NIFTY_PUT).unwrap();
    assert_eq!((put.lot.0, put.tick.0, put.freeze.map(|f| f.0)), (75, 5, Some(1800)));
}
