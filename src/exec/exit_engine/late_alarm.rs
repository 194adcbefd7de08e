//! When a startup reconciliation that has not succeeded is alerted: first `after` the wait
//! began, then every `every` while it lasts. Monotonic instants only, so a wall-clock step
//! neither raises nor silences it.

use std::time::{Duration, Instant};

/// How often the alert repeats while the wait lasts.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct LateAlarm {
    since: Instant,
    next: Instant,
    every: Duration,
}

impl LateAlarm {
    pub fn new(since: Instant, after: Duration, every: Duration) -> LateAlarm {
        LateAlarm { since, next: since + after, every }
    }

    /// `Some(how long the wait has lasted)` when an alert is due at `now`; the next one is
    /// then due `every` later.
    pub fn due(&mut self, now: Instant) -> Option<Duration> {
        if now < self.next {
            return None;
        }
        self.next = now + self.every;
        Some(now.duration_since(self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_after_the_threshold_then_every_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut alarm = LateAlarm::new(t0, s(30), s(60));
        // (seconds since the start, alert due with the wait's length)
        let table = [
            (0, None),
            (29, None),
            (30, Some(30)),
            (31, None),
            (89, None),
            (90, Some(90)),
            (149, None),
            (200, Some(200)),
            (259, None),
            (260, Some(260)),
        ];
        for (at, want) in table {
            assert_eq!(alarm.due(t0 + s(at)), want.map(s), "at {at} s");
        }
    }
}
