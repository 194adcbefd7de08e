//! A flatten is paced by Dhan's rate limit, not by its round trips: twenty open positions, every
//! REST answer of the simulator 300 ms late, and the last exit's request reaches the simulator
//! within 2.5 s of the flatten (20 orders at 10 a second; one order at a time would take
//! 20 × 300 ms = 6 s). Every exit is still sent once, and each position ends with exactly one
//! filled exit order.

mod live_support;

use std::time::{Duration, Instant};

use live_support::{ALL, LiveEngine, LiveSim, Start, quick, sim_config, wait_until};
use scalper::domain::{PositionId, Side};
use scalper::sim::broker::FaultConfig;

const POSITIONS: usize = 20;
const LATENCY: Duration = Duration::from_millis(300);
const BOUND: Duration = Duration::from_millis(2_500);

#[test]
fn a_flatten_of_twenty_positions_with_slow_answers_is_paced_by_the_rate_limit() {
    let sim = LiveSim::start(sim_config(FaultConfig::default()));
    let slow_enough = |o: &mut scalper::engine::live::LiveOptions| {
        quick(o);
        o.rest.request_timeout = Duration::from_secs(4);
    };
    let e = LiveEngine::start(&sim, Start { options: &slow_enough, ..Start::default() });
    let ids: Vec<PositionId> =
        (0..POSITIONS).map(|i| e.open(ALL[i % ALL.len()], Side::Long, 75)).collect();

    // The entries' grants leave the rate limiter's one-second window first, so that the
    // flatten has Dhan's whole budget (10 orders a second) as a real one would.
    let last_entry = sim.broker.received().iter().map(|r| r.at).max().expect("the entries");
    wait_until("the entries left the per-second window", || {
        last_entry.elapsed() > Duration::from_millis(1_100)
    });

    let faults = sim.broker.faults();
    faults.set_config(FaultConfig { latency: LATENCY, ..faults.config() });
    let flatten = Instant::now();
    let (status, body) = e.post("/v1/flatten", "");
    assert_eq!(status, 200, "{body}");

    let exit_posts = || {
        sim.broker
            .received()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v2/orders" && r.at >= flatten)
            .map(|r| r.at)
            .collect::<Vec<Instant>>()
    };
    wait_until("every exit reached the simulator", || exit_posts().len() >= POSITIONS);
    let last = exit_posts().into_iter().max().expect("the exits");
    let took = last.saturating_duration_since(flatten);
    eprintln!("the last exit reached the simulator {took:?} after the flatten");
    assert!(
        took <= BOUND,
        "the last of {POSITIONS} exits reached the simulator {took:?} after the flatten (bound {BOUND:?})"
    );

    wait_until("every position is closed", || ids.iter().all(|id| e.recorder.closed(id).is_some()));
    for id in &ids {
        sim.assert_one_filled_exit(id);
        for o in sim.exits_of(id) {
            assert_eq!(sim.posts_of(&o.correlation_id), 1, "{} was POSTed once", o.correlation_id);
        }
    }
    e.stop();
    sim.shutdown();
}
