//! Exponential backoff, optionally with jitter. Pure: the caller supplies the attempt number and
//! (for jitter) a random fraction, so the schedule is testable.

use std::time::Duration;

/// `base × 2^attempt`, capped at `cap`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap: cap.max(base) }
    }

    /// The delay before retry number `attempt` (0 = the first retry waits `base`).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// [`Backoff::delay`] plus up to `max_jitter` of it (a fraction such as 0.2), where
    /// `random` is uniform in `[0, 1)`. The result never exceeds `cap × (1 + max_jitter)`.
    pub fn delay_with_jitter(&self, attempt: u32, max_jitter: f64, random: f64) -> Duration {
        let d = self.delay(attempt);
        let extra = d.mul_f64((max_jitter * random.clamp(0.0, 1.0)).max(0.0));
        d + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
        let got: Vec<u128> = (0..12).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5000, 5000, 5000]);
    }

    #[test]
    fn huge_attempt_numbers_stay_at_the_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
        assert_eq!(b.delay(64), Duration::from_secs(5));
    }

    #[test]
    fn jitter_adds_at_most_the_given_fraction() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(b.delay_with_jitter(0, 0.2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay_with_jitter(0, 0.2, 0.5), Duration::from_millis(2200));
        assert!(b.delay_with_jitter(10, 0.2, 0.999) <= Duration::from_secs(72));
    }
}
