//! A rejected exit backs off and escalates, it does not storm (README "Exactly once"): the
//! live engine against a simulator that refuses one position's exits. A permanent refusal
//! ("RMS:Insufficient Funds") marks the position exit blocked (API, metrics, a critical
//! alert), retries it slowly and never lets it place more than the per-window cap, while
//! another position's exit goes out at once; the operator's `retry-exit` places exactly one
//! more order. A transient refusal ("Exchange busy") is retried after a backoff, then fills.
//! The engine's clock is a manual one: the test moves time, so backoffs and windows are exact.

mod live_support;

use live_support::*;
use scalper::domain::{PositionId, Side, Timestamp};
use scalper::engine::seams::EngineEvent;
use scalper::exec::{AlertLevel, CoreEvent};
use scalper::risk::Lifecycle;
use scalper::sim::broker::{FaultConfig, Refusal, RefuseOrders};

/// A blocked exit is retried every second, at most 3 exit orders per position in 10 s.
const SHRUNK: &str =
    "[exit_retry]\nblocked_retry_secs = 1\nmax_orders_per_window = 3\nwindow_secs = 10\n";

fn refuse_exits_on(
    sim: &LiveSim,
    instrument: scalper::domain::InstrumentKey,
    why: &str,
    count: Option<u32>,
) {
    sim.broker.faults().refuse_orders(RefuseOrders {
        instrument: Some(instrument),
        correlation_prefix: Some("X".into()),
        refusal: Refusal::exchange(why),
        count,
    });
}

/// The decision instants of the exit orders of `id`, in order.
fn exit_decisions(e: &LiveEngine, id: &PositionId) -> Vec<Timestamp> {
    e.recorder
        .events()
        .iter()
        .filter_map(|ev| match ev {
            EngineEvent::Core(CoreEvent::ExitIntent(i)) if &i.position_id == id => {
                Some(i.created_at)
            }
            _ => None,
        })
        .collect()
}

fn position_json(e: &LiveEngine, id: &PositionId) -> serde_json::Value {
    let (_, body) = e.get("/v1/positions");
    body["positions"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == id.as_str()))
        .cloned()
        .unwrap_or_default()
}

/// The number of rejected exit orders of `id` at the simulator.
fn rejected_at_sim(sim: &LiveSim, id: &PositionId) -> usize {
    sim.exits_of(id).iter().filter(|o| o.reason.contains("Insufficient")).count()
}

#[test]
fn a_permanently_rejected_exit_is_blocked_capped_and_alerted_and_others_still_exit() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start { extra: SHRUNK, ..Start::default() });
    let stuck = e.open(A, Side::Long, 75);
    let other = e.open(B, Side::Long, 75);
    let idle = e.open(C, Side::Long, 75);
    refuse_exits_on(&sim, A, "RMS:Insufficient Funds", None);

    // The stop loss fires; the exchange refuses it: the position is exit blocked.
    e.price(&sim, A, "89.00");
    wait_until("the position shows exit_blocked", || {
        position_json(&e, &stuck)["state"] == "exit_blocked"
    });
    let p = position_json(&e, &stuck);
    assert_eq!(p["exit_blocked"]["cause"], "insufficient_funds", "{p}");
    assert!(
        p["exit_blocked"]["reason"].as_str().unwrap().contains("RMS:Insufficient Funds"),
        "{p}"
    );
    assert_eq!(p["exit"]["retry"]["reason"], "stop_loss", "{p}");
    let critical: Vec<String> = e
        .recorder
        .events()
        .iter()
        .filter_map(|ev| match ev {
            EngineEvent::Core(CoreEvent::Alert(a))
                if a.code == "exit_blocked" && a.level == AlertLevel::Critical =>
            {
                Some(a.message.clone())
            }
            _ => None,
        })
        .collect();
    assert!(!critical.is_empty(), "a critical alert is raised");
    assert!(critical[0].contains(stuck.as_str()) && critical[0].contains("Insufficient Funds"));
    wait_until("the metric counts the blocked position", || {
        metric_value(&e.metrics_text(), "scalper_positions_exit_blocked") == Some(1.0)
    });

    // Thirty seconds of ticks at the stop, ten a second: the blocked exit is retried once a
    // second but never more than 3 times in 10 s (the old engine sent one order per tick).
    for step in 0..300 {
        e.clock.advance_millis(99);
        e.price(&sim, A, if step % 2 == 0 { "88.95" } else { "89.00" });
    }
    let decided = exit_decisions(&e, &stuck);
    wait_until("every decided exit reached the simulator and was refused", || {
        rejected_at_sim(&sim, &stuck) == decided.len()
    });
    assert_eq!(sim.exits_of(&stuck).len(), decided.len(), "one order per decision");
    for (i, t) in decided.iter().enumerate() {
        let in_window = decided[i..].iter().take_while(|s| s.millis_since(*t) < 10_000).count();
        assert!(in_window <= 3, "{in_window} exit orders within 10 s from {t}: {decided:?}");
    }
    assert!((7..=10).contains(&decided.len()), "about 3 per 10 s over 30 s: {decided:?}");

    // Another position's exit is not held back by it.
    e.price(&sim, B, "89.00");
    assert_eq!(e.closed(&other).exit_price, rupees("89.00"));
    sim.assert_one_filled_exit(&other);

    // The operator's retry: exactly one more order, at once.
    let before = sim.exits_of(&stuck).len();
    let (status, body) = e.post(&format!("/v1/positions/{stuck}/retry-exit"), "");
    assert_eq!(status, 202, "{body}");
    wait_until("the retried exit is refused again", || rejected_at_sim(&sim, &stuck) == before + 1);
    wait_until("blocked again", || {
        matches!(
            e.shared.core.lock().position(&stuck).map(|p| &p.lifecycle),
            Some(Lifecycle::Active { .. })
        )
    });
    for step in 0..5 {
        e.price(&sim, A, if step % 2 == 0 { "88.95" } else { "89.00" });
    }
    assert_eq!(sim.exits_of(&stuck).len(), before + 1, "exactly one more order");
    wait_until("shown blocked", || position_json(&e, &stuck)["state"] == "exit_blocked");

    // Unknown position: 404; a position with no rejected exit: 409.
    assert_eq!(e.post("/v1/positions/nope/retry-exit", "").0, 404);
    let (status, body) = e.post(&format!("/v1/positions/{idle}/retry-exit"), "");
    assert_eq!(status, 409, "{body}");
    assert!(sim.exits_of(&idle).is_empty());
    assert_token_never_logged();
    e.stop();
    sim.shutdown();
}

#[test]
fn a_transiently_rejected_exit_is_retried_after_its_backoff_then_fills() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let e = LiveEngine::start(&sim, Start::default());
    let id = e.open(A, Side::Long, 75);
    refuse_exits_on(&sim, A, "Exchange busy, please try again", Some(2));
    let attempts =
        |e: &LiveEngine| match e.shared.core.lock().position(&id).map(|p| p.lifecycle.clone()) {
            Some(Lifecycle::Active { attempts, .. }) => attempts,
            _ => 0,
        };

    e.price(&sim, A, "89.00");
    wait_until("the first exit is refused", || attempts(&e) == 1);
    // Ticks within the backoff (first wait ≤ 250 ms) place nothing.
    for step in 0..5 {
        e.price(&sim, A, if step % 2 == 0 { "88.95" } else { "89.00" });
    }
    assert_eq!(sim.exits_of(&id).len(), 1, "no order within the backoff");
    wait_until("shown active, waiting for a transient retry", || {
        let p = position_json(&e, &id);
        p["state"] == "active" && p["exit"]["retry"]["class"] == "transient"
    });

    // After it: the second attempt, refused too; its wait doubles (≤ 500 ms).
    e.clock.advance_millis(300);
    e.price(&sim, A, "89.00");
    wait_until("the second exit is refused", || attempts(&e) == 2);
    e.clock.advance_millis(260);
    e.price(&sim, A, "88.95");
    assert_eq!(sim.exits_of(&id).len(), 2, "still within the doubled backoff");
    e.clock.advance_millis(300);
    e.price(&sim, A, "89.00");
    let t = e.closed(&id);
    assert_eq!(t.attempt, 3);
    let exits = sim.exits_of(&id);
    assert_eq!(exits.len(), 3, "three orders in all");
    assert_eq!(exits.iter().filter(|o| o.filled_qty == 75).count(), 1, "one fill");
    e.stop();
    sim.shutdown();
}
