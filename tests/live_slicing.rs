//! Freeze-quantity slicing against the simulator (README "Instrument master", spec dhan-v2
//! §8.2): the engine and the simulated exchange share a master whose freeze quantity is 150
//! units (lot 75). A 450-unit position enters as three child orders of 150; its stop fires and
//! the exit goes out as three child orders of 150 under the ids `X1s1-…`, `X1s2-…`, `X1s3-…`,
//! each POSTed once; the position closes when the last child has filled, and `/v1/pnl` equals
//! what the simulator's trade book implies. The simulator refuses any order above 150 (DH-905),
//! so an engine that sent the exit as one order would never close the position.

mod live_support;

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

fn summary(orders: &[SimOrder]) -> Vec<(String, i64, i64)> {
    orders.iter().map(|o| (o.correlation_id.clone(), o.quantity, o.filled_qty)).collect()
}

#[test]
fn a_position_above_the_freeze_quantity_exits_as_three_children_each_sent_once() {
    let master_dir = tempfile::tempdir().unwrap();
    let (path, table) = master_with_freeze_150(master_dir.path());
    let sim = LiveSim::start(SimBrokerConfig {
        instruments: Some(table),
        ..sim_config(FaultConfig::default())
    });
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
