//! The simulator's feed as a plain WebSocket client sees it: handshake checks, packets per
//! mode, keep-alive, limits and faults, over real loopback sockets.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scalper::domain::{InstrumentKey, Paise, Segment, Timestamp};
use scalper::feed::Packets;
use scalper::feed::codec::{DisconnectReason, Packet};
use scalper::feed::subscribe::{FeedMode, FeedRequest, subscribe_messages, unsubscribe_messages};
use scalper::feed::url::feed_url;
use scalper::sim::feed::{
    FaultConfig, HandshakeOutcome, Pace, PriceSource, SimFeed, SimFeedConfig,
};
use scalper::sim::prices::PriceBoard;
use scalper::sim::scenario::ScenarioRow;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

const CLIENT: &str = "1000000001";
const TOKEN: &str = "token-1";
const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const NIFTY: InstrumentKey = InstrumentKey::new(Segment::IdxI, 13);
const DEADLINE: Duration = Duration::from_secs(10);

fn start(cfg: SimFeedConfig) -> SimFeed {
    SimFeed::start(cfg, PriceBoard::new()).expect("simulator starts")
}

fn connect_with(sim: &SimFeed, token: &str, client: &str) -> Ws {
    let (ws, _) = tungstenite::connect(feed_url(&sim.url(), token, client)).expect("handshake");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    }
    ws
}

fn connect(sim: &SimFeed) -> Ws {
    connect_with(sim, TOKEN, CLIENT)
}

fn send(ws: &mut Ws, text: String) {
    ws.send(Message::text(text)).expect("send request");
}

fn subscribe(ws: &mut Ws, mode: FeedMode, keys: &[InstrumentKey]) {
    for m in subscribe_messages(mode, keys) {
        send(ws, m);
    }
}

/// The packets of the next binary message (pings are answered and skipped).
fn next_packets(ws: &mut Ws) -> Vec<Packet> {
    loop {
        match ws.read().expect("a message before the deadline") {
            Message::Binary(b) => {
                return Packets::new(&b).map(|r| r.expect("valid packet").packet).collect();
            }
            Message::Close(_) => panic!("closed while waiting for data"),
            _ => {}
        }
    }
}

fn next_packet(ws: &mut Ws) -> Packet {
    let mut p = next_packets(ws);
    assert_eq!(p.len(), 1, "one packet per message by default: {p:?}");
    p.remove(0)
}

fn expect_disconnect(ws: &mut Ws) -> DisconnectReason {
    match next_packet(ws) {
        Packet::Disconnect(d) => d.reason,
        other => panic!("expected a disconnect packet, got {other:?}"),
    }
}

/// Reads until the server closes the socket; panics on data or on the read deadline.
fn expect_closed(ws: &mut Ws) {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => panic!("data after the end: {b:?}"),
            Ok(Message::Close(_)) => return,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server did not close the socket")
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        if let Message::Binary(b) = ws.read().expect("a message before the deadline") {
            return b.to_vec();
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn credentials_are_checked_and_answered_with_the_documented_reasons() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.data_plan_active = true;
    let sim = start(cfg);
    let ctl = sim.control();
    let mut ws = connect_with(&sim, "wrong", CLIENT);
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::TokenInvalid);
    expect_closed(&mut ws);
    let mut ws = connect_with(&sim, TOKEN, "999");
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::ClientIdInvalid);
    let (mut ws, _) =
        tungstenite::connect(format!("{}/?token={TOKEN}&clientId={CLIENT}", sim.url()))
            .expect("handshake");
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::AuthenticationFailed);
    ctl.set_token("token-2");
    let mut ws = connect(&sim);
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::TokenExpired);
    let outcomes: Vec<HandshakeOutcome> = ctl.handshakes().into_iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        [809, 810, 808, 807].map(HandshakeOutcome::Rejected).to_vec(),
        "every attempt is on record"
    );
    assert_eq!(ctl.connections(), 0);

    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.data_plan_active = false;
    let sim = start(cfg);
    assert_eq!(expect_disconnect(&mut connect(&sim)), DisconnectReason::DataApiNotSubscribed);
}

#[test]
fn each_mode_gets_its_packets_and_indices_get_prev_close() {
    let sim = start(SimFeedConfig::new(CLIENT, TOKEN));
    let ctl = sim.control();
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    let Packet::Ticker(t) = next_packet(&mut ws) else { panic!("ticker snapshot") };
    assert_eq!((t.instrument, t.ltp), (FNO, Paise(10_000)));

    subscribe(&mut ws, FeedMode::Quote, &[FNO]);
    assert!(matches!(next_packet(&mut ws), Packet::Quote(_)));
    assert!(matches!(next_packet(&mut ws), Packet::Oi(_)), "OI follows a derivative's quote");

    subscribe(&mut ws, FeedMode::Full, &[NIFTY]);
    assert!(matches!(next_packet(&mut ws), Packet::PrevClose(p) if p.instrument == NIFTY));
    assert!(matches!(next_packet(&mut ws), Packet::Full(f) if f.instrument == NIFTY));

    for m in unsubscribe_messages(FeedMode::Quote, &[FNO]) {
        send(&mut ws, m);
    }
    for m in unsubscribe_messages(FeedMode::Full, &[NIFTY]) {
        send(&mut ws, m);
    }
    wait_until("NIFTY is unsubscribed", || ctl.subscribed() == [FNO].into());
    let before = Timestamp::from_millis(chrono::Utc::now().timestamp_millis() - 1000);
    ctl.set_price(NIFTY, Paise(2_600_000));
    ctl.set_price(FNO, Paise(12_345));
    let Packet::Ticker(t) = next_packet(&mut ws) else {
        panic!("only the ticker subscription is left")
    };
    assert_eq!(t.ltp, Paise(12_345));
    assert!(t.exchange_time >= before, "LTT is IST wall clock: {:?}", t.exchange_time);
}

#[test]
fn packets_can_be_stacked_several_per_message() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.packets_per_message = 4;
    let sim = start(cfg);
    let mut ws = connect(&sim);
    let keys: Vec<InstrumentKey> =
        (1..=4).map(|i| InstrumentKey::new(Segment::NseFno, i)).collect();
    subscribe(&mut ws, FeedMode::Ticker, &keys);
    assert_eq!(next_packets(&mut ws).len(), 4);
}

#[test]
fn server_pings_answers_pings_and_drops_a_silent_client() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.ping_interval = Duration::from_millis(50);
    cfg.client_timeout = Duration::from_millis(400);
    let sim = start(cfg);
    let ctl = sim.control();
    let mut ws = connect(&sim);
    ws.send(Message::Ping(b"hi".to_vec().into())).expect("client ping");
    let (mut pings, mut got_pong) = (0, false);
    while pings < 2 || !got_pong {
        match ws.read().expect("frames") {
            Message::Ping(_) => pings += 1,
            Message::Pong(p) => got_pong = p.as_ref() == b"hi",
            _ => {}
        }
    }
    // An active client keeps reading (tungstenite answers every ping); a silent one does not.
    let stop = Arc::new(AtomicBool::new(false));
    let active = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if ws.read().is_err() {
                    return false;
                }
            }
            true
        })
    };
    let silent = connect(&sim);
    wait_until("both connections are open", || ctl.connections() == 2);
    wait_until("the silent client is dropped", || ctl.connections() == 1);
    stop.store(true, Ordering::Release);
    assert!(active.join().expect("reader thread"), "the client answering pings stays connected");
    drop(silent);
}

#[test]
fn a_sixth_connection_kicks_the_oldest_with_805() {
    let sim = start(SimFeedConfig::new(CLIENT, TOKEN));
    let ctl = sim.control();
    let mut oldest = connect(&sim);
    wait_until("the first is registered", || ctl.connections() == 1);
    let others: Vec<Ws> = (0..5).map(|_| connect(&sim)).collect();
    assert_eq!(expect_disconnect(&mut oldest), DisconnectReason::TooManyConnections);
    wait_until("five remain", || ctl.connections() == 5);
    drop(others);
}

#[test]
fn instrument_limits_are_answered_with_804() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.max_instruments_per_connection = 3;
    let sim = start(cfg);
    let keys: Vec<InstrumentKey> =
        (1..=101).map(|i| InstrumentKey::new(Segment::NseFno, i)).collect();
    let mut ws = connect(&sim);
    send(
        &mut ws,
        FeedRequest::Subscribe { mode: FeedMode::Ticker, instruments: keys.clone() }.to_json(),
    );
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::InstrumentLimit);

    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &keys[..3]);
    for _ in 0..3 {
        next_packet(&mut ws);
    }
    subscribe(&mut ws, FeedMode::Ticker, &keys[3..4]);
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::InstrumentLimit);
}

#[test]
fn bad_requests_and_binary_frames_are_ignored() {
    let sim = start(SimFeedConfig::new(CLIENT, TOKEN));
    let ctl = sim.control();
    let mut ws = connect(&sim);
    send(&mut ws, r#"{"RequestCode":15,"InstrumentCount":1,"InstrumentList":[{"ExchangeSegment":"NSE_FNO","SecurityId":52175}]}"#.into());
    ws.send(Message::binary(vec![0u8; 83])).expect("binary frame");
    wait_until("the bad request is counted", || ctl.stats().bad_requests == 1);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    assert!(matches!(next_packet(&mut ws), Packet::Ticker(_)));
}

#[test]
fn faults_drop_silence_corrupt_and_disconnect() {
    let sim = start(SimFeedConfig::new(CLIENT, TOKEN));
    let ctl = sim.control();
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    next_packet(&mut ws);

    ctl.send_malformed();
    let b = next_binary(&mut ws);
    assert!(Packets::new(&b).next().expect("one item").is_err());

    ctl.set_silent(true);
    ctl.set_price(FNO, Paise(10_005));
    ctl.set_silent(false);
    ctl.set_price(FNO, Paise(10_010));
    let Packet::Ticker(t) = next_packet(&mut ws) else { panic!("ticker") };
    assert_eq!(t.ltp, Paise(10_010), "nothing was sent while silent");

    ctl.send_disconnect(800);
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::InternalError);
    expect_closed(&mut ws);

    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    next_packet(&mut ws);
    ctl.drop_connections();
    expect_closed(&mut ws);

    ctl.set_drop_after_messages(Some(2));
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    next_packet(&mut ws);
    ctl.set_price(FNO, Paise(10_015));
    next_packet(&mut ws);
    ctl.set_price(FNO, Paise(10_020));
    expect_closed(&mut ws);
    ctl.set_drop_after_messages(None);

    ctl.refuse_next_handshakes(1);
    match tungstenite::connect(feed_url(&sim.url(), TOKEN, CLIENT)) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    connect(&sim);
    let last: Vec<HandshakeOutcome> =
        ctl.handshakes().into_iter().rev().take(2).map(|h| h.outcome).collect();
    assert_eq!(last, [HandshakeOutcome::Accepted, HandshakeOutcome::Refused]);
}

#[test]
fn faults_can_be_armed_at_start() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.faults = FaultConfig {
        refuse_handshakes: 1,
        drop_after_messages: Some(1),
        ..FaultConfig::default()
    };
    let sim = start(cfg);
    assert!(tungstenite::connect(feed_url(&sim.url(), TOKEN, CLIENT)).is_err(), "429 first");
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    next_packet(&mut ws);
    expect_closed(&mut ws);
}

#[test]
fn drop_at_a_time_closes_the_connections_open_then() {
    let started = Instant::now();
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.faults.drop_after = Some(Duration::from_secs(1));
    let sim = start(cfg);
    let mut ws = connect(&sim);
    assert!(started.elapsed() < Duration::from_secs(1), "connected before the drop time");
    expect_closed(&mut ws);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn malformed_packet_and_disconnect_can_be_scheduled_at_start() {
    let started = Instant::now();
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.faults.malformed_after = Some(Duration::from_secs(1));
    cfg.faults.disconnect_after = Some((Duration::from_millis(1200), 800));
    let sim = start(cfg);
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    next_packet(&mut ws);
    assert!(started.elapsed() < Duration::from_secs(1), "subscribed before the faults");
    let b = next_binary(&mut ws);
    assert!(Packets::new(&b).next().expect("one item").is_err(), "malformed first");
    assert_eq!(expect_disconnect(&mut ws), DisconnectReason::InternalError);
    expect_closed(&mut ws);
}

#[test]
fn random_walk_moves_subscribed_prices_by_single_ticks_into_the_price_board() {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.prices = PriceSource::RandomWalk { seed: 42, interval: Duration::from_millis(5) };
    let board = PriceBoard::new();
    board.set(FNO, Paise(20_000), Timestamp::from_millis(0));
    let sim = SimFeed::start(cfg, board.clone()).expect("start");
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    let mut last = Paise(20_000);
    for _ in 0..30 {
        let Packet::Ticker(t) = next_packet(&mut ws) else { panic!("ticker") };
        assert!((t.ltp.0 - last.0).abs() <= 5, "{last} → {}", t.ltp);
        assert_eq!(t.ltp.0 % 5, 0);
        last = t.ltp;
    }
    wait_until("the walk writes the price board", || {
        board.get(FNO).is_some_and(|(_, at)| at > Timestamp::from_millis(0))
    });
}

#[test]
fn scenario_rows_replay_in_order_with_their_times() {
    let t0 = Timestamp::parse("2025-11-24T10:30:15+05:30").unwrap();
    let rows: Vec<ScenarioRow> = (0..5)
        .map(|i| ScenarioRow {
            ts: t0.plus_millis(i * 1000),
            instrument: FNO,
            ltp: Paise(12_000 + i * 5),
        })
        .collect();
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.snapshot_on_subscribe = false;
    cfg.prices = PriceSource::Scenario { rows: rows.clone(), pace: Pace::AsFastAsPossible };
    let sim = start(cfg);
    let mut ws = connect(&sim);
    subscribe(&mut ws, FeedMode::Ticker, &[FNO]);
    for row in rows {
        let Packet::Ticker(t) = next_packet(&mut ws) else { panic!("ticker") };
        assert_eq!((t.ltp, t.exchange_time), (row.ltp, row.ts));
    }
}
