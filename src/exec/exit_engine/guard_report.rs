//! Reports the price guard's work: every verdict other than a plain accept is counted in
//! `scalper_price_guard_total{outcome}`, and logged at most once per [`LOG_EVERY`] (a feed
//! that sends nothing but zeros must not flood the log).

use std::time::{Duration, Instant};

use crate::domain::Tick;
use crate::exec::metrics::EngineMetrics;
use crate::risk::price_guard::GuardCounts;

/// At most one log line about held-back prices this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct GuardReport {
    seen: GuardCounts,
    /// Held back since the last log line.
    unlogged: GuardCounts,
    last_log: Option<Instant>,
}

impl GuardReport {
    /// A report that counts from `counts` on (a respawned worker: its predecessor counted
    /// those).
    pub fn from_counts(counts: GuardCounts) -> GuardReport {
        GuardReport { seen: counts, ..GuardReport::default() }
    }

    /// Takes the guard's running counts after `tick` was judged.
    pub fn observe(&mut self, counts: GuardCounts, tick: &Tick, m: &EngineMetrics) {
        let new = GuardCounts {
            dropped: counts.dropped.saturating_sub(self.seen.dropped),
            suspect: counts.suspect.saturating_sub(self.seen.suspect),
            confirmed: counts.confirmed.saturating_sub(self.seen.confirmed),
            discarded: counts.discarded.saturating_sub(self.seen.discarded),
        };
        self.seen = counts;
        if new == GuardCounts::default() {
            return;
        }
        for (outcome, n) in [
            ("dropped", new.dropped),
            ("suspect", new.suspect),
            ("confirmed", new.confirmed),
            ("discarded", new.discarded),
        ] {
            if n > 0 {
                m.price_guard.with_label_values(&[outcome]).inc_by(n);
            }
        }
        let u = &mut self.unlogged;
        u.dropped += new.dropped;
        u.suspect += new.suspect;
        u.confirmed += new.confirmed;
        u.discarded += new.discarded;
        if self.last_log.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_log = Some(Instant::now());
        let u = std::mem::take(&mut self.unlogged);
        log::warn!(
            target: "exit_engine",
            "price guard: {} prices <= 0 dropped, {} held as suspect, {} confirmed, {} discarded unconfirmed (latest: {} at {} from {:?}); the rules act on accepted prices only",
            u.dropped, u.suspect, u.confirmed, u.discarded, tick.instrument, tick.ltp, tick.source
        );
    }
}
