//! The exit core under a broker that rejects exits: backoff, exit blocked, the per-window
//! order cap and the operator's retry (`exit_retry`).

use std::time::Duration;

use super::*;
use crate::domain::Segment;
use crate::domain::Side;
use crate::exec::exit_retry::ExitRetryPolicy;
use crate::risk::position::Origin;
use crate::risk::trading_state::TradingCell;

const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);
const INVALID_IP: &str = r#"HTTP 400 DH-905 "Invalid IP""#;

fn ist(text: &str) -> Timestamp {
    Timestamp::parse(&format!("2025-11-24T{text}+05:30")).unwrap()
}

fn tick(instrument: InstrumentKey, ltp: i64, at: Timestamp) -> Tick {
    Tick::at(instrument, Paise(ltp), at)
}

fn core(policy: ExitRetryPolicy) -> ExitCore {
    let params = CoreParams { exit_retry: policy, ..CoreParams::default() };
    let mut c = ExitCore::new(params, TradingCell::active(ist("09:00:00")));
    c.on_clock(ist("09:00:00"));
    for (id, instrument) in [("p1", A), ("p2", B)] {
        let new = NewPosition {
            id: PositionId::new(id),
            instrument,
            side: Side::Long,
            quantity: Qty(75),
            entry_price: Paise(10_000),
            opened_at: ist("09:30:00"),
        };
        c.open_position(new, Origin::Adopted).unwrap();
    }
    c
}

fn intents(events: &[CoreEvent]) -> Vec<OrderIntent> {
    events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::ExitIntent(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

fn alerts<'a>(events: &'a [CoreEvent], code: &str) -> Vec<&'a Alert> {
    events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::Alert(a) if a.code == code => Some(a),
            _ => None,
        })
        .collect()
}

/// Feeds p1's instrument a stop-loss price every `step_ms` from `from` for `for_ms`, running
/// the clock too, and rejects every exit with `why` at once: the exit orders placed.
fn storm(
    c: &mut ExitCore,
    why: &str,
    from: Timestamp,
    for_ms: i64,
    step_ms: i64,
) -> Vec<Timestamp> {
    let mut sent = Vec::new();
    let mut t = from;
    while t < from.plus_millis(for_ms) {
        let mut ev = c.on_clock(t);
        ev.extend(c.on_tick(&tick(A, 8_000, t)));
        for x in intents(&ev) {
            assert_eq!(x.position_id, PositionId::new("p1"));
            sent.push(t);
            c.on_exit_rejected(&x.correlation_id, why, t).unwrap();
        }
        t = t.plus_millis(step_ms);
    }
    sent
}

#[test]
fn a_permanent_rejection_blocks_the_exit_alerts_and_retries_once_a_minute() {
    let mut c = core(ExitRetryPolicy::default());
    let t0 = ist("09:31:00");
    let ev = c.on_tick(&tick(A, 9_000, t0));
    let x1 = intents(&ev).remove(0);
    let ev = c.on_exit_rejected(&x1.correlation_id, INVALID_IP, t0.plus_millis(5)).unwrap();
    let critical = alerts(&ev, "exit_blocked");
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0].level, AlertLevel::Critical);
    assert!(critical[0].message.contains("p1") && critical[0].message.contains("invalid_ip"));
    assert!(critical[0].message.contains("Invalid IP"));
    assert!(ev.iter().any(|e| matches!(e, CoreEvent::Position(p) if matches!(&p.change, PositionChange::ExitBlocked { cause, .. } if cause == "invalid_ip"))));
    // The API's view.
    let at = t0.plus_millis(10);
    let snap = c.snapshot(at, Mono::of_wall(at));
    let v = snap.positions.iter().find(|p| p.id == PositionId::new("p1")).unwrap();
    assert_eq!(v.state_name(), "exit_blocked");
    let r = v.exit_retry.as_ref().unwrap();
    assert_eq!(r.blocked.as_ref().unwrap().why, INVALID_IP);
    assert_eq!(r.retry_at, t0.plus_millis(60_005));
    assert_eq!(c.exits_blocked(), 1);
    // A minute of ticks at the stop: nothing for p1; p2's stop still goes at once.
    let sent = storm(&mut c, INVALID_IP, t0.plus_millis(100), 59_800, 100);
    assert!(sent.is_empty(), "{sent:?}");
    let ev = c.on_tick(&tick(B, 9_000, t0.plus_millis(30_000)));
    assert_eq!(intents(&ev)[0].position_id, PositionId::new("p2"));
    // The slow retry, from the clock alone; rejected again: the alert is repeated.
    let ev = c.on_clock(t0.plus_millis(60_005));
    let x2 = intents(&ev).remove(0);
    assert_eq!(
        (x2.correlation_id.as_str(), x2.purpose),
        ("X2-p1", OrderPurpose::Exit(ExitReason::StopLoss))
    );
    let ev = c.on_exit_rejected(&x2.correlation_id, INVALID_IP, t0.plus_millis(60_010)).unwrap();
    assert_eq!(alerts(&ev, "exit_blocked").len(), 1);
    // The cause clears: the next slow retry fills and the block is gone.
    let ev = c.on_clock(t0.plus_millis(120_010));
    let x3 = intents(&ev).remove(0);
    c.on_exit_filled(&x3.correlation_id, Paise(8_000), Qty(75), t0.plus_millis(120_020)).unwrap();
    assert_eq!(c.exits_blocked(), 0);
}

#[test]
fn a_broker_rejecting_every_exit_gets_at_most_the_cap_in_any_window() {
    // Transient rejections: the backoff alone would allow about 16 orders a minute.
    let mut c = core(ExitRetryPolicy::default());
    let sent =
        storm(&mut c, r#"HTTP 429 DH-904 "Too many requests""#, ist("09:31:00"), 180_000, 50);
    for (i, t) in sent.iter().enumerate() {
        let in_window = sent[i..].iter().take_while(|s| s.millis_since(*t) < 60_000).count();
        assert!(in_window <= 6, "{in_window} orders within a minute from {t}: {sent:?}");
    }
    assert!(sent.len() >= 15, "it keeps trying: {}", sent.len());
    // The waits between the first orders grow: 250 ms doubling (minus jitter).
    let gaps: Vec<i64> = sent.windows(2).map(|w| w[1].millis_since(w[0])).take(5).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "{gaps:?}");
    assert!(gaps[0] >= 200 && gaps[0] <= 300, "{gaps:?}");
}

#[test]
fn a_shrunk_window_and_cap_hold_a_permanently_blocked_exit_too() {
    let policy = ExitRetryPolicy {
        blocked_retry: Duration::from_millis(100),
        max_orders: 2,
        window: Duration::from_secs(10),
        ..ExitRetryPolicy::default()
    };
    let mut c = core(policy);
    let sent = storm(&mut c, "RMS:Insufficient Funds", ist("09:31:00"), 30_000, 50);
    assert_eq!(sent.len(), 6, "2 per 10 s over 30 s: {sent:?}");
}

#[test]
fn the_operators_retry_places_exactly_one_order_now_or_says_why_not() {
    let mut c = core(ExitRetryPolicy::default());
    let t0 = ist("09:31:00");
    let p1 = PositionId::new("p1");
    assert_eq!(
        c.retry_exit(&PositionId::new("nope"), t0),
        Err(RetryExitError::UnknownPosition(PositionId::new("nope")))
    );
    assert!(matches!(
        c.retry_exit(&p1, t0),
        Err(RetryExitError::NotRetryable { state: "active", .. })
    ));
    let x1 = intents(&c.on_tick(&tick(A, 9_000, t0))).remove(0);
    assert!(matches!(
        c.retry_exit(&p1, t0),
        Err(RetryExitError::NotRetryable { state: "exiting", .. })
    ));
    c.on_exit_rejected(&x1.correlation_id, "RMS:Insufficient Funds", t0).unwrap();
    let at = t0.plus_millis(1_000);
    assert!(intents(&c.on_tick(&tick(A, 9_000, at))).is_empty());
    let ev = c.retry_exit(&p1, at).unwrap();
    let xs = intents(&ev);
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].correlation_id.as_str(), "X2-p1");
    assert!(intents(&c.on_tick(&tick(A, 9_000, at))).is_empty());
    assert!(matches!(c.retry_exit(&p1, at), Err(RetryExitError::NotRetryable { .. })));
    // Rejected again: blocked as before, and one more operator retry is one more order.
    c.on_exit_rejected(&xs[0].correlation_id, "RMS:Insufficient Funds", at).unwrap();
    assert_eq!(intents(&c.retry_exit(&p1, at.plus_millis(1)).unwrap()).len(), 1);
}
