//! `/v1/pnl` (the published PnL snapshot) counts an entry as pending as soon as it is taken and
//! stops counting it as soon as it is rejected, also while no position is open: the snapshot
//! is otherwise refreshed only when a position opens or closes, and every 30 s while none is
//! open (found by the soak campaign, whose scenarios start from a flat book).

mod live_support;

use std::time::{Duration, Instant};

use live_support::*;
use scalper::domain::Side;
use scalper::sim::broker::{FaultConfig, Refusal, RefuseOrders, SimBrokerConfig};

/// Well below the 30 s idle refresh, far above a woken refresh.
const PROMPTLY: Duration = Duration::from_secs(5);

fn shows_within(engine: &LiveEngine, what: &str, want: u64) {
    let end = Instant::now() + PROMPTLY;
    loop {
        let (_, pnl) = engine.get("/v1/pnl");
        if pnl["pending_entries"].as_u64() == Some(want) {
            return;
        }
        assert!(Instant::now() < end, "{what}: /v1/pnl still shows {pnl}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_pending_entry_and_its_rejection_show_in_the_pnl_at_once_while_no_position_is_open() {
    // The exchange takes 3 s to reject the entry: long enough to see it pending.
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::from_secs(3),
        ..sim_config(FaultConfig::default())
    });
    sim.broker.faults().refuse_orders(RefuseOrders {
        instrument: Some(A),
        correlation_prefix: Some("N".into()),
        refusal: Refusal::exchange("RMS:Margin Exceeds"),
        count: Some(1),
    });
    let engine = LiveEngine::start(&sim, Start::default());
    engine.price(&sim, A, "100.00");
    shows_within(&engine, "nothing pending yet", 0);

    engine.enter(A, Side::Long, 75);
    shows_within(&engine, "the entry is pending", 1);
    wait_until("the engine has the rejection", || {
        engine.shared.core.lock().export().pending_entries.is_empty()
    });
    shows_within(&engine, "the rejected entry is no longer pending", 0);
    assert_eq!(engine.get("/v1/pnl").1["open_positions"], 0);
    engine.stop();
    sim.shutdown();
}
