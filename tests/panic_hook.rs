//! The panic hook keeps symbolization off the respawn path: a panicking thread unwinds (and a
//! supervised worker is respawned) without waiting for its backtrace to be resolved, the first
//! panic of the process included. The first resolution of a backtrace loads the binary's line
//! tables (tens to hundreds of milliseconds); the hook only captures the frames and hands them
//! on, so even the first panic unwinds in a fraction of that, measured in the same run.

#[path = "log_capture/mod.rs"]
mod log_capture;

use std::time::{Duration, Instant};

use scalper::runtime::panic_hook;

/// Panics a named thread; how long from the panic to the thread's join returning.
fn panic_once(i: usize) -> Duration {
    let start = std::sync::Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let s = start.clone();
    let joined = std::thread::Builder::new()
        .name(format!("victim_{i}"))
        .spawn(move || {
            *s.lock() = Some(Instant::now());
            panic!("injected panic {i}");
        })
        .expect("spawn")
        .join();
    let took = start.lock().expect("the thread ran").elapsed();
    assert!(joined.is_err(), "the thread panicked");
    took
}

#[test]
fn the_first_panic_unwinds_without_resolving_its_backtrace() {
    log_capture::capture_logs();
    let (tx, reports) = crossbeam_channel::unbounded();
    panic_hook::install_with(tx);
    let unwinds: Vec<Duration> = (0..4).map(panic_once).collect();
    let _ = std::panic::take_hook();

    // The location is logged at once, on the panicking thread.
    let lines = log_capture::captured();
    let first_line = lines.iter().find(|l| l.contains("Thread 'victim_0' panicked at"));
    let first_line = first_line.unwrap_or_else(|| panic!("the panic was logged: {lines:#?}"));
    assert!(first_line.contains("injected panic 0"), "{first_line}");
    assert!(!lines.iter().any(|l| l.contains("backtrace of the panic")), "not resolved yet");

    // Resolving the first report's backtrace, now, is the slow part the hook left out.
    let first = reports.try_recv().expect("the first panic's report");
    assert_eq!(first.thread, "victim_0");
    let resolving = Instant::now();
    panic_hook::log_report(&first);
    let resolve = resolving.elapsed();
    let lines = log_capture::captured();
    let trace = lines.iter().find(|l| l.contains("backtrace of the panic in thread 'victim_0'"));
    let trace = trace.expect("the backtrace was logged");
    assert!(trace.contains("panic_once"), "the frames are resolved: {trace}");

    eprintln!("unwind after panic: {unwinds:?}; resolving the first backtrace took {resolve:?}");
    assert!(
        unwinds[0] * 2 < resolve,
        "the first panic unwound in {:?}: the hook resolved its backtrace ({resolve:?}) on the panicking thread",
        unwinds[0]
    );
}
