//! The supervisor with real threads and real panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use scalper::ops::metrics::Metrics;
use scalper::runtime::{
    Supervisor, SupervisorConfig, SupervisorEvent, SupervisorOutcome, WorkerCtx, WorkerSpec,
    WorkerState,
};

fn quick_config() -> SupervisorConfig {
    SupervisorConfig {
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        restart_budget: 3,
        restart_window: Duration::from_secs(60),
        stop_deadline: Duration::from_millis(500),
        check_every: Duration::from_millis(20),
    }
}

/// Waits for the first event matching `pred`, up to a generous deadline.
fn wait_event(
    events: &crossbeam_channel::Receiver<SupervisorEvent>,
    pred: impl Fn(&SupervisorEvent) -> bool,
) -> (SupervisorEvent, Instant) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return (ev, Instant::now()),
            Ok(_) => continue,
            Err(_) => panic!("expected supervisor event did not arrive"),
        }
    }
}

#[test]
fn a_panicking_worker_is_respawned_after_its_backoff_and_keeps_external_state() {
    let counter = Arc::new(AtomicU64::new(0));
    let spawned_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let panicked_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let metrics = Metrics::new();
    let mut sup = Supervisor::new(quick_config(), metrics.clone());
    let (c, s, p) = (counter.clone(), spawned_at.clone(), panicked_at.clone());
    sup.add(WorkerSpec::new("counter", Duration::from_secs(5), move || {
        // Only the first incarnation panics; state lives in `c`, outside the worker.
        let first = {
            let mut v = s.lock();
            v.push(Instant::now());
            v.len() == 1
        };
        let (c, p) = (c.clone(), p.clone());
        Box::new(move |ctx: &WorkerCtx| {
            while ctx.sleep(Duration::from_millis(2)) {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                if first && n == 10 {
                    *p.lock() = Some(Instant::now());
                    panic!("injected failure at count {n}");
                }
            }
            Ok(())
        })
    }));
    let handle = sup.start().unwrap();
    // Every worker's series exist from the start: no restart yet, the whole budget left.
    let text = metrics.render();
    assert!(text.contains("scalper_worker_restarts_total{worker=\"counter\"} 0"), "{text}");
    assert!(text.contains("scalper_worker_stuck{worker=\"counter\"} 0"), "{text}");
    assert!(text.contains("scalper_worker_restart_budget_left{worker=\"counter\"} 3"), "{text}");
    let (failed, _) =
        wait_event(handle.events(), |e| matches!(e, SupervisorEvent::WorkerFailed { .. }));
    let SupervisorEvent::WorkerFailed { reason, restart_in, .. } = failed else { unreachable!() };
    assert!(reason.contains("injected failure at count 10"), "{reason}");
    assert_eq!(restart_in, Duration::from_millis(50));
    wait_event(handle.events(), |e| matches!(e, SupervisorEvent::WorkerRestarted { .. }));
    // The respawn waited out the backoff, measured where it happened.
    let panic_time = panicked_at.lock().expect("the first incarnation panicked");
    let respawn_time = spawned_at.lock()[1];
    assert!(respawn_time.duration_since(panic_time) >= restart_in);
    // The respawned worker continues from the externally held count.
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter.load(Ordering::SeqCst) < 30 {
        assert!(Instant::now() < deadline, "respawned worker does not make progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = handle.statuses();
    assert_eq!(st[0].restarts, 1);
    assert_eq!(st[0].state, WorkerState::Running);
    // One restart spent of the three the window allows.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics.render();
        if text.contains("scalper_worker_restart_budget_left{worker=\"counter\"} 2")
            && text.contains("scalper_worker_restarts_total{worker=\"counter\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "restart metrics: {text}");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.shutdown();
    assert_eq!(handle.join(), SupervisorOutcome::Stopped { left_behind: vec![] });
    assert_eq!(spawned_at.lock().len(), 2);
}

#[test]
fn a_worker_that_keeps_panicking_exhausts_its_budget_and_escalates() {
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    let other_stopped = Arc::new(AtomicBool::new(false));
    let o = other_stopped.clone();
    sup.add(WorkerSpec::new("steady", Duration::from_secs(5), move || {
        let o = o.clone();
        Box::new(move |ctx: &WorkerCtx| {
            while ctx.sleep(Duration::from_millis(10)) {}
            o.store(true, Ordering::SeqCst);
            Ok(())
        })
    }));
    sup.add(WorkerSpec::new("flaky", Duration::from_secs(5), || {
        Box::new(|_: &WorkerCtx| -> anyhow::Result<()> { panic!("always fails") })
    }));
    let hook_saw: Arc<Mutex<Option<(String, bool)>>> = Arc::default();
    let (h, o) = (hook_saw.clone(), other_stopped.clone());
    sup.on_escalation(move |worker, _reason| {
        *h.lock() = Some((worker.to_string(), o.load(Ordering::SeqCst)));
    });
    let handle = sup.start().unwrap();
    let outcome = handle.join();
    assert_eq!(
        *hook_saw.lock(),
        Some(("flaky".to_string(), false)),
        "the escalation hook runs before any other worker is stopped"
    );
    match outcome {
        SupervisorOutcome::Escalated { worker, reason, left_behind } => {
            assert_eq!(worker, "flaky");
            assert!(reason.contains("always fails"), "{reason}");
            assert!(left_behind.is_empty());
        }
        other => panic!("expected escalation, got {other:?}"),
    }
    assert!(other_stopped.load(Ordering::SeqCst), "escalation stops the other workers too");
}

#[test]
fn an_error_return_counts_as_a_failure_and_is_restarted() {
    let spawns = Arc::new(AtomicU64::new(0));
    let s = spawns.clone();
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    sup.add(WorkerSpec::new("erring", Duration::from_secs(5), move || {
        let first = s.fetch_add(1, Ordering::SeqCst) == 0;
        Box::new(move |ctx: &WorkerCtx| {
            if first {
                anyhow::bail!("connection refused");
            }
            while ctx.sleep(Duration::from_millis(10)) {}
            Ok(())
        })
    }));
    let handle = sup.start().unwrap();
    wait_event(handle.events(), |e| matches!(e, SupervisorEvent::WorkerRestarted { .. }));
    handle.shutdown();
    assert!(!handle.join().is_escalation());
}

#[test]
fn a_worker_that_stops_beating_is_reported_stuck_and_recovers() {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    sup.add(WorkerSpec::new("sleepy", Duration::from_millis(200), move || {
        let r = r.clone();
        Box::new(move |ctx: &WorkerCtx| {
            // Blocks without beating until released: alive, not panicked, but stuck.
            while !r.load(Ordering::SeqCst) && !ctx.should_stop() {
                std::thread::sleep(Duration::from_millis(5));
            }
            while ctx.sleep(Duration::from_millis(10)) {}
            Ok(())
        })
    }));
    let handle = sup.start().unwrap();
    assert!(handle.alive(), "alive before the worker is stuck");
    let (ev, _) = wait_event(handle.events(), |e| matches!(e, SupervisorEvent::WorkerStuck { .. }));
    assert!(matches!(ev, SupervisorEvent::WorkerStuck { ref worker, .. } if worker == "sleepy"));
    assert!(handle.statuses()[0].stuck);
    assert!(!handle.all_healthy());
    assert!(!handle.alive(), "a stuck worker stops the watchdog");
    release.store(true, Ordering::SeqCst);
    wait_event(handle.events(), |e| matches!(e, SupervisorEvent::WorkerRecovered { .. }));
    assert!(handle.all_healthy());
    assert!(handle.alive());
    handle.shutdown();
    handle.join();
}

#[test]
fn workers_stop_in_reverse_start_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    for name in ["first", "second", "third"] {
        let order = order.clone();
        sup.add(WorkerSpec::new(name, Duration::from_secs(5), move || {
            let order = order.clone();
            Box::new(move |ctx: &WorkerCtx| {
                while ctx.sleep(Duration::from_millis(10)) {}
                order.lock().push(name);
                Ok(())
            })
        }));
    }
    let handle = sup.start().unwrap();
    wait_event(handle.events(), |e| *e == SupervisorEvent::AllUp);
    handle.shutdown();
    handle.join();
    assert_eq!(*order.lock(), vec!["third", "second", "first"]);
}

#[test]
fn a_worker_that_ignores_stop_is_left_behind_and_shutdown_completes() {
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    sup.add(WorkerSpec::new("polite", Duration::from_secs(5), || {
        Box::new(|ctx: &WorkerCtx| {
            while ctx.sleep(Duration::from_millis(10)) {}
            Ok(())
        })
    }));
    sup.add(
        WorkerSpec::new("deaf", Duration::from_secs(600), || {
            Box::new(|_: &WorkerCtx| {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(())
            })
        })
        .stop_deadline(Duration::from_millis(100)),
    );
    let handle = sup.start().unwrap();
    wait_event(handle.events(), |e| *e == SupervisorEvent::AllUp);
    let started = Instant::now();
    handle.shutdown();
    let outcome = handle.join();
    assert_eq!(outcome, SupervisorOutcome::Stopped { left_behind: vec!["deaf".into()] });
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown must not hang");
}

#[test]
fn a_worker_waiting_for_a_rate_limit_slot_keeps_beating() {
    use scalper::broker::ratelimit::{ApiClass, LimiterConfig, Priority, RateLimiter, Window};
    // One order a second and a half; the worker's limit is 300 ms.
    let limiter = Arc::new(RateLimiter::new(LimiterConfig {
        orders: vec![Window::new(1_500, 1, 0)],
        margin_ms: 0,
        ..LimiterConfig::dhan()
    }));
    let done = Arc::new(AtomicBool::new(false));
    let (l, d) = (limiter.clone(), done.clone());
    let mut sup = Supervisor::new(quick_config(), Metrics::new());
    sup.add(WorkerSpec::new("placer", Duration::from_millis(300), move || {
        let (l, d) = (l.clone(), d.clone());
        Box::new(move |ctx: &WorkerCtx| {
            for _ in 0..2 {
                let deadline = Instant::now() + Duration::from_secs(5);
                l.acquire(ApiClass::Orders, Priority::Exit, deadline).expect("a slot in time");
            }
            d.store(true, Ordering::SeqCst);
            while ctx.sleep(Duration::from_millis(10)) {}
            Ok(())
        })
    }));
    let handle = sup.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the worker never got its second slot");
        assert!(!handle.statuses().iter().any(|w| w.stuck), "reported stuck while waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stuck: Vec<SupervisorEvent> = handle
        .events()
        .try_iter()
        .filter(|e| matches!(e, SupervisorEvent::WorkerStuck { .. }))
        .collect();
    assert!(stuck.is_empty(), "{stuck:?}");
    handle.shutdown();
    handle.join();
}
