//! The process-wide panic hook: per panic, one error-level log line with the thread name, the
//! location and the message at once, and its backtrace in a second line shortly after. The
//! supervisor separately learns of a worker panic through `catch_unwind`; this hook is what
//! puts the location in the log.
//!
//! The hook runs on the panicking thread before it unwinds, so it sits on the respawn path of
//! a supervised worker. Symbolizing a backtrace (loading and parsing the binary's debug line
//! tables, ≈ 100 ms the first time on a small VM) is far too slow for that: the hook only
//! *captures* the frames (`Backtrace::force_capture` records instruction pointers and resolves
//! nothing until the backtrace is formatted) and hands them to the `panic_log` thread, which
//! resolves and logs them off the respawn path.

use std::backtrace::Backtrace;

use crossbeam_channel::{Receiver, Sender};

/// One panic, as the hook captured it; `backtrace` is not resolved yet.
pub struct PanicReport {
    pub thread: String,
    pub location: String,
    pub message: String,
    pub backtrace: Backtrace,
}

/// Replaces the default hook (which would print the same panic to stderr a second time) and
/// starts the `panic_log` thread that resolves and logs the backtraces.
pub fn install() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let spawned =
        std::thread::Builder::new().name("panic_log".into()).spawn(move || log_reports(&rx));
    if let Err(e) = spawned {
        log::error!(target: "panic", "cannot start the panic log thread ({e}): panics are logged without backtraces");
    }
    install_with(tx);
}

/// Installs the hook with `reports` as the receiver of each panic's report (the backtrace still
/// unresolved). Nothing on the panicking thread formats the backtrace.
pub fn install_with(reports: Sender<PanicReport>) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>").to_string();
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".into());
        let message = super::supervisor::panic_message(info.payload());
        log::error!(
            target: "panic",
            "Thread '{name}' panicked at {location}: {message} (backtrace follows)"
        );
        let backtrace = Backtrace::force_capture();
        // The receiver gone (the log thread could not start): the line above is all there is.
        let _ = reports.send(PanicReport { thread: name, location, message, backtrace });
    }));
}

/// Resolves and logs each report as it arrives, until every sender is gone.
fn log_reports(reports: &Receiver<PanicReport>) {
    for report in reports {
        log_report(&report);
    }
}

/// Logs one report's backtrace (resolving its symbols: slow the first time).
pub fn log_report(r: &PanicReport) {
    log::error!(
        target: "panic",
        "backtrace of the panic in thread '{}' at {} ({}):\n{}",
        r.thread,
        r.location,
        r.message,
        r.backtrace
    );
}
