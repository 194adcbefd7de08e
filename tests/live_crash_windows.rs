//! The real binary in live mode, SIGKILLed at the exact points where the store (write-behind)
//! and the broker disagree, against the simulator's feed and broker in this process. The kills
//! are failpoints (`SCALPER_FAILPOINTS=<point>=kill`, `runtime::failpoint`): the process
//! kills itself at that point, nothing flushed. `store_writer.batch=sleep:MS` makes the store
//! lag behind the way a write-behind store can, so the window is open for certain.
//!
//! Windows:
//! - an entry killed right after Dhan accepted it, before the store wrote anything of it;
//! - an exit killed right after its journal write, before the send;
//! - an exit killed right after Dhan accepted it, before the store wrote `Exiting`; and the
//!   same followed by a kill during the next start's settlement of that exit;
//! - a kill after an exit's second attempt traded (the first was rejected), before the store
//!   heard of the position;
//! - a kill as a rejected exit's retry is journaled, then an exit-engine panic as the restart
//!   releases the next attempt;
//! - a kill during the startup reconciliation and one during a later round.
//!
//! After each, once a final flatten has closed everything: the simulator's net quantity is 0
//! per instrument, no position has two exit orders that executed, no correlation id was POSTed
//! twice, `/v1/pnl` (trades, closed, realised gross, charges, net) equals what the simulator's
//! trade book implies, to the paisa, and every position's stored entry price equals the
//! volume-weighted price of its entry order's fills.

mod crash_support;
mod live_support;
mod process_support;

use std::time::Duration;

use crash_support::*;
use live_support::{A, B, LiveSim, sim_config};
use process_support::{Process, get, open, post, wait_for};
use scalper::broker::model::OrderStatus;
use scalper::domain::PositionId;
use scalper::sim::broker::{FaultConfig, Refusal, RefuseOrders};

/// Trades once on A at 100.00 (the day's average moves), then places an entry at 90.00 and
/// kills the process as Dhan accepts it, the store lagging: returns the entry's position id.
fn kill_an_entry_at_its_acceptance(rig: &Rig) -> String {
    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    open(addr, A, "LONG");
    rig.price(A, "121.00");
    wait_for("the first trade closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    stop(engine);

    rig.price(A, "90.00");
    let point = "broker.entry_accepted";
    let mut engine = rig.start(&format!("{point}=kill,{STORE_LAG}"));
    let addr = wait_trading(&mut engine, &rig.data);
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    let mut answer = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        answer = post(addr, "/v1/orders", &body.to_string());
        answer.0 != 422 || answer.1["code"] != "no_price"
    });
    wait_killed(&mut engine, point);
    let entries: Vec<_> =
        rig.sim.broker.orders().into_iter().filter(|o| o.correlation_id.starts_with('N')).collect();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let id = entries[1].correlation_id.split_once('-').unwrap().1.to_string();
    assert_eq!(stored_state(&rig.data, &id), None, "the store never heard of {id}");
    id
}

/// Restarts and shows the killed entry's position under its own id, at its own fill, counted
/// as one of today's trades; then the final checks.
fn assert_entry_recovered(rig: &Rig, id: &str) {
    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    let on_a = || {
        let (_, body) = get(addr, "/v1/positions");
        body["positions"].as_array()?.iter().find(|p| p["instrument"] == A.to_string()).cloned()
    };
    wait_for("a position on the contract is open", || on_a().is_some());
    let p = on_a().unwrap();
    assert_eq!(
        (p["id"].as_str(), p["entry_price"].as_str(), p["entry_price_source"].as_str()),
        (Some(id), Some("90.00"), Some("fills")),
        "the entry's own position at its own fill, not the day average 95.00: {p}"
    );
    assert_eq!(pnl(addr)["trades_today"], 2, "the killed entry is one of today's trades");
    assert_books_agree(rig, &mut engine);
    stop(engine);
}

#[test]
fn an_entry_killed_at_its_acceptance_is_recovered_at_its_own_fill_not_the_day_average() {
    let rig = Rig::new();
    let id = kill_an_entry_at_its_acceptance(&rig);
    assert_entry_recovered(&rig, &id);
    rig.sim.shutdown();
}

#[test]
fn an_entry_killed_at_its_acceptance_with_its_journal_lost_is_found_by_its_own_order_at_dhan() {
    let rig = Rig::new();
    let id = kill_an_entry_at_its_acceptance(&rig);
    // Another host, or a lost disk: nothing local says the entry was sent.
    std::fs::remove_dir_all(rig.data.join("journal")).unwrap();
    assert_entry_recovered(&rig, &id);
    rig.sim.shutdown();
}

/// Opens a long on A and waits until the (lagging) store holds it active, then crosses its
/// stop loss (89.00).
fn open_and_stop(rig: &Rig, engine: &mut Process) -> String {
    let addr = wait_trading(engine, &rig.data);
    let id = open(addr, A, "LONG");
    wait_for("the store holds the position", || {
        stored_state(&rig.data, &id).as_deref() == Some("active")
    });
    rig.price(A, "89.00");
    id
}

#[test]
fn an_exit_killed_after_its_acceptance_closes_with_its_own_reason_price_and_attempt() {
    let rig = Rig::new();
    let point = "broker.exit_accepted";
    let mut engine = rig.start(&format!("{point}=kill,{STORE_LAG}"));
    let id = open_and_stop(&rig, &mut engine);
    wait_killed(&mut engine, point);
    assert_eq!(stored_state(&rig.data, &id).as_deref(), Some("active"), "Exiting not stored");

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    let exits = rig.sim.exits_of(&PositionId::new(id.clone()));
    assert_eq!(exits.len(), 1, "{exits:#?}");
    assert_eq!(exits[0].correlation_id, format!("X1-{id}"));
    assert_eq!(wait_stored_close(&rig.data, &id), ("stop_loss".to_string(), 8_900));
    assert!(!engine.log().contains("closed_at_broker"), "{}", engine.log());
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn an_exit_killed_at_its_acceptance_before_the_store_heard_of_its_position_closes_with_that_exit() {
    // The store lags: when the long's exit is accepted it holds both entries as pending, not
    // the positions. A short on the same contract nets the long to zero at the broker until
    // the long's exit trades: a restart that compared the long as `Active` would close it
    // `closed_at_broker` and adopt the short's 75 as a position of unknown origin.
    let rig = Rig::new();
    let point = "broker.exit_accepted";
    let mut engine = rig.start(&format!("{point}=kill,{STORE_LAG}"));
    let addr = wait_trading(&mut engine, &rig.data);
    let short = open(addr, B, "SHORT");
    let long = open(addr, B, "LONG");
    rig.price(B, "89.00");
    wait_killed(&mut engine, point);
    assert_eq!(stored_state(&rig.data, &long), None, "the store never held {long} open");

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the long closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    rig.sim.assert_one_filled_exit(&PositionId::new(long.clone()));
    assert_eq!(wait_stored_close(&rig.data, &long), ("stop_loss".to_string(), 8_900));
    let log = engine.log();
    assert!(!log.contains("closed_at_broker") && !log.contains("adopt"), "{log}");
    rig.price(B, "111.00");
    wait_for("the short closes", || pnl(addr)["closed_today"].as_u64() == Some(2));
    rig.sim.assert_one_filled_exit(&PositionId::new(short.clone()));
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn killed_after_a_retried_exit_traded_before_the_store_heard_of_its_position_it_closes_with_that_exit()
 {
    // Found by the soak campaign. The store lags: when the position's second exit attempt has
    // traded (the first was rejected), the store has not heard of the position at all. The
    // restart opens it from its entry's fills, with no attempt of its own: it must resume the
    // journaled X2, or the reconciliation finds the broker flat and closes it
    // `closed_at_broker` at a price made of the broker's day averages (92.50), not its fill.
    let rig = Rig::new();
    rig.sim.broker.faults().refuse_orders(RefuseOrders {
        instrument: Some(A),
        correlation_prefix: Some("X".into()),
        refusal: Refusal::exchange("RMS:Insufficient Funds"),
        count: Some(1),
    });
    let mut engine = rig.start("store_writer.batch=sleep:5000");
    let addr = wait_trading(&mut engine, &rig.data);
    let id = open(addr, A, "LONG");
    rig.price(A, "85.00");
    wait_for("the first exit is rejected and the operator's retry taken", || {
        post(addr, &format!("/v1/positions/{id}/retry-exit"), "{}").0 == 202
    });
    let pid = PositionId::new(id.clone());
    wait_for("the second exit traded", || {
        rig.sim.exits_of(&pid).iter().any(|o| o.status == OrderStatus::Traded)
    });
    engine.kill9();
    assert_eq!(stored_state(&rig.data, &id), None, "the store never heard of {id}");

    let mut engine = rig.start("");
    wait_trading(&mut engine, &rig.data);
    assert_eq!(wait_stored_close(&rig.data, &id), ("stop_loss".to_string(), 8_500));
    assert!(!engine.log().contains("closed_at_broker"), "{}", engine.log());
    let exits = rig.sim.exits_of(&pid);
    assert_eq!(exits.len(), 2, "X1 rejected, X2 traded, nothing more: {exits:#?}");
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn a_retried_exit_killed_at_its_journal_write_then_a_panic_as_the_restart_releases_the_next_exits_once()
 {
    // Rig 32 scenario 0 of the first soak campaign, its draws replayed: a long's first exit is
    // rejected as "exchange busy"; the process dies as its retry X2 is journaled, before the
    // send. The restart proves X2 absent, decides X3 while the books are not reconciled yet
    // (held), and its exit engine panics right after releasing X3 to the router. Its
    // respawned successor carries X3 out and runs the startup round again: that round must
    // not settle X3 (not journaled yet, not at Dhan yet: "absent") and send X4 as well. The
    // campaign saw 150 sold against 75 bought, and the engine adopted the short.
    let rig = Rig::new();
    rig.sim.broker.faults().refuse_orders(RefuseOrders {
        instrument: Some(A),
        correlation_prefix: Some("X".into()),
        refusal: Refusal::exchange("Exchange busy, try again"),
        count: Some(1),
    });
    let point = "broker.exit_journaled";
    let mut engine = rig.start(&format!("{point}=kill:2,{STORE_LAG}"));
    let id = open_and_stop(&rig, &mut engine);
    wait_killed(&mut engine, point);
    let pid = PositionId::new(id.clone());
    let statuses = |rig: &Rig| -> Vec<(String, OrderStatus)> {
        rig.sim.exits_of(&pid).into_iter().map(|o| (o.correlation_id, o.status)).collect()
    };
    assert_eq!(statuses(&rig), [(format!("X1-{id}"), OrderStatus::Rejected)], "X2 never sent");

    let panic = "exit_engine.after_decision";
    let mut engine = rig.start(&format!("{panic}=1"));
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    assert!(engine.log().contains(&format!("failpoint {panic} fired")), "{}", engine.log());
    assert_eq!(
        statuses(&rig),
        [(format!("X1-{id}"), OrderStatus::Rejected), (format!("X3-{id}"), OrderStatus::Traded)],
        "X1 rejected, X2 proved absent, X3 traded, nothing more"
    );
    assert_eq!(wait_stored_close(&rig.data, &id).0, "stop_loss");
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn killed_after_an_exits_acceptance_and_again_while_settling_it_the_third_start_books_that_exit() {
    let rig = Rig::new();
    let point = "broker.exit_accepted";
    let mut engine = rig.start(&format!("{point}=kill,{STORE_LAG}"));
    let id = open_and_stop(&rig, &mut engine);
    wait_killed(&mut engine, point);

    let settling = "startup.settling";
    let mut engine = rig.start(&format!("{settling}=kill,{STORE_LAG}"));
    wait_killed(&mut engine, settling);

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    rig.sim.assert_one_filled_exit(&PositionId::new(id.clone()));
    assert_eq!(wait_stored_close(&rig.data, &id), ("stop_loss".to_string(), 8_900));
    assert!(!engine.log().contains("closed_at_broker"), "{}", engine.log());
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn an_exit_killed_between_its_journal_write_and_the_send_exits_once_under_the_next_attempt() {
    let rig = Rig::new();
    let point = "broker.exit_journaled";
    let mut engine = rig.start(&format!("{point}=kill"));
    let id = open_and_stop(&rig, &mut engine);
    wait_killed(&mut engine, point);
    assert!(rig.sim.exits_of(&PositionId::new(id.clone())).is_empty(), "nothing was sent");

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    rig.sim.assert_one_filled_exit(&PositionId::new(id.clone()));
    assert_eq!(wait_stored_close(&rig.data, &id).0, "stop_loss");
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn killed_during_the_startup_reconciliation_and_during_a_later_round_nothing_is_lost_or_doubled() {
    let rig = Rig::new();
    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    let ids = [open(addr, A, "LONG"), open(addr, B, "SHORT")];
    wait_for("the store holds both", || {
        ids.iter().all(|id| stored_state(&rig.data, id).as_deref() == Some("active"))
    });
    engine.kill9();

    let point = "reconcile.read";
    let mut engine = rig.start(&format!("{point}=kill"));
    wait_killed(&mut engine, point);

    // The first read is the startup's; the next is a heartbeat round, after trading started.
    let mut engine = rig.start(&format!("{point}=kill:2"));
    wait_trading(&mut engine, &rig.data);
    rig.price(A, "89.00");
    rig.price(B, "111.00");
    wait_killed(&mut engine, point);

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("both close", || pnl(addr)["closed_today"].as_u64() == Some(2));
    for id in &ids {
        rig.sim.assert_one_filled_exit(&PositionId::new(id.clone()));
    }
    assert!(!engine.log().contains("closed_at_broker"), "{}", engine.log());
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

// ------------------------------------------------- orders that trade in parts at several prices

/// Moves `k` to each of `prices` in turn once the newest order on `k` whose correlation id
/// starts with `role` (`'N'` entry, `'X'` exit) has traded that many parts of 25 (the first
/// price is the one it trades its first part at, set before).
fn trade_in_parts(rig: &Rig, k: scalper::domain::InstrumentKey, role: char, prices: &[&str]) {
    for (n, price) in prices.iter().enumerate().skip(1) {
        wait_for(&format!("part {n} on {k} traded"), || {
            let orders = rig.sim.broker.orders();
            let newest = orders
                .iter()
                .rev()
                .find(|o| o.instrument == k && o.correlation_id.starts_with(role));
            newest.is_some_and(|o| o.filled_qty >= 25 * n as i64)
        });
        rig.price(k, price);
    }
}

/// A rig whose simulator fills every order in three parts of 25, 300 ms apart, each at the
/// price of the moment.
fn rig_in_parts() -> Rig {
    use scalper::sim::broker::SimBrokerConfig;
    let sim = LiveSim::start(SimBrokerConfig {
        fill_parts: 3,
        fill_interval: Duration::from_millis(300),
        ..sim_config(FaultConfig::default())
    });
    Rig::on(sim, |text| text)
}

#[test]
fn an_entry_and_an_exit_trading_in_parts_at_several_prices_book_the_trade_books_turnover() {
    let rig = rig_in_parts();
    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    // Until the feed's first price of the instrument has arrived the entry is refused.
    let mut last = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    let (code, answer) = last;
    assert_eq!(code, 202, "{answer}");
    // 25 at 100.00 and 50 at 100.01: 75 at 100.00667, not a whole paisa.
    trade_in_parts(&rig, A, 'N', &["100.00", "100.01", "100.01"]);
    wait_for("the position opens", || pnl(addr)["open_positions"].as_u64() == Some(1));
    // Its stop (89.00 below 100.01) crossed, the exit trades 50 at 88.00, 25 at 88.01: the
    // rounding of the two averages does not cancel out.
    rig.price(A, "88.00");
    trade_in_parts(&rig, A, 'X', &["88.00", "88.00", "88.01"]);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}

#[test]
fn an_entry_and_an_exit_killed_at_acceptance_trading_in_parts_recover_the_trade_books_turnover() {
    let rig = rig_in_parts();
    let point = "broker.entry_accepted";
    let mut engine = rig.start(&format!("{point}=kill"));
    let addr = wait_trading(&mut engine, &rig.data);
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    // Until the feed's first price of the instrument has arrived the entry is refused; the
    // answer of the one taken may be cut off by the kill.
    wait_for("the entry is taken", || {
        let (code, answer) = post(addr, "/v1/orders", &body.to_string());
        code != 422 || answer["code"] != "no_price"
    });
    wait_killed(&mut engine, point);
    // While the engine is dead: 25 at 100.00 and 50 at 100.01.
    trade_in_parts(&rig, A, 'N', &["100.00", "100.01", "100.01"]);

    let point = "broker.exit_accepted";
    let mut engine = rig.start(&format!("{point}=kill"));
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position is open", || pnl(addr)["open_positions"].as_u64() == Some(1));
    rig.price(A, "88.00");
    wait_killed(&mut engine, point);
    // While the engine is dead: 50 at 88.00 and 25 at 88.01.
    trade_in_parts(&rig, A, 'X', &["88.00", "88.00", "88.01"]);

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the position closes", || pnl(addr)["closed_today"].as_u64() == Some(1));
    assert_books_agree(&rig, &mut engine);
    stop(engine);
    rig.sim.shutdown();
}
