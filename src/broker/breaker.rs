//! The circuit breaker in front of Dhan's order APIs: a pure state machine fed `now`.
//!
//! After `failure_threshold` consecutive transport failures (unknown outcomes, connection
//! errors, 5xx; a definitive rejection is an answer and does not count) it opens: every call is
//! refused, and the caller refuses entries and queues exits (and alerts). After `cool_down` it
//! half-opens and admits exactly one probe; the probe's success closes it, its failure re-opens
//! it for another cool-down. Each admission carries the breaker's generation so that a late
//! answer to a call admitted before a state change cannot move the breaker. The order router
//! owns the calls; [`SharedBreaker`] is the thread-safe shell, readable for health and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::ops::health::{ComponentHealth, Status};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transport failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe is allowed (ms). Also how long a probe may stay
    /// unanswered before another is admitted.
    pub cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig { failure_threshold: 3, cool_down_ms: 5_000 }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: u64,
    },
    /// `probe_since`: when the one probe was admitted, if it is in flight.
    HalfOpen {
        probe_since: Option<u64>,
    },
}

impl BreakerState {
    /// Every state's name, as the `state` label of `scalper_broker_breaker_state`.
    pub const NAMES: &'static [&'static str] = &["closed", "half_open", "open"];

    pub const fn name(self) -> &'static str {
        match self {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// Permission to make one call; hand it back with the call's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    generation: u64,
    pub probe: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed(Permit),
    /// Open, or half-open with the probe in flight. `retry_at`: when a probe may next be
    /// admitted (ms), if known.
    Refused {
        retry_at: Option<u64>,
    },
}

/// What a call ended as, as far as the link's health goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// An answer: accepted, or a read that succeeded.
    Success,
    /// A definitive answer from the broker (4xx with an error body): the link works.
    Rejected,
    /// No usable answer: timeout, reset, 5xx, unparseable body, connection refused.
    TransportFailure,
}

/// A state change worth a log line, an alert and a metric.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Opened { consecutive_failures: u32 },
    HalfOpened,
    Closed,
    ReOpened,
}

#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
    generation: u64,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            cfg,
            state: BreakerState::Closed { consecutive_failures: 0 },
            generation: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn set(&mut self, state: BreakerState) {
        self.state = state;
        self.generation += 1;
    }

    /// May a call go now? The first call after the cool-down becomes the probe.
    pub fn admit(&mut self, now: u64) -> (Admission, Option<Transition>) {
        match self.state {
            BreakerState::Closed { .. } => {
                (Admission::Allowed(Permit { generation: self.generation, probe: false }), None)
            }
            BreakerState::Open { until } if now < until => {
                (Admission::Refused { retry_at: Some(until) }, None)
            }
            BreakerState::Open { .. } => {
                self.set(BreakerState::HalfOpen { probe_since: Some(now) });
                let permit = Permit { generation: self.generation, probe: true };
                (Admission::Allowed(permit), Some(Transition::HalfOpened))
            }
            BreakerState::HalfOpen { probe_since: Some(since) }
                if now < since + self.cfg.cool_down_ms =>
            {
                (Admission::Refused { retry_at: Some(since + self.cfg.cool_down_ms) }, None)
            }
            BreakerState::HalfOpen { .. } => {
                // No probe in flight, or the last one never answered: admit a new one.
                self.set(BreakerState::HalfOpen { probe_since: Some(now) });
                (Admission::Allowed(Permit { generation: self.generation, probe: true }), None)
            }
        }
    }

    /// Reports the result of a call admitted with `permit`.
    pub fn record(&mut self, permit: Permit, result: CallResult, now: u64) -> Option<Transition> {
        if permit.generation != self.generation {
            return None; // admitted before the last state change: says nothing about the link now
        }
        let failed = result == CallResult::TransportFailure;
        match self.state {
            BreakerState::Closed { consecutive_failures } => {
                if !failed {
                    if consecutive_failures > 0 {
                        // Keep the generation: calls in flight from this closed period still count.
                        self.state = BreakerState::Closed { consecutive_failures: 0 };
                    }
                    return None;
                }
                let n = consecutive_failures + 1;
                if n >= self.cfg.failure_threshold {
                    self.set(BreakerState::Open { until: now + self.cfg.cool_down_ms });
                    Some(Transition::Opened { consecutive_failures: n })
                } else {
                    self.state = BreakerState::Closed { consecutive_failures: n };
                    None
                }
            }
            BreakerState::HalfOpen { .. } if permit.probe => {
                if failed {
                    self.set(BreakerState::Open { until: now + self.cfg.cool_down_ms });
                    Some(Transition::ReOpened)
                } else {
                    self.set(BreakerState::Closed { consecutive_failures: 0 });
                    Some(Transition::Closed)
                }
            }
            _ => None,
        }
    }
}

/// The breaker shared by the threads that place orders. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedBreaker {
    inner: Arc<Mutex<CircuitBreaker>>,
    origin: Instant,
}

impl SharedBreaker {
    pub fn new(cfg: BreakerConfig) -> SharedBreaker {
        SharedBreaker {
            inner: Arc::new(Mutex::new(CircuitBreaker::new(cfg))),
            origin: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn admit(&self) -> Admission {
        let (admission, transition) = self.inner.lock().admit(self.now());
        if let Some(t) = transition {
            log_transition(t);
        }
        admission
    }

    pub fn record(&self, permit: Permit, result: CallResult) -> Option<Transition> {
        let t = self.inner.lock().record(permit, result, self.now());
        if let Some(t) = t {
            log_transition(t);
        }
        t
    }

    pub fn state(&self) -> BreakerState {
        self.inner.lock().state()
    }

    /// The breaker as a health-board component: open is `Down` (no entries can go), half-open
    /// `Degraded`.
    pub fn health(&self) -> ComponentHealth {
        let state = self.state();
        let status = match state {
            BreakerState::Closed { .. } => Status::Ok,
            BreakerState::HalfOpen { .. } => Status::Degraded,
            BreakerState::Open { .. } => Status::Down,
        };
        let reason = match state {
            BreakerState::Closed { .. } => String::new(),
            s => format!("circuit breaker {}", s.name()),
        };
        ComponentHealth::new(status, reason)
            .with_details(serde_json::json!({ "state": state.name() }))
    }

    /// How long until a refused call may be retried, for a refusal's `retry_at`.
    pub fn until(&self, at_ms: u64) -> Duration {
        Duration::from_millis(at_ms.saturating_sub(self.now()))
    }
}

fn log_transition(t: Transition) {
    match t {
        Transition::Opened { consecutive_failures } => log::error!(target: "broker",
            "circuit breaker opened after {consecutive_failures} consecutive transport failures: entries refused, exits queued"),
        Transition::HalfOpened => {
            log::warn!(target: "broker", "circuit breaker half-open: one probe call allowed")
        }
        Transition::Closed => {
            log::warn!(target: "broker", "circuit breaker closed: the probe succeeded")
        }
        Transition::ReOpened => {
            log::error!(target: "broker", "circuit breaker re-opened: the probe failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallResult::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig { failure_threshold: 3, cool_down_ms: 1000 })
    }

    fn permit(b: &mut CircuitBreaker, now: u64) -> Permit {
        match b.admit(now).0 {
            Admission::Allowed(p) => p,
            refused => panic!("refused at {now}: {refused:?} in {:?}", b.state()),
        }
    }

    #[test]
    fn opens_after_exactly_the_threshold_of_consecutive_transport_failures() {
        // (results fed in order, state name after each)
        let table: &[(&[CallResult], &str)] = &[
            (&[TransportFailure, TransportFailure], "closed"),
            (&[TransportFailure, TransportFailure, TransportFailure], "open"),
            (
                &[TransportFailure, TransportFailure, Rejected, TransportFailure, TransportFailure],
                "closed",
            ),
            (&[TransportFailure, Success, TransportFailure, TransportFailure], "closed"),
            (&[Rejected, Rejected, Rejected, Rejected], "closed"),
        ];
        for (results, want) in table {
            let mut b = breaker();
            for (i, &r) in results.iter().enumerate() {
                let p = permit(&mut b, i as u64);
                b.record(p, r, i as u64);
            }
            assert_eq!(b.state().name(), *want, "{results:?}");
        }
    }

    #[test]
    fn open_refuses_until_the_cool_down_then_admits_exactly_one_probe() {
        let mut b = breaker();
        for t in 0..3 {
            let p = permit(&mut b, t);
            b.record(p, TransportFailure, t);
        }
        assert_eq!(b.state(), BreakerState::Open { until: 1002 });
        assert_eq!(b.admit(1001).0, Admission::Refused { retry_at: Some(1002) });
        let (a, t) = b.admit(1002);
        assert!(matches!(a, Admission::Allowed(Permit { probe: true, .. })));
        assert_eq!(t, Some(Transition::HalfOpened));
        assert!(matches!(b.admit(1003).0, Admission::Refused { .. }), "one probe at a time");
    }

    #[test]
    fn probe_success_closes_and_probe_failure_reopens() {
        for (result, want, transition) in [
            (Success, "closed", Transition::Closed),
            (Rejected, "closed", Transition::Closed),
            (TransportFailure, "open", Transition::ReOpened),
        ] {
            let mut b = breaker();
            for t in 0..3 {
                let p = permit(&mut b, t);
                b.record(p, TransportFailure, t);
            }
            let probe = permit(&mut b, 2000);
            assert_eq!(b.record(probe, result, 2100), Some(transition));
            assert_eq!(b.state().name(), want);
            if want == "open" {
                assert_eq!(b.state(), BreakerState::Open { until: 3100 });
            }
        }
    }

    #[test]
    fn late_answers_to_calls_admitted_before_a_change_are_ignored() {
        let mut b = breaker();
        let early = permit(&mut b, 0);
        for t in 0..3 {
            let p = permit(&mut b, t);
            b.record(p, TransportFailure, t);
        }
        assert_eq!(b.record(early, Success, 5), None);
        assert_eq!(b.state().name(), "open", "a success from before the opening does not close it");
        let probe = permit(&mut b, 1500);
        assert_eq!(b.record(early, Success, 1501), None);
        assert_eq!(b.state().name(), "half_open");
        assert_eq!(b.record(probe, Success, 1502), Some(Transition::Closed));
    }

    #[test]
    fn an_unanswered_probe_is_replaced_after_a_cool_down() {
        let mut b = breaker();
        for t in 0..3 {
            let p = permit(&mut b, t);
            b.record(p, TransportFailure, t);
        }
        let lost = permit(&mut b, 2000);
        assert!(matches!(b.admit(2999).0, Admission::Refused { retry_at: Some(3000) }));
        let second = permit(&mut b, 3000);
        assert!(second.probe);
        assert_eq!(b.record(lost, Success, 3001), None, "the lost probe's answer is stale");
        assert_eq!(b.record(second, Success, 3002), Some(Transition::Closed));
    }
}
