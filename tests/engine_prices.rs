//! Which prices the exit rules act on, and how old they are, end to end: the simulator's feed
//! over a real socket, the tick reader, the exit engine and the paper broker.
//!
//! - LTP 0.00, ₹1e9 and a single 10× spike on a position's instrument fire nothing; a move
//!   confirmed by a second tick fires the exit at the confirming price.
//! - The wall clock stepped an hour forward and back with positions open fires no exit and
//!   makes no price stale; a real silence on the monotonic clock still does.

mod engine_support;

use engine_support::*;
use scalper::domain::{Clock, ExitReason, Side};

/// Waits until `/v1/positions` shows position `id` at `last_price`. A snapshot stamped with
/// the current clock may have been taken before the exit engine evaluated the clock's last
/// tick, so the clock alone does not say the snapshot has caught up; the price does (the exit
/// engine evaluated it before this is called).
fn wait_view_price(h: &Harness, id: &str, last_price: &str) {
    let mut seen = serde_json::Value::Null;
    wait_until(&format!("a snapshot of {id} at last price {last_price}"), || {
        let (_, body) = h.get("/v1/positions");
        let found = body["positions"].as_array().and_then(|ps| ps.iter().find(|p| p["id"] == id));
        seen = found.map(|p| p["last_price"].clone()).unwrap_or_default();
        seen == last_price
    });
}

#[test]
fn bad_ticks_never_reach_the_rules_and_a_confirmed_move_does() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    h.price(B, "100.00");
    let long = h.open(A, Side::Long, 75);
    let short = h.open(B, Side::Short, 75);

    // 0.00 is a stop loss for the long and a take profit for the short; ₹1e9 and a 10× spike
    // a take profit for the long.
    h.at("10:00:02");
    h.price(A, "0.00");
    h.price(B, "0.00");
    h.at("10:00:03");
    h.price(A, "1000000000.00");
    h.at("10:00:04");
    h.price(A, "100.50");
    h.at("10:00:05");
    h.price(A, "1000.00");
    h.at("10:00:06");
    h.price(A, "101.00");
    h.price(B, "99.00");
    assert!(h.recorder.closed(&long).is_none(), "no exit of the long on a bad tick");
    assert!(h.recorder.closed(&short).is_none(), "no exit of the short on a bad tick");
    let core = h.shared.core.clone();
    assert!(core.lock().positions().all(|p| p.is_active()));
    wait_view_price(&h, long.as_str(), "101.00");
    let dropped = h.metric("scalper_price_guard_total{outcome=\"dropped\"}");
    assert_eq!(dropped, Some(2.0));
    assert_eq!(h.metric("scalper_price_guard_total{outcome=\"discarded\"}"), Some(2.0));

    // A real fall to 75.00, confirmed by the next tick: the stop loss fires at that price.
    h.at("10:00:07");
    h.price(A, "75.00");
    assert!(h.recorder.closed(&long).is_none(), "one tick of a 25 % fall is only a suspect");
    h.clock.advance_millis(500);
    h.price(A, "74.90");
    let t = h.closed(&long);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("74.90")));
    assert_eq!(h.metric("scalper_price_guard_total{outcome=\"confirmed\"}"), Some(1.0));
    h.stop();
}

#[test]
fn a_wall_clock_step_either_way_fires_no_exit_and_makes_nothing_stale() {
    let mut h = Harness::start("[risk]\nstale_after_ms = 3000\nstale_exit_after_secs = 60\n");
    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "100.50");
    let core = h.shared.core.clone();
    // Waits until the exit engine's timed rules ran, and a snapshot was published, at the
    // clock's current wall time; returns the position as that snapshot shows it.
    let settled = |h: &Harness| {
        let (now, mono) = (h.clock.now(), h.clock.mono());
        wait_until("the timed rules ran after the step", || {
            core.lock().mono_reading() == Some(mono)
        });
        let mut view = serde_json::Value::Null;
        wait_until("a snapshot at the stepped time", || {
            let (_, body) = h.get("/v1/positions");
            view = body["positions"][0].clone();
            body["at"] == now.to_ist_iso()
        });
        view
    };

    for step in [3_600_000, -3_600_000, -3_600_000] {
        h.clock.step_wall_millis(step);
        h.clock.advance_millis(10);
        let view = settled(&h);
        assert!(h.recorder.closed(&id).is_none(), "no exit after a wall step of {step} ms");
        assert!(core.lock().positions().all(|p| p.is_active()), "no exit started");
        assert_eq!(
            (&view["id"], &view["price_is_stale"]),
            (&serde_json::json!(id), &serde_json::json!(false)),
            "step {step}"
        );
    }

    // An hour behind the position's opening on the wall clock, its ticks still reach the rules.
    h.clock.advance_millis(1_000);
    h.price(A, "90.00");
    let t = h.closed(&id);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("90.00")));
    h.clock.step_wall_millis(3_600_000);

    // A real silence (the monotonic clock moves) still makes a price stale and exits.
    h.clock.advance_millis(1_000);
    h.price(B, "100.00");
    let silent = h.open(B, Side::Long, 75);
    h.clock.advance_millis(1_000);
    h.price(B, "100.10");
    h.clock.advance_millis(61_000);
    let t = h.closed(&silent);
    assert_eq!(t.reason, ExitReason::StaleFeed);
    h.stop();
}
