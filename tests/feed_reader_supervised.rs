//! The tick reader under the real supervisor: a panic inside the reader (injected with a
//! failpoint while a message is being handled) is respawned, the fresh reader reconnects and
//! restores every subscription from the shared set, and ticks flow again. In its own test
//! binary because failpoints are process-wide.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use scalper::domain::{InstrumentKey, Paise, Segment, SystemClock};
use scalper::feed::reader::{
    AccessToken, FeedFatal, FeedReader, FeedStats, ReaderConfig, ReaderShared,
};
use scalper::feed::subscribe::FeedMode;
use scalper::feed::{SubscriptionSet, TickCache};
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::backoff::BackoffPolicy;
use scalper::runtime::{Supervisor, SupervisorConfig, SupervisorEvent, WorkerSpec, failpoint};
use scalper::sim::feed::{SimFeed, SimFeedConfig};
use scalper::sim::prices::PriceBoard;

const CLIENT: &str = "1000000001";
const TOKEN: &str = "tok-1";
const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const NIFTY: InstrumentKey = InstrumentKey::new(Segment::IdxI, 13);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_reader_panic_is_respawned_by_the_supervisor_and_subscriptions_are_restored() {
    let mut sim_cfg = SimFeedConfig::new(CLIENT, TOKEN);
    sim_cfg.ping_interval = Duration::from_millis(50);
    let sim = SimFeed::start(sim_cfg, PriceBoard::new()).expect("sim");
    let ctl = sim.control();

    let metrics = Metrics::new();
    let cache = TickCache::with_capacity(64);
    let subs = SubscriptionSet::with_watchlist([NIFTY]);
    subs.position_opened(FNO);
    let (tx, position_rx) = bounded(1024);
    let shared = ReaderShared {
        cache: cache.clone(),
        subscriptions: subs.clone(),
        position_ticks: tx,
        token_source: Arc::new(|| Ok(AccessToken::new(TOKEN.to_string()))),
        stats: FeedStats::new(&metrics),
        health: HealthBoard::new(),
        on_fatal: Arc::new(|_: &FeedFatal| {}),
        clock: Arc::new(SystemClock),
    };
    let mut cfg = ReaderConfig::new(sim.url(), CLIENT);
    cfg.mode = FeedMode::Ticker;
    cfg.poll_interval = Duration::from_millis(10);
    cfg.backoff = BackoffPolicy::new(Duration::from_millis(20), Duration::from_millis(200), 0.2)
        .expect("valid backoff");

    let mut sup = Supervisor::new(
        SupervisorConfig {
            backoff_base: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(200),
            check_every: Duration::from_millis(20),
            ..SupervisorConfig::default()
        },
        metrics.clone(),
    );
    sup.add(WorkerSpec::new("tick_reader", Duration::from_secs(10), move || {
        Box::new(FeedReader::new(cfg.clone(), shared.clone()))
    }));
    let handle = sup.start().expect("supervisor");

    let want: BTreeSet<InstrumentKey> = [FNO, NIFTY].into_iter().collect();
    wait_until("subscribed", || ctl.subscribed() == want);
    ctl.set_price(FNO, Paise(12_000));
    wait_until("the first tick", || cache.ltp(FNO) == Some(Paise(12_000)));
    let handshakes_before = ctl.handshakes().len();

    // The next message panics the reader mid-handling.
    failpoint::arm("tick_reader.message", 1);
    ctl.set_price(FNO, Paise(12_005));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match handle.events().recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(SupervisorEvent::WorkerRestarted { worker, restarts }) => {
                assert_eq!((worker.as_str(), restarts), ("tick_reader", 1));
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("the reader was not respawned"),
        }
    }
    // The fresh reader connected again and subscribed everything from the shared set.
    wait_until("a new handshake", || ctl.handshakes().len() > handshakes_before);
    wait_until("subscriptions restored", || ctl.subscribed() == want);
    ctl.set_price(FNO, Paise(12_100));
    wait_until("ticks flow again", || cache.ltp(FNO) == Some(Paise(12_100)));
    assert!(
        position_rx.try_iter().any(|t| t.ltp == Paise(12_100)),
        "position ticks reach the exit engine"
    );
    assert_eq!(handle.statuses()[0].restarts, 1);
    handle.shutdown();
    assert!(!handle.join().is_escalation());
}
