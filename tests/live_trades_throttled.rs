//! An order that trades in parts at two prices is valued at its own trades even when Dhan
//! throttles (429 DH-904) the first read of them: the read is tried again rather than the
//! fills being left at the broker's average price, which is off by a fraction of a paisa per
//! unit and never corrected.

mod live_support;

use std::time::Duration;

use live_support::*;
use scalper::domain::{Paise, Side};
use scalper::sim::broker::{Fault, FaultConfig, Scope, SimBrokerConfig};

#[test]
fn a_throttled_read_of_an_orders_trades_is_retried_and_the_entry_is_valued_at_its_trades() {
    // Three parts of 25, a second apart (room for a busy machine to move the price between
    // the first and the second), each at the price of the moment.
    let sim = LiveSim::start(SimBrokerConfig {
        fill_parts: 3,
        fill_interval: Duration::from_secs(1),
        ..sim_config(FaultConfig::default())
    });
    // The order book is polled only after 4 s without a report: the entry has traded in
    // full by then.
    let options = |o: &mut scalper::engine::live::LiveOptions| {
        quick(o);
        o.poll_every = Duration::from_secs(4);
    };
    let engine = LiveEngine::start(&sim, Start { options: &options, ..Start::default() });
    engine.price(&sim, A, "100.00");
    let id = engine.enter(A, Side::Long, 75);
    let entry = || {
        let ours = |c: &str| c.starts_with('N') && c.ends_with(id.as_str());
        sim.broker.orders().into_iter().find(|o| ours(&o.correlation_id))
    };
    wait_until("the entry's first part traded", || entry().is_some_and(|o| o.filled_qty >= 25));
    // The rest trades without order updates (so without each trade's price): the engine
    // learns of it from the order book, whose average price is not a whole paisa, and reads
    // the order's trades; that first read is throttled.
    sim.broker.faults().drop_order_updates(1_000);
    sim.broker.faults().inject(Fault::Throttle, Scope::OrderTrades, 1);
    engine.price(&sim, A, "100.01");
    let core = engine.shared.core.clone();
    wait_until("the position is open", || core.lock().position(&id).is_some());
    let position = core.lock().position(&id).cloned().expect("open");

    let order = entry().expect("the entry order");
    let trades: Vec<_> =
        sim.broker.trades().into_iter().filter(|t| t.order_id == order.order_id).collect();
    let prices: std::collections::BTreeSet<Paise> = trades.iter().map(|t| t.price).collect();
    assert!(prices.len() > 1, "the entry traded at more than one price: {trades:#?}");
    let value: i64 = trades.iter().map(|t| t.price.0 * t.quantity).sum();
    let qty: i64 = trades.iter().map(|t| t.quantity).sum();
    assert_eq!(qty, 75);
    assert_eq!(
        position.entry_value,
        Paise(value),
        "the entry is valued at its trades ({trades:#?}), not at the average {}",
        position.entry_price
    );
    // The throttled read was answered 429 and read again.
    let reads = sim
        .broker
        .received()
        .iter()
        .filter(|r| r.method == "GET" && r.path == format!("/v2/trades/{}", order.order_id))
        .count();
    assert!(reads >= 2, "the order's trades were read again after the 429 ({reads} reads)");
    engine.stop();
    sim.shutdown();
}
