//! Exponential backoff: from `base`, doubling per failed attempt, capped at `cap`, with jitter
//! that only ever shortens the wait (so `cap` is a hard bound). Pure: the caller supplies the
//! random fraction. Used by the supervisor's respawns (no jitter) and by every reconnecting
//! client (the tick reader, the order-update socket, the store writer's database retries).
//!
//! A reconnecting client resets the attempt counter only after a connection has proved healthy,
//! so a server that accepts and then drops it at once still sees growing waits, not a tight
//! loop that would earn a handshake 429.

use std::time::Duration;

/// Validated backoff parameters.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    base: Duration,
    cap: Duration,
    jitter: f64,
}

/// Why backoff parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff base must be positive")]
    ZeroBase,
    #[error("backoff cap {cap:?} is below its base {base:?}")]
    CapBelowBase { base: Duration, cap: Duration },
    #[error("backoff jitter {0} is not a fraction in [0, 1]")]
    BadJitter(String),
}

impl BackoffPolicy {
    /// `jitter` is the largest fraction of a wait that may be taken off it, e.g. 0.2.
    pub fn new(base: Duration, cap: Duration, jitter: f64) -> Result<BackoffPolicy, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if cap < base {
            return Err(BackoffError::CapBelowBase { base, cap });
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::BadJitter(jitter.to_string()));
        }
        Ok(BackoffPolicy { base, cap, jitter })
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The wait before retry number `attempt` (0-based) without jitter: `min(cap, base × 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait before retry number `attempt`, where `random` is uniform in `[0, 1)`:
    /// `ceiling × (1 − jitter × random)`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let cut = (self.jitter * random.clamp(0.0, 1.0)).clamp(0.0, 1.0);
        ceiling.mul_f64(1.0 - cut)
    }
}

impl Default for BackoffPolicy {
    /// 2 s doubling to 60 s, up to 20 % shorter (spec §7: start 2–5 s, cap 60–90 s).
    fn default() -> BackoffPolicy {
        BackoffPolicy { base: Duration::from_secs(2), cap: Duration::from_secs(60), jitter: 0.2 }
    }
}

/// The attempt counter over a [`BackoffPolicy`].
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The wait before the next attempt; counts the attempt.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let d = self.policy.delay(self.attempt, random);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` after a connection proved healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_double_from_base_and_stop_at_the_cap() {
        let p = BackoffPolicy::new(ms(100), ms(1000), 0.0).unwrap();
        let got: Vec<u128> = (0..7).map(|a| p.delay(a, 0.5).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX, 0.0), ms(1000));
    }

    #[test]
    fn jitter_only_shortens_a_wait_by_at_most_its_fraction() {
        let p = BackoffPolicy::new(ms(1000), ms(60_000), 0.2).unwrap();
        assert_eq!(p.delay(0, 0.0), ms(1000));
        assert_eq!(p.delay(0, 0.5), ms(900));
        assert_eq!(p.delay(0, 1.0), ms(800));
    }

    #[test]
    fn counter_grows_per_attempt_and_resets() {
        let mut b = Backoff::new(BackoffPolicy::new(ms(10), ms(1000), 0.0).unwrap());
        let got: Vec<Duration> = (0..3).map(|_| b.next_delay(0.0)).collect();
        assert_eq!(got, [ms(10), ms(20), ms(40)]);
        assert_eq!(b.attempts(), 3);
        b.reset();
        assert_eq!(b.next_delay(0.0), ms(10));
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert_eq!(BackoffPolicy::new(ms(0), ms(1), 0.1), Err(BackoffError::ZeroBase));
        assert_eq!(
            BackoffPolicy::new(ms(10), ms(5), 0.1),
            Err(BackoffError::CapBelowBase { base: ms(10), cap: ms(5) })
        );
        assert!(matches!(BackoffPolicy::new(ms(1), ms(5), 1.5), Err(BackoffError::BadJitter(_))));
        assert!(matches!(
            BackoffPolicy::new(ms(1), ms(5), f64::NAN),
            Err(BackoffError::BadJitter(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_wait_lies_between_the_jittered_floor_and_the_cap(
            base in 1u64..10_000, extra in 0u64..1_000_000, jitter in 0.0f64..=1.0,
            attempt in 0u32..100, random in 0.0f64..1.0,
        ) {
            let p = BackoffPolicy::new(ms(base), ms(base + extra), jitter).unwrap();
            let d = p.delay(attempt, random);
            let ceiling = p.ceiling(attempt);
            prop_assert!(d <= ceiling && ceiling <= p.cap());
            prop_assert!(d >= ceiling.mul_f64(1.0 - jitter) - Duration::from_nanos(1));
            prop_assert!(p.ceiling(attempt + 1) >= ceiling, "ceilings never shrink");
        }
    }
}
