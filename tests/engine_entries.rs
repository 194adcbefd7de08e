//! Entries through `POST /v1/orders` on the running engine: every refusal says why over HTTP
//! (bad body, no price, open-position limit, re-entry cooldown, operator halt, entry cut-off), a
//! position's instrument is subscribed and its ticks come through the reader's lossless channel
//! to the exit engine, and a live reload of `[risk]` applies from the next tick.

mod engine_support;

use engine_support::*;
use scalper::domain::{Bp, ExitReason, Side};

#[test]
fn entry_refusals_say_why_over_http() {
    let mut h = Harness::start(
        r#"
[limits]
max_open_positions = 2
reentry_cooldown_secs = 180
[session]
entry_cutoff_time = "10:25"
square_off_time = "10:30"
"#,
    );
    // Bad bodies never reach the engine's checks.
    let (status, body) = h.post("/v1/orders", "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) = h.post("/v1/orders", r#"{"instrument": "NSE_FNO:52175", "side": "LONG"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("quantity"), "{body}");
    let (status, body) =
        h.post("/v1/orders", r#"{"instrument": "NSE_FNO:52175", "side": "long", "quantity": 75}"#);
    assert_eq!(status, 400, "{body}");

    // No price yet: refused, and the instrument is subscribed so that a retry finds one.
    h.at("10:00:01");
    let (status, body) = h.order(UNWATCHED, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("no_price")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("subscribed it now"), "{body}");
    wait_until("the unwatched instrument is subscribed", || {
        h.prices.subscribed().contains(&UNWATCHED)
    });
    h.price(UNWATCHED, "200.00");
    let first = h.open(UNWATCHED, Side::Long, 75);

    // The open-position limit counts open positions.
    h.at("10:00:02");
    h.price(A, "100.00");
    let second = h.open(A, Side::Long, 75);
    h.price(B, "100.00");
    let (status, body) = h.order(B, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("max_open_positions")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit of 2"), "{body}");

    // Re-entry cooldown: 180 s from the exit on that instrument.
    h.at("10:00:03");
    h.price(A, "90.00");
    assert_eq!(h.closed(&second).reason, ExitReason::StopLoss);
    h.at("10:03:03");
    h.price(A, "90.00");
    let (status, body) = h.order(A, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("reentry_cooldown")), "{body}");

    // Operator halt: entries stop, exits go on.
    let (status, body) = h.post("/v1/halt", "");
    assert_eq!((status, body["trading"]["state"].as_str()), (200, Some("halted")), "{body}");
    assert_eq!(body["trading"]["reason"], "operator");
    h.at("10:03:04");
    h.price(B, "100.00");
    let (status, body) = h.order(B, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("trading_not_active")), "{body}");
    h.price(UNWATCHED, "180.00");
    let t = h.closed(&first);
    assert_eq!(
        (t.reason, t.exit_price),
        (ExitReason::StopLoss, rupees("180.00")),
        "exits continue while halted"
    );
    let (status, body) = h.post("/v1/resume", "");
    assert_eq!((status, body["trading"]["state"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = h.post("/v1/resume", "");
    assert_eq!(status, 200, "a second resume is harmless: {body}");

    // Entry cut-off.
    h.at("10:25:00");
    h.price(B, "100.00");
    let (status, body) = h.order(B, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("after_entry_cutoff")), "{body}");

    let text = h.metrics_text();
    for (code, n) in [
        ("no_price", 1.0),
        ("max_open_positions", 1.0),
        ("reentry_cooldown", 1.0),
        ("accepted", 2.0),
    ] {
        assert_eq!(
            metric_sum(&text, "scalper_entries_total", &[("outcome", code)]),
            n,
            "entries {code}"
        );
    }
    h.stop();
}

#[test]
fn a_position_opened_through_the_api_is_subscribed_and_its_ticks_come_through_the_reader() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(C, "100.00");
    assert!(!h.shared.subscriptions.is_position(C));
    let id = h.open(C, Side::Short, 75);
    assert!(
        h.shared.subscriptions.is_position(C),
        "the position's instrument is tracked losslessly"
    );

    // The reader notices the new position within one socket read; from then on the
    // instrument's ticks reach the exit engine through the channel, not only the cache.
    let before = h.shared.feed_stats.position_ticks.get();
    let mut ms = 0;
    while h.shared.feed_stats.position_ticks.get() == before {
        ms += 1;
        assert!(ms < 10_000, "the reader forwards the position's ticks");
        h.clock.set(ist("10:00:02").plus_millis(ms));
        h.price(C, "101.00");
    }
    let evaluated = h.shared.m.ticks_evaluated.get();
    let forwarded = h.shared.feed_stats.position_ticks.get();
    h.at("10:00:20");
    h.price(C, "110.00");
    assert_eq!(
        h.shared.feed_stats.position_ticks.get(),
        forwarded + 1,
        "the tick went through the channel"
    );
    assert!(h.shared.m.ticks_evaluated.get() > evaluated);
    let t = h.closed(&id);
    assert_eq!((t.reason, t.exit_price), (ExitReason::StopLoss, rupees("110.00")));
    wait_until("the instrument is no longer a position's", || {
        !h.shared.subscriptions.is_position(C)
    });
    assert!(h.prices.subscribed().contains(&C), "still on the watchlist");
    h.stop();
}

#[test]
fn a_live_reload_applies_tighter_risk_from_the_next_tick() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "97.50");
    assert!(h.recorder.closed(&id).is_none(), "-2.5 % under the default 10 % stop");

    let reloaded =
        test_config(h.dir.path(), h.config.feed.url.as_str(), "[risk]\nstop_loss_pct = 2\n");
    (h.reload)(&reloaded);
    let core = h.shared.core.clone();
    wait_until("the exit engine applied the reload", || {
        core.lock().risk_params().stop_loss == Bp(200)
    });
    h.at("10:00:03");
    h.price(A, "97.50");
    let t = h.closed(&id);
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::StopLoss, rupees("97.50"), ist("10:00:03"))
    );
    h.stop();
}
