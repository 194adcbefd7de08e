//! A logger that keeps every line of the test binary, so that a test can prove a secret never
//! reaches a log. `TEST_LOG=1` also prints the info-level lines to stderr while a test runs.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

struct Capture;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    /// Everything at every level, except what the engine's logging must cap too: tungstenite
    /// prints frame payloads (the login frame with the token) at trace level.
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= scalper::broker::log_level_cap(m.target())
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        if std::env::var_os("TEST_LOG").is_some() && record.level() <= log::Level::Info {
            eprintln!("{line}");
        }
        if let Ok(mut l) = LINES.lock() {
            l.push(line);
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger for this test binary (once), at the most verbose level that
/// [`scalper::broker::log_level_cap`] allows per target.
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if log::set_boxed_logger(Box::new(Capture)).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
}

pub fn captured() -> Vec<String> {
    LINES.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Every line captured so far (at least `min_lines` of them, or the check proves nothing) is
/// checked for `secret`.
pub fn assert_never_logged(secret: &str, min_lines: usize) {
    let lines = captured();
    assert!(
        lines.len() >= min_lines,
        "the logger captured {} lines; the check would prove nothing",
        lines.len()
    );
    let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
    assert!(
        leaks.is_empty(),
        "the secret appears in {} log line(s), e.g. {:?}",
        leaks.len(),
        leaks.first()
    );
}
