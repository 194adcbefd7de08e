//! The exit engine's outbox: effects the core has decided and the worker has not yet carried
//! out (exit and entry orders for the router, position changes for the subscriptions, records
//! for the store, log lines).
//!
//! The worker pushes a decision's effects here under the same lock as the core call that made
//! them, then carries them out front to back, popping each one only once it is done. If the
//! worker panics in between, its respawn finds the effects still here and carries them out
//! first: nothing decided is lost, and an order sent just before the panic reaches the router
//! twice at most, where the order book drops the second copy. Only the exit-engine worker
//! pops; others may look at the length.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::domain::{CorrelationId, OrderIntent};
use crate::exec::core::CoreEvent;

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// An effect returned by the core (exit intents among them).
    Event(CoreEvent),
    /// An entry order the core approved.
    Entry(OrderIntent),
}

/// An effect and the monotonic instant it was decided.
#[derive(Debug, Clone)]
pub struct Pending {
    pub effect: Effect,
    pub decided: Instant,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Mutex<VecDeque<Pending>>>);

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Appends core events in their order.
    pub fn push_events(&self, events: Vec<CoreEvent>, decided: Instant) {
        let mut q = self.0.lock();
        q.extend(events.into_iter().map(|e| Pending { effect: Effect::Event(e), decided }));
    }

    pub fn push(&self, effect: Effect, decided: Instant) {
        self.0.lock().push_back(Pending { effect, decided });
    }

    /// A copy of the oldest effect, left in place until [`Outbox::pop_front`].
    pub fn front(&self) -> Option<Pending> {
        self.0.lock().front().cloned()
    }

    /// Removes the oldest effect once it has been carried out.
    pub fn pop_front(&self) {
        self.0.lock().pop_front();
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Correlation ids of the orders waiting to go to the router.
    pub fn pending_orders(&self) -> Vec<CorrelationId> {
        self.0
            .lock()
            .iter()
            .filter_map(|p| match &p.effect {
                Effect::Event(CoreEvent::ExitIntent(i)) | Effect::Entry(i) => {
                    Some(i.correlation_id.clone())
                }
                Effect::Event(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::exec::core::{Alert, AlertLevel};

    fn alert(code: &str) -> CoreEvent {
        CoreEvent::Alert(Alert {
            level: AlertLevel::Info,
            code: code.into(),
            message: String::new(),
            at: Timestamp(0),
        })
    }

    #[test]
    fn effects_leave_in_order_and_only_when_popped() {
        let out = Outbox::new();
        out.push_events(vec![alert("a"), alert("b")], Instant::now());
        let clone = out.clone();
        assert_eq!(clone.front().unwrap().effect, Effect::Event(alert("a")));
        assert_eq!(out.len(), 2, "front leaves the effect in place");
        out.pop_front();
        assert_eq!(clone.front().unwrap().effect, Effect::Event(alert("b")));
        out.pop_front();
        assert!(out.is_empty());
        assert!(out.front().is_none());
    }
}
