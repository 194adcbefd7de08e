//! The stale-price fallback in live mode (risk spec §5): when the feed goes quiet on a
//! position's instrument for `stale_after_ms`, its last traded price is fetched over REST —
//! one batched `POST /marketfeed/ltp` for every stale instrument, within the quote class's
//! one-call-a-second limit — and the exit engine evaluates it as a tick: a stop loss fires on
//! it and exits through the broker.

mod live_support;

use std::time::Duration;

use live_support::*;
use scalper::broker::ratelimit::ApiClass;
use scalper::domain::{ExitReason, Side, Timestamp};
use scalper::sim::broker::FaultConfig;

#[test]
fn stale_instruments_are_priced_by_one_batched_ltp_call_and_evaluated_as_ticks() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start::default());
    let a = e.open(A, Side::Long, 75);
    let b = e.open(B, Side::Long, 75);

    // The market moves but the feed says nothing; 3.5 s later both prices are stale.
    sim.board.set(A, rupees("89.00"), Timestamp(0));
    sim.board.set(B, rupees("95.00"), Timestamp(0));
    e.clock.advance_millis(3_500);

    let t = e.closed(&a);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("89.00")));
    assert!(!t.price_was_stale, "the fetched price is fresh");
    sim.assert_one_filled_exit(&a);
    let core = e.shared.core.clone();
    wait_until("B is marked at the fetched price", || {
        core.lock().position(&b).is_some_and(|p| p.last_price == rupees("95.00"))
    });

    let ltp: Vec<String> = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.path == "/v2/marketfeed/ltp")
        .map(|r| r.body.clone())
        .collect();
    assert!(!ltp.is_empty(), "the fallback asked the broker");
    assert!(ltp[0].contains("52175") && ltp[0].contains("52176"), "one call for both: {ltp:?}");
    let (arrivals, throttled) = sim.broker.arrivals(ApiClass::Quote);
    assert_eq!(throttled, 0);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]) >= Duration::from_millis(990),
            "at most one quote call a second"
        );
    }
    assert_token_never_logged();
    e.stop();
    sim.shutdown();
}
