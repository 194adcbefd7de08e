//! The order gate: whether this process may act as the account's active engine right now —
//! place orders and write to the shared store.
//!
//! Without a lease (`instance.lease = "none"`) the gate is always open. With one, it is open
//! until a deadline on the monotonic clock that the lease keeper (`keeper.rs`) moves forward
//! after every successful renewal, and it closes for good once the lease is lost. The check is
//! against the clock, not a flag some thread has to remember to clear: a keeper that is stuck
//! or dead cannot leave the gate open past the lease's safety margin. The router's gateway
//! ([`super::fence::GatedGateway`]) and the store writer's connection
//! ([`super::fence::FencedStore`]) ask it before every placement and every batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::runtime::monotonic_millis;

#[derive(Debug)]
struct GateState {
    /// Monotonic milliseconds ([`monotonic_millis`]) until which the lease is known to be ours.
    valid_until: AtomicU64,
    /// Closed for good (the lease was lost or released).
    closed: AtomicBool,
    /// The fencing token of the lease; 0 without a lease.
    token: AtomicU64,
    why_closed: Mutex<Option<String>>,
}

/// Shared, cheap to clone. See the module doc.
#[derive(Debug, Clone)]
pub struct OrderGate(Arc<GateState>);

impl OrderGate {
    /// No lease: always open.
    pub fn open() -> OrderGate {
        OrderGate::new(u64::MAX, 0)
    }

    /// A lease with fencing token `token`, known held until `valid_until` (monotonic ms).
    pub fn leased(token: u64, valid_until: u64) -> OrderGate {
        OrderGate::new(valid_until, token)
    }

    fn new(valid_until: u64, token: u64) -> OrderGate {
        OrderGate(Arc::new(GateState {
            valid_until: AtomicU64::new(valid_until),
            closed: AtomicBool::new(false),
            token: AtomicU64::new(token),
            why_closed: Mutex::new(None),
        }))
    }

    /// Whether orders may be sent (and the shared store written) now.
    pub fn may_send(&self) -> bool {
        self.may_send_at(monotonic_millis())
    }

    /// [`OrderGate::may_send`] at monotonic instant `now_ms`.
    pub fn may_send_at(&self, now_ms: u64) -> bool {
        !self.0.closed.load(Ordering::Acquire)
            && now_ms < self.0.valid_until.load(Ordering::Acquire)
    }

    /// Moves the deadline forward to `until` (never back).
    pub fn extend_to(&self, until: u64) {
        self.0.valid_until.fetch_max(until, Ordering::AcqRel);
    }

    /// The current deadline (monotonic ms; `u64::MAX` without a lease).
    pub fn valid_until(&self) -> u64 {
        self.0.valid_until.load(Ordering::Acquire)
    }

    /// Closes the gate for good.
    pub fn close(&self, why: impl Into<String>) {
        let mut w = self.0.why_closed.lock();
        if w.is_none() {
            *w = Some(why.into());
        }
        self.0.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Whether a lease stands behind the gate.
    pub fn is_leased(&self) -> bool {
        self.token().is_some()
    }

    /// The lease's fencing token.
    pub fn token(&self) -> Option<u64> {
        match self.0.token.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Why orders may not be sent now (for a refusal's text), or `None` when they may.
    pub fn refusal(&self) -> Option<String> {
        if self.may_send() {
            return None;
        }
        let token = self.token().map_or_else(String::new, |t| format!(" (fencing token {t})"));
        Some(match self.0.why_closed.lock().clone() {
            Some(why) => format!("this instance no longer holds the lease{token}: {why}"),
            None => format!(
                "this instance's lease{token} was not renewed in time: it may already belong to another instance"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_lease_the_gate_is_always_open() {
        let g = OrderGate::open();
        assert!(g.may_send_at(u64::MAX - 1));
        assert_eq!((g.token(), g.is_leased()), (None, false));
        assert_eq!(g.refusal(), None);
    }

    #[test]
    fn a_leased_gate_closes_at_its_deadline_unless_extended() {
        let g = OrderGate::leased(7, 1_000);
        assert!(g.may_send_at(999));
        assert!(!g.may_send_at(1_000), "closed exactly at the deadline");
        g.extend_to(2_000);
        assert!(g.may_send_at(1_999));
        g.extend_to(1_500);
        assert_eq!(g.valid_until(), 2_000, "a deadline never moves back");
        assert_eq!(g.token(), Some(7));
    }

    #[test]
    fn a_closed_gate_stays_closed_and_says_why() {
        let g = OrderGate::leased(3, u64::MAX);
        g.close("another instance holds it");
        g.extend_to(u64::MAX);
        g.close("second reason is not kept");
        assert!(!g.may_send_at(0));
        let why = g.refusal().unwrap();
        assert!(
            why.contains("fencing token 3") && why.contains("another instance holds it"),
            "{why}"
        );
    }
}
