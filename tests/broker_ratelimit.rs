//! The shared rate limiter under bursts from several threads: no more than the class limit
//! reaches the simulated broker in any window (and it never answers 429), and exits pass while
//! entries wait.

mod broker_support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use broker_support::*;
use scalper::broker::outcome::WriteOutcome;
use scalper::broker::ratelimit::{
    ApiClass, LimiterConfig, LimiterEvent, Priority, RateLimiter, Window,
};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::Txn;
use scalper::sim::broker::SimBrokerConfig;

/// The most arrivals found in any interval of `window` (each interval starting at an arrival).
fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|t| **t < sorted[i] + window).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_burst_from_four_threads_never_exceeds_ten_orders_per_second_at_the_broker() {
    let (sim, _p) =
        start_sim(SimBrokerConfig { transit: Duration::from_millis(20), ..sim_config() });
    let c = DhanClient::new(
        RestConfig { limiter_wait: Duration::from_secs(10), ..rest_config(&sim) },
        credentials(),
        Arc::new(RateLimiter::new(LimiterConfig::dhan())),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                (0..6)
                    .map(|i| {
                        c.place_order(
                            &market(&format!("BURST-{t}-{i}"), Txn::Buy, 75),
                            Priority::Exit,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<WriteOutcome> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(outcomes.iter().all(|o| matches!(o, WriteOutcome::Accepted(_))), "{outcomes:?}");
    let (arrivals, throttled) = sim.arrivals(ApiClass::Orders);
    assert_eq!(arrivals.len(), 24);
    assert_eq!(throttled, 0, "the broker never had to answer 429");
    let worst = max_in_window(&arrivals, Duration::from_secs(1));
    assert!(worst <= 10, "{worst} orders reached the broker within one second");
    assert!(worst >= 9, "the budget was used, not starved: {worst}");
}

#[test]
fn reads_share_the_non_trading_budget_of_twenty_per_second() {
    let (sim, _p) = start_sim(sim_config());
    let c = client(&sim);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            thread::spawn(move || (0..10).all(|_| c.orders().is_ok()))
        })
        .collect();
    assert!(threads.into_iter().all(|h| h.join().unwrap()));
    let (arrivals, throttled) = sim.arrivals(ApiClass::NonTrading);
    assert_eq!((arrivals.len(), throttled), (30, 0));
    assert!(max_in_window(&arrivals, Duration::from_secs(1)) <= 20);
}

fn small_limiter(reserve: u32) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::with_event_log(LimiterConfig {
        orders: vec![Window::new(300, 4, reserve)],
        data: vec![],
        quote: vec![],
        non_trading: vec![],
        margin_ms: 0,
        backoff_initial_ms: 1000,
        backoff_max_ms: 1000,
    }))
}

/// Entries hammer the order class from several threads while exits arrive now and then.
fn contend(limiter: &Arc<RateLimiter>) -> Vec<Duration> {
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let entries: Vec<_> = (0..6)
        .map(|_| {
            let l = limiter.clone();
            thread::spawn(move || {
                while Instant::now() < stop_at {
                    let _ = l.acquire(
                        ApiClass::Orders,
                        Priority::Entry,
                        Instant::now() + Duration::from_secs(1),
                    );
                }
            })
        })
        .collect();
    let mut exit_waits = Vec::new();
    thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let t0 = Instant::now();
        limiter
            .acquire(ApiClass::Orders, Priority::Exit, Instant::now() + Duration::from_secs(5))
            .expect("an exit always gets a slot");
        exit_waits.push(t0.elapsed());
        // Longer than the window, so that each exit finds the previous one gone.
        thread::sleep(Duration::from_millis(350));
    }
    for h in entries {
        h.join().unwrap();
    }
    exit_waits
}

#[test]
fn exits_pass_while_entries_wait_and_no_entry_takes_a_slot_an_exit_waits_for() {
    let limiter = small_limiter(0);
    let waits = contend(&limiter);
    let events = limiter.events();
    // Between an exit starting to wait and being granted, no entry is granted.
    let mut exits_waiting = 0;
    let mut entry_grants = 0;
    for e in &events {
        match e {
            LimiterEvent::Waiting(_, Priority::Exit) => exits_waiting += 1,
            LimiterEvent::Granted(_, Priority::Exit) if exits_waiting > 0 => exits_waiting -= 1,
            LimiterEvent::Granted(_, Priority::Entry) => {
                assert_eq!(
                    exits_waiting, 0,
                    "an entry took a slot while an exit waited: {events:?}"
                );
                entry_grants += 1;
            }
            _ => {}
        }
    }
    assert!(entry_grants >= 8, "entries did run: {entry_grants}");
    assert_eq!(
        events.iter().filter(|e| matches!(e, LimiterEvent::Granted(_, Priority::Exit))).count(),
        3
    );
    // With every slot in use, an exit waits at most until the next slot frees (one window).
    for w in waits {
        assert!(w <= Duration::from_millis(300 + 150), "exit waited {w:?}");
    }
}

#[test]
fn the_exit_reserve_lets_an_exit_through_at_once_while_entries_are_capped() {
    let limiter = small_limiter(1);
    let waits = contend(&limiter);
    // Entries may use 3 of the 4 slots per window; the fourth stays free for exits.
    for w in &waits {
        assert!(*w < Duration::from_millis(100), "exit waited {w:?} despite the reserve");
    }
}
