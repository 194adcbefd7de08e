//! The queue between the engine's hot threads and the write-behind worker.
//!
//! [`StoreHandle::record`] never blocks on the database and never drops an event. It stamps
//! the event with an [`EventId`] and tries the bounded channel; when the channel is full the
//! event goes to an unbounded overflow buffer instead, and so does every later event until the
//! worker has taken the overflow, so the worker always sees events in id order. Overflow means
//! the worker is not keeping up: the worker reports it (an error log line per episode, a
//! counter, `store` health `Degraded`), memory is the only limit, and nothing is lost.
//!
//! A short lock orders id assignment and enqueueing. Producers hold it for a `try_send` or a
//! `push_back`; the writer holds it only to swap the whole overflow buffer out (a pointer
//! swap, plus at most the few events that reached the channel just before the overflow
//! began). Nobody holds it for I/O.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use super::records::{EventId, EventIdGen, EventKind, StoreEvent};
use crate::domain::Timestamp;

struct Shared {
    tx: Sender<StoreEvent>,
    rx: Receiver<StoreEvent>,
    overflow: Mutex<VecDeque<StoreEvent>>,
    /// Overflow events the consumer has taken (the whole buffer at once, so that producers
    /// wait for a pointer swap, not a copy) and not yet handed out. Older than anything in
    /// the channel or the overflow buffer. Only the consumer locks it.
    staged: Mutex<VecDeque<StoreEvent>>,
    /// Mirror `overflow.len()` and `staged.len()` for lock-free reads.
    overflow_len: AtomicUsize,
    staged_len: AtomicUsize,
    ids: EventIdGen,
    recorded: AtomicU64,
    overflowed: AtomicU64,
    capacity: usize,
}

/// The producer side: cheap to clone, shared by every thread that records changes.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
}

/// The consumer side, captured by the writer's factory so that a respawned writer continues
/// with the same queue.
#[derive(Clone)]
pub struct StoreInbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").field("depth", &self.depth()).finish()
    }
}

impl std::fmt::Debug for StoreInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInbox").field("depth", &self.depth()).finish()
    }
}

/// A queue whose channel holds `capacity` events before it overflows.
pub fn queue(capacity: usize) -> (StoreHandle, StoreInbox) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let shared = Arc::new(Shared {
        tx,
        rx,
        overflow: Mutex::new(VecDeque::new()),
        staged: Mutex::new(VecDeque::new()),
        staged_len: AtomicUsize::new(0),
        overflow_len: AtomicUsize::new(0),
        ids: EventIdGen::new(),
        recorded: AtomicU64::new(0),
        overflowed: AtomicU64::new(0),
        capacity: capacity.max(1),
    });
    (StoreHandle { shared: shared.clone() }, StoreInbox { shared })
}

/// Counters of the queue since it was made.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events waiting (channel and overflow).
    pub depth: usize,
    /// Events waiting in the overflow buffer.
    pub overflow: usize,
    pub recorded: u64,
    /// Events that went to the overflow buffer because the channel was full.
    pub overflowed: u64,
    pub capacity: usize,
}

impl StoreHandle {
    /// Enqueues a change to persist and returns its id. Never blocks on the database, never
    /// drops: see the module doc.
    pub fn record(&self, kind: EventKind) -> EventId {
        let now_micros = EventId::wall_clock_micros();
        let at = Timestamp(now_micros.div_euclid(1000));
        let s = &*self.shared;
        let mut overflow = s.overflow.lock();
        let id = s.ids.next(now_micros);
        let ev = StoreEvent { id, at, kind };
        s.recorded.fetch_add(1, Ordering::Relaxed);
        if overflow.is_empty() {
            match s.tx.try_send(ev) {
                Ok(()) => return id,
                // The inbox keeps a receiver alive, so the channel never disconnects; either
                // way the event is kept.
                Err(TrySendError::Full(ev) | TrySendError::Disconnected(ev)) => {
                    overflow.push_back(ev)
                }
            }
        } else {
            overflow.push_back(ev);
        }
        s.overflow_len.store(overflow.len(), Ordering::Release);
        s.overflowed.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Makes every later event id greater than `floor` (the highest id an earlier run used).
    pub fn raise_id_floor(&self, floor: EventId) {
        self.shared.ids.raise_floor(floor);
    }

    /// Events waiting to be taken by the writer.
    pub fn depth(&self) -> usize {
        stats(&self.shared).depth
    }

    pub fn stats(&self) -> QueueStats {
        stats(&self.shared)
    }
}

fn stats(s: &Shared) -> QueueStats {
    let overflow = s.overflow_len.load(Ordering::Acquire) + s.staged_len.load(Ordering::Acquire);
    QueueStats {
        depth: s.rx.len() + overflow,
        overflow,
        recorded: s.recorded.load(Ordering::Relaxed),
        overflowed: s.overflowed.load(Ordering::Relaxed),
        capacity: s.capacity,
    }
}

impl StoreInbox {
    /// A producer handle on the same queue.
    pub fn handle(&self) -> StoreHandle {
        StoreHandle { shared: self.shared.clone() }
    }

    pub fn depth(&self) -> usize {
        stats(&self.shared).depth
    }

    pub fn stats(&self) -> QueueStats {
        stats(&self.shared)
    }

    /// Raises the id floor (see [`StoreHandle::raise_id_floor`]).
    pub fn raise_id_floor(&self, floor: EventId) {
        self.shared.ids.raise_floor(floor);
    }

    /// Moves up to `max` waiting events to `out` without waiting, oldest first.
    pub fn take_ready(&self, max: usize, out: &mut Vec<StoreEvent>) {
        let s = &*self.shared;
        let limit = out.len() + max;
        let mut staged = s.staged.lock();
        // Oldest first: staged overflow events, then the channel, then the overflow buffer.
        unstage(s, &mut staged, limit, out);
        if !staged.is_empty() {
            return;
        }
        // While the overflow buffer is not empty producers add nothing to the channel, so
        // everything in the channel is older than everything in the overflow buffer.
        while out.len() < limit {
            match s.rx.try_recv() {
                Ok(ev) => out.push(ev),
                Err(_) => break,
            }
        }
        if out.len() >= limit || s.overflow_len.load(Ordering::Acquire) == 0 {
            return;
        }
        {
            let mut overflow = s.overflow.lock();
            // A send may have landed after the drain above and before the overflow began: it
            // is older than the overflow. Under the lock no new send can happen, and at most
            // a channel's worth can be waiting.
            while let Ok(ev) = s.rx.try_recv() {
                out.push(ev);
            }
            std::mem::swap(&mut *overflow, &mut *staged);
            s.overflow_len.store(0, Ordering::Release);
        }
        unstage(s, &mut staged, limit, out);
    }

    /// Waits up to `wait` for a first event, then up to `linger` more for the batch to fill to
    /// `max`. Returns the number of events moved to `out`.
    pub fn collect(
        &self,
        out: &mut Vec<StoreEvent>,
        max: usize,
        wait: Duration,
        linger: Duration,
    ) -> usize {
        let start = out.len();
        self.take_ready(max, out);
        if out.len() == start {
            // Nothing staged, nothing in the channel, nothing in the overflow buffer.
            match self.shared.rx.recv_timeout(wait) {
                Ok(ev) => out.push(ev),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            self.take_ready(max.saturating_sub(out.len() - start), out);
            if out.len() == start {
                return 0;
            }
        }
        let deadline = Instant::now() + linger;
        while out.len() - start < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.shared.rx.recv_timeout(deadline - now) {
                Ok(ev) => out.push(ev),
                Err(_) => break,
            }
            self.take_ready(max.saturating_sub(out.len() - start), out);
        }
        out.len() - start
    }
}

fn unstage(s: &Shared, staged: &mut VecDeque<StoreEvent>, limit: usize, out: &mut Vec<StoreEvent>) {
    let n = limit.saturating_sub(out.len()).min(staged.len());
    out.extend(staged.drain(..n));
    s.staged_len.store(staged.len(), Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::store::records::{Actor, AuditRecord};

    fn audit(n: usize) -> EventKind {
        EventKind::Audit(AuditRecord {
            at: Timestamp(0),
            actor: Actor::Engine,
            action: "t".into(),
            detail: n.to_string(),
        })
    }

    fn seq(ev: &StoreEvent) -> usize {
        match &ev.kind {
            EventKind::Audit(a) => a.detail.parse().unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_full_channel_overflows_without_blocking_and_order_is_kept() {
        let (h, inbox) = queue(4);
        for i in 0..10 {
            h.record(audit(i));
        }
        let st = h.stats();
        assert_eq!((st.depth, st.overflow, st.overflowed), (10, 6, 6));
        let mut out = Vec::new();
        inbox.take_ready(3, &mut out);
        // While the overflow is not empty, new events queue behind it.
        h.record(audit(10));
        inbox.take_ready(100, &mut out);
        h.record(audit(11));
        inbox.take_ready(100, &mut out);
        assert_eq!(out.iter().map(seq).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
        assert!(out.windows(2).all(|w| w[0].id < w[1].id), "ids follow queue order");
        assert_eq!(inbox.depth(), 0);
    }

    #[test]
    fn concurrent_producers_keep_their_own_order_through_overflow() {
        let (h, inbox) = queue(8);
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        h.record(audit(p * 1_000_000 + i));
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < 6_000 && Instant::now() < deadline {
            inbox.collect(&mut out, 64, Duration::from_millis(5), Duration::ZERO);
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(out.len(), 6_000);
        assert!(out.windows(2).all(|w| w[0].id < w[1].id), "queue order is id order");
        for p in 0..3 {
            let mine: Vec<usize> =
                out.iter().map(seq).filter(|s| s / 1_000_000 == p).map(|s| s % 1_000_000).collect();
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>(), "producer {p}");
        }
    }

    #[test]
    fn collect_waits_for_a_first_event_then_lingers_for_more() {
        let (h, inbox) = queue(16);
        let mut out = Vec::new();
        assert_eq!(inbox.collect(&mut out, 8, Duration::from_millis(1), Duration::ZERO), 0);
        for i in 0..20 {
            h.record(audit(i));
        }
        assert_eq!(inbox.collect(&mut out, 8, Duration::from_millis(1), Duration::ZERO), 8);
        assert_eq!(
            inbox.collect(&mut out, 100, Duration::from_millis(1), Duration::from_millis(1)),
            12
        );
        assert_eq!(out.iter().map(seq).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    }
}
