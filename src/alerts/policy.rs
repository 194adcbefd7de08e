//! The notifier's decisions, pure (time is passed in, randomness too): which alerts a target
//! receives, deduplication, the per-target rate limit, and when a failed delivery is retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::AlertSeverity;
use crate::exec::AlertLevel;
use crate::runtime::backoff::BackoffPolicy;

/// The longest `Retry-After` honoured; a receiver asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Above this many remembered codes, codes idle for a whole window are forgotten.
const DEDUPE_PRUNE_AT: usize = 1_024;

/// The severity of an engine alert, `None` for `info` (never sent to people).
pub fn severity(level: AlertLevel) -> Option<AlertSeverity> {
    match level {
        AlertLevel::Info => None,
        AlertLevel::Warning => Some(AlertSeverity::Warning),
        AlertLevel::Critical => Some(AlertSeverity::Critical),
    }
}

/// Whether a target with `min` receives an alert of `severity`.
pub fn wants(min: AlertSeverity, severity: AlertSeverity) -> bool {
    severity >= min
}

/// What [`Dedupe::admit`] decided.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it; `repeats` alerts of the same key were held back since the last one sent.
    Send { repeats: u32 },
    /// The same key was sent less than a window ago: held back and counted.
    Hold,
}

#[derive(Clone, Debug)]
struct Seen {
    sent_at: Instant,
    held: u32,
}

/// The same key within `window` of the last one sent is sent once; the first one after the
/// window carries the count of those held back. A zero window sends everything.
#[derive(Clone, Debug)]
pub struct Dedupe {
    window: Duration,
    seen: HashMap<String, Seen>,
}

impl Dedupe {
    pub fn new(window: Duration) -> Dedupe {
        Dedupe { window, seen: HashMap::new() }
    }

    pub fn admit(&mut self, key: &str, now: Instant) -> Admit {
        if self.window.is_zero() {
            return Admit::Send { repeats: 0 };
        }
        if let Some(s) = self.seen.get_mut(key) {
            if now.saturating_duration_since(s.sent_at) < self.window {
                s.held = s.held.saturating_add(1);
                return Admit::Hold;
            }
            let repeats = s.held;
            *s = Seen { sent_at: now, held: 0 };
            return Admit::Send { repeats };
        }
        if self.seen.len() >= DEDUPE_PRUNE_AT {
            let window = self.window;
            self.seen
                .retain(|_, s| s.held > 0 || now.saturating_duration_since(s.sent_at) < window);
        }
        self.seen.insert(key.to_string(), Seen { sent_at: now, held: 0 });
        Admit::Send { repeats: 0 }
    }
}

/// One token in bucket units: a rate per minute refills that many units per millisecond.
const UNIT: u64 = 60_000;

/// A token bucket in integer units: `burst` alerts at once, then `rate_per_minute`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    units: u64,
    cap: u64,
    per_ms: u64,
    last: Instant,
}

impl TokenBucket {
    /// Full at `now`.
    pub fn new(rate_per_minute: u32, burst: u32, now: Instant) -> TokenBucket {
        let cap = u64::from(burst.max(1)).saturating_mul(UNIT);
        TokenBucket { units: cap, cap, per_ms: u64::from(rate_per_minute.max(1)), last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_millis();
        let ms = u64::try_from(elapsed).unwrap_or(u64::MAX);
        self.units = self.units.saturating_add(ms.saturating_mul(self.per_ms)).min(self.cap);
        // Whole milliseconds only: the remainder counts towards the next refill.
        self.last += Duration::from_millis(ms);
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.units >= UNIT {
            self.units -= UNIT;
            true
        } else {
            false
        }
    }
}

/// How a delivery attempt ended, as far as retrying goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth another try: no connection, a timeout, 408, 429 or 5xx; with the receiver's
    /// `Retry-After`, if it gave one.
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (another 4xx: a wrong URL, token or chat).
    Permanent {
        why: String,
    },
}

/// The class of an HTTP status.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => {
            Attempt::Transient { why: format!("answered {status}"), retry_after }
        }
        _ => Attempt::Permanent { why: format!("answered {status}") },
    }
}

/// A `Retry-After` header in delta-seconds (an HTTP date is not honoured: the backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What follows an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryIn(Duration),
    GiveUp { why: String },
}

/// After attempt number `attempts` (1-based) ended with `outcome`: done, another try after a
/// backoff (`policy`, doubling from its base, shortened by up to its jitter with `random` in
/// `[0, 1)`; never shorter than the receiver's `Retry-After`, up to [`MAX_RETRY_AFTER`]), or
/// given up once `max_attempts` were made or the failure is permanent.
pub fn next_step(
    outcome: &Attempt,
    attempts: u32,
    max_attempts: u32,
    policy: &BackoffPolicy,
    random: f64,
) -> Next {
    match outcome {
        Attempt::Delivered => Next::Done,
        Attempt::Permanent { why } => Next::GiveUp { why: why.clone() },
        Attempt::Transient { why, .. } if attempts >= max_attempts => {
            Next::GiveUp { why: format!("{why}; {attempts} attempts made") }
        }
        Attempt::Transient { retry_after, .. } => {
            let backoff = policy.delay(attempts.saturating_sub(1), random);
            let wait = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER).max(backoff));
            Next::RetryIn(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn severities_and_what_a_target_wants() {
        use AlertSeverity::{Critical, Warning};
        assert_eq!(severity(AlertLevel::Info), None);
        assert_eq!(severity(AlertLevel::Warning), Some(Warning));
        assert_eq!(severity(AlertLevel::Critical), Some(Critical));
        // (target's minimum, alert, received)
        let cases = [
            (Warning, Warning, true),
            (Warning, Critical, true),
            (Critical, Warning, false),
            (Critical, Critical, true),
        ];
        for (min, sev, want) in cases {
            assert_eq!(wants(min, sev), want, "{min} gets {sev}");
        }
    }

    #[test]
    fn dedupe_sends_a_key_once_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::from_secs(10));
        // (ms after t0, key, decision)
        let cases = [
            (0, "a", Admit::Send { repeats: 0 }),
            (1, "a", Admit::Hold),
            (2, "b", Admit::Send { repeats: 0 }),
            (9_999, "a", Admit::Hold),
            // The window counts from the last one sent: 10 s after t0 it is over.
            (10_000, "a", Admit::Send { repeats: 2 }),
            (10_001, "a", Admit::Hold),
            (20_000, "a", Admit::Send { repeats: 1 }),
            // Nothing held since: no count.
            (40_000, "a", Admit::Send { repeats: 0 }),
            (40_000, "b", Admit::Send { repeats: 0 }),
        ];
        for (at, key, want) in cases {
            assert_eq!(d.admit(key, t0 + ms(at)), want, "{key} at {at} ms");
        }
    }

    #[test]
    fn a_zero_window_sends_everything() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(d.admit("a", t0), Admit::Send { repeats: 0 });
        }
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        // 60 a minute (one a second), bursts of 2.
        let mut b = TokenBucket::new(60, 2, t0);
        // (ms after t0, taken)
        let cases = [
            (0, true),
            (0, true),
            (0, false),
            (999, false),
            (1_000, true),
            (1_000, false),
            // A long pause refills to the burst only.
            (60_000, true),
            (60_000, true),
            (60_000, false),
            (60_500, false),
            (61_000, true),
        ];
        for (at, want) in cases {
            assert_eq!(b.try_take(t0 + ms(at)), want, "at {at} ms");
        }
    }

    #[test]
    fn token_bucket_keeps_partial_milliseconds() {
        let t0 = Instant::now();
        // 1 a minute: a token every 60 s, from many small steps.
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        let mut at = 0;
        let mut got = None;
        while at <= 61_000 {
            at += 7;
            if b.try_take(t0 + Duration::from_micros(at * 1_000 + 500)) {
                got = Some(at);
                break;
            }
        }
        let got = got.expect("a token within 61 s");
        assert!((60_000..60_010).contains(&got), "{got}");
    }

    #[test]
    fn statuses_and_retry_after() {
        let cases = [
            (200, true, false),
            (204, true, false),
            (408, false, true),
            (429, false, true),
            (500, false, true),
            (503, false, true),
            (400, false, false),
            (401, false, false),
            (404, false, false),
            (301, false, false),
        ];
        for (status, delivered, transient) in cases {
            let a = classify_status(status, None);
            assert_eq!(a == Attempt::Delivered, delivered, "{status}");
            assert_eq!(matches!(a, Attempt::Transient { .. }), transient, "{status}");
        }
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn retries_back_off_respect_retry_after_and_give_up_at_the_bound() {
        let policy = BackoffPolicy::new(ms(100), ms(1_000), 0.5).unwrap();
        let transient =
            |retry_after| Attempt::Transient { why: "answered 503".into(), retry_after };
        let none = transient(None);
        // (outcome, attempts made, random, next)
        let cases = [
            (Attempt::Delivered, 1, 0.0, Next::Done),
            (none.clone(), 1, 0.0, Next::RetryIn(ms(100))),
            (none.clone(), 2, 0.0, Next::RetryIn(ms(200))),
            (none.clone(), 3, 0.0, Next::RetryIn(ms(400))),
            (none.clone(), 6, 0.0, Next::RetryIn(ms(1_000))),
            // A longer Retry-After wins over the backoff; a shorter one does not.
            (
                transient(Some(Duration::from_secs(5))),
                1,
                0.0,
                Next::RetryIn(Duration::from_secs(5)),
            ),
            (transient(Some(ms(10))), 2, 0.0, Next::RetryIn(ms(200))),
            (transient(Some(Duration::from_secs(86_400))), 1, 0.0, Next::RetryIn(MAX_RETRY_AFTER)),
            (none.clone(), 8, 0.0, Next::GiveUp { why: "answered 503; 8 attempts made".into() }),
            (
                Attempt::Permanent { why: "answered 404".into() },
                1,
                0.0,
                Next::GiveUp { why: "answered 404".into() },
            ),
        ];
        for (outcome, attempts, random, want) in cases {
            assert_eq!(
                next_step(&outcome, attempts, 8, &policy, random),
                want,
                "{outcome:?} after {attempts}"
            );
        }
        // Jitter only shortens, by half of the wait at most.
        for random in [0.1, 0.5, 0.9, 0.999] {
            let Next::RetryIn(d) = next_step(&none, 3, 8, &policy, random) else { panic!() };
            assert!(d >= ms(200) && d < ms(400), "{d:?} with {random}");
        }
    }
}
