//! What the store writer shows operators: its metric handles, a snapshot of its counters,
//! and the rule that turns its state into the `store` health component (a pure function).
//! The writer (`writer.rs`) feeds them.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use super::spill::SpillFiles;
use crate::ops::health::Status;
use crate::ops::metrics::{Metrics, network_buckets};

/// The writer's metric handles, created once per engine.
#[derive(Clone)]
pub struct StoreMetrics {
    pub queue_depth: IntGauge,
    pub overflow_depth: IntGauge,
    pub overflowed: IntCounter,
    pub written: IntCounter,
    pub duplicates: IntCounter,
    pub spilled: IntCounter,
    pub replayed: IntCounter,
    pub rejected: IntCounter,
    pub spill_events: IntGauge,
    pub spill_bytes: IntGauge,
    pub write_seconds: Histogram,
    pub write_errors: IntCounterVec,
    pub database_up: IntGauge,
}

impl StoreMetrics {
    pub fn new(m: &Metrics) -> StoreMetrics {
        StoreMetrics {
            queue_depth: m.gauge("store_queue_depth", "Events waiting for the store writer"),
            overflow_depth: m.gauge(
                "store_overflow_depth",
                "Events waiting in the overflow buffer because the queue was full",
            ),
            overflowed: m.counter(
                "store_overflowed_events_total",
                "Events that found the store queue full and went to the overflow buffer",
            ),
            written: m.counter("store_written_events_total", "Events applied to the database"),
            duplicates: m.counter(
                "store_duplicate_events_total",
                "Events skipped because the database had already applied them",
            ),
            spilled: m.counter("store_spilled_events_total", "Events appended to the spill file"),
            replayed: m.counter(
                "store_replayed_events_total",
                "Spilled events replayed into the database",
            ),
            rejected: m.counter(
                "store_rejected_events_total",
                "Events the database refused, kept in the rejected file",
            ),
            spill_events: m.gauge("store_spill_events", "Events waiting in the spill files"),
            spill_bytes: m.gauge("store_spill_bytes", "Bytes waiting in the spill files"),
            write_seconds: m.histogram(
                "store_write_seconds",
                "Time to apply one batch to the database",
                network_buckets(),
            ),
            write_errors: m.counter_vec_preset(
                "store_write_errors_total",
                "Failed writes by kind (unavailable, rejected, spill)",
                &["kind"],
                &[&["unavailable", "rejected", "spill"]],
            ),
            database_up: m
                .gauge("store_database_up", "1 while the writer has a database connection"),
        }
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

/// A snapshot of the writer's counters, for tests and the status command.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub queue_depth: u64,
    pub written: u64,
    pub duplicates: u64,
    pub spilled: u64,
    pub replayed: u64,
    pub rejected: u64,
    pub spill_events: u64,
    pub spill_bytes: u64,
    pub database_up: bool,
    /// Events taken from the queue and not yet committed or spilled.
    pub in_flight: usize,
}

/// The writer's state as far as health is concerned.
pub(crate) struct HealthInputs<'a> {
    /// Why a batch is held in memory (both the database and the spill failed).
    pub held: Option<&'a str>,
    pub connected: bool,
    pub spill_pending: bool,
    pub spill_events: u64,
    pub overflow: usize,
    pub rejected: u64,
    pub spill: &'a SpillFiles,
}

/// The `store` health: `Down` when events cannot be persisted anywhere, `Degraded` while the
/// database is unreachable, a spill waits, the queue overflows, or events were refused.
pub(crate) fn health_verdict(i: &HealthInputs<'_>) -> (Status, String) {
    if let Some(held) = i.held {
        (Status::Down, held.to_string())
    } else if !i.connected {
        let to = i.spill.active.display();
        (
            Status::Degraded,
            format!("database unavailable; {} events spilled to {to}", i.spill_events),
        )
    } else if i.spill_pending {
        (Status::Degraded, format!("replaying {} spilled events", i.spill_events))
    } else if i.overflow > 0 {
        (Status::Degraded, format!("queue full: {} events in the overflow buffer", i.overflow))
    } else if i.rejected > 0 {
        let to = i.spill.rejected.display();
        (Status::Degraded, format!("{} events refused by the database, kept in {to}", i.rejected))
    } else {
        (Status::Ok, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_down_only_when_nothing_can_persist_and_degraded_for_any_backlog() {
        let spill = SpillFiles::new("/data/store.spill");
        let ok = HealthInputs {
            held: None,
            connected: true,
            spill_pending: false,
            spill_events: 0,
            overflow: 0,
            rejected: 0,
            spill: &spill,
        };
        let cases: Vec<(HealthInputs<'_>, Status, &str)> = vec![
            (HealthInputs { ..ok }, Status::Ok, ""),
            (
                HealthInputs { held: Some("spill failed"), connected: false, ..ok },
                Status::Down,
                "spill failed",
            ),
            (
                HealthInputs { connected: false, spill_pending: true, spill_events: 7, ..ok },
                Status::Degraded,
                "database unavailable; 7 events spilled to /data/store.spill",
            ),
            (
                HealthInputs { spill_pending: true, spill_events: 7, ..ok },
                Status::Degraded,
                "replaying 7 spilled events",
            ),
            (
                HealthInputs { overflow: 3, ..ok },
                Status::Degraded,
                "queue full: 3 events in the overflow buffer",
            ),
            (
                HealthInputs { rejected: 2, ..ok },
                Status::Degraded,
                "2 events refused by the database, kept in /data/store.spill.rejected",
            ),
        ];
        for (inputs, status, reason) in cases {
            assert_eq!(health_verdict(&inputs), (status, reason.to_string()));
        }
    }
}
