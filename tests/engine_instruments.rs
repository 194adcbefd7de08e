//! Entries respect the exchange as the instrument master describes it: lot multiples, expiry,
//! the per-order maxima, and symbols in place of `SEGMENT:SECURITY_ID`.

mod engine_support;

use engine_support::*;
use scalper::domain::{InstrumentKey, Segment, Side};

/// NIFTY-Dec2026-24500-CE, lot 75, in the fixture and on the harness's watchlist.
const OPT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
/// Expired 2025-11-18 (the harness trades on 2025-11-24).
const EXPIRED: InstrumentKey = InstrumentKey::new(Segment::NseFno, 40001);
/// Expires 2025-11-24 at 14:30, before the session's 15:20 square-off.
const EXPIRES_TODAY: InstrumentKey = InstrumentKey::new(Segment::NseFno, 40002);

fn master_extra(more: &str) -> String {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/instruments/master_detailed.csv");
    format!("[instruments]\nmaster_file = \"{}\"\n{more}", fixture.display())
}

#[test]
fn entries_are_refused_off_the_lot_on_an_expired_contract_and_over_the_maxima() {
    let mut h = Harness::start(&master_extra(
        "[limits]\nmax_lots_per_order = 2\nmax_order_value_rupees = 20000\n",
    ));
    h.price(OPT, "100.00");
    let (status, body) = h.order(OPT, Side::Long, 70);
    assert_eq!((status, body["code"].as_str()), (422, Some("not_a_lot_multiple")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("lot size 75"), "{body}");
    assert!(body["error"].as_str().unwrap().contains("NIFTY-Dec2026-24500-CE"), "{body}");

    for key in [EXPIRED, EXPIRES_TODAY] {
        let (status, body) = h.order(key, Side::Long, 75);
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("contract_expired")),
            "{key}: {body}"
        );
    }

    // 3 lots > 2; 2 lots × 75 × ₹100 = ₹15,000 is within ₹20,000.
    let (status, body) = h.order(OPT, Side::Long, 225);
    assert_eq!((status, body["code"].as_str()), (422, Some("over_max_quantity")), "{body}");
    h.price(OPT, "150.00");
    // 150 × ₹150 = ₹22,500 > ₹20,000.
    let (status, body) = h.order(OPT, Side::Long, 150);
    assert_eq!((status, body["code"].as_str()), (422, Some("over_max_quantity")), "{body}");
    h.price(OPT, "100.00");
    let (status, body) = h.order(OPT, Side::Long, 150);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["symbol"], "NIFTY-Dec2026-24500-CE", "{body}");
    h.stop();
}

#[test]
fn a_symbol_resolves_to_its_instrument() {
    let mut h = Harness::start(&master_extra(""));
    h.price(OPT, "100.00");
    let (status, body) = h.post(
        "/v1/orders",
        r#"{"symbol": "NIFTY-Dec2026-24500-CE", "side": "LONG", "quantity": 75}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["instrument"], "NSE_FNO:52175", "{body}");
    // The position shows its symbol beside the id.
    wait_until("the position is published with its symbol", || {
        let (_, positions) = h.get("/v1/positions");
        positions["positions"][0]["symbol"] == "NIFTY-Dec2026-24500-CE"
            && positions["positions"][0]["instrument"] == "NSE_FNO:52175"
    });
    let (status, body) =
        h.post("/v1/orders", r#"{"symbol": "RELIANCE", "side": "LONG", "quantity": 1}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("several instruments"), "{body}");
    let (status, body) =
        h.post("/v1/orders", r#"{"symbol": "NO-SUCH-THING", "side": "LONG", "quantity": 75}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown symbol"), "{body}");
    h.stop();
}
