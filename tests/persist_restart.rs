//! Restart recovery of the real binary in paper mode with the embedded store: positions opened
//! through the API, prices moved on a simulator feed in the test, the process killed with
//! SIGKILL and started again. The open positions come back with their risk state (best price,
//! ratchet stop) and their exits continue; a daily-loss halt stays latched across a second
//! kill; today's trade count, realised PnL and the paper wallet are the same before and after.

mod process_support;

use std::path::Path;
use std::time::Duration;

use process_support::*;
use scalper::store::sqlite::SqliteStore;
use scalper::store::{Store, TradingStateKind};

fn store(data: &Path) -> SqliteStore {
    SqliteStore::open(data.join("scalper.db")).expect("the engine's store opens")
}

#[test]
fn positions_risk_state_and_a_latched_halt_survive_sigkill() {
    let (_sim, prices) = sim_feed();
    prices.set_price(A, rupees("100.00"));
    prices.set_price(B, rupees("100.00"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("scalper.toml");
    let url = format!("ws://{}", _sim.addr());
    std::fs::write(&config, config_text(&data, &url, "[limits]\nmax_daily_loss_rupees = 500\n"))
        .unwrap();

    // Run 1: two positions; A's price runs up to the 15 % ratchet tier.
    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    wait_for("the feed is subscribed", || prices.subscribed().contains(&A));
    let a = open(addr, A, "LONG");
    let b = open(addr, B, "SHORT");
    prices.set_price(A, rupees("111.00"));
    prices.set_price(A, rupees("115.00"));
    wait_for("the ratchet stop in /v1/positions", || {
        position(addr, &a).is_some_and(|p| {
            p["risk"]["ratchet_stop"] == "100.00" && p["risk"]["best_price"] == "115.00"
        })
    });
    let mut s = store(&data);
    wait_for("the ratchet stop in the store", || {
        s.positions().unwrap().iter().any(|p| {
            p.id.as_str() == a
                && p.ratchet_stop == Some(rupees("100.00"))
                && p.best_price == rupees("115.00")
        })
    });
    let (_, before) = get(addr, "/v1/pnl");
    e.kill9();

    // Run 2: the positions are back with their risk state; their exits continue.
    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    let pa = position(addr, &a).expect("A is back");
    assert_eq!(
        (pa["risk"]["best_price"].as_str(), pa["risk"]["ratchet_stop"].as_str()),
        (Some("115.00"), Some("100.00")),
        "{pa}"
    );
    assert_eq!(pa["state"], "active");
    let pb = position(addr, &b).expect("B is back");
    assert_eq!((pb["side"].as_str(), pb["entry_price"].as_str()), (Some("SHORT"), Some("100.00")));
    let (_, after) = get(addr, "/v1/pnl");
    for k in ["trades_today", "closed_today", "realised_net", "paper_cash", "session"] {
        assert_eq!(after[k], before[k], "{k} survives the restart");
    }
    assert_eq!(after["trades_today"], 2);
    assert!(e.log().contains(&format!("recovered position {a}")), "{}", e.log());

    // The ratchet stop recovered from the store closes A; then B's loss trips the daily limit.
    wait_for("the feed is subscribed again", || prices.subscribed().contains(&A));
    prices.set_price(A, rupees("100.00"));
    wait_for("A closes", || position(addr, &a).is_none());
    prices.set_price(B, rupees("107.00"));
    wait_for("trading halts", || get(addr, "/v1/pnl").1["trading"]["state"] == "halted");
    wait_for("B closes", || position(addr, &b).is_none());
    let mut s = store(&data);
    wait_for("both trades and the halt are stored", || {
        s.closed_trades().unwrap().len() == 2
            && s.trading_state().unwrap().is_some_and(|t| t.state == TradingStateKind::Halted)
    });
    let closed = s.closed_trades().unwrap();
    let ta = closed.iter().find(|t| t.position_id.as_str() == a).unwrap();
    assert_eq!((ta.reason.code(), ta.exit_price), ("ratchet_stop", rupees("100.00")));
    let tb = closed.iter().find(|t| t.position_id.as_str() == b).unwrap();
    assert_eq!(tb.reason.code(), "daily_loss_limit");
    let (_, halted) = get(addr, "/v1/pnl");
    assert_eq!(halted["trading"]["reason"], "daily_loss_limit");
    e.kill9();

    // Run 3: still halted, with the same day.
    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    let (_, again) = get(addr, "/v1/pnl");
    assert_eq!(again["trading"]["state"], "halted", "{again}");
    assert_eq!(again["trading"]["reason"], "daily_loss_limit");
    for k in ["trades_today", "closed_today", "realised_net", "charges", "paper_cash", "session"] {
        assert_eq!(again[k], halted[k], "{k} survives the restart");
    }
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75 });
    let (code, refused) = post(addr, "/v1/orders", &body.to_string());
    assert_eq!(code, 422, "no entry while the halt is latched: {refused}");
    e.signal(libc::SIGTERM);
    assert_eq!(e.wait_exit(Duration::from_secs(30)), 0, "{}", e.log());
}

/// A paper position above the freeze quantity entered as three children and paid brokerage
/// per child; after a restart the paper wallet still charges its entry per child (the
/// instrument master is loaded after the wallet is derived from the store), so the cash is
/// the same before and after.
#[test]
fn a_sliced_open_entry_keeps_its_per_child_charges_in_the_paper_cash_across_a_restart() {
    use scalper::instruments::synthetic;
    let (_sim, prices) = sim_feed();
    prices.set_price(A, rupees("100.00"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("scalper.toml");
    // The generated master of A (lot 75), its freeze quantity 150.
    let csv = synthetic::to_csv(&synthetic::generate(&[(A, rupees("100.00"))]), None);
    let csv = csv.replace(",1800\n", ",150\n");
    assert!(csv.ends_with(",150\n"), "{csv}");
    let master = dir.path().join("master-freeze-150.csv");
    std::fs::write(&master, csv).unwrap();
    let url = format!("ws://{}", _sim.addr());
    let extra = format!("[instruments]\nmaster_file = \"{}\"\n", master.display());
    std::fs::write(&config, config_text(&data, &url, &extra)).unwrap();

    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    wait_for("the feed is subscribed", || prices.subscribed().contains(&A));
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 450 });
    let mut last = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    assert_eq!(last.0, 202, "{}", last.1);
    let id = last.1["position_id"].as_str().unwrap().to_string();
    wait_for("the position is open", || position(addr, &id).is_some());
    let (_, before) = get(addr, "/v1/pnl");
    // ₹1,00,000 less ₹45,000 of turnover and its charges with three orders' brokerage
    // (pnl::charges' table: ₹90.81).
    assert_eq!(before["paper_cash"], "54909.19", "{before}");
    let mut s = store(&data);
    wait_for("the position is stored", || {
        s.positions().unwrap().iter().any(|p| p.id.as_str() == id && p.quantity.0 == 450)
    });
    e.kill9();

    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    assert!(position(addr, &id).is_some(), "the position is back");
    let (_, after) = get(addr, "/v1/pnl");
    assert_eq!(after["paper_cash"], before["paper_cash"], "{after}");
    e.signal(libc::SIGTERM);
    assert_eq!(e.wait_exit(Duration::from_secs(30)), 0, "{}", e.log());
}
