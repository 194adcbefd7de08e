//! The whole engine end to end: positions opened through `POST /v1/orders`, prices scripted on
//! the simulator, exits for the right reasons at the right prices and times (stop loss, take
//! profit, ratchet, trailing stop, square-off, daily loss limit, kill switch), and `/v1/pnl` and
//! `/metrics` in agreement with `replay` of the same ticks and positions.

mod engine_support;

use engine_support::*;
use scalper::domain::{ExitReason, Side};
use scalper::replay::ReplaySummary;

/// The engine's trades, `/v1/pnl` and `/metrics` against replay's.
fn assert_agrees_with_replay(h: &Harness, summary: &ReplaySummary, pnl: &serde_json::Value) {
    let mut engine: Vec<_> = h.recorder.closed_trades().iter().map(trade_key).collect();
    engine.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    let replayed: Vec<_> = summary.trades.iter().map(trade_key).collect();
    assert_eq!(engine, replayed, "the engine and replay close the same trades the same way");
    assert!(summary.open_positions.is_empty(), "replay leaves nothing open");
    assert!(h.shared.core.lock().positions().next().is_none(), "the engine leaves nothing open");

    let t = &summary.totals;
    assert_eq!(pnl["realised_gross"], t.gross_pnl.to_string());
    assert_eq!(pnl["charges"], t.charges.to_string());
    assert_eq!(pnl["realised_net"], t.net_pnl.to_string());
    assert_eq!(pnl["day_pnl"], t.net_pnl.to_string());

    let text = h.metrics_text();
    assert_eq!(metric_sum(&text, "scalper_pnl_realised_net_paise", &[]), t.net_pnl.0 as f64);
    assert_eq!(metric_sum(&text, "scalper_pnl_realised_gross_paise", &[]), t.gross_pnl.0 as f64);
    assert_eq!(metric_sum(&text, "scalper_pnl_charges_paise", &[]), t.charges.0 as f64);
    for (reason, count) in &summary.exits_by_reason {
        let got = metric_sum(&text, "scalper_exits_total", &[("reason", reason)]);
        assert_eq!(got, *count as f64, "exits by {reason} in /metrics");
    }
    let exits = summary.trades.len() as f64;
    assert_eq!(
        metric_sum(&text, "scalper_orders_total", &[("purpose", "exit"), ("outcome", "filled")]),
        exits
    );
    assert_eq!(
        metric_sum(&text, "scalper_orders_total", &[("purpose", "entry"), ("outcome", "filled")]),
        exits
    );
}

#[test]
fn exits_fire_for_the_right_reasons_at_the_right_prices_and_agree_with_replay() {
    let mut h = Harness::start(
        r#"
[session]
entry_cutoff_time = "10:25"
square_off_time = "10:30"
"#,
    );
    // Stop loss: long 75 at 100.00, down 10 % exactly.
    h.at("10:00:01");
    h.price(A, "100.00");
    let sl = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "95.00");
    h.at("10:00:03");
    h.price(A, "90.00");
    let t = h.closed(&sl);
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::StopLoss, rupees("90.00"), ist("10:00:03"))
    );

    // Take profit on a short: 100.00 down 20 % exactly.
    h.at("10:01:00");
    h.price(B, "100.00");
    let tp = h.open(B, Side::Short, 75);
    h.at("10:01:01");
    h.price(B, "90.00");
    h.at("10:01:02");
    h.price(B, "80.00");
    let t = h.closed(&tp);
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::TakeProfit, rupees("80.00"), ist("10:01:02"))
    );

    // Ratchet: a best of +16 % puts the stop at breakeven; a gap down to 99.50 exits there
    // (rule 2 before the peak drawdown, rule 5).
    h.at("10:02:00");
    h.price(C, "100.00");
    let ratchet = h.open(C, Side::Long, 75);
    h.at("10:02:01");
    h.price(C, "116.00");
    h.at("10:02:02");
    h.price(C, "99.50");
    let t = h.closed(&ratchet);
    assert_eq!((t.reason, t.exit_price), (ExitReason::RatchetStop, rupees("99.50")));

    // Trailing stop: PnL high-water mark ₹1,125.00, a drop of 3.33 % of it.
    h.at("10:03:00");
    h.price(D, "100.00");
    let trail = h.open(D, Side::Long, 75);
    h.at("10:03:01");
    h.price(D, "115.00");
    h.at("10:03:02");
    h.price(D, "114.60");
    assert!(
        h.recorder.closed(&trail).is_none(),
        "a 2.67 % drop from the high-water mark is not enough"
    );
    h.at("10:03:03");
    h.price(D, "114.50");
    let t = h.closed(&trail);
    assert_eq!((t.reason, t.exit_price), (ExitReason::TrailingStop, rupees("114.50")));

    // Square-off: whatever its PnL, at its last price, at the square-off instant.
    h.at("10:05:00");
    h.price(E, "100.00");
    let held = h.open(E, Side::Long, 75);
    h.at("10:06:00");
    h.price(E, "101.00");
    h.at("10:26:00");
    let (status, body) = h.order(A, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("after_entry_cutoff")), "{body}");
    h.at("10:30:00");
    let t = h.closed(&held);
    assert_eq!(
        (t.reason, t.exit_price, t.exited_at),
        (ExitReason::SquareOff, rupees("101.00"), ist("10:30:00"))
    );
    // A tick at the square-off instant lets replay's virtual clock reach it too.
    h.price(A, "90.00");

    let pnl = h.pnl_after(5);
    assert_eq!(pnl["open_positions"], 0);
    let summary = h.replay();
    assert_eq!(summary.exits, 5);
    assert_agrees_with_replay(&h, &summary, &pnl);
    h.stop();
}

#[test]
fn daily_loss_limit_flattens_everything_at_its_last_price_halts_and_agrees_with_replay() {
    let mut h = Harness::start("[limits]\nmax_daily_loss_rupees = 1000\n");
    h.at("10:00:01");
    h.price(A, "100.00");
    let long = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(B, "100.00");
    let short = h.open(B, Side::Short, 75);
    h.at("10:00:03");
    h.price(A, "92.00"); // -600.00
    h.at("10:00:04");
    h.price(B, "105.00"); // -375.00: day PnL -975.00
    assert!(h.recorder.closed_trades().is_empty(), "-975.00 is above the -1000.00 limit");
    h.at("10:00:05");
    h.price(B, "106.00"); // -450.00: day PnL -1050.00
    let (a, b) = (h.closed(&long), h.closed(&short));
    assert_eq!(
        (a.reason, a.exit_price, a.exited_at),
        (ExitReason::DailyLossLimit, rupees("92.00"), ist("10:00:05"))
    );
    assert_eq!(
        (b.reason, b.exit_price, b.exited_at),
        (ExitReason::DailyLossLimit, rupees("106.00"), ist("10:00:05"))
    );

    let pnl = h.pnl_after(2);
    assert_eq!(pnl["trading"]["state"], "halted");
    assert_eq!(pnl["trading"]["reason"], "daily_loss_limit");
    h.at("10:00:06");
    h.price(C, "100.00");
    let (status, body) = h.order(C, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("trading_not_active")), "{body}");
    let (status, health) = h.get("/health");
    assert_eq!(
        (status, health["trading_state"].as_str()),
        (200, Some("halted")),
        "halted is healthy: {health}"
    );

    let summary = h.replay();
    assert_eq!(summary.trading.state, "halted");
    assert_agrees_with_replay(&h, &summary, &pnl);
    h.stop();
}

#[test]
fn kill_switch_exits_every_position_at_its_last_price_and_halts_until_resumed() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    let a = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(B, "50.00");
    let b = h.open(B, Side::Short, 150);
    h.at("10:00:03");
    h.price(A, "103.00");
    h.at("10:00:04");
    h.price(B, "49.00");
    let (_, positions) = h.get("/v1/positions");
    wait_until("the snapshot shows both positions at their last prices", || {
        let (_, p) = h.get("/v1/positions");
        p["positions"].as_array().is_some_and(|l| {
            l.len() == 2
                && l.iter().any(|p| p["last_price"] == "103.00" && p["unrealised_pnl"] == "225.00")
        })
    });
    assert!(positions["positions"].is_array());

    h.at("10:00:10");
    let (status, report) = h.post("/v1/flatten", "");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["exits"].as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(report["trading"]["state"], "halted");
    assert_eq!(report["trading"]["reason"], "kill_switch");
    let (ta, tb) = (h.closed(&a), h.closed(&b));
    assert_eq!(
        (ta.reason, ta.exit_price, ta.exited_at),
        (ExitReason::KillSwitch, rupees("103.00"), ist("10:00:10"))
    );
    assert_eq!((tb.reason, tb.exit_price), (ExitReason::KillSwitch, rupees("49.00")));
    assert_eq!(tb.gross, rupees("150.00"));

    let (status, again) = h.post("/v1/flatten", "");
    assert_eq!(
        (status, again["exits"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing left to flatten"
    );
    h.price(C, "100.00");
    let (status, body) = h.order(C, Side::Long, 75);
    assert_eq!((status, body["code"].as_str()), (422, Some("trading_not_active")), "{body}");
    let (status, body) = h.post("/v1/resume", "");
    assert_eq!((status, body["trading"]["state"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = h.order(C, Side::Long, 75);
    assert_eq!(status, 202, "entries again after the resume: {body}");
    h.stop();
}

#[test]
fn the_pnl_refresher_applies_the_daily_loss_limit_without_waiting_for_a_tick() {
    let mut h = Harness::start("");
    h.at("10:00:01");
    h.price(A, "100.00");
    let id = h.open(A, Side::Long, 75);
    h.at("10:00:02");
    h.price(A, "95.00"); // -375.00, far above the default -5000.00 limit
    assert!(h.recorder.closed(&id).is_none());
    // A reload lowers the limit below today's PnL; no tick follows.
    let lower = test_config(
        h.dir.path(),
        h.config.feed.url.as_str(),
        "[limits]\nmax_daily_loss_rupees = 300\n",
    );
    (h.reload)(&lower);
    let t = h.closed(&id);
    assert_eq!((t.reason, t.exit_price), (ExitReason::DailyLossLimit, rupees("95.00")));
    let pnl = h.pnl_after(1);
    assert_eq!(
        (pnl["trading"]["state"].as_str(), pnl["trading"]["reason"].as_str()),
        (Some("halted"), Some("daily_loss_limit"))
    );
    h.stop();
}
