//! systemd integration (`Type=notify`): READY=1 once every worker is up, WATCHDOG=1 while the
//! process is alive (`SupervisorHandle::alive`), STOPPING=1 when shutdown starts. All calls are
//! no-ops outside systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

pub fn notify_ready() {
    notify(&[NotifyState::Ready], "READY=1");
}

pub fn notify_stopping() {
    notify(&[NotifyState::Stopping], "STOPPING=1");
}

pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog], "WATCHDOG=1");
}

pub fn notify_status(text: &str) {
    notify(&[NotifyState::Status(text)], "STATUS");
}

/// How often to ping the watchdog: half of `WatchdogSec`, or `None` when no watchdog is set.
pub fn watchdog_ping_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

fn notify(states: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!(target: "systemd", "sd_notify {what} failed: {e}");
    }
}
