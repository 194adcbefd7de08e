//! Freeze-quantity slicing against the simulator (README "Instrument master", spec dhan-v2
//! §8.2): the engine and the simulated exchange share a master whose freeze quantity is 150
//! units (lot 75). A 450-unit position enters as three child orders of 150; its stop fires and
//! the exit goes out as three child orders of 150 under the ids `X1s1-…`, `X1s2-…`, `X1s3-…`,
//! each POSTed once; the position closes when the last child has filled, and `/v1/pnl` equals
//! what the simulator's trade book implies. The simulator refuses any order above 150 (DH-905),
//! so an engine that sent the exit as one order would never close the position.
//!
//! The same with the real binary SIGKILLed right after Dhan accepted the first exit child
//! (failpoint `broker.exit_accepted`): after the restart the first child is settled by its
//! correlation id, and only the two missing children are sent. For a sliced LIMIT entry killed
//! between its children, the missing children go as LIMIT orders at the entry's price.

mod crash_support;
mod live_support;
mod process_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use live_support::*;
use scalper::broker::model::OrderStatus;
use scalper::domain::{ExitReason, Paise, PositionId, Side, Txn};
use scalper::instruments::{Instruments, parse::parse_master, synthetic};
use scalper::risk::correlation::{self, OrderRole};
use scalper::sim::broker::{FaultConfig, SimBrokerConfig};
use scalper::sim::orders::SimOrder;

/// The generated master of the test instruments (lot 75), with a freeze quantity of 150.
fn master_with_freeze_150(dir: &Path) -> (PathBuf, Arc<Instruments>) {
    let generated = synthetic::generate(&ALL.map(|k| (k, rupees("100.00"))));
    let csv = synthetic::to_csv(&generated, None);
    let rows = csv.lines().count() - 1;
    let csv: String = csv
        .lines()
        .map(|l| match l.strip_suffix(",1800") {
            Some(head) => format!("{head},150\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(csv.matches(",150\n").count(), rows, "every instrument has freeze 150: {csv}");
    let path = dir.join("master-freeze-150.csv");
    std::fs::write(&path, &csv).unwrap();
    let table = parse_master(csv.as_bytes()).expect("the master parses");
    assert_eq!(table.get(A).unwrap().freeze.map(|f| f.0), Some(150));
    (path, Arc::new(table))
}

/// A simulator whose exchange has the freeze-150 master, and the master's file (kept in the
/// returned directory, which must live as long as the engine reads it).
fn sim_with_freeze_150() -> (tempfile::TempDir, PathBuf, LiveSim) {
    let dir = tempfile::tempdir().unwrap();
    let (path, table) = master_with_freeze_150(dir.path());
    let sim = LiveSim::start(SimBrokerConfig {
        instruments: Some(table),
        ..sim_config(FaultConfig::default())
    });
    (dir, path, sim)
}

fn orders_of(sim: &LiveSim, id: &PositionId, role: OrderRole) -> Vec<SimOrder> {
    let mut v: Vec<SimOrder> = sim
        .broker
        .orders()
        .into_iter()
        .filter(|o| {
            correlation::parse(&o.correlation_id).is_some_and(|p| p.role == role && p.refers_to(id))
        })
        .collect();
    v.sort_by(|a, b| a.correlation_id.cmp(&b.correlation_id));
    v
}

/// The position of an entry whose engine was killed at its first child's acceptance. The kill
/// may come before the API's answer is written (the first child is placed while the answer is
/// on its way), so the position's id is the one the simulator's only order carries; an answer
/// that did arrive must name the same position.
fn killed_entrys_position(sim: &LiveSim, answer: &(u16, serde_json::Value)) -> PositionId {
    assert!(answer.0 == 202 || answer.0 == 0, "{} {}", answer.0, answer.1);
    let entries: Vec<SimOrder> = sim.broker.orders();
    assert_eq!(entries.len(), 1, "only the first child left: {entries:#?}");
    let id = match correlation::parse(&entries[0].correlation_id).map(|p| p.position) {
        Some(correlation::PositionRef::Id(id)) => id,
        other => panic!("not an id of ours: {other:?} {entries:#?}"),
    };
    if answer.0 == 202 {
        assert_eq!(answer.1["position_id"].as_str(), Some(id.as_str()), "{}", answer.1);
    }
    id
}

fn summary(orders: &[SimOrder]) -> Vec<(String, i64, i64)> {
    orders.iter().map(|o| (o.correlation_id.clone(), o.quantity, o.filled_qty)).collect()
}

#[test]
fn a_position_above_the_freeze_quantity_exits_as_three_children_each_sent_once() {
    let (_master_dir, path, sim) = sim_with_freeze_150();
    let extra = format!("[instruments]\nmaster_file = \"{}\"\n", path.display());
    let e = LiveEngine::start(&sim, Start { extra: &extra, ..Start::default() });
    e.price(&sim, A, "100.00");
    let id = e.open(A, Side::Long, 450);
    let slice = |role, n| correlation::slice_id(role, &id, 1, n).unwrap().to_string();

    // The entry went as three children of 150, each filled.
    let entries = orders_of(&sim, &id, OrderRole::Entry);
    let want: Vec<(String, i64, i64)> =
        (1..=3).map(|n| (slice(OrderRole::Entry, n), 150, 150)).collect();
    assert_eq!(summary(&entries), want, "{entries:#?}");
    assert_eq!(e.shared.core.lock().position(&id).unwrap().quantity.0, 450);

    // The stop fires: three exit children of 150, each POSTed once, never the whole 450.
    e.price(&sim, A, "89.00");
    let trade = e.closed(&id);
    assert_eq!(trade.reason, ExitReason::StopLoss);
    assert_eq!(trade.quantity.0, 450);
    let exits = orders_of(&sim, &id, OrderRole::Exit);
    let want: Vec<(String, i64, i64)> =
        (1..=3).map(|n| (slice(OrderRole::Exit, n), 150, 150)).collect();
    assert_eq!(summary(&exits), want, "{exits:#?}");
    assert!(exits.iter().all(|o| o.status == OrderStatus::Traded && o.txn == Txn::Sell));
    for (cid, _, _) in &want {
        assert_eq!(sim.posts_of(cid), 1, "{cid} POSTed once");
    }
    assert_eq!(sim.posts_of(correlation::exit_id(&id, 1).unwrap().as_str()), 0);
    // The position closed with every child filled: its exit is their average.
    assert_eq!(trade.exit_price, Paise(8_900));
    assert_eq!(trade.entry_price, Paise(10_000));

    // The account: the simulator's trade book implies −₹11 × 450 gross.
    let trades = sim.broker.trades();
    let mut gross: i128 = 0;
    for o in entries.iter().chain(&exits) {
        let sign = if o.txn == Txn::Sell { 1 } else { -1 };
        for t in trades.iter().filter(|t| t.order_id == o.order_id) {
            gross += sign * i128::from(t.price.0) * i128::from(t.quantity);
        }
    }
    assert_eq!(gross, -1_100 * 450);
    assert_eq!(trade.gross, Paise(gross as i64));
    wait_until("/v1/pnl shows the closed trade", || {
        e.get("/v1/pnl").1["closed_today"].as_u64() == Some(1)
    });
    let pnl = e.get("/v1/pnl").1;
    assert_eq!(pnl["realised_gross"], Paise(gross as i64).to_string(), "{pnl}");
    assert_eq!(pnl["open_positions"].as_u64(), Some(0), "{pnl}");
    e.stop();
    sim.shutdown();
    assert_token_never_logged();
}

#[test]
fn killed_between_the_first_and_second_exit_child_the_restart_sends_only_the_missing_two() {
    use process_support::{get, post, spawn, wait_for};
    let (_sim_master, path, sim) = sim_with_freeze_150();
    let data = sim.dir.path().to_path_buf();
    let config = data.join("engine.toml");
    let text = format!(
        "{}\n[instruments]\nmaster_file = \"{}\"\n",
        process_config_text(&sim),
        path.display()
    );
    std::fs::write(&config, text).unwrap();
    let start = |failpoints: &str| {
        std::fs::remove_file(data.join(scalper::app::HTTP_ADDR_FILE)).ok();
        spawn(
            &data,
            &config,
            "engine",
            &[
                ("DHAN_CLIENT_ID", CLIENT_ID),
                ("DHAN_ACCESS_TOKEN", TOKEN),
                ("SCALPER_FAILPOINTS", failpoints),
            ],
        )
    };
    let trading = |engine: &mut process_support::Process| {
        let addr = engine.wait_active(&data);
        engine.wait_for("trading starts", || {
            get(addr, "/health").1.to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
        });
        addr
    };
    let point = "broker.exit_accepted";
    let mut engine = start(&format!("{point}=kill"));
    let addr = trading(&mut engine);
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 450 });
    let mut last = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    assert_eq!(last.0, 202, "{}", last.1);
    let id = PositionId::new(last.1["position_id"].as_str().unwrap());
    engine.wait_for("the position is open", || {
        get(addr, "/v1/positions").1.to_string().contains(&format!("\"{id}\""))
            && orders_of(&sim, &id, OrderRole::Entry).iter().all(|o| o.filled_qty == 150)
            && orders_of(&sim, &id, OrderRole::Entry).len() == 3
    });
    sim.prices.set_price(A, rupees("89.00"));
    let code = engine.wait_exit(std::time::Duration::from_secs(60));
    assert_eq!(code, -1, "killed by its failpoint; log:\n{}", engine.log());
    let slice = |n| correlation::slice_id(OrderRole::Exit, &id, 1, n).unwrap().to_string();
    // Only the first child left before the kill.
    let exits = orders_of(&sim, &id, OrderRole::Exit);
    assert_eq!(summary(&exits).iter().map(|s| s.0.clone()).collect::<Vec<_>>(), [slice(1)]);

    let mut engine = start("");
    let addr = trading(&mut engine);
    engine.wait_for("the position closes", || {
        get(addr, "/v1/pnl").1["closed_today"].as_u64() == Some(1)
    });
    let exits = orders_of(&sim, &id, OrderRole::Exit);
    let want: Vec<(String, i64, i64)> = (1..=3).map(|n| (slice(n), 150, 150)).collect();
    assert_eq!(summary(&exits), want, "{exits:#?}\n{}", engine.log());
    for (cid, _, _) in &want {
        assert_eq!(sim.posts_of(cid), 1, "{cid} POSTed once");
    }
    let pnl = get(addr, "/v1/pnl").1;
    assert_eq!(pnl["realised_gross"], Paise(-1_100 * 450).to_string(), "{pnl}");
    assert_eq!(pnl["open_positions"].as_u64(), Some(0), "{pnl}");
    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(std::time::Duration::from_secs(30)), 0, "{}", engine.log());
    sim.shutdown();
}

#[test]
fn killed_between_the_first_and_second_entry_child_the_restart_sends_only_the_missing_two() {
    use crash_support::{Rig, assert_books_agree, vwap, wait_killed, wait_trading};
    use process_support::{get, post, wait_for};
    let (_sim_master, path, sim) = sim_with_freeze_150();
    let rig = Rig::on(sim, |text| {
        format!("{text}\n[instruments]\nmaster_file = \"{}\"\n", path.display())
    });
    let point = "broker.entry_accepted";
    let mut engine = rig.start(&format!("{point}=kill"));
    let addr = wait_trading(&mut engine, &rig.data);
    rig.price(A, "100.00");
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 450 });
    let mut last = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    wait_killed(&mut engine, point);
    let id = killed_entrys_position(&rig.sim, &last);
    let slice = |n| correlation::slice_id(OrderRole::Entry, &id, 1, n).unwrap().to_string();
    // Only the first child left before the kill; it fills at ₹100.00, the rest will go at
    // ₹101.50 (a volume-weighted ₹101.00, exact: a rounded average is a known gap of its own,
    // README "Testing").
    wait_for("the first child fills", || {
        orders_of(&rig.sim, &id, OrderRole::Entry).iter().all(|o| o.filled_qty == 150)
    });
    let entries = orders_of(&rig.sim, &id, OrderRole::Entry);
    assert_eq!(summary(&entries), [(slice(1), 150, 150)], "{}", engine.log());
    rig.price(A, "101.50");

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    let want: Vec<(String, i64, i64)> = (1..=3).map(|n| (slice(n), 150, 150)).collect();
    engine.wait_for("the position is open with every child", || {
        get(addr, "/v1/positions").1.to_string().contains(&format!("\"{id}\""))
            && summary(&orders_of(&rig.sim, &id, OrderRole::Entry)) == want
    });
    for (cid, _, _) in &want {
        assert_eq!(rig.sim.posts_of(cid), 1, "{cid} POSTed once\n{}", engine.log());
    }
    assert_eq!(rig.sim.posts_of(correlation::entry_id(&id, 1).unwrap().as_str()), 0);
    // The position is the children's fills: 450 at their volume-weighted price.
    let legs = crash_support::sim_legs(&rig.sim);
    let entry = &legs[id.as_str()].0;
    assert_eq!((entry.quantity, entry.orders), (450, 3));
    assert_eq!(vwap(entry), Paise(10_100));
    assert_eq!(entry.turnover, 150 * 10_000 + 300 * 10_150);
    let positions = get(addr, "/v1/positions").1;
    let p = positions
        .as_array()
        .or_else(|| positions["positions"].as_array())
        .and_then(|a| a.iter().find(|p| p["id"] == id.as_str()).cloned())
        .unwrap_or_else(|| panic!("{positions}"));
    assert_eq!(p["quantity"].as_i64(), Some(450), "{p}");
    assert_eq!(p["entry_price"], Paise(10_100).to_string(), "{p}");
    // A final flatten: the simulator flat, each id POSTed once, /v1/pnl equal to its books.
    assert_books_agree(&rig, &mut engine);
    crash_support::stop(engine);
    rig.sim.shutdown();
}

/// A LIMIT entry against the simulated exchange (README "Limit entries"): its price goes out on
/// the tick toward the passive side, the order rests while the market is above it, and fills
/// at the market once it comes down to it; a marketable one fills at once. Exits stay MARKET.
#[test]
fn a_limit_entry_rests_until_the_market_reaches_it_and_fills_at_the_limit_or_better() {
    use scalper::broker::model::OrderType;
    let (_master_dir, path, sim) = sim_with_freeze_150();
    let extra = format!("[instruments]\nmaster_file = \"{}\"\n", path.display());
    let e = LiveEngine::start(&sim, Start { extra: &extra, ..Start::default() });
    e.price(&sim, A, "100.00");
    // ₹99.52 for a buy: ₹99.50 on the tick (down, the passive side); the market is above it.
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 75, "price": "99.52" });
    let (status, answer) = e.post("/v1/orders", &body.to_string());
    assert_eq!(status, 202, "{answer}");
    let id = PositionId::new(answer["position_id"].as_str().unwrap());
    wait_until("the limit entry rests at the simulator", || {
        orders_of(&sim, &id, OrderRole::Entry)
            .first()
            .is_some_and(|o| o.status == OrderStatus::Pending)
    });
    let o = &orders_of(&sim, &id, OrderRole::Entry)[0];
    assert_eq!(
        (o.order_type, o.price, o.filled_qty),
        (OrderType::Limit, Paise(9_950), 0),
        "{o:#?}"
    );
    assert!(e.shared.core.lock().position(&id).is_none(), "not open while it rests");
    // The market comes down through the limit: filled at the market, ₹99.00.
    e.price(&sim, A, "99.00");
    wait_until("the position opens", || e.shared.core.lock().position(&id).is_some());
    assert_eq!(e.shared.core.lock().position(&id).unwrap().entry_price, Paise(9_900));
    // A marketable limit (a sell at ₹98.97 → ₹99.00, up to the tick) fills at once.
    let body = serde_json::json!({ "instrument": B.to_string(), "side": "SHORT", "quantity": 75, "price": "98.97" });
    e.price(&sim, B, "99.00");
    let (status, answer) = e.post("/v1/orders", &body.to_string());
    assert_eq!(status, 202, "{answer}");
    let short = PositionId::new(answer["position_id"].as_str().unwrap());
    wait_until("the short opens", || e.shared.core.lock().position(&short).is_some());
    let o = &orders_of(&sim, &short, OrderRole::Entry)[0];
    assert_eq!((o.order_type, o.price, o.filled_qty), (OrderType::Limit, Paise(9_900), 75));
    // Its exit is a MARKET order.
    e.price(&sim, A, "80.00");
    e.closed(&id);
    let exits = orders_of(&sim, &id, OrderRole::Exit);
    assert!(exits.iter().all(|o| o.order_type == OrderType::Market), "{exits:#?}");
    e.stop();
    sim.shutdown();
}

/// A sliced LIMIT entry (README "Limit entries"), the binary SIGKILLed right after Dhan
/// accepted its first child: after the restart the two children still to send go as LIMIT
/// orders at the entry's price, never as MARKET ones, each POSTed once. The market has moved
/// above the limit meanwhile, so they rest until it comes back down; the position opens at
/// the children's fills. `store_lag`: the store never heard of the entry before the kill (the
/// journal alone has it); otherwise the store may hold it pending, with its limit price.
fn a_sliced_limit_entry_killed_between_its_children(store_lag: bool) {
    use crash_support::{Rig, STORE_LAG, assert_books_agree, vwap, wait_killed, wait_trading};
    use process_support::{get, post, wait_for};
    use scalper::broker::model::OrderType;
    let (_sim_master, path, sim) = sim_with_freeze_150();
    let rig = Rig::on(sim, |text| {
        format!("{text}\n[instruments]\nmaster_file = \"{}\"\n", path.display())
    });
    let point = "broker.entry_accepted";
    let failpoints =
        if store_lag { format!("{point}=kill,{STORE_LAG}") } else { format!("{point}=kill") };
    let mut engine = rig.start(&failpoints);
    let addr = wait_trading(&mut engine, &rig.data);
    rig.price(A, "100.00");
    // A buy limited at ₹100.50 with the market at ₹100.00: marketable, the first child fills.
    let body = serde_json::json!({ "instrument": A.to_string(), "side": "LONG", "quantity": 450, "price": "100.50" });
    let mut last = (0, serde_json::Value::Null);
    wait_for("the entry is accepted", || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    wait_killed(&mut engine, point);
    let id = killed_entrys_position(&rig.sim, &last);
    let slice = |n| correlation::slice_id(OrderRole::Entry, &id, 1, n).unwrap().to_string();
    wait_for("the first child fills", || {
        orders_of(&rig.sim, &id, OrderRole::Entry).iter().all(|o| o.filled_qty == 150)
    });
    let entries = orders_of(&rig.sim, &id, OrderRole::Entry);
    assert_eq!(summary(&entries), [(slice(1), 150, 150)], "{}", engine.log());
    assert_eq!((entries[0].order_type, entries[0].price), (OrderType::Limit, Paise(10_050)));
    // The market moves above the limit while the engine is down.
    rig.price(A, "101.50");

    let mut engine = rig.start("");
    let addr = wait_trading(&mut engine, &rig.data);
    wait_for("the missing children reach the simulator", || {
        orders_of(&rig.sim, &id, OrderRole::Entry).len() == 3
    });
    let entries = orders_of(&rig.sim, &id, OrderRole::Entry);
    let kinds: Vec<(String, OrderType, Paise)> =
        entries.iter().map(|o| (o.correlation_id.clone(), o.order_type, o.price)).collect();
    let want: Vec<(String, OrderType, Paise)> =
        (1..=3).map(|n| (slice(n), OrderType::Limit, Paise(10_050))).collect();
    assert_eq!(kinds, want, "every child a LIMIT at ₹100.50\n{entries:#?}\n{}", engine.log());
    // Above the limit: the two resend children rest, and the position is not open.
    wait_for("the resent children rest at the simulator", || {
        orders_of(&rig.sim, &id, OrderRole::Entry)[1..]
            .iter()
            .all(|o| o.status == OrderStatus::Pending)
    });
    let entries = orders_of(&rig.sim, &id, OrderRole::Entry);
    assert_eq!(summary(&entries[1..]), [(slice(2), 150, 0), (slice(3), 150, 0)]);
    assert!(!get(addr, "/v1/positions").1.to_string().contains(&format!("\"{id}\"")));
    // The market comes back through the limit: they fill at the market, ₹100.25.
    rig.price(A, "100.25");
    let want: Vec<(String, i64, i64)> = (1..=3).map(|n| (slice(n), 150, 150)).collect();
    wait_for("the position is open with every child", || {
        get(addr, "/v1/positions").1.to_string().contains(&format!("\"{id}\""))
            && summary(&orders_of(&rig.sim, &id, OrderRole::Entry)) == want
    });
    for (cid, _, _) in &want {
        assert_eq!(rig.sim.posts_of(cid), 1, "{cid} POSTed once\n{}", engine.log());
    }
    assert_eq!(rig.sim.posts_of(correlation::entry_id(&id, 1).unwrap().as_str()), 0);
    let legs = crash_support::sim_legs(&rig.sim);
    let entry = &legs[id.as_str()].0;
    assert_eq!((entry.quantity, entry.orders), (450, 3));
    assert_eq!(entry.turnover, 150 * 10_000 + 300 * 10_025);
    let positions = get(addr, "/v1/positions").1;
    let p = positions
        .as_array()
        .or_else(|| positions["positions"].as_array())
        .and_then(|a| a.iter().find(|p| p["id"] == id.as_str()).cloned())
        .unwrap_or_else(|| panic!("{positions}"));
    assert_eq!(p["quantity"].as_i64(), Some(450), "{p}");
    assert_eq!(p["entry_price"], vwap(entry).to_string(), "{p}");
    // The store keeps the entry's limit price.
    let parent = correlation::entry_id(&id, 1).unwrap().to_string();
    wait_for("the store holds the entry with its limit price", || {
        crash_support::db(&rig.data)
            .query_row("SELECT limit_price FROM orders WHERE correlation_id = ?1", [&parent], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .is_ok_and(|p| p == Some(10_050))
    });
    assert_books_agree(&rig, &mut engine);
    crash_support::stop(engine);
    rig.sim.shutdown();
}

#[test]
fn a_sliced_limit_entry_killed_between_children_resends_the_rest_as_limit_orders() {
    a_sliced_limit_entry_killed_between_its_children(false);
}

#[test]
fn a_sliced_limit_entry_killed_before_the_store_heard_of_it_resends_the_rest_as_limit_orders() {
    a_sliced_limit_entry_killed_between_its_children(true);
}
