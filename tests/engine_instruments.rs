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

/// The fixture with a freeze quantity of 150 (lot 75) for NIFTY-Dec2026-24500-CE.
fn master_with_freeze_150(dir: &std::path::Path) -> String {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/instruments/master_detailed.csv");
    let text = std::fs::read_to_string(fixture).unwrap();
    let edited = text.replace(",1520.30,0.05,1800", ",1520.30,0.05,150");
    assert_ne!(edited, text, "the fixture's row of 52175 ends with its band and freeze");
    let path = dir.join("master-freeze-150.csv");
    std::fs::write(&path, edited).unwrap();
    format!("[instruments]\nmaster_file = \"{}\"\n", path.display())
}

#[test]
fn paper_slices_above_the_freeze_quantity_and_charges_brokerage_per_child() {
    use scalper::domain::{ExitReason, Paise};
    use scalper::risk::correlation::{self, OrderRole};
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&master_with_freeze_150(dir.path()));
    h.price(OPT, "100.00");
    let id = h.open(OPT, Side::Long, 450);
    let gateway = h.shared.gateway.clone();
    let placed =
        |cid: &str| gateway.placements(&scalper::domain::CorrelationId::new(cid).unwrap()).unwrap();
    let slice = |role, n| correlation::slice_id(role, &id, 1, n).unwrap().to_string();
    // The entry went as three children of 150 under the live broker's ids, each once.
    for n in 1..=3 {
        assert_eq!(placed(&slice(OrderRole::Entry, n)), 1, "{}", slice(OrderRole::Entry, n));
    }
    assert_eq!(placed(correlation::entry_id(&id, 1).unwrap().as_str()), 0);
    assert_eq!(placed(&slice(OrderRole::Entry, 4)), 0);
    assert_eq!(h.shared.core.lock().position(&id).unwrap().quantity.0, 450);

    // The stop: three exit children of 150; the position closes with the last.
    h.price(OPT, "89.00");
    let trade = h.closed(&id);
    assert_eq!((trade.reason, trade.quantity.0), (ExitReason::StopLoss, 450));
    for n in 1..=3 {
        assert_eq!(placed(&slice(OrderRole::Exit, n)), 1, "{}", slice(OrderRole::Exit, n));
    }
    assert_eq!(placed(correlation::exit_id(&id, 1).unwrap().as_str()), 0);
    assert_eq!((trade.entry_price, trade.exit_price), (Paise(10_000), Paise(8_900)));
    // Brokerage per child (3 × ₹20 a leg), the rest on each leg's whole turnover
    // (pnl::charges' table): buy ₹45,000 → ₹90.81, sell ₹40,050 → ₹127.45.
    assert_eq!(trade.gross, Paise(-1_100 * 450));
    assert_eq!((trade.entry_charges, trade.exit_charges), (Paise(9_081), Paise(12_745)));
    let net = Paise(-1_100 * 450 - 9_081 - 12_745);
    assert_eq!(trade.net, net);
    // The paper wallet moved by exactly that net; /v1/pnl and replay say the same.
    let pnl = h.pnl_after(1);
    assert_eq!(pnl["charges"], Paise(9_081 + 12_745).to_string(), "{pnl}");
    assert_eq!(pnl["realised_net"], net.to_string(), "{pnl}");
    assert_eq!(pnl["paper_cash"], (Paise(10_000_000) + net).to_string(), "{pnl}");
    let replayed = h.replay();
    assert_eq!(replayed.trades.len(), 1);
    let r = &replayed.trades[0];
    assert_eq!(
        (r.gross, r.entry_charges, r.exit_charges, r.net),
        (trade.gross, trade.entry_charges, trade.exit_charges, net)
    );
    h.stop();
}

#[test]
fn limit_entries_are_rounded_passively_and_refused_without_a_band_or_at_an_absurd_price() {
    let mut h = Harness::start(&master_extra(""));
    h.price(OPT, "100.00");
    let order = |instrument: &str, side: &str, price: &str| {
        let body = serde_json::json!({ "instrument": instrument, "side": side, "quantity": 75, "price": price });
        h.post("/v1/orders", &body.to_string())
    };
    // Absurd: zero, or beyond twice the band's upper edge (₹1520.30).
    for price in ["0", "-1.00", "3040.65", "24500.00"] {
        let (status, body) = order("NSE_FNO:52175", "LONG", price);
        assert_eq!((status, body["code"].as_str()), (422, Some("price_absurd")), "{price}: {body}");
    }
    // An instrument the master does not know: no band to clamp into.
    let (status, body) = order("NSE_FNO:52176", "LONG", "100.00");
    assert_eq!((status, body["code"].as_str()), (422, Some("price_band_unknown")), "{body}");
    // Not a price.
    for price in ["100.005", "abc"] {
        let (status, body) = order("NSE_FNO:52175", "LONG", price);
        assert_eq!(status, 400, "{price}: {body}");
    }
    // Marketable on paper: a buy at ₹100.03 goes as ₹100.00 (down to the tick) and fills there.
    let (status, body) = order("NSE_FNO:52175", "LONG", "100.03");
    assert_eq!(status, 202, "{body}");
    let id = scalper::domain::PositionId::new(body["position_id"].as_str().unwrap());
    wait_until("the limit entry fills", || h.shared.core.lock().position(&id).is_some());
    assert_eq!(h.shared.core.lock().position(&id).unwrap().entry_price.0, 10_000);
    h.stop();
}
