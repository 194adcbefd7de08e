//! The tick reader against the real simulator over loopback: ticks into the cache, reconnects
//! after drops and stalls, the 429 cool-off, token reload on 807, lossless position ticks to a
//! slow consumer, fatal disconnects, and a fresh reader restoring every subscription.
//! Conditions are awaited with deadlines, never with fixed sleeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use scalper::domain::{InstrumentKey, Paise, Segment, SystemClock, Tick};
use scalper::feed::codec::DisconnectReason;
use scalper::feed::reader::{
    AccessToken, ConnState, FeedFatal, FeedReader, FeedStats, ReaderConfig, ReaderShared,
};
use scalper::feed::subscribe::FeedMode;
use scalper::feed::{SubscriptionSet, TickCache};
use scalper::ops::health::{HealthBoard, Status};
use scalper::ops::metrics::Metrics;
use scalper::runtime::backoff::BackoffPolicy;
use scalper::runtime::{StopHandle, Worker, WorkerCtx};
use scalper::sim::feed::{HandshakeOutcome, SimFeed, SimFeedConfig, SimFeedControl};
use scalper::sim::prices::PriceBoard;

const CLIENT: &str = "1000000001";
const TOKEN: &str = "tok-1";
const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const BANK: InstrumentKey = InstrumentKey::new(Segment::NseFno, 40001);
const NIFTY: InstrumentKey = InstrumentKey::new(Segment::IdxI, 13);
const DEADLINE: Duration = Duration::from_secs(15);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sim_config() -> SimFeedConfig {
    let mut cfg = SimFeedConfig::new(CLIENT, TOKEN);
    cfg.ping_interval = Duration::from_millis(50);
    cfg
}

fn reader_config(sim: &SimFeed) -> ReaderConfig {
    let mut cfg = ReaderConfig::new(sim.url(), CLIENT);
    cfg.mode = FeedMode::Ticker;
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.backoff = BackoffPolicy::new(Duration::from_millis(20), Duration::from_millis(200), 0.2)
        .expect("valid backoff");
    cfg.stall_timeout = Duration::from_secs(2);
    cfg.cool_off_429 = Duration::from_millis(800);
    cfg.back_off_805 = Duration::from_millis(300);
    cfg.health_every = Duration::from_millis(20);
    cfg
}

/// The engine-side pieces a reader shares, plus handles for the test.
struct Engine {
    shared: ReaderShared,
    stats: Arc<FeedStats>,
    cache: TickCache,
    subs: SubscriptionSet,
    health: HealthBoard,
    metrics: Metrics,
    position_rx: Receiver<Tick>,
    token_calls: Arc<AtomicUsize>,
    fatal_rx: Receiver<FeedFatal>,
}

/// `tokens[i]` answers the i-th call of the token source (the last one repeats).
fn engine(tokens: &[&str], channel_capacity: usize, subs: SubscriptionSet) -> Engine {
    let metrics = Metrics::new();
    let stats = FeedStats::new(&metrics);
    let cache = TickCache::with_capacity(64);
    let health = HealthBoard::new();
    let (tx, position_rx) = bounded(channel_capacity);
    let (fatal_tx, fatal_rx) = bounded(8);
    let token_calls = Arc::new(AtomicUsize::new(0));
    let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let calls = token_calls.clone();
    let shared = ReaderShared {
        cache: cache.clone(),
        subscriptions: subs.clone(),
        position_ticks: tx,
        token_source: Arc::new(move || {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(tokens[i.min(tokens.len() - 1)].clone()))
        }),
        stats: stats.clone(),
        health: health.clone(),
        on_fatal: Arc::new(move |f: &FeedFatal| {
            let _ = fatal_tx.try_send(f.clone());
        }),
        clock: Arc::new(SystemClock),
    };
    Engine { shared, stats, cache, subs, health, metrics, position_rx, token_calls, fatal_rx }
}

struct Running {
    stop: StopHandle,
    ctx: WorkerCtx,
    thread: JoinHandle<anyhow::Result<()>>,
}

fn spawn_reader(cfg: ReaderConfig, shared: ReaderShared) -> Running {
    let (stop, ctx) = WorkerCtx::standalone("feed");
    let worker_ctx = ctx.clone();
    let thread = std::thread::spawn(move || FeedReader::new(cfg, shared).run(&worker_ctx));
    Running { stop, ctx, thread }
}

impl Running {
    /// Stops the reader and checks that it returns promptly and cleanly.
    fn stop(self) {
        let asked = Instant::now();
        self.stop.stop();
        self.thread.join().expect("reader thread").expect("reader returns Ok on stop");
        assert!(asked.elapsed() < Duration::from_secs(2), "stop took {:?}", asked.elapsed());
    }
}

fn ltp_is(cache: &TickCache, key: InstrumentKey, price: Paise) -> bool {
    cache.ltp(key) == Some(price)
}

fn connected_and_subscribed(e: &Engine, ctl: &SimFeedControl, keys: &[InstrumentKey]) {
    let want: BTreeSet<InstrumentKey> = keys.iter().copied().collect();
    wait_until("the reader is connected and subscribed", || {
        e.stats.state() == ConnState::Connected && ctl.subscribed() == want
    });
}

#[test]
fn ticks_flow_into_the_cache_and_health_reports_the_feed() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO, NIFTY]));
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, NIFTY]);
    ctl.set_price(FNO, Paise(12_345));
    ctl.set_price(NIFTY, Paise(2_591_005));
    wait_until("both prices are cached", || {
        ltp_is(&e.cache, FNO, Paise(12_345)) && ltp_is(&e.cache, NIFTY, Paise(2_591_005))
    });
    assert_eq!(
        e.cache.get(NIFTY).and_then(|s| s.prev_close),
        Some(Paise(10_000)),
        "code 6 for IDX_I"
    );
    assert!(e.position_rx.is_empty(), "watchlist ticks are conflated into the cache only");
    wait_until("health says the feed is up", || {
        e.health
            .get("feed")
            .is_some_and(|h| h.status == Status::Ok && h.details["state"] == "connected")
    });
    let h = e.health.get("feed").expect("feed health");
    assert_eq!(h.details["subscribed"], 2);
    let text = e.metrics.render();
    assert!(text.contains("scalper_feed_state{state=\"connected\"} 1"), "{text}");
    assert!(text.contains("scalper_feed_subscribed_instruments 2"), "{text}");
    assert!(
        !text.contains(TOKEN) && !format!("{h:?}").contains(TOKEN),
        "no secret in metrics or health"
    );
    assert_eq!(e.stats.decode_errors.get(), 0);
    reader.stop();
    assert_eq!(e.stats.state(), ConnState::Disconnected);
}

#[test]
fn after_a_forced_drop_the_reader_reconnects_resubscribes_and_ticks_flow_again() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO, BANK]));
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    ctl.drop_connections();
    wait_until("the reader reconnected", || e.stats.reconnects.get() >= 1);
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    ctl.set_price(BANK, Paise(45_005));
    wait_until("ticks flow again", || ltp_is(&e.cache, BANK, Paise(45_005)));
    assert!(e.stats.disconnects.with_label_values(&["transport"]).get() >= 1);
    reader.stop();
}

#[test]
fn a_silent_but_connected_feed_is_detected_as_a_stall_and_healed() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO]));
    let mut cfg = reader_config(&sim);
    cfg.stall_timeout = Duration::from_millis(400);
    let reader = spawn_reader(cfg, e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO]);
    ctl.set_silent(true);
    wait_until("the stall is detected", || {
        e.stats.disconnects.with_label_values(&["stall"]).get() >= 1
    });
    ctl.set_silent(false);
    wait_until("a new connection is up", || e.stats.reconnects.get() >= 1);
    connected_and_subscribed(&e, &ctl, &[FNO]);
    ctl.set_price(FNO, Paise(11_110));
    wait_until("ticks flow after the stall", || ltp_is(&e.cache, FNO, Paise(11_110)));
    reader.stop();
}

#[test]
fn a_handshake_429_is_followed_by_the_cool_off() {
    let mut cfg = sim_config();
    cfg.faults.refuse_handshakes = 1;
    let sim = SimFeed::start(cfg, PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO]));
    let reader_cfg = reader_config(&sim);
    let cool_off = reader_cfg.cool_off_429;
    let reader = spawn_reader(reader_cfg, e.shared.clone());
    wait_until("the reader cools off", || e.stats.state() == ConnState::CoolingOff);
    connected_and_subscribed(&e, &ctl, &[FNO]);
    let hs = ctl.handshakes();
    assert_eq!(hs.len(), 2, "{hs:?}");
    assert_eq!(
        (&hs[0].outcome, &hs[1].outcome),
        (&HandshakeOutcome::Refused, &HandshakeOutcome::Accepted)
    );
    let waited = hs[1].at.duration_since(hs[0].at);
    assert!(waited >= cool_off, "waited {waited:?}, cool-off is {cool_off:?}");
    assert_eq!(e.stats.disconnects.with_label_values(&["http_429"]).get(), 1);
    reader.stop();
}

#[test]
fn token_expired_807_reloads_the_token_and_reconnects_with_the_new_one() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&["tok-1", "tok-2"], 16, SubscriptionSet::with_watchlist([FNO]));
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO]);
    assert_eq!(e.token_calls.load(Ordering::SeqCst), 1);
    ctl.set_token("tok-2");
    ctl.send_disconnect(807);
    wait_until("the reader is back with a new token", || {
        e.stats.reconnects.get() >= 1 && e.stats.state() == ConnState::Connected
    });
    assert_eq!(e.token_calls.load(Ordering::SeqCst), 2, "the token source was asked again");
    let last = ctl.handshakes().pop().expect("handshakes");
    assert_eq!((last.token.as_str(), last.outcome), ("tok-2", HandshakeOutcome::Accepted));
    assert_eq!(e.stats.disconnects.with_label_values(&["807"]).get(), 1);
    connected_and_subscribed(&e, &ctl, &[FNO]);
    reader.stop();
}

#[test]
fn position_ticks_reach_a_slow_consumer_without_loss_and_in_order() {
    const N: i64 = 300;
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let subs = SubscriptionSet::with_watchlist([BANK]);
    subs.position_opened(FNO);
    let e = engine(&[TOKEN], 2, subs);
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    let snapshot = e.position_rx.recv_timeout(DEADLINE).expect("subscription snapshot tick");
    assert_eq!((snapshot.instrument, snapshot.ltp), (FNO, Paise(10_000)));
    for i in 1..=N {
        ctl.set_price(FNO, Paise(10_000 + 5 * i));
        ctl.set_price(BANK, Paise(20_000 + 5 * i));
    }
    // Nobody consumes yet: the channel (capacity 2) fills and the reader must wait, beating.
    wait_until("the reader is held back by the full channel", || {
        e.stats.position_backpressure.get() >= 1
    });
    for _ in 0..5 {
        let age = reader.ctx.heartbeat().age().expect("beating");
        assert!(age < Duration::from_secs(2), "heartbeat age {age:?} while blocked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = Vec::new();
    while got.len() < N as usize {
        let t = e.position_rx.recv_timeout(DEADLINE).expect("every position tick arrives");
        assert_eq!(t.instrument, FNO, "only position instruments reach the exit engine");
        got.push(t.ltp.0);
        std::thread::sleep(Duration::from_micros(200));
    }
    let expected: Vec<i64> = (1..=N).map(|i| 10_000 + 5 * i).collect();
    assert_eq!(got, expected);
    wait_until("the watchlist instrument's latest price is cached", || {
        ltp_is(&e.cache, BANK, Paise(20_000 + 5 * N))
    });
    assert!(e.position_rx.is_empty());
    assert_eq!(e.stats.position_ticks.get(), N as u64 + 1);
    reader.stop();
}

#[test]
fn a_fresh_reader_restores_every_subscription_from_the_shared_set() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([BANK]));
    e.subs.position_opened(FNO);
    let first = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    first.stop();
    wait_until("the simulator saw the socket go", || ctl.connections() == 0);
    assert!(ctl.subscribed().is_empty());
    // The set changes while no reader runs; the next reader must pick that up too.
    e.subs.position_opened(NIFTY);
    e.subs.unwatch(BANK);
    let second = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, NIFTY]);
    // And it follows later changes on the live socket.
    e.subs.position_closed(NIFTY);
    e.subs.watch(BANK);
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    assert_eq!(e.stats.reconnects.get(), 1, "counted across readers through the shared stats");
    second.stop();
}

#[test]
fn a_fatal_disconnect_stops_retrying_alerts_and_can_be_re_armed() {
    let mut cfg = sim_config();
    cfg.data_plan_active = false;
    let sim = SimFeed::start(cfg, PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let subs = SubscriptionSet::with_watchlist([BANK]);
    subs.position_opened(FNO);
    let e = engine(&[TOKEN], 16, subs);
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    let fatal = e.fatal_rx.recv_timeout(DEADLINE).expect("the fatal hook fires");
    assert_eq!(
        fatal,
        FeedFatal { reason: DisconnectReason::DataApiNotSubscribed, open_positions: 1 }
    );
    assert_eq!(e.stats.fatal(), Some(DisconnectReason::DataApiNotSubscribed));
    wait_until("health is down", || {
        e.health
            .get("feed")
            .is_some_and(|h| h.status == Status::Down && h.details["state"] == "stopped")
    });
    // Five times the backoff cap: a retrying reader would have tried again by now.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ctl.handshakes().len(), 1, "no retry after a fatal disconnect");
    ctl.set_data_plan_active(true);
    e.stats.clear_fatal();
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    assert_eq!(e.token_calls.load(Ordering::SeqCst), 2, "re-arming reloads the token");
    reader.stop();
}

#[test]
fn kicked_by_a_sixth_socket_the_reader_backs_off_before_reconnecting() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO]));
    let cfg = reader_config(&sim);
    let back_off = cfg.back_off_805;
    let reader = spawn_reader(cfg, e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO]);
    ctl.send_disconnect(805);
    wait_until("the reader is back", || e.stats.reconnects.get() >= 1);
    let hs = ctl.handshakes();
    let waited = hs[1].at.duration_since(hs[0].at);
    assert!(waited >= back_off, "waited {waited:?} after 805, back-off is {back_off:?}");
    reader.stop();
}

#[test]
fn malformed_packets_are_counted_and_the_feed_goes_on() {
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO]));
    let reader = spawn_reader(reader_config(&sim), e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO]);
    ctl.send_malformed();
    wait_until("the decode error is counted", || e.stats.decode_errors.get() == 1);
    ctl.set_price(FNO, Paise(10_550));
    wait_until("ticks still flow", || ltp_is(&e.cache, FNO, Paise(10_550)));
    assert_eq!(e.stats.reconnects.get(), 0, "a bad packet does not cost the connection");
    reader.stop();
}

#[test]
fn stop_during_a_long_cool_off_returns_promptly_and_health_turns_down() {
    let mut cfg = sim_config();
    cfg.faults.refuse_handshakes = 1;
    let sim = SimFeed::start(cfg, PriceBoard::new()).expect("sim");
    let e = engine(&[TOKEN], 16, SubscriptionSet::with_watchlist([FNO]));
    let mut reader_cfg = reader_config(&sim);
    reader_cfg.cool_off_429 = Duration::from_secs(600);
    reader_cfg.stall_timeout = Duration::from_millis(300);
    let reader = spawn_reader(reader_cfg, e.shared.clone());
    wait_until("the reader cools off", || e.stats.state() == ConnState::CoolingOff);
    wait_until("health turns down once the feed has been gone for the stall timeout", || {
        e.health
            .get("feed")
            .is_some_and(|h| h.status == Status::Down && h.reason.contains("cooling_off"))
    });
    reader.stop();
}

#[test]
fn a_busy_polling_reader_on_a_non_blocking_socket_delivers_every_position_tick_and_reconnects() {
    const N: i64 = 200;
    let sim = SimFeed::start(sim_config(), PriceBoard::new()).expect("sim");
    let ctl = sim.control();
    let subs = SubscriptionSet::with_watchlist([BANK]);
    subs.position_opened(FNO);
    let e = engine(&[TOKEN], 1024, subs);
    let mut cfg = reader_config(&sim);
    cfg.waiting = scalper::runtime::spin::Waiting::Spin;
    let reader = spawn_reader(cfg, e.shared.clone());
    connected_and_subscribed(&e, &ctl, &[FNO, BANK]);
    let snapshot = e.position_rx.recv_timeout(DEADLINE).expect("subscription snapshot tick");
    assert_eq!((snapshot.instrument, snapshot.ltp), (FNO, Paise(10_000)));
    for i in 1..=N {
        ctl.set_price(FNO, Paise(10_000 + 5 * i));
    }
    let got: Vec<i64> = (0..N)
        .map(|_| e.position_rx.recv_timeout(DEADLINE).expect("every position tick arrives").ltp.0)
        .collect();
    assert_eq!(got, (1..=N).map(|i| 10_000 + 5 * i).collect::<Vec<_>>());
    // A subscription change is written on the non-blocking socket too.
    e.subs.position_opened(NIFTY);
    wait_until("the new position's instrument is subscribed", || ctl.subscribed().contains(&NIFTY));
    // Pings keep it alive (no stall on a socket that never blocks), and a drop heals.
    assert_eq!(e.stats.disconnects.with_label_values(&["stall"]).get(), 0);
    ctl.drop_connections();
    wait_until("the reader reconnected", || e.stats.reconnects.get() >= 1);
    connected_and_subscribed(&e, &ctl, &[FNO, BANK, NIFTY]);
    ctl.set_price(BANK, Paise(45_005));
    wait_until("ticks flow again", || ltp_is(&e.cache, BANK, Paise(45_005)));
    reader.stop();
}
