//! The process-wide panic hook: one error-level log line per panic with the thread name, the
//! location and a backtrace. The supervisor separately learns of a worker panic through
//! `catch_unwind`; this hook is what puts the location in the log, once.

use std::backtrace::Backtrace;

/// Replaces the default hook (which would print the same panic to stderr a second time).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".into());
        let message = super::supervisor::panic_message(info.payload());
        let backtrace = Backtrace::force_capture();
        log::error!(
            target: "panic",
            "Thread '{name}' panicked at {location}: {message}\n{backtrace}"
        );
    }));
}
