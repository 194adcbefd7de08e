//! Exponential reconnect backoff with jitter and a cap, as a pure function of the attempt
//! number and a random draw (so tests pin it exactly). Used by the order-update socket.

use std::time::Duration;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Up to this fraction (percent) of each delay is taken off at random, so that many clients
    /// cut off together do not reconnect together.
    pub jitter_pct: u32,
}

impl Default for Backoff {
    /// Spec dhan-v2 §7.6: start at 2 s, cap at 60 s.
    fn default() -> Backoff {
        Backoff { initial: Duration::from_secs(2), max: Duration::from_secs(60), jitter_pct: 25 }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0 = first retry): `initial·2^attempt`
    /// capped at `max`, minus up to `jitter_pct` % of it; `draw` is uniform in `[0, 1)`.
    pub fn delay(&self, attempt: u32, draw: f64) -> Duration {
        let base = self.initial.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let draw = if draw.is_finite() { draw.clamp(0.0, 1.0) } else { 0.0 };
        let cut = base.mul_f64(f64::from(self.jitter_pct.min(100)) / 100.0 * draw);
        base - cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_initial_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter_pct: 0,
        };
        let got: Vec<u128> = (0..6).map(|a| b.delay(a, 0.5).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(1), "huge attempts stay capped");
    }

    #[test]
    fn jitter_only_shortens_and_never_below_the_fraction() {
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            jitter_pct: 25,
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(0, 0.999_999).as_millis(), 1500);
        assert_eq!(b.delay(10, 0.5), Duration::from_millis(52_500));
        assert_eq!(b.delay(0, f64::NAN), Duration::from_secs(2));
    }
}
