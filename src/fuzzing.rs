//! The fuzzing harness: one function per parser that reads the outside world, each taking
//! arbitrary bytes and panicking only when the parser breaks one of its promises (a panic
//! inside the parser, no progress, a broken round trip or invariant). The `cargo fuzz` targets
//! in `fuzz/` call these, and `tests/fuzz_corpus.rs` replays every committed corpus input
//! through the same functions under `cargo test`, so a fixed crash stays fixed.
//!
//! | target | parser |
//! |---|---|
//! | `feed_packets` | the feed splitter, packet decoder and `scalper decode` output |
//! | `order_update` | order-update socket frames (`order_alert` JSON) |
//! | `rest_response` | REST answers: order acks, errors, order/trade/position books, funds, LTP |
//! | `control_request` | the control API's route and body, down to the entry order |
//! | `config_toml` | the config file: parse, validate, plan a reload |
//! | `replay_csv` | `ticks.csv` and `positions.csv` of `scalper replay` |

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::broker::model::{
    self, FrameItem, FundLimit, KillSwitchStatus, Order, OrderUpdate, Position, Trade,
};
use crate::broker::outcome::{classify_read, classify_write};
use crate::config::{Config, plan_reload};
use crate::domain::{Paise, Qty};
use crate::feed::codec::{decode_packet, encode_to_vec};
use crate::feed::decode_cmd::decode_to;
use crate::feed::{Packet, Packets};
use crate::ops::http::{Route, parse_body, route_of};
use crate::replay::{positions_from_reader, ticks_from_reader};

/// A harness: arbitrary bytes in, a panic only for a broken promise.
pub type Harness = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [(&str, Harness); 6] = [
    ("feed_packets", feed_packets),
    ("order_update", order_update),
    ("rest_response", rest_response),
    ("control_request", control_request),
    ("config_toml", config_toml),
    ("replay_csv", replay_csv),
];

/// Prices below this survive the f32 wire exactly (see `codec::rupees_f32`).
const EXACT_ON_THE_WIRE: Paise = Paise(13_107_200);

/// Raw feed bytes (one WebSocket message or a recorded file): the splitter always progresses,
/// every decoded packet occupies exactly the bytes it claims, re-encodes to a packet of the
/// same kind and instrument, and `scalper decode` prints it.
pub fn feed_packets(data: &[u8]) {
    let mut packets = Packets::new(data);
    let mut last = 0;
    let mut steps = 0;
    while let Some(item) = packets.next() {
        let pos = packets.position();
        assert!(pos > last, "the splitter made no progress at {last}");
        if let Ok(framed) = item {
            assert_eq!(framed.offset, last);
            assert_eq!(framed.offset + framed.len, pos);
            assert_eq!(framed.len, framed.packet.encoded_len());
            re_encodes(&framed.packet);
        }
        last = pos;
        steps += 1;
    }
    assert!(steps <= data.len(), "{steps} items from {} bytes", data.len());
    assert!(packets.position() >= data.len());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = decode_to(data, false, &mut out, &mut err).expect("writing to a Vec never fails");
    assert_eq!(summary.packets + summary.malformed, steps);
}

fn re_encodes(p: &Packet) {
    let bytes = encode_to_vec(p);
    assert_eq!(bytes.len(), p.encoded_len(), "{p:?}");
    let back = decode_packet(&bytes).unwrap_or_else(|e| panic!("{p:?} re-encoded: {e}"));
    assert_eq!((back.kind(), back.instrument()), (p.kind(), p.instrument()));
    match (p.last_trade(), back.last_trade()) {
        (Some((_, ltp, at)), Some((_, ltp2, at2))) => {
            assert_eq!(at, at2);
            if ltp < EXACT_ON_THE_WIRE {
                assert_eq!(ltp, ltp2, "{p:?}");
            }
        }
        (None, None) => {}
        other => panic!("last trade changed in a round trip: {other:?}"),
    }
    if matches!(p, Packet::Oi(_) | Packet::MarketStatus(_) | Packet::Disconnect(_)) {
        assert_eq!(&back, p);
    }
}

/// One text frame of the order-update socket. Each update is also taken through the fill
/// arithmetic a consumer applies to consecutive updates of one order.
pub fn order_update(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let items = model::parse_frame(&text);
    let mut previous: Option<&OrderUpdate> = None;
    for item in &items {
        match item {
            FrameItem::Update(u) => {
                let _ = u.fill_since(Qty(0), Paise(0));
                if let Some(p) = previous.filter(|p| p.order_id == u.order_id)
                    && let Some(fill) = u.fill_since(p.traded_qty, p.avg_traded_price)
                {
                    assert!(fill.quantity.0 > 0, "{fill:?}");
                }
                let _ = (u.status.title_case(), u.status.is_terminal());
                previous = Some(u.as_ref());
            }
            FrameItem::Malformed(e) => {
                let _ = e.to_string();
            }
            FrameItem::Noise(s) => assert!(s.chars().count() <= 80, "{s}"),
            FrameItem::UnknownType(_) => {}
        }
    }
}

/// A REST answer body, read as each endpoint reads it, under a success and the error statuses.
pub fn rest_response(data: &[u8]) {
    for status in [200, 202, 400, 401, 404, 429, 500, 503, 302] {
        let outcome = classify_write(status, data);
        let _ = outcome.to_string();
    }
    if let Ok(orders) = classify_read::<Vec<Order>>("orders", 200, data) {
        for o in &orders {
            let _ = (o.instrument(), o.order_status.title_case());
        }
    }
    if let Ok(trades) = classify_read::<Vec<Trade>>("trades", 200, data) {
        for t in &trades {
            let _ = t.instrument();
        }
    }
    if let Ok(positions) = classify_read::<Vec<Position>>("positions", 200, data) {
        for p in &positions {
            let _ = p.instrument();
        }
    }
    let _ = classify_read::<FundLimit>("fund_limit", 200, data);
    if let Ok(k) = classify_read::<KillSwitchStatus>("kill_switch", 200, data) {
        let _ = k.state();
    }
    if let Ok(v) = classify_read::<Value>("order", 200, data) {
        if let Ok(Some(one)) = model::wire::one_or_none(v.clone()) {
            let _ = serde_json::from_value::<Order>(one);
        }
        if let Ok(prices) = model::parse_ltp_response(&v) {
            assert!(prices.values().all(|p| p.0 > 0), "{prices:?}");
        }
    }
    let _ = model::parse_error_body(data);
}

/// A control request as `METHOD PATH` on the first line and the body after it: routed,
/// size-checked and parsed as the HTTP layer does, then read as an entry order.
pub fn control_request(data: &[u8]) {
    const MAX_BODY: usize = 64 * 1024;
    http_request(data, MAX_BODY);
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (method, url) = head.split_once(' ').unwrap_or(("GET", &head));
    let path = url.split('?').next().unwrap_or("");
    let Some((route, expected)) = route_of(path) else { return };
    if method != expected || body.len() > MAX_BODY {
        return;
    }
    let parsed = match parse_body(body) {
        Ok(v) => v,
        Err(resp) => {
            assert_eq!(resp.status, 400);
            return;
        }
    };
    if route == Route::PlaceOrder
        && let Ok(order) = crate::engine::api::parse_order(parsed)
    {
        assert!(order.quantity.0 > 0, "{order:?}");
    }
}

/// The same bytes as a raw HTTP/1.1 request through the control server's parser: a complete
/// request stays within the limits it was parsed under.
fn http_request(data: &[u8], max_body: usize) {
    use crate::runtime::http_message::{Parsed, parse};
    let limits = crate::runtime::http_server::Limits::control(max_body);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    match parse(data, &limits, peer) {
        Parsed::Complete { request, used, .. } => {
            assert!(used <= data.len() && request.body.len() <= max_body, "{request:?}");
        }
        Parsed::Bad(resp) => assert!(resp.status >= 400, "{resp:?}"),
        Parsed::Partial => {}
    }
}

/// A config file: parse and validate; a valid one also summarises and is planned as a reload
/// of the default configuration; an invalid one names at least one error.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml_str(text) {
        Ok(config) => {
            let _ = config.summary();
            static DEFAULT: OnceLock<Config> = OnceLock::new();
            let running = DEFAULT.get_or_init(Config::default);
            let _ = plan_reload(running, Ok(config));
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "a refused config names no error");
            let _ = errors.lines();
        }
    }
}

/// The same bytes read as `ticks.csv` and as `positions.csv`: accepted rows carry positive
/// prices and quantities, ticks are in time order, line numbers increase.
pub fn replay_csv(data: &[u8]) {
    let file = Path::new("fuzz.csv");
    match ticks_from_reader(data, file) {
        Ok(rows) => {
            // Lines never go back; two rows can share one when a lone carriage return ends the
            // first (the csv reader ends a record there, and counts lines by line feeds).
            for pair in rows.windows(2) {
                assert!(pair[0].line <= pair[1].line);
                assert!(pair[0].tick.exchange_time <= pair[1].tick.exchange_time);
            }
            assert!(rows.iter().all(|r| r.tick.ltp.0 > 0));
        }
        Err(e) => assert!(e.is_bad_input(), "{e}"),
    }
    match positions_from_reader(data, file) {
        Ok(rows) => {
            for pair in rows.windows(2) {
                assert!(pair[0].line <= pair[1].line);
            }
            assert!(rows.iter().all(|r| r.position.entry_price.0 > 0 && r.position.quantity.0 > 0));
        }
        Err(e) => assert!(e.is_bad_input(), "{e}"),
    }
}
