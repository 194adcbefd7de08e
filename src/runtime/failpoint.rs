//! Fault injection for tests of the real binary: named points in the code that panic when armed
//! through the `SCALPER_FAILPOINTS` environment variable, e.g.
//! `SCALPER_FAILPOINTS="exit_engine.after_decision=1,heartbeat.loop=always"`
//! (`N` = panic the first N times the point is reached, `always` = every time).
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
        let arm = match how.trim() {
            "always" => Some(Arm::Always),
            n => n.parse::<u64>().ok().map(|n| Arm::Times(AtomicU64::new(n))),
        };
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

/// Panics if `name` is armed.
#[inline]
pub fn hit(name: &str) {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return;
    }
    let fire = match registry().points.lock().get(name) {
        Some(Arm::Always) => true,
        Some(Arm::Times(left)) => {
            left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
        }
        None => false,
    };
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
}
