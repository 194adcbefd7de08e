//! Fault injection for tests of the real binary: named points in the code that panic when armed
//! through the `SCALPER_FAILPOINTS` environment variable, e.g.
//! `SCALPER_FAILPOINTS="exit_engine.after_decision=1,heartbeat.loop=always"`
//! (`N` = panic the first N times the point is reached, `always` = every time), or
//! `SCALPER_FAILPOINTS="broker.exit_journaled=kill"` (`kill` = SIGKILL the process the first
//! time the point is reached, `kill:N` = the N-th time): a crash at an exact point, with
//! nothing flushed, for the crash tests of the real binary; `sleep:MS` = wait that long each
//! time (a component made slow, e.g. a store that lags behind).
//!
//! Unarmed points cost one relaxed atomic load. An armed process says so at startup, loudly,
//! because nothing in production should ever set this variable.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

pub const ENV: &str = "SCALPER_FAILPOINTS";

#[derive(Debug)]
enum Arm {
    Times(AtomicU64),
    Always,
    /// SIGKILL when this many more hits have passed (0: the next one).
    Kill(AtomicU64),
    /// Sleep this many milliseconds at every hit.
    Sleep(u64),
}

struct Registry {
    points: Mutex<HashMap<String, Arm>>,
}

static ANY_ARMED: AtomicBool = AtomicBool::new(false);
static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry { points: Mutex::new(HashMap::new()) })
}

/// Reads `SCALPER_FAILPOINTS` once; returns the armed point names (for the startup warning).
pub fn init_from_env() -> Vec<String> {
    let Ok(spec) = std::env::var(ENV) else { return Vec::new() };
    let mut armed = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, how) = item.split_once('=').unwrap_or((item, "always"));
        let arm = parse_arm(how.trim());
        match arm {
            Some(arm) => {
                arm_point(name.trim(), arm);
                armed.push(name.trim().to_string());
            }
            None => log::error!(target: "failpoint", "Ignoring malformed failpoint {item:?}"),
        }
    }
    armed
}

/// `always`, `N`, `kill`, `kill:N` (N ≥ 1) or `sleep:MS`.
fn parse_arm(how: &str) -> Option<Arm> {
    if how == "always" {
        return Some(Arm::Always);
    }
    if how == "kill" {
        return Some(Arm::Kill(AtomicU64::new(0)));
    }
    if let Some(n) = how.strip_prefix("kill:") {
        return n.parse::<u64>().ok().filter(|n| *n > 0).map(|n| Arm::Kill(AtomicU64::new(n - 1)));
    }
    if let Some(ms) = how.strip_prefix("sleep:") {
        return ms.parse::<u64>().ok().map(Arm::Sleep);
    }
    how.parse::<u64>().ok().map(|n| Arm::Times(AtomicU64::new(n)))
}

fn arm_point(name: &str, arm: Arm) {
    registry().points.lock().insert(name.to_string(), arm);
    ANY_ARMED.store(true, Ordering::Release);
}

/// Arms a point in-process (tests): panic the next `times` times it is reached.
pub fn arm(name: &str, times: u64) {
    arm_point(name, Arm::Times(AtomicU64::new(times)));
}

/// Disarms every point (tests).
pub fn disarm_all() {
    registry().points.lock().clear();
    ANY_ARMED.store(false, Ordering::Release);
}

/// Panics (or kills the process) if `name` is armed.
#[inline]
pub fn hit(name: &str) {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut sleep = 0;
    let (fire, kill) = match registry().points.lock().get(name) {
        Some(Arm::Always) => (true, false),
        Some(Arm::Times(left)) => (
            left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok(),
            false,
        ),
        Some(Arm::Kill(skip)) => (
            false,
            skip.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_err(),
        ),
        Some(Arm::Sleep(ms)) => {
            sleep = *ms;
            (false, false)
        }
        None => (false, false),
    };
    if sleep > 0 {
        std::thread::sleep(std::time::Duration::from_millis(sleep));
    }
    if kill {
        log::error!(target: "failpoint", "failpoint {name}: SIGKILL");
        // SAFETY: kill(2) on our own pid with a constant signal has no memory-safety
        // preconditions; SIGKILL cannot be caught, so nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    if fire {
        panic!("failpoint {name} fired");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_point_fires_the_given_number_of_times() {
        arm("test.point", 2);
        assert!(std::panic::catch_unwind(|| hit("test.point")).is_err());
        assert!(std::panic::catch_unwind(|| hit("test.point")).is_err());
        hit("test.point");
        hit("test.other");
    }

    #[test]
    fn kill_and_sleep_arms_are_parsed_and_bad_ones_refused() {
        let left = |a: Option<Arm>| match a {
            Some(Arm::Kill(n)) => Some(n.load(Ordering::Relaxed)),
            _ => None,
        };
        assert_eq!(left(parse_arm("kill")), Some(0));
        assert_eq!(left(parse_arm("kill:3")), Some(2));
        assert!(parse_arm("kill:0").is_none());
        assert!(parse_arm("kill:x").is_none());
        assert!(matches!(parse_arm("sleep:5"), Some(Arm::Sleep(5))));
        assert!(matches!(parse_arm("always"), Some(Arm::Always)));
        assert!(matches!(parse_arm("2"), Some(Arm::Times(_))));
        assert!(parse_arm("sometimes").is_none());
        arm_point("test.sleepy", Arm::Sleep(1));
        hit("test.sleepy");
    }
}
