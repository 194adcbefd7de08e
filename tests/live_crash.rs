//! The real binary in live mode, SIGKILLed at seeded random points while its exits are in
//! flight, against the simulator's feed and broker in this process.
//!
//! Each scenario opens four positions (long and short, on four instruments), waits until the
//! store holds them, then moves every price beyond a stop-loss or take-profit level and holds
//! it there. The triggers are stateless: whatever a restarted engine has lost, the held price
//! fires the same exit again. The process is then killed one to three times: right after the
//! prices cross, a few milliseconds after the next exits reached the simulator (while the
//! simulator holds them in TRANSIT, and in some scenarios with the first exit's answer
//! withheld), or while a restarted process is still starting (recovering its store and
//! reconciling with Dhan). After
//! the last restart the test waits until every position is closed and shows that
//!
//! - every trigger produced exactly one exit order at the simulator, and it traded; no
//!   correlation id was ever POSTed twice; the simulator received the four entries and four
//!   exits and nothing else;
//! - the day's account (`/v1/pnl`: trades, closed trades, gross and net realised PnL, charges)
//!   equals the account of the same scenario run without interruption;
//! - the access token never reached the engine's log.
//!
//! `LIVE_CRASH_SEED=<u64>` draws other scenarios (the seed is printed with each scenario).
//!
//! A kill point is a wait for something the simulator saw plus a seeded delay of a few
//! milliseconds: the delay chooses where the process dies, never whether the test passes.

mod live_support;
mod process_support;

use std::path::Path;
use std::time::Duration;

use live_support::{
    A, B, C, CLIENT_ID, D, LiveSim, TOKEN, process_config_text, rupees, sim_config, stored_state,
    wait_until,
};
use process_support::{Process, get, open, spawn};
use scalper::domain::{InstrumentKey, PositionId};
use scalper::sim::broker::{Fault, FaultConfig, Scope, SimBrokerConfig};

const SEED: u64 = 0x000c_7a54_4e11;
const SCENARIOS: usize = 5;

/// Instrument, side, and the price that fires its exit (entries fill at 100.00; stop loss 10%,
/// take profit 20% by default).
const TRIGGERS: [(InstrumentKey, &str, &str); 4] = [
    (A, "LONG", "89.00"),   // stop loss
    (B, "SHORT", "111.00"), // stop loss
    (C, "LONG", "121.00"),  // take profit
    (D, "SHORT", "79.00"),  // take profit
];

/// The fields of `/v1/pnl` that must not depend on when the process died.
const ACCOUNT: [&str; 5] =
    ["trades_today", "closed_today", "realised_gross", "charges", "realised_net"];

#[derive(Debug, Clone, Copy)]
enum KillAfter {
    /// `ms` after the prices crossed.
    Trigger(u64),
    /// `ms` after `n` more exit POSTs reached the simulator (or at once when every exit has).
    ExitPosts(usize, u64),
    /// `ms` after the (restarted) process was started.
    Start(u64),
}

#[derive(Debug)]
struct Scenario {
    /// How long the simulator holds each order in TRANSIT: a kill within this long after an
    /// exit's POST finds it in flight.
    transit_ms: u64,
    /// The first exit is taken by the simulator but its answer withheld.
    answer_lost: bool,
    kills: Vec<KillAfter>,
}

fn draw(rng: &mut fastrand::Rng) -> Scenario {
    let first = if rng.bool() {
        KillAfter::Trigger(rng.u64(0..30))
    } else {
        KillAfter::ExitPosts(rng.usize(1..=TRIGGERS.len()), rng.u64(0..30))
    };
    let mut kills = vec![first];
    for _ in 0..rng.usize(0..=2) {
        kills.push(if rng.bool() {
            KillAfter::Start(rng.u64(0..1_500))
        } else {
            KillAfter::ExitPosts(rng.usize(1..=TRIGGERS.len()), rng.u64(0..30))
        });
    }
    Scenario { transit_ms: rng.u64(50..1_500), answer_lost: rng.bool(), kills }
}

/// What a scenario ended with.
struct Outcome {
    account: Vec<(String, serde_json::Value)>,
}

fn start_engine(dir: &Path, config: &Path) -> Process {
    std::fs::remove_file(dir.join(scalper::app::HTTP_ADDR_FILE)).ok();
    spawn(dir, config, "engine", &[("DHAN_CLIENT_ID", CLIENT_ID), ("DHAN_ACCESS_TOKEN", TOKEN)])
}

/// Waits until the engine answers and its startup reconciliation with Dhan is done.
fn wait_trading(engine: &mut Process, data: &Path) -> std::net::SocketAddr {
    let addr = engine.wait_active(data);
    wait_until("trading starts", || {
        get(addr, "/health").1.to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    addr
}

fn posts(sim: &LiveSim) -> usize {
    sim.broker.received().iter().filter(|r| r.method == "POST" && r.path == "/v2/orders").count()
}

fn run(scenario: &Scenario) -> Outcome {
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::from_millis(scenario.transit_ms),
        ..sim_config(FaultConfig::default())
    });
    let data = sim.dir.path().to_path_buf();
    let config = data.join("engine.toml");
    std::fs::write(&config, process_config_text(&sim)).unwrap();

    let mut engine = start_engine(&data, &config);
    let addr = wait_trading(&mut engine, &data);
    let ids: Vec<PositionId> = TRIGGERS
        .iter()
        .map(|(instrument, side, _)| PositionId::new(open(addr, *instrument, side)))
        .collect();
    // A position the store has not written yet would be lost by a kill now; the kills are
    // about exits in flight, so they start once every entry is stored.
    wait_until("the store holds every position active", || {
        ids.iter().all(|id| stored_state(&data, id).as_deref() == Some("active"))
    });
    let entries = posts(&sim);
    assert_eq!(entries, TRIGGERS.len(), "one POST per entry");

    if scenario.answer_lost {
        sim.broker.faults().inject(Fault::TimeoutAfterAccept, Scope::Place, 1);
    }
    for (instrument, _, price) in TRIGGERS {
        sim.prices.set_price(instrument, rupees(price));
    }
    for kill in &scenario.kills {
        let pause = match *kill {
            KillAfter::Trigger(ms) | KillAfter::Start(ms) => ms,
            KillAfter::ExitPosts(n, ms) => {
                let target = (posts(&sim) + n).min(2 * entries);
                wait_until(&format!("{target} POSTs reached the simulator"), || {
                    posts(&sim) >= target
                });
                ms
            }
        };
        std::thread::sleep(Duration::from_millis(pause));
        engine.kill9();
        engine = start_engine(&data, &config);
    }

    let addr = wait_trading(&mut engine, &data);
    wait_until("every position is closed", || {
        let pnl = get(addr, "/v1/pnl").1;
        pnl["closed_today"].as_u64() == Some(TRIGGERS.len() as u64)
            && pnl["open_positions"].as_u64() == Some(0)
    });

    for id in &ids {
        sim.assert_one_filled_exit(id);
    }
    let orders = sim.broker.orders();
    for o in &orders {
        assert_eq!(sim.posts_of(&o.correlation_id), 1, "{} was POSTed once", o.correlation_id);
    }
    assert_eq!(orders.len(), 2 * TRIGGERS.len(), "four entries and four exits: {orders:#?}");
    assert_eq!(posts(&sim), 2 * TRIGGERS.len(), "nothing else reached the simulator");

    let pnl = get(addr, "/v1/pnl").1;
    let account = ACCOUNT.iter().map(|k| (k.to_string(), pnl[*k].clone())).collect();
    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(Duration::from_secs(30)), 0, "{}", engine.log());
    let log = engine.log();
    assert!(!log.contains(TOKEN), "the access token is in the engine's log");
    drop(engine);
    sim.shutdown();
    Outcome { account }
}

#[test]
fn killed_at_random_points_with_exits_in_flight_each_trigger_exits_once_and_pnl_is_unchanged() {
    let uninterrupted = run(&Scenario { transit_ms: 100, answer_lost: false, kills: Vec::new() });
    assert_eq!(uninterrupted.account[1].1.as_u64(), Some(TRIGGERS.len() as u64));
    let seed = std::env::var("LIVE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let mut rng = fastrand::Rng::with_seed(seed);
    for n in 0..SCENARIOS {
        let scenario = draw(&mut rng);
        eprintln!("seed {seed} scenario {n}: {scenario:?}");
        let outcome = run(&scenario);
        assert_eq!(
            outcome.account, uninterrupted.account,
            "scenario {n} ({scenario:?}) ends with the uninterrupted run's account"
        );
    }
}
