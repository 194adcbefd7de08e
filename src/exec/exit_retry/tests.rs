use super::*;

fn id(s: &str) -> PositionId {
    PositionId::new(s)
}

const T0: Timestamp = Timestamp(1_000_000);

fn policy() -> ExitRetryPolicy {
    ExitRetryPolicy::default()
}

#[test]
fn rejections_classify_per_dhan_errors_and_oms_descriptions() {
    let table: &[(&str, RejectionClass, &str)] = &[
        // REST refusals as the client renders them (HTTP, code, message).
        (r#"HTTP 400 DH-905 "Invalid IP""#, Permanent, "invalid_ip"),
        (
            r#"HTTP 400 DH-905 "Missing required fields, bad values for parameters etc.""#,
            Permanent,
            "invalid_input",
        ),
        (r#"HTTP 429 DH-904 "Too many requests on server""#, Transient, "rate_limit"),
        (r#"HTTP 500 DH-908 "Internal Server Error""#, Transient, "broker_unavailable"),
        (r#"HTTP 401 DH-901 "Client ID or token invalid""#, Permanent, "authentication"),
        (r#"HTTP 400 DH-906 "Invalid Token""#, Permanent, "authentication"),
        (r#"HTTP 400 DH-903 "Segment not activated""#, Permanent, "account"),
        (r#"HTTP 400 DH-906 "Incorrect request for order""#, Permanent, "order_error"),
        // Exchange / RMS refusals from the order book (`omsErrorDescription`).
        ("order 52000000000001 REJECTED: RMS:Insufficient Funds", Permanent, "insufficient_funds"),
        ("order 1 REJECTED: RMS:Margin Shortfall:1234.50", Permanent, "insufficient_funds"),
        ("order 1 REJECTED: Quantity should be multiple of lot size", Permanent, "lot_size"),
        ("order 1 REJECTED: Order quantity exceeds freeze limit", Permanent, "freeze_quantity"),
        ("order 1 REJECTED: Security is in ban period", Permanent, "instrument_blocked"),
        ("order 1 REJECTED: Trading in this scrip is blocked", Permanent, "instrument_blocked"),
        ("order 1 REJECTED: Exchange busy, please try again", Transient, "exchange_busy"),
        ("order 1 REJECTED: RMS:No last traded price for NSE_FNO:52175", Transient, "no_price"),
        ("RMS: price band", Transient, "price_band"),
        ("RMS:1:Order Price needs to be Circuit Limits of 80.00 - 120.00", Transient, "price_band"),
        ("order 1 REJECTED: BANKNIFTY exchange not connected", Transient, "exchange_busy"),
        // The engine's own refusal, and anything unknown.
        ("not sent: this instance does not hold the lease", Permanent, "order_gate"),
        ("order 1 REJECTED: something new", Permanent, "unrecognised"),
        ("", Permanent, "unrecognised"),
    ];
    for &(why, class, cause) in table {
        assert_eq!(classify(why), Classified { class, cause }, "{why:?}");
    }
}

#[test]
fn transient_rejections_back_off_doubling_to_the_cap_with_jitter_that_only_shortens() {
    let mut r = ExitRetries::new(policy());
    let p = id("p1");
    let mut at = T0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        assert_eq!(r.gate(&p, at), Gate::Go);
        r.sent(&p, at);
        let v = r.rejected(&p, ExitReason::StopLoss, "HTTP 429 DH-904 \"slow\"", at);
        assert!(!v.blocked && !v.newly_blocked);
        waits.push(v.retry_at.millis_since(at));
        // The next order goes once the cap allows it too.
        at = match r.gate(&p, v.retry_at) {
            Gate::Go => v.retry_at,
            Gate::Wait { until, .. } => until,
        };
    }
    let ceilings = [250, 500, 1_000, 2_000, 4_000, 5_000, 5_000, 5_000];
    for (w, c) in waits.iter().zip(ceilings) {
        assert!(*w <= c && *w >= c * 8 / 10, "wait {w} for ceiling {c}: {waits:?}");
    }
    // Deterministic: the same position and count draw the same jitter.
    let mut again = ExitRetries::new(policy());
    again.sent(&p, T0);
    assert_eq!(
        again.rejected(&p, ExitReason::StopLoss, "DH-904", T0).retry_at.millis_since(T0),
        waits[0]
    );
}

#[test]
fn a_permanent_rejection_blocks_and_retries_slowly_until_the_position_is_out() {
    let mut r = ExitRetries::new(policy());
    let p = id("p1");
    r.sent(&p, T0);
    let v = r.rejected(&p, ExitReason::StopLoss, "RMS:Insufficient Funds", T0);
    assert!(v.blocked && v.newly_blocked);
    assert_eq!(v.retry_at, T0.plus_millis(60_000));
    assert_eq!(r.gate(&p, T0.plus_millis(59_999)), Gate::Wait { until: v.retry_at, capped: false });
    assert!(r.due(T0.plus_millis(59_999)).is_empty());
    assert_eq!(r.due(v.retry_at), vec![(p.clone(), ExitReason::StopLoss)]);
    assert_eq!(r.next_due(T0), Some(v.retry_at));
    // Rejected again, even transiently: still blocked, still slow, alert not new.
    let t1 = v.retry_at;
    r.sent(&p, t1);
    let v2 = r.rejected(&p, ExitReason::StopLoss, "DH-904", t1);
    assert!(v2.blocked && !v2.newly_blocked);
    assert_eq!(v2.retry_at, t1.plus_millis(60_000));
    let view = r.view(&p, t1).unwrap();
    assert_eq!(view.rejections, 2);
    assert_eq!(
        view.blocked.as_ref().map(|b| (b.cause.as_str(), b.since)),
        Some(("insufficient_funds", T0))
    );
    assert_eq!(r.blocked(), 1);
    r.forget(&p);
    assert_eq!(r.gate(&p, t1), Gate::Go);
    assert_eq!(r.blocked(), 0);
}

#[test]
fn no_position_sends_more_than_the_cap_within_the_window() {
    let pol = ExitRetryPolicy { max_orders: 3, window: Duration::from_secs(10), ..policy() };
    let mut r = ExitRetries::new(pol);
    let (p, q) = (id("p"), id("q"));
    for i in 0..3 {
        let at = T0.plus_millis(i * 100);
        assert_eq!(r.gate(&p, at), Gate::Go);
        r.sent(&p, at);
    }
    // Full: the next slot frees when the first order leaves the window.
    let release = T0.plus_millis(10_000);
    assert_eq!(r.gate(&p, T0.plus_millis(500)), Gate::Wait { until: release, capped: true });
    assert_eq!(r.gate(&p, release), Gate::Go);
    // Another position is not affected.
    assert_eq!(r.gate(&q, T0.plus_millis(500)), Gate::Go);
    // A backoff past the cap release is what holds.
    let v = r.rejected(&p, ExitReason::KillSwitch, "DH-905 Invalid IP", T0.plus_millis(500));
    assert_eq!(r.gate(&p, T0.plus_millis(600)), Gate::Wait { until: v.retry_at, capped: false });
}

#[test]
fn an_operator_retry_lets_exactly_one_order_through_at_once() {
    let pol = ExitRetryPolicy { max_orders: 1, ..policy() };
    let mut r = ExitRetries::new(pol);
    let p = id("p");
    assert_eq!(r.operator_retry(&p), Err(OperatorRetry::NothingToRetry));
    r.sent(&p, T0);
    r.rejected(&p, ExitReason::TakeProfit, "Insufficient margin", T0);
    let now = T0.plus_millis(10);
    assert!(matches!(r.gate(&p, now), Gate::Wait { .. }));
    assert_eq!(r.operator_retry(&p), Ok(ExitReason::TakeProfit));
    assert_eq!(r.gate(&p, now), Gate::Go);
    r.sent(&p, now);
    assert!(matches!(r.gate(&p, now), Gate::Wait { .. }), "one order only");
    // A pass that led to no order can be withdrawn.
    r.operator_retry(&p).unwrap();
    r.cancel_operator_retry(&p);
    assert!(matches!(r.gate(&p, now), Gate::Wait { .. }));
}
